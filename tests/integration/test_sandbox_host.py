"""`msb exe` and `msb run` through everything but the VM, in seconds: msb-vmm is
replaced ($MSB_VMM) by a script that runs `msb-init --serve-unix <vsock>`, the
host build of the real agent, which speaks the same protocol on the same socket
(READY on <vsock>_1023, CONNECT 1024) and runs the commands on this host.  So
the CLI, the sandbox library, the agent client and msb-init are the real ones;
what the guest would see (image root, hostname) is not checked here but in
test_sandbox_exe.py / test_sandbox_run.py on real VMs.

/dev/kvm is not needed ($MSB_KVM_DEVICE=/dev/null) and no kernel either
($MSB_KERNEL points at any file)."""

import os
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BIN, host_agent_vmm, new_home, scaled

MSB = BIN / "msb"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("host")
    home = new_home(tmp / "home")
    e = dict(os.environ, MICROSANDBOX_HOME=str(home), **host_agent_vmm(tmp))
    return e


def with_tmpdir(env):
    tmp = tempfile.mkdtemp(prefix="msbh-", dir="/tmp")
    return dict(env, TMPDIR=tmp), tmp


def exe(env, args, stdin=b"", timeout=60):
    e, tmp = with_tmpdir(env)
    r = subprocess.run([str(MSB), "exe"] + args, env=e, input=stdin, capture_output=True,
                       timeout=scaled(timeout))
    left = os.listdir(tmp)
    if not left:
        os.rmdir(tmp)
    return r.returncode, r.stdout.decode(), r.stderr.decode(), left


def test_streams_stdin_env_exit_status(env):
    code, out, err, left = exe(env, ["--env", "FOO=bar", "--env", "PATH=/bin:/usr/bin",
                                     "--workdir", "/tmp", "microsandbox/busybox", "--", "-c",
                                     'echo "out $FOO $PATH"; echo err >&2; pwd; cat; exit 3'],
                               stdin=b"from stdin\n")
    assert code == 3, err
    assert out.splitlines() == ["out bar /bin:/usr/bin", "/tmp", "from stdin"]
    assert "err" in err and "err" not in out
    assert left == []


def test_image_env_and_default_command(env):
    # busybox's config: Env PATH=/usr/sbin:/usr/bin:/sbin:/bin, Cmd /bin/sh; ARGS go to it
    code, out, err, _ = exe(env, ["microsandbox/busybox", "--", "-c", 'echo "$PATH"; pwd'])
    assert code == 0, err
    assert out.splitlines() == ["/usr/sbin:/usr/bin:/sbin:/bin", "/"]


def test_exec_and_signal_status(env):
    code, out, err, _ = exe(env, ["-e", "sh", "microsandbox/busybox", "--", "-c",
                                  "kill -KILL $$"])
    assert code == 137, err


def test_missing_program_is_an_error_not_127(env):
    code, out, err, left = exe(env, ["-e", "/no/such/program", "microsandbox/busybox"])
    assert code == 3, err
    assert "/no/such/program" in err
    assert left == []


def test_ctrl_c_goes_to_the_command_then_stops(env):
    e, tmp = with_tmpdir(env)
    p = subprocess.Popen([str(MSB), "exe", "microsandbox/busybox", "--", "-c",
                          "trap 'echo got-int; exit 42' INT; echo started; "
                          "while :; do sleep 0.1; done"],
                         env=e, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "started"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=scaled(30))
    finally:
        if p.poll() is None:
            p.kill()
    assert "got-int" in out
    assert p.returncode == 42, err
    assert os.listdir(tmp) == []


def test_sigterm_tears_down(env):
    e, tmp = with_tmpdir(env)
    p = subprocess.Popen([str(MSB), "exe", "microsandbox/busybox", "--", "-c",
                          "echo started; sleep 600"],
                         env=dict(e, MSB_LOG="info"), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "started"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=scaled(30))
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "interrupted" in err
    assert os.listdir(tmp) == []


