"""The agent's snapshot into a running Fusion, beside `find` on the same warm tree.

Builds (once, kept under $FUSTOR_BENCH_TREE or /tmp/fustor-bench-tree-<files>) a tree of
DIRS directories x FILES files, warms the cache with one `find`, then measures:
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
import shutil
import subprocess
import sys
import time

from stack import Stack


def build(root, dirs, files):
    if os.path.exists(f"{root}/.complete"):
        return
    shutil.rmtree(root, ignore_errors=True)
    for d in range(dirs):
        p = f"{root}/g{d // 100:03d}/d{d:05d}"
        os.makedirs(p)
        for f in range(files):
            open(f"{p}/file_{f:04d}.dat", "wb").close()
    open(f"{root}/.complete", "w").close()


def run_find(root):
    t = time.perf_counter()
    with open(os.devnull, "w") as null:
        subprocess.run(["find", root, "-printf", "%s %T@ %p\n"], stdout=null, check=True)
    return time.perf_counter() - t


def run_bare(bin_dir, root):
    t = time.perf_counter()
    subprocess.run([f"{bin_dir}/bare_walk", root], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def run_agent(bin_dir, root, total, watcher="inotify"):
    st = Stack(bin_dir, root, agent_log="INFO", view_params="{max_tree_items: 0}",
               source_params=f"{{max_scan_workers: {os.cpu_count()}, watcher: {watcher}}}",
               pipe_params=", batch_size: 1000")
    api = st.api
    st.start_fusion()
    try:
        t0 = time.perf_counter()
        st.start_agent()
        c = http.client.HTTPConnection("127.0.0.1", api)
        while True:
            if "snapshot done" in st.agent_log():
                c.request("GET", "/api/v1/views/v/stats", headers={"X-API-Key": "r"})
                r = c.getresponse()
                stats = json.loads(r.read())
                if r.status == 200 and stats["total_files"] >= total:
                    break
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        rss = 0
        for line in open(f"/proc/{st.agent_pid()}/status"):
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
        return dt, rss
    finally:
        st.stop()


def main():
    bin_dir = sys.argv[1]
    dirs = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    total = dirs * files
    root = os.environ.get("FUSTOR_BENCH_TREE", f"/tmp/fustor-bench-tree-{total}")
    build(root, dirs, files)
    run_find(root)  # warm
    find_s = min(run_find(root) for _ in range(3))
    bare_s = min(run_bare(bin_dir, root) for _ in range(3))
    runs = [run_agent(bin_dir, root, total) for _ in range(3)]
    agent_s = min(r[0] for r in runs)
    res = {"bench": "agent_snapshot", "files": total, "dirs": dirs, "find_s": round(find_s, 3),
           "bare_walk_s": round(bare_s, 3), "bare_walk_ratio_to_find": round(bare_s / find_s, 3),
           "agent_snapshot_s": round(agent_s, 3), "ratio_to_find": round(agent_s / find_s, 3),
           "ratio_to_bare_walk": round(agent_s / bare_s, 3),
           "agent_peak_rss_mib": round(max(r[1] for r in runs) / 2**20, 1)}
    fan = ""
    if os.geteuid() == 0:
        fruns = [run_agent(bin_dir, root, total, "fanotify") for _ in range(3)]
        fan_s = min(r[0] for r in fruns)
        res.update({"agent_snapshot_fanotify_s": round(fan_s, 3),
                    "ratio_to_find_fanotify": round(fan_s / find_s, 3),
                    "ratio_to_bare_walk_fanotify": round(fan_s / bare_s, 3),
                    "agent_peak_rss_fanotify_mib": round(max(r[1] for r in fruns) / 2**20, 1)})
        fan = f"; with fanotify {fan_s:.2f} s (ratio {fan_s / find_s:.2f})"
    print(json.dumps(res))
    print(f"agent_snapshot: {total} files in {dirs} dirs into Fusion {agent_s:.2f} s, find "
          f"{find_s:.2f} s (ratio {agent_s / find_s:.2f}; target <= 0.75), bare walk {bare_s:.2f} s "
          f"(ratio {agent_s / bare_s:.2f}){fan}, agent peak RSS "
          f"{res['agent_peak_rss_mib']} MiB", file=sys.stderr)

if __name__ == "__main__":
    main()
