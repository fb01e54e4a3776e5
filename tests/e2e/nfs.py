"""Shared storage as NFS clients see it, for the end-to-end scenarios: one backing directory
mounted with bindfs once per client. The kernel's inotify on one FUSE mount reports only what
was done through that mount, as an NFS client's inotify reports only its own writes; a write
made directly in the backing directory, or through another client's mount, is invisible to
it. Clients "a" and "b" run agents; client "c" runs none (v1's blind-spot client).

`Cluster` runs one Fusion and any number of agents, each with its own temp FUSTOR_HOME and
free ports, and offers the queries the scenarios need. Every wait polls until a deadline.
Python 3 standard library only (ctypes for inotify)."""
import ctypes
import json
import os
import shutil
import re
import signal
import struct
import subprocess
import tempfile
import time

from harness import Home, free_port, pid_alive, view_paths, wait_for
from v1agent import request

IN_ALL_EVENTS = 0x00000FFF
BINDFS_OPTS = "attr_timeout=0,entry_timeout=0,negative_timeout=0,allow_other,default_permissions"


class InotifyProbe:
    """One inotify watch on a directory, read without blocking (ctypes over libc)."""

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self.libc.inotify_add_watch(self.fd, os.fsencode(path), IN_ALL_EVENTS) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {path}")

    def names(self):
        """The names of the events queued so far (empty when none)."""
        out = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            off = 0
            while off + 16 <= len(data):
                _wd, _mask, _cookie, n = struct.unpack_from("iIII", data, off)
                out.append(data[off + 16:off + 16 + n].rstrip(b"\0").decode(errors="replace"))
                off += 16 + n

    def close(self):
        os.close(self.fd)


class SharedStorage:
    """A backing directory and one bindfs mount of it per client."""

    def __init__(self, clients=("a", "b", "c")):
        self.backing = tempfile.mkdtemp(prefix="fustor-nfs-backing-")
        os.chmod(self.backing, 0o777)  # agents running as nobody probe the storage's clock
        self.mounts = {}
        try:
            for c in clients:
                mnt = tempfile.mkdtemp(prefix=f"fustor-nfs-client-{c}-")
                r = subprocess.run(["bindfs", "-o", BINDFS_OPTS, self.backing, mnt],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    os.rmdir(mnt)
                    raise RuntimeError(f"bindfs cannot mount here: {r.stderr.strip()}")
                self.mounts[c] = mnt
        except Exception:
            self.close()
            raise

    @staticmethod
    def unavailable():
        """Why the NFS scenarios cannot run on this machine, or None."""
        if not os.path.exists("/dev/fuse"):
            return "no /dev/fuse: FUSE mounts (bindfs) are impossible here"
        if not shutil.which("bindfs"):
            return "bindfs is not installed (scripts/install-deps.sh installs it)"
        return None

    def path(self, client, rel):
        """rel (with a leading /) as client sees it; client None: the backing directory."""
        return (self.backing if client is None else self.mounts[client]) + rel

    def write(self, client, rel, data="x", mode="w"):
        p = self.path(client, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, mode) as f:
            f.write(data)

    def clear(self):
        """Empties the backing directory (between scenarios)."""
        for name in os.listdir(self.backing):
            p = os.path.join(self.backing, name)
            if os.path.isdir(p) and not os.path.islink(p):
                for dirpath, dirnames, _ in os.walk(p):
                    for d in dirnames:
                        os.chmod(os.path.join(dirpath, d), 0o755)
                os.chmod(p, 0o755)
                shutil.rmtree(p)
            else:
                os.unlink(p)

    def check_isolation(self, watched=("a", "b")):
        """The property the scenarios rest on, checked on this machine: a write made in the
        backing directory or through client c reaches no inotify watch on a's or b's mount,
        while a write through the mount itself does. Raises AssertionError if not."""
        probes = {c: InotifyProbe(self.mounts[c]) for c in watched}
        try:
            self.write(None, "/.probe-direct")
            self.write("c", "/.probe-through-c")
            seen = {c: [] for c in watched}
            for c in watched:
                self.write(c, f"/.probe-fence-{c}")  # arrives after anything queued before
                fence = f".probe-fence-{c}"
                wait_for(lambda: seen[c].extend(probes[c].names()) or fence in seen[c],
                         timeout=5, what=f"client {c}'s own write on its inotify watch")
                leaked = {".probe-direct", ".probe-through-c"} & set(seen[c])
                if leaked:
                    raise AssertionError(f"client {c}'s inotify saw {sorted(leaked)}: this FUSE "
                                         "does not isolate clients as NFS does")
        finally:
            for p in probes.values():
                p.close()
            for name in os.listdir(self.backing):
                if name.startswith(".probe-"):
                    os.unlink(os.path.join(self.backing, name))

    def close(self):
        for mnt in self.mounts.values():
            for _ in range(50):
                if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)  # busy for a moment after an agent stops
            else:
                subprocess.run(["umount", "-l", mnt], capture_output=True)
            try:
                os.rmdir(mnt)
            except OSError:
                pass
        self.mounts = {}
        self.clear()
        shutil.rmtree(self.backing, ignore_errors=True)


