"""Fusion over loopback HTTP, as a v1 agent and a v1 client meet it:
- ingest: 1M files shaped like the v1 benchmark (1000 dirs x 4 subdirs x 250 files) pushed as
  snapshot batches of 1000 rows from 2 connections (keep-alive), rows/s end to end;
- memory: Fusion's RSS growth per file entry after that ingest;
- tree: p50/p99 of GET /tree on a 1000-entry directory, beside `find -maxdepth 1` on a real
  directory of 1000 files (the baseline a user would otherwise run). Measured twice: from
  Python's http.client (whose own parsing of the 200 KB reply is part of the figure) and from
  one curl process over one keep-alive connection, which is closer to the server's own time;
- stats: p50 of GET /stats for the root and for a small subtree (O(1) either way);
- restart: Fusion stopped and started again, seconds until the view answers with every file
  (the journal's replay), and the journal's size on disk.
Usage: python3 fusion_http.py BIN_DIR [DIRS] [JOURNAL]
  DIRS defaults to 1000 -> 1M files; JOURNAL is the journal's fsync policy (batch, the
  default; always; off) or `none` for a Fusion without a journal (memory only, as v1)."""
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from peers import rss
from stack import free_port


def batch_body(sid, rows):
    return json.dumps({"session_id": sid, "source_type": "snapshot", "is_end": False,
                       "events": [{"event_type": "update", "message_source": "snapshot",
                                   "event_schema": "fs", "table": "files",
                                   "fields": ["path", "file_name", "size", "modified_time",
                                              "created_time", "is_directory"],
                                   "rows": rows}]}).encode()