def test_run_records_state_and_log(env, tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    subprocess.run([str(MSB), "init"], cwd=proj, env=env, check=True, capture_output=True)
    (proj / "Sandboxfile").write_text(
        "sandboxes:\n  app:\n    image: microsandbox/busybox\n    envs: [MODE=project]\n"
        "    command: [echo, default-args]\n")
    e, tmp = with_tmpdir(env)
    p = subprocess.Popen([str(MSB), "run", "app", "-e", "sh", "--", "-c",
                          'echo "run $MODE"; read x; echo "got $x"'], cwd=proj, env=e,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "run project"
        db = sqlite3.connect(proj / ".menv" / "sandbox.db")
        status, sup, vm = db.execute("SELECT status, supervisor_pid, microvm_pid FROM "
                                     "sandboxes WHERE name = 'app'").fetchone()
        db.close()
        assert (status, sup) == ("RUNNING", p.pid)
        assert Path(f"/proc/{vm}").exists()
        # a second run of the same sandbox is refused while this one lives
        r = subprocess.run([str(MSB), "run", "app"], cwd=proj, env=e, capture_output=True,
                           text=True, timeout=scaled(30))
        assert r.returncode == 4 and "already running" in r.stderr
        out, err = p.communicate("line\n", timeout=scaled(30))
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert out.strip() == "got line"
    db = sqlite3.connect(proj / ".menv" / "sandbox.db")
    assert db.execute("SELECT status, microvm_pid FROM sandboxes WHERE name = 'app'"
                      ).fetchone() == ("STOPPED", 0)
    db.close()
    assert (proj / ".menv" / "rw" / "Sandboxfile" / "app" / "rw.ext4").stat().st_size > 0
    assert (proj / ".menv" / "log" / "Sandboxfile" / "app.log").exists()
    # the default command, and ARGS replacing its arguments (upstream's order)
    r = subprocess.run([str(MSB), "run", "app"], cwd=proj, env=e, capture_output=True,
                       text=True, timeout=scaled(30))
    assert (r.returncode, r.stdout) == (0, "default-args\n"), r.stderr
    r = subprocess.run([str(MSB), "run", "app", "--", "b0", "b1"], cwd=proj, env=e,
                       capture_output=True, text=True, timeout=scaled(30))
    assert (r.returncode, r.stdout) == (0, "b0 b1\n"), r.stderr
    assert os.listdir(tmp) == []


def row_of(proj, name):
    db = sqlite3.connect(proj / ".menv" / "sandbox.db")
    try:
        return db.execute("SELECT status, supervisor_pid, microvm_pid FROM sandboxes "
                          "WHERE name = ?", (name,)).fetchone()
    finally:
        db.close()


def wait_gone(pid, seconds):
    deadline = time.monotonic() + scaled(seconds)
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not Path(f"/proc/{pid}").exists()


def test_run_detached_then_sigterm_stops_in_order(env, tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    subprocess.run([str(MSB), "init"], cwd=proj, env=env, check=True, capture_output=True)
    (proj / "Sandboxfile").write_text(
        "sandboxes:\n  bg:\n    image: microsandbox/busybox\n"
        "    command: [sh, -c, 'sleep 600']\n")
    e, tmp = with_tmpdir(env)
    r = subprocess.run([str(MSB), "run", "-d", "bg"], cwd=proj, env=e, capture_output=True,
                       text=True, timeout=scaled(60))
    assert r.returncode == 0, r.stderr
    assert "started in the background" in r.stdout
    status, sup, vm = row_of(proj, "bg")
    assert status == "RUNNING" and Path(f"/proc/{sup}").exists()
    # a foreground run whose msb gets SIGTERM: the VM is powered off in order
    os.kill(sup, signal.SIGTERM)
    assert wait_gone(sup, 60) and wait_gone(vm, 10)
    assert row_of(proj, "bg")[0] == "STOPPED"
    assert os.listdir(tmp) == []


def test_shell_into_a_guest_with_all_connections_open_says_busy(env, tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    subprocess.run([str(MSB), "init"], cwd=proj, env=env, check=True, capture_output=True)
    (proj / "Sandboxfile").write_text(
        "sandboxes:\n  bg:\n    image: microsandbox/busybox\n"
        "    command: [sh, -c, 'sleep 600']\n")
    r = subprocess.run([str(MSB), "run", "-d", "bg"], cwd=proj, env=env, capture_output=True,
                       text=True, timeout=scaled(60))
    assert r.returncode == 0, r.stderr
    status, sup, vm = row_of(proj, "bg")
    with open(f"/proc/{vm}/cmdline", "rb") as f:  # the stand-in msb-vmm: msb-init
        args = f.read().split(b"\0")
    path = args[args.index(b"--serve-unix") + 1].decode()
    held = []
    try:
        while len(held) < 40:  # the supervisor holds some; the guest serves 32
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(scaled(10))
            s.connect(path)
            held.append(s)
            s.sendall(b"CONNECT 1024\n")
            f = s.makefile("rb")
            assert f.readline().startswith(b"OK ")
            hello = struct.pack("<HI", 1, 4) + struct.pack("<I", 1)
            s.sendall(struct.pack("<IHHII", len(hello), 1, 0, 0, 0) + hello)
            if struct.unpack("<IH", f.read(16)[:6])[1] != 1:
                break  # ERROR: the guest is full
        t0 = time.monotonic()
        r = subprocess.run([str(MSB), "shell", "bg", "--", "-c", "echo in"], cwd=proj, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(60))
        assert r.returncode == 4, r.stderr
        assert "joining sandbox 'bg': the guest is busy: its agent serves 32" in r.stderr
        assert "still starting" not in r.stderr
        assert time.monotonic() - t0 < scaled(8)  # no 10 s of retrying
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + scaled(10)
    while True:
        r = subprocess.run([str(MSB), "shell", "bg", "--", "-c", "echo in"], cwd=proj, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(60))
        if r.returncode != 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (r.returncode, r.stdout) == (0, "in\n"), r.stderr
    os.kill(sup, signal.SIGTERM)
    assert wait_gone(sup, 60) and wait_gone(vm, 10)


def test_run_detached_failure_is_reported(env, tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    subprocess.run([str(MSB), "init"], cwd=proj, env=env, check=True, capture_output=True)
    (proj / "Sandboxfile").write_text(
        "sandboxes:\n  bad:\n    image: microsandbox/busybox\n")
    r = subprocess.run([str(MSB), "run", "-d", "bad~nosuch"], cwd=proj, env=env,
                       capture_output=True, text=True, timeout=scaled(60))
    assert r.returncode == 3 and "no script 'nosuch'" in r.stderr


def test_run_image_from_a_directory(env, tmp_path):
    """image: ./dir is built into the store (localhost/dir-<hash>) and booted."""
    proj = tmp_path / "p"
    (proj / "root" / "etc").mkdir(parents=True)
    (proj / "root" / "etc" / "marker").write_text("x\n")
    subprocess.run([str(MSB), "init"], cwd=proj, env=env, check=True, capture_output=True)
    (proj / "Sandboxfile").write_text(
        "sandboxes:\n  local:\n    image: ./root\n    command: [echo, from-dir]\n")
    e, tmp = with_tmpdir(env)
    r = subprocess.run([str(MSB), "run", "local"], cwd=proj, env=dict(e, MSB_LOG="info"),
                       capture_output=True, text=True, timeout=scaled(120))
    assert (r.returncode, r.stdout) == (0, "from-dir\n"), r.stderr
    r = subprocess.run([str(MSB), "image", "ls"], env=e, capture_output=True, text=True)
    assert "localhost/dir-" in r.stdout


def test_missing_workdir_is_created(env, tmp_path):
    """As Docker does with a WorkingDir the image lacks."""
    wd = tmp_path / "not" / "there"
    code, out, err, _ = exe(env, ["--workdir", str(wd), "microsandbox/busybox", "--", "-c",
                                  "pwd"])
    assert (code, out) == (0, f"{wd}\n"), err
