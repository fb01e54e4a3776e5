"""The agent's snapshot into a running Fusion, beside `find` on the same warm tree.

Builds (once, kept under $FUSTOR_BENCH_TREE or /tmp/fustor-bench-<files>) the tree of tree.py
with DIRS directories x FILES files, warms the cache with one `find`, then measures:
- find: `find ROOT -printf '%s %T@ %p\\n' > /dev/null` (the issue's baseline), best of 3;
- bare walk: `bare_walk ROOT` (bench/bare_walk.c: one thread, getdents64 + statx, a count
  printed), the physical limit on this machine, best of 3;
- agent: from `fustor-agent start` to the moment Fusion's stats count every file and its
  snapshot end marker has arrived (the agent logs "snapshot done"), best of 3, each into a
  fresh Fusion; with the default inotify watcher, and (as root) with `watcher: fanotify`,
  whose single filesystem mark spares the walk that sets a watch per directory. The CPU
  seconds of the agent and of Fusion in the best run, and the VM's steal time meanwhile, are
  reported too: on a busy host the wall time swings, the CPU time much less.
Usage: python3 agent_snapshot.py BIN_DIR [DIRS] [FILES]   (defaults 20000 x 50 = 1M files)
       python3 agent_snapshot.py --compare RUNS BIN_A BIN_B [DIRS] [FILES] [--batch-size N]
The second form is an A/B test of two builds: RUNS rounds, each timing `find` and then one
snapshot of each build in turn, so that the host's swings fall on both alike; it prints every
round's wall and CPU seconds and the medians. The pipe's batch_size is 1000 unless
--batch-size says otherwise (the agent's default is 100)."""
import http.client
import json
import os
import statistics
import sys
import time

import peers
import tree
from stack import Stack


def tree_root(files):
    return os.environ.get("FUSTOR_BENCH_TREE", f"/tmp/fustor-bench-{files}")


