"""Boots the project's guest kernel (build/kernel/vmlinux) under QEMU TCG.

The guest gets the base command line from build/kernel/cmdline.txt (console on
hvc0, reboot=k, the PVM workarounds), a virtio console, a virtio-blk ext4 disk
and a virtio-rng, and a tiny uncompressed busybox initramfs built here.  Its
/init checks what the kernel contract promises (filesystems, cgroup v2,
namespaces, vsock, the disk, the rng), runs a dynamically linked Debian binary
with its libraries, and reboots.  TCG emulates everything in software, so this
checks the kernel itself; how it runs on this machine's PVM /dev/kvm is
measured separately (docs/kernel.md).
"""

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("MSB_TEST_TIMEOUT_SCALE", "1"))
QEMU = shutil.which("qemu-system-x86_64")
BUSYBOX = "/bin/busybox"
DYN_BINARY = "/usr/bin/expr"  # dynamically linked, prints a computed result

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "MSB_USERSPACE uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "MSB_CMDLINE $(cat /proc/cmdline)"
for fs in ext4 erofs overlay tmpfs devtmpfs cgroup2 fuse virtiofs proc sysfs devpts; do
    grep -qw "$fs" /proc/filesystems && echo "MSB_FS_OK $fs" || echo "MSB_FS_MISSING $fs"
done
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup &&
    echo "MSB_CGROUP2 $(cat /sys/fs/cgroup/cgroup.controllers)"
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts && echo "MSB_DEVPTS ok"
for ns in uts ipc user pid net mnt cgroup; do
    [ -e /proc/self/ns/$ns ] && echo "MSB_NS_OK $ns"
done
grep -q '^Seccomp:' /proc/self/status && echo "MSB_SECCOMP ok"
echo "MSB_RNG $(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt && echo "MSB_DISK $(cat /mnt/hello.txt)"
echo "MSB_DYN $(/usr/bin/expr 6 '*' 7)"
echo "MSB_DONE"
reboot -f
"""


def _libraries(binary):
    """The shared objects `binary` loads, from ldd (paths on this host)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                libs.append(p)
    return libs


def _build_initramfs(root: Path, out: Path):
    for d in ("bin", "proc", "sys", "dev", "mnt", "usr/bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    init = root / "init"
    init.write_text(INIT)
    init.chmod(0o755)
    shutil.copy2(DYN_BINARY, root / DYN_BINARY.lstrip("/"))
    for lib in _libraries(DYN_BINARY):
        dst = root / lib.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), dst)
    files = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root, capture_output=True,
                           text=True, check=True).stdout
    with open(out, "wb") as f:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                       input=files.encode(), stdout=f, check=True)


@pytest.fixture(scope="module")
def kernel():
    vmlinux = TOP / "build/kernel/vmlinux"
    # kernel/build is cached (about a second when nothing changed) and keeps the
    # kernel in step with kernel/config and kernel/patches.
    subprocess.run([str(TOP / "kernel/build")], check=True, timeout=3600 * SCALE)
    return vmlinux, (TOP / "build/kernel/cmdline.txt").read_text().strip()


