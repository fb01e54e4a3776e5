"""The benchmark suite's own tools, run small: the generated tree holds what its shape says,
bench_apply applies every row, bench_tree counts every entry, bench_create writes every file with its time, bench_load
counts requests, errors and reconnects against a real Fusion, and the snapshot benchmark
times an agent until Fusion holds every file. (The figures are not checked:
timing belongs to `make bench`, not to the tests.)"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import Home, binary, free_port, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bench"))
import tree  # noqa: E402


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kw)


class Tree(unittest.TestCase):
    def test_the_tree_holds_what_its_shape_says(self):
        tmp = tempfile.mkdtemp(prefix="fustor-e2e-benchtree-")
        self.addCleanup(shutil.rmtree, tmp)
        root = f"{tmp}/t"
        shape = tree.build(root, 120, 3)
        files = dirs = 0
        for _, ds, fs in os.walk(root):
            files += len(fs)
            dirs += len(ds)
        self.assertEqual(files, shape["files"])
        self.assertEqual(dirs + 1, shape["all_dirs"])
        self.assertEqual(len(os.listdir(root + shape["wide_dir"])), shape["wide_entries"])
        needles = [f for _, _, fs in os.walk(root) for f in fs if f.startswith("needle-")]
        self.assertEqual(len(needles), shape["search_hits"])
        # built once: a second call keeps the tree (same inode), a new shape rebuilds it
        ino = os.stat(f"{root}/wide").st_ino
        self.assertEqual(tree.build(root, 120, 3), shape)
        self.assertEqual(os.stat(f"{root}/wide").st_ino, ino)

    def test_a_directory_that_is_not_a_benchmark_tree_is_left_alone(self):
        tmp = tempfile.mkdtemp(prefix="fustor-e2e-benchtree-")
        self.addCleanup(shutil.rmtree, tmp)
        with open(f"{tmp}/precious", "w") as f:
            f.write("x")
        with self.assertRaises(SystemExit):
            tree.build(tmp, 10, 1)
        self.assertTrue(os.path.exists(f"{tmp}/precious"))


class Programs(unittest.TestCase):
    def test_bench_apply_applies_every_row(self):
        r = run(binary("bench_apply"), "20000", "400")
        self.assertEqual(r.returncode, 0, r.stderr)
        res = json.loads(r.stdout)
        self.assertEqual((res["rows"], res["dirs"], res["journal"]), (20000, 400, False))
        self.assertGreater(res["snapshot_rows_per_s"], 0)
        jdir = tempfile.mkdtemp(prefix="fustor-e2e-benchapply-")
        self.addCleanup(shutil.rmtree, jdir)
        r = run(binary("bench_apply"), "5000", "100", jdir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(json.loads(r.stdout)["journal"])
        self.assertTrue(os.listdir(jdir), "the journal was written")
        self.assertEqual(run(binary("bench_apply"), "0").returncode, 2)

    def test_bench_tree_counts_every_entry_and_refuses_bad_arguments(self):
        for extra, names in (((), "v1-shape"), (("unique",), "unique")):
            r = run(binary("bench_tree"), "3", *extra)
            self.assertEqual(r.returncode, 0, r.stderr)
            res = json.loads(r.stdout.splitlines()[0])
            # 3 directories of 4 subdirectories of 250 files, the directories and the root
            self.assertEqual((res["entries"], res["names"]), (3 * 4 * 250 + 3 * 5 + 1, names))
        for bad in (("abc",), ("-5",), ("0",), ("3", "x"), ("3", "unique", "more")):
            r = run(binary("bench_tree"), *bad)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("usage: bench_tree", r.stderr)

    def test_bench_create_writes_every_file_with_its_time(self):
        tmp = tempfile.mkdtemp(prefix="fustor-e2e-benchcreate-")
        self.addCleanup(shutil.rmtree, tmp)
        r = run(binary("bench_create"), tmp, "2000", "0.25")
        self.assertEqual(r.returncode, 0, r.stderr)
        times = [float(x) for x in r.stdout.split()]
        self.assertEqual(len(times), 500)
        self.assertEqual(sorted(os.listdir(tmp)), [f"f{i:06d}" for i in range(500)])
        self.assertEqual(times, sorted(times))
        self.assertGreaterEqual(times[-1] - times[0], 0.2, "paced, not all at once")
        self.assertEqual(run(binary("bench_create"), tmp, "-1", "1").returncode, 2)
        r = run(binary("bench_create"), f"{tmp}/missing", "10", "0.1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("No such file", r.stderr)


class Load(unittest.TestCase):
    def setUp(self):
        self.home = Home("fusion")
        self.home.put("default.yaml", f"""logging: WARNING
