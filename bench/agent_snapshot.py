"""The agent's snapshot into a running Fusion, beside `find` on the same warm tree.

Builds (once, kept under $FUSTOR_BENCH_TREE or /tmp/fustor-bench-<files>) the tree of tree.py
with DIRS directories x FILES files, warms the cache with one `find`, then measures:
- find: `find ROOT -printf '%s %T@ %p\\n' > /dev/null` (the issue's baseline), best of 3;
- bare walk: `bare_walk ROOT` (bench/bare_walk.c: one thread, getdents64 + statx, a count
  printed), the physical limit on this machine, best of 3;
- agent: from `fustor-agent start` to the moment Fusion's stats count every file and its
  snapshot end marker has arrived (the agent logs "snapshot done"), best of 3, each into a
  fresh Fusion; with the default inotify watcher, and (as root) with `watcher: fanotify`,
  whose single filesystem mark spares the walk that sets a watch per directory.
Usage: python3 agent_snapshot.py BIN_DIR [DIRS] [FILES]   (defaults 20000 x 50 = 1M files)"""
import http.client
import json
import os
import sys
import time

import peers
import tree
from stack import Stack


def tree_root(files):
    return os.environ.get("FUSTOR_BENCH_TREE", f"/tmp/fustor-bench-{files}")


def index(bin_dir, shape, watcher="inotify", keep=False):
    """One agent snapshot into a fresh Fusion: (seconds, agent peak RSS, Fusion RSS before the
    agent started, the Stack). With keep, the Stack is left running for the caller to stop."""
    st = Stack(bin_dir, shape["root"], agent_log="INFO", view_params="{max_tree_items: 0}",
               source_params=f"{{max_scan_workers: {os.cpu_count()}, watcher: {watcher}}}",
               pipe_params=", batch_size: 1000")
    st.start_fusion()
    try:
        rss0 = peers.rss(st.fusion_pid())
        t0 = time.perf_counter()
        st.start_agent()
        c = http.client.HTTPConnection("127.0.0.1", st.api)
        while True:
            if "snapshot done" in st.agent_log():
                c.request("GET", "/api/v1/views/v/stats", headers={"X-API-Key": "r"})
                r = c.getresponse()
                stats = json.loads(r.read())
                if r.status == 200 and stats["total_files"] >= shape["files"]:
                    break
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        hwm = peers.rss(st.agent_pid(), "VmHWM")
    except BaseException:
        st.stop()
        raise
    if not keep:
        st.stop()
    return dt, hwm, rss0, st


def main():
    bin_dir = sys.argv[1]
    dirs = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    shape = tree.build(tree_root(tree.shape("", dirs, files)["files"]), dirs, files)
    root, total = shape["root"], shape["files"]
    peers.timed(peers.find_cmd(root))  # warm
    find_s = min(peers.timed(peers.find_cmd(root)) for _ in range(3))
    bare_s = min(peers.timed([f"{bin_dir}/bare_walk", root]) for _ in range(3))
    runs = [index(bin_dir, shape) for _ in range(3)]
    agent_s = min(r[0] for r in runs)
    res = {"bench": "agent_snapshot", "files": total, "dirs": shape["all_dirs"],
           "find_s": round(find_s, 3), "bare_walk_s": round(bare_s, 3),
           "bare_walk_ratio_to_find": round(bare_s / find_s, 3),
           "agent_snapshot_s": round(agent_s, 3), "ratio_to_find": round(agent_s / find_s, 3),
           "ratio_to_bare_walk": round(agent_s / bare_s, 3),
           "agent_peak_rss_mib": round(max(r[1] for r in runs) / 2**20, 1)}
    fan = ""
    if os.geteuid() == 0:
        fruns = [index(bin_dir, shape, "fanotify") for _ in range(3)]
        fan_s = min(r[0] for r in fruns)
        res.update({"agent_snapshot_fanotify_s": round(fan_s, 3),
                    "ratio_to_find_fanotify": round(fan_s / find_s, 3),
                    "ratio_to_bare_walk_fanotify": round(fan_s / bare_s, 3),
                    "agent_peak_rss_fanotify_mib": round(max(r[1] for r in fruns) / 2**20, 1)})
        fan = f"; with fanotify {fan_s:.2f} s (ratio {fan_s / find_s:.2f})"
    print(json.dumps(res))
    print(f"agent_snapshot: {total} files in {shape['all_dirs']} dirs into Fusion {agent_s:.2f} "
          f"s, find {find_s:.2f} s (ratio {agent_s / find_s:.2f}; target <= 0.75), bare walk "
          f"{bare_s:.2f} s (ratio {agent_s / bare_s:.2f}){fan}, agent peak RSS "
          f"{res['agent_peak_rss_mib']} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
