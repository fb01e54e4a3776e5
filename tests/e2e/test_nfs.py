"""Fustor v1's end-to-end acceptance scenarios (reference fustor-v1.md §8) on shared storage
simulated with bindfs: clients a and b run agents on their own mounts of one backing
directory, client c runs none, so what it writes (or what is written in the backing
directory directly) is a blind spot that only audits, scans and the sentinel can find.

Each scenario starts its own Fusion and agents (temp FUSTOR_HOME, free ports); the mounts are
shared by the scenarios of a class and emptied between them. The measured facts (failover
time, realtime propagation latency) are printed, never asserted."""
import os
import signal
import threading
import time
import unittest

from harness import FIXTURES, free_port, pid_alive, wait_for
from nfs import AGENT_YAML, PUSH_KEY, QUERY_KEY, STRICT_KEY, VIEW, Cluster, SharedStorage
from v1agent import request

# Seed 001's fan-out and aggregation: storage a's pipe feeds a realtime view, an archive view
# and a lake; storage b's pipe feeds the lake only.
FAN_OUT_AND_AGGREGATION = """logging: INFO
receivers:
  rx:
    driver: http
    bind_host: 127.0.0.1
    port: {rx}
    api_keys: [{{key: key-a, pipe_id: storage-a}}, {{key: key-b, pipe_id: storage-b}}]
views:
  realtime-view: {{driver: fs, api_keys: [test-query-key-456], driver_params: {{max_tree_items: 1000}}}}
  archive-view: {{driver: fs, api_keys: [test-query-key-456], driver_params: {{max_tree_items: 0}}}}
  lake: {{driver: fs, api_keys: [test-query-key-456]}}
pipes:
  storage-a: {{receiver: rx, views: [realtime-view, archive-view, lake], allow_concurrent_push: true}}
  storage-b: {{receiver: rx, views: [lake], session_timeout_seconds: {timeout}}}
"""

# v1's field-mapping scenario: size is redirected to remapped_size (a projection: only the
# mapped fields are sent), so Fusion's nodes keep size 0 with the right path and times.
AGENT_YAML_MAPPED = AGENT_YAML + """    fields_mapping:
      - {{to: path, source: ["path:string"]}}
      - {{to: file_name, source: ["file_name:string"]}}
      - {{to: remapped_size, source: ["size:integer"]}}
      - {{to: modified_time, source: ["modified_time:number"]}}
      - {{to: created_time, source: ["created_time:number"]}}
      - {{to: is_directory, source: ["is_directory:boolean"]}}
"""


class NfsCase(unittest.TestCase):
    storage = None

    @classmethod
    def setUpClass(cls):
        why = SharedStorage.unavailable()
        if why:
            raise unittest.SkipTest(why)
        try:
            cls.storage = SharedStorage()
        except RuntimeError as e:
            raise unittest.SkipTest(str(e))
        try:
            cls.storage.check_isolation()
        except Exception:
            cls.storage.close()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.storage:
            cls.storage.close()

    def setUp(self):
        self.s = self.storage
        self.s.clear()
        for d in range(3):
            for f in range(5):
                self.s.write(None, f"/d{d}/f{f}.dat", "x" * f)

    def cluster(self, **kw):
        c = Cluster(self, self.s, **kw)
        c.start_fusion()
        return c

    def start_a_then_b(self, c, **kw):
        """Agent a, leading once its snapshot is in; then agent b, following."""
        a = c.start_agent("a", **kw.get("a", {}))
        c.wait_leader("host-a")
        c.wait_node("/d2/f4.dat", what="a's snapshot")
        b = c.start_agent("b", **kw.get("b", {}))
        wait_for(lambda: c.session_of("host-b"), timeout=20, what="b's session")
        a.wait_watching()
        b.wait_watching()
        return a, b

    @staticmethod
    def latency(c, path, write):
        """Seconds from write() to path showing in the view (a measured fact)."""
        t0 = time.monotonic()
        write()
        c.wait_node(path, timeout=20)
        return time.monotonic() - t0


