"""The agent's operations end to end against a real Fusion: pipes added, changed and removed
by a reload (SIGHUP) while the others keep their sessions; two pipes sharing one source (one
watcher, one bus); the commands Fusion sends through heartbeats (report_config,
update_config, stop_pipe, reload_config) queued from Fusion's management API; and the
progress of a long walk in `status` and the log."""
import json
import os
import shutil
import signal
import tempfile
import time
import unittest
import urllib.request

from harness import Home, free_port, view_paths, wait_for
from v1agent import V1Agent, request

FUSION = """
logging: INFO
management_api_key: mk
receivers:
  rx: {{driver: http, bind_host: 127.0.0.1, port: {rx},
        api_keys: [{{key: k1, pipe_id: p1}}, {{key: k2, pipe_id: p2}}]}}
views:
  v1: {{driver: fs, api_keys: [read]}}
  v2: {{driver: fs, api_keys: [read]}}
pipes:
  p1: {{receiver: rx, views: [v1], session_timeout_seconds: 3{p1_extra}}}
  p2: {{receiver: rx, views: [v2], session_timeout_seconds: 3}}
"""

SOURCE = """  {id}:
    driver: fs
    uri: "{root}"
    driver_params: {{exclude: [{exclude}]}}
"""

SENDER = """  {id}:
    driver: fusion
    uri: "http://127.0.0.1:{rx}"
    credential: {{key: {key}}}
"""


def agent_yaml(rx, sources, pipes, params=None, timeout=None):
    """sources: {id: (root, [excludes])}; pipes: {id: (source, key, batch_size)}; params:
    more driver_params of every source, e.g. "watcher: fanotify"; timeout: the senders'
    timeout_sec."""
    text = "agent_id: host-a\nlogging: INFO\nsources:\n"
    for sid, (root, excl) in sources.items():
        text += SOURCE.format(id=sid, root=root, exclude=", ".join(f'"{e}"' for e in excl))
        if params:
            text = text.rstrip("}\n") + f", {params}}}\n"
    text += "senders:\n"
    for key in sorted({k for _, k, _ in pipes.values()}):
        text += SENDER.format(id=f"to-{key}", rx=rx, key=key)
        if timeout is not None:
            text += f"    timeout_sec: {timeout}\n"
    text += "pipes:\n"
    for pid, (src, key, batch) in pipes.items():
        text += (f"  {pid}: {{source: {src}, sender: to-{key}, batch_size: {batch}, "
                 "error_retry_interval: 0.5}\n")
    return text


def make_tree(prefix, files):
    root = tempfile.mkdtemp(prefix=prefix)
    for name in files:
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        with open(os.path.join(root, name), "w") as fh:
            fh.write(name)
    return root


