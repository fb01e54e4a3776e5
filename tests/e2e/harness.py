"""Shared helpers for Fustor's end-to-end tests: real binaries, a temp FUSTOR_HOME each,
polling with deadlines instead of blind sleeps. Python 3 standard library only."""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from v1agent import request

BIN_DIR = os.environ.get("FUSTOR_BIN_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin")
FIXTURES = os.environ.get("FUSTOR_FIXTURES") or os.path.join(
    os.path.dirname(__file__), "..", "fixtures")


def binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is not built; run `make` first")
    return path


def free_port():
    """A TCP port that is free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_free_ports(text):
    """Replaces every `port: N` in a YAML text with a free port, so tests never collide."""
    return re.sub(r"(\bport:\s*)(\d+)", lambda m: m.group(1) + str(free_port()), text)


def wait_for(cond, timeout=10.0, interval=0.05, what="condition"):
    """Polls cond() until it returns a truthy value; fails with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at the state of each of its threads. After a
    # SIGKILL the main thread can be a zombie while another one still finishes a write (and
    # still holds the process's files and locks).
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().split(") ", 1)[1][0] not in "ZX":
                    return True
        return False
    except OSError:
        return False


class Home:
    """A temporary FUSTOR_HOME with helpers to write config and run a binary's CLI."""

    def __init__(self, prog):
        self.prog = prog  # "fusion" or "agent"
        self.dir = tempfile.mkdtemp(prefix=f"fustor-e2e-{prog}-")
        self.config_dir = os.path.join(self.dir, f"{prog}-config")
        os.makedirs(self.config_dir)
        self.env = dict(os.environ, FUSTOR_HOME=self.dir)
        for k in ("FUSTOR_LOG_LEVEL", "FUSTOR_FUSION_PORT"):
            self.env.pop(k, None)
        if prog == "fusion":
            self.api_port = free_port()
            self.env["FUSTOR_FUSION_PORT"] = str(self.api_port)
        self.exe = binary(f"fustor-{prog}")

    def put(self, name, text):
        path = os.path.join(self.config_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def copy_fixture(self, rel, name="default.yaml"):
        """Copies a fixture config, giving each listener a free port."""
        with open(os.path.join(FIXTURES, rel), encoding="utf-8") as f:
            text = f.read()
        self.put(name, with_free_ports(text))

    def run(self, *args, timeout=30):
        return subprocess.run([self.exe, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    @property
    def pidfile(self):
        return os.path.join(self.dir, f"{self.prog}.pid")

    @property
    def logfile(self):
        return os.path.join(self.dir, "logs", f"{self.prog}.log")

    def log_text(self):
        try:
            with open(self.logfile) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def pid(self):
        with open(self.pidfile) as f:
            return int(f.read().strip())

    def start_daemon(self, test, *args):
        """`start -D` (with args), which must succeed; the test stops it and removes the
        home when it ends (cleanups run last-added first: stop, then cleanup)."""
        r = self.run("start", *args, "-D")
        test.assertEqual(r.returncode, 0, r.stderr)
        test.addCleanup(self.cleanup)
        test.addCleanup(self.run, "stop")
        return r

    def cleanup(self):
        """Stops anything still running from this home, then removes it. Fails if a
        sanitizer reported anything in the daemon's log."""
        log = self.log_text()
        try:
            pid = self.pid()
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not pid_alive(pid), 5, what="killed daemon to exit")
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
        if "Sanitizer" in log or "runtime error:" in log:
            raise AssertionError("sanitizer report in the daemon log:\n" + log)


def view_paths(view_url, key, empty=None):
    """Every path in a view's tree (GET {view_url}/tree?path=/&recursive=true), or `empty`
    while the view cannot answer."""
    status, t, _ = request("GET", f"{view_url}/tree?path=/&recursive=true", key)
    if status != 200:
        return empty
    out, stack = set(), [t]
    while stack:
        n = stack.pop()
        out.add(n["path"])
        stack += n.get("children") or []
    return out


JOURNAL_HDR, JOURNAL_REC = 32, 9  # a journal segment's header, a record's header


def journal_records(path):
    """(offset, payload length, type) of each whole record of a Fusion journal segment."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], JOURNAL_HDR
    while off + JOURNAL_REC <= len(data):
        n = struct.unpack_from("<I", data, off)[0]
        if off + JOURNAL_REC + n > len(data):
            break
        out.append((off, n, data[off + 8]))
        off += JOURNAL_REC + n
    return out
