"""Realtime latency: files created at a steady rate in a watched tree, and the time until each
is visible in Fusion's view (stats of the directory counts it), from the agent's inotify
through its realtime batches to Fusion's apply. Reports p50/p99/max over the run.
Usage: python3 agent_realtime.py BIN_DIR [RATE_PER_S] [SECONDS]   (defaults 1000/s for 5 s)"""
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time

from stack import Stack


def main():
    bin_dir = sys.argv[1]
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    tree = tempfile.mkdtemp(prefix="fustor-bench-rt-")
    root = f"{tree}/tree"
    os.makedirs(f"{root}/rt")
    st = Stack(bin_dir, root)
    api = st.api
    st.start_fusion()
    st.start_agent()
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
        st.stop()
        shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    main()