def mgmt(fusion, method, path, key="mk", body=None, raw=None):
    url = f"http://127.0.0.1:{fusion.api_port}/api/v1/management/{path}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if key is not None:
        req.add_header("X-Management-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class AgentOps(unittest.TestCase):
    def setUp(self):
        self.root1 = make_tree("fustor-e2e-t1-", ["a/one.txt", "a/two.txt", "top.txt"])
        self.root2 = make_tree("fustor-e2e-t2-", ["b/x.txt", "skip/y.txt"])
        for r in (self.root1, self.root2):
            self.addCleanup(shutil.rmtree, r, True)
        self.rx = free_port()

    def start_fusion(self, p1_extra=""):
        self.fusion = Home("fusion")
        self.fusion.put("default.yaml", FUSION.format(rx=self.rx, p1_extra=p1_extra))
        self.fusion.start_daemon(self)

    def start_agent(self, text):
        a = Home("agent")
        a.put("default.yaml", text)
        a.start_daemon(self)
        return a

    def view(self, v):
        return f"http://127.0.0.1:{self.fusion.api_port}/api/v1/views/{v}"

    def paths(self, v):
        return view_paths(self.view(v), "read", set())

    def session_of(self, v):
        s = request("GET", f"{self.view(v)}/sessions", "read")[1]["active_sessions"]
        return s[0]["session_id"] if len(s) == 1 else None

    def pipes_status(self, a):
        doc = json.loads(a.run("status", "--json").stdout)["status"]
        return {p["id"]: p for p in (doc.get("runtime") or {"pipes": []})["pipes"]}

    def reload(self, a, text):
        seq = json.loads(a.run("status", "--json").stdout)["status"]["reload_seq"]
        a.put("default.yaml", text)
        self.assertEqual(a.run("reload").returncode, 0)
        wait_for(lambda: json.loads(a.run("status", "--json").stdout)["status"]["reload_seq"]
                 > seq, timeout=10, what="the reload")

    def test_reload_adds_changes_and_removes_pipes_and_leaves_the_others_running(self):
        self.start_fusion()
        one = {"s1": (self.root1, [])}
        a = self.start_agent(agent_yaml(self.rx, one, {"sync1": ("s1", "k1", 100)}))
        wait_for(lambda: "/a/two.txt" in self.paths("v1"), timeout=15, what="pipe 1 synced")
        sid1 = self.session_of("v1")

        # added: a second pipe, on a second source
        two = {"s1": (self.root1, []), "s2": (self.root2, [])}
        pipes = {"sync1": ("s1", "k1", 100), "sync2": ("s2", "k2", 100)}
        self.reload(a, agent_yaml(self.rx, two, pipes))
        wait_for(lambda: {"/b/x.txt", "/skip/y.txt"} <= self.paths("v2"), timeout=15,
                 what="the added pipe's snapshot")
        self.assertEqual(self.session_of("v1"), sid1, "an untouched pipe keeps its session")
        sid2 = self.session_of("v2")

        # changed: the second source now excludes skip/; only its pipe restarts
        two["s2"] = (self.root2, ["skip"])
        self.reload(a, agent_yaml(self.rx, two, pipes))
        wait_for(lambda: self.session_of("v2") not in (None, sid2), timeout=15,
                 what="the changed pipe's new session")
        self.assertEqual(self.session_of("v1"), sid1)
        with open(f"{self.root2}/skip/new.txt", "w") as fh:
            fh.write("excluded now")
        with open(f"{self.root2}/b/new.txt", "w") as fh:
            fh.write("seen")
        wait_for(lambda: "/b/new.txt" in self.paths("v2"), timeout=10,
                 what="realtime through the new watcher")
        self.assertNotIn("/skip/new.txt", self.paths("v2"))
        self.assertIn("/a/two.txt", self.paths("v1"))

        # removed: the second pipe closes its session; the first goes on
        self.reload(a, agent_yaml(self.rx, one, {"sync1": ("s1", "k1", 100)}))
        wait_for(lambda: self.session_of("v2") is None, timeout=10, what="the session closed")
        self.assertEqual(self.session_of("v1"), sid1)
        self.assertEqual(set(self.pipes_status(a)), {"sync1"})
        with open(f"{self.root1}/after.txt", "w") as fh:
            fh.write("still watched")
        wait_for(lambda: "/after.txt" in self.paths("v1"), timeout=10, what="pipe 1 realtime")
        log = a.log_text()
        self.assertIn("reload: pipe sync2 started", log)
        self.assertIn("reload: pipe sync2 stops", log)
        self.assertNotIn("reload: pipe sync1 stops", log)

        # a change of the pipe alone restarts the pipe, not its source's watcher
        self.reload(a, agent_yaml(self.rx, one, {"sync1": ("s1", "k1", 50)}))
        wait_for(lambda: self.session_of("v1") not in (None, sid1), timeout=15,
                 what="the changed pipe's new session")
        self.assertEqual(a.log_text().count("source s1: watching"), 1)

    def test_two_pipes_reading_one_source_share_its_watcher(self):
        self.start_fusion()
        a = self.start_agent(agent_yaml(self.rx, {"s1": (self.root1, [])},
                                        {"sync1": ("s1", "k1", 100), "sync2": ("s1", "k2", 7)}))
        for v in ("v1", "v2"):
            wait_for(lambda: "/a/two.txt" in self.paths(v), timeout=15, what=f"{v} synced")
        for i in range(20):
            with open(f"{self.root1}/a/rt{i}.txt", "w") as fh:
                fh.write("x")
        for v in ("v1", "v2"):
            wait_for(lambda: all(f"/a/rt{i}.txt" in self.paths(v) for i in range(20)),
                     timeout=10, what=f"realtime rows in {v}")
        self.assertEqual(a.log_text().count("source s1: watching"), 1, "one watcher")
        wait_for(lambda: all(p["source"]["bus_events"] >= 20
                             for p in self.pipes_status(a).values()), timeout=10,
                 what="bus counters in status")
        st = self.pipes_status(a)
        self.assertEqual({p["source"]["pipes"] for p in st.values()}, {2})
        self.assertEqual({p["watches"] for p in st.values()}, {2})

    def test_fusion_sends_config_commands_through_heartbeats(self):
        self.start_fusion()
        text = agent_yaml(self.rx, {"s1": (self.root1, [])}, {"sync1": ("s1", "k1", 100)})
        a = self.start_agent(text)
        wait_for(lambda: "/a/two.txt" in self.paths("v1"), timeout=15, what="synced")

        # the management API's guard
        self.assertEqual(mgmt(self.fusion, "GET", "agents", key=None)[0], 401)
        self.assertEqual(mgmt(self.fusion, "GET", "agents", key="wrong")[0], 401)
        status, doc = mgmt(self.fusion, "GET", "agents")
        self.assertEqual(status, 200)
        self.assertEqual([x["agent_id"] for x in doc["agents"]], ["host-a"])
        self.assertEqual(doc["agents"][0]["sessions"][0]["task_id"], "host-a:sync1")

        # every new session reports the activated file
        def reported():
            st, d = mgmt(self.fusion, "GET", "agents/host-a/config")
            return d["configs"][0] if st == 200 else {}
        wait_for(lambda: reported().get("config_yaml") == text, timeout=10,
                 what="the config report")
        self.assertEqual(reported()["filename"], "default.yaml")

        # bad commands are refused by Fusion with a reason
        for body, why in (({"type": "upgrade"}, "type must be"),
                          ({"type": "stop_pipe"}, "agent_pipe_id"),
                          ({"type": "update_config"}, "config_yaml"),
                          ({"type": "reload_config", "colour": "red"}, "unknown field"),
                          ({"type": "report_config", "filename": "../x.yaml"}, "filename must"),
                          ({"type": 7}, "must be a string")):
            status, d = mgmt(self.fusion, "POST", "agents/host-a/command", body=body)
            self.assertEqual(status, 400, body)
            self.assertIn(why, d["detail"])
        self.assertEqual(mgmt(self.fusion, "POST", "agents/host-a/command",
                              raw=b'{"type": "reload_config"')[0], 400)
        self.assertEqual(mgmt(self.fusion, "POST", "agents/nobody/command",
                              body={"type": "reload_config"})[0], 404)
        self.assertEqual(mgmt(self.fusion, "POST", "agents/host-a/command",
                              body={"type": "stop_pipe", "agent_pipe_id": "nope"})[0], 404)

        # an invalid update is refused by the agent: the file and the pipes stay
        cfg = os.path.join(a.config_dir, "default.yaml")
        status, _ = mgmt(self.fusion, "POST", "agents/host-a/command",
                         body={"type": "update_config", "config_yaml": "pipes: [unclosed"})
        self.assertEqual(status, 200)
        wait_for(lambda: "update_config of default.yaml refused" in a.log_text(), timeout=15,
                 what="the refusal")
        with open(cfg) as fh:
            self.assertEqual(fh.read(), text)
        self.assertFalse(os.path.exists(cfg + ".bak"))

        # a valid one is written (the old file kept as .bak), reloaded and reported back
        new = text.replace('exclude: []', 'exclude: ["*.skip"]')
        self.assertNotEqual(new, text)
        sid = self.session_of("v1")
        status, _ = mgmt(self.fusion, "POST", "agents/host-a/command",
                         body={"type": "update_config", "config_yaml": new})
        self.assertEqual(status, 200)
        wait_for(lambda: reported().get("config_yaml") == new, timeout=20,
                 what="the new config reported")
        with open(cfg) as fh:
            self.assertEqual(fh.read(), new)
        with open(cfg + ".bak") as fh:
            self.assertEqual(fh.read(), text)
        wait_for(lambda: self.session_of("v1") not in (None, sid), timeout=15,
                 what="the changed pipe restarted")
        with open(f"{self.root1}/a/new.skip", "w") as fh:
            fh.write("excluded")
        with open(f"{self.root1}/a/new.txt", "w") as fh:
            fh.write("kept")
        wait_for(lambda: "/a/new.txt" in self.paths("v1"), timeout=10, what="realtime")
        self.assertNotIn("/a/new.skip", self.paths("v1"))

        # stop_pipe ends the pipe and its session; reload_config starts it again
        status, d = mgmt(self.fusion, "POST", "agents/host-a/command",
                         body={"type": "stop_pipe", "agent_pipe_id": "sync1"})
        self.assertEqual(status, 200)
        wait_for(lambda: self.session_of("v1") is None, timeout=15, what="the pipe stopped")
        wait_for(lambda: self.pipes_status(a)["sync1"]["phase"] == "stopped", timeout=10,
                 what="status: stopped")
        sess = mgmt(self.fusion, "GET", "agents")[1]["agents"]
        self.assertEqual(sess, [])
        # with no session there is no channel: Fusion says so
        self.assertEqual(mgmt(self.fusion, "POST", "agents/host-a/command",
                              body={"type": "reload_config"})[0], 404)
        os.kill(a.pid(), signal.SIGHUP)  # what an operator does then
        wait_for(lambda: self.session_of("v1") is not None, timeout=15,
                 what="the pipe started again by the reload")
        # and reload_config from Fusion reaches the agent
        seq = json.loads(a.run("status", "--json").stdout)["status"]["reload_seq"]
        self.assertEqual(mgmt(self.fusion, "POST", "agents/host-a/command",
                              body={"type": "reload_config"})[0], 200)
        wait_for(lambda: json.loads(a.run("status", "--json").stdout)["status"]["reload_seq"]
                 > seq, timeout=15, what="the reload asked by Fusion")
        # (seq may have been read before the status file showed the SIGHUP's reload: wait for
        # the line itself rather than take the count for it)
        wait_for(lambda: "Fusion asked for a config reload" in a.log_text(), timeout=15,
                 what="the agent's note of Fusion's reload command")

    def test_an_agent_id_with_colons_is_one_agent(self):
        # v1's default agent id is the address towards Fusion: IPv6 ones hold colons
        self.start_fusion()
        v = V1Agent(f"http://127.0.0.1:{self.rx}", "k1", task_id="fd00::1:sync1")
        self.assertEqual(v.create_session()[0], 200)
        status, doc = mgmt(self.fusion, "GET", "agents")
        self.assertEqual([x["agent_id"] for x in doc["agents"]], ["fd00::1"])
        status, d = mgmt(self.fusion, "POST", "agents/fd00::1/command",
                         body={"type": "stop_pipe", "agent_pipe_id": "sync1"})
        self.assertEqual((status, d["sessions"]), (200, [v.session_id]))
        status, hb = v.heartbeat()
        self.assertEqual(hb["commands"][0]["type"], "stop_pipe")

    def test_management_api_is_off_without_a_key(self):
        self.fusion = Home("fusion")
        self.fusion.put("default.yaml",
                        FUSION.format(rx=self.rx, p1_extra="").replace("management_api_key: mk\n",
                                                                        ""))
        self.fusion.start_daemon(self)
        status, d = mgmt(self.fusion, "GET", "agents")
        self.assertEqual(status, 403)
        self.assertIn("management_api_key", d["detail"])

    def test_a_stalled_walk_shows_its_progress(self):
        # Fusion asks for an audit every second; frozen, it stalls the next audit: its start
        # until the senders' timeout (3 s here), then its batches.
        self.start_fusion(p1_extra=", audit_interval_sec: 1")
        for i in range(3000):
            with open(f"{self.root1}/a/f{i}", "w"):
                pass
        a = self.start_agent(agent_yaml(self.rx, {"s1": (self.root1, [])},
                                        {"sync1": ("s1", "k1", 10)}, timeout=3))
        wait_for(lambda: "/a/f2999" in self.paths("v1"), timeout=20, what="synced")
        pid = self.fusion.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            # the next audit, or (on a slow machine) the snapshot itself, stalls
            under_way = lambda st: (st["phase"] in ("snapshot", "audit") and  # noqa: E731
                                    st.get("progress", {}).get("entries", 0) > 0)
            wait_for(lambda: under_way(self.pipes_status(a)["sync1"]), timeout=15,
                     what="a walk under way, past its start")
            st = self.pipes_status(a)["sync1"]
            self.assertGreater(st["progress"]["entries"], 0)
            self.assertIn("directories", st["progress"])
            line = f"pipe sync1: {st['phase']} under way:"
            wait_for(lambda: line in a.log_text(), timeout=15, what="a progress line")
        finally:
            os.kill(pid, signal.SIGCONT)

    def test_message_only_sends_no_snapshot_but_realtime_and_audits(self):
        self.start_fusion(p1_extra=", audit_interval_sec: 2")
        a = self.start_agent(agent_yaml(self.rx, {"s1": (self.root1, [])},
                                        {"sync1": ("s1", "k1", 100)},
                                        "startup_mode: message-only"))
        # the view is ready (the end marker came) but holds no snapshot rows
        wait_for(lambda: "/" in self.paths("v1"), timeout=15, what="the view ready")
        self.assertNotIn("/a/one.txt", self.paths("v1"))
        self.assertIn("snapshot skipped (startup_mode: message-only)", a.log_text())
        with open(f"{self.root1}/a/live.txt", "w") as fh:
            fh.write("seen by inotify")
        wait_for(lambda: "/a/live.txt" in self.paths("v1"), timeout=10, what="realtime")
        # the leader's audit (every 2 s here) still brings what was there before
        wait_for(lambda: "/a/one.txt" in self.paths("v1"), timeout=15, what="the audit")

    def fanotify_agent(self, root):
        a = self.start_agent(agent_yaml(self.rx, {"s1": (root, [])},
                                        {"sync1": ("s1", "k1", 100)}, "watcher: fanotify"))
        wait_for(lambda: self.session_of("v1") is not None, timeout=15, what="a session")
        return a

    def test_the_fanotify_watcher_covers_the_tree_with_one_mark(self):
        if os.geteuid() != 0:
            self.skipTest("fanotify filesystem marks need CAP_SYS_ADMIN")
        self.start_fusion()
        a = self.fanotify_agent(self.root1)
        wait_for(lambda: "/a/two.txt" in self.paths("v1"), timeout=15, what="the snapshot")
        os.makedirs(f"{self.root1}/new/deeper")
        with open(f"{self.root1}/new/deeper/f.txt", "w") as fh:
            fh.write("hello")
        os.rename(f"{self.root1}/a/one.txt", f"{self.root1}/a/uno.txt")
        os.unlink(f"{self.root1}/top.txt")
        wait_for(lambda: {"/new/deeper/f.txt", "/a/uno.txt"} <= self.paths("v1") and
                 not {"/a/one.txt", "/top.txt"} & self.paths("v1"), timeout=10,
                 what="realtime changes through fanotify")
        st = lambda: self.pipes_status(a)["sync1"]  # noqa: E731 (refreshed every 2 s)
        wait_for(lambda: (st()["source"]["watcher"], st()["watches"]) == ("fanotify", 1),
                 timeout=10, what="status: one fanotify mark")
        self.assertIn("watching " + self.root1 + " with fanotify", a.log_text())

    def test_fanotify_falls_back_to_inotify_where_it_cannot_mark(self):
        if not os.path.exists("/dev/fuse") or not shutil.which("bindfs"):
            self.skipTest("no FUSE here: a bindfs mount is what cannot be marked")
        import subprocess
        mnt = tempfile.mkdtemp(prefix="fustor-e2e-mnt-")
        self.addCleanup(os.rmdir, mnt)
        r = subprocess.run(["bindfs", self.root1, mnt], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(subprocess.run, ["umount", mnt], capture_output=True)
        self.start_fusion()
        a = self.fanotify_agent(mnt)
        wait_for(lambda: "/a/two.txt" in self.paths("v1"), timeout=15, what="the snapshot")
        with open(f"{mnt}/a/through-the-mount.txt", "w") as fh:
            fh.write("x")
        wait_for(lambda: "/a/through-the-mount.txt" in self.paths("v1"), timeout=10,
                 what="realtime through inotify")
        self.assertIn("falling back to inotify", a.log_text())
        st = lambda: self.pipes_status(a)["sync1"]  # noqa: E731 (refreshed every 2 s)
        wait_for(lambda: (st()["source"]["watcher"], st()["watches"]) == ("inotify", 2),
                 timeout=10, what="status: inotify watches")


if __name__ == "__main__":
    unittest.main()