PUSH_KEY, QUERY_KEY, STRICT_KEY = "test-api-key-123", "test-query-key-456", "test-strict-key-789"
VIEW = "integration-test-ds"

# v1's e2e set-up (reference fustor-v1.md §8), timings scaled down: view
# integration-test-ds, push key test-api-key-123, query key test-query-key-456, tombstone
# TTL 0.5 s, hot threshold 60 s; a strict pipe (allow_concurrent_push: false) for test_a4.
FUSION_YAML = """logging: INFO
fusion: {{session_cleanup_interval: 0.2}}
receivers:
  rx:
    driver: http
    bind_host: 127.0.0.1
    port: {rx}
    api_keys:
      - {{key: test-api-key-123, pipe_id: integration}}
      - {{key: test-strict-key-789, pipe_id: strict}}
views:
  integration-test-ds:
    driver: fs
    api_keys: [test-query-key-456]
    driver_params: {{hot_file_threshold: {hot}, consistency: {{tombstone_ttl_seconds: 0.5}}}}
  strict-view: {{driver: fs, api_keys: [test-query-key-456]}}
pipes:
  integration:
    receiver: rx
    views: [integration-test-ds]
    session_timeout_seconds: {timeout}
    audit_interval_sec: {audit}
    sentinel_interval_sec: {sentinel}
  strict:
    receiver: rx
    views: [strict-view]
    allow_concurrent_push: false
    session_timeout_seconds: {timeout}
"""

AGENT_YAML = """agent_id: {agent_id}
logging: INFO
sources:
  nfs:
    driver: fs
    uri: "{root}"
    driver_params: {{throttle_interval_sec: 0.25}}
senders:
  fusion: {{driver: fusion, uri: "http://127.0.0.1:{rx}", credential: {{key: {key}}}}}
pipes:
  integration:
    source: nfs
    sender: fusion
    batch_size: 100
    error_retry_interval: 0.5
    max_backoff_seconds: 2
"""


class Agent:
    def __init__(self, home, client, agent_id, nobody=False):
        self.home, self.client, self.agent_id, self.nobody = home, client, agent_id, nobody

    def log(self):
        return self.home.log_text()

    def pid(self):
        return self.home.pid()

    def wait_watching(self, timeout=20):
        """Until the agent's watches are in place: it logs so when inotify's initial walk is
        over. A session comes up alongside that walk, so a write through this agent's mount
        before it may reach no watch (a follower has no snapshot to make up for it)."""
        wait_for(lambda: re.search(r"source \S+: watching ", self.log()), timeout=timeout,
                 what=f"{self.agent_id}'s watches")

    def status(self):
        """The agent's `status --json`, its pipes keyed by id ({} while not running)."""
        r = self.home.run("status", "--json")
        if r.returncode != 0:
            return {}
        runtime = json.loads(r.stdout).get("status", {}).get("runtime", {})
        return {p["id"]: p for p in runtime.get("pipes", [])}


