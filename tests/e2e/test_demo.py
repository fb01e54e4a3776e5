"""`make demo` end to end: scripts/demo.py runs against the built binaries (FUSTOR_BIN_DIR, so
the ASan build runs it too), prints every step, and leaves no process and no temp dir behind:
when it completes, when it is interrupted with SIGINT (Ctrl-C) in the middle, and when a
daemon fails to start."""
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unittest

from harness import BIN_DIR, pid_alive, wait_for

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                    "demo.py")

STEPS = ["== 1. A sample tree", "== 2. Configuration", "== 3. Starting fustor-fusion",
         "== 4. Waiting for the agent's snapshot", "== 5. View stats", "== 6. The tree of",
         "== 7. Live changes", "== 8. fustor-agent status", "== 9. Stopping"]


class Demo(unittest.TestCase):
    def setUp(self):
        # The demo's temp dirs go here (TMPDIR), so the test can see that they are removed.
        self.tmp = tempfile.mkdtemp(prefix="fustor-e2e-demo-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.env = dict(os.environ, TMPDIR=self.tmp, FUSTOR_BIN_DIR=os.path.abspath(BIN_DIR))

    def popen(self, *args):
        # A session of its own, as a terminal's foreground job: SIGINT goes to its group.
        return subprocess.Popen([sys.executable, DEMO, *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def started_pids(self, out):
        pids = {m.group(1): int(m.group(2))
                for m in re.finditer(r"fustor-(fusion|agent) started \(pid (\d+)\)", out)}
        return pids

    def assert_nothing_left(self, pids):
        for prog, pid in pids.items():
            wait_for(lambda: not pid_alive(pid), 5, what=f"fustor-{prog} (pid {pid}) to exit")
        # No process at all runs with a FUSTOR_HOME under the demo's temp dir.
        mine = f"FUSTOR_HOME={self.tmp}".encode()
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == os.getpid():
                continue
            try:
                with open(f"/proc/{p}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if any(e.startswith(mine) for e in env) and pid_alive(int(p)):
                self.fail(f"process {p} left running from the demo's temp dir")

    def assert_no_sanitizer_report(self, root):
        for prog in ("fusion", "agent"):
            path = os.path.join(root, f"{prog}-home", "logs", f"{prog}.log")
            with open(path, errors="replace") as f:
                log = f.read()
            self.assertNotIn("Sanitizer", log, path)
            self.assertNotIn("runtime error:", log, path)

    def test_demo_shows_every_step_and_stops_everything(self):
        p = self.popen("--keep")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, out + err)
        pos = 0
        for step in STEPS:  # in order
            i = out.find(step, pos)
            self.assertGreaterEqual(i, 0, f"{step!r} missing or out of order in:\n{out}")
            pos = i
        self.assertIn("3,040 files in 125 directories", out)
        self.assertIn("3,040 files and 125 directories in the view", out)
        self.assertRegex(out, r"task \S+:research-sync-task  role leader")
        self.assertRegex(out, r"files +3,040\n +directories +125\n +total size")
        self.assertIn("├── run-001/", out)
        self.assertRegex(out, r"sample-0001\.dat +\d")
        for change in ("create", "modify", "delete"):
            self.assertRegex(out, change + r" +/projects/alpha/exp-01/run-001/new-result\.csv"
                                           r" +->  in Fusion after +\d+\.\d ms")
        self.assertIn("(size 19, ", out)
        self.assertIn("(size 34, ", out)
        self.assertIn("(gone from the view)", out)
        self.assertRegex(out, r"fustor-agent: running \(pid \d+\)")
        self.assertRegex(out, r"role: leader\n +phase: watching")
        pids = self.started_pids(out)
        self.assertEqual(sorted(pids), ["agent", "fusion"])
        for prog, pid in pids.items():
            self.assertIn(f"fustor-{prog} stopped (pid {pid})", out)
        self.assertRegex(out, r"demo done in \d+\.\d s")
        self.assertEqual(err, "")
        self.assert_nothing_left(pids)
        # --keep leaves the one temp dir, with the logs (which the sanitizers write into).
        kept = os.listdir(self.tmp)
        self.assertEqual(len(kept), 1, kept)
        self.assertIn(f"kept {os.path.join(self.tmp, kept[0])}", out)
        self.assert_no_sanitizer_report(os.path.join(self.tmp, kept[0]))

    def interrupt_after(self, marker):
        """Runs the demo, sends SIGINT to its process group once `marker` is printed."""
        p = self.popen()
        seen = []
        for line in p.stdout:
            seen.append(line)
            if marker in line:
                os.killpg(p.pid, signal.SIGINT)
                break
        else:
            p.wait(timeout=60)
            self.fail(f"{marker!r} never printed:\n{''.join(seen)}{p.stderr.read()}")
        rest, err = p.communicate(timeout=60)
        return p.returncode, "".join(seen) + rest, err

    def test_sigint_while_the_daemons_run_stops_them_and_removes_everything(self):
        for marker in ("fustor-agent started (pid", "== 7. Live changes"):
            with self.subTest(interrupted_after=marker):
                code, out, err = self.interrupt_after(marker)
                self.assertEqual(code, 130, out + err)
                self.assertIn("SIGINT received: stopping the demo", out)
                pids = self.started_pids(out)
                self.assertEqual(sorted(pids), ["agent", "fusion"], out)
                for prog, pid in pids.items():
                    self.assertIn(f"fustor-{prog} stopped (pid {pid})", out)
                self.assertNotIn("demo done", out)
                self.assert_nothing_left(pids)
                self.assertEqual(os.listdir(self.tmp), [], "temp dirs left behind")

    def test_a_daemon_that_fails_to_start_fails_the_demo_and_the_other_is_stopped(self):
        # An agent whose `start` fails; every other command is the real agent's.
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir)
        real = os.path.abspath(BIN_DIR)
        os.symlink(os.path.join(real, "fustor-fusion"), os.path.join(bindir, "fustor-fusion"))
        fake = os.path.join(bindir, "fustor-agent")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\nif [ "$1" = start ]; then\n'
                    '  echo "error: injected start failure" >&2; exit 1\nfi\n'
                    f'exec "{real}/fustor-agent" "$@"\n')
        os.chmod(fake, os.stat(fake).st_mode | stat.S_IXUSR)
        p = self.popen("--bin-dir", bindir)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 1, out + err)
        self.assertIn("demo FAILED: fustor-agent start -D failed (exit 1):\n"
                      "error: injected start failure", err)
        self.assertIn("/fusion.log:", out)  # the log's tail
        self.assertIn("pipe research-sync: active", out)
        pids = self.started_pids(out)
        self.assertEqual(list(pids), ["fusion"], out)
        self.assertIn(f"fustor-fusion stopped (pid {pids['fusion']})", out)
        self.assert_nothing_left(pids)
        self.assertEqual(os.listdir(self.tmp), ["bin"], "temp dirs left behind")


if __name__ == "__main__":
    unittest.main()
