"""Fusion end to end through the v1 protocol: a real fustor-fusion, agents simulated by a
client that behaves like a v1 agent, queries through the view API. Covers sessions and roles,
snapshot and realtime ingest, tree/stats/search/sessions, authentication scoping, bad input,
leader failover and many concurrent sessions."""
import concurrent.futures
import json
import os
import signal
import subprocess
import time
import unittest

from harness import Home, free_port, pid_alive, wait_for
from v1agent import V1Agent, event, request, row

CONFIG = """
logging: DEBUG
receivers:
  rx:
    driver: http
    bind_host: 127.0.0.1
    port: {rx}
    api_keys:
      - {{key: push-1, pipe_id: p1}}
      - {{key: push-2, pipe_id: p2}}
      - {{key: push-strict, pipe_id: strict}}
      - {{key: push-4, pipe_id: p4}}
views:
  v1:
    driver: fs
    api_keys: [read-1]
    driver_params: {{max_tree_items: 500}}
  v2:
    driver: fs
    api_keys: [read-2]
  v3:
    driver: fs
  v4:
    driver: fs
    api_keys: [read-4]
    driver_params:
      hot_file_threshold: 1.0
      consistency: {{tombstone_ttl_seconds: 1}}
pipes:
  p1:
    receiver: rx
    views: [v1]
    session_timeout_seconds: 2
    audit_interval_sec: 600
    sentinel_interval_sec: 30
  p2:
    receiver: rx
    views: [v2]
  strict:
    receiver: rx
    views: [v3]
    allow_concurrent_push: false
  p4:
    receiver: rx
    views: [v4]
max_body_bytes: 2097152
"""


