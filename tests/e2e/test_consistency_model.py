"""Differential test of the consistency rules: thousands of random sequences of realtime,
snapshot, audit and on-demand rows (deletes, type switches, partial writes, future and old
mtimes, storage clocks skewed by hours), audit starts and ends, sentinel feedback and
suspect-list updates go both to a real fustor-fusion, through its HTTP API, and to the
reference model in fsmodel.py. After every few operations the tree, the suspect list, the
blind spots and the stats must be identical, exactly.

Fusion runs with FUSTOR_TEST_TIME=1, so each request's X-Fustor-Time header is its receive
time: the model then knows every `now`. Times are set in 2100, so the timers Fusion runs on
its own wall clock never fire; every operation runs them at its own time first.

FUSTOR_MODEL_SEQUENCES sets the number of sequences (default 1500), FUSTOR_MODEL_SEED the
seed (default: random, printed on failure)."""
import http.client
import json
import os
import random
import unittest

import fsmodel
from fsmodel import AUDIT, ON_DEMAND, REALTIME, SNAPSHOT
from harness import Home, free_port

HOT, TTL = 30.0, 60.0
CONFIG = f"""
logging: INFO
receivers:
  rx:
    driver: http
    bind_host: 127.0.0.1
    port: {{rx}}
    api_keys: [{{{{key: push, pipe_id: p}}}}]
views:
  v:
    driver: fs
    api_keys: [read]
    driver_params:
      max_tree_items: 0
      hot_file_threshold: {HOT}
      consistency: {{{{tombstone_ttl_seconds: {TTL}}}}}
pipes:
  p: {{{{receiver: rx, views: [v], session_timeout_seconds: 100000}}}}
"""
PATHS = ["/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/k", "/a/x/l"]
BASE = 4102444800.0  # 2100-01-01


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, key, now, body=None):
        headers = {"X-API-Key": key, "X-Fustor-Time": repr(now)}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, data, headers)
        r = self.conn.getresponse()
        text = r.read()
        return r.status, (json.loads(text) if text else None)


class ConsistencyModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.home = Home("fusion")
        cls.home.env["FUSTOR_TEST_TIME"] = "1"
        rx = free_port()
        cls.home.put("default.yaml", CONFIG.format(rx=rx))
        r = cls.home.run("start", "-D")
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        cls.rx = Client(rx)
        cls.api = Client(cls.home.api_port)

    @classmethod
    def tearDownClass(cls):
        cls.home.run("stop")
        cls.home.cleanup()

    # ------------------------------------------------------------------ driving both
    def start_sequence(self, now):
        status, _ = self.api.call("DELETE", "/api/v1/views/v/reset", "push", now)
        self.assertEqual(status, 204)
        self.model.reset()
        status, resp = self.rx.call("POST", "/api/v1/pipe/session/", "push", now,
                                    {"task_id": "model:p"})
        self.assertEqual(status, 200, resp)
        self.sid, self.epoch = resp["session_id"], resp["epoch"]
        self.assertEqual(resp["role"], "leader")
        status, resp = self.push(now, [], "snapshot", True)  # the view becomes ready
        self.assertEqual(status, 200, resp)

    def push(self, now, events, source_type, is_end=False):
        return self.rx.call("POST", f"/api/v1/pipe/ingest/{self.sid}/events", "push", now,
                            {"session_id": self.sid, "source_type": source_type,
                             "is_end": is_end, "events": events})

    def mtime(self, rnd, now):
        node = self.model.nodes.get(rnd.choice(PATHS))
        pick = rnd.random()
        if node is not None and pick < 0.15:
            return node.mtime  # equal to memory
        if node is not None and pick < 0.25:
            return node.mtime + rnd.choice([-1.0, 0.5, 2.0])
        tomb = self.model.tombs.get(rnd.choice(PATHS))
        if tomb is not None and pick < 0.35:
            return tomb[0] + rnd.choice([0.0, 0.000005, 0.00002, 1.0])
        age = rnd.choice([0.0, 1.0, 5.0, 20.0, 29.5, 30.0, 31.0, 100.0, 5000.0, -86400.0])
        return now - self.skew - age

    def random_row(self, rnd, now, src, delete):
        path = rnd.choice(PATHS)
        r = {"src": src, "delete": delete, "path": path, "is_dir": rnd.random() < 0.3,
             "size": rnd.choice([0, 1, 7, 4096]), "mtime": self.mtime(rnd, now),
             "atomic": rnd.random() < 0.6, "skipped": False, "parent": False}
        if delete and rnd.random() < 0.5:
            r["mtime"] = None
        if src == AUDIT and r["is_dir"] and rnd.random() < 0.3:
            r["skipped"] = True
        if src == AUDIT and rnd.random() < 0.7:
            p = self.model.nodes.get(fsmodel.parent_of(path))
            r["parent"] = None if (p is None or rnd.random() < 0.15) else \
                p.mtime + rnd.choice([-1.0, 0.0, 1.0])
        return r

    def wire_row(self, r):
        w = {"path": r["path"]}
        if not r["delete"]:
            w.update({"file_name": r["path"].rsplit("/", 1)[-1], "size": r["size"],
                      "modified_time": r["mtime"], "created_time": r["mtime"],
                      "is_directory": r["is_dir"]})
            if r["src"] == REALTIME:
                w["is_atomic_write"] = r["atomic"]
            if r["skipped"]:
                w["audit_skipped"] = True
        elif r["mtime"] is not None:
            w["modified_time"] = r["mtime"]
        if r["parent"] is not False:
            w["parent_path"] = fsmodel.parent_of(r["path"])
            if r["parent"] is not None:
                w["parent_mtime"] = r["parent"]
        return w

    def op_batch(self, rnd, now):
        src = rnd.choices([REALTIME, SNAPSHOT, AUDIT, ON_DEMAND], [5, 2, 3, 1])[0]
        events, rows, storage_now = [], [], None
        for _ in range(rnd.choice([1, 1, 2])):
            delete = rnd.random() < (0.3 if src == REALTIME else 0.1)
            ev_rows = [self.random_row(rnd, now, src, delete)
                       for _ in range(rnd.randint(1, 4))]
            ev = {"event_type": "delete" if delete else rnd.choice(["insert", "update"]),
                  "message_source": src, "event_schema": "fs", "table": "files",
                  "fields": [], "rows": [self.wire_row(r) for r in ev_rows]}
            if rnd.random() < 0.3:
                ev["index"] = int((now - self.skew) * 1000)
                storage_now = ev["index"] / 1000
            events.append(ev)
            rows += ev_rows
        is_end = src == AUDIT and rnd.random() < 0.3
        status, resp = self.push(now, events, src if src != ON_DEMAND else "message", is_end)
        self.assertEqual(status, 200, resp)
        self.assertEqual(resp["count"], len(rows), resp)
        self.log.append(f"    {src} end={is_end} storage_now={storage_now} rows={rows}")
        self.model.batch(now, rows, "p", self.epoch, storage_now)
        if is_end:
            self.model.audit_end(now)

    def op_reconnect(self, rnd, now):
        """The agent's session ends and a new one starts: a new leader (epoch)."""
        status, _ = self.rx.call("DELETE", f"/api/v1/pipe/session/{self.sid}", "push", now)
        self.assertEqual(status, 200)
        status, resp = self.rx.call("POST", "/api/v1/pipe/session/", "push", now,
                                    {"task_id": "model:p"})
        self.assertEqual((status, resp["role"]), (200, "leader"), resp)
        self.assertGreater(resp["epoch"], self.epoch)
        self.sid, self.epoch = resp["session_id"], resp["epoch"]
        self.log.append(f"    reconnect: epoch {self.epoch}")
        status, resp = self.push(now, [], "snapshot", True)  # its (empty) snapshot is done
        self.assertEqual(status, 200, resp)

    def op_audit(self, rnd, now):
        what = rnd.choice(["start", "end"])
        status, _ = self.rx.call("POST", f"/api/v1/pipe/consistency/audit/{what}", "push", now,
                                 {})
        self.assertEqual(status, 200)
        self.log.append(f"    audit {what}")
        if what == "start":
            self.model.audit_start(now, True, "p", self.epoch)
        else:
            self.model.audit_end(now)

    def op_sentinel(self, rnd, now):
        updates, calls = [], []
        for _ in range(rnd.randint(1, 3)):
            path = rnd.choice(list(self.model.suspects) + PATHS)
            node = self.model.nodes.get(path)
            base = node.mtime if node is not None else now
            mtime = base + rnd.choice([0.0, 0.0, 1.0, -float(self.model.clock.mode or 0)])
            size = rnd.choice([None, node.size if node is not None else 0, 99])
            missing = rnd.random() < 0.15
            u = {"path": path, "mtime": 0.0 if missing else mtime,
                 "status": "missing" if missing else "exists"}
            if size is not None:
                u["size"] = size
            updates.append(u)
            calls.append((path, mtime, size, missing))
        self.log.append(f"    sentinel {calls}")
        if rnd.random() < 0.7:
            status, resp = self.rx.call("POST", "/api/v1/pipe/consistency/sentinel/feedback",
                                        "push", now,
                                        {"type": "suspect_update", "updates": updates})
            self.assertEqual(status, 200, resp)
            self.model.tick(now)
            for path, mtime, size, missing in calls:
                self.model.sentinel(now, path, mtime, size, missing)
        else:  # the view API's variant: mtime only
            status, resp = self.api.call("PUT", "/api/v1/views/v/suspect-list", "push", now,
                                         {"updates": [{"path": u["path"], "mtime": c[1]}
                                                      for u, c in zip(updates, calls)]})
            self.assertEqual(status, 200, resp)
            self.model.tick(now)
            for path, mtime, _, _ in calls:
                self.model.sentinel(now, path, mtime)

    # ------------------------------------------------------------------ comparing
    def fusion_view(self, now):
        status, tree = self.api.call("GET", "/api/v1/views/v/tree?path=/&recursive=true",
                                     "read", now)
        self.assertEqual(status, 200, tree)
        nodes, stack = {}, [tree]
        while stack:
            n = stack.pop()
            d = n["content_type"] == "directory"
            nodes[n["path"]] = {"dir": d, "size": n["size"], "mtime": n["modified_time"],
                                "suspect": n["integrity_suspect"],
                                "missing": n["agent_missing"],
                                "skipped": n["audit_skipped"] if d else None}
            stack += n.get("children") or []
        _, suspects = self.api.call("GET", "/api/v1/views/v/suspect-list", "read", now)
        _, blind = self.api.call("GET", "/api/v1/views/v/blind-spots", "read", now)
        _, stats = self.api.call("GET", "/api/v1/views/v/stats", "read", now)
        self.assertEqual(blind["additions_count"], len(blind["additions"]))
        if stats["last_audit_finished_at"] is None:  # never: null here, 0.0 in the model
            stats["last_audit_finished_at"] = 0.0
        self.assertEqual(blind["deletion_count"], len(blind["deletions"]))
        return {
            "nodes": nodes,
            "suspects": sorted((s["path"], s["suspect_until"]) for s in suspects),
            "additions": sorted(a["path"] for a in blind["additions"]),
            "deletions": sorted(blind["deletions"]),
            "stats": {k: stats[k] for k in ("has_blind_spot", "suspect_file_count",
                                            "is_auditing", "audit_cycle_count",
                                            "last_audit_finished_at", "logical_now")},
        }

    def compare(self, now, seq, step):
        log = self.log
        want, got = self.model.view(now), self.fusion_view(now)
        if want != got:
            lines = [f"sequence {seq} step {step} (seed {self.seed}) diverged; operations:"]
            lines += log
            for k in want:
                if want[k] != got[k]:
                    lines.append(f"{k}: model {want[k]!r}\n{' ' * len(k)}  fusion {got[k]!r}")
            self.fail("\n".join(lines))

    # ------------------------------------------------------------------ the test
    def test_fusion_matches_the_reference_model(self):
        self.model = fsmodel.Model(HOT, TTL)
        self.seed = int(os.environ.get("FUSTOR_MODEL_SEED", random.randrange(1 << 30)))
        rnd = random.Random(self.seed)
        sequences = int(os.environ.get("FUSTOR_MODEL_SEQUENCES", "1500"))
        now = BASE
        for seq in range(sequences):
            now += 100000.0
            self.skew = rnd.choice([0.0, 7200.0, -3600.0, 0.25])
            self.start_sequence(now)
            self.log = [f"  skew {self.skew}"]
            log = self.log
            for step in range(rnd.randint(4, 16)):
                now += rnd.choice([0.0, 0.25, 1.0, 5.0, 10.0, 29.75, 30.0, 45.0, 61.0])
                kind = rnd.choices(["batch", "audit", "sentinel", "tick", "reconnect"],
                                   [8, 2, 2, 1, 1])[0]
                log.append(f"  {now - BASE:.2f} {kind}")
                if kind == "batch":
                    self.op_batch(rnd, now)
                elif kind == "audit":
                    self.op_audit(rnd, now)
                elif kind == "sentinel":
                    self.op_sentinel(rnd, now)
                elif kind == "reconnect":
                    self.op_reconnect(rnd, now)
                else:  # only an idle stretch: the next operation runs the timers
                    pass
                if step % 4 == 3:
                    self.compare(now, seq, step)
            self.compare(now, seq, "end")


if __name__ == "__main__":
    unittest.main()
