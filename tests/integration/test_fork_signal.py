"""A signal during `msb exe` or `msb fork` leaves nothing behind: no msb-vmm, no
run directory in $TMPDIR.

Without a VM: a user snapshot made by hand and a stand-in msb-vmm ($MSB_VMM, a
script that only sleeps, so the restores never finish): SIGINT while `msb fork
-n 3` waits for its copies, SIGTERM while `msb exe --snapshot` waits for its one.

With a VM: one sandbox restored from the shared base snapshot is snapshotted,
then stopped with SIGTERM while its command runs; `msb fork -n 3` of that
snapshot gets SIGINT once its first copy is up. That test holds
/tmp/msb-vm.lock (as flock(1) does) while its VMs run."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BIN, KERNEL_DIR, hold_vm_lock, new_home, scaled

MSB = BIN / "msb"
BOOT_TIMEOUT = scaled(float(os.environ.get("MSB_VM_BOOT_TIMEOUT", "2400")))


class Lines:
    """A process's stderr, read line by line in a thread."""

    def __init__(self, stream):
        self.lines = []
        self.t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.t.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            time.sleep(0.1)
        return None

    def lines_matching(self, pattern):
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def text(self):
        return "\n".join(self.lines)


def vmm_pids_of(marker):
    """msb-vmm processes whose command line mentions `marker`."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"msb-vmm") and any(marker.encode() in a for a in cmd):
            found.append(int(d))
    return found


@pytest.fixture
def env(tmp_path):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("LOUD SKIP: /dev/kvm is absent or not usable here: no sandbox can boot")
    if not (KERNEL_DIR / "vmlinux").exists():
        pytest.fail("build/kernel/vmlinux is missing: run kernel/build")
    home = new_home(tmp_path / "home")
    run_tmp = tempfile.mkdtemp(prefix="msbf-", dir="/tmp")
    e = dict(os.environ, MICROSANDBOX_HOME=str(home), MSB_LOG="info", TMPDIR=run_tmp,
             MSB_BOOT_TIMEOUT=str(int(BOOT_TIMEOUT)))
    e.pop("MSB_NO_SNAPSHOT", None)
    yield e
    shutil.rmtree(run_tmp, ignore_errors=True)


def user_snapshot_by_hand(env, name):
    """A user snapshot of the imported busybox image (metadata as msb writes it;
    state and memory are never read by the stand-in msb-vmm)."""
    out = subprocess.run([str(MSB), "image", "inspect", "microsandbox/busybox"], env=env,
                         capture_output=True, text=True, check=True)
    rootfs = json.loads(out.stdout)["rootfs_path"]
    d = os.path.join(env["MICROSANDBOX_HOME"], "snapshots", "user", name)
    os.makedirs(d)
    for f in ("state", "memory"):
        open(os.path.join(d, f), "wb").close()
    with open(os.path.join(d, "meta"), "w") as f:
        f.write("msb-snapshot 1\nname=%s\nimage=docker.io/microsandbox/busybox:latest\n"
                "rootfs=%s\nrootfs_format=erofs\ncpus=1\nmemory_mib=256\ndisks=2\n"
                "rw=no\n" % (name, rootfs))


@pytest.mark.parametrize("verb", ["fork", "exe"])
def test_signal_while_restoring_removes_everything(env, tmp_path, verb):
    fake = tmp_path / "fake-vmm"
    fake.write_text("#!/bin/sh\nexec sleep 1000\n")
    fake.chmod(0o755)
    e = dict(env, MSB_VMM=str(fake), MSB_RESTORE_TIMEOUT="600")
    user_snapshot_by_hand(e, "s1")
    if verb == "fork":
        args, sig, started = ["fork", "s1", "-n", "3", "-e", "true"], signal.SIGINT, 3
    else:
        args, sig, started = ["exe", "--snapshot", "s1", "-e", "true"], signal.SIGTERM, 1
    p = subprocess.Popen([str(MSB)] + args, env=e, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = Lines(p.stderr)
    try:
        # every copy's stand-in msb-vmm runs and has its run directory
        end = time.monotonic() + scaled(60)
        while (time.monotonic() < end
               and len(err.lines_matching("restoring user snapshot")) < started):
            time.sleep(0.05)
        assert len(err.lines_matching("restoring user snapshot")) == started, err.text()
        assert len(os.listdir(e["TMPDIR"])) == started
    finally:
        p.send_signal(sig)
        rc = p.wait(timeout=scaled(60))
    assert rc == 128 + sig, err.text()
    if verb == "fork":
        assert "msb fork: interrupted; the copies were stopped and removed" in err.text()
    else:
        assert "msb exe: interrupted; the sandbox was removed" in err.text()
    assert p.stdout.read() == ""
    assert os.listdir(e["TMPDIR"]) == []
    # every stand-in msb-vmm was killed and reaped
    pids = [int(re.search(r"msb-vmm pid (\d+)", line).group(1))
            for line in err.lines_matching("restoring user snapshot")]
    assert len(pids) == started
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_signals_leave_no_run_dirs_or_vms(env):
    with hold_vm_lock():
        # A sandbox to snapshot: msb exe running a long sleep.
        exe = subprocess.Popen([str(MSB), "exe", "--memory", "256", "microsandbox/busybox",
                                "-e", "sleep", "--", "100000"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        err = Lines(exe.stderr)
        try:
            m = err.wait_for(r"sandbox tmp: (?:restoring (?:base|warm) snapshot \S+|cold boot), "
                             r"msb-vmm pid (\d+), run dir (\S+)", BOOT_TIMEOUT)
            assert m, err.text()[-3000:]
            # ready once msb wrote what `msb snapshot create` reads
            meta = os.path.join(m.group(2), "sandbox.meta")
            end = time.monotonic() + BOOT_TIMEOUT
            while not os.path.exists(meta) and time.monotonic() < end and exe.poll() is None:
                time.sleep(0.2)
            assert os.path.exists(meta), err.text()[-3000:]
            snap = subprocess.run([str(MSB), "snapshot", "create", "s1", "--pid", m.group(1)],
                                  env=env, capture_output=True, text=True,
                                  timeout=scaled(900))
            assert snap.returncode == 0, snap.stderr
        finally:
            # SIGTERM while the command runs: the VM is killed, its run dir removed.
            exe.send_signal(signal.SIGTERM)
            rc = exe.wait(timeout=scaled(120))
        assert rc == 128 + signal.SIGTERM, err.text()[-3000:]
        assert "interrupted; the sandbox was removed" in err.text()
        assert os.listdir(env["TMPDIR"]) == []

        # msb fork -n 3, interrupted once the first copy is ready.
        snap_dir = os.path.join(env["MICROSANDBOX_HOME"], "snapshots", "user", "s1")
        fork = subprocess.Popen([str(MSB), "fork", "s1", "-n", "3", "-e", "sleep", "--",
                                 "100000"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ferr = Lines(fork.stderr)
        try:
            assert ferr.wait_for(r"restored from the user snapshot", BOOT_TIMEOUT), \
                ferr.text()[-3000:]
            assert vmm_pids_of(snap_dir), "no copy's msb-vmm runs"
        finally:
            t0 = time.monotonic()
            fork.send_signal(signal.SIGINT)
            rc = fork.wait(timeout=scaled(300))
        took = time.monotonic() - t0
        print(f"msb fork ended {took:.1f} s after SIGINT")
        assert rc == 128 + signal.SIGINT, ferr.text()[-3000:]
        assert "msb fork: interrupted; the copies were stopped and removed" in ferr.text()
        assert fork.stdout.read() == ""
        assert vmm_pids_of(snap_dir) == []
        assert os.listdir(env["TMPDIR"]) == []