class Cluster:
    """A Fusion and agents on a SharedStorage, each process in a temp FUSTOR_HOME that the
    test's cleanups stop and remove."""

    def __init__(self, test, storage, audit=3600, sentinel=3600, timeout=3, hot=60,
                 fusion_yaml=None):
        self.test, self.storage = test, storage
        self.rx = free_port()
        self.fusion = Home("fusion")
        self.fusion_text = (fusion_yaml or FUSION_YAML).format(
            rx=self.rx, audit=audit, sentinel=sentinel, timeout=timeout, hot=hot)
        self.fusion.put("default.yaml", self.fusion_text)
        self.api = f"http://127.0.0.1:{self.fusion.api_port}/api/v1"
        self.agents = {}

    # -------------------------------------------------------------- processes

    def start_fusion(self):
        self.fusion.start_daemon(self.test)

    def stop_fusion(self):
        r = self.fusion.run("stop")
        self.test.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def restart_fusion(self):
        r = self.fusion.run("start", "-D")
        self.test.assertEqual(r.returncode, 0, r.stderr)

    def start_agent(self, client, agent_id=None, clock_offset=None, key=PUSH_KEY, nobody=False,
                    yaml=None, subdir=""):
        """An agent on client's mount (or its subdir); clock_offset (seconds) sets its test
        clock. yaml: another agent config template ({agent_id}, {root}, {rx}, {key})."""
        agent_id = agent_id or f"host-{client}"
        home = Home("agent")
        home.put("default.yaml", (yaml or AGENT_YAML).format(
            agent_id=agent_id, root=self.storage.mounts[client] + subdir, rx=self.rx, key=key))
        if clock_offset is not None:
            home.env["FUSTOR_TEST_CLOCK_OFFSET"] = str(clock_offset)
        a = Agent(home, client, agent_id, nobody)
        if nobody:
            self._start_as_nobody(a)
        else:
            home.start_daemon(self.test)
        self.agents[client] = a
        return a

    def _start_as_nobody(self, a):
        home = a.home
        for dirpath, _dirnames, filenames in os.walk(home.dir):
            os.chown(dirpath, 65534, 65534)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), 65534, 65534)
        os.chmod(home.dir, 0o755)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", home.exe]
        if subprocess.run(cmd[:-1] + ["test", "-x", home.exe]).returncode:
            self.test.skipTest(f"user nobody cannot run {home.exe} (a checkout in a private "
                               "directory)")
        r = subprocess.run(cmd + ["start", "-D"], env=home.env, capture_output=True, text=True)
        self.test.assertEqual(r.returncode, 0, r.stderr)
        self.test.addCleanup(home.cleanup)
        self.test.addCleanup(subprocess.run, cmd + ["stop"], env=home.env, capture_output=True)

    def kill_agent(self, client, sig=signal.SIGKILL):
        a = self.agents[client]
        pid = a.pid()
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            wait_for(lambda: not pid_alive(pid), 5, what="the killed agent to exit")
        return pid

    # -------------------------------------------------------------- queries

    def view_get(self, what, view=VIEW, key=QUERY_KEY):
        status, body, _ = request("GET", f"{self.api}/views/{view}/{what}", key)
        return status, body

    def node(self, path, view=VIEW, key=QUERY_KEY):
        """The tree node at path (no children), or None."""
        status, body = self.view_get(f"tree?path={path}&recursive=false", view, key)
        return body if status == 200 else None

    def paths(self, view=VIEW, key=QUERY_KEY):
        """Every path in the view (None while it cannot answer)."""
        return view_paths(f"{self.api}/views/{view}", key)

    def stats(self, view=VIEW, key=QUERY_KEY):
        return self.view_get("stats", view, key)[1]

    def sessions(self, view=VIEW):
        status, body = self.view_get("sessions", view)
        return body["active_sessions"] if status == 200 else []

    def session_of(self, agent_id, view=VIEW):
        for s in self.sessions(view):
            if s["agent_id"] == agent_id:
                return s
        return None

    def leaders(self, view=VIEW):
        return [s["agent_id"] for s in self.sessions(view) if s["role"] == "leader"]

    def blind_spots(self, view=VIEW):
        return self.view_get("blind-spots", view)[1]

    def suspects(self, view=VIEW):
        return [x["path"] for x in self.view_get("suspect-list", view)[1]]

    def wait_node(self, path, cond=lambda n: n is not None, timeout=20, what=None, view=VIEW,
                  key=QUERY_KEY):
        return wait_for(lambda: (lambda n: n if cond(n) else None)(self.node(path, view, key)),
                        timeout=timeout, what=what or f"{path} in the view")

    def wait_gone(self, path, timeout=20, what=None, view=VIEW):
        wait_for(lambda: self.node(path, view) is None, timeout=timeout,
                 what=what or f"{path} gone from the view")

    def wait_leader(self, agent_id, timeout=20):
        wait_for(lambda: self.leaders() == [agent_id], timeout=timeout,
                 what=f"{agent_id} to lead")

    def audits_done(self, agent):
        return agent.log().count("audit done")

    def wait_audits(self, agent, n=1, timeout=30):
        """Waits for n more audits of agent than it has done now."""
        start = self.audits_done(agent)
        wait_for(lambda: self.audits_done(agent) >= start + n, timeout=timeout,
                 what=f"{n} audit(s) by {agent.agent_id}")