class LeaderAndFollowers(NfsCase):
    def test_a1_leader_election_first_come_first_served(self):
        c = self.cluster()
        self.start_a_then_b(c)
        sessions = c.sessions()
        leaders = [s for s in sessions if s["role"] == "leader"]
        self.assertEqual(len(leaders), 1, sessions)
        self.assertEqual(leaders[0]["agent_id"], "host-a")
        self.assertTrue(leaders[0]["can_snapshot"] and leaders[0]["can_audit"])

    def test_a2_follower_io_isolation(self):
        c = self.cluster()
        self.start_a_then_b(c)
        b = c.session_of("host-b")
        self.assertEqual(b["role"], "follower")
        self.assertFalse(b["can_snapshot"] or b["can_audit"])
        self.assertTrue(b["can_realtime"])
        # Written through b's mount: a's inotify cannot see it, there is no audit for an
        # hour, so only b's realtime events can bring it.
        dt = self.latency(c, "/d1/from-b.dat", lambda: self.s.write("b", "/d1/from-b.dat", "b"))
        n = c.node("/d1/from-b.dat")
        self.assertEqual(n["last_agent_id"], "host-b")
        self.assertFalse(n["agent_missing"])
        print(f"\n[measured] realtime propagation through a follower: {dt * 1000:.0f} ms")

    def test_a3_component_crash_isolation(self):
        # (1) An unreadable directory: the agent runs as nobody (as root squash makes NFS
        # root), its audit skips the directory with an error and syncs its siblings.
        c = self.cluster(audit=1)
        os.chmod(self.s.path(None, "/d1"), 0)
        a = c.start_agent("a", nobody=True)
        c.wait_node("/d2/f4.dat", what="the readable directories")
        c.wait_audits(a)
        self.assertIsNone(c.node("/d1/f0.dat"))
        self.s.write(None, "/d0/later.dat")  # found by the next audit, despite the error
        c.wait_node("/d0/later.dat", what="the next audit")
        self.assertIn("/d1: Permission denied", a.log())
        self.assertTrue(pid_alive(a.pid()))
        os.chmod(self.s.path(None, "/d1"), 0o755)
        c.wait_node("/d1/f0.dat", what="the directory once readable again")
        # (2) Fusion paused: the agent keeps running, holds what it cannot deliver (the
        # first batch waits in flight, the next ones queue), and delivers when it resumes.
        fpid = c.fusion.pid()
        os.kill(fpid, signal.SIGSTOP)
        written = []
        try:
            def write_until_queued():
                written.append(f"/d0/while-paused-{len(written)}.dat")
                self.s.write("a", written[-1])
                p = a.status().get("integration", {})
                return p.get("queued", 0) + p.get("spooled", 0) > 0

            wait_for(write_until_queued, timeout=30, interval=0.2,
                     what="the agent to queue events the paused Fusion does not take")
            self.assertTrue(pid_alive(a.pid()))
        finally:
            os.kill(fpid, signal.SIGCONT)
        for path in written:
            c.wait_node(path, what="the files written while Fusion was paused")

    def test_a3_session_recovery_after_a_server_side_close(self):
        c = self.cluster()
        self.start_a_then_b(c)
        old = c.session_of("host-a")["session_id"]
        status, body, _ = request("DELETE", f"{c.api}/pipe/session/{old}", PUSH_KEY)
        self.assertEqual(status, 200, body)
        wait_for(lambda: (c.session_of("host-a") or {}).get("session_id") not in (None, old),
                 timeout=20, what="a new session of host-a")
        self.assertNotEqual(c.session_of("host-a")["session_id"], old)
        self.assertIn(c.session_of("host-a")["role"], ("leader", "follower"))
        self.assertEqual(len(c.leaders()), 1)
        # b, the oldest live session, took over when a's closed.
        self.assertEqual(c.leaders(), ["host-b"])

    def test_a4_discovery_409_and_419(self):
        c = self.cluster()
        status, body, _ = request("GET", f"{c.api}/pipe/session/", PUSH_KEY)
        self.assertEqual((status, body["view_id"], body["status"]), (200, VIEW, "authorized"))
        # A pipe with allow_concurrent_push: false takes one session at a time.
        first = {"task_id": "agent-x:strict", "client_info": {"source_uri": "/mnt/x"}}
        status, s1, _ = request("POST", f"{c.api}/pipe/session/", STRICT_KEY, first)
        self.assertEqual(status, 200, s1)
        second = {"task_id": "agent-y:strict", "client_info": {"source_uri": "/mnt/y"}}
        status, body, _ = request("POST", f"{c.api}/pipe/session/", STRICT_KEY, second)
        self.assertEqual(status, 409, body)
        self.assertRegex(body["detail"].lower(), "locked|concurrent")
        # A heartbeat on a session that is gone.
        status, body, _ = request("POST", f"{c.api}/pipe/session/no-such-session/heartbeat",
                                  PUSH_KEY, {"can_realtime": True})
        self.assertEqual(status, 419, body)
        self.assertRegex(body["detail"].lower(), "not found|obsoleted|expired")
        # The view answers once its first snapshot is in (503 before).
        c.start_agent("a")
        c.wait_node("/d2/f4.dat", what="the snapshot")
        status, st, _ = request("GET", f"{c.api}/views/{VIEW}/stats", QUERY_KEY)
        self.assertEqual(status, 200)
        for k in ("total_files", "total_directories", "has_blind_spot", "logical_now"):
            self.assertIn(k, st)

    def test_e1_leader_failover_and_e2_new_leader_duties(self):
        c = self.cluster(audit=1, timeout=2)
        a, b = self.start_a_then_b(c)
        self.s.write("a", "/d0/before-failover.dat")
        c.wait_node("/d0/before-failover.dat")
        t0 = time.monotonic()
        c.kill_agent("a")
        c.wait_leader("host-b", timeout=20)
        failover = time.monotonic() - t0
        lead = c.session_of("host-b")
        self.assertTrue(lead["can_snapshot"] and lead["can_audit"])
        print(f"\n[measured] failover (leader killed -> follower leads): {failover:.2f} s "
              f"(session timeout 2 s)")
        # The new leader's duties: its audit finds what c wrote, nothing is wiped.
        self.s.write("c", "/d1/blind-after-failover.dat", "c")
        n = c.wait_node("/d1/blind-after-failover.dat", what="b's audit")
        self.assertTrue(n["agent_missing"])
        paths = c.paths()
        self.assertIn("/d0/before-failover.dat", paths)
        for d in range(3):
            for f in range(5):
                self.assertIn(f"/d{d}/f{f}.dat", paths)
        # The rows arrive before the end marker's reply: the log line may come a moment later.
        wait_for(lambda: c.audits_done(b) >= 1, timeout=10, what="b's audit to end")

    def test_hb1_heartbeat_timeout(self):
        c = self.cluster(timeout=2)
        a = c.start_agent("a")
        c.wait_leader("host-a")
        old = c.session_of("host-a")["session_id"]
        pid = c.kill_agent("a", signal.SIGSTOP)
        try:
            wait_for(lambda: c.session_of("host-a") is None, timeout=20,
                     what="the paused agent's session to expire")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: c.session_of("host-a"), timeout=20, what="a new session")
        self.assertNotEqual(c.session_of("host-a")["session_id"], old)
        self.assertEqual(c.leaders(), ["host-a"])
        self.assertTrue(pid_alive(pid))
        wait_for(lambda: "419" in a.log() or "expired" in a.log(), timeout=10,
                 what="the agent's note of its expired session")


