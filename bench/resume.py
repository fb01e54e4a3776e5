"""Restarts without rescans: what the agent sends to Fusion after a restart, beside the
snapshot it would otherwise send, on the same warm tree (the agent_snapshot.py tree).

1. fresh Fusion, agent started: the first snapshot (time, rows, bytes the agent wrote);
2. Fusion stopped and started again: the time until the view answers with every file, and
   the agent's audit that follows (time, rows listed, bytes);
3. the agent stopped and started again: its audit with the cache it saved (same figures).
Bytes are the pipe's `bytes_sent` in `fustor-agent status --json` (request heads and
bodies that reached Fusion, heartbeats included).
Usage: python3 resume.py BIN_DIR [DIRS] [FILES]   (defaults 20000 x 50 = 1M files)"""
import http.client
import json
import os
import re
import subprocess
import sys
import time

import tree
from agent_snapshot import tree_root
from stack import Stack


def sent(st):
    r = subprocess.run([f"{st.bin_dir}/fustor-agent", "status", "--json"], env=st.aenv,
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["status"]["runtime"]["pipes"][0]["bytes_sent"]


def total_files(api):
    try:
        c = http.client.HTTPConnection("127.0.0.1", api, timeout=5)
        c.request("GET", "/api/v1/views/v/stats", headers={"X-API-Key": "r"})
        r = c.getresponse()
        body = json.loads(r.read())
        return body.get("total_files", -1) if r.status == 200 else -1
    except OSError:
        return -1


def wait_line(st, pattern, count, timeout=3600):
    """Waits for the count-th log line matching pattern; returns its match."""
    end = time.time() + timeout
    while time.time() < end:
        found = re.findall(pattern, st.agent_log())
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.02)
    raise TimeoutError(pattern)


WALK = r"(snapshot|audit) done: (\d+) directories, (\d+) files, \d+ errors in ([\d.]+) s"


def walk_figures(st, kind, count, w0, t0):
    m = wait_line(st, r"pipe p: " + WALK.replace("(snapshot|audit)", kind), count)
    wall = time.perf_counter() - t0
    time.sleep(2.5)  # the status file is written every 2 s
    return {"wall_s": round(wall, 2), "walk_s": float(m[-1]),
            "dirs": int(m[0]), "files_listed": int(m[1]),
            "bytes_sent": sent(st) - w0}


def main():
    bin_dir = sys.argv[1]
    dirs = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    shape = tree.build(tree_root(tree.shape("", dirs, files)["files"]), dirs, files)
    root, total = shape["root"], shape["files"]
    subprocess.run(["find", root], stdout=subprocess.DEVNULL, check=True)  # warm
    st = Stack(bin_dir, root, agent_log="INFO", view_params="{max_tree_items: 0}",
               source_params=f"{{max_scan_workers: {os.cpu_count()}}}",
               pipe_params=", batch_size: 1000")
    try:
        st.start_fusion()
        t0 = time.perf_counter()
        st.start_agent()
        snap = walk_figures(st, "snapshot", 1, 0, t0)
        while total_files(st.api) < total:
            time.sleep(0.01)
        # Fusion restarts (a clean stop writes a snapshot; the view is restored from it)
        subprocess.run([f"{bin_dir}/fustor-fusion", "stop"], env=st.fenv, check=True,
                       capture_output=True)
        w0 = sent(st)
        t0 = time.perf_counter()
        st.start_fusion()
        while total_files(st.api) < total:
            time.sleep(0.005)
        queryable = time.perf_counter() - t0
        fusion_restart = walk_figures(st, "audit", 1, w0, t0)
        fusion_restart["queryable_s"] = round(queryable, 2)
        # the agent restarts: its saved cache
        subprocess.run([f"{bin_dir}/fustor-agent", "stop"], env=st.aenv, check=True,
                       capture_output=True)
        t0 = time.perf_counter()
        st.start_agent()
        agent_restart = walk_figures(st, "audit", 2, 0, t0)
        snapshots = st.agent_log().count("snapshot done")
        print(json.dumps({"bench": "resume", "files": total, "dirs": shape["all_dirs"],
                          "first_snapshot": snap, "after_fusion_restart": fusion_restart,
                          "after_agent_restart": agent_restart,
                          "snapshots_in_all": snapshots}))
    finally:
        st.stop()


if __name__ == "__main__":
    main()
