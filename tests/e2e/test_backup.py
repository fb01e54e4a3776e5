"""Backup and restore end to end: `fustor-fusion backup DIR` snapshots every view of a running
Fusion while it ingests; `fustor-fusion restore DIR` (Fusion stopped) checks the whole backup
before it touches anything, keeps the old data directories aside, and Fusion starts again with
every row acknowledged before the backup. Refusals (Fusion not running or running, a non-empty
DIR, a newer format, damage, a bad manifest) say why and change nothing. Also the management
API's `POST snapshot`."""
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import unittest
import urllib.error
import urllib.request

from harness import Home, free_port, wait_for
from v1agent import V1Agent, event, request, row

CONFIG = """
logging: INFO
management_api_key: mk
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
journal: {{enabled: {journal}}}
"""

SNAP_HDR = 64


def crc32c(data):
    """CRC-32C (Castagnoli), as src/common/crc32c.c."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def tree_state(root):
    """{relative path: sha256} of every file below root, and the set of directories."""
    files, dirs = {}, set()
    for d, subdirs, names in os.walk(root):
        for s in subdirs:
            dirs.add(os.path.relpath(os.path.join(d, s), root))
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return files, dirs


class Fusion:
    """A Fusion home with the config above, started and stopped by the test."""

    def __init__(self, test, journal=True):
        self.test = test
        self.home = Home("fusion")
        self.rx = free_port()
        self.home.put("default.yaml",
                      CONFIG.format(rx=self.rx, journal="true" if journal else "false"))
        self.api = f"http://127.0.0.1:{self.home.api_port}"
        self.recv = f"http://127.0.0.1:{self.rx}"
        self.views = os.path.join(self.home.dir, "data", "views")

    def start(self):
        r = self.home.run("start", "-D")
        self.test.assertEqual(r.returncode, 0, r.stderr)

    def start_first(self):
        self.home.start_daemon(self.test)  # the test's cleanups stop it and remove the home

    def stop(self):
        r = self.home.run("stop")
        self.test.assertEqual(r.returncode, 0, r.stderr)

    def agent(self):
        a = V1Agent(self.recv, "push")
        status, resp = a.create_session()
        self.test.assertEqual(status, 200, resp)
        return a

    def push(self, a, batches, prefix, per=20):
        acked = set()
        for b in range(batches):
            rows = [row(f"{prefix}{b}/f{i}", size=i) for i in range(per)]
            status, resp = a.push([event(rows)])
            self.test.assertEqual(status, 200, resp)
            acked.update(r["path"] for r in rows)
        return acked

    def files(self):
        status, body, _ = request("GET", f"{self.api}/api/v1/views/v/tree?recursive=true"
                                  "&max_depth=10", "read")
        self.test.assertEqual(status, 200, body)
        out = set()

        def walk(n):
            if n.get("content_type") == "file":
                out.add(n["path"])
            for c in n.get("children") or []:
                walk(c)
        walk(body)
        return out

    def stats(self):
        status, body, _ = request("GET", f"{self.api}/api/v1/views/v/stats", "read")
        self.test.assertEqual(status, 200, body)
        return body

    def backup(self, d, *extra):
        return self.home.run("backup", d, *extra, timeout=60)

    def restore(self, d):
        return self.home.run("restore", d, timeout=60)


def new_dir(test, name="backup"):
    """A path inside a fresh temp directory, removed when the test ends (absent itself)."""
    parent = tempfile.mkdtemp(prefix="fustor-e2e-backup-")
    test.addCleanup(shutil.rmtree, parent, True)
    return os.path.join(parent, name)


def snapshot_file(backup):
    [path] = glob.glob(os.path.join(backup, "v", "snapshot-*.fsnap"))
    return path


class BackupWhileRunning(unittest.TestCase):
    def test_backup_while_ingesting_then_restore_into_a_wiped_home(self):
        fu = Fusion(self)
        fu.start_first()
        a = fu.agent()
        before = fu.push(a, 20, "/pre")
        acked, stop = set(before), threading.Event()

        def ingest():
            b = 0
            while not stop.is_set():
                rows = [row(f"/live{b}/f{i}", size=i) for i in range(20)]
                status, _ = a.push([event(rows)])
                if status == 200:
                    acked.update(r["path"] for r in rows)
                b += 1
        t = threading.Thread(target=ingest)
        t.start()
        try:
            wait_for(lambda: len(acked) > len(before) + 100, 10, what="ingest under way")
            acked_before_backup = set(acked)
            d = new_dir(self)
            r = fu.backup(d)
        finally:
            stop.set()
            t.join()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("view v: snapshot at journal position", r.stdout)
        self.assertIn("backup complete: 1 view", r.stdout)
        self.assertEqual(os.stat(d).st_mode & 0o777, 0o750)
        m = load_json(os.path.join(d, "MANIFEST.json"))
        self.assertEqual(m["fustor_backup"], 1)
        self.assertEqual(m["snapshot_format"], 1)
        self.assertIn("fustor_version", m)
        [mv] = m["views"]
        self.assertEqual(mv["view_id"], "v")
        self.assertEqual(os.path.join(d, mv["file"]), snapshot_file(d))
        self.assertEqual(mv["bytes"], os.path.getsize(snapshot_file(d)))
        self.assertTrue(mv["file"].endswith(f"{mv['position']:016x}.fsnap"))
        self.assertGreater(mv["entries"], len(acked_before_backup))
        incarnation = os.path.join(fu.views, "v", "incarnation")
        with open(incarnation) as f:
            old_incarnation = f.read()

        fu.stop()
        shutil.rmtree(os.path.join(fu.home.dir, "data"))
        r = fu.restore(d)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("view v: restored the snapshot at journal position "
                      f"{mv['position']} ({mv['entries']} entries)", r.stdout)
        self.assertIn("view v: had no data directory before", r.stdout)
        self.assertIn("restore complete", r.stdout)
        # The snapshot alone: no journal, no incarnation (the view gets a new one at start).
        self.assertEqual(os.listdir(os.path.join(fu.views, "v")),
                         [os.path.basename(snapshot_file(d))])
        fu.start()
        files = fu.files()
        self.assertTrue(acked_before_backup <= files,
                        f"{len(acked_before_backup - files)} acknowledged rows missing")
        self.assertTrue(files <= acked)
        st = fu.stats()
        self.assertTrue(st["restored"])
        self.assertGreaterEqual(st["journal_position"], mv["position"])
        with open(incarnation) as f:
            self.assertNotEqual(f.read(), old_incarnation)
        # The journal goes on from the snapshot's position.
        self.assertEqual(fu.push(fu.agent(), 1, "/after"), {f"/after0/f{i}" for i in range(20)})
        self.assertTrue(glob.glob(os.path.join(fu.views, "v", f"journal-{mv['position']:016x}.log")))
        fu.stop()
        fu.start()
        self.assertIn("/after0/f0", fu.files())

    def test_restore_keeps_the_old_data_aside_and_leaves_other_views_alone(self):
        fu = Fusion(self)
        fu.start_first()
        a = fu.agent()
        kept = fu.push(a, 5, "/kept")
        d = new_dir(self)
        r = fu.backup(d)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        later = fu.push(a, 5, "/later")
        fu.stop()
        old, _ = tree_state(os.path.join(fu.views, "v"))
        os.makedirs(os.path.join(fu.views, "other"))
        r = fu.restore(d)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        [aside] = glob.glob(os.path.join(fu.views, "v.before-restore-*"))
        self.assertRegex(os.path.basename(aside), r"^v\.before-restore-\d{8}T\d{6}$")
        self.assertIn(f"its previous data is kept in {aside}", r.stdout)
        self.assertEqual(tree_state(aside)[0], old)
        self.assertIn("view other: not in the backup", r.stdout)
        self.assertTrue(os.path.isdir(os.path.join(fu.views, "other")))
        fu.start()
        files = fu.files()
        self.assertEqual(files, kept)
        self.assertFalse(files & later)

    def test_backup_into_a_non_empty_dir_is_refused(self):
        fu = Fusion(self)
        fu.start_first()
        d = new_dir(self)
        os.makedirs(d)
        with open(os.path.join(d, "precious"), "w") as f:
            f.write("keep me")
        r = fu.backup(d)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(f"{d} is not empty: a backup goes into a new or empty directory",
                      r.stderr)
        self.assertEqual(os.listdir(d), ["precious"])
        # A file, not a directory.
        r = fu.backup(os.path.join(d, "precious"))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("exists and is not a directory", r.stderr)
        with open(os.path.join(d, "precious")) as f:
            self.assertEqual(f.read(), "keep me")

    def test_restore_while_running_is_refused(self):
        fu = Fusion(self)
        fu.start_first()
        fu.push(fu.agent(), 2, "/x")
        d = new_dir(self)
        self.assertEqual(fu.backup(d).returncode, 0)
        state = tree_state(fu.home.dir + "/data")
        r = fu.restore(d)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(f"fustor-fusion is running (pid {fu.home.pid()}): stop it first",
                      r.stderr)
        self.assertEqual(r.stdout, "")
        files, _ = tree_state(fu.home.dir + "/data")
        self.assertEqual(set(files), set(state[0]))  # (the journal may grow meanwhile)

    def test_a_weird_dir_name_and_relative_paths_work(self):
        fu = Fusion(self)
        fu.start_first()
        fu.push(fu.agent(), 2, "/w")
        parent = os.path.dirname(new_dir(self))
        weird = "b\nack up \xff\"'$(x)"
        r = subprocess.run([fu.home.exe, "backup", weird.encode("utf-8", "surrogateescape")],
                           env=fu.home.env, capture_output=True, cwd=parent, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        target = os.path.join(parent.encode(), weird.encode("utf-8", "surrogateescape"))
        self.assertTrue(os.path.exists(os.path.join(target, b"MANIFEST.json")))
        fu.stop()
        r = subprocess.run([fu.home.exe, "restore", target], env=fu.home.env,
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"restore complete", r.stdout)

    def test_management_snapshot_endpoint(self):
        fu = Fusion(self)
        fu.start_first()
        fu.push(fu.agent(), 3, "/m")
        url = f"{fu.api}/api/v1/management/snapshot"
        status, body, _ = mgmt("POST", url, None)
        self.assertEqual(status, 401, body)
        self.assertIn("X-Management-Key", body["detail"])
        status, body, _ = mgmt("POST", url, "wrong")
        self.assertEqual(status, 401, body)
        status, body, _ = mgmt("GET", url, "mk")
        self.assertEqual(status, 405, body)
        status, body, _ = mgmt("POST", url + "?view=nope", "mk")
        self.assertEqual(status, 404, body)
        status, body, _ = mgmt("POST", url + "?view=v", "mk")
        self.assertEqual(status, 200, body)
        status, body, _ = mgmt("POST", url, "mk")
        self.assertEqual(status, 200, body)
        [v] = body["views"]
        self.assertEqual(v["view_id"], "v")
        self.assertEqual(sorted(v), ["bytes", "position", "seconds", "view_id"])
        path = os.path.join(fu.views, "v", f"snapshot-{v['position']:016x}.fsnap")
        self.assertEqual(os.path.getsize(path), v["bytes"])
        self.assertGreaterEqual(v["seconds"], 0)
        self.assertEqual(v["position"], fu.stats()["journal_position"])

    def test_views_without_storage_refuse_snapshots_and_backups(self):
        fu = Fusion(self, journal=False)
        fu.start_first()
        status, body, _ = mgmt("POST", f"{fu.api}/api/v1/management/snapshot", "mk")
        self.assertEqual(status, 409, body)
        self.assertIn("journal.enabled is false", body["detail"])
        d = new_dir(self)
        r = fu.backup(d)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("backup failed: view v has no storage (journal.enabled is false",
                      r.stderr)
        self.assertFalse(os.path.exists(d))

    def test_a_full_disk_fails_cleanly(self):
        """503 from the endpoint, and a backup into a full DIR leaves nothing behind."""
        if os.geteuid() != 0 or not shutil.which("mount"):
            self.skipTest("needs root to mount small tmpfs file systems")
        fu = Fusion(self)
        mounts = []
        for name in ("data", "full-backup"):
            p = os.path.join(fu.home.dir, name)
            os.makedirs(p)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", p],
                               capture_output=True, text=True)
            if r.returncode != 0:
                for m in mounts:
                    subprocess.run(["umount", "-l", m])
                self.skipTest(f"cannot mount a tmpfs: {r.stderr.strip()}")
            mounts.append(p)
        try:
            fu.start_first()
        finally:  # cleanups run last-added first: unmounted before the home is removed
            for m in mounts:
                self.addCleanup(subprocess.run, ["umount", "-l", m])
        fu.push(fu.agent(), 10, "/big", per=50)
        # The backup's DIR is full: the copy fails, nothing of it is left.
        fill(os.path.join(mounts[1], "filler"))
        d = os.path.join(mounts[1], "b")
        r = fu.backup(d)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("No space left on device", r.stderr)
        self.assertFalse(os.path.exists(d))
        # Fusion's own disk is full: the snapshot fails, 503 with the reason.
        fill(os.path.join(mounts[0], "filler"))
        status, body, _ = mgmt("POST", f"{fu.api}/api/v1/management/snapshot", "mk")
        self.assertEqual(status, 503, body)
        self.assertIn("view v: the snapshot failed", body["detail"])


def fill(path):
    """Writes zeros into path until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_json(path):
    with open(path) as f:
        return json.load(f)


