"""The agent's on-disk spool and Fusion's idempotent ingest, end to end.

With a real fustor-fusion and fustor-agent: realtime events made while Fusion is down go to
the pipe's spool (status shows them, the files exist) and reach Fusion, oldest first, once it
is back; a spool survives a clean stop of the agent and a start delivers it; a spool that
outgrows spool_max_mb is dropped and the leader snapshots again. With raw HTTP: a batch's
`seq` makes Fusion apply it once per session."""
import glob
import json
import os
import re
import shutil
import tempfile
import time
import unittest

from harness import Home, free_port, wait_for
from v1agent import V1Agent, event, request, row

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
agent_id: host-a
logging: INFO
sources:
  src: {{driver: fs, uri: "{root}"}}
senders:
  f: {{driver: fusion, uri: "http://127.0.0.1:{rx}", credential: {{key: k1}}, timeout_sec: 3}}
pipes:
  p:
    source: src
    sender: f
    batch_size: 20
    error_retry_interval: 0.2
    max_backoff_seconds: 0.5
    spool_max_mb: {spool}
"""


class Spool(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="fustor-e2e-tree-")
        self.addCleanup(shutil.rmtree, self.root, True)
        for d in range(4):
            os.makedirs(f"{self.root}/d{d}")
            for i in range(5):
                with open(f"{self.root}/d{d}/f{i}.dat", "w") as f:
                    f.write("x" * i)
        self.rx = free_port()
        self.fusion = Home("fusion")
        self.fusion.put("default.yaml", FUSION.format(rx=self.rx))
        self.api = f"http://127.0.0.1:{self.fusion.api_port}/api/v1/views/v"

    def start(self, spool=1024):
        self.fusion.start_daemon(self)
        self.agent = Home("agent")
        self.agent.put("default.yaml", AGENT.format(root=self.root, rx=self.rx, spool=spool))
        self.agent.start_daemon(self)
        self.spool_dir = f"{self.agent.dir}/data/agent/p.spool"
        wait_for(lambda: self.node("/d3/f4.dat") is not None, 20, what="the first snapshot")
        wait_for(lambda: "snapshot done" in self.agent.log_text(), 10, what="its end")

    def stop_fusion(self):
        r = self.fusion.run("stop")
        self.assertEqual(r.returncode, 0, r.stderr)

    def start_fusion(self):
        r = self.fusion.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)

    def node(self, path):
        status, n, _ = request("GET", f"{self.api}/tree?path={path}&recursive=false", "read")
        return n if status == 200 else None

    def size(self, path):
        return (self.node(path) or {}).get("size")

    def pipe(self):
        r = self.agent.run("status", "--json")
        try:
            doc = json.loads(r.stdout)["status"]
            return (doc.get("runtime") or {"pipes": [{}]})["pipes"][0]
        except (ValueError, KeyError, IndexError):
            return {}

    def segments(self):
        return glob.glob(f"{self.spool_dir}/*.seg")

    def write(self, rel, text, mode="w"):
        with open(f"{self.root}/{rel}", mode) as f:
            f.write(text)

    def test_events_made_while_fusion_is_down_are_spooled_then_delivered(self):
        self.start()
        self.stop_fusion()
        os.makedirs(f"{self.root}/new")
        for i in range(60):
            self.write(f"new/g{i:02d}", "n")
        st = wait_for(lambda: (lambda s: s if s.get("spooled", 0) >= 61 else None)(self.pipe()),
                      15, what="the events in the spool, in status")
        self.assertGreater(st["spool_bytes"], 0)
        self.assertTrue(self.segments(), "a segment file in the spool")
        self.assertIn("Fusion unreachable: realtime events spooled to " + self.spool_dir,
                      self.agent.log_text())
        self.start_fusion()
        wait_for(lambda: all(self.node(f"/new/g{i:02d}") for i in (0, 30, 59)), 20,
                 what="the spooled events in Fusion")
        delivered = wait_for(lambda: re.search(r"(\d+) spooled events delivered",
                                               self.agent.log_text()), 10,
                             what="the spool delivered")
        self.assertGreaterEqual(int(delivered.group(1)), 61)
        wait_for(lambda: not os.path.exists(self.spool_dir), 5, what="the spool removed")
        wait_for(lambda: self.pipe().get("spooled") == 0, 5, what="status: nothing spooled")
        status, st, _ = request("GET", f"{self.api}/stats?path=/new", "read")
        self.assertEqual(st["total_files"], 60)
        # and realtime goes straight to Fusion again
        self.write("d0/after.dat", "a")
        wait_for(lambda: self.node("/d0/after.dat"), 10, what="a new event")
        self.assertFalse(os.path.exists(self.spool_dir))

    def test_a_spool_survives_a_clean_agent_stop_and_its_events_arrive_in_order(self):
        self.start()
        self.stop_fusion()
        self.write("d1/f3.dat", "yyyyy", "a")  # in place: d1's mtime stays, no audit sees it
        self.write("d2/tmp.dat", "t")  # created, then deleted: must end deleted
        wait_for(lambda: self.pipe().get("spooled", 0) >= 2, 15, what="the first events spooled")
        os.unlink(f"{self.root}/d2/tmp.dat")
        self.write("d3/grow.dat", "a")  # then written again: the last size wins
        self.write("d3/grow.dat", "abcdef")
        time.sleep(0.5)  # read by the watcher: on the bus or in the spool already
        self.assertEqual(self.agent.run("stop").returncode, 0)
        log = self.agent.log_text()
        self.assertIn("realtime events left in the spool " + self.spool_dir, log)
        self.assertTrue(self.segments(), "the spool stays on disk")
        r = self.agent.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        found = wait_for(lambda: re.search(r"holds (\d+) events \(\d+ bytes\) from before: they "
                                           r"go to Fusion first", self.agent.log_text()), 10,
                         what="the spool found at start")
        self.assertGreaterEqual(int(found.group(1)), 4)  # f3, tmp.dat twice, grow.dat
        self.start_fusion()
        wait_for(lambda: self.size("/d3/grow.dat") == 6, 20, what="the last size of grow.dat")
        wait_for(lambda: self.size("/d1/f3.dat") == 8, 10, what="the in-place append")
        self.assertIsNone(self.node("/d2/tmp.dat"))
        wait_for(lambda: "spooled events delivered" in self.agent.log_text(), 10,
                 what="the spool delivered")
        wait_for(lambda: not os.path.exists(self.spool_dir), 5, what="the spool removed")
        self.assertNotIn("resyncs", self.agent.log_text())

    def test_a_spool_past_spool_max_mb_is_dropped_and_the_leader_snapshots_again(self):
        self.start(spool=0.002)  # about 2 KB: some 30 events
        self.stop_fusion()
        self.write("d1/f2.dat", "zzzzzzz", "a")  # only a snapshot can see it (in place)
        os.makedirs(f"{self.root}/many")
        for i in range(150):
            self.write(f"many/m{i:03d}", "m")
        wait_for(lambda: "is full (spool_max_mb: 0.002)" in self.agent.log_text(), 15,
                 what="the overflow")
        wait_for(lambda: os.path.exists(f"{self.agent.dir}/data/agent/p.resync"), 5,
                 what="the resync owed, on disk")
        time.sleep(0.5)
        self.assertEqual(self.agent.log_text().count("is full"), 1, "one overflow per outage")
        self.start_fusion()
        wait_for(lambda: self.agent.log_text().count("snapshot done") >= 2, 20,
                 what="the second snapshot")
        status, st, _ = request("GET", f"{self.api}/stats?path=/many", "read")
        self.assertEqual(st["total_files"], 150)
        self.assertEqual(self.size("/d1/f2.dat"), 9)
        wait_for(lambda: not os.path.exists(f"{self.agent.dir}/data/agent/p.resync"), 5,
                 what="no resync owed any more")


class Sequence(unittest.TestCase):
    """Batch numbers over raw HTTP, as an agent would send them."""

    def setUp(self):
        self.fusion = Home("fusion")
        self.rx = free_port()
        self.fusion.put("default.yaml", FUSION.format(rx=self.rx).replace(
            "session_timeout_seconds: 3", "session_timeout_seconds: 30"))
        self.fusion.start_daemon(self)
        self.base = f"http://127.0.0.1:{self.rx}"
        self.api = f"http://127.0.0.1:{self.fusion.api_port}/api/v1/views/v"

    NONE = object()

    def push(self, agent, rows, seq=NONE, source="message", kind="realtime", is_end=False):
        body = {"session_id": agent.session_id, "source_type": source, "is_end": is_end,
                "events": [event(rows, source=kind)] if rows else []}
        if seq is not self.NONE:
            body["seq"] = seq
        return request("POST", f"{agent.base}/ingest/{agent.session_id}/events", "k1", body)[:2]

    def size(self, path):
        status, n, _ = request("GET", f"{self.api}/tree?path={path}&recursive=false", "read")
        return n["size"] if status == 200 else None

    def test_a_batch_sent_again_is_applied_once(self):
        a = V1Agent(self.base, "k1", task_id="a:p")
        self.assertEqual(a.create_session()[0], 200)
        status, r = self.push(a, [row("/f", size=1, mtime=1000)], seq=1)
        self.assertEqual((status, r["count"]), (200, 1))
        self.assertNotIn("duplicate", r)
        status, r = self.push(a, [row("/f", size=2, mtime=1001)], seq=2)
        self.assertEqual((status, r["count"]), (200, 1))
        # seq 1 again (its answer was lost; other contents here, to tell): not applied
        status, r = self.push(a, [row("/f", size=99, mtime=2000)], seq=1)
        self.assertEqual(status, 200)
        self.assertEqual((r["duplicate"], r["count"], r["status"], r["role"]),
                         (True, 0, "ok", "leader"))
        self.assertEqual(self.size("/f"), 2)
        # out of order: 5, 3, then 4; each applied once
        for seq, size in ((5, 5), (3, 3), (4, 4)):
            status, r = self.push(a, [row(f"/g{seq}", size=size)], seq=seq)
            self.assertEqual((status, r["count"], r.get("duplicate")), (200, 1, None))
        for seq in (3, 4, 5, 2):
            self.assertTrue(self.push(a, [row("/x", size=9)], seq=seq)[1]["duplicate"])
        self.assertIsNone(self.size("/x"))
        # batches without seq (v1 agents) are never deduplicated
        for size in (7, 8):
            status, r = self.push(a, [row("/v1", size=size)])
            self.assertEqual((status, r["count"]), (200, 1))
            self.assertNotIn("duplicate", r)
        self.assertEqual(self.size("/v1"), 8)
        # numbers are per session: a new session starts again from 1
        b = V1Agent(self.base, "k1", task_id="b:p")
        self.assertEqual(b.create_session()[0], 200)
        status, r = self.push(b, [row("/h", size=1)], seq=1)
        self.assertEqual((status, r["count"]), (200, 1))

    def test_a_seq_that_is_not_a_positive_integer_is_refused(self):
        a = V1Agent(self.base, "k1", task_id="a:p")
        a.create_session()
        for bad in (0, -1, 1.5, "3", None, [1], True):
            status, r = self.push(a, [row("/bad", size=1)], seq=bad)
            self.assertEqual(status, 400, bad)
            self.assertIn("seq must be a positive integer", r["detail"])
        self.assertIsNone(self.size("/bad"))

    def test_a_refused_batch_is_applied_when_sent_again(self):
        lead = V1Agent(self.base, "k1", task_id="lead:p")
        lead.create_session()
        other = V1Agent(self.base, "k1", task_id="other:p")
        other.create_session()
        self.assertEqual(other.role, "follower")
        snap = [row("/s", size=4)]
        status, r = self.push(other, snap, seq=7, source="snapshot", kind="snapshot")
        self.assertEqual(status, 409, r)  # not the leader: refused, not recorded
        self.assertEqual(lead.close()[0], 200)
        self.assertEqual(other.heartbeat()[1]["role"], "leader")
        status, r = self.push(other, snap, seq=7, source="snapshot", kind="snapshot")
        self.assertEqual((status, r["count"]), (200, 1), r)
        self.assertNotIn("duplicate", r)
        self.assertEqual(self.size("/s"), 4)
        status, r = self.push(other, snap, seq=7, source="snapshot", kind="snapshot")
        self.assertTrue(r["duplicate"])


if __name__ == "__main__":
    unittest.main()
