"""The peers Fustor is measured against, each driven the way a user runs it: the bare C walker
(bench/bare_walk.c, the physical limit), `find -printf`, plocate's `updatedb` and `plocate`,
and a private watchman daemon (its own socket and state file, so a user's watchman is never
touched). Also: a closed-loop runner for one-process-per-query baselines, and the page-cache
drop for cold-cache runs."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time


def have(tool):
    return shutil.which(tool) is not None


def drop_caches():
    """Drops the page, dentry and inode caches; False where that is not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(args, **kw):
    t = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kw)
    return time.perf_counter() - t


def find_cmd(root):
    return ["find", root, "-printf", "%s %T@ %p\n"]


def updatedb_cmd(root, db):
    # Nothing pruned (Debian's /etc/updatedb.conf prunes /tmp), no visibility check; the
    # database is removed before each run, or updatedb would only re-read changed directories.
    return ["updatedb.plocate", "-l", "0", "-U", root, "-o", db, "--prunepaths", "",
            "--prunefs", "", "--prunenames", ""]


def updatedb(root, db):
    if os.path.exists(db):
        os.unlink(db)
    return timed(updatedb_cmd(root, db))


def proc_load(args, conc, secs, min_runs=3):
    """Runs `args` back to back from `conc` threads for `secs` seconds (each thread at least
    min_runs // conc + 1 times): latency p50/p99 in ms and runs per second."""
    lat, lock = [], threading.Lock()
    per = max(1, min_runs // conc + (min_runs % conc > 0))
    t0 = time.perf_counter()
    end = t0 + secs

    def loop():
        n = 0
        while n < per or time.perf_counter() < end:
            dt = timed(args)
            with lock:
                lat.append(dt)
            n += 1

    ts = [threading.Thread(target=loop) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"requests": len(lat), "qps": round(len(lat) / wall, 2),
            "p50_ms": round(percentile(lat, 0.50) * 1000, 3),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 3)}


def percentile(sorted_values, p):
    """Nearest rank, as bench_load reports it."""
    if not sorted_values:
        return None
    k = max(0, -(-len(sorted_values) * p // 1) - 1)
    return sorted_values[int(k)]


class Watchman:
    """A private watchman daemon: `watchman watch ROOT` starts it; `crawl(root, files)` is the
    time from that command to the first query answering every file."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fustor-bench-watchman-")
        self.sock = f"{self.dir}/sock"
        self.base = ["watchman", f"--sockname={self.sock}", f"--statefile={self.dir}/state",
                     f"--logfile={self.dir}/log", f"--pidfile={self.dir}/pid", "--no-save-state"]

    def cmd(self, *args):
        return subprocess.run(self.base + list(args), capture_output=True, text=True, check=True,
                              timeout=3600).stdout

    def query(self, root, spec):
        """One query over the socket (the JSON protocol); returns the decoded answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.sock)
            s.sendall(json.dumps(["query", root, spec]).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)

    def crawl(self, root, files):
        t = time.perf_counter()
        self.cmd("watch", root)
        got = self.query(root, {"expression": ["type", "f"], "fields": ["name"],
                                "sync_timeout": 3600 * 1000})
        dt = time.perf_counter() - t
        n = len(got.get("files", []))
        if n != files:
            raise RuntimeError(f"watchman answered {n} files, not {files}: {got.get('error')}")
        return dt

    def pid(self):
        with open(f"{self.dir}/pid") as f:
            return int(f.read())

    def stop(self):
        try:
            self.cmd("shutdown-server")
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def rss(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def version(args):
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None