class BlindSpots(NfsCase):
    def start(self, c):
        a, b = self.start_a_then_b(c)
        c.wait_audits(a)
        return a, b

    def test_b1_blind_spot_creation(self):
        c = self.cluster(audit=1)
        a, _ = self.start(c)
        self.s.write("c", "/d0/blind.dat", "unseen")  # bumps /d0's mtime too
        n = c.wait_node("/d0/blind.dat", what="the audit's discovery")
        self.assertTrue(n["agent_missing"])
        wait_for(lambda: "/d0/blind.dat" in
                 [x["path"] for x in c.blind_spots()["additions"]], timeout=10,
                 what="the blind-spot list")
        self.assertTrue(c.stats()["has_blind_spot"])

    def test_b2_blind_spot_deletion(self):
        c = self.cluster(audit=1)
        a, _ = self.start(c)
        self.s.write("a", "/d1/doomed.dat")
        c.wait_node("/d1/doomed.dat", what="realtime")
        os.unlink(self.s.path("c", "/d1/doomed.dat"))
        c.wait_gone("/d1/doomed.dat", what="the audit's deletion")
        wait_for(lambda: "/d1/doomed.dat" in c.blind_spots()["deletions"], timeout=10,
                 what="the deletion in the blind-spot list")

    def test_b3_blind_spot_modification(self):
        c = self.cluster(audit=1)
        a, _ = self.start(c)
        self.s.write("a", "/d2/grows.dat", "a")
        c.wait_node("/d2/grows.dat", what="realtime")
        self.s.write("c", "/d2/grows.dat", "ccc", mode="a")
        self.s.write("c", "/d2/.trigger")  # an in-place append leaves the directory's mtime
        st = os.stat(self.s.path(None, "/d2/grows.dat"))
        n = c.wait_node("/d2/grows.dat", lambda n: n and n["size"] == 4, what="the audit's update")
        self.assertAlmostEqual(n["modified_time"], st.st_mtime, places=3)
        self.assertTrue(n["agent_missing"])
        self.s.write("a", "/d2/grows.dat", "a", mode="a")  # a realtime touch clears it
        c.wait_node("/d2/grows.dat", lambda n: n and not n["agent_missing"],
                    what="realtime confirmation")

    def test_b4_blind_spot_list_clearing(self):
        c = self.cluster(audit=1)
        a, _ = self.start(c)
        self.s.write("c", "/d0/A.dat")
        self.s.write("c", "/d0/C.dat")
        adds = lambda: {x["path"] for x in c.blind_spots()["additions"]}  # noqa: E731
        wait_for(lambda: {"/d0/A.dat", "/d0/C.dat"} <= adds(), timeout=20, what="A and C")
        os.unlink(self.s.path("c", "/d0/A.dat"))
        self.s.write("c", "/d0/B.dat")
        wait_for(lambda: "/d0/B.dat" in adds() and "/d0/A.dat" not in adds(), timeout=20,
                 what="A out, B in")
        self.assertIn("/d0/C.dat", adds())  # no clearing per audit
        self.s.write("b", "/d0/C.dat", "seen", mode="a")  # realtime through b
        c.wait_node("/d0/C.dat", lambda n: n and not n["agent_missing"],
                    what="realtime clears agent_missing")

    def test_f1_on_demand_scan(self):
        c = self.cluster()  # no audit for an hour
        a, _ = self.start_a_then_b(c)
        self.s.write(None, "/d2/server-side.dat")  # on the "NFS server": no inotify anywhere
        status, body = c.view_get("tree?path=/d2&on_demand_scan=true")
        self.assertEqual(status, 200, body)
        c.wait_node("/d2/server-side.dat", what="the on-demand scan")
        wait_for(lambda: "scan" in a.log() and "/d2" in a.log(), timeout=10,
                 what="the scan command in the leader's log")