class FusionAPI(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.home = Home("fusion")
        cls.rx = free_port()
        cls.home.put("default.yaml", CONFIG.format(rx=cls.rx))
        r = cls.home.run("start", "-D")
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        cls.api = f"http://127.0.0.1:{cls.home.api_port}"
        cls.recv = f"http://127.0.0.1:{cls.rx}"

    @classmethod
    def tearDownClass(cls):
        cls.home.run("stop")
        cls.home.cleanup()

    def view(self, view, endpoint, key, **params):
        q = "&".join(f"{k}={urllib_quote(str(v))}" for k, v in params.items())
        return request("GET", f"{self.api}/api/v1/views/{view}/{endpoint}?{q}", key)

    def agent(self, key="push-1", task="agent-1:sync"):
        """A session that is closed when the test ends, pass or fail."""
        a = V1Agent(self.recv, key, task)
        status, resp = a.create_session()
        self.assertEqual(status, 200, resp)
        self.addCleanup(a.close)
        return a

    # -------------------------------------------------------------- the happy path

    def test_snapshot_then_realtime_then_queries(self):
        a = self.agent("push-2", "agent-a:p2")
        self.assertEqual(a.role, "leader")
        # Before the snapshot ends an empty view is not ready.
        status, body, headers = self.view("v2", "tree", "read-2")
        self.assertEqual(status, 503)
        self.assertIn("snapshot", body["detail"])
        self.assertEqual(headers.get("Retry-After"), "5")

        rows = [row("/data", is_dir=True, mtime=1000.0)]
        rows += [row(f"/data/f{i:03d}.txt", size=i, mtime=1000.0 + i) for i in range(250)]
        rows.append(row("/data/sub/deep.bin", size=7, mtime=2000.0))
        status, resp = a.snapshot(rows)
        self.assertEqual(status, 200, resp)

        status, tree, _ = self.view("v2", "tree", "read-2", path="/data", max_depth=1)
        self.assertEqual(status, 200, tree)
        self.assertEqual(tree["name"], "data")
        self.assertEqual(tree["content_type"], "directory")
        self.assertEqual(tree["path"], "/data")
        names = [c["name"] for c in tree["children"]]
        self.assertEqual(names, sorted(names))
        self.assertEqual(len(names), 251)
        f7 = next(c for c in tree["children"] if c["name"] == "f007.txt")
        for k in ("size", "modified_time", "created_time", "integrity_suspect", "last_agent_id",
                  "source_uri", "agent_missing"):
            self.assertIn(k, f7)
        self.assertEqual(f7["size"], 7)
        self.assertEqual(f7["last_agent_id"], "agent-a")
        self.assertEqual(f7["source_uri"], "/mnt/shared")
        self.assertFalse(f7["integrity_suspect"])

        # The same query again: the answer Fusion kept, the same.
        self.assertEqual(self.view("v2", "tree", "read-2", path="/data", max_depth=1)[1], tree)

        status, stats, _ = self.view("v2", "stats", "read-2")
        self.assertEqual(status, 200, stats)
        self.assertEqual(stats["total_files"], 251)
        self.assertEqual(stats["total_size"], sum(range(250)) + 7)
        status, sub, _ = self.view("v2", "stats", "read-2", path="/data/sub")
        self.assertEqual(sub["total_files"], 1)
        # /data/sub was never reported itself (mtime 0): it is the stalest directory.
        self.assertEqual(stats["oldest_item_path"], "/data/sub")
        self.assertGreater(stats["staleness_seconds"], 1e9)

        # Realtime: create, modify (partial write = suspect), delete.
        status, resp = a.push([event([row("/data/new.txt", size=5)], "insert")])
        self.assertEqual((status, resp["count"]), (200, 1), resp)
        a.push([event([row("/data/f001.txt", size=99, is_atomic_write=False)], "update")])
        a.push([event([{"path": "/data/f002.txt"}], "delete")])
        status, tree, _ = self.view("v2", "tree", "read-2", path="/data", max_depth=1)
        by_name = {c["name"]: c for c in tree["children"]}
        self.assertIn("new.txt", by_name)
        self.assertNotIn("f002.txt", by_name)
        self.assertEqual(by_name["f001.txt"]["size"], 99)
        self.assertTrue(by_name["f001.txt"]["integrity_suspect"])
        status, stats, _ = self.view("v2", "stats", "read-2")
        self.assertEqual(stats["suspect_file_count"], 1)

        status, found, _ = self.view("v2", "search", "read-2", pattern="*.bin")
        self.assertEqual(status, 200, found)
        self.assertEqual([f["path"] for f in found], ["/data/sub/deep.bin"])

        status, sessions, _ = self.view("v2", "sessions", "read-2")
        self.assertEqual(sessions["count"], 1)
        s = sessions["active_sessions"][0]
        self.assertEqual((s["role"], s["can_snapshot"], s["agent_id"]),
                         ("leader", True, "agent-a"))
        a.heartbeat()
        status, sessions, _ = self.view("v2", "sessions", "read-2")
        self.assertEqual(sessions["active_sessions"][0]["agent_status"]["state"], "RUNNING")
        status, resp = a.close()
        self.assertEqual(resp["status"], "terminated")
        # The data stays queryable without any agent (v1 wiped it).
        status, stats, _ = self.view("v2", "stats", "read-2")
        self.assertEqual((status, stats["total_files"]), (200, 251))

    def test_max_tree_items_limits_the_response_not_the_view(self):
        wait_for(lambda: self.view("v1", "sessions", "read-1")[1]["count"] == 0,
                 what="no sessions left on p1")
        a = self.agent("push-1", "agent-lim:p1")
        rows = [row(f"/big/f{i:04d}", size=1) for i in range(600)]
        rows.append(row("/small/one", size=1))
        self.assertEqual(a.snapshot(rows)[0], 200)
        status, body, _ = self.view("v1", "tree", "read-1", path="/big")
        self.assertEqual(status, 400)
        d = body["detail"]
        self.assertEqual(d["error"], "Metadata retrieval limit exceeded")
        self.assertEqual((d["view"], d["limit"]), ("v1", 500))
        self.assertGreater(d["current_count"], 500)
        status, body, _ = self.view("v1", "tree", "read-1", path="/small")
        self.assertEqual(status, 200, body)
        # The paginated form reads any size.
        seen, cursor = [], None
        while True:
            params = {"path": "/big", "entry_page_size": 128}
            if cursor:
                params["cursor"] = cursor
            status, page, _ = self.view("v1", "tree", "read-1", **params)
            self.assertEqual(status, 200, page)
            seen += [e["path"] for e in page["entries"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        self.assertEqual(seen, ["/big"] + [f"/big/f{i:04d}" for i in range(600)])
        a.close()

    def test_audit_markers_and_sentinel_round(self):
        a = self.agent("push-1", "agent-sent:p1")
        base = f"{self.recv}/api/v1/pipe/consistency"
        a.push([event([row("/sent/hot.bin", size=1, mtime=50.0, is_atomic_write=False)],
                      "update")])
        status, tasks, _ = request("GET", base + "/sentinel/tasks", "push-1")
        self.assertEqual(status, 200)
        self.assertEqual((tasks["type"], tasks["view_id"]), ("suspect_check", "v1"))
        self.assertIn("/sent/hot.bin", tasks["paths"])
        fb = {"type": "suspect_update", "updates": [
            {"path": "/sent/hot.bin", "mtime": 60.0, "size": 9, "status": "exists"},
            {"path": "/sent/gone.bin", "mtime": 0.0, "status": "missing"}]}
        status, resp, _ = request("POST", base + "/sentinel/feedback", "push-1", fb)
        self.assertEqual(resp, {"status": "processed", "drivers_updated": 1})
        status, t, _ = self.view("v1", "tree", "read-1", path="/sent/hot.bin")
        self.assertEqual((t["size"], t["modified_time"]), (9, 60.0))
        status, resp, _ = request("POST", base + "/sentinel/feedback", "push-1",
                                  {"type": "other", "updates": []})
        self.assertEqual(resp, {"status": "ignored", "reason": "unknown_type"})
        self.assertEqual(request("POST", base + "/sentinel/feedback", "push-1",
                                 raw=b"{oops")[0], 400)
        # Audit start/end move the view's audit state.
        self.assertEqual(request("POST", base + "/audit/start", "push-1")[1]["status"],
                         "audit_started")
        self.assertTrue(self.view("v1", "stats", "read-1")[1]["is_auditing"])
        status, resp, _ = request("POST", base + "/audit/end", "push-1")
        self.assertEqual(resp, {"status": "audit_ended", "drivers_handled": 1})
        st = self.view("v1", "stats", "read-1")[1]
        self.assertFalse(st["is_auditing"])
        self.assertGreaterEqual(st["audit_cycle_count"], 1)
        self.assertIsNotNone(st["last_audit_finished_at"])

    def test_timers_and_the_consistency_endpoints(self):
        a = self.agent("push-4", "agent-t:p4")
        self.assertEqual(a.snapshot([])[0], 200)
        now = time.time()
        self.assertEqual(a.push([event([row("/t/hot", size=1, mtime=now,
                                            is_atomic_write=False),
                                        row("/t/gone", size=1, mtime=now)])])[0], 200)
        self.assertEqual(a.push([event([row("/t/gone")], "delete")])[0], 200)
        status, sl, _ = self.view("v4", "suspect-list", "read-4")
        self.assertEqual(status, 200)
        self.assertEqual([s["path"] for s in sl], ["/t/hot"])
        self.assertAlmostEqual(sl[0]["suspect_until"], now + 1.0, delta=5)
        # A tree answer made while /t/hot is a suspect, kept by Fusion (the check after the
        # suspect's expiry below is that it is not served again).
        self.assertEqual(self.view("v4", "tree", "read-4", path="/t", max_depth=1)[0], 200)
        # A late scan row older than the tombstone is a zombie...
        old = now - 3600
        a.push([event([row("/t/gone", size=1, mtime=old)], source="snapshot")], "snapshot")
        self.assertEqual(self.view("v4", "tree", "read-4", path="/t/gone")[0], 404)
        # ...until the tombstone expires on its timer, with no audit in between; and the
        # suspect's deadline passes on the timer too.
        wait_for(lambda: self.view("v4", "suspect-list", "read-4")[1] == [], timeout=10,
                 what="the suspect to expire")
        self.assertEqual(self.view("v4", "stats", "read-4")[1]["suspect_file_count"], 0)
        # A change made by a timer, with no batch: a kept answer is not served any more.
        tree = self.view("v4", "tree", "read-4", path="/t", max_depth=1)[1]
        self.assertFalse({c["name"]: c for c in tree["children"]}["hot"]["integrity_suspect"])
        time.sleep(1.2)
        a.push([event([row("/t/gone", size=1, mtime=old)], source="snapshot")], "snapshot")
        self.assertEqual(self.view("v4", "tree", "read-4", path="/t/gone")[0], 200)
        # An audit finds a file no agent reported: a blind spot.
        a.push([event([row("/t/unseen", size=3, mtime=old)], source="audit")], "audit")
        status, bs, _ = self.view("v4", "blind-spots", "read-4")
        self.assertEqual((bs["additions_count"], bs["additions"][0]["path"]), (1, "/t/unseen"))
        self.assertTrue(bs["additions"][0]["agent_missing"])
        self.assertTrue(self.view("v4", "stats", "read-4")[1]["has_blind_spot"])
        # PUT suspect-list changes state: push keys only; bad bodies get 400.
        url = f"{self.api}/api/v1/views/v4/suspect-list"
        upd = {"updates": [{"path": "/t/hot", "mtime": now}]}
        self.assertEqual(request("PUT", url, "read-4", upd)[0], 403)
        self.assertEqual(request("PUT", url, "push-1", upd)[0], 403)  # another view's pipe
        self.assertEqual(request("PUT", url, "push-4", raw=b"{nope")[0], 400)
        self.assertEqual(request("PUT", url, "push-4", {"updates": 5})[0], 400)
        status, resp, _ = request("PUT", url, "push-4", upd)
        self.assertEqual((status, resp["updated_count"], resp["view_id"]), (200, 1, "v4"))
        # DELETE reset: push keys only; empties the view and ends its pipe's sessions.
        reset = f"{self.api}/api/v1/views/v4/reset"
        self.assertEqual(request("DELETE", reset, "read-4")[0], 403)
        self.assertEqual(request("DELETE", reset, "push-4")[0], 204)
        self.assertEqual(a.heartbeat()[0], 419)
        # empty, with no leader: not ready (503) until an agent comes back
        self.assertEqual(self.view("v4", "tree", "read-4", path="/t")[0], 503)
        bs = self.view("v4", "blind-spots", "read-4")[1]
        self.assertEqual((bs["additions_count"], bs["deletion_count"]), (0, 0))
        self.assertEqual(self.view("v4", "suspect-list", "read-4")[1], [])
        self.assertEqual(request("GET", f"{self.api}/health")[0], 200)

    def test_on_demand_scan_commands_reach_every_agent_once(self):
        a = self.agent("push-1", "agent-od1:p1")
        b = self.agent("push-1", "agent-od2:p1")
        status, body, _ = self.view("v1", "tree", "read-1", path="/ondemand",
                                    on_demand_scan="true")
        self.assertEqual(status, 200, body)
        self.assertTrue(body["job_pending"])
        job = body["job_id"]
        for agent in (a, b):
            status, hb = agent.heartbeat()
            scans = [c for c in hb["commands"] if c.get("job_id") == job]
            self.assertEqual(len(scans), 1, hb)
            self.assertEqual((scans[0]["type"], scans[0]["path"], scans[0]["recursive"]),
                             ("scan", "/ondemand", True))
            status, hb = agent.heartbeat()  # delivered exactly once
            self.assertFalse([c for c in hb["commands"] if c.get("job_id") == job])
        status, j, _ = self.view("v1", f"jobs/{job}", "read-1")
        self.assertEqual((j["status"], j["progress"]["total_pipes"]), ("RUNNING", 2))
        for agent in (a, b):
            status, resp = agent.push([event([row("/ondemand/found.txt", size=2)],
                                             source="on_demand_job")], "on_demand_job")
            self.assertEqual(status, 200, resp)
            status, resp = agent.push([], "job_complete",
                                      metadata={"scan_path": "/ondemand", "job_id": job})
            self.assertEqual((status, resp["phase"]), (200, "job_complete"))
        status, j, _ = self.view("v1", f"jobs/{job}", "read-1")
        self.assertEqual((j["status"], j["progress"]["percentage"]), ("COMPLETED", 100.0))
        status, listing, _ = self.view("v1", "jobs", "read-1")
        self.assertIn(job, [x["job_id"] for x in listing["jobs"]])
        status, t, _ = self.view("v1", "tree", "read-1", path="/ondemand/found.txt",
                                 on_demand_scan="true")
        self.assertEqual((status, t["size"]), (200, 2))
        self.assertIn("job_id", t)
        self.assertEqual(self.view("v1", "jobs/nope", "read-1")[0], 404)

    def test_invalid_utf8_names_round_trip(self):
        a = self.agent("push-1", "agent-utf:p1")
        name = b"/raw/\xe9t\xe9.txt".decode("utf-8", "surrogateescape")
        self.assertEqual(a.push([event([row(name, size=3)], "insert")])[0], 200)
        status, tree, _ = self.view("v1", "tree", "read-1", path="/raw")
        self.assertEqual(status, 200, tree)
        got = tree["children"][0]["path"]
        self.assertEqual(os.fsencode(got), b"/raw/\xe9t\xe9.txt")
        a.close()

    def test_rows_as_arrays_in_the_order_of_fields(self):
        """Ours, negotiated: the session answer says row_arrays, and rows may then be arrays
        whose values follow the event's "fields" (given before "rows")."""
        a = V1Agent(self.recv, "push-1", "agent-arrays:p1")
        status, resp = a.create_session()
        self.assertEqual(status, 200, resp)
        self.addCleanup(a.close)
        self.assertIs(resp["row_arrays"], True)
        fields = ["path", "size", "modified_time", "created_time", "is_directory", "note"]

        def ev(rows, event_type="update", fields=fields, fields_first=True):
            e = event(rows, event_type)
            del e["fields"]
            items = list(e.items())
            if fields is not None:
                items.insert(0 if fields_first else len(items), ("fields", fields))
            return dict(items)

        status, resp = a.push([ev([
            ["/arrays", 0, 1000.0, 1000.0, True],
            ["/arrays/a.txt", 5, 1000.5, 1000.25, False, {"any": "value"}, "past the fields"],
            {"path": "/arrays/obj.txt", "size": 2, "modified_time": 1001.0},  # objects still
            ["/arrays/bad.txt", "five", 1000.0, 1000.0, False],  # wrong type: skipped
            ["/arrays/nomtime.txt", 1],  # an upsert without modified_time: skipped
            ["/arrays/../escape", 1, 1.0, 1.0, False],  # a bad path: skipped
            "not a row",
        ])])
        self.assertEqual(status, 200, resp)
        self.assertEqual((resp["count"], resp["skipped"]), (3, 4), resp)
        status, tree, _ = self.view("v1", "tree", "read-1", path="/arrays", max_depth=1)
        self.assertEqual(status, 200, tree)
        kids = {c["name"]: c for c in tree["children"]}
        self.assertEqual(sorted(kids), ["a.txt", "obj.txt"])
        self.assertEqual((kids["a.txt"]["size"], kids["a.txt"]["modified_time"],
                          kids["a.txt"]["created_time"]), (5, 1000.5, 1000.25))
        # Arrays without a "fields" list before them, or with a broken one, are not rows.
        for e in (ev([["/arrays/late.txt", 1, 1.0, 1.0, False]], fields_first=False),
                  ev([["/arrays/none.txt", 1, 1.0, 1.0, False]], fields=None),
                  ev([["/arrays/num.txt", 1, 1.0, 1.0, False]], fields=[1, 2, 3, 4, 5])):
            status, resp = a.push([e])
            self.assertEqual((status, resp["count"], resp["skipped"]), (200, 0, 1), resp)
        # A delete needs only the path.
        status, resp = a.push([ev([["/arrays/a.txt"]], "delete", fields=["path"])])
        self.assertEqual((status, resp["count"]), (200, 1), resp)
        status, tree, _ = self.view("v1", "tree", "read-1", path="/arrays", max_depth=1)
        self.assertEqual([c["name"] for c in tree["children"]], ["obj.txt"])
        # Broken JSON inside an array row is still a 400 with a detail.
        raw = ('{"session_id": "%s", "source_type": "message", "events": [{"event_type": '
               '"update", "fields": ["path"], "rows": [["/x", ]]}]}' % a.session_id)
        status, body, _ = request("POST", f"{self.recv}/api/v1/pipe/ingest/{a.session_id}/events",
                                  "push-1", raw=raw.encode())
        self.assertEqual(status, 400, body)
        self.assertIn("detail", body)

    # -------------------------------------------------------------- auth

    def test_keys_are_checked_everywhere_and_scoped(self):
        a = self.agent("push-1", "agent-auth:p1")
        base = f"{self.recv}/api/v1/pipe"
        for key, want in ((None, 401), ("nope", 401)):
            self.assertEqual(request("POST", base + "/session/", key, {"task_id": "x"})[0], want)
            self.assertEqual(request("POST", f"{base}/session/{a.session_id}/heartbeat", key,
                                     {})[0], want)
            self.assertEqual(request("POST", f"{base}/ingest/{a.session_id}/events", key,
                                     {"events": []})[0], want)
            self.assertEqual(request("DELETE", f"{base}/session/{a.session_id}", key)[0], want)
        # A key of another pipe cannot use this session.
        status, body, _ = request("POST", f"{base}/session/{a.session_id}/heartbeat", "push-2",
                                  {})
        self.assertEqual(status, 403, body)
        # Views: read keys and push keys of a feeding pipe only.
        self.assertEqual(self.view("v1", "stats", None)[0], 401)
        self.assertEqual(self.view("v1", "stats", "wrong")[0], 401)
        self.assertEqual(self.view("v1", "stats", "read-2")[0], 403)
        self.assertEqual(self.view("v1", "stats", "push-2")[0], 403)
        self.assertEqual(self.view("v1", "sessions", "push-1")[0], 200)
        self.assertEqual(self.view("nosuch", "stats", "read-1")[0], 404)
        self.assertEqual(self.view("nosuch", "stats", "wrong")[0], 401)  # no probing
        status, body, _ = request("GET", base + "/session/", "push-1")
        self.assertEqual(body, {"view_id": "v1", "pipe_id": "p1", "status": "authorized"})
        a.close()

    # -------------------------------------------------------------- bad input

    def test_bad_input_gets_clear_errors_and_the_server_keeps_serving(self):
        a = self.agent("push-1", "agent-bad:p1")
        url = f"{self.recv}/api/v1/pipe/ingest/{a.session_id}/events"
        cases = [
            (b"{not json", 400, "malformed JSON"),
            (b"[1,2,3]", 400, "expected a JSON object"),
            (json.dumps({"events": 5}).encode(), 400, "events must be a list"),
            (json.dumps({"source_type": "bogus", "events": []}).encode(), 400, "source_type"),
            (b"x" * (2097152 + 10), 413, "larger than"),
        ]
        for raw, want, text in cases:
            status, body, _ = request("POST", url, "push-1", raw=raw)
            self.assertEqual(status, want, (raw[:40], body))
            self.assertIn(text, body["detail"])
        # A client that asks for 100-continue is refused before it sends the body.
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                              "X-API-Key: push-1", "-H", "Expect: 100-continue",
                              "--data-binary", "@-", url], input=b"y" * (3 << 20),
                             capture_output=True, timeout=30)
        self.assertEqual((out.returncode, out.stdout), (0, b"413"), out.stderr)
        status, body, _ = request("POST", f"{self.recv}/api/v1/pipe/session/", "push-1",
                                  raw=b'{"task_id": 7}')
        self.assertEqual(status, 400)
        # Bad rows are skipped one by one and counted.
        bad = [{"path": "/ok/a", "size": 1, "modified_time": 1.0, "is_directory": False},
               {"path": "/ok/../etc/passwd", "size": 1, "modified_time": 1.0,
                "is_directory": False},
               {"path": "/ok/nul\u0000x", "size": 1, "modified_time": 1.0, "is_directory": False},
               {"path": "/ok/neg", "size": -5, "modified_time": 1.0, "is_directory": False},
               {"path": "/ok/" + "n" * 5000, "size": 1, "modified_time": 1.0,
                "is_directory": False},
               {"path": "/ok/" + "m" * (1 << 20), "size": 1, "modified_time": 1.0,
                "is_directory": False},
               {"size": 1},
               "not an object",
               {"path": "/ok/b", "size": "big", "modified_time": 1.0, "is_directory": False}]
        status, resp = a.push([event(bad, "insert")])
        self.assertEqual(status, 200, resp)
        self.assertEqual((resp["count"], resp["skipped"]), (1, 8))
        status, resp = a.push([{"event_type": "explode", "rows": [row("/ok/c")]}])
        self.assertEqual((resp["count"], resp["skipped"]), (0, 1))
        # Nobody deletes the root, or turns it into a file.
        status, resp = a.push([event([{"path": ""}, {"path": "/"}, {"path": "//"}], "delete"),
                               event([row("/", size=1)], "insert")])
        self.assertEqual((resp["count"], resp["skipped"]), (0, 4), resp)
        self.assertGreater(self.view("v1", "stats", "read-1")[1]["item_count"], 0)
        # Trailing data after the batch is malformed JSON.
        status, body, _ = request("POST", url, "push-1", raw=b'{"events": []} xx')
        self.assertEqual(status, 400)
        self.assertIn("trailing", body["detail"])
        # agent_status is stored as our own JSON: bytes that are not UTF-8 come back escaped.
        hb = f"{self.recv}/api/v1/pipe/session/{a.session_id}/heartbeat"
        status, _, _ = request("POST", hb, "push-1",
                               raw=b'{"agent_status": {"note": "\xff\xfe\xc0\x80"}}')
        self.assertEqual(status, 200)
        status, sessions, _ = self.view("v1", "sessions", "read-1")  # parses as JSON
        mine = [x for x in sessions["active_sessions"] if x["session_id"] == a.session_id]
        self.assertEqual(os.fsencode(mine[0]["agent_status"]["note"]), b"\xff\xfe\xc0\x80")
        # Unknown sessions: 419 on heartbeat and on push alike.
        ghost = V1Agent(self.recv, "push-1")
        ghost.session_id = "00000000-0000-4000-8000-000000000000"
        self.assertEqual(ghost.heartbeat()[0], 419)
        status, resp = ghost.push([event([row("/x")])])
        self.assertEqual(status, 419)
        self.assertIn("obsoleted", resp["detail"])
        # Deep paths work; the server is still healthy.
        deep = "/d" * 10000 + "/leaf"
        status, resp = a.push([event([row(deep, size=1)], "insert")])
        self.assertEqual((status, resp["count"]), (200, 1), resp)
        self.assertEqual(request("GET", f"{self.api}/health")[0], 200)
        a.close()

    # -------------------------------------------------------------- sessions

    def test_leader_follower_and_failover(self):
        wait_for(lambda: self.view("v1", "sessions", "read-1")[1]["count"] == 0,
                 what="no sessions left on p1")
        a = self.agent("push-1", "agent-A:p1")
        b = self.agent("push-1", "agent-B:p1")
        roles = {a.role, b.role}
        self.assertEqual(roles, {"leader", "follower"})
        leader, follower = (a, b) if a.role == "leader" else (b, a)
        # A follower may send realtime events but not snapshots.
        self.assertEqual(follower.push([event([row("/fo/x", size=1)], "insert")])[0], 200)
        status, resp = follower.push([event([row("/fo/y")], source="snapshot")], "snapshot")
        self.assertEqual(status, 409, resp)
        self.assertIn("not the leader", resp["detail"])
        _, hb = follower.heartbeat()
        epoch = hb["epoch"]
        # The leader goes silent; within its 2 s timeout plus the sweep the follower leads.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, hb = follower.heartbeat()
            self.assertEqual(status, 200, hb)
            if hb["role"] == "leader":
                break
            time.sleep(0.3)
        self.assertEqual(hb["role"], "leader")
        self.assertGreater(hb["epoch"], epoch)
        # The deposed leader learns it with 419 and can come back as a new session.
        self.assertEqual(leader.heartbeat()[0], 419)
        self.assertEqual(leader.push([event([row("/x")], source="snapshot")], "snapshot")[0],
                         419)
        old = leader.session_id
        self.assertEqual(leader.create_session()[0], 200)
        self.assertNotEqual(leader.session_id, old)
        self.assertEqual(leader.role, "follower")
        leader.close()
        follower.close()

    def test_concurrency_rules(self):
        s1 = V1Agent(self.recv, "push-strict", "agent-1:strict")
        self.assertEqual(s1.create_session()[0], 200)
        s2 = V1Agent(self.recv, "push-strict", "agent-2:strict")
        status, resp = s2.create_session()
        self.assertEqual(status, 409)
        self.assertIn("locked", resp["detail"])
        dup = V1Agent(self.recv, "push-1", "agent-dup:p1")
        self.assertEqual(dup.create_session()[0], 200)
        status, resp = V1Agent(self.recv, "push-1", "agent-dup:p1").create_session()
        self.assertEqual(status, 409)
        self.assertIn("already active", resp["detail"])
        # The session answer carries Fusion's intervals.
        intervals = V1Agent(self.recv, "push-1", "agent-int:p1")
        status, resp = intervals.create_session()
        self.assertEqual((resp["audit_interval_sec"], resp["sentinel_interval_sec"]),
                         (600.0, 30.0))
        for a in (s1, dup, intervals):
            self.assertEqual(a.close()[0], 200)

    def test_a_thousand_concurrent_sessions(self):
        def make(i):
            a = V1Agent(self.recv, "push-2", f"agent-{i}:bulk")
            status, _ = a.create_session(timeout=60)
            return a if status == 200 else None

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            agents = list(pool.map(make, range(1000)))
        self.assertTrue(all(agents))
        status, sessions, _ = self.view("v2", "sessions", "read-2")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(sessions["count"], 1000)
        leaders = [s for s in sessions["active_sessions"] if s["role"] == "leader"]
        self.assertEqual(len(leaders), 1)
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            closed = list(pool.map(lambda a: a.close()[0], agents))
        self.assertEqual(set(closed), {200})
        self.assertEqual(request("GET", f"{self.api}/health")[0], 200)


SHARED = """
receivers:
  rx: {{driver: http, port: {port}, api_keys: [{{key: fan, pipe_id: fan}},
       {{key: kx, pipe_id: px}}, {{key: ky, pipe_id: py}}]}}
  rx2: {{driver: http, bind_host: 127.0.0.1, port: {port2},
        api_keys: [{{key: kz, pipe_id: pz}}]}}
  rx3: {{driver: http, bind_host: 127.0.0.1, port: {port2},
        api_keys: [{{key: kw, pipe_id: pw}}]}}
views:
  a: {{driver: fs}}
  b: {{driver: fs}}
  agg: {{driver: fs}}
pipes:
  fan: {{receiver: rx, views: [a, b]}}
  px: {{receiver: rx, views: [agg]}}
  py: {{receiver: rx, views: [agg]}}
  pz: {{receiver: rx2, views: [b]}}
  pw: {{receiver: rx3, views: [b]}}
"""


class DeploymentModes(unittest.TestCase):
    """Seed 001's modes: fan-out (one pipe, several views) and aggregation (several pipes, one
    view), with the receiver sharing the main API port as v1 allows."""

    @classmethod
    def setUpClass(cls):
        cls.home = Home("fusion")
        cls.port2 = free_port()
        cls.home.put("default.yaml", SHARED.format(port=cls.home.api_port, port2=cls.port2))
        r = cls.home.run("start", "-D")
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        cls.url = f"http://127.0.0.1:{cls.home.api_port}"

    @classmethod
    def tearDownClass(cls):
        cls.home.run("stop")
        cls.home.cleanup()

    def test_a_port_in_use_is_a_start_up_error(self):
        other = Home("fusion")
        try:
            other.env["FUSTOR_FUSION_PORT"] = str(self.home.api_port)
            other.put("default.yaml", SHARED.format(port=self.home.api_port, port2=free_port()))
            r = other.run("start", "-D")
            self.assertEqual(r.returncode, 1)
            self.assertIn("cannot start", r.stderr)
            self.assertIn(f":{self.home.api_port}", r.stderr)
            self.assertFalse(os.path.exists(other.pidfile))
        finally:
            other.cleanup()

    def test_receivers_sharing_a_port_accept_their_keys(self):
        other = f"http://127.0.0.1:{self.port2}"
        for key, task in (("kz", "agent-z:pz"), ("kw", "agent-w:pw")):
            a = V1Agent(other, key, task)
            status, resp = a.create_session()
            self.assertEqual(status, 200, resp)
            a.close()
        # That listener serves those receivers only.
        status, _ = V1Agent(other, "fan", "agent-f3:fan").create_session()
        self.assertEqual(status, 401)

    def test_fan_out_writes_every_view(self):
        a = V1Agent(self.url, "fan", "agent-f:fan")
        self.assertEqual(a.create_session()[0], 200)
        self.assertEqual(a.snapshot([row("/shared/x.txt", size=4)])[0], 200)
        for view in ("a", "b"):
            status, st, _ = request("GET", f"{self.url}/api/v1/views/{view}/stats", "fan")
            self.assertEqual((status, st["total_files"]), (200, 1), st)
        a.close()

    def test_aggregation_keeps_a_leader_per_storage(self):
        x = V1Agent(self.url, "kx", "agent-x:px", "/mnt/dept-a")
        y = V1Agent(self.url, "ky", "agent-y:py", "/mnt/dept-b")
        self.assertEqual(x.create_session()[0], 200)
        self.assertEqual(y.create_session()[0], 200)
        self.assertEqual((x.role, y.role), ("leader", "leader"))
        self.assertEqual(x.snapshot([row("/dept_a/1", size=1)])[0], 200)
        self.assertEqual(y.snapshot([row("/dept_b/2", size=2)])[0], 200)
        status, st, _ = request("GET", f"{self.url}/api/v1/views/agg/stats", "kx")
        self.assertEqual((st["total_files"], st["total_size"]), (2, 3))
        status, t, _ = request("GET", f"{self.url}/api/v1/views/agg/tree?path=/dept_b", "ky")
        self.assertEqual(t["children"][0]["source_uri"], "/mnt/dept-b")
        x.close()
        y.close()


def urllib_quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


if __name__ == "__main__":
    unittest.main()
