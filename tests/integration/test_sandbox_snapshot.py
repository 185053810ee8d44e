"""Snapshots as msb uses them, on real VMs: `msb exe` restores the base snapshot
(the suite's shared cache), the guest's clock, entropy and identity are its own after
a restore; a user snapshot of a running project sandbox (`msb snapshot create`, which
parks an agent connection for the copies) forks into copies whose processes (a plain
child of a command started before the snapshot) keep running and which do not see
each other's writes (`msb fork`); damaged snapshots are refused with exit 8, and a
damaged base snapshot (a private copy) is rebuilt: the module's one cold boot.

The VM tests hold /tmp/msb-vm.lock (as flock(1) does) for the whole module, so
VMs of other test runs on the machine do not run at the same time."""

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, KERNEL_DIR, hold_vm_lock, new_home, scaled

MSB = BIN / "msb"
BOOT_TIMEOUT = scaled(float(os.environ.get("MSB_VM_BOOT_TIMEOUT", "2400")))
VM_TIMEOUT = BOOT_TIMEOUT + scaled(900)

SANDBOXFILE = """sandboxes:
  app:
    image: microsandbox/busybox
    memory: 256
"""

# Started in the project sandbox before the snapshot: a file written before it and a
# counter that is a plain child of the command (a background subshell: not detached,
# same session). Commands started through the agent keep running in every copy (their
# connection comes back detached), children and all. Each turn writes its count and the
# tag of the disk it runs on (/root/tag, read with a builtin: no process per turn).
COUNTER = ('echo before > /root/before; echo original > /root/tag; '
           '(i=0; while :; do i=$((i+1)); t=; read t </root/tag; echo "$i $t" >/root/count; '
           'sleep 1; done) 2>/dev/null & '
           'exec sleep 100000')

# Run in each fork: marks the copy's disk and tags it with the copy's name, waits (at
# most ~2 min) until the counter wrote that tag (it runs in this copy, on this copy's
# disk), reads the count again 3 s later, shows what it sees and a few random bytes.
IN_FORK = ('h=$(hostname); touch /root/mark-$h; echo $h > /root/tag; '
           'count() { n=0; while [ $n -lt 120 ]; do c=; t=; read c t </root/count; '
           '[ -n "$c" ] && [ "$t" = "$h" ] && { echo $c; return; }; n=$((n+1)); sleep 1; '
           'done; echo 0; }; '
           'a=$(count); sleep 3; b=$(count); '
           'echo "count $a $b"; cat /root/before; ls /root | grep mark; '
           'echo "rand $(head -c16 /dev/urandom | od -An -tx1 | tr -d " \\n")"')


def need_vm():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("LOUD SKIP: /dev/kvm is absent or not usable here: no sandbox can boot")
    if not (KERNEL_DIR / "vmlinux").exists():
        pytest.fail("build/kernel/vmlinux is missing: run kernel/build")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The module's home and project; base snapshots from the suite's shared cache
    (conftest), except for the test that damages one (a private copy)."""
    tmp = tmp_path_factory.mktemp("snap")
    home = new_home(tmp / "home")
    e = dict(os.environ, MICROSANDBOX_HOME=str(home), MSB_LOG="info",
             TMPDIR=tempfile.mkdtemp(prefix="msbs-", dir="/tmp"),
             MSB_BOOT_TIMEOUT=str(int(BOOT_TIMEOUT)))
    e.pop("MSB_NO_SNAPSHOT", None)
    proj = tmp / "p"
    proj.mkdir()
    subprocess.run([str(MSB), "init"], cwd=proj, env=e, check=True, capture_output=True)
    (proj / "Sandboxfile").write_text(SANDBOXFILE)
    e["_PROJ"] = str(proj)
    e["_TMP"] = str(tmp)
    yield e
    shutil.rmtree(e["TMPDIR"], ignore_errors=True)


@pytest.fixture(scope="module")
def vm_lock():
    """/tmp/msb-vm.lock for the module's VM tests (flock(1)'s lock)."""
    need_vm()
    with hold_vm_lock():
        yield


def msb(env, *args, timeout=60, cwd=None):
    return subprocess.run([str(MSB)] + [str(a) for a in args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout,
                          cwd=cwd or env["_PROJ"])


def exe_streamed(env, script):
    """msb exe of `script` on the busybox image; stdout lines with the host's time
    when each arrived.  Killed after VM_TIMEOUT (a hung msb fails, not hangs).  The base
    snapshot itself, without the image's warm snapshot over it (test_sandbox_warm.py)."""
    env = dict(env, MSB_NO_WARM_SNAPSHOT="1")
    with tempfile.TemporaryFile("w+") as errf:
        p = subprocess.Popen([str(MSB), "exe", "--memory", "256", "microsandbox/busybox", "-e",
                              "sh", "--", "-c", script], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=errf, text=True)
        timer = threading.Timer(VM_TIMEOUT, p.kill)
        timer.start()
        lines = []
        try:
            for line in p.stdout:
                lines.append((time.time(), line.rstrip("\n")))
            p.wait()
        finally:
            timer.cancel()
        errf.seek(0)
        return p.returncode, lines, errf.read()