class ClockSkew(NfsCase):
    def test_h_clock_skew_tolerance(self):
        c = self.cluster(audit=1)
        a, b = self.start_a_then_b(c, a={"clock_offset": 7200}, b={"clock_offset": -3600})
        drift = lambda ag: ag.status().get("integration", {}).get(  # noqa: E731
            "storage_clock_drift_sec")
        wait_for(lambda: drift(a) is not None and 7100 <= -drift(a) <= 7300, timeout=20,
                 what="a's drift of about -2 h")
        wait_for(lambda: drift(b) is not None and 3500 <= drift(b) <= 3700, timeout=20,
                 what="b's drift of about +1 h")
        # A fresh file found by the audit is suspect (hot threshold 60 s) ...
        self.s.write("c", "/d1/fresh.dat", "c")
        c.wait_node("/d1/fresh.dat", lambda n: n and n["integrity_suspect"],
                    what="a suspect found by the audit")
        # ... and a realtime write through the -1 h agent clears it.
        self.s.write("b", "/d1/fresh.dat", "b", mode="a")
        c.wait_node("/d1/fresh.dat", lambda n: n and not n["integrity_suspect"],
                    what="the suspect cleared by realtime")
        # Fusion's logical clock keeps to the storage's time despite the +2 h agent.
        for i in range(5):
            self.s.write("a", f"/d0/tick-{i}.dat")
        c.wait_node("/d0/tick-4.dat")
        self.assertLess(abs(c.stats()["logical_now"] - time.time()), 600)


