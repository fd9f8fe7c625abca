#!/usr/bin/env python3
"""The Debian package on this machine, as an admin meets it (docs/packaging.md).

Builds the package with scripts/package.sh (cheap after the release build),
installs it, runs `canaryd --version` and `canaryd check-config` as the
canaryd user, checks the installed unit with systemd-analyze (security
exposure <= 1.5, verify clean), runs the unit's own ExecStartPre and
ExecStart lines as the canaryd user (with CANARYD_ARGS from
/etc/default/canaryd moving the listener to a free port) until /-/healthy
answers 200, stops the daemon with SIGTERM by PID, purges the package, and
checks that nothing it installed or made remains.

It must run as root (it installs a package) and fails, never skips, without
it. It refuses to touch a machine where canaryd is already installed, since
it purges what it installs; the purge runs in a finally block whatever fails.
The canaryd system user stays after the purge, as Debian leaves system users.

usage: check_package.py SOURCE_DIR
"""
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

UNIT = "/lib/systemd/system/canaryd.service"
MAX_EXPOSURE = 1.5
# What the package or its service makes, beyond `dpkg -L`: gone after a purge.
MADE_AT_RUN_TIME = [
    "/etc/canaryd",
    "/etc/default/canaryd",
    "/var/lib/canaryd",
    "/usr/share/canaryd",
    "/usr/share/doc/canaryd",
    "/etc/systemd/system/multi-user.target.wants/canaryd.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/canaryd.service.dsh-also",
    "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/canaryd.service",
]
POLICY_RC_D = "/usr/sbin/policy-rc.d"
APT = ["apt-get", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300"]

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 600)
    kw.setdefault("env", dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return subprocess.run(argv, **kw)


def as_canaryd(argv):
    # setpriv execs in place (no PAM session, no extra process), so the PID
    # we start is the daemon's, as under systemd's User=/Group=.
    return ["setpriv", "--reuid=canaryd", "--regid=canaryd", "--init-groups", "--"] + argv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unit_settings(path):
    """The [Service] section's settings, in order: [(key, value)]."""
    settings, section = [], None
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            settings.append((key.strip(), value.strip()))
    return settings


def read_environment_file(path):
    """KEY=VALUE lines, quotes removed (systemd's EnvironmentFile= syntax)."""
    env = {}
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        words = shlex.split(value)
        env[key.strip()] = " ".join(words)
    return env


def command_line(value, env):
    """An Exec*= value as systemd runs it: its prefixes dropped, "$VAR" split
    into words, "${VAR}" kept as one word (systemd.service(5), Command lines)."""
    value = value.lstrip("-@:+!")
    argv = []
    for word in shlex.split(value):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            argv.extend(env.get(whole.group(1), "").split())
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                           lambda m: env.get(m.group(1), ""), word))
    return argv


def http_status(url):
    # No proxy for loopback, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def run_daemon_from_unit(port):
    """The unit's ExecStartPre and ExecStart lines, as the canaryd user."""
    with open("/etc/default/canaryd", "a", encoding="utf-8") as f:
        f.write(f'CANARYD_ARGS="--web.listen-address 127.0.0.1:{port}"\n')
    settings = unit_settings(UNIT)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for key, value in settings:
        if key == "EnvironmentFile":
            optional = value.startswith("-")
            path = value.lstrip("-")
            if os.path.exists(path) or not optional:
                env.update(read_environment_file(path))
    # What StateDirectory=canaryd makes before the service starts.
    state = [v for k, v in settings if k == "StateDirectory"]
    check(state == ["canaryd"], f"unit has StateDirectory=canaryd ({state})")
    os.makedirs("/var/lib/canaryd", mode=0o750, exist_ok=True)
    shutil.chown("/var/lib/canaryd", user="canaryd", group="canaryd")

    for key, value in settings:
        if key == "ExecStartPre":
            argv = command_line(value, env)
            r = run(as_canaryd(argv), env=env, timeout=60)
            check(r.returncode == 0, f"ExecStartPre {argv} exits 0 (out {r.stdout!r} err {r.stderr!r})")
    starts = [v for k, v in settings if k == "ExecStart"]
    if not check(len(starts) == 1, f"one ExecStart line ({starts})"):
        return
    argv = command_line(starts[0], env)
    check(f"127.0.0.1:{port}" in argv, f"$CANARYD_ARGS expanded into ExecStart: {argv}")
    log = tempfile.TemporaryFile("w+", encoding="utf-8")
    daemon = subprocess.Popen(as_canaryd(argv), env=env, stdin=subprocess.DEVNULL,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        healthy = False
        while time.monotonic() < deadline and daemon.poll() is None:
            if http_status(f"http://127.0.0.1:{port}/-/healthy") == 200:
                healthy = True
                break
            time.sleep(0.1)
        check(healthy, "the daemon from the unit's ExecStart answers /-/healthy with 200")
        # A few seconds of running: it stays up and keeps answering.
        time.sleep(3)
        check(daemon.poll() is None, "the daemon is still running after a few seconds")
        check(http_status(f"http://127.0.0.1:{port}/-/ready") == 200, "/-/ready answers 200")
        owner = os.stat(f"/proc/{daemon.pid}").st_uid
        check(owner == pwd.getpwnam("canaryd").pw_uid, f"the daemon runs as canaryd (uid {owner})")
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait()
        check(code == 0, f"SIGTERM stops the daemon with exit 0 (got {code})")
        log.seek(0)
        output = log.read()
        log.close()
        if failures:
            print("daemon output:\n" + output)


def check_installed():
    r = run(["dpkg-query", "-W", "-f=${Conffiles}", "canaryd"])
    conffiles = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    check("/etc/canaryd/canaryd.yaml" in conffiles, f"/etc/canaryd/canaryd.yaml is a conffile {conffiles}")
    check("/etc/default/canaryd" in conffiles, "/etc/default/canaryd is a conffile")
    for path in ["/usr/bin/canaryd", UNIT, "/usr/lib/sysusers.d/canaryd.conf",
                 "/usr/share/doc/canaryd/README.md", "/usr/share/doc/canaryd/copyright",
                 "/usr/share/canaryd/deploy/prometheus/canaryd.rules.yml",
                 "/usr/share/canaryd/deploy/alertmanager/alertmanager.yml",
                 "/usr/share/canaryd/deploy/grafana/dashboards/canaryd-overview.json",
                 "/usr/share/canaryd/deploy/kubernetes/statefulset.yaml"]:
        check(os.path.exists(path), f"installed: {path}")
    r = run(["getent", "passwd", "canaryd"])
    check(r.returncode == 0, f"the canaryd system user exists ({r.stdout.strip()})")

    r = run(as_canaryd(["canaryd", "--version"]))
    check(r.returncode == 0 and r.stdout.startswith("canaryd "),
          f"canaryd --version as canaryd: {r.stdout.strip()!r} (exit {r.returncode})")
    r = run(as_canaryd(["canaryd", "check-config", "/etc/canaryd/canaryd.yaml"]))
    check(r.returncode == 0, f"check-config /etc/canaryd/canaryd.yaml as canaryd: "
          f"{r.stdout.strip()!r} {r.stderr.strip()!r} (exit {r.returncode})")

    r = run(["systemd-analyze", "security", "--offline=true", UNIT])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    exposure = float(m.group(1)) if m else None
    check(exposure is not None and exposure <= MAX_EXPOSURE,
          f"systemd-analyze security --offline=true: exposure {exposure} <= {MAX_EXPOSURE}")
    r = run(["systemd-analyze", "verify", UNIT])
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          f"systemd-analyze verify is clean (exit {r.returncode}, {r.stdout!r} {r.stderr!r})")