def ready_ms(err):
    m = re.search(r"restored from the base snapshot: agent after \d+ ms, ready after (\d+) ms",
                  err)
    return int(m.group(1)) if m else None


def base_dir_used(err):
    """The base snapshot directory msb restored (its MSB_LOG=info line)."""
    m = re.search(r"restoring base snapshot (\S+), msb-vmm pid", err)
    return Path(m.group(1)) if m else None


# ---- no VM -----------------------------------------------------------------------


def test_refusals_without_a_vm(env):
    r = msb(env, "snapshot", "create", "../x", "--pid", "1")
    assert r.returncode == 2 and "not a snapshot name" in r.stderr
    r = msb(env, "snapshot", "create", "s")
    assert r.returncode == 2 and "--sandbox NAME or --pid PID" in r.stderr
    r = msb(env, "snapshot", "create", "s", "--pid", str(os.getpid()))
    assert r.returncode == 4 and "is not msb-vmm" in r.stderr
    r = msb(env, "snapshot", "create", "s", "--sandbox", "app")
    assert r.returncode == 4 and "is not running" in r.stderr
    r = msb(env, "snapshot", "rm", "nope")
    assert r.returncode == 3 and "no snapshot 'nope'" in r.stderr
    r = msb(env, "fork", "nope", "-e", "true")
    assert r.returncode == 3 and "no snapshot 'nope'" in r.stderr
    r = msb(env, "fork", "x", "-n", "0")
    assert r.returncode == 2
    r = msb(env, "exe", "--snapshot", "x", "--cold")
    assert r.returncode == 2
    r = msb(env, "exe", "--snapshot", "x", "microsandbox/busybox")
    assert r.returncode == 2 and "fixes the image" in r.stderr
    r = msb(env, "snapshot", "ls")
    assert r.returncode == 0 and r.stdout.startswith("NAME")


# ---- the base snapshot ----------------------------------------------------------


def test_exe_restores_the_base_snapshot(env, vm_lock):
    """Two sandboxes restored from the shared base snapshot of their shape (built by the
    first one if no module did yet: test_damaged_base_snapshot_is_rebuilt checks a
    build) are each ready fast, with the host's clock and an identity of their own."""
    script = "date +%s; hostname; cat /etc/machine-id; head -c16 /dev/urandom | od -An -tx1"
    rc, lines1, err1 = exe_streamed(env, script)
    assert rc == 0, err1[-3000:]
    assert ready_ms(err1) is not None, err1[-3000:]
    base = base_dir_used(err1)
    assert base and (base / "state").is_file() and (base / "memory").is_file(), err1[-3000:]
    env["_SHARED_BASE"] = str(base)
    # The second one only restores: no build.
    t0 = time.monotonic()
    rc, lines2, err2 = exe_streamed(env, script)
    wall = time.monotonic() - t0
    assert rc == 0, err2[-3000:]
    assert "building" not in err2
    ms = ready_ms(err2)
    assert ms is not None, err2[-3000:]
    print(f"restore to ready: {ms} ms; whole msb exe: {wall:.1f} s")
    # The guest's clock is the host's (the base VM's clock stood still since
    # the snapshot): within a second of when the line reached the host.
    arrived, guest_s = lines2[0][0], int(lines2[0][1])
    assert arrived - 2.0 <= guest_s <= arrived + 1.0, (guest_s, arrived)
    out1 = [l for _, l in lines1]
    out2 = [l for _, l in lines2]
    # Identity: hostname = sandbox name, a machine id of its own per restore.
    assert out1[1] == out2[1] == "tmp"
    assert re.fullmatch(r"[0-9a-f]{32}", out1[2]) and out1[2] != out2[2]
    # Entropy: two restores of one snapshot read different random bytes.
    assert out1[3] != out2[3]
    assert os.listdir(env["TMPDIR"]) == []