class Deployments(NfsCase):
    def test_pipe_basic(self):
        c = self.cluster()
        c.start_agent("a").wait_watching()
        c.wait_node("/d2/f4.dat")
        dt = self.latency(c, "/d0/new.dat", lambda: self.s.write("a", "/d0/new.dat", "1"))
        print(f"\n[measured] realtime propagation (create -> visible): {dt * 1000:.0f} ms")
        self.s.write("a", "/d0/new.dat", "12345", mode="a")
        c.wait_node("/d0/new.dat", lambda n: n and n["size"] == 6, what="the modification")
        os.unlink(self.s.path("a", "/d0/new.dat"))
        c.wait_gone("/d0/new.dat")
        os.rename(self.s.path("a", "/d1"), self.s.path("a", "/d1-renamed"))
        c.wait_node("/d1-renamed/f3.dat", what="the renamed directory's contents")
        c.wait_gone("/d1")

    def test_i8_hot_reload_adds_a_pipe_and_a_view(self):
        c = self.cluster()
        a = c.start_agent("a")
        c.wait_node("/d2/f4.dat")
        session = c.session_of("host-a")["session_id"]
        self.s.write(None, "/extra/old.dat")
        # Fusion: a new key, pipe and view; the agent: a new source, sender and pipe.
        c.fusion.put("default.yaml", c.fusion_text.replace(
            "      - {key: test-strict-key-789, pipe_id: strict}\n",
            "      - {key: test-strict-key-789, pipe_id: strict}\n"
            "      - {key: extra-key, pipe_id: extra}\n").replace(
            "pipes:\n", "pipes:\n  extra: {receiver: rx, views: [extra-view]}\n").replace(
            "views:\n", "views:\n  extra-view: {driver: fs, api_keys: [test-query-key-456]}\n"))
        r = c.fusion.run("reload")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(a.home.config_dir, "default.yaml")) as f:
            text = f.read()
        a.home.put("default.yaml", text.replace("sources:\n", "sources:\n  extra-src: {driver: fs, uri: \""
                   + self.s.path("a", "/extra") + "\"}\n").replace(
            "senders:\n", "senders:\n  extra-fusion: {driver: fusion, uri: \"http://127.0.0.1:"
            f"{c.rx}\", credential: {{key: extra-key}}}}\n") +
            "  extra: {source: extra-src, sender: extra-fusion}\n")
        r = a.home.run("reload")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        c.wait_node("/old.dat", view="extra-view", what="the new pipe's snapshot")
        self.s.write("a", "/extra/new.dat")
        c.wait_node("/new.dat", view="extra-view", what="the new pipe's realtime events")
        # The pipe that was there goes on in the same session.
        self.assertEqual(c.session_of("host-a")["session_id"], session)
        self.s.write("a", "/d0/still.dat")
        c.wait_node("/d0/still.dat")

    def test_k_fan_out_and_aggregation(self):
        c = self.cluster(fusion_yaml=FAN_OUT_AND_AGGREGATION)
        for client in ("a", "b"):
            self.s.write(None, f"/department_{client}/{client}-0.dat")
        c.start_agent("a", key="key-a", subdir="/department_a")
        c.start_agent("b", key="key-b", subdir="/department_b")
        # Fan-out: storage a's pipe feeds three views; aggregation: the lake holds both.
        for view in ("realtime-view", "archive-view", "lake"):
            c.wait_node("/a-0.dat", view=view, what=f"a's snapshot in {view}")
        c.wait_node("/b-0.dat", view="lake", what="b's snapshot in the lake")
        self.assertIsNone(c.node("/b-0.dat", view="realtime-view"))
        self.s.write("a", "/department_a/a-1.dat")
        self.s.write("b", "/department_b/b-1.dat")
        for view in ("realtime-view", "archive-view", "lake"):
            c.wait_node("/a-1.dat", view=view, what=f"a's realtime event in {view}")
        c.wait_node("/b-1.dat", view="lake")
        # Each storage was snapshotted, not audited into blind spots ...
        self.assertFalse(c.node("/b-0.dat", view="lake")["agent_missing"])
        self.assertFalse(c.stats("lake")["has_blind_spot"])
        # ... and keeps its own leader in the lake.
        self.assertEqual(sorted(c.leaders("lake")), ["host-a", "host-b"])
        # HA dynamic adjustment: a reload, and the views still answer.
        r = c.fusion.run("reload")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(c.stats("lake")["total_files"], 4, c.paths("lake"))

    def test_restart_of_fusion_under_load(self):
        c = self.cluster()
        c.start_agent("a")
        c.wait_node("/d2/f4.dat")
        written, stop = [], threading.Event()

        def writer():
            i = 0
            while not stop.is_set() and i < 2000:
                self.s.write("a", f"/load/f{i:05d}.dat", str(i))
                written.append(f"/load/f{i:05d}.dat")
                i += 1
                time.sleep(0.002)

        t = threading.Thread(target=writer)
        t.start()
        try:
            wait_for(lambda: len(written) > 200, timeout=20, what="the load to start")
            c.stop_fusion()  # a clean stop: snapshot at exit, the journal before that
            wait_for(lambda: len(written) > 400, timeout=20, what="writes while Fusion is down")
            c.restart_fusion()
        finally:
            stop.set()
            t.join()
        want = set(written) | {"/load"}
        wait_for(lambda: want <= (c.paths() or set()), timeout=30,
                 what=f"all {len(written)} files written across the restart")
        st = c.stats()
        self.assertGreater(st["restored"], 0)  # the view came back from disk, not a rescan
        print(f"\n[measured] {len(written)} files written across a Fusion restart, all present")

    def test_field_mapping(self):
        c = self.cluster()
        c.start_agent("a", yaml=AGENT_YAML_MAPPED)
        n = c.wait_node("/d0/f3.dat")
        st = os.stat(self.s.path(None, "/d0/f3.dat"))
        self.assertEqual(n["size"], 0)  # redirected to remapped_size, which Fusion ignores
        self.assertAlmostEqual(n["modified_time"], st.st_mtime, places=3)
        self.s.write("a", "/d1/mapped.dat", "12345")
        n = c.wait_node("/d1/mapped.dat")
        self.assertEqual(n["size"], 0)


