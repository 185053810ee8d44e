"""`msx IMAGE` on a terminal, end to end on a real VM: the host side is a
pseudo-terminal made here (python's pty module), msb runs the image's shell on
a PTY in the guest.  One VM for the whole module (boots are slow on PVM)."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

import pytest

from conftest import BIN, find_vsock, scaled
from test_sandbox_exe import BOOT_TIMEOUT, home, need_vm, short_dir

assert home  # the module fixture with the test images, used below

MSB = BIN / "msb"


def read_until(fd, marker, timeout):
    out = read_some(fd, marker, timeout)
    if marker not in out:
        pytest.fail(f"no {marker!r} within {timeout:.0f} s; the terminal showed:\n"
                    f"{out.decode(errors='replace')[-3000:]}")
    return out


def read_some(fd, marker, timeout):
    """What the terminal shows until `marker` or the timeout."""
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], min(left, 5))
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every slave descriptor is closed
                break
            if not chunk:
                break
            out += chunk
    return out


def test_msx_on_a_terminal_is_an_interactive_shell(home):
    need_vm()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
    before = termios.tcgetattr(slave)

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    tmp = short_dir()
    env = dict(os.environ, MICROSANDBOX_HOME=str(home), TMPDIR=str(tmp), TERM="vt100",
               MSB_BOOT_TIMEOUT=str(int(BOOT_TIMEOUT)))
    p = subprocess.Popen([str(MSB), "exe", "--memory", "256", "microsandbox/busybox-cfg"],
                         stdin=slave, stdout=slave, stderr=slave, env=env,
                         preexec_fn=controlling_tty)
    try:
        t0 = time.monotonic()
        # msb switches the terminal to raw mode when the guest command starts.
        while termios.tcgetattr(slave)[3] & termios.ICANON:
            assert p.poll() is None, read_until(master, b"\0", 1)
            assert time.monotonic() - t0 < BOOT_TIMEOUT, "the sandbox did not start"
            select.select([master], [], [], 0.5)
            try:
                os.read(master, 65536) if select.select([master], [], [], 0)[0] else None
            except OSError:
                pass
        os.write(master, b"echo READY-$((6*7))\r")
        read_until(master, b"READY-42", BOOT_TIMEOUT)
        boot_s = time.monotonic() - t0
        raw = termios.tcgetattr(slave)
        assert not raw[3] & termios.ECHO and not raw[3] & termios.ICANON, "not in raw mode"
        os.write(master, b"tty; stty size; echo T=$TERM\r")
        out = read_until(master, b"T=vt100", scaled(120))
        assert b"/dev/pts/" in out and b"31 97" in out, out
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 120, 0, 0))
        time.sleep(1)
        os.write(master, b"stty size\r")
        read_until(master, b"44 120", scaled(120))
        # Ctrl-C reaches the guest's foreground job, not msb.  One that arrives before
        # the guest's shell gave the terminal to `sleep` (process starts take seconds
        # on a loaded PVM host) is only a byte of its input: sent again until the
        # shell runs the next command.
        os.write(master, b"sleep 1000\r")
        read_until(master, b"sleep 1000", scaled(120))
        out, deadline = b"", time.monotonic() + scaled(120)
        while b"after-2" not in out:
            assert time.monotonic() < deadline, \
                f"Ctrl-C did not end the guest's sleep:\n{out.decode(errors='replace')[-3000:]}"
            time.sleep(1)
            os.write(master, b"\x03")
            os.write(master, b"echo after-$((1+1))\r")
            out += read_some(master, b"after-2", scaled(10))
        assert p.poll() is None, "Ctrl-C ended msb"
        os.write(master, b"exit 3\r")
        assert p.wait(scaled(300)) == 3
        print(f"interactive shell ready after {boot_s:.1f} s")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert termios.tcgetattr(slave) == before, "the terminal was not restored"
    os.close(master)
    os.close(slave)
    assert os.listdir(tmp) == [], "msb left files behind"
    os.rmdir(tmp)


# ---- REPLs in a real guest: msb-init as PID 1 (musl), the image's own python3 ----------------
def agent(vsock, *args, stdin=None, timeout=600):
    return subprocess.run([str(BIN / "msb-agent"), "--vsock", vsock, *args], input=stdin,
                          capture_output=True, timeout=scaled(timeout))


def test_repl_in_a_real_guest(home):
    need_vm()
    tmp = short_dir()
    env = dict(os.environ, MICROSANDBOX_HOME=str(home), TMPDIR=str(tmp),
               MSB_BOOT_TIMEOUT=str(int(BOOT_TIMEOUT)))
    # A sandbox that stays up; the test talks to its agent beside msb's own connection.
    p = subprocess.Popen([str(MSB), "exe", "--memory", "256", "-e", "sleep",
                          "microsandbox/python", "--", "100000"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        vsock = find_vsock(p, BOOT_TIMEOUT)
        r = agent(vsock, "wait-ready", "--timeout", str(int(BOOT_TIMEOUT)),
                  timeout=BOOT_TIMEOUT + 60)
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        r = agent(vsock, "repl", "python", "--code", "import sys\nx = 6\n"
                  "print('out', x)\nsys.stderr.write('err-last')\nx * 7")
        first_s = time.monotonic() - t0
        assert (r.returncode, r.stdout, r.stderr) == (0, b"out 6\n42\n", b"err-last"), r
        t0 = time.monotonic()
        r = agent(vsock, "repl", "python", "--code", "x + 1")
        again_s = time.monotonic() - t0
        assert (r.returncode, r.stdout) == (0, b"7\n"), r
        r = agent(vsock, "repl", "python", "--code", "1/0")
        assert r.returncode == 1 and b"ZeroDivisionError: division by zero" in r.stderr, r
        r = agent(vsock, "repl", "python", "--timeout", "2", "--code", "while True: pass")
        assert r.returncode == 5 and b"timed out after 2000 ms" in r.stderr, r
        r = agent(vsock, "repl", "python", "--code", "x")
        assert (r.returncode, r.stdout) == (0, b"6\n"), r
        # The python image has no node: said so, exit 3 (not found).
        r = agent(vsock, "repl", "node", "--code", "1")
        assert r.returncode == 3 and b"the image has no node" in r.stderr, r
        print(f"first run (starts python3) {first_s:.1f} s, next run {again_s:.1f} s")
    finally:
        p.terminate()
        try:
            p.wait(scaled(120))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
