#!/usr/bin/env python3
"""Debian's chromium, headless, for the status page test and the README screenshot.

    chromium.py dom URL               prints the DOM after the page has loaded
    chromium.py screenshot URL FILE [WxH]
                                      writes a PNG of the page (1280x900 unless
                                      told), printing its path

It runs without a display, as root (hence --no-sandbox), with a throwaway
profile and HOME, in its own process group that is killed by its id when the
time is up. Chromium's chatter on stderr (dbus, GPU, crash reporter) is only
shown when the run failed: a run fails on a timeout, a non-zero exit, or an
empty DOM or PNG.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

TIMEOUT = 90
WINDOW = "1280,900"


def binary():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("FAIL: chromium is not installed (scripts/install-deps.sh installs it)")


def run(url, extra_args, window=WINDOW):
    """Runs chromium headless on url; returns its stdout. Raises on failure."""
    with tempfile.TemporaryDirectory(prefix="canaryd-chromium-") as home:
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_CACHE_HOME=os.path.join(home, ".cache"))
        env.pop("DISPLAY", None)
        argv = [binary(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
                "--mute-audio", f"--user-data-dir={os.path.join(home, 'profile')}",
                f"--window-size={window}", *extra_args, url]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            # The group holds chromium's own children (zygote, renderer, GPU).
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise RuntimeError(f"chromium did not finish within {TIMEOUT}s on {url}:\n"
                               + err.decode(errors="replace")[-4000:])
        finally:
            # A helper process that outlived chromium's exit goes with its group.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.returncode != 0:
            raise RuntimeError(f"chromium exited with {proc.returncode} on {url}:\n"
                               + err.decode(errors="replace")[-4000:])
        return out.decode(errors="replace"), err.decode(errors="replace")


def dump_dom(url):
    out, err = run(url, ["--dump-dom"])
    if "<html" not in out.lower():
        raise RuntimeError(f"chromium printed no DOM for {url}:\nstdout: {out[:2000]!r}\n"
                           f"stderr: {err[-4000:]}")
    return out


def screenshot(url, path, window=WINDOW):
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    _, err = run(url, [f"--screenshot={path}"], window)
    with open(path, "rb") as f:
        head = f.read(8)
    if head != b"\x89PNG\r\n\x1a\n" or os.path.getsize(path) < 1000:
        raise RuntimeError(f"chromium wrote no PNG to {path}:\n{err[-4000:]}")
    return path


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "dom":
        sys.stdout.write(dump_dom(sys.argv[2]))
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "screenshot":
        window = sys.argv[4].replace("x", ",") if len(sys.argv) == 5 else WINDOW
        print(screenshot(sys.argv[2], sys.argv[3], window))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
