"""A minimal client that speaks to Fusion exactly as a Fustor v1 agent does (reference
fustor-v1.md §2): session create, heartbeats, event batches with v1's field names, close.
Python standard library only."""
import json
import time
import urllib.error
import urllib.request


class HTTPError(Exception):
    def __init__(self, status, body, headers):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers


def request(method, url, key=None, body=None, raw=None, timeout=30):
    """Returns (status, parsed JSON body, headers); never raises on HTTP errors."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if key is not None:
        req.add_header("X-API-Key", key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None, dict(r.headers)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return e.code, parsed, dict(e.headers)


def row(path, size=0, mtime=None, is_dir=False, **extra):
    """A v1 FS row (FSRow)."""
    mtime = time.time() if mtime is None else mtime
    r = {"path": path, "file_name": path.rsplit("/", 1)[-1], "size": size,
         "modified_time": mtime, "created_time": mtime, "is_directory": is_dir}
    r.update(extra)
    return r


def event(rows, event_type="update", source="realtime"):
    """A v1 EventBase carrying rows."""
    return {"event_id": None, "timestamp": time.time(), "event_type": event_type,
            "fields": ["path", "file_name", "size", "modified_time", "created_time",
                       "is_directory"],
            "rows": rows, "index": int(time.time() * 1000), "event_schema": "fs",
            "table": "files", "message_source": source, "metadata": {}}


class V1Agent:
    def __init__(self, base, key, task_id="agent-1:sync", source_uri="/mnt/shared"):
        self.base = base.rstrip("/") + "/api/v1/pipe"
        self.key = key
        self.task_id = task_id
        self.source_uri = source_uri
        self.session_id = None
        self.role = None

    def create_session(self, timeout=None):
        body = {"task_id": self.task_id, "source_type": "fs",
                "client_info": {"source_uri": self.source_uri}}
        if timeout is not None:
            body["session_timeout_seconds"] = timeout
        status, resp, _ = request("POST", self.base + "/session/", self.key, body)
        if status == 200:
            self.session_id = resp["session_id"]
            self.role = resp["role"]
        return status, resp

    def heartbeat(self):
        status, resp, _ = request(
            "POST", f"{self.base}/session/{self.session_id}/heartbeat", self.key,
            {"can_realtime": True,
             "agent_status": {"agent_id": self.task_id.split(":")[0], "state": "RUNNING",
                              "role": self.role, "events_pushed": 0}})
        if status == 200:
            self.role = resp["role"]
        return status, resp

    def push(self, events, source_type="message", is_end=False, metadata=None, **extra):
        """One batch; `extra`: more top-level fields (ours: seq, durable_at_end)."""
        body = {"session_id": self.session_id, "source_type": source_type, "is_end": is_end,
                "metadata": metadata, "events": events, **extra}
        status, resp, _ = request("POST", f"{self.base}/ingest/{self.session_id}/events",
                                  self.key, body)
        return status, resp

    def snapshot(self, rows, batch=100):
        for i in range(0, len(rows), batch):
            status, resp = self.push([event(rows[i:i + batch], source="snapshot")], "snapshot")
            if status != 200:
                return status, resp
        return self.push([], "snapshot", is_end=True)

    def close(self):
        return request("DELETE", f"{self.base}/session/{self.session_id}", self.key)[:2]
