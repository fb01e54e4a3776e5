#!/usr/bin/env python3
"""Fustor end to end in under a minute (`make demo`): a sample tree of a few thousand files,
Fusion and an agent configured as in the deployment guide (seed 000) on free loopback ports,
the agent's snapshot in Fusion's view, three live changes and how long each took to arrive,
then everything stopped and removed, also on Ctrl-C or a failure.

Python 3 standard library only. The binaries come from --bin-dir, else $FUSTOR_BIN_DIR, else
build/bin beside this script. Exit status: 0 done, 1 failed, 128 + the signal when
interrupted (130 for Ctrl-C)."""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

VIEW = "research-view"
PIPE = "research-sync"
PUSH_KEY = "my-secure-api-key"
READ_KEY = "demo-read-key"
DEADLINE = 20.0  # seconds for any one thing to happen (the snapshot takes well under one)

# Seed 000 §3.2, with the view's read key, loopback listeners and a free receiver port.
# The API's port is the seed's 8101; the demo overrides it with FUSTOR_FUSION_PORT.
FUSION_CONFIG = """\
logging:
  level: "INFO"
fusion:
  host: "127.0.0.1"
  port: 8101              # overridden by FUSTOR_FUSION_PORT={api_port}

receivers:
  http-main:
    driver: http
    bind_host: "127.0.0.1"
    port: {rx_port}
    api_keys:
      - key: "{push_key}"
        pipe_id: "{pipe}"

views:
  {view}:
    driver: fs
    disabled: false
    api_keys: ["{read_key}"]   # read-only key for the view API
    driver_params:
      hot_file_threshold: 60.0

pipes:
  {pipe}:
    receiver: http-main
    views:
      - {view}
    session_timeout_seconds: 3600
"""

# Seed 000 §4.2, with the sample tree as the source and the receiver's port.
AGENT_CONFIG = """\
logging:
  level: "INFO"

sources:
  local-research-files:
    driver: fs
    uri: "{root}"
    disabled: false

senders:
  fusion-server:
    driver: fusion
    uri: "http://127.0.0.1:{rx_port}"
    credential:
      key: "{push_key}"

pipes:
  research-sync-task:
    source: local-research-files
    sender: fusion-server
    audit_interval_sec: 36000.0
    sentinel_interval_sec: 120.0
"""


class DemoError(Exception):
    """A step failed; the message says which and why."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived."""


_signal = None


def _on_signal(signum, _frame):
    # Only note it: the steps check between polls, so a daemon is never left half-started.
    global _signal
    _signal = signum


def check_interrupt():
    if _signal is not None:
        raise Interrupted(signal.Signals(_signal).name)


def pause(seconds):
    check_interrupt()
    time.sleep(seconds)
    check_interrupt()


