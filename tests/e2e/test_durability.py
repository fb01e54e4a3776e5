"""Durability end to end: a real fustor-fusion journals every change before it acknowledges
it, and a restart (clean, or kill -9 in the middle of a steady ingest) rebuilds the views
from the journal. A torn journal tail is cut off; a damaged record in the middle stops the
replay there without stopping Fusion; a full disk gets 507 and loses nothing acknowledged."""
import glob
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from harness import FIXTURES, JOURNAL_REC as REC, Home, free_port, journal_records, pid_alive, wait_for
from v1agent import V1Agent, event, request, row

CONFIG = """
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
journal: {{fsync: {fsync}}}
snapshot: {snapshot}
"""

AGENT = """
agent_id: a1
logging: INFO
sources:
  src: {{driver: fs, uri: "{root}"}}
senders:
  f: {{driver: fusion, uri: "http://127.0.0.1:{rx}", credential: {{key: push}}}}
pipes:
  p: {{source: src, sender: f, error_retry_interval: 0.5}}
"""


class Durability(unittest.TestCase):
    def start(self, fsync="batch", snapshot="{}"):
        self.home = Home("fusion")
        self.rx = free_port()
        self.home.put("default.yaml", CONFIG.format(rx=self.rx, fsync=fsync, snapshot=snapshot))
        self.home.start_daemon(self)
        self.api = f"http://127.0.0.1:{self.home.api_port}"
        self.recv = f"http://127.0.0.1:{self.rx}"

    def start_on_small_disk(self, size):
        """Fusion with its data directory on a tmpfs of `size`; returns that directory.
        Skips where a tmpfs cannot be mounted (not root)."""
        if os.geteuid() != 0 or not shutil.which("mount"):
            self.skipTest("needs root to mount a small tmpfs as the data directory")
        self.home = Home("fusion")
        data = os.path.join(self.home.dir, "data")
        os.makedirs(data)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", data],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs: {r.stderr.strip()}")
        self.rx = free_port()
        self.home.put("default.yaml", CONFIG.format(rx=self.rx, fsync="batch", snapshot="{}"))
        try:
            self.home.start_daemon(self)
        finally:  # cleanups run last-added first: unmounted before the home is removed
            self.addCleanup(subprocess.run, ["umount", "-l", data])
        self.api = f"http://127.0.0.1:{self.home.api_port}"
        self.recv = f"http://127.0.0.1:{self.rx}"
        return data

    def kill(self):
        pid = self.home.pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), 10, what="Fusion to die")
        os.unlink(self.home.pidfile)

    def restart(self, kill=False):
        if kill:
            self.kill()
        else:
            r = self.home.run("stop")
            self.assertEqual(r.returncode, 0, r.stderr)
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)

    def agent(self):
        a = V1Agent(self.recv, "push")
        status, resp = a.create_session()
        self.assertEqual(status, 200, resp)
        return a

    def stats(self):
        status, body, _ = request("GET", f"{self.api}/api/v1/views/v/stats", "read")
        self.assertEqual(status, 200, body)
        return body

    def tree_files(self, ready=True):
        """{path: size} of the view's files; with ready=False, {} while the view answers 503
        (no leader yet, or its first snapshot under way)."""
        status, body, _ = request("GET", f"{self.api}/api/v1/views/v/tree?recursive=true"
                                  "&max_depth=10", "read")
        if status == 503 and not ready:
            return {}
        self.assertEqual(status, 200, body)
        files = {}

        def walk(n):
            if n.get("content_type") == "file":
                files[n["path"]] = n["size"]
            for c in n.get("children") or []:
                walk(c)
        walk(body)
        return files

    def segments(self):
        return sorted(glob.glob(f"{self.home.dir}/data/views/v/journal-*.log"))

    def snapshots(self):
        return sorted(glob.glob(f"{self.home.dir}/data/views/v/snapshot-*.fsnap"))

    def wait_snapshots(self, n):
        """Waits until the log has reported n snapshots in all."""
        wait_for(lambda: self.home.log_text().count("view v: snapshot at journal position") >= n,
                 20, what=f"{n} snapshots")

    def push_batches(self, a, n, per=10, prefix="/d"):
        for b in range(n):
            rows = [row(f"{prefix}{b}/f{i}", size=b * 1000 + i) for i in range(per)]
            status, resp = a.push([event(rows)])
            self.assertEqual(status, 200, resp)

    def test_data_of_the_previous_state_format_loads(self):
        # tests/fixtures/state-format-1: a view written by the build before lineages named
        # their pipe (state format 1), a snapshot (/a, /d, /d/b) and, after it, a journaled
        # audit that listed / without /a and whose end record names no pipe.
        self.home = Home("fusion")
        self.rx = free_port()
        self.home.put("default.yaml", CONFIG.format(rx=self.rx, fsync="batch", snapshot="{}"))
        shutil.copytree(os.path.join(FIXTURES, "state-format-1", "v"),
                        os.path.join(self.home.dir, "data", "views", "v"))
        self.home.start_daemon(self)
        api = f"http://127.0.0.1:{self.home.api_port}/api/v1/views/v"
        status, st, _ = request("GET", f"{api}/stats", "read")
        self.assertEqual(status, 200, st)
        self.assertTrue(st["restored"])
        self.assertEqual((st["total_files"], st["total_directories"]), (1, 1))
        status, n, _ = request("GET", f"{api}/tree?path=/d/b", "read")
        self.assertEqual((status, n["size"], n["last_agent_id"]), (200, 2, "ag"))
        self.assertIn("/a", request("GET", f"{api}/blind-spots", "read")[1]["deletions"])

    def test_a_restart_rebuilds_the_view_from_the_journal(self):
        self.start()
        a = self.agent()
        self.push_batches(a, 30)
        before = self.tree_files()
        self.assertEqual(len(before), 300)
        self.assertFalse(self.stats()["restored"])
        self.restart()
        # Queryable at once, before any agent is back, with every acknowledged row.
        after = self.tree_files()
        self.assertEqual(after, before)
        st = self.stats()
        self.assertTrue(st["restored"])
        self.assertGreater(st["journal_position"], 0)
        self.assertIn("restored from", self.home.log_text())

    def test_a_walk_that_asks_is_synced_as_a_whole_at_its_end(self):
        # Every batch is answered 200 once a sync covers it, unless it is a batch of a
        # leader's walk that says durable_at_end: 202 once journaled, and the walk's end
        # marker gets its 200 once one sync covers the whole walk.
        self.start()
        a = V1Agent(self.recv, "push")
        status, answer = a.create_session()
        self.assertEqual(status, 200, answer)
        self.assertIs(answer["durable_at_end"], True)
        old = time.time() - 86400  # no suspects: no timer journals anything meanwhile

        def push(source, paths, **kw):
            src = "realtime" if source == "message" else source
            return a.push([event([row(p, size=1, mtime=old) for p in paths], source=src)], source,
                          **kw)
        synced = lambda st: (st["journal_position"], st["journal_synced_position"])  # noqa: E731
        # Realtime, even when it asks, and v1's snapshot batches: synced before their 200.
        for source, path, kw in (("message", "/rt/a", {"durable_at_end": True}),
                                 ("snapshot", "/v1/a", {})):
            status, resp = push(source, [path], **kw)
            self.assertEqual(status, 200, resp)
            pos, done = synced(self.stats())
            self.assertEqual(done, pos)
        before = pos
        for b in range(3):
            status, resp = push("snapshot", [f"/snap/d{b}/f{i}" for i in range(50)],
                                durable_at_end=True, seq=b + 1)
            self.assertEqual(status, 202, resp)
            self.assertEqual((resp["status"], resp["count"], resp["durable"]), ("ok", 50, False))
        # A copy of one (its answer was lost) is a duplicate, and still not durable.
        status, resp = push("snapshot", [f"/snap/d0/f{i}" for i in range(50)], durable_at_end=True,
                            seq=1)
        self.assertEqual((status, resp.get("duplicate"), resp.get("durable")), (202, True, False))
        walked, done = synced(self.stats())
        self.assertGreater(walked, before)
        self.assertEqual(done, before)
        status, resp = a.push([], "snapshot", is_end=True, durable_at_end="yes")
        self.assertEqual((status, resp.get("detail")), (400, "durable_at_end must be true or false"))
        status, resp = a.push([], "snapshot", is_end=True)
        self.assertEqual(status, 200, resp)
        self.assertGreaterEqual(synced(self.stats())[1], walked)
        self.assertEqual(len(self.tree_files()), 152)
        # What was answered survives a kill -9 (the kernel holds what was written).
        self.restart(kill=True)
        self.assertEqual(len(self.tree_files()), 152)

    def test_a_clean_stop_leaves_a_snapshot_the_restart_loads(self):
        self.start()
        a = self.agent()
        self.push_batches(a, 30)
        before = self.tree_files()
        self.restart()
        self.assertEqual(len(self.snapshots()), 1)
        self.assertEqual(self.tree_files(), before)
        self.assertTrue(self.stats()["restored"])
        self.assertIn("then 0 journal records replayed", self.home.log_text())

    def test_snapshots_while_running_let_the_journal_go(self):
        self.start(snapshot="{interval_sec: 1, keep: 1}")
        a = self.agent()
        for r in range(3):
            self.push_batches(a, 10, prefix=f"/r{r}-")
            self.wait_snapshots(r + 1)
        self.assertEqual(len(self.snapshots()), 1)
        # Only the segment the last snapshot starts, and none before it, are left.
        self.assertEqual(len(self.segments()), 1)
        self.push_batches(a, 10, prefix="/after-")  # in the journal only
        self.kill()
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.tree_files()), 400)
        self.assertIn("then 10 journal records replayed", self.home.log_text())

    def test_a_damaged_snapshot_falls_back_to_the_one_before(self):
        self.start(snapshot="{interval_sec: 1, keep: 2}")
        a = self.agent()
        self.push_batches(a, 10, prefix="/one-")
        self.wait_snapshots(1)
        self.push_batches(a, 10, prefix="/two-")
        self.wait_snapshots(2)
        self.push_batches(a, 10, prefix="/three-")
        self.kill()
        newest = self.snapshots()[-1]
        with open(newest, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0xFF]))
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.tree_files()), 300)
        self.assertIn("damaged payload (CRC); trying an older snapshot", self.home.log_text())

    def test_kill_9_while_a_snapshot_is_written(self):
        self.start(snapshot="{interval_sec: 1, keep: 2}")
        a = self.agent()
        acked = 0
        caught = False
        vdir = f"{self.home.dir}/data/views/v"
        for b in range(400):
            rows = [row(f"/s{b}/f{i}", size=i) for i in range(1000)]
            status, resp = a.push([event(rows)])
            self.assertEqual(status, 200, resp)
            acked += 1
            if acked >= 100:
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    if glob.glob(f"{vdir}/snapshot-*.fsnap.tmp.*"):
                        os.kill(self.home.pid(), signal.SIGKILL)
                        caught = True
                        break
                    time.sleep(0.0005)
                if caught:
                    break
        if not caught:
            self.skipTest("no snapshot was caught in the middle of its write")
        self.kill_wait()
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.stats()["total_files"], acked * 1000)
        self.assertEqual(glob.glob(f"{vdir}/*.tmp*"), [])

    def kill_wait(self):
        pid = self.home.pid()
        wait_for(lambda: not pid_alive(pid), 10, what="Fusion to die")
        os.unlink(self.home.pidfile)

    def test_kill_9_during_a_steady_ingest_loses_no_acknowledged_batch(self):
        self.start()
        acked, sent, stop = set(), set(), threading.Event()
        lock = threading.Lock()

        def pusher(t):
            a = V1Agent(self.recv, "push", task_id=f"agent-{t}:p")
            if a.create_session()[0] != 200:
                return
            b = 0
            while not stop.is_set():
                rows = [row(f"/t{t}/b{b}/f{i}", size=i + 1) for i in range(20)]
                with lock:
                    sent.add((t, b))
                try:
                    status, _ = a.push([event(rows)])
                except OSError:
                    return  # Fusion is gone
                if status == 200:
                    with lock:
                        acked.add((t, b))
                b += 1

        threads = [threading.Thread(target=pusher, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        wait_for(lambda: len(acked) >= 100, 30, what="a steady ingest")
        os.kill(self.home.pid(), signal.SIGKILL)
        stop.set()
        for th in threads:
            th.join(30)
        os.unlink(self.home.pidfile)
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        files = self.tree_files()
        for t, b in acked:  # every acknowledged batch, whole
            for i in range(20):
                self.assertEqual(files.get(f"/t{t}/b{b}/f{i}"), i + 1, (t, b, i))
        for path in files:  # nothing that was never sent
            _, t, b, _ = path.split("/")
            self.assertIn((int(t[1:]), int(b[1:])), sent, path)
        print(f"\n  kill -9 after {len(acked)} acknowledged batches ({len(sent)} sent): "
              f"{len(files)} files after the restart", flush=True)

    def test_a_torn_tail_is_cut_off(self):
        self.start()
        a = self.agent()
        self.push_batches(a, 5)
        self.kill()
        seg = self.segments()[-1]
        with open(seg, "ab") as f:  # a record header promising more than was written
            f.write(struct.pack("<II", 5000, 0) + b"\x01" + b"x" * 100)
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.tree_files()), 50)
        self.assertIn("incomplete last record", self.home.log_text())
        # The journal goes on, and what follows survives the next restart.
        a = self.agent()
        self.push_batches(a, 2, prefix="/after")
        self.restart()
        self.assertEqual(len(self.tree_files()), 70)
        self.assertEqual(self.home.log_text().count("incomplete last record"), 1)

    def test_a_damaged_record_in_the_middle_stops_the_replay_there(self):
        self.start()
        a = self.agent()
        self.push_batches(a, 10)
        other = V1Agent(self.recv, "push", task_id="agent-2:sync")
        status, before = other.create_session()  # the view holds data now
        self.assertEqual(status, 200, before)
        self.assertEqual(before["initial_sync"], "audit")
        self.kill()  # no snapshot at stop: the batches are in the journal only
        seg = self.segments()[-1]
        batches = [x for x in journal_records(seg) if x[2] == 1]
        self.assertEqual(len(batches), 10)
        off, n, _ = batches[4]  # the fifth batch
        with open(seg, "r+b") as f:
            f.seek(off + REC + n // 2)
            b = f.read(1)
            f.seek(off + REC + n // 2)
            f.write(bytes([b[0] ^ 0xFF]))
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        files = self.tree_files()  # the four batches before the damage, none after
        self.assertEqual(sorted({p.split("/")[1] for p in files}),
                         ["d0", "d1", "d2", "d3"])
        log = self.home.log_text()
        self.assertIn("replay stopped at position", log)
        self.assertIn("a record failing its CRC", log)
        self.assertIn("reconcile it with a full audit", log)
        self.assertTrue(os.path.exists(seg + ".corrupt"))
        # The leader reconciles what is left, and no agent cache made before counts.
        status, after = V1Agent(self.recv, "push", task_id="agent-2:sync").create_session()
        self.assertEqual(status, 200, after)
        self.assertEqual(after["initial_sync"], "audit")
        self.assertNotEqual(after["view_incarnation"], before["view_incarnation"])
        # New batches are journaled after the cut, and replay cleanly next time.
        a = self.agent()
        self.push_batches(a, 1, prefix="/new")
        self.restart()
        files = self.tree_files()
        self.assertEqual(len(files), 50)
        self.assertEqual(self.home.log_text().count("replay stopped at position"), 1)

    def test_a_full_disk_gets_507_and_loses_nothing_acknowledged(self):
        data = self.start_on_small_disk("400k")
        filler = os.path.join(data, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * 150 * 1024)
        a = self.agent()
        acked, refused = [], None
        for b in range(2000):
            rows = [row(f"/full/b{b}/f{i}", size=i) for i in range(40)]
            status, resp = a.push([event(rows)])
            if status != 200:
                refused = (b, status, resp)
                break
            acked.append(b)
        self.assertIsNotNone(refused, "the disk never filled")
        b, status, resp = refused
        self.assertEqual(status, 507, resp)
        self.assertIn("cannot store the batch durably", resp["detail"])
        self.assertIn("No space left on device", resp["detail"])
        # Still serving, and the refused batch is not in the view.
        files = self.tree_files()
        self.assertEqual(len(files), 40 * len(acked))
        self.assertNotIn(f"/full/b{b}/f0", files)
        # Space comes back: the same batch is accepted on retry.
        os.unlink(filler)
        rows = [row(f"/full/b{b}/f{i}", size=i) for i in range(40)]
        status, resp = a.push([event(rows)])
        self.assertEqual(status, 200, resp)
        acked.append(b)
        self.restart(kill=True)
        files = self.tree_files()
        self.assertEqual(len(files), 40 * len(acked))

    def test_a_real_agent_waits_out_a_full_disk_and_loses_nothing(self):
        data = self.start_on_small_disk("300k")
        root = tempfile.mkdtemp(prefix="fustor-e2e-tree-")
        self.addCleanup(shutil.rmtree, root, True)
        for i in range(20):
            open(os.path.join(root, f"before{i}.txt"), "w").close()
        agent = Home("agent")
        agent.put("default.yaml", AGENT.format(root=root, rx=self.rx))
        agent.start_daemon(self)
        wait_for(lambda: len(self.tree_files(ready=False)) == 20, 20, what="the snapshot")
        # Fill the disk, then create files: their events cannot be journaled (507).
        filler = os.path.join(data, "filler")
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * 400 * 1024)
            except OSError:
                pass
        # Enough events to need more than the free end of the journal's last page.
        for i in range(300):
            with open(os.path.join(root, f"during{i}.txt"), "w") as f:
                f.write("x" * i)
        wait_for(lambda: "Fusion cannot take" in agent.log_text(), 20,
                 what="the agent to meet the full disk")
        self.assertLess(len(self.tree_files()), 320)
        os.unlink(filler)  # room again: the queued events arrive, none lost
        wait_for(lambda: len(self.tree_files()) == 320, 30, what="the queued events")
        self.restart(kill=True)
        files = self.tree_files()
        self.assertEqual(len(files), 320)
        self.assertEqual(files["/during299.txt"], 299)


if __name__ == "__main__":
    unittest.main()
