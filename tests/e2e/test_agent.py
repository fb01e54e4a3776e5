"""The agent end to end against a real Fusion: a real fustor-agent scans a real directory
tree and its snapshot shows up in Fusion's view; a second agent on the same pipe follows;
when the leader goes away the follower takes over and snapshots; Fusion away at the start
and the agent retries until it is back."""
import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Home, free_port, view_paths, wait_for
from v1agent import request

FUSION = """
logging: INFO
receivers:
  rx: {{driver: http, bind_host: 127.0.0.1, port: {rx}, api_keys: [{{key: k1, pipe_id: p}}]}}
views:
  v: {{driver: fs, api_keys: [read]}}
pipes:
  p: {{receiver: rx, views: [v], session_timeout_seconds: 3}}
"""

AGENT = """
agent_id: {agent_id}
logging: INFO
sources:
  src:
    driver: fs
    uri: "{root}"
    driver_params:
      exclude: [".snapshot", "*.tmp"]
senders:
  fusion:
    driver: fusion
    uri: "http://127.0.0.1:{rx}"
    credential: {{key: k1}}
pipes:
  sync:
    source: src
    sender: fusion
    batch_size: 50
    error_retry_interval: 0.5
"""


class AgentSnapshot(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="fustor-e2e-tree-")
        self.addCleanup(shutil.rmtree, self.root, True)
        for d in range(5):
            os.makedirs(f"{self.root}/d{d}/sub")
            for f in range(30):
                with open(f"{self.root}/d{d}/f{f:02d}.dat", "w") as fh:
                    fh.write("x" * f)
            with open(f"{self.root}/d{d}/sub/deep.bin", "w") as fh:
                fh.write("deep")
        os.makedirs(f"{self.root}/.snapshot/old")
        with open(f"{self.root}/scratch.tmp", "w") as fh:
            fh.write("ignored")
        self.rx = free_port()
        self.fusion = Home("fusion")
        self.fusion.put("default.yaml", FUSION.format(rx=self.rx))
        self.api = f"http://127.0.0.1:{self.fusion.api_port}/api/v1/views/v"

    def start_fusion(self):
        self.fusion.start_daemon(self)

    def start_agent(self, agent_id):
        a = Home("agent")
        a.put("default.yaml", AGENT.format(agent_id=agent_id, root=self.root, rx=self.rx))
        a.start_daemon(self)
        return a

    def tree_paths(self):
        return view_paths(self.api, "read")

    def sessions(self):
        return request("GET", f"{self.api}/sessions", "read")[1]["active_sessions"]

    def expected(self):
        want = {"/"}
        for d in range(5):
            want |= {f"/d{d}", f"/d{d}/sub", f"/d{d}/sub/deep.bin"}
            want |= {f"/d{d}/f{f:02d}.dat" for f in range(30)}
        return want

    def test_leader_snapshot_reaches_fusion(self):
        self.start_fusion()
        a = self.start_agent("host-a")
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=20,
                 what="the snapshot in Fusion")
        status, node, _ = request("GET", f"{self.api}/tree?path=/d3/f07.dat", "read")
        self.assertEqual((node["size"], node["last_agent_id"], node["source_uri"]),
                         (7, "host-a", self.root))
        self.assertAlmostEqual(node["modified_time"],
                               os.stat(f"{self.root}/d3/f07.dat").st_mtime, places=5)
        s = self.sessions()
        self.assertEqual([(x["task_id"], x["role"]) for x in s], [("host-a:sync", "leader")])
        wait_for(lambda: "snapshot done" in a.log_text(), timeout=10, what="the snapshot's end")

        def pipe_status():
            r = a.run("status", "--json")
            doc = json.loads(r.stdout)["status"]
            return (doc.get("runtime") or {"pipes": [{}]})["pipes"][0]
        wait_for(lambda: pipe_status().get("events_sent", 0) >= len(self.expected()),
                 timeout=10, what="the pipe's state in status")
        st = pipe_status()
        self.assertEqual((st["id"], st["role"], st["phase"], st["watches"], st["queued"]),
                         ("sync", "leader", "watching", 11, 0))
        self.assertGreater(st["watch_limit"], 0)
        self.assertIsNone(st["last_error"])
        human = a.run("status").stdout
        self.assertIn("role: leader", human)

    def test_follower_takes_over_when_the_leader_stops(self):
        self.start_fusion()
        a = self.start_agent("host-a")
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=20, what="snapshot")
        b = self.start_agent("host-b")
        wait_for(lambda: len(self.sessions()) == 2, timeout=10, what="the second session")
        roles = {x["task_id"]: x["role"] for x in self.sessions()}
        self.assertEqual(roles, {"host-a:sync": "leader", "host-b:sync": "follower"})
        self.assertEqual(a.run("stop").returncode, 0)
        # A closes its session on the way out; B learns it leads at its next heartbeat.
        wait_for(lambda: {x["task_id"]: x["role"] for x in self.sessions()} ==
                 {"host-b:sync": "leader"}, timeout=10, what="B's promotion")
        wait_for(lambda: "Fusion made this agent the leader" in b.log_text(), timeout=10,
                 what="B to learn it leads")
        # promoted mid-session: it reconciles the view with a full audit, not a wipe
        wait_for(lambda: "audit done" in b.log_text(), timeout=20,
                 what="the new leader's audit")
        self.assertNotIn("snapshot of", b.log_text())
        self.assertEqual(len(self.tree_paths()), len(self.expected()))
        # B watches too: a change now reaches Fusion through it.
        with open(f"{self.root}/d0/after.dat", "w") as fh:
            fh.write("new")
        wait_for(lambda: "/d0/after.dat" in (self.tree_paths() or ()), timeout=10,
                 what="a change seen by the new leader")

    def node(self, path):
        status, n, _ = request("GET", f"{self.api}/tree?path={path}&recursive=false", "read")
        return n if status == 200 else None

    def test_realtime_changes_reach_fusion(self):
        self.start_fusion()
        self.start_agent("host-a")
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=20, what="snapshot")
        r = self.root
        # create, then write more: the close makes it complete (not suspect)
        with open(f"{r}/d1/live.txt", "w") as fh:
            fh.write("hello")
        wait_for(lambda: (self.node("/d1/live.txt") or {}).get("size") == 5, timeout=10,
                 what="a new file")
        # the write's IN_MODIFY (a partial write: suspect) can arrive a moment before the
        # close's IN_CLOSE_WRITE, which makes it complete
        wait_for(lambda: not self.node("/d1/live.txt")["integrity_suspect"], timeout=10,
                 what="the close to clear the suspect flag")
        self.assertFalse(self.node("/d1/live.txt")["agent_missing"])
        with open(f"{r}/d1/live.txt", "a") as fh:
            fh.write(" world")
        wait_for(lambda: (self.node("/d1/live.txt") or {}).get("size") == 11, timeout=10,
                 what="an append")
        # nested directories created at once, and a file deep inside
        os.makedirs(f"{r}/new/a/b")
        with open(f"{r}/new/a/b/deep.txt", "w") as fh:
            fh.write("d")
        wait_for(lambda: self.node("/new/a/b/deep.txt") is not None, timeout=10,
                 what="a nested new directory")
        # renames: a file, then a directory with its contents
        os.rename(f"{r}/d1/live.txt", f"{r}/d2/moved.txt")
        wait_for(lambda: self.node("/d2/moved.txt") is not None and
                 self.node("/d1/live.txt") is None, timeout=10, what="a file rename")
        os.rename(f"{r}/new", f"{r}/renamed")
        wait_for(lambda: self.node("/renamed/a/b/deep.txt") is not None and
                 self.node("/new") is None, timeout=10, what="a directory rename")
        with open(f"{r}/renamed/a/b/after.txt", "w") as fh:
            fh.write("a")
        wait_for(lambda: self.node("/renamed/a/b/after.txt") is not None, timeout=10,
                 what="a file in the renamed directory")
        # deletes: a file and a whole directory
        os.unlink(f"{r}/d2/moved.txt")
        shutil.rmtree(f"{r}/d4")
        wait_for(lambda: self.node("/d2/moved.txt") is None and self.node("/d4") is None,
                 timeout=10, what="deletes")
        # excluded names stay out
        with open(f"{r}/d0/skip.tmp", "w") as fh:
            fh.write("t")
        with open(f"{r}/d0/marker", "w") as fh:
            fh.write("m")
        wait_for(lambda: self.node("/d0/marker") is not None, timeout=10, what="marker")
        self.assertIsNone(self.node("/d0/skip.tmp"))

    def test_a_burst_of_ten_thousand_files(self):
        self.start_fusion()
        self.start_agent("host-a")
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=20, what="snapshot")
        os.makedirs(f"{self.root}/burst")
        for i in range(10000):
            with open(f"{self.root}/burst/f{i:05d}", "w") as fh:
                fh.write("b")

        def count():
            status, st, _ = request("GET", f"{self.api}/stats?path=/burst", "read")
            return st["total_files"] if status == 200 else -1
        wait_for(lambda: count() == 10000, timeout=60, what="10,000 files in Fusion")

    def test_agent_id_defaults_to_the_address_towards_fusion(self):
        self.start_fusion()
        a = Home("agent")
        a.put("default.yaml", AGENT.format(agent_id="x", root=self.root, rx=self.rx)
              .replace("agent_id: x\n", ""))
        self.assertEqual(a.run("start", "-D").returncode, 0)
        self.addCleanup(a.cleanup)
        self.addCleanup(a.run, "stop")
        wait_for(lambda: len(self.sessions()) == 1, timeout=10, what="a session")
        self.assertEqual(self.sessions()[0]["task_id"], "127.0.0.1:sync")  # v1's default

    def test_nothing_is_lost_while_fusion_is_paused(self):
        self.start_fusion()
        self.start_agent("host-a")
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=20, what="snapshot")
        pid = self.fusion.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            os.makedirs(f"{self.root}/paused")
            for i in range(200):
                with open(f"{self.root}/paused/f{i:03d}", "w") as fh:
                    fh.write("p")
            os.unlink(f"{self.root}/d0/f00.dat")
            time.sleep(1.5)
        finally:
            os.kill(pid, signal.SIGCONT)

        def done():
            paths = self.tree_paths() or set()
            return (sum(p.startswith("/paused/") for p in paths) == 200 and
                    "/d0/f00.dat" not in paths)
        wait_for(done, timeout=30, what="the changes made while Fusion was paused")

    def test_root_removed_and_created_again(self):
        self.start_fusion()
        a = self.start_agent("host-a")
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=20, what="snapshot")
        shutil.rmtree(self.root)
        os.makedirs(f"{self.root}/again")
        with open(f"{self.root}/again/f", "w") as fh:
            fh.write("x")
        # the watcher notices the root went away, watches the new one, the leader resyncs
        wait_for(lambda: "/again/f" in (self.tree_paths() or ()), timeout=20,
                 what="the new root's contents")
        wait_for(lambda: self.tree_paths() == {"/", "/again", "/again/f"}, timeout=20,
                 what="the old contents gone")
        self.assertIn("the root went away", a.log_text())
        with open(f"{self.root}/again/g", "w") as fh:  # and realtime works on the new root
            fh.write("y")
        try:
            wait_for(lambda: "/again/g" in (self.tree_paths() or ()), timeout=10,
                     what="realtime")
        except AssertionError:
            print(a.run("status").stdout, self.tree_paths())
            raise

    def test_sender_fails_over_along_its_uris(self):
        self.start_fusion()
        a = Home("agent")
        dead = free_port()
        a.put("default.yaml", AGENT.format(agent_id="host-a", root=self.root, rx=self.rx)
              .replace(f'uri: "http://127.0.0.1:{self.rx}"',
                       f'uri: ["http://127.0.0.1:{dead}", "http://127.0.0.1:{self.rx}"]'))
        self.assertEqual(a.run("start", "-D").returncode, 0)
        self.addCleanup(a.cleanup)
        self.addCleanup(a.run, "stop")
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=20,
                 what="the snapshot through the second URI")
        self.assertIn(f"127.0.0.1:{dead}", a.log_text())  # the first one was tried

    def test_recovery_from_a_kernel_queue_overflow(self):
        self.start_fusion()
        a = self.start_agent("host-a")
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=20, what="snapshot")
        # its end too, before the agent is frozen: else the freeze may outlast the session,
        # and the new session audits instead of finishing that snapshot
        wait_for(lambda: "snapshot done" in a.log_text(), timeout=20, what="the snapshot's end")
        with open("/proc/sys/fs/inotify/max_queued_events") as fh:
            limit = int(fh.read())
        # the agent frozen, more events than the kernel queues: some are lost
        n = limit // 2 + 2000
        os.kill(a.pid(), signal.SIGSTOP)
        try:
            for i in range(n):  # in a watched directory: a create, a write and a close each
                with open(f"{self.root}/d0/flood{i:05d}", "w") as fh:
                    fh.write("f")
        finally:
            os.kill(a.pid(), signal.SIGCONT)
        wait_for(lambda: "overflowed" in a.log_text(), timeout=20, what="the overflow noticed")

        def count():
            status, st, _ = request("GET", f"{self.api}/stats?path=/d0", "read")
            return st["total_files"] if status == 200 else -1
        # the leader snapshots again: every file is there
        wait_for(lambda: count() == 31 + n, timeout=60, what="the resync")
        # the end marker's reply (and so the log line) can come a moment after the rows; a
        # loaded machine under the sanitizers may lose events again and resync once more
        try:
            wait_for(lambda: a.log_text().count("snapshot done") >= 2, timeout=60,
                     what="the second snapshot's end")
        except AssertionError as e:
            raise AssertionError(f"{e}; the agent's log ends with:\n{a.log_text()[-3000:]}")

    def test_an_unreadable_directory_is_skipped_while_its_siblings_sync(self):
        # As root every directory is readable: the agent runs as nobody here.
        self.start_fusion()
        for dirpath, dirnames, filenames in os.walk(self.root):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o644)
        os.chmod(f"{self.root}/d2", 0)
        self.addCleanup(os.chmod, f"{self.root}/d2", 0o755)
        a = Home("agent")
        a.put("default.yaml", AGENT.format(agent_id="host-a", root=self.root, rx=self.rx))
        for dirpath, dirnames, filenames in os.walk(a.dir):
            os.chown(dirpath, 65534, 65534)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), 65534, 65534)
        os.chmod(a.dir, 0o755)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", a.exe]
        if subprocess.run(as_nobody[:-1] + ["test", "-x", a.exe]).returncode:
            self.skipTest(f"user nobody cannot run {a.exe} (a checkout in a private directory)")
        r = subprocess.run(as_nobody + ["start", "-D"], env=a.env, capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(a.cleanup)
        self.addCleanup(subprocess.run, as_nobody + ["stop"], env=a.env, capture_output=True)
        want = {p for p in self.expected() if not p.startswith("/d2/")}
        wait_for(lambda: self.tree_paths() == want, timeout=20,
                 what="everything but the unreadable directory's contents")
        self.assertIn("/d2: Permission denied", a.log_text())
        # The rows arrive before the end marker's reply: the log line may come a moment later.
        wait_for(lambda: "snapshot done" in a.log_text(), timeout=10, what="the snapshot's end")

    def test_agent_waits_for_fusion(self):
        a = self.start_agent("host-a")
        wait_for(lambda: "cannot open a session" in a.log_text(), timeout=10,
                 what="a failed attempt")
        self.start_fusion()
        wait_for(lambda: self.tree_paths() == self.expected(), timeout=40,
                 what="the snapshot once Fusion is up")


FUSION_AUDIT = """
logging: INFO
receivers:
  rx: {{driver: http, bind_host: 127.0.0.1, port: {rx}, api_keys: [{{key: k1, pipe_id: p}}]}}
views:
  v: {{driver: fs, api_keys: [read], driver_params: {{hot_file_threshold: {hot}}}}}
pipes:
  p: {{receiver: rx, views: [v], session_timeout_seconds: 3, audit_interval_sec: {audit},
      sentinel_interval_sec: 1}}
"""


class BlindSpots(unittest.TestCase):
    """The agent watches a bindfs mount of the tree, as an NFS client would: changes made
    in the tree underneath are invisible to its inotify, so only its audit (or an on-demand
    scan) can find them."""

    def setUp(self):
        if not os.path.exists("/dev/fuse"):
            self.skipTest("no /dev/fuse on this machine: FUSE mounts are impossible here")
        self.assertIsNotNone(shutil.which("bindfs"), "bindfs is missing: scripts/install-deps.sh")
        self.src = tempfile.mkdtemp(prefix="fustor-e2e-src-")
        self.mnt = tempfile.mkdtemp(prefix="fustor-e2e-mnt-")
        self.addCleanup(shutil.rmtree, self.src, True)
        self.addCleanup(os.rmdir, self.mnt)
        for d in range(3):
            os.makedirs(f"{self.src}/d{d}")
            for f in range(5):
                with open(f"{self.src}/d{d}/f{f}.dat", "w") as fh:
                    fh.write("x")
        r = subprocess.run(["bindfs", "-o", "attr_timeout=0,entry_timeout=0", self.src, self.mnt],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(subprocess.run, ["umount", self.mnt], capture_output=True)
        self.rx = free_port()
        self.fusion = Home("fusion")
        self.api = f"http://127.0.0.1:{self.fusion.api_port}/api/v1/views/v"

    def start(self, audit, hot=1):
        self.fusion.put("default.yaml", FUSION_AUDIT.format(rx=self.rx, audit=audit, hot=hot))
        self.fusion.start_daemon(self)
        a = Home("agent")
        a.put("default.yaml", AGENT.format(agent_id="host-a", root=self.mnt, rx=self.rx))
        a.start_daemon(self)
        wait_for(lambda: self.node("/d2/f4.dat") is not None, timeout=20, what="snapshot")
        return a

    def node(self, path):
        status, n, _ = request("GET", f"{self.api}/tree?path={path}&recursive=false", "read")
        return n if status == 200 else None

    def blind(self):
        return request("GET", f"{self.api}/blind-spots", "read")[1]

    def test_the_audit_finds_what_no_agent_saw(self):
        a = self.start(audit=1)
        time.sleep(0.1)
        with open(f"{self.src}/d0/blind.dat", "w") as fh:  # behind the agent's back
            fh.write("unseen")
        os.unlink(f"{self.src}/d1/f0.dat")
        wait_for(lambda: self.node("/d0/blind.dat") is not None and
                 self.node("/d1/f0.dat") is None, timeout=20, what="the audit's findings")
        n = self.node("/d0/blind.dat")
        self.assertTrue(n["agent_missing"])
        bs = self.blind()
        self.assertIn("/d0/blind.dat", [x["path"] for x in bs["additions"]])
        self.assertIn("/d1/f0.dat", bs["deletions"])
        st = request("GET", f"{self.api}/stats", "read")[1]
        self.assertTrue(st["has_blind_spot"])
        self.assertGreaterEqual(st["audit_cycle_count"], 1)
        wait_for(lambda: "audit done" in a.log_text(), timeout=10, what="the audit's end")
        # the same file then written through the agent's own mount: realtime clears it
        with open(f"{self.mnt}/d0/blind.dat", "a") as fh:
            fh.write("seen")
        wait_for(lambda: not (self.node("/d0/blind.dat") or {"agent_missing": True})
                 ["agent_missing"], timeout=10, what="realtime confirmation")

    def test_an_on_demand_scan_finds_it_at_once(self):
        self.start(audit=3600)
        with open(f"{self.src}/d2/now.dat", "w") as fh:
            fh.write("n")
        status, body, _ = request("GET", f"{self.api}/tree?path=/d2&on_demand_scan=true", "read")
        self.assertEqual(status, 200, body)
        job = body["job_id"]
        wait_for(lambda: self.node("/d2/now.dat") is not None, timeout=20,
                 what="the scanned file")
        wait_for(lambda: request("GET", f"{self.api}/jobs/{job}", "read")[1]["status"] ==
                 "COMPLETED", timeout=20, what="the job to complete")
        self.assertTrue(self.node("/d2/now.dat")["agent_missing"])  # found by a scan

    def test_the_sentinel_rechecks_suspect_files(self):
        with open(f"{self.src}/d0/hot.dat", "w") as fh:  # fresh at the snapshot: suspect
            fh.write("a")
        self.start(audit=3600, hot=60)
        suspects = lambda: [x["path"] for x in  # noqa: E731
                            request("GET", f"{self.api}/suspect-list", "read")[1]]
        wait_for(lambda: "/d0/hot.dat" in suspects(), timeout=10, what="a suspect")
        with open(f"{self.src}/d0/hot.dat", "a") as fh:  # grows where no inotify sees it
            fh.write("bcdef")
        # No audit for an hour, no realtime event: only the leader's sentinel (every second)
        # can tell Fusion the new size.
        wait_for(lambda: self.node("/d0/hot.dat")["size"] == 6, timeout=15,
                 what="the sentinel's feedback")
        self.assertIn("/d0/hot.dat", suspects())  # changed: still being written


class RecordingFusion(http.server.ThreadingHTTPServer):
    """A stand-in Fusion that answers as v1 does (or, with arrays, says it takes rows as
    arrays, as ours does; with at_end, says durable_at_end and answers the walk's batches
    that ask for it 202, as ours does; with audits, says initial_sync: audit) and records
    every ingest body, and every POST's path and phase in order (`calls`)."""

    def __init__(self, arrays, at_end=False, audits=False):
        self.arrays, self.at_end, self.audits = arrays, at_end, audits
        self.bodies, self.calls = [], []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), RecordingHandler)


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.server.lock:
            self.server.calls.append((self.path.rstrip("/"), body.get("source_type"),
                                      body.get("is_end")))
        if self.path.rstrip("/") == "/api/v1/pipe/session":
            answer = {"session_id": "s-1", "role": "leader", "is_leader": True,
                      "session_timeout_seconds": 30, "message": "Session created successfully"}
            if self.server.arrays:
                answer["row_arrays"] = True
            if self.server.at_end:
                answer["durable_at_end"] = True
            if self.server.audits:
                answer["initial_sync"] = "audit"
        elif self.path.endswith("/events"):
            with self.server.lock:
                self.server.bodies.append(body)
            answer = {"status": "ok"}
            if self.server.at_end and body.get("durable_at_end") and not body.get("is_end"):
                answer["durable"] = False
                self.send_answer(202, answer)
                return
        else:  # heartbeats, consistency markers
            answer = {"status": "ok", "role": "leader"}
        self.send_answer(200, answer)

    def send_answer(self, status, answer):
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