def wait_for(cond, what, timeout=DEADLINE, interval=0.02):
    """Polls cond() until it returns something truthy, which it returns."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        pause(interval)


def header(n, title):
    say(f"\n== {n}. {title}")


def say(text=""):
    try:
        print(text, flush=True)
    except OSError:  # stdout closed (`make demo | head`): carry on, so that cleanup runs
        sys.stdout = open(os.devnull, "w")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def human_size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def when(t):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


# ------------------------------------------------------------------ the sample tree

def make_tree(root):
    """projects/<4>/exp-<5>/run-<5>/sample-<30>.dat plus a README and params per experiment:
    3,040 files in 125 directories, mtimes spread over the last 90 days."""
    rng = random.Random(42)
    blob = bytes(range(256)) * 64
    now = time.time()
    nfiles = ndirs = nbytes = 0
    for project in ("alpha", "beta", "gamma", "delta"):
        for e in range(1, 6):
            exp = os.path.join(root, "projects", project, f"exp-{e:02d}")
            for r in range(1, 6):
                run = os.path.join(exp, f"run-{r:03d}")
                check_interrupt()
                os.makedirs(run)
                for s in range(1, 31):
                    size = rng.randint(200, 8000)
                    path = os.path.join(run, f"sample-{s:04d}.dat")
                    with open(path, "wb") as f:
                        f.write(blob[:size])
                    t = now - rng.uniform(1, 90) * 86400
                    os.utime(path, (t, t))
                    nfiles += 1
                    nbytes += size
            for name, text in (("README.txt", f"{project} experiment {e}\n" * 8),
                               ("params.json", json.dumps({"project": project, "exp": e}))):
                with open(os.path.join(exp, name), "w") as f:
                    f.write(text)
                t = now - rng.uniform(1, 90) * 86400
                os.utime(os.path.join(exp, name), (t, t))
                nfiles += 1
                nbytes += len(text)
    # Directories last, deepest first: each as new as the newest thing in it.
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "projects"), topdown=False):
        newest = max(os.stat(os.path.join(dirpath, n)).st_mtime for n in dirnames + filenames)
        os.utime(dirpath, (newest, newest))
        ndirs += 1
    return nfiles, ndirs, nbytes


# ------------------------------------------------------------------ the daemons

class Daemon:
    """One of fustor-fusion / fustor-agent with its own FUSTOR_HOME."""

    def __init__(self, prog, bin_dir, home, env):
        self.prog = prog
        self.exe = os.path.join(bin_dir, f"fustor-{prog}")
        self.home = home
        self.env = dict(env, FUSTOR_HOME=home)
        self.pid = None
        os.makedirs(os.path.join(home, f"{prog}-config"))

    def write_config(self, text):
        path = os.path.join(self.home, f"{self.prog}-config", "default.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def cli(self, *args, timeout=30):
        # Its own session: a Ctrl-C meant for the demo does not cut a `start` or `stop` short.
        try:
            return subprocess.run([self.exe, *args], env=self.env, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        except subprocess.TimeoutExpired:
            raise DemoError(f"fustor-{self.prog} {' '.join(args)} did not answer in {timeout} s")

    def read_pid(self):
        try:
            with open(os.path.join(self.home, f"{self.prog}.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def start(self):
        r = self.cli("start", "-D")
        self.pid = self.read_pid()
        if r.returncode != 0:
            raise DemoError(f"fustor-{self.prog} start -D failed (exit {r.returncode}):\n"
                            + (r.stderr or r.stdout).strip())
        say("  " + r.stdout.strip())

    def stop(self):
        """`stop`, then makes sure the process it started is gone. Never raises."""
        pid = self.pid or self.read_pid()
        if pid is None:
            return
        try:
            r = self.cli("stop")
            say("  " + (r.stdout or r.stderr).strip())
        except DemoError as e:
            say(f"  {e}")
        try:
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid) and is_ours(pid, self.home):
                say(f"  fustor-{self.prog} (pid {pid}) still running: killing it")
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def log_tail(self, n=15):
        try:
            with open(os.path.join(self.home, "logs", f"{self.prog}.log"), errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return "  (no log)"
        return "\n".join("  " + line for line in lines[-n:]) or "  (empty log)"


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def is_ours(pid, home):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"FUSTOR_HOME={home}".encode() in f.read().split(b"\0")
    except OSError:
        return False


# ------------------------------------------------------------------ the view API

class View:
    def __init__(self, api_port):
        self.base = f"http://127.0.0.1:{api_port}"
        # Loopback only: never through a proxy from the environment.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, route, params=None):
        """(status, parsed JSON or None). Connection errors count as status 0."""
        url = self.base + route
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, headers={"X-API-Key": READ_KEY})
        try:
            with self.opener.open(req, timeout=5) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except ValueError:
                return e.code, None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def view(self, what, **params):
        return self.get(f"/api/v1/views/{VIEW}/{what}", params)

    def node(self, path):
        status, body = self.view("tree", path=path, max_depth=0)
        return body if status == 200 else None


def print_stats(s):
    rows = [
        ("files", f"{s['total_files']:,}"),
        ("directories", f"{s['total_directories']:,}"),
        ("total size", f"{human_size(s['total_size'])} ({s['total_size']:,} bytes)"),
        ("newest mtime", when(s.get("latest_mtime"))),
        ("suspect files", f"{s['suspect_file_count']} (changed within hot_file_threshold)"),
        ("blind spots", "yes" if s.get("has_blind_spot") else "none"),
        ("audits done", s.get("audit_cycle_count", 0)),
        ("journal", f"{s['journal_position']:,} bytes" if "journal_position" in s else "off"),
    ]
    for k, v in rows:
        say(f"  {k:<14} {v}")


def dir_summary(node):
    kids = node.get("children") or []
    files = [c for c in kids if c["content_type"] == "file"]
    dirs = len(kids) - len(files)
    parts = []
    if dirs:
        parts.append(f"{dirs} dirs")
    parts.append(f"{len(files)} files, {human_size(sum(c['size'] for c in files))}")
    return ", ".join(parts)


def print_tree(node, expand=1, show=4):
    """The node, all its children, and the first few entries of the first `expand`
    subdirectories."""
    say(f"  {node['path']}/  ({dir_summary(node)})")
    kids = node.get("children") or []
    expanded = 0
    for i, c in enumerate(kids):
        last = i == len(kids) - 1
        branch, cont = ("└── ", "    ") if last else ("├── ", "│   ")
        if c["content_type"] == "directory":
            say(f"  {branch}{c['name'] + '/':<18} {dir_summary(c)}")
            if expanded < expand and c.get("children"):
                expanded += 1
                sub = c["children"]
                for j, g in enumerate(sub[:show]):
                    b = "└── " if j == len(sub) - 1 else "├── "
                    say(f"  {cont}{b}{g['name']:<18} {human_size(g['size']):>9}  "
                        f"{when(g['modified_time'])}")
                if len(sub) > show:
                    say(f"  {cont}└── … {len(sub) - show} more")
        else:
            say(f"  {branch}{c['name']:<18} {human_size(c['size']):>9}  "
                f"{when(c['modified_time'])}")


# ------------------------------------------------------------------ the demo

def live_change(view, n, what, path, act, arrived):
    """Does `act` on the file system, then polls the view every 5 ms until `arrived(node)`."""
    t0 = time.monotonic()
    act()
    node = wait_for(lambda: arrived(view.node(path)) or None, f"the {what} of {path} in Fusion",
                    timeout=10, interval=0.005)
    ms = (time.monotonic() - t0) * 1000
    detail = ("gone from the view" if node is True else
              f"size {node['size']}, suspect: {'yes' if node['integrity_suspect'] else 'no'}")
    say(f"  {n} {what:<8} {path}  ->  in Fusion after {ms:6.1f} ms ({detail})")


def run(args, tmp, daemons):
    t_start = time.monotonic()
    root = os.path.join(tmp, "tree")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSTOR_")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    api_port, rx_port = free_port(), free_port()
    while rx_port == api_port:
        rx_port = free_port()
    env["FUSTOR_FUSION_PORT"] = str(api_port)

    header(1, "A sample tree")
    t = time.monotonic()
    nfiles, ndirs, nbytes = make_tree(root)
    say(f"  {root}: {nfiles:,} files in {ndirs} directories, {human_size(nbytes)}, "
        f"made in {time.monotonic() - t:.2f} s")
    check_interrupt()

    header(2, "Configuration (the deployment guide's, on free loopback ports)")
    fusion = Daemon("fusion", args.bin_dir, os.path.join(tmp, "fusion-home"), env)
    agent = Daemon("agent", args.bin_dir, os.path.join(tmp, "agent-home"), env)
    daemons += [agent, fusion]  # stopped in this order
    fusion.write_config(FUSION_CONFIG.format(api_port=api_port, rx_port=rx_port,
                                             push_key=PUSH_KEY, read_key=READ_KEY,
                                             pipe=PIPE, view=VIEW))
    agent.write_config(AGENT_CONFIG.format(root=root, rx_port=rx_port, push_key=PUSH_KEY))
    say(f"  Fusion: FUSTOR_HOME={fusion.home}")
    say(f"          API on 127.0.0.1:{api_port}, receiver http-main on 127.0.0.1:{rx_port}, "
        f"pipe {PIPE} -> view {VIEW}")
    say(f"  agent:  FUSTOR_HOME={agent.home}")
    say(f"          source local-research-files ({root}) -> sender fusion-server, "
        f"pipe research-sync-task")

    header(3, "Starting fustor-fusion and fustor-agent (start -D)")
    view = View(api_port)
    fusion.start()
    wait_for(lambda: view.get("/ready")[0] == 200, "Fusion's /ready")
    agent.start()

    header(4, "Waiting for the agent's snapshot")
    t = time.monotonic()

    def snapshot_done():
        status, s = view.view("stats")
        if status == 200 and not s.get("resyncing") and s["total_files"] == nfiles \
                and s["total_directories"] == ndirs:
            return s
        return None
    stats = wait_for(snapshot_done, f"the snapshot of {nfiles} files in the view")
    say(f"  {nfiles:,} files and {ndirs} directories in the view "
        f"{time.monotonic() - t:.2f} s after the agent started")
    status, sess = view.view("sessions")
    for s in (sess or {}).get("active_sessions", []):
        say(f"  session {s['session_id'][:8]}…  task {s['task_id']}  role {s['role']}  "
            f"source {s['source_uri']}")

    header(5, f"View stats (GET /api/v1/views/{VIEW}/stats)")
    print_stats(stats)

    top = "/projects/alpha/exp-01"
    header(6, f"The tree of {top} (GET /api/v1/views/{VIEW}/tree?path={top}&max_depth=2)")
    status, tree = view.view("tree", path=top, max_depth=2)
    if status != 200:
        raise DemoError(f"tree?path={top} answered {status}: {tree}")
    print_tree(tree)

    header(7, "Live changes through the file system (the view polled every 5 ms)")
    rel = f"{top}/run-001/new-result.csv"
    path = root + rel
    first, more = b"sample,value\n1,0.5\n", b"2,0.75\n3,0.125\n"

    def create():
        with open(path, "wb") as f:
            f.write(first)

    def modify():
        with open(path, "ab") as f:
            f.write(more)
    live_change(view, "a.", "create", rel, create,
                lambda n: n if n and n["size"] == len(first) else None)
    live_change(view, "b.", "modify", rel, modify,
                lambda n: n if n and n["size"] == len(first) + len(more) else None)
    live_change(view, "c.", "delete", rel, lambda: os.remove(path), lambda n: n is None)

    header(8, "fustor-agent status (abridged)")

    def agent_settled():
        r = agent.cli("status", "--json")
        try:
            pipes = json.loads(r.stdout)["status"]["runtime"]["pipes"]
        except (ValueError, KeyError, TypeError):
            return None
        return all(p["role"] == "leader" and p["phase"] == "watching" and
                   p["events_sent"] >= nfiles for p in pipes) and pipes
    wait_for(agent_settled, "the agent's status to show the pipe leading and watching",
             interval=0.2)
    keep = ("fustor-agent:", "pid:", "active_pipes:", "runtime:", "agent_id:", "pipes:", "id:",
            "role:", "phase:", "epoch:", "events_sent:", "queued:", "spooled:", "source:",
            "watcher:", "watches:", "watch_limit:", "last_error:")
    for line in agent.cli("status").stdout.splitlines():
        if line.strip().startswith(keep):
            say("  " + line)

    return time.monotonic() - t_start


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.environ.get("FUSTOR_BIN_DIR")
                    or os.path.join(here, "..", "build", "bin"),
                    help="where fustor-fusion and fustor-agent are (default: $FUSTOR_BIN_DIR, "
                         "else build/bin)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (sample tree, configs, logs) for inspection")
    args = ap.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    for prog in ("fustor-fusion", "fustor-agent"):
        if not os.access(os.path.join(args.bin_dir, prog), os.X_OK):
            print(f"demo FAILED: {os.path.join(args.bin_dir, prog)} is not built; run `make` "
                  "first (or pass --bin-dir)", file=sys.stderr)
            return 1

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    tmp = tempfile.mkdtemp(prefix="fustor-demo-")
    daemons = []
    code, failure = 0, None
    try:
        elapsed = run(args, tmp, daemons)
    except Interrupted as e:
        code = 128 + _signal
        say(f"\n{e} received: stopping the demo")
    except DemoError as e:
        code, failure = 1, str(e)
    except Exception as e:  # any other failure still stops the daemons
        code, failure = 1, f"{type(e).__name__}: {e}"
    finally:
        if failure:
            # Before `stop`: the logs' last lines are what went wrong, not the shutdown.
            print(f"\nFAILED: {failure}", file=sys.stderr, flush=True)
            for d in daemons:
                say(f"  -- last lines of {d.home}/logs/{d.prog}.log:")
                say(d.log_tail())
        header(9, "Stopping")
        for d in daemons:
            d.stop()
        if args.keep:
            say(f"  kept {tmp} (sample tree, configs and logs)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            say(f"  removed {tmp}")
    if failure:
        print(f"\ndemo FAILED: {failure}", file=sys.stderr, flush=True)
    elif code == 0:
        say(f"\ndemo done in {elapsed:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