receivers:
  rx: {{driver: http, bind_host: 127.0.0.1, port: {free_port()},
       api_keys: [{{key: k, pipe_id: p}}]}}
views:
  v: {{driver: fs, api_keys: [r]}}
pipes:
  p: {{receiver: rx, views: [v]}}
""")
        self.home.start_daemon(self)
        self.api = f"http://127.0.0.1:{self.home.api_port}"
        wait_for(lambda: run("curl", "-sf", f"{self.api}/health").returncode == 0,
                 what="Fusion to answer")

    def load(self, *args):
        r = run(binary("bench_load"), *args)
        return r.returncode, json.loads(r.stdout) if r.stdout else None, r.stderr

    def test_keep_alive_requests_are_counted(self):
        rc, res, err = self.load("-c", "3", "-d", "0.3", f"{self.api}/health")
        self.assertEqual(rc, 0, err)
        self.assertEqual((res["concurrency"], res["errors"], res["reconnects"]), (3, 0, 0))
        self.assertGreater(res["requests"], 10)
        self.assertLessEqual(res["p50_ms"], res["p99_ms"])
        self.assertLessEqual(res["p99_ms"], res["max_ms"])
        self.assertEqual(res["mean_bytes"], len(run("curl", "-s", f"{self.api}/health").stdout))

    def test_error_answers_and_unreachable_servers_are_errors(self):
        # no agent has synced: the view answers 503, every request is an error
        rc, res, _ = self.load("-d", "0.2", "-H", "X-API-Key: r", f"{self.api}/api/v1/views/v/stats")
        self.assertEqual(rc, 1)
        self.assertEqual(res["errors"], res["requests"])
        self.assertEqual(res["reconnects"], 0)
        rc, res, _ = self.load("-d", "0.2", f"http://127.0.0.1:{free_port()}/health")
        self.assertEqual(rc, 1)
        self.assertGreater(res["errors"], 0)
        rc, res, err = self.load("-c", "0", f"{self.api}/health")
        self.assertEqual(rc, 2)
        self.assertIn("usage", err)


class Snapshot(unittest.TestCase):
    def test_a_snapshot_is_timed_until_fusion_holds_every_file(self):
        import agent_snapshot
        tmp = tempfile.mkdtemp(prefix="fustor-e2e-benchsnap-")
        self.addCleanup(shutil.rmtree, tmp)
        shape = tree.build(f"{tmp}/t", 40, 5)
        cpu = {}
        dt, hwm, rss0, st = agent_snapshot.index(os.path.dirname(binary("fustor-agent")), shape,
                                                 keep=True, cpu=cpu)
        self.addCleanup(st.stop)
        self.assertGreater(dt, 0)
        self.assertGreater(hwm, 0)
        self.assertGreater(rss0, 0)
        self.assertEqual(sorted(cpu), ["agent_cpu_s", "fusion_cpu_s", "steal_s"])
        self.assertTrue(all(v >= 0 for v in cpu.values()), cpu)
        self.assertIn("snapshot done", st.agent_log())

    def test_two_builds_are_compared_round_by_round(self):
        import agent_snapshot
        tmp = tempfile.mkdtemp(prefix="fustor-e2e-benchab-")
        self.addCleanup(shutil.rmtree, tmp)
        shape = tree.build(f"{tmp}/t", 20, 5)
        b = os.path.dirname(binary("fustor-agent"))
        res = agent_snapshot.compare([b, b + "/"], shape, 2, batch_size=7)
        self.assertEqual(sorted(res), sorted(["find_s", b, b + "/"]))
        self.assertEqual(len(res["find_s"]), 2)
        for d in (b, b + "/"):
            self.assertEqual(len(res[d]), 2)
            for r in res[d]:
                self.assertEqual(sorted(r), ["agent_cpu_s", "fusion_cpu_s", "s", "steal_s"])
                self.assertGreater(r["s"], 0)


if __name__ == "__main__":
    unittest.main()