class RowFormat(unittest.TestCase):
    """Snapshot rows go as v1's objects unless the Fusion's session answer says row_arrays;
    then as arrays in the order of the event's fields (file_name left out)."""

    def snapshot_rows(self, arrays, at_end=False, audits=False):
        root = tempfile.mkdtemp(prefix="fustor-e2e-rows-")
        self.addCleanup(shutil.rmtree, root, True)
        os.makedirs(f"{root}/d")
        with open(f"{root}/d/f.txt", "w") as fh:
            fh.write("hello")
        fusion = RecordingFusion(arrays, at_end, audits)
        self.fusion = fusion
        threading.Thread(target=fusion.serve_forever, daemon=True).start()
        self.addCleanup(fusion.server_close)
        self.addCleanup(fusion.shutdown)
        a = Home("agent")
        a.put("default.yaml", AGENT.format(agent_id="host-r", root=root,
                                           rx=fusion.server_address[1]))
        a.start_daemon(self)
        walk = "audit" if audits else "snapshot"
        wait_for(lambda: f"{walk} done" in a.log_text(), timeout=20, what=f"the {walk}")
        with fusion.lock:
            events = [e for b in fusion.bodies for e in b.get("events", [])
                      if e.get("message_source") == "snapshot"]
        return events, os.stat(f"{root}/d/f.txt")

    def test_objects_for_a_fusion_that_does_not_say_row_arrays(self):
        events, st = self.snapshot_rows(False)
        rows = [r for e in events for r in e["rows"]]
        self.assertEqual(sorted(r["path"] for r in rows), ["/", "/d", "/d/f.txt"])
        f = next(r for r in rows if r["path"] == "/d/f.txt")
        self.assertEqual((f["file_name"], f["size"], f["is_directory"]), ("f.txt", 5, False))
        self.assertEqual(f["modified_time"], st.st_mtime)
        self.assertIn("file_name", events[0]["fields"])
        self.assertFalse(any("durable_at_end" in b for b in self.fusion.bodies))

    def test_arrays_for_a_fusion_that_says_row_arrays(self):
        events, st = self.snapshot_rows(True)
        fields = ["path", "size", "modified_time", "created_time", "is_directory"]
        self.assertTrue(all(e["fields"] == fields for e in events), events)
        rows = [dict(zip(fields, r)) for e in events for r in e["rows"]]
        self.assertTrue(all(isinstance(r, list) for e in events for r in e["rows"]))
        self.assertEqual(sorted(r["path"] for r in rows), ["/", "/d", "/d/f.txt"])
        f = next(r for r in rows if r["path"] == "/d/f.txt")
        self.assertEqual((f["size"], f["is_directory"]), (5, False))
        self.assertEqual((f["modified_time"], f["created_time"]), (st.st_mtime, st.st_ctime))

    def test_walk_batches_ask_a_fusion_that_takes_it_to_sync_at_the_end(self):
        # Answered 202, the snapshot's batches count as sent; its end marker does not ask, and
        # only its 200 completes the snapshot.
        events, _ = self.snapshot_rows(True, at_end=True)
        with self.fusion.lock:
            bodies = list(self.fusion.bodies)
        walk = [b for b in bodies if b.get("source_type") == "snapshot" and not b.get("is_end")]
        ends = [b for b in bodies if b.get("source_type") == "snapshot" and b.get("is_end")]
        self.assertTrue(walk and all(b.get("durable_at_end") is True for b in walk), bodies)
        self.assertEqual(len(ends), 1, bodies)
        self.assertNotIn("durable_at_end", ends[0])
        self.assertEqual(sorted(r[0] for e in events for r in e["rows"]), ["/", "/d", "/d/f.txt"])

    def test_an_audit_starts_at_fusion_before_its_walk(self):
        # So that a file the walk misses, made while it lists, is protected by the realtime
        # event that brings it after that start (v1's agent leaves the start to its first
        # audit row, which may come after such events).
        self.snapshot_rows(True, audits=True)
        with self.fusion.lock:
            calls = list(self.fusion.calls)
        start = calls.index(("/api/v1/pipe/consistency/audit/start", None, None))
        rows = [i for i, c in enumerate(calls) if c[0].endswith("/events") and c[1] == "audit"]
        end = calls.index(("/api/v1/pipe/consistency/audit/end", None, None))
        self.assertTrue(rows, calls)
        self.assertLess(start, rows[0], calls)
        self.assertEqual(calls[rows[-1]][2], True, calls)  # the end marker, then audit/end
        self.assertLess(rows[-1], end, calls)


if __name__ == "__main__":
    unittest.main()
