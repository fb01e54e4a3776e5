"""Daemon lifecycle of both binaries, end to end: start -D, status, reload with a good and a
bad config, SIGUSR1 log reopen, stop (graceful and forced), a second start refused, a stale
pidfile, foreground runs and `validate`."""
import json
import os
import signal
import subprocess
import time
import unittest

from harness import Home, pid_alive, wait_for



class FusionDaemonLifecycle(unittest.TestCase):
    def setUp(self):
        self.home = Home("fusion")
        self.home.copy_fixture("seed000/fusion-config/default.yaml")

    def tearDown(self):
        self.home.cleanup()

    def start_daemon(self):
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("fustor-fusion started (pid", r.stdout)
        pid = self.home.pid()
        self.assertTrue(pid_alive(pid))
        return pid

    def status_json(self):
        r = self.home.run("status", "--json")
        return r.returncode, json.loads(r.stdout)

    def test_start_status_stop(self):
        pid = self.start_daemon()
        self.assertIn(f"fusion[{pid}]", self.home.log_text())
        self.assertIn("pipe research-sync: active", self.home.log_text())

        r = self.home.run("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"fustor-fusion: running (pid {pid})", r.stdout)
        self.assertIn("default.yaml", r.stdout)
        self.assertIn("active_pipes: research-sync", r.stdout)

        code, st = self.status_json()
        self.assertEqual(code, 0)
        self.assertTrue(st["running"])
        self.assertEqual(st["status"]["pid"], pid)
        self.assertEqual(st["status"]["active_pipes"], ["research-sync"])
        self.assertEqual(len(st["status"]["config_files"]), 1)

        r = self.home.run("stop")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"stopped (pid {pid})", r.stdout)
        self.assertFalse(pid_alive(pid))
        self.assertFalse(os.path.exists(self.home.pidfile))
        self.assertIn("fustor-fusion stopped", self.home.log_text())

        r = self.home.run("status")
        self.assertEqual(r.returncode, 3)
        self.assertIn("not running", r.stdout)
        r = self.home.run("stop")
        self.assertEqual(r.returncode, 0)
        self.assertIn("not running", r.stdout)

    def test_second_start_is_refused(self):
        pid = self.start_daemon()
        for args in (("start", "-D"), ("start",)):
            r = self.home.run(*args)
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"already running (pid {pid})", r.stderr)
        self.assertTrue(pid_alive(pid))
        self.assertEqual(self.home.pid(), pid)

    def test_reload_good_config_applies_and_logs_the_diff(self):
        pid = self.start_daemon()
        # Add a pipe (and its key) to default.yaml: plain `start` activates only that file.
        with open(os.path.join(self.home.config_dir, "default.yaml")) as f:
            base = f.read()
        text = base.replace('        pipe_id: "research-sync"   # 绑定到指定的 Pipe ID',
                            '        pipe_id: "research-sync"   # 绑定到指定的 Pipe ID\n'
                            '      - key: "second-key"\n        pipe_id: "second-sync"')
        text += "\n  second-sync:\n    receiver: http-main\n    views: [research-view]\n"
        text = text.replace('level: "INFO"', 'level: "DEBUG"')
        self.home.put("default.yaml", text)

        r = self.home.run("reload")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("reload applied", r.stdout)
        self.assertIn("added: second-sync", r.stdout)
        log = self.home.log_text()
        self.assertIn("reload: pipes added: second-sync", log)
        self.assertIn("reload: pipes removed: none", log)
        self.assertIn("reload: pipes changed: none", log)
        code, st = self.status_json()
        self.assertEqual(sorted(st["status"]["active_pipes"]), ["research-sync", "second-sync"])
        self.assertEqual(st["status"]["log_level"], "DEBUG")
        self.assertEqual(st["status"]["pid"], pid)

        # Changing a view used by a pipe reports that pipe as changed.
        self.home.put("default.yaml", text.replace("hot_file_threshold: 60.0",
                                                   "hot_file_threshold: 90.0"))
        r = self.home.run("reload")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("changed: research-sync, second-sync", r.stdout)

    def test_reload_bad_config_is_rejected_and_old_config_keeps_running(self):
        pid = self.start_daemon()
        self.home.put("broken.yaml", "views:\n  research-view:\n    driver: fs\n"
                                     "    driver_prams: {}\n")
        r = self.home.run("reload")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("reload REJECTED", r.stdout)
        self.assertIn("broken.yaml:4:5: error: views.research-view: unknown key 'driver_prams' "
                      "(did you mean 'driver_params'?)", r.stdout)
        self.assertTrue(pid_alive(pid))
        log = self.home.log_text()
        self.assertIn("reload rejected: 1 error(s)", log)
        self.assertIn("broken.yaml:4:5", log)
        code, st = self.status_json()
        self.assertEqual(st["status"]["active_pipes"], ["research-sync"])
        self.assertFalse(st["status"]["last_reload"]["ok"])
        self.assertEqual(len(st["status"]["config_files"]), 1)  # still the old config

        os.remove(os.path.join(self.home.config_dir, "broken.yaml"))
        r = self.home.run("reload")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("reload applied", r.stdout)

    def test_sigusr1_reopens_the_log_file(self):
        pid = self.start_daemon()
        rotated = self.home.logfile + ".1"
        os.rename(self.home.logfile, rotated)
        os.kill(pid, signal.SIGUSR1)
        wait_for(lambda: os.path.exists(self.home.logfile), what="a new log file")
        wait_for(lambda: "log file reopened" in self.home.log_text(), what="reopen line")
        self.home.run("stop")
        self.assertIn("fustor-fusion stopped", self.home.log_text())
        with open(rotated) as f:
            self.assertNotIn("log file reopened", f.read())

    def test_stale_pidfile_is_detected_and_replaced(self):
        dead = subprocess.Popen(["true"])
        dead.wait()
        with open(self.home.pidfile, "w") as f:
            f.write(f"{dead.pid}\n")
        r = self.home.run("status")
        self.assertEqual(r.returncode, 3)
        self.assertIn(f"stale pidfile", r.stdout)
        self.assertIn(str(dead.pid), r.stdout)
        r = self.home.run("reload")
        self.assertEqual(r.returncode, 1)
        self.assertIn("stale pidfile", r.stderr)

        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"removing stale pidfile", r.stderr)
        self.assertNotEqual(self.home.pid(), dead.pid)
        self.assertTrue(pid_alive(self.home.pid()))

        # `stop` on a stale pidfile removes it.
        self.home.run("stop")
        with open(self.home.pidfile, "w") as f:
            f.write(f"{dead.pid}\n")
        r = self.home.run("stop")
        self.assertEqual(r.returncode, 0)
        self.assertIn("removed stale pidfile", r.stdout)
        self.assertFalse(os.path.exists(self.home.pidfile))

    def test_stop_escalates_to_sigkill_after_the_timeout(self):
        pid = self.start_daemon()
        os.kill(pid, signal.SIGSTOP)  # a hung process: SIGTERM stays pending
        try:
            t0 = time.monotonic()
            r = self.home.run("stop", "--timeout", "0.5")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("sending SIGKILL", r.stderr)
            self.assertIn(f"killed (pid {pid})", r.stdout)
            self.assertLess(time.monotonic() - t0, 10)
            self.assertFalse(pid_alive(pid))
            self.assertFalse(os.path.exists(self.home.pidfile))
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def test_invalid_config_is_not_started(self):
        self.home.put("default.yaml", "recievers: {}\nport: 0\n")
        r = self.home.run("start", "-D")
        self.assertEqual(r.returncode, 1)
        self.assertIn("default.yaml:1:1: error: unknown key 'recievers' (did you mean "
                      "'receivers'?)", r.stderr)
        self.assertIn("default.yaml:2:7: error: port: expected an integer from 1 to 65535",
                      r.stderr)
        self.assertIn("not started: 2 error(s)", r.stderr)
        self.assertFalse(os.path.exists(self.home.pidfile))

    def test_json_log_format(self):
        with open(os.path.join(self.home.config_dir, "default.yaml")) as f:
            text = f.read()
        self.home.put("default.yaml", text.replace('logging:\n  level: "INFO"',
                                                   'logging:\n  level: "INFO"\n  format: json'))
        pid = self.start_daemon()
        self.home.run("stop")
        lines = [json.loads(l) for l in self.home.log_text().splitlines() if l.startswith("{")]
        self.assertTrue(lines)
        for rec in lines:
            self.assertRegex(rec["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(rec["level"], ("DEBUG", "INFO", "WARNING", "ERROR"))
            self.assertEqual(rec["proc"], "fusion")
            self.assertEqual(rec["pid"], pid)
        self.assertTrue(any("started" in r["msg"] for r in lines))

    def test_env_overrides_log_level(self):
        self.home.env["FUSTOR_LOG_LEVEL"] = "warning"
        self.start_daemon()
        code, st = self.status_json()
        self.assertEqual(st["status"]["log_level"], "WARNING")
        self.home.env["FUSTOR_LOG_LEVEL"] = "shouty"
        r = self.home.run("validate")
        self.assertEqual(r.returncode, 1)
        self.assertIn("FUSTOR_LOG_LEVEL: error", r.stderr)


class ForegroundAndAgent(unittest.TestCase):
    def test_foreground_logs_to_stderr_and_stops_on_sigterm(self):
        home = Home("fusion")
        try:
            home.copy_fixture("seed000/fusion-config/default.yaml")
            p = subprocess.Popen([home.exe, "start"], env=home.env, stderr=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
            wait_for(lambda: os.path.exists(home.pidfile) and home.run("status").returncode == 0,
                     what="foreground fusion to run")
            r = home.run("start")
            self.assertEqual(r.returncode, 1)
            self.assertIn("already running", r.stderr)
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=10)
            self.assertEqual(p.returncode, 0, err)
            self.assertNotIn("Sanitizer", err)
            self.assertIn("INFO    fusion[", err)
            self.assertIn("started", err)
            self.assertIn("fustor-fusion stopped", err)
            self.assertFalse(os.path.exists(home.pidfile))
            self.assertFalse(os.path.exists(home.logfile))
        finally:
            home.cleanup()

    def test_agent_daemon_lifecycle_with_seed_config(self):
        home = Home("agent")
        try:
            home.copy_fixture("seed000/agent-config/default.yaml")
            r = home.run("start", "-D")
            self.assertEqual(r.returncode, 0, r.stderr)
            # Seed 000 names a placeholder host and a path absent here: warnings only.
            self.assertIn("placeholder", r.stderr)
            self.assertNotIn("error:", r.stderr)
            pid = home.pid()
            self.assertIn("WARNING agent[", home.log_text())  # the warnings reach the log
            self.assertIn("placeholder", home.log_text())
            r = home.run("status")
            self.assertEqual(r.returncode, 0)
            self.assertIn(f"fustor-agent: running (pid {pid})", r.stdout)
            self.assertIn("active_pipes: research-sync-task", r.stdout)
            r = home.run("reload")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("reload applied", r.stdout)
            r = home.run("stop")
            self.assertEqual(r.returncode, 0)
            self.assertFalse(pid_alive(pid))
        finally:
            home.cleanup()

    def test_start_named_file_activates_its_pipes(self):
        home = Home("fusion")
        try:
            src = os.path.join(os.path.dirname(__file__), "..", "fixtures", "seed001",
                               "fusion-config")
            for name in os.listdir(src):
                home.copy_fixture(os.path.join("seed001", "fusion-config", name), name)
            r = home.run("start", "fan-out.yaml", "-D")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = home.run("status", "--json")
            st = json.loads(r.stdout)["status"]
            self.assertEqual(st["active_pipes"], ["ingest-pipe"])
            self.assertTrue(st["activated_file"].endswith("fan-out.yaml"))
            home.run("stop")
        finally:
            home.cleanup()


class RelativePaths(unittest.TestCase):
    """The daemon changes to "/": paths given relative to the caller's directory must still
    work, for start and for every later reload."""

    def test_relative_home_and_start_file(self):
        home = Home("fusion")
        try:
            home.copy_fixture("seed000/fusion-config/default.yaml")
            with open(os.path.join(home.dir, "extra.yaml"), "w") as f:
                f.write("pipes:\n  extra-pipe:\n    receiver: http-main\n"
                        "    views: [research-view]\n")
            parent, name = os.path.split(home.dir)
            env = dict(home.env, FUSTOR_HOME=name)
            run = lambda *a: subprocess.run([home.exe, *a], env=env, cwd=parent,
                                            capture_output=True, text=True, timeout=30)
            r = run("start", f"./{name}/extra.yaml", "-D")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = run("status", "--json")
            st = json.loads(r.stdout)["status"]
            self.assertEqual(st["active_pipes"], ["extra-pipe"])
            self.assertTrue(st["config_dir"].startswith("/"))
            r = run("reload")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("reload applied", r.stdout)
            r = run("stop")
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            home.cleanup()


class ValidateAndHelp(unittest.TestCase):
    def test_validate_seed_configs_and_bad_ones(self):
        for prog in ("fusion", "agent"):
            home = Home(prog)
            try:
                home.copy_fixture(f"seed000/{prog}-config/default.yaml")
                r = home.run("validate")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("config OK", r.stdout)
                home.put("zz.yaml", "pipes:\n  x:\n    disabled: nope\n")
                r = home.run("validate")
                self.assertEqual(r.returncode, 1)
                self.assertIn("zz.yaml:3:15: error: pipes.x.disabled: expected true or false, "
                              "got 'nope'", r.stderr)
                self.assertIn("zz.yaml:3:5: error: pipes.x: missing required key", r.stderr)
            finally:
                home.cleanup()

    def test_validate_missing_config_dir(self):
        home = Home("fusion")
        try:
            os.rmdir(home.config_dir)
            r = home.run("validate")
            self.assertEqual(r.returncode, 1)
            self.assertIn("fusion-config: error: cannot open the config directory", r.stderr)
        finally:
            home.cleanup()

    def test_version_help_and_usage_errors(self):
        home = Home("agent")
        try:
            r = home.run("--version")
            self.assertEqual(r.returncode, 0)
            self.assertRegex(r.stdout, r"^fustor-agent \d+\.\d+\.\d+ \(git ")
            r = home.run("--help")
            self.assertEqual(r.returncode, 0)
            for word in ("start", "stop", "reload", "status", "validate", "-D"):
                self.assertIn(word, r.stdout)
            self.assertEqual(home.run().returncode, 2)
            r = home.run("frobnicate")
            self.assertEqual(r.returncode, 2)
            self.assertIn("unknown command 'frobnicate'", r.stderr)
            r = home.run("stop", "--bogus")
            self.assertEqual(r.returncode, 2)
            r = home.run("stop", "extra.yaml")
            self.assertEqual(r.returncode, 2)
            for bad in ("nan", "-1", "0", "inf", "x"):
                r = home.run("stop", "--timeout", bad)
                self.assertEqual(r.returncode, 2, bad)
                self.assertIn("--timeout expects seconds > 0", r.stderr)
        finally:
            home.cleanup()


if __name__ == "__main__":
    unittest.main()
