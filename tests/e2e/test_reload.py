"""Fusion's hot reload, end to end: `fustor-fusion reload` (SIGHUP) changes only what
changed. Sessions of unchanged pipes live on, views keep their data, view settings apply at
once, a removed view goes with its data kept on disk, a pipe's new view or receiver makes its
agents start over, push keys rotate without dropping sessions, and receivers' listeners
open and close with the pipes that use them."""
import os
import threading
import unittest

from harness import Home, free_port, wait_for
from v1agent import V1Agent, event, request, row

BASE = """
logging: INFO
receivers:
  rx:
    driver: http
    bind_host: 127.0.0.1
    port: {rx}
    api_keys: [{keys}]
views:
  v: {{driver: fs, api_keys: [{read}], driver_params: {{max_tree_items: {items}}}}}
{extra_views}
pipes:
  p: {{receiver: rx, views: [{pviews}], session_timeout_seconds: 60}}
{extra_pipes}
"""


class FusionReload(unittest.TestCase):
    def setUp(self):
        self.home = Home("fusion")
        self.rx = free_port()
        self.put()
        self.home.start_daemon(self)
        self.api = f"http://127.0.0.1:{self.home.api_port}/api/v1/views"
        self.recv = f"http://127.0.0.1:{self.rx}"
        self.a = V1Agent(self.recv, "push")
        status, resp = self.a.create_session()
        self.assertEqual(status, 200, resp)
        rows = [row(f"/d/f{i}", size=i) for i in range(20)]
        status, resp = self.a.push([event(rows, source="snapshot")], source_type="snapshot",
                                   is_end=True)
        self.assertEqual(status, 200, resp)

    def put(self, keys="{key: push, pipe_id: p}", read="read", items=0, extra_views="",
            pviews="v", extra_pipes=""):
        self.home.put("default.yaml", BASE.format(
            rx=self.rx, keys=keys, read=read, items=items, extra_views=extra_views,
            pviews=pviews, extra_pipes=extra_pipes))

    def reload(self):
        r = self.home.run("reload")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("reload applied", r.stdout)

    def files(self, view="v", key="read"):
        status, body, _ = request("GET", f"{self.api}/{view}/tree?recursive=true", key)
        if status != 200:
            return status
        return sorted(c["path"] for c in body["children"][0]["children"])

    def alive(self, agent):
        status, resp = agent.heartbeat()
        return status

    def test_an_unchanged_pipe_keeps_its_session_and_its_view(self):
        # a view and a pipe added, on the same receiver, with a key of its own
        self.put(keys="{key: push, pipe_id: p}, {key: push2, pipe_id: q}",
                 extra_views="  w: {driver: fs, api_keys: [read]}",
                 extra_pipes="  q: {receiver: rx, views: [w]}")
        self.reload()
        self.assertEqual(self.alive(self.a), 200)
        self.assertEqual(self.a.role, "leader")
        self.assertEqual(len(self.files()), 20)
        self.assertIn("reload: view w added", self.home.log_text())
        self.assertIn("reload: pipe q added", self.home.log_text())
        b = V1Agent(self.recv, "push2", task_id="agent-2:q")
        status, resp = b.create_session()
        self.assertEqual(status, 200, resp)
        status, resp = b.push([event([row("/w/x", size=1)])])
        self.assertEqual(status, 200, resp)
        status, body, _ = request("GET", f"{self.api}/w/stats", "read")
        self.assertEqual(body["total_files"], 1)
        # and removed again: its session ends, its data stays on disk, the view is gone
        self.put()
        r = self.home.run("purge", "w")  # not yet reloaded: the running Fusion has it open
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("view w is open in the running Fusion", r.stderr)
        self.reload()
        self.assertEqual(self.alive(b), 401)  # its key went with it
        self.assertEqual(self.alive(self.a), 200)
        status, body, _ = request("GET", f"{self.api}/w/stats", "read")
        self.assertEqual(status, 404, body)
        self.assertTrue(os.path.isdir(f"{self.home.dir}/data/views/w"))
        self.assertIn("its data stays in", self.home.log_text())
        self.assertIn("reload: pipe q removed (1 session(s) closed)", self.home.log_text())
        self.assertEqual(len(self.files()), 20)
        # purge: lists it, refuses a configured view and bad names, then deletes it
        r = self.home.run("purge")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("data/views/w: no configured view uses it", r.stdout)
        self.assertNotIn("views/v:", r.stdout)
        r = self.home.run("purge", "v")
        self.assertEqual(r.returncode, 1)
        self.assertIn("view v is in the config", r.stderr)
        for bad in ("..", "a/b", "nope"):
            r = self.home.run("purge", bad)
            self.assertEqual(r.returncode, 1, bad)
        self.assertTrue(os.path.isdir(f"{self.home.dir}/data/views/w"))
        r = self.home.run("purge", "w")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("deleted", r.stdout)
        self.assertFalse(os.path.exists(f"{self.home.dir}/data/views/w"))
        self.assertTrue(os.path.isdir(f"{self.home.dir}/data/views/v"))
        self.assertEqual(len(self.files()), 20)

    def test_view_settings_apply_at_once(self):
        self.put(read="read2", items=5)  # a new read key, and a small item limit
        self.reload()
        self.assertEqual(self.files(key="read"), 401)
        status, body, _ = request("GET", f"{self.api}/v/tree?recursive=true", "read2")
        self.assertNotEqual(status, 200, body)  # more than 5 items
        self.assertIn("max_tree_items 0 -> 5", self.home.log_text())
        self.put(read="read2", items=0)
        self.reload()
        self.assertEqual(len(self.files(key="read2")), 20)
        self.assertEqual(self.alive(self.a), 200)

    def test_push_keys_rotate_without_dropping_sessions(self):
        self.put(keys="{key: push, pipe_id: p}, {key: push-new, pipe_id: p}")
        self.reload()
        self.a.key = "push-new"  # the agent moves to the new key, same session
        self.assertEqual(self.alive(self.a), 200)
        self.put(keys="{key: push-new, pipe_id: p}")  # the old one goes
        self.reload()
        self.assertEqual(self.alive(self.a), 200)
        status, resp = self.a.push([event([row("/d/new", size=1)])])
        self.assertEqual(status, 200, resp)
        self.a.key = "push"
        self.assertEqual(self.alive(self.a), 401)
        self.assertEqual(len(self.files()), 21)

    def test_a_new_view_on_a_pipe_makes_its_agents_start_over(self):
        self.put(extra_views="  w: {driver: fs, api_keys: [read]}", pviews="v, w")
        self.reload()
        self.assertEqual(self.alive(self.a), 419)
        self.assertIn("its receiver or views changed: 1 session(s) closed",
                      self.home.log_text())
        a2 = V1Agent(self.recv, "push", task_id="agent-1:sync2")
        status, resp = a2.create_session()
        self.assertEqual(status, 200, resp)
        self.assertEqual(resp["initial_sync"], "snapshot")  # w is empty: a snapshot fills it
        self.assertEqual(len(self.files()), 20)

    def test_a_receiver_on_a_new_port_listens_and_closes_with_its_pipe(self):
        port = free_port()
        extra = (f"  rx2: {{driver: http, bind_host: 127.0.0.1, port: {port}, "
                 "api_keys: [{key: push3, pipe_id: r}]}")
        text = BASE.format(rx=self.rx, keys="{key: push, pipe_id: p}", read="read", items=0,
                           extra_views="", pviews="v",
                           extra_pipes="  r: {receiver: rx2, views: [v]}")
        text = text.replace("views:\n", extra + "\nviews:\n", 1)
        self.home.put("default.yaml", text)
        self.reload()
        c = V1Agent(f"http://127.0.0.1:{port}", "push3", task_id="agent-3:r")
        status, resp = c.create_session()
        self.assertEqual(status, 200, resp)
        # v holds pipe p's data only: pipe r's storage is snapshotted, not audited
        self.assertEqual(resp["initial_sync"], "snapshot")
        self.put()
        self.reload()
        wait_for(lambda: "listener on port %d closed" % port in self.home.log_text(), 5,
                 what="the listener to close")
        with self.assertRaises(OSError):  # nothing listens there now
            c.create_session()
        self.assertEqual(self.alive(self.a), 200)

    def test_reloads_under_a_steady_ingest_lose_nothing(self):
        stop, results = threading.Event(), []

        def pusher():
            n = 0
            while not stop.is_set():
                status, _ = self.a.push([event([row(f"/s/f{n}", size=n)])])
                results.append(status)
                n += 1
        t = threading.Thread(target=pusher)
        t.start()
        try:
            for i in range(6):  # a view and a pipe come and go under the batches
                if i % 2 == 0:
                    self.put(keys="{key: push, pipe_id: p}, {key: push2, pipe_id: q}",
                             extra_views="  w: {driver: fs, api_keys: [read]}",
                             extra_pipes="  q: {receiver: rx, views: [w]}", items=i)
                else:
                    self.put(items=i)
                self.reload()
        finally:
            stop.set()
            t.join()
        self.assertTrue(results)
        self.assertEqual(set(results), {200})
        status, body, _ = request("GET", f"{self.api}/v/stats", "read")
        self.assertEqual(body["total_files"], 20 + len(results))
        self.assertEqual(self.alive(self.a), 200)


if __name__ == "__main__":
    unittest.main()
