"""Restarts without rescans, end to end, with a real fustor-fusion and a real fustor-agent:
a Fusion that restarts with its views restored tells the leader to audit instead of
snapshotting, and the agent's directory-mtime cache (kept across its sessions and saved in
its FUSTOR_HOME) makes that audit list only the directories that changed. A restarted agent
audits with the cache it saved. When Fusion's view is no longer the one the cache was made
against (a damaged journal), the cache is dropped and the audit lists everything."""
import glob
import os
import shutil
import signal
import tempfile
import unittest

from harness import Home, free_port, journal_records, pid_alive, wait_for
from v1agent import request

FUSION = """
logging: INFO
receivers:
  rx:
    driver: http
    bind_host: 127.0.0.1
    port: {rx}
    api_keys: [{{key: push, pipe_id: p}}]
views:
  v: {{driver: fs, api_keys: [read]}}
pipes:
  p: {{receiver: rx, views: [v], session_timeout_seconds: 30}}
"""

AGENT = """
agent_id: a1
logging: INFO
sources:
  src: {{driver: fs, uri: "{root}"}}
senders:
  f: {{driver: fusion, uri: "http://127.0.0.1:{rx}", credential: {{key: push}}}}
pipes:
  p: {{source: src, sender: f, error_retry_interval: 0.2, max_backoff_seconds: 1}}
"""

DIRS, FILES = 6, 10  # files per directory


class Resume(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="fustor-e2e-tree-")
        self.addCleanup(shutil.rmtree, self.root, True)
        for d in range(DIRS):
            os.makedirs(f"{self.root}/d{d}")
            for i in range(FILES):
                with open(f"{self.root}/d{d}/f{i}.dat", "w") as f:
                    f.write("x" * i)
        self.rx = free_port()
        self.fusion = Home("fusion")
        self.fusion.put("default.yaml", FUSION.format(rx=self.rx))
        self.fusion.start_daemon(self)
        self.api = f"http://127.0.0.1:{self.fusion.api_port}/api/v1/views/v"
        self.agent = Home("agent")
        self.agent.put("default.yaml", AGENT.format(root=self.root, rx=self.rx))
        self.agent.start_daemon(self)
        wait_for(lambda: len(self.files()) == DIRS * FILES, 20, what="the first snapshot")
        wait_for(lambda: "snapshot done" in self.agent.log_text(), 10, what="its end")

    def files(self):
        status, body, _ = request("GET", f"{self.api}/tree?recursive=true&max_depth=5", "read")
        if status != 200:
            return set()
        out = set()

        def walk(n):
            if n.get("content_type") == "file":
                out.add(n["path"])
            for c in n.get("children") or []:
                walk(c)
        walk(body)
        return out

    def audits_done(self):
        return [ln for ln in self.agent.log_text().splitlines() if "audit done:" in ln]

    def kill_fusion(self):
        pid = self.fusion.pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), 10, what="Fusion to die")
        os.unlink(self.fusion.pidfile)

    def start_fusion(self):
        r = self.fusion.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_restarted_fusion_gets_an_audit_of_what_changed_not_a_snapshot(self):
        self.assertTrue(os.path.exists(f"{self.agent.dir}/data/agent/p.dircache"))
        r = self.fusion.run("stop")
        self.assertEqual(r.returncode, 0, r.stderr)
        # While Fusion is down: a new file in d2 (a watched directory: its event waits in
        # the agent; the audit lists d2 again, its mtime changed).
        with open(f"{self.root}/d2/new.dat", "w") as f:
            f.write("new")
        self.start_fusion()
        wait_for(lambda: len(self.audits_done()) >= 1, 20, what="the audit after the restart")
        log = self.agent.log_text()
        self.assertIn("Fusion holds the view already: an audit, not a snapshot", log)
        self.assertEqual(log.count("snapshot done"), 1, "no second snapshot")
        # Only d2 was listed: its 11 files; the other directories were silent.
        self.assertIn(f"audit done: {DIRS + 1} directories, {FILES + 1} files", self.audits_done()[0])
        self.assertIn("audits first", self.fusion.log_text())
        wait_for(lambda: "/d2/new.dat" in self.files(), 10, what="the new file")
        self.assertEqual(len(self.files()), DIRS * FILES + 1)
        status, st, _ = request("GET", f"{self.api}/stats", "read")
        self.assertEqual(status, 200)
        self.assertTrue(st["restored"])

    def test_a_restarted_agent_audits_with_the_cache_it_saved(self):
        r = self.agent.run("stop")
        self.assertEqual(r.returncode, 0, r.stderr)
        # Unseen while the agent is down: a file added to d4 and one removed from d5.
        with open(f"{self.root}/d4/unseen.dat", "w") as f:
            f.write("u")
        os.unlink(f"{self.root}/d5/f0.dat")
        r = self.agent.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: len(self.audits_done()) >= 1, 20, what="the audit after the restart")
        log = self.agent.log_text()
        self.assertIn(f"audit cache of {DIRS + 1} directories loaded", log)
        self.assertIn("an audit, not a snapshot", log)
        self.assertEqual(log.count("snapshot done"), 1, "no second snapshot")
        # d4 and d5 listed again, nothing else
        self.assertIn(f"audit done: {DIRS + 1} directories, {2 * FILES} files", self.audits_done()[0])
        wait_for(lambda: "/d4/unseen.dat" in self.files() and "/d5/f0.dat" not in self.files(),
                 10, what="the audit's findings")
        self.assertEqual(len(self.files()), DIRS * FILES)

    def test_a_damaged_journal_drops_the_cache_and_the_audit_lists_everything(self):
        # more records after the snapshot's: realtime events
        for i in range(5):
            with open(f"{self.root}/d0/rt{i}.dat", "w") as f:
                f.write("r")
            wait_for(lambda: f"/d0/rt{i}.dat" in self.files(), 10, what="a realtime event")
        self.kill_fusion()  # no snapshot at a clean stop: the journal holds it all
        segs = sorted(glob.glob(f"{self.fusion.dir}/data/views/v/journal-*.log"))
        self.assertEqual(len(segs), 1)
        recs = journal_records(segs[0])
        self.assertGreater(len(recs), 3)
        off, n, _ = recs[len(recs) // 2]  # a byte in the payload of a record in the middle
        with open(segs[0], "r+b") as f:
            f.seek(off + 9 + n // 2)
            b = f.read(1)
            f.seek(off + 9 + n // 2)
            f.write(bytes([b[0] ^ 0xFF]))
        self.start_fusion()
        wait_for(lambda: len(self.audits_done()) >= 1, 20, what="the audit after the restart")
        self.assertIn("journal was damaged", self.fusion.log_text())
        self.assertIn("its incarnation changed", self.agent.log_text())
        self.assertIn(f"audit done: {DIRS + 1} directories, {DIRS * FILES + 5} files",
                      self.audits_done()[0])
        wait_for(lambda: len(self.files()) == DIRS * FILES + 5, 10, what="the view reconciled")

if __name__ == "__main__":
    unittest.main()