# ---- user snapshots and fork ------------------------------------------------------


def state_row(proj):
    db = sqlite3.connect(Path(proj) / ".menv" / "sandbox.db")
    try:
        return db.execute("SELECT status, supervisor_pid, microvm_pid FROM sandboxes "
                          "WHERE name = 'app'").fetchone()
    finally:
        db.close()


def guest_count(env, at_least):
    """Wait until the project sandbox's counter (COUNTER) wrote a count >= at_least to
    /root/count; asked through msb-agent on the sandbox's vsock (one cat per try)."""
    vmm = state_row(env["_PROJ"])[2]
    argv = Path(f"/proc/{vmm}/cmdline").read_bytes().split(b"\0")
    vsock = argv[argv.index(b"--vsock") + 1].decode()
    deadline = time.monotonic() + scaled(120)
    while True:
        r = subprocess.run([str(BIN / "msb-agent"), "--vsock", vsock, "exec", "--no-stdin", "--",
                            "cat", "/root/count"], capture_output=True, text=True,
                           timeout=scaled(300))
        words = r.stdout.split()
        if r.returncode == 0 and words and words[0].isdigit() and int(words[0]) >= at_least:
            return int(words[0])
        assert time.monotonic() < deadline, \
            f"the counter did not reach {at_least} within 120 s: {r.stdout!r} {r.stderr[-3000:]}"
        time.sleep(1)


@pytest.fixture(scope="module")
def snapshot_s1(env, vm_lock):
    """A running project sandbox (writable layer on its ext4 disk) with a counter
    process, snapshotted as s1; the sandbox is killed afterwards."""
    r = msb(env, "run", "-d", "app", "-e", "sh", "--", "-c", COUNTER, timeout=VM_TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    sup = state_row(env["_PROJ"])[1]
    try:
        # The counter runs once the command started: wait (through the agent) until
        # it has ticked twice, so that it runs in the snapshot.
        guest_count(env, at_least=2)
        r = msb(env, "snapshot", "create", "s1", "--sandbox", "app", timeout=scaled(900))
        assert r.returncode == 0, r.stderr[-3000:]
        assert "snapshot 's1' created" in r.stdout
        # As the base: the copies' first request finds an agent connection open.
        assert "an agent connection is parked in it" in r.stderr, r.stderr[-3000:]
        yield "s1"
    finally:
        os.kill(sup, signal.SIGKILL)  # its msb-vmm dies with it (PDEATHSIG)


def test_snapshot_ls_shows_it(env, snapshot_s1):
    r = msb(env, "snapshot", "ls")
    assert r.returncode == 0
    row = [l for l in r.stdout.splitlines() if l.startswith("s1 ")]
    assert row and "microsandbox/busybox" in row[0] and " yes " in row[0], r.stdout
    snap = Path(env["MICROSANDBOX_HOME"]) / "snapshots" / "user" / "s1"
    assert sorted(os.listdir(snap)) == ["memory", "meta", "rw.ext4", "state"]


def test_forks_keep_running_and_are_independent(env, snapshot_s1):
    r = msb(env, "fork", "s1", "-n", "2", "-e", "sh", "--", "-c", IN_FORK, timeout=scaled(900))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    rands = []
    for name in ("s1-1", "s1-2"):
        mine = [l[len(name) + 3:] for l in r.stdout.splitlines() if l.startswith(f"[{name}] ")]
        # The counter (a plain child of the command) started before the snapshot runs
        # on in each copy, on that copy's disk (it wrote the copy's own tag).
        (count,) = [l for l in mine if l.startswith("count ")]
        a, b = (int(x) for x in count.split()[1:])
        assert b > a > 0, count
        assert "before" in mine  # written before the snapshot
        # Each copy sees its own mark and not the other's.
        assert [l for l in mine if l.startswith("mark-")] == [f"mark-{name}"], mine
        (rand,) = [l for l in mine if l.startswith("rand ")]
        rands.append(rand)
    assert rands[0] != rands[1]


def test_original_sandbox_resumed(env, snapshot_s1):
    """After the snapshot the original sandbox runs on (msb-vmm was resumed)."""
    row = state_row(env["_PROJ"])
    assert row[0] == "RUNNING"
    vmm = row[2]
    ctl = [a for a in Path(f"/proc/{vmm}/cmdline").read_bytes().split(b"\0")]
    sock = ctl[ctl.index(b"--control") + 1].decode()
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"status\n")
    assert s.recv(100).decode().strip() == "OK running"
    s.close()


