"""Realtime latency: files created at a steady rate in a watched tree, and the time until each
is visible in Fusion's view (stats of the directory counts it), from the agent's inotify
through its realtime batches to Fusion's apply. Reports p50/p99/max over the run.
Usage: python3 agent_realtime.py BIN_DIR [RATE_PER_S] [SECONDS]   (defaults 1000/s for 5 s)"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    bin_dir = sys.argv[1]
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    home = tempfile.mkdtemp(prefix="fustor-bench-rt-")
    root = f"{home}/tree"
    os.makedirs(f"{root}/rt")
    api, rx = free_port(), free_port()
    fh, ah = f"{home}/fusion", f"{home}/agent"
    os.makedirs(f"{fh}/fusion-config")
    os.makedirs(f"{ah}/agent-config")
    with open(f"{fh}/fusion-config/default.yaml", "w") as f:
        f.write(f"""logging: WARNING
receivers:
  rx: {{driver: http, bind_host: 127.0.0.1, port: {rx}, api_keys: [{{key: k, pipe_id: p}}]}}
views:
  v: {{driver: fs, api_keys: [r]}}
pipes:
  p: {{receiver: rx, views: [v]}}
""")
    with open(f"{ah}/agent-config/default.yaml", "w") as f:
        f.write(f"""agent_id: bench
logging: WARNING
sources:
  s: {{driver: fs, uri: "{root}"}}
senders:
  f: {{driver: fusion, uri: "http://127.0.0.1:{rx}", credential: {{key: k}}}}
pipes:
  p: {{source: s, sender: f}}
""")
    fenv = dict(os.environ, FUSTOR_HOME=fh, FUSTOR_FUSION_PORT=str(api))
    aenv = dict(os.environ, FUSTOR_HOME=ah)
    subprocess.run([f"{bin_dir}/fustor-fusion", "start", "-D"], env=fenv, check=True,
                   capture_output=True)
    subprocess.run([f"{bin_dir}/fustor-agent", "start", "-D"], env=aenv, check=True,
                   capture_output=True)
    try:
        c = http.client.HTTPConnection("127.0.0.1", api)

        def count():
            c.request("GET", "/api/v1/views/v/stats?path=/rt", headers={"X-API-Key": "r"})
            r = c.getresponse()
            body = r.read()
            return json.loads(body)["total_files"] if r.status == 200 else -1

        deadline = time.time() + 20
        while count() < 0 and time.time() < deadline:  # the view is ready after the snapshot
            time.sleep(0.05)
        n = int(rate * secs)
        created = [0.0] * n
        seen = [0.0] * n

        def writer():
            t0 = time.perf_counter()
            for i in range(n):
                target = t0 + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                with open(f"{root}/rt/f{i:06d}", "w") as fh:
                    fh.write("x")
                created[i] = time.perf_counter()

        w = threading.Thread(target=writer)
        w.start()
        done = 0
        end = time.time() + secs + 30
        while done < n and time.time() < end:
            k = count()
            now = time.perf_counter()
            while done < min(k, n):
                seen[done] = now
                done += 1
            time.sleep(0.002)
        w.join()
        lat = sorted((seen[i] - created[i]) * 1000 for i in range(done))
        res = {"bench": "agent_realtime", "rate_per_s": rate, "files": n, "visible": done,
               "p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
               "p99_ms": round(lat[int(len(lat) * 0.99)], 1) if lat else None,
               "max_ms": round(lat[-1], 1) if lat else None}
        print(json.dumps(res))
        print(f"agent_realtime: {done}/{n} files created at {rate}/s visible in Fusion: p50 "
              f"{res['p50_ms']} ms, p99 {res['p99_ms']} ms (target <= 200), max "
              f"{res['max_ms']} ms", file=sys.stderr)
    finally:
        subprocess.run([f"{bin_dir}/fustor-agent", "stop"], env=aenv, capture_output=True)
        subprocess.run([f"{bin_dir}/fustor-fusion", "stop"], env=fenv, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
