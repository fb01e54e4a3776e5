"""The agent's snapshot into a running Fusion, beside `find` on the same warm tree.

Builds (once, kept under $FUSTOR_BENCH_TREE or /tmp/fustor-bench-tree-<files>) a tree of
DIRS directories x FILES files, warms the cache with one `find`, then measures:
- find: `find ROOT -printf '%s %T@ %p\\n' > /dev/null` (the issue's baseline), best of 3;
- agent: from `fustor-agent start` to the moment Fusion's stats count every file and its
  snapshot end marker has arrived (the agent logs "snapshot done"), best of 3, each into a
  fresh Fusion.
Usage: python3 agent_snapshot.py BIN_DIR [DIRS] [FILES]   (defaults 20000 x 50 = 1M files)"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def run_agent(bin_dir, root, total):
    home = tempfile.mkdtemp(prefix="fustor-bench-")
    api, rx = free_port(), free_port()
    fh, ah = f"{home}/fusion", f"{home}/agent"
    os.makedirs(f"{fh}/fusion-config")
    os.makedirs(f"{ah}/agent-config")
    with open(f"{fh}/fusion-config/default.yaml", "w") as f:
        f.write(f"""logging: WARNING
receivers:
  rx: {{driver: http, bind_host: 127.0.0.1, port: {rx}, api_keys: [{{key: k, pipe_id: p}}]}}
views:
  v: {{driver: fs, api_keys: [r], driver_params: {{max_tree_items: 0}}}}
pipes:
  p: {{receiver: rx, views: [v]}}
""")
    with open(f"{ah}/agent-config/default.yaml", "w") as f:
        f.write(f"""agent_id: bench
logging: INFO
sources:
  s: {{driver: fs, uri: "{root}", driver_params: {{max_scan_workers: {os.cpu_count()}}}}}
senders:
  f: {{driver: fusion, uri: "http://127.0.0.1:{rx}", credential: {{key: k}}}}
pipes:
  p: {{source: s, sender: f, batch_size: 1000}}
""")
    fenv = dict(os.environ, FUSTOR_HOME=fh, FUSTOR_FUSION_PORT=str(api))
    aenv = dict(os.environ, FUSTOR_HOME=ah)
    subprocess.run([f"{bin_dir}/fustor-fusion", "start", "-D"], env=fenv, check=True,
                   capture_output=True)
    try:
        t0 = time.perf_counter()
        subprocess.run([f"{bin_dir}/fustor-agent", "start", "-D"], env=aenv, check=True,
                       capture_output=True)
        c = http.client.HTTPConnection("127.0.0.1", api)
        while True:
            log = open(f"{ah}/logs/agent.log").read()
            if "snapshot done" in log:
                c.request("GET", "/api/v1/views/v/stats", headers={"X-API-Key": "r"})
                r = c.getresponse()
                st = json.loads(r.read())
                if r.status == 200 and st["total_files"] >= total:
                    break
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        rss = 0
        pid = int(open(f"{ah}/agent.pid").read())
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
        return dt, rss
    finally:
        subprocess.run([f"{bin_dir}/fustor-agent", "stop"], env=aenv, capture_output=True)
        subprocess.run([f"{bin_dir}/fustor-fusion", "stop"], env=fenv, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def main():
    bin_dir = sys.argv[1]
    dirs = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    total = dirs * files
    root = os.environ.get("FUSTOR_BENCH_TREE", f"/tmp/fustor-bench-tree-{total}")
    build(root, dirs, files)
    run_find(root)  # warm
    find_s = min(run_find(root) for _ in range(3))
    runs = [run_agent(bin_dir, root, total) for _ in range(3)]
    agent_s = min(r[0] for r in runs)
    res = {"bench": "agent_snapshot", "files": total, "dirs": dirs, "find_s": round(find_s, 3),
           "agent_snapshot_s": round(agent_s, 3), "ratio_to_find": round(agent_s / find_s, 3),
           "agent_peak_rss_mib": round(max(r[1] for r in runs) / 2**20, 1)}
    print(json.dumps(res))
    print(f"agent_snapshot: {total} files in {dirs} dirs into Fusion {agent_s:.2f} s, find "
          f"{find_s:.2f} s (ratio {agent_s / find_s:.2f}; target <= 0.75), agent peak RSS "
          f"{res['agent_peak_rss_mib']} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
