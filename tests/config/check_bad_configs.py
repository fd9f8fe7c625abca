#!/usr/bin/env python3
"""Every bad config in bad/ must make `canaryd check-config` exit 1 and print
exactly the message in its .expected file (file, line, key and text), and
nothing on stdout. Run as: check_bad_configs.py CANARYD_BIN BAD_DIR"""
import os
import subprocess
import sys


def main() -> int:
    binary, bad_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYD_TEST_")}
    cases = sorted(f for f in os.listdir(bad_dir) if f.endswith(".yaml"))
    failed = 0
    for case in cases:
        with open(os.path.join(bad_dir, case[:-5] + ".expected")) as f:
            expected = f.read()
        # Relative path, run from the fixture folder, so messages are stable.
        proc = subprocess.run([binary, "check-config", case], cwd=bad_dir, env=env,
                              capture_output=True, text=True, timeout=60)
        problems = []
        if proc.returncode != 1:
            problems.append(f"exit code {proc.returncode}, expected 1")
        if proc.stderr != expected:
            problems.append(f"stderr:\n{proc.stderr}expected:\n{expected}")
        if proc.stdout:
            problems.append(f"unexpected stdout:\n{proc.stdout}")
        if problems:
            failed += 1
            print(f"FAIL {case}: " + "\n".join(problems))
        else:
            print(f"ok   {case}")
    if len(cases) < 12:
        print(f"FAIL: only {len(cases)} bad-config fixtures; at least 12 are required")
        return 1
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
