"""Realtime latency: files created at a steady rate in a watched tree (by bench_create, from
bench/create_files.c), and the time until each is visible in Fusion's view (stats of the
directory counts it: with k counted, the first k files are stamped visible), from the agent's
inotify through its realtime batches to Fusion's apply. Reports p50/p99/max over the run and
the rate the writer achieved.
Usage: python3 agent_realtime.py BIN_DIR [RATE_PER_S] [SECONDS]   (defaults 1000/s for 5 s)"""
import http.client
import json
import os
import shutil
import sys
import tempfile
import subprocess
import time

from stack import Stack


def shm():
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def measure(bin_dir, rate, secs):
    """Files created at `rate` per second for `secs` seconds into a fresh Fusion and agent:
    the create -> visible latencies and the rate the writer achieved."""
    # On tmpfs where there is one: sustained creation on the VM's ext4 stalls on its journal
    # (openat at 0.6 ms), which would measure the disk, not the pipeline.
    tree = tempfile.mkdtemp(prefix="fustor-bench-rt-", dir=shm())
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
        seen = [0.0] * n
        # the writer (bench/create_files.c) prints every file's creation time at its end
        w = subprocess.Popen([f"{bin_dir}/bench_create", f"{root}/rt", str(rate), str(secs)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        done = 0
        end = time.time() + secs + 30
        while done < n and time.time() < end:
            k = count()
            now = time.perf_counter()
            while done < min(k, n):
                seen[done] = now
                done += 1
            time.sleep(0.002)
        out, _ = w.communicate()
        created = [float(x) for x in out.split()]
        if w.returncode or len(created) != n:
            raise RuntimeError(f"bench_create failed (exit {w.returncode})")
        lat = sorted((seen[i] - created[i]) * 1000 for i in range(done))
        span = created[-1] - created[0] if n > 1 else 0
        return {"bench": "agent_realtime", "rate_per_s": rate, "files": n, "visible": done,
                "tree": tree,
                "achieved_rate_per_s": round(n / span) if span > 0 else None,
                "p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
                "p99_ms": round(lat[int(len(lat) * 0.99)], 1) if lat else None,
                "max_ms": round(lat[-1], 1) if lat else None}
    finally:
        st.stop()
        shutil.rmtree(tree, ignore_errors=True)


def main():
    bin_dir = sys.argv[1]
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    res = measure(bin_dir, rate, secs)
    print(json.dumps(res))
    print(f"agent_realtime: {res['visible']}/{res['files']} files created at {rate}/s "
          f"(achieved {res['achieved_rate_per_s']}/s) visible in Fusion: p50 {res['p50_ms']} ms, "
          f"p99 {res['p99_ms']} ms (target <= 200), max {res['max_ms']} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
