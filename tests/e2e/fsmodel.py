"""A reference model of the fs view's consistency rules, written from the specification
(reference fustor-v1.md §3 and docs/consistency.md), not from the C code: plain dicts and
sets, brute force everywhere, no indexes, no heaps. test_consistency_model.py drives it and
a real Fusion with the same random operations and compares what the API shows.

Times are floats in seconds. `now` is Fusion's receive time of an operation; mtimes are the
storage's. Every operation first runs the timers at its time."""

EPS = 1e-6          # mtime equality
TOMB_EPS = 1e-5     # reincarnation margin over a tombstone
LATE_START = 5.0    # an explicit audit start this soon after the last keeps what it saw
WINDOW = 10000      # clock samples kept

REALTIME, SNAPSHOT, AUDIT, ON_DEMAND = "realtime", "snapshot", "audit", "on_demand_job"


def parent_of(path):
    head = path.rsplit("/", 1)[0]
    return head or "/"


def ancestors(path):
    """'/a/b/c' -> ['/a', '/a/b'] (the root excluded)."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


class Node:
    def __init__(self, is_dir):
        self.is_dir = is_dir
        self.size = 0
        self.mtime = 0.0
        self.updated = 0.0
        self.missing = True      # agent_missing: nothing confirmed it yet
        self.skipped = False     # audit_skipped


class Clock:
    """Skew = the most frequent int(now - mtime) of the last 10,000 realtime samples. After
    each change (the oldest sample leaving, then the new one entering): the value with the
    highest count; on a tie the current mode if it is among them, else the value that
    reached that count first."""

    def __init__(self):
        self.samples = []
        self.count = {}
        self.reached = {}
        self.stamp = 0
        self.mode = None
        self.seed = None

    def _settle(self):
        if not self.count:
            self.mode = None
            return
        best = max(self.count.values())
        if self.mode is not None and self.count.get(self.mode) == best:
            return
        tied = [v for v, c in self.count.items() if c == best]
        self.mode = min(tied, key=lambda v: self.reached[v])

    def _change(self, value, delta):
        self.stamp += 1
        c = self.count.get(value, 0) + delta
        if c:
            self.count[value] = c
            self.reached[value] = self.stamp
        else:
            del self.count[value]
            del self.reached[value]
        self._settle()

    def sample(self, now, mtime):
        skew = int(now - mtime)  # truncation toward zero
        if len(self.samples) == WINDOW:
            self._change(self.samples.pop(0), -1)
        self.samples.append(skew)
        self._change(skew, +1)

    def skew(self):
        if self.mode is not None:
            return float(self.mode)
        return self.seed if self.seed is not None else 0.0

    def watermark(self, now):
        return now - self.skew()


class Model:
    def __init__(self, hot, ttl):
        self.hot, self.ttl = hot, ttl
        self.reset()

    def reset(self):
        self.nodes = {"/": Node(True)}
        self.clock = Clock()
        self.tombs = {}        # path -> (logical, physical)
        self.suspects = {}     # path -> (until, recorded mtime)
        self.additions = set()
        self.deletions = set()
        self.seen = set()
        self.pipe_epochs = {}
        self.auditing = False
        self.audit_start_at = 0.0
        self.audit_finished_at = 0.0
        self.audit_cycles = 0

    # ------------------------------------------------------------------ the tree
    def _remove(self, path):
        gone = [p for p in self.nodes if p == path or p.startswith(path + "/")]
        for p in gone:
            del self.nodes[p]
            self.suspects.pop(p, None)
            self.additions.discard(p)
            self.seen.discard(p)
        return len(gone)

    def _make(self, path, is_dir):
        n = self.nodes.get(path)
        if n is not None and n.is_dir != is_dir:
            self._remove(path)
            n = None
        if n is None:
            n = self.nodes[path] = Node(is_dir)
        return n

    def _upsert(self, path, is_dir, size, mtime, updated):
        for a in ancestors(path):
            self._make(a, True)
        n = self._make(path, is_dir)
        n.size, n.mtime = size, mtime
        if updated > 0:
            n.updated = updated
        return n

    def _set_suspect(self, path, until, mtime):
        self.suspects[path] = (until, mtime)

    # ------------------------------------------------------------------ timers
    def tick(self, now):
        self.tombs = {p: t for p, t in self.tombs.items() if not t[1] < now - self.ttl}
        while True:
            due = [p for p, (until, _) in self.suspects.items() if until <= now]
            if not due:
                return
            for p in due:
                until, recorded = self.suspects[p]
                if until > now:
                    continue
                n = self.nodes[p]
                if abs(n.mtime - recorded) > EPS:
                    self.suspects[p] = (now + self.hot, n.mtime)
                else:
                    del self.suspects[p]

    # ------------------------------------------------------------------ audits
    def _new_leader(self, pipe, epoch):
        if self.pipe_epochs.get(pipe) == epoch:
            return False
        self.pipe_epochs[pipe] = epoch
        return True

    def audit_start(self, now, explicit, pipe, epoch):
        """A new leader's first audit resets the blind-spot lists and starts afresh."""
        self.tick(now)
        new_leader = self._new_leader(pipe, epoch)
        if new_leader:
            self.additions.clear()
            self.deletions.clear()
        if not explicit and self.auditing and not new_leader:
            return
        late = explicit and self.auditing and now - self.audit_start_at < LATE_START \
            and self.seen
        if new_leader or (explicit and not late):
            self.seen.clear()
        self.auditing = True
        self.audit_start_at = now

    def audit_end(self, now):
        self.tick(now)
        if not self.auditing:
            return
        self.tombs = {p: t for p, t in self.tombs.items() if not t[1] < now - self.ttl}
        doomed = []
        for d in self.seen:
            dn = self.nodes.get(d)
            if dn is None or not dn.is_dir or dn.skipped:
                continue
            for c, cn in self.nodes.items():
                if c == "/" or parent_of(c) != d or c in self.seen:
                    continue
                if cn.updated > self.audit_start_at or c in self.tombs:
                    continue
                doomed.append(c)
        self.seen.clear()
        for c in doomed:
            self.deletions.add(c)
            if c in self.nodes:
                self._remove(c)
        self.audit_finished_at = now
        self.audit_cycles += 1
        self.auditing = False
        self.audit_start_at = 0.0

    # ------------------------------------------------------------------ rows
    def batch(self, now, rows, pipe, epoch, storage_now=None):
        """rows: dicts with src, delete, path, is_dir, size, mtime (None: absent), atomic,
        skipped, parent (None: no parent_path, else parent_mtime or None)."""
        self.tick(now)
        if any(r["src"] == AUDIT for r in rows):
            self.audit_start(now, False, pipe, epoch)
        if storage_now is not None:
            self.clock.seed = now - storage_now
        for r in rows:
            self._row(now, r)

    def _row(self, now, r):
        path, src, mtime = r["path"], r["src"], r["mtime"]
        if src == REALTIME and mtime is not None:
            self.clock.sample(now, mtime)
        wm = self.clock.watermark(now)
        if src == AUDIT and not self.auditing:
            self.auditing, self.audit_start_at = True, now
        if src == AUDIT and not r["delete"]:
            self.deletions.discard(path)
        if r["delete"]:
            self._delete(now, wm, r)
            return
        skipped = src == AUDIT and r["is_dir"] and r["skipped"]
        self._upsert_row(now, wm, r, skipped)
        if src == AUDIT and path in self.nodes:
            # only an audit says whether it listed a directory, even in a row it ignored
            if r["is_dir"] and self.nodes[path].is_dir:
                self.nodes[path].skipped = skipped
            self.seen.add(path)

    def _delete(self, now, wm, r):
        path = r["path"]
        if r["src"] == REALTIME:
            if path in self.nodes:
                self._remove(path)
            self.tombs[path] = (wm, now)
            self.deletions.discard(path)
            return
        if path in self.tombs:
            return
        n = self.nodes.get(path)
        if n is not None and r["mtime"] is not None and n.mtime > r["mtime"]:
            return
        if n is not None:
            self._remove(path)
        self.deletions.add(path)

    def _upsert_row(self, now, wm, r, skipped):
        path, src, mtime = r["path"], r["src"], r["mtime"]
        realtime = src == REALTIME
        if path in self.tombs:
            if mtime > self.tombs[path][0] + TOMB_EPS:
                del self.tombs[path]
            else:
                return
        old = self.nodes.get(path)
        if not realtime:
            if old is not None and not skipped and old.mtime >= mtime:
                return
            if src == AUDIT and old is None and r["parent"] is not False:
                p = self.nodes.get(parent_of(path))
                if p is not None and p.is_dir and p.mtime > (r["parent"] or 0.0):
                    return
        old_mtime = old.mtime if old is not None else 0.0
        old_updated = old.updated if old is not None else 0.0
        n = self._upsert(path, r["is_dir"], r["size"], mtime, now if realtime else old_updated)
        if realtime:
            # an event inside a directory proves the directory exists: audits spare it
            for a in ancestors(path):
                self.nodes[a].updated = max(self.nodes[a].updated, now)
            if r["atomic"]:
                self.suspects.pop(path, None)
            else:
                self._set_suspect(path, now + self.hot, mtime)
            self.deletions.discard(path)
            self.additions.discard(path)
            n.missing = False
            return
        age = wm - mtime
        changed = old is None or abs(old_mtime - mtime) > EPS
        if src == SNAPSHOT:
            n.missing = False
            self.additions.discard(path)
        elif changed:
            self.additions.add(path)
            n.missing = True
        if changed and age < self.hot:
            if path not in self.suspects:
                life = min(self.hot, self.hot - age)
                self._set_suspect(path, now + max(0.0, life), mtime)
        elif age >= self.hot:
            self.suspects.pop(path, None)

    # ------------------------------------------------------------------ sentinel
    def sentinel(self, now, path, mtime, size=None, missing=False):
        n = self.nodes.get(path)
        if n is None or path not in self.suspects:
            return
        if missing:
            self.suspects[path] = (now + self.hot, n.mtime)
            return
        skew = float(self.clock.mode) if self.clock.mode is not None else 0.0
        raw = abs(n.mtime - mtime) < EPS
        skewed = abs(n.mtime - (mtime + skew)) < EPS
        if skewed and not raw:
            mtime = n.mtime
        stable = (raw or skewed) and (size is None or n.size == size)
        age = self.clock.watermark(now) - mtime
        if stable:
            if age >= self.hot:
                del self.suspects[path]
            return
        n.mtime = mtime
        if size is not None:
            n.size = size
        self.suspects[path] = (now + self.hot, mtime)

    # ------------------------------------------------------------------ what the API shows
    def view(self, now):
        nodes = {}
        for p, n in self.nodes.items():
            nodes[p] = {"dir": n.is_dir, "size": n.size, "mtime": n.mtime, "suspect": p in self.suspects,
                        "missing": n.missing, "skipped": n.skipped if n.is_dir else None}
        return {
            "nodes": nodes,
            "suspects": sorted((p, u) for p, (u, _) in self.suspects.items()),
            "additions": sorted(self.additions),
            "deletions": sorted(self.deletions),
            "stats": {"has_blind_spot": bool(self.additions or self.deletions),
                      "suspect_file_count": sum(1 for p in self.suspects
                                                if not self.nodes[p].is_dir),
                      "is_auditing": self.auditing,
                      "audit_cycle_count": self.audit_cycles,
                      "last_audit_finished_at": self.audit_finished_at,
                      "logical_now": self.clock.watermark(now)},
        }