def cpu_seconds(pid):
    """A process's user + system CPU time so far, in seconds."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def steal_seconds():
    """CPU time the hypervisor gave to others (summed over CPUs) since boot, in seconds."""
    return int(open("/proc/stat").readline().split()[8]) / os.sysconf("SC_CLK_TCK")


def index(bin_dir, shape, watcher="inotify", keep=False, cpu=None, batch_size=1000):
    """One agent snapshot into a fresh Fusion: (seconds, agent peak RSS, Fusion RSS before the
    agent started, the Stack). With keep, the Stack is left running for the caller to stop.
    A dict `cpu` receives the CPU seconds the agent and Fusion used (`agent_cpu_s`,
    `fusion_cpu_s`: Fusion's from its start) and the VM's steal over the run (`steal_s`):
    figures that the host's load moves less than the wall time."""
    st = Stack(bin_dir, shape["root"], agent_log="INFO", view_params="{max_tree_items: 0}",
               source_params=f"{{max_scan_workers: {os.cpu_count()}, watcher: {watcher}}}",
               pipe_params=f", batch_size: {batch_size}")
    st.start_fusion()
    try:
        rss0 = peers.rss(st.fusion_pid())
        steal0 = steal_seconds()
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
        if cpu is not None:
            cpu.update(agent_cpu_s=cpu_seconds(st.agent_pid()),
                       fusion_cpu_s=cpu_seconds(st.fusion_pid()),
                       steal_s=steal_seconds() - steal0)
    except BaseException:
        st.stop()
        raise
    if not keep:
        st.stop()
    return dt, hwm, rss0, st


def compare(bin_dirs, shape, runs, watcher="inotify", batch_size=1000):
    """Alternating snapshots of several builds: {"find_s": [...], BIN: [{"s", "agent_cpu_s",
    "fusion_cpu_s", "steal_s"}, ...]} with one entry per round."""
    res = {"find_s": []}
    peers.timed(peers.find_cmd(shape["root"]))  # warm
    for _ in range(runs):
        res["find_s"].append(round(peers.timed(peers.find_cmd(shape["root"])), 3))
        for b in bin_dirs:
            cpu = {}
            dt = index(b, shape, watcher, cpu=cpu, batch_size=batch_size)[0]
            res.setdefault(b, []).append({"s": round(dt, 3),
                                          **{k: round(v, 2) for k, v in cpu.items()}})
    return res


def compare_main(args):
    batch_size = 1000
    if "--batch-size" in args:
        k = args.index("--batch-size")
        batch_size = int(args[k + 1])
        args = args[:k] + args[k + 2:]
    runs, a, b = int(args[0]), args[1], args[2]
    dirs = int(args[3]) if len(args) > 3 else 20000
    files = int(args[4]) if len(args) > 4 else 50
    shape = tree.build(tree_root(tree.shape("", dirs, files)["files"]), dirs, files)
    res = compare([a, b], shape, runs, batch_size=batch_size)
    print(json.dumps(res))
    med = statistics.median
    print(f"find: median {med(res['find_s']):.2f} s, best {min(res['find_s']):.2f} s",
          file=sys.stderr)
    for d in (a, b):
        r = res[d]
        print(f"{d}: median {med(x['s'] for x in r):.2f} s "
              f"({' '.join(str(x['s']) for x in r)}), agent CPU median "
              f"{med(x['agent_cpu_s'] for x in r):.2f} s, Fusion CPU median "
              f"{med(x['fusion_cpu_s'] for x in r):.2f} s", file=sys.stderr)


def main():
    if sys.argv[1] == "--compare":
        compare_main(sys.argv[2:])
        return
    bin_dir = sys.argv[1]
    dirs = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    shape = tree.build(tree_root(tree.shape("", dirs, files)["files"]), dirs, files)
    root, total = shape["root"], shape["files"]
    peers.timed(peers.find_cmd(root))  # warm
    find_s = min(peers.timed(peers.find_cmd(root)) for _ in range(3))
    bare_s = min(peers.timed([f"{bin_dir}/bare_walk", root]) for _ in range(3))
    cpus = [{} for _ in range(3)]
    runs = [index(bin_dir, shape, cpu=c) for c in cpus]
    agent_s = min(r[0] for r in runs)
    best = cpus[min(range(3), key=lambda i: runs[i][0])]
    res = {"bench": "agent_snapshot", "files": total, "dirs": shape["all_dirs"],
           "find_s": round(find_s, 3), "bare_walk_s": round(bare_s, 3),
           "bare_walk_ratio_to_find": round(bare_s / find_s, 3),
           "agent_snapshot_s": round(agent_s, 3), "ratio_to_find": round(agent_s / find_s, 3),
           "ratio_to_bare_walk": round(agent_s / bare_s, 3),
           "agent_peak_rss_mib": round(max(r[1] for r in runs) / 2**20, 1),
           "agent_cpu_s": round(best["agent_cpu_s"], 2),
           "fusion_cpu_s": round(best["fusion_cpu_s"], 2), "steal_s": round(best["steal_s"], 2)}
    fan = ""
    if os.geteuid() == 0:
        fcpus = [{} for _ in range(3)]
        fruns = [index(bin_dir, shape, "fanotify", cpu=c) for c in fcpus]
        fan_s = min(r[0] for r in fruns)
        fbest = fcpus[min(range(3), key=lambda i: fruns[i][0])]
        res.update({"agent_snapshot_fanotify_s": round(fan_s, 3),
                    "ratio_to_find_fanotify": round(fan_s / find_s, 3),
                    "ratio_to_bare_walk_fanotify": round(fan_s / bare_s, 3),
                    "agent_peak_rss_fanotify_mib": round(max(r[1] for r in fruns) / 2**20, 1),
                    "agent_cpu_fanotify_s": round(fbest["agent_cpu_s"], 2),
                    "fusion_cpu_fanotify_s": round(fbest["fusion_cpu_s"], 2),
                    "steal_fanotify_s": round(fbest["steal_s"], 2)})
        fan = f"; with fanotify {fan_s:.2f} s (ratio {fan_s / find_s:.2f})"
    print(json.dumps(res))
    print(f"agent_snapshot: {total} files in {shape['all_dirs']} dirs into Fusion {agent_s:.2f} "
          f"s, find {find_s:.2f} s (ratio {agent_s / find_s:.2f}; target <= 0.75), bare walk "
          f"{bare_s:.2f} s (ratio {agent_s / bare_s:.2f}){fan}, agent peak RSS "
          f"{res['agent_peak_rss_mib']} MiB; CPU of the best run: agent {res['agent_cpu_s']} s, "
          f"Fusion {res['fusion_cpu_s']} s, VM steal {res['steal_s']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