# ---- damaged snapshots -------------------------------------------------------------


def damaged(env, src, name, how):
    user = Path(env["MICROSANDBOX_HOME"]) / "snapshots" / "user"
    dst = user / name
    # Hard links, not copies of the 256 MiB memory file and the writable layer (a
    # restore only reads them): the state file, the one damaged, is written anew.
    shutil.copytree(user / src, dst, copy_function=os.link)
    st = dst / "state"
    data = bytearray(st.read_bytes())
    st.unlink()
    st.write_bytes(data)
    if how == "truncated":
        st.write_bytes(data[:len(data) // 2])
    elif how == "corrupted":
        data[len(data) // 2] ^= 0xFF
        st.write_bytes(data)
    elif how == "version":
        data[8:12] = (999).to_bytes(4, "little")
        st.write_bytes(data)
    elif how == "no-memory":
        (dst / "memory").unlink()
    return name


@pytest.mark.parametrize("how", ["truncated", "corrupted", "version", "no-memory"])
def test_damaged_user_snapshot_is_refused(env, snapshot_s1, how):
    name = damaged(env, snapshot_s1, f"bad-{how}", how)
    before = sorted(os.listdir(env["TMPDIR"]))  # the project sandbox's run dir is there
    r = msb(env, "exe", "--snapshot", name, "-e", "true", timeout=scaled(300))
    assert r.returncode == 8, r.stderr[-3000:]
    assert "msb-vmm cannot restore this snapshot" in r.stderr, r.stderr[-3000:]
    assert msb(env, "snapshot", "rm", name).returncode == 0
    assert sorted(os.listdir(env["TMPDIR"])) == before


def test_damaged_base_snapshot_is_rebuilt(env, vm_lock):
    """A private copy of the shared base with its state cut short: msb-vmm refuses it,
    msb rebuilds it (the module's one cold boot) and restores the new one, which beats
    the cold boot to the bare agent."""
    if "_SHARED_BASE" not in env:
        pytest.skip("test_exe_restores_the_base_snapshot did not find the base snapshot")
    shared = Path(env["_SHARED_BASE"])
    base = Path(env["_TMP"]) / "base"
    shutil.copytree(shared, base / shared.name)
    st = base / shared.name / "state"
    st.write_bytes(st.read_bytes()[:100])
    e = dict(env, MSB_BASE_SNAPSHOTS=str(base))
    rc, lines, err = exe_streamed(e, "echo still-works")
    assert rc == 0, err[-3000:]
    assert [l for _, l in lines] == ["still-works"]
    assert "refused the base snapshot" in err and "rebuilding it" in err
    assert "building the base snapshot for 1 vCPU / 256 MiB" in err
    ms = ready_ms(err)
    assert ms is not None, err[-3000:]
    cold = re.search(r"base snapshot: agent ready after (\d+) ms", err)
    assert cold, err[-3000:]
    print(f"cold boot to agent: {cold.group(1)} ms; restore to ready: {ms} ms")
    assert ms < int(cold.group(1))
    assert (base / shared.name / "state").stat().st_size > 100