def main():
    bin_dir = sys.argv[1]
    dirs = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    journal = sys.argv[3] if len(sys.argv) > 3 else "batch"
    jconf = "{enabled: false}" if journal == "none" else f"{{fsync: {journal}}}"
    home = tempfile.mkdtemp(prefix="fustor-bench-")
    api, rx = free_port(), free_port()
    os.makedirs(f"{home}/fusion-config")
    with open(f"{home}/fusion-config/default.yaml", "w") as f:
        f.write(f"""logging: WARNING
receivers:
  rx: {{driver: http, bind_host: 127.0.0.1, port: {rx},
       api_keys: [{{key: k, pipe_id: p}}]}}
views:
  v: {{driver: fs, driver_params: {{max_tree_items: 0}}}}
pipes:
  p: {{receiver: rx, views: [v], session_timeout_seconds: 600}}
journal: {jconf}
""")
    env = dict(os.environ, FUSTOR_HOME=home, FUSTOR_FUSION_PORT=str(api))
    exe = os.path.join(bin_dir, "fustor-fusion")
    subprocess.run([exe, "start", "-D"], env=env, check=True, capture_output=True)
    pid = int(open(f"{home}/fusion.pid").read())
    results = {"bench": "fusion_http", "journal": journal}
    try:
        hdr = {"X-API-Key": "k", "Content-Type": "application/json"}
        c = http.client.HTTPConnection("127.0.0.1", rx)
        c.request("POST", "/api/v1/pipe/session/", json.dumps({"task_id": "bench:p"}), hdr)
        sid = json.loads(c.getresponse().read())["session_id"]

        # Prepare every batch body first: the timing covers Fusion, not the client's JSON.
        bodies, rows, n = [], [], 0
        for d in range(dirs):
            for s in range(4):
                for f in range(250):
                    rows.append({"path": f"/dir_{d:04d}/sub_{s}/file_{f:04d}.dat",
                                 "file_name": f"file_{f:04d}.dat", "size": n % 100000,
                                 "modified_time": 1706000000.0 + n, "created_time": 1706000000.0,
                                 "is_directory": False})
                    n += 1
                    if len(rows) == 1000:
                        bodies.append(batch_body(sid, rows))
                        rows = []
        if rows:
            bodies.append(batch_body(sid, rows))
        rss0 = rss(pid)

        def pusher(part):
            conn = http.client.HTTPConnection("127.0.0.1", rx)
            for b in part:
                conn.request("POST", f"/api/v1/pipe/ingest/{sid}/events", b, hdr)
                r = conn.getresponse()
                r.read()
                assert r.status == 200, r.status

        t0 = time.perf_counter()
        threads = [threading.Thread(target=pusher, args=(bodies[i::2],)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        c.request("POST", f"/api/v1/pipe/ingest/{sid}/events",
                  json.dumps({"source_type": "snapshot", "is_end": True, "events": []}), hdr)
        c.getresponse().read()
        rss1 = rss(pid)
        results["ingest_rows"] = n
        results["ingest_rows_per_s"] = round(n / dt)
        results["ingest_mb_per_s"] = round(sum(map(len, bodies)) / dt / 1e6, 1)
        results["rss_bytes_per_entry"] = round((rss1 - rss0) / (n + dirs * 5), 1)
        del bodies

        # A 1000-entry directory, in Fusion and on disk.
        big = [{"path": f"/thousand/f{i:04d}", "size": i, "modified_time": 1.0 + i,
                "is_directory": False} for i in range(1000)]
        c.request("POST", f"/api/v1/pipe/ingest/{sid}/events", batch_body(sid, big), hdr)
        c.getresponse().read()
        q = http.client.HTTPConnection("127.0.0.1", api)
        lat = []
        for _ in range(300):
            t = time.perf_counter()
            q.request("GET", "/api/v1/views/v/tree?path=/thousand&max_depth=1", headers=hdr)
            r = q.getresponse()
            body = r.read()
            lat.append(time.perf_counter() - t)
            assert r.status == 200 and body.count(b'"name"') == 1001
        results["tree_1000_p50_ms"] = round(statistics.median(lat) * 1000, 3)
        results["tree_1000_p99_ms"] = round(sorted(lat)[int(len(lat) * 0.99)] * 1000, 3)
        url = f"http://127.0.0.1:{api}/api/v1/views/v/tree?path=/thousand&max_depth=1"
        args = ["curl", "-s", "-H", "X-API-Key: k"]
        for _ in range(300):
            args += ["-o", "/dev/null", "-w", "%{time_total}\n", url]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()
        results["tree_1000_curl_p50_ms"] = round(statistics.median(map(float, out)) * 1000, 3)
        disk = tempfile.mkdtemp(prefix="fustor-bench-find-")
        for i in range(1000):
            open(f"{disk}/f{i:04d}", "w").close()
        flat = []
        for _ in range(100):
            t = time.perf_counter()
            subprocess.run(["find", disk, "-maxdepth", "1", "-printf", "%s %T@ %p\n"],
                           stdout=subprocess.DEVNULL, check=True)
            flat.append(time.perf_counter() - t)
        shutil.rmtree(disk)
        results["find_1000_p50_ms"] = round(statistics.median(flat) * 1000, 3)
        for name, path in (("root", "/"), ("subtree", "/dir_0000/sub_0")):
            lat = []
            for _ in range(300):
                t = time.perf_counter()
                q.request("GET", f"/api/v1/views/v/stats?path={path}", headers=hdr)
                r = q.getresponse()
                r.read()
                lat.append(time.perf_counter() - t)
            results[f"stats_{name}_p50_ms"] = round(statistics.median(lat) * 1000, 3)
        if journal != "none":
            total = n + 1000
            jdir = f"{home}/data/views/v"
            results["journal_mb"] = round(sum(os.path.getsize(f"{jdir}/{x}")
                                              for x in os.listdir(jdir)) / 1e6, 1)
            subprocess.run([exe, "stop"], env=env, check=True, capture_output=True)
            t0 = time.perf_counter()
            subprocess.run([exe, "start", "-D"], env=env, check=True, capture_output=True)
            while True:
                try:
                    q = http.client.HTTPConnection("127.0.0.1", api)
                    q.request("GET", "/api/v1/views/v/stats", headers=hdr)
                    r = q.getresponse()
                    st = json.loads(r.read())
                    if r.status == 200 and st["total_files"] >= total:
                        break
                except OSError:
                    pass
                time.sleep(0.005)
            results["restart_to_queryable_s"] = round(time.perf_counter() - t0, 3)
    finally:
        subprocess.run([exe, "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(results))
    print(f"fusion_http: ingest {results['ingest_rows_per_s'] / 1e3:.0f}k rows/s over HTTP, "
          f"RSS {results['rss_bytes_per_entry']} B/entry, tree(1000) p50 "
          f"{results['tree_1000_p50_ms']} ms, from curl {results['tree_1000_curl_p50_ms']} ms "
          f"(find: {results['find_1000_p50_ms']} ms), stats "
          f"p50 root {results['stats_root_p50_ms']} ms / subtree "
          f"{results['stats_subtree_p50_ms']} ms; journal {journal}"
          + (f", {results['journal_mb']} MB, restart to queryable "
             f"{results['restart_to_queryable_s']} s" if journal != "none" else ""),
          file=sys.stderr)


if __name__ == "__main__":
    main()
