"""Runs an e2e test module with fustor-fusion and fustor-agent under valgrind (memcheck, leaks
of the definite and indirect kinds are errors), and fails if any process reported anything.
Usage: python3 valgrind_run.py MODULE   (FUSTOR_BIN_DIR names the real binaries)"""
import glob
import os
import stat
import subprocess
import sys
import tempfile


def main():
    module = sys.argv[1]
    real = os.environ["FUSTOR_BIN_DIR"]
    wrap = tempfile.mkdtemp(prefix="fustor-vg-")
    logs = os.path.join(wrap, "logs")
    os.mkdir(logs)
    for prog in ("fustor-fusion", "fustor-agent"):
        path = os.path.join(wrap, prog)
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexec valgrind -q --leak-check=full "
                    "--show-leak-kinds=definite,indirect "
                    "--errors-for-leak-kinds=definite,indirect "
                    f"--log-file={logs}/vg.%p {os.path.join(real, prog)} \"$@\"\n")
        os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    env = dict(os.environ, FUSTOR_BIN_DIR=wrap)
    rc = subprocess.run([sys.executable, "-m", "unittest", module], env=env,
                        cwd=os.path.dirname(os.path.abspath(__file__))).returncode
    reports = [p for p in glob.glob(os.path.join(logs, "vg.*")) if os.path.getsize(p)]
    for p in reports:
        print(f"== valgrind report {p}:\n" + open(p).read())
    print(f"valgrind: {len(glob.glob(os.path.join(logs, 'vg.*')))} processes, "
          f"{len(reports)} with reports")
    sys.exit(rc or (1 if reports else 0))


if __name__ == "__main__":
    main()