class SeedConfigs(NfsCase):
    """The user's own configs (seeds 000 and 001), verbatim but for paths and ports."""

    def seed(self, rel, **subst):
        with open(os.path.join(FIXTURES, rel), encoding="utf-8") as f:
            text = f.read()
        for old, new in subst.items():
            self.assertIn(old, text)
            text = text.replace(old, new)
        return text

    def start_seed_fusion(self, c, files, activate=None):
        for name, text in files.items():
            c.fusion.put(name, text)
        r = c.fusion.run("start", *([activate] if activate else []), "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(c.fusion.cleanup)
        self.addCleanup(c.fusion.run, "stop")

    def seed_agent(self, c, key):
        return self.seed("seed000/agent-config/default.yaml",
                         **{'"/mnt/data/source_files"': f'"{self.s.mounts["a"]}"',
                            "http://<FUSION_SERVER_IP>:18888": f"http://127.0.0.1:{c.rx}",
                            '"my-secure-api-key"': f'"{key}"'})

    def test_seed_000_verbatim(self):
        c = Cluster(self, self.s)
        fusion = self.seed("seed000/fusion-config/default.yaml",
                           **{"port: 8101": f"port: {c.fusion.api_port}",
                              "port: 18888": f"port: {c.rx}"})
        self.start_seed_fusion(c, {"default.yaml": fusion})
        agent = c.fusion.__class__("agent")
        agent.put("default.yaml", self.seed_agent(c, "my-secure-api-key"))
        agent.start_daemon(self)
        key = "my-secure-api-key"  # the push key also reads the views its pipe feeds
        c.wait_node("/d2/f4.dat", view="research-view", key=key, what="the snapshot")
        self.assertEqual(c.node("/d2/f4.dat", view="research-view", key=key)["size"], 4)
        self.s.write("a", "/d0/seed.dat")
        wait_for(lambda: c.node("/d0/seed.dat", view="research-view", key=key), timeout=20,
                 what="a realtime event")

    def test_seed_001_fan_out_verbatim(self):
        c = Cluster(self, self.s)
        files = {}
        for name in ("default.yaml", "fan-out.yaml", "massive-view.yaml", "snippet-ids.yaml"):
            subst = {"port: 8101": f"port: {c.fusion.api_port}", "port: 18888": "port: "
                     f"{free_port()}"} if name == "default.yaml" else {}
            if name == "snippet-ids.yaml":
                subst = {"port: 18889": f"port: {c.rx}"}
            files[name] = self.seed(f"seed001/fusion-config/{name}", **subst)
        self.start_seed_fusion(c, files, activate="fan-out.yaml")
        agent = c.fusion.__class__("agent")
        agent.put("default.yaml", self.seed_agent(c, "fan-out-api-key"))
        agent.start_daemon(self)
        for view in ("realtime-view", "archive-view"):
            wait_for(lambda: c.node("/d2/f4.dat", view=view, key="fan-out-api-key"), timeout=20,
                     what=f"the snapshot in {view}")
        self.s.write("a", "/d0/both.dat")
        for view in ("realtime-view", "archive-view"):
            wait_for(lambda: c.node("/d0/both.dat", view=view, key="fan-out-api-key"),
                     timeout=20, what=f"the realtime event in {view}")


if __name__ == "__main__":
    unittest.main()