def save_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f)


def mgmt(method, url, key):
    """A management request with X-Management-Key `key` (None: without), and no body."""
    req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
    if key is not None:
        req.add_header("X-Management-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


class RestoreRefusals(unittest.TestCase):
    """One backup, taken once; every test damages a copy of it and restores into a stopped
    Fusion, which must be refused with nothing in data/ changed."""

    @classmethod
    def setUpClass(cls):
        cls.fu = Fusion(unittest.TestCase())
        cls.fu.start()
        cls.fu.push(cls.fu.agent(), 5, "/r")
        cls.base = os.path.join(tempfile.mkdtemp(prefix="fustor-e2e-backup-"), "base")
        r = cls.fu.backup(cls.base)
        assert r.returncode == 0, r.stdout + r.stderr
        cls.fu.stop()
        cls.data = tree_state(os.path.join(cls.fu.home.dir, "data"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(os.path.dirname(cls.base), True)
        cls.fu.home.cleanup()

    def copy(self):
        d = new_dir(self)
        shutil.copytree(self.base, d)
        return d

    def refused(self, d, *needles):
        r = self.fu.restore(d)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(r.stdout, "")
        for n in needles:
            self.assertIn(n, r.stderr)
        self.assertIn("nothing was changed", r.stderr)
        self.assertEqual(tree_state(os.path.join(self.fu.home.dir, "data")), self.data)
        self.assertFalse(os.path.exists(self.fu.home.pidfile))
        return r.stderr

    def test_backup_is_refused_when_fusion_is_not_running(self):
        d = new_dir(self)
        r = self.fu.backup(d)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("fustor-fusion is not running", r.stderr)
        self.assertIn("offline backup", r.stderr)
        self.assertFalse(os.path.exists(d))

    def test_a_newer_snapshot_format_is_refused_naming_both_formats(self):
        d = self.copy()
        path = snapshot_file(d)
        with open(path, "r+b") as f:
            h = bytearray(f.read(SNAP_HDR))
            self.assertEqual(struct.unpack_from("<I", h, 60)[0], crc32c(h[:60]))  # our CRC
            struct.pack_into("<I", h, 8, 2)
            struct.pack_into("<I", h, 60, crc32c(h[:60]))
            f.seek(0)
            f.write(h)
        self.refused(d, "is of snapshot format 2", "this Fusion reads format 1")

    def test_a_newer_format_in_the_manifest_is_refused(self):
        d = self.copy()
        mpath = os.path.join(d, "MANIFEST.json")
        m = load_json(mpath)
        m["snapshot_format"] = 7
        save_json(mpath, m)
        self.refused(d, "snapshots of format 7", "reads snapshot format 1")

    def test_a_damaged_snapshot_is_refused(self):
        d = self.copy()
        path = snapshot_file(d)
        with open(path, "r+b") as f:
            f.seek(SNAP_HDR + 5)
            b = f.read(1)
            f.seek(SNAP_HDR + 5)
            f.write(bytes([b[0] ^ 0xFF]))
        self.refused(d, "damaged payload (CRC)", "the backup is damaged")

    def test_a_truncated_or_missing_snapshot_is_refused(self):
        d = self.copy()
        path = snapshot_file(d)
        os.truncate(path, os.path.getsize(path) - 3)
        self.refused(d, "truncated or damaged")
        os.unlink(path)
        self.refused(d, "cannot read", "No such file or directory")

    def test_a_missing_or_bad_manifest_is_refused(self):
        d = self.copy()
        mpath = os.path.join(d, "MANIFEST.json")
        good = load_json(mpath)
        os.unlink(mpath)
        self.refused(d, "has no MANIFEST.json", "incomplete")
        os.mkdir(mpath)
        self.refused(d, "is not a regular file")
        os.rmdir(mpath)
        cases = [
            ("{not json", "not valid JSON"),
            ("", "not valid JSON: unexpected end of input"),
            ("null", "expected a JSON object, found null"),
            ('{"fustor_backup": 1} trailing', "not valid JSON"),
            ("[1, 2]", "expected a JSON object"),
            ('{"views": []}', "fustor_backup is missing"),
            (dict(good, views="v"), "views must be an array of objects, not a string"),
            (dict(good, views=[]), "views is empty"),
            (dict(good, views=[5]), "views[0] must be an object, not a number"),
            (dict(good, fustor_backup="1"), "fustor_backup must be a non-negative integer"),
            (dict(good, fustor_backup=99), "backup format 99"),
            (dict(good, views=[dict(good["views"][0], position=-1)]),
             "views[0].position must be a non-negative integer"),
            (dict(good, views=[dict(good["views"][0], position=1.5)]),
             "views[0].position must be a non-negative integer, not a number"),
            (dict(good, views=[dict(good["views"][0], view_id=None)]),
             "views[0].view_id must be a string, not null"),
            (dict(good, views=[dict(good["views"][0], view_id="../etc")]),
             "views[0].view_id is not a view id"),
            (dict(good, views=[dict(good["views"][0], view_id="a\u0000b")]),
             "views[0].view_id must be a string without NUL bytes"),
            (dict(good, views=[dict(good["views"][0], file="/etc/passwd")]),
             "file must be \"v/snapshot-"),
            (dict(good, views=[dict(good["views"][0], position=1)]),
             "file must be \"v/snapshot-0000000000000001.fsnap\""),
            (dict(good, views=good["views"] * 2), "view v is listed twice"),
            (dict(good, views=[{"view_id": "v"}]), "views[0] lacks file"),
        ]
        for text, needle in cases:
            with self.subTest(manifest=text):
                with open(mpath, "w") as f:
                    f.write(text if isinstance(text, str) else json.dumps(text))
                self.refused(d, needle)
        # A position in the manifest the file does not cover.
        mv = good["views"][0]
        other = dict(mv, position=mv["position"] + 1,
                     file=f"v/snapshot-{mv['position'] + 1:016x}.fsnap")
        os.rename(snapshot_file(d), os.path.join(d, other["file"]))
        with open(mpath, "w") as f:
            json.dump(dict(good, views=[other]), f)
        self.refused(d, "the backup is inconsistent")

    def test_a_dir_that_is_not_a_backup_is_refused(self):
        d = new_dir(self)
        self.refused(d, "cannot use the backup directory", "No such file or directory")
        with open(d, "w") as f:
            f.write("x")
        self.refused(d, "is not a directory")
        r = self.fu.home.run("restore")
        self.assertEqual(r.returncode, 2)
        self.assertIn("'restore' needs a directory", r.stderr)


class AgentHasNoBackup(unittest.TestCase):
    def test_the_agent_has_no_backup_or_restore(self):
        home = Home("agent")
        self.addCleanup(home.cleanup)
        r = home.run("--help")
        self.assertNotIn("backup", r.stdout)
        self.assertNotIn("restore", r.stdout)
        for cmd in ("backup", "restore"):
            r = home.run(cmd, "/tmp/x")
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertIn(f"unknown command '{cmd}'", r.stderr)
        fusion = Home("fusion")
        self.addCleanup(fusion.cleanup)
        out = fusion.run("--help").stdout
        self.assertIn("backup DIR", out)
        self.assertIn("restore DIR", out)


if __name__ == "__main__":
    unittest.main()