def check_purged(installed):
    for path in installed:
        if path == "/." or not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            # A shared directory (/usr/bin, /lib/systemd/system; /lib, a
            # symlink to usr/lib on a merged-/usr system) stays while another
            # package owns it.
            owned = run(["dpkg-query", "-S", path]).returncode == 0
            check(owned, f"after purge, {path} remains only as another package's directory")
        else:
            check(False, f"after purge, {path} is gone")
    for path in MADE_AT_RUN_TIME:
        check(not os.path.lexists(path), f"after purge, {path} is gone")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    source = sys.argv[1]
    if os.geteuid() != 0:
        sys.exit("check_package: must run as root: it installs and purges the canaryd "
                 "package (run the suite as root, as scripts/test.sh does in CI)")
    if run(["dpkg-query", "-W", "-f=${Status}", "canaryd"]).stdout.startswith("install"):
        sys.exit("check_package: a canaryd package is already installed here; this test "
                 "would purge it, so it refuses to run")

    r = run(["bash", os.path.join(source, "scripts/package.sh")], cwd=source, timeout=1800)
    print(r.stdout[-6000:], r.stderr[-3000:], sep="\n")
    if not check(r.returncode == 0, "scripts/package.sh builds the package, lintian without errors"):
        sys.exit(1)
    version = run(["dpkg-parsechangelog", "-S", "Version"], cwd=source).stdout.strip()
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    deb = os.path.join(source, "dist", f"canaryd_{version}_{arch}.deb")
    check(os.path.exists(deb), f"built {deb}")

    # On a machine that runs systemd, the postinst would start the service on
    # port 9464; policy-rc.d tells deb-systemd-invoke not to.
    made_policy = not os.path.exists(POLICY_RC_D)
    if made_policy:
        with open(POLICY_RC_D, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(POLICY_RC_D, 0o755)
    installed = []
    try:
        r = run(APT + ["install", deb])
        if not check(r.returncode == 0, f"apt-get install {deb}\n{r.stdout[-3000:]}{r.stderr[-3000:]}"):
            return
        installed = run(["dpkg-query", "-L", "canaryd"]).stdout.split()
        check_installed()
        run_daemon_from_unit(free_port())
    finally:
        r = run(APT + ["purge", "canaryd"])
        check(r.returncode == 0, f"apt-get purge canaryd (exit {r.returncode}) {r.stderr[-2000:]}")
        if made_policy:
            os.unlink(POLICY_RC_D)
    check_purged(installed)
    r = run(["getent", "passwd", "canaryd"])
    print(f"note: the canaryd system user {'stays' if r.returncode == 0 else 'is gone'} "
          "after the purge (Debian leaves system users in place)")


if __name__ == "__main__":
    try:
        main()
    finally:
        if failures:
            print(f"\n{len(failures)} check(s) failed:\n  " + "\n  ".join(failures))
    sys.exit(1 if failures else 0)
