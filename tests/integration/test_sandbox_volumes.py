"""Volumes end to end (docs/sandbox.md "Volumes"): ONE `msb exe` with two volumes, a
read-write one and a read-only one, runs a script that reads what the host wrote, writes
back, copies a 2 MiB file, tries to write into the read-only volume and to reach a host
file outside the volume through symlinks and `..`. The host then checks what arrived. The
sandbox restores the base snapshot (its empty virtio-fs slots get the directories)."""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BIN, KERNEL_DIR, new_home, scaled

MSB = BIN / "msb"
BOOT_TIMEOUT = scaled(float(os.environ.get("MSB_VM_BOOT_TIMEOUT", "2400")))
SECRET = "host-secret-7f3a"

SCRIPT = r"""
cat /mnt/rw/hello.txt
echo "guest wrote this" > /mnt/rw/from-guest.txt
mkdir /mnt/rw/newdir && echo nested > /mnt/rw/newdir/f && mv /mnt/rw/newdir /mnt/rw/moved
echo "big:$(sha256sum /mnt/rw/big.bin | cut -d' ' -f1)"
cat /mnt/rw/big.bin > /mnt/rw/big-copy.bin
cat /mnt/ro/only.txt
if echo nope > /mnt/ro/new.txt 2>/dev/null; then echo "ro:WRITABLE"; else echo "ro:refused"; fi
if rm /mnt/ro/only.txt 2>/dev/null; then echo "rm:REMOVED"; else echo "rm:refused"; fi
cat /mnt/rw/link-out /mnt/rw/link-up/secret.txt /mnt/rw/../secret.txt 2>/dev/null
ls /mnt/rw/link-up/ 2>/dev/null
ln -s /secret.txt /mnt/rw/guest-link && cat /mnt/rw/guest-link 2>/dev/null
echo "mounts:$(grep -c virtiofs /proc/mounts)"
echo done
"""


def have_kvm():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return new_home(tmp_path_factory.mktemp("vol") / "home")


def msb_exe(home, args, timeout):
    tmp = Path(tempfile.mkdtemp(prefix="msbv-", dir="/tmp"))
    env = dict(os.environ, MICROSANDBOX_HOME=str(home), TMPDIR=str(tmp), MSB_LOG="info",
               MSB_BOOT_TIMEOUT=str(int(BOOT_TIMEOUT)))
    try:
        r = subprocess.run([str(MSB), "exe"] + args, env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        r.left = sorted(os.listdir(tmp))
        return r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def run(home, tmp_path_factory):
    """The one VM of the module: the host side prepared, the script run."""
    if not have_kvm():
        pytest.skip("LOUD SKIP: /dev/kvm is absent or not usable here: no sandbox can boot")
    if not (KERNEL_DIR / "vmlinux").exists():
        pytest.fail("build/kernel/vmlinux is missing: run kernel/build")
    top = tmp_path_factory.mktemp("share")
    rw, ro = top / "rw", top / "ro"
    rw.mkdir()
    ro.mkdir()
    (top / "secret.txt").write_text(SECRET + "\n")  # next to the volume, not in it
    (rw / "hello.txt").write_text("hello from the host\n")
    (rw / "link-out").symlink_to(top / "secret.txt")
    (rw / "link-up").symlink_to("..")
    big = os.urandom(2 << 20)  # 16+ virtio-fs requests (128 KiB at most) each way
    (rw / "big.bin").write_bytes(big)
    (ro / "only.txt").write_text("read-only content\n")
    r = msb_exe(home, ["--memory", "256", "-v", f"{rw}:/mnt/rw", "-v", f"{ro}:/mnt/ro:ro",
                       "microsandbox/busybox", "--", "-c", SCRIPT],
                timeout=BOOT_TIMEOUT + scaled(900))
    r.rw, r.ro, r.big = rw, ro, big
    return r


def test_host_files_reach_the_guest_and_back(run):
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "hello from the host" in out
    assert (run.rw / "from-guest.txt").read_text() == "guest wrote this\n"
    assert (run.rw / "moved" / "f").read_text() == "nested\n"
    assert not (run.rw / "newdir").exists()
    assert "mounts:2" in out and out.rstrip().endswith("done")


def test_a_big_file_round_trips(run):
    assert run.returncode == 0, run.stderr[-3000:]
    want = hashlib.sha256(run.big).hexdigest()
    assert f"big:{want}" in run.stdout
    assert hashlib.sha256((run.rw / "big-copy.bin").read_bytes()).hexdigest() == want


def test_read_only_volume_refuses_writes(run):
    assert "read-only content" in run.stdout
    assert "ro:refused" in run.stdout and "rm:refused" in run.stdout
    assert sorted(os.listdir(run.ro)) == ["only.txt"]


def test_the_guest_cannot_reach_host_files_outside_the_volume(run):
    assert SECRET not in run.stdout and SECRET not in run.stderr
    # The guest's own link is stored on the host as it is, text only.
    assert os.readlink(run.rw / "guest-link") == "/secret.txt"


def test_nothing_left_behind(run):
    assert run.left == [], run.left


def test_bad_volumes_are_refused_before_a_vm(home, tmp_path):
    for args, says in ((["-v", str(tmp_path / "missing") + ":/m"], "create it or fix the path"),
                       (["-v", f"{tmp_path}:m"], "absolute"),
                       (["-v", f"{tmp_path}:/a", "-v", f"{tmp_path}:/a/b"], "overlaps")):
        r = msb_exe(home, args + ["microsandbox/busybox", "--", "-c", "true"], timeout=60)
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr)
        assert r.left == []