def test_vmlinux_matches_the_vmm_contract(kernel):
    """msb-vmm loads the ELF segments at their physical addresses and enters at e_entry."""
    vmlinux, cmdline = kernel
    data = vmlinux.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    assert (e_type, e_machine) == (2, 62), "not an x86-64 executable"
    e_entry, e_phoff = struct.unpack_from("<QQ", data, 24)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    loads, notes = [], []
    for i in range(e_phnum):
        p_type, _, p_off, _, p_paddr, p_filesz, p_memsz = struct.unpack_from(
            "<IIQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 1:
            loads.append((p_paddr, p_memsz))
        elif p_type == 4:
            notes.append(data[p_off:p_off + p_filesz])
    # startup_64, the 64-bit boot protocol entry, at the start of the first segment.
    assert loads and e_entry == min(pa for pa, _ in loads) == 0x1000000
    assert max(pa + sz for pa, sz in loads) < 64 << 20, "kernel image larger than expected"
    assert any(b"Xen" in n for n in notes), "no PVH (Xen ELF) note: QEMU -kernel cannot boot it"
    # The base command line: the console, reset and panic behaviour the contract fixes.
    # Not the PVM workarounds: msb-vmm adds them on PVM hosts only (test_vmm_pvm.py).
    words = cmdline.split()
    for w in ("console=hvc0", "reboot=k", "panic=-1"):
        assert w in words, f"{w} missing from cmdline.txt"
    assert "noxsave" not in words and not any(w.startswith("clearcpuid=") for w in words)


def test_kernel_boots_to_userspace_under_tcg(kernel, tmp_path):
    if QEMU is None:
        pytest.skip("!!! qemu-system-x86_64 is missing: the guest kernel was NOT boot-tested; "
                    "install qemu-system-x86 (scripts/deps.d/kernel.txt) !!!")
    for tool in (BUSYBOX, DYN_BINARY, "/sbin/mkfs.ext4"):
        assert os.path.exists(tool), f"{tool} is missing; run scripts/install-deps"
    vmlinux, cmdline = kernel
    assert "console=hvc0" in cmdline and "reboot=k" in cmdline and "panic=-1" in cmdline

    initrd = tmp_path / "init.cpio"
    _build_initramfs(tmp_path / "root", initrd)
    disk_src = tmp_path / "disk"
    disk_src.mkdir()
    (disk_src / "hello.txt").write_text("hello-from-vda\n")
    disk = tmp_path / "disk.ext4"
    subprocess.run(["truncate", "-s", "8M", str(disk)], check=True)
    subprocess.run(["/sbin/mkfs.ext4", "-q", "-F", "-d", str(disk_src), str(disk)], check=True)

    cmd = [
        QEMU, "-M", "microvm,acpi=off,x-option-roms=off,isa-serial=off,rtc=off",
        "-accel", "tcg", "-cpu", "max", "-m", "256", "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "none", "-monitor", "none",
        # microvm has no keyboard controller; reboot=k resets through its port 0x64.
        "-device", "i8042",
        "-chardev", "stdio,id=con,signal=off",
        "-device", "virtio-serial-device", "-device", "virtconsole,chardev=con",
        "-drive", f"id=d0,file={disk},format=raw,if=none,readonly=on",
        "-device", "virtio-blk-device,drive=d0",
        "-device", "virtio-rng-device",
        "-kernel", str(vmlinux), "-initrd", str(initrd),
        "-append", cmdline,
    ]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=120 * SCALE)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"guest did not finish within {120 * SCALE:.0f} s; console:\n{out[-4000:]}")
    wall = time.monotonic() - t0
    out = p.stdout.decode(errors="replace")
    lines = {ln.split(" ", 1)[0]: ln for ln in out.splitlines() if ln.startswith("MSB_")}
    report = f"qemu exit {p.returncode} after {wall:.1f} s; console:\n{out[-4000:]}\n" \
             f"stderr:\n{p.stderr.decode(errors='replace')[-2000:]}"

    assert "MSB_USERSPACE" in lines, "never reached /init: " + report
    assert "MSB_DONE" in lines, report
    missing = [ln for ln in out.splitlines() if ln.startswith("MSB_FS_MISSING")]
    assert not missing, f"{missing}\n{report}"
    controllers = lines.get("MSB_CGROUP2", "").split()[1:]
    for c in ("memory", "pids", "cpu"):
        assert c in controllers, f"cgroup2 controller {c} missing\n{report}"
    assert "MSB_DEVPTS" in lines, report
    ns = {ln.split()[1] for ln in out.splitlines() if ln.startswith("MSB_NS_OK")}
    assert ns == {"uts", "ipc", "user", "pid", "net", "mnt", "cgroup"}, report
    assert "MSB_SECCOMP" in lines, report
    assert "virtio_rng" in lines.get("MSB_RNG", ""), report
    assert lines.get("MSB_DISK") == "MSB_DISK hello-from-vda", report
    assert lines.get("MSB_DYN") == "MSB_DYN 42", report
    # -no-reboot turns the guest's reboot=k reset into a QEMU exit (status 0).
    assert p.returncode == 0, report
