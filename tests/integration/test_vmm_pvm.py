"""msb-vmm gives the guest kernel the PVM workarounds (noxsave clearcpuid=...)
only on a PVM host, says which it chose, and refuses to restore a snapshot made
for the other kind of host.  Tiny ELF guests only (milliseconds, no Linux)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EXIT_OK, EXIT_USAGE, KERNEL_DIR, MSB_VMM, need_kvm, scaled, tiny_elf
from test_vmm import GUEST_ECHO_BOOT_PARAMS
from test_vmm_snapshot import EXIT_SNAPSHOT, GUEST_COUNT, procs, start  # noqa: F401 (fixture)

WORKAROUNDS = "noxsave clearcpuid=erms,fsrm,popcnt,cx16,"
HOST_IS_PVM = os.path.exists("/sys/module/kvm_pvm")


def echo_cmdline(tmp_path, base, pvm):
    """The command line the guest finds in its zero page, msb-vmm run with MSB_PVM=pvm."""
    elf = tmp_path / "echo.elf"
    elf.write_bytes(tiny_elf(GUEST_ECHO_BOOT_PARAMS))
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"Q")
    env = dict(os.environ)
    env.pop("MSB_PVM", None)
    if pvm is not None:
        env["MSB_PVM"] = pvm
    r = subprocess.run([str(MSB_VMM), "--kernel", str(elf), "--serial", "-", "--initrd",
                        str(initrd), "--base-cmdline", base, "--cmdline", "a=b"],
                       capture_output=True, text=True, timeout=scaled(30), env=env)
    assert r.returncode == EXIT_OK, r.stderr
    assert r.stdout.endswith("Q")
    return r.stdout[:-1]


def test_workarounds_follow_the_base_only_on_pvm(tmp_path):
    need_kvm()
    on = echo_cmdline(tmp_path, "console=hvc0 quiet", "1")
    assert on.startswith("console=hvc0 quiet " + WORKAROUNDS), on
    assert " msb_pvm.avx " in on, on
    assert on.endswith(" a=b"), on
    off = echo_cmdline(tmp_path, "console=hvc0 quiet", "0")
    assert off == "console=hvc0 quiet a=b"
    # Nor msb_pvm.avx: a kernel booted on hardware KVM never writes the AVX ports.
    assert "noxsave" not in off and "clearcpuid" not in off and "msb_pvm.avx" not in off
    # Detected: this machine's answer.
    auto = echo_cmdline(tmp_path, "console=hvc0 quiet", None)
    assert auto == (on if HOST_IS_PVM else off)


def test_a_base_that_already_has_them_gets_no_second_copy(tmp_path):
    need_kvm()
    base = "console=hvc0 noxsave clearcpuid=popcnt"
    assert echo_cmdline(tmp_path, base, "1") == base + " a=b"


def test_help_and_log_say_which_was_chosen(tmp_path):
    r = subprocess_run(["--help"], {})
    assert r.returncode == 0
    want = ("This host: PVM (/sys/module/kvm_pvm exists)" if HOST_IS_PVM
            else "This host: hardware KVM")
    assert want in r.stdout.replace("\n", " "), r.stdout
    r = subprocess_run(["--help"], {"MSB_PVM": "0"})
    assert "This host: hardware KVM (MSB_PVM=0)" in r.stdout.replace("\n", " ")
    need_kvm()
    elf = tmp_path / "echo.elf"
    elf.write_bytes(tiny_elf(GUEST_ECHO_BOOT_PARAMS))
    r = subprocess_run(["--kernel", str(elf)], {"MSB_PVM": "1", "MSB_LOG": "info"})
    assert "host: PVM, guest kernel mode emulated (MSB_PVM=1)" in r.stderr, r.stderr


def test_a_bad_msb_pvm_is_a_usage_error():
    r = subprocess_run(["--kernel", "x"], {"MSB_PVM": "yes"})
    assert r.returncode == EXIT_USAGE
    assert "MSB_PVM='yes'" in r.stderr and "unset it to detect" in r.stderr


def subprocess_run(args, extra):
    env = dict(os.environ)
    env.pop("MSB_PVM", None)
    env.update(extra)
    return subprocess.run([str(MSB_VMM)] + args, capture_output=True, text=True,
                          timeout=scaled(30), env=env)


def snapshot_with(tmp_path, procs, monkeypatch, pvm):
    need_kvm()
    monkeypatch.setenv("MSB_PVM", pvm)
    elf = tmp_path / "count.elf"
    elf.write_bytes(tiny_elf(GUEST_COUNT))
    p = start(procs, tmp_path / f"boot{pvm}", ["--kernel", str(elf), "--memory", "32"])
    time.sleep(0.2)
    snap = tmp_path / f"snap{pvm}"
    assert p.cmd(f"snapshot {snap}") == "OK\n"
    assert p.cmd("quit") == "OK\n"
    assert p.wait() == EXIT_OK
    return snap


def test_a_hardware_kvm_snapshot_is_refused_on_pvm(tmp_path, procs, monkeypatch):
    snap = snapshot_with(tmp_path, procs, monkeypatch, "0")
    r = subprocess_run(["--restore", str(snap)], {"MSB_PVM": "1"})
    assert r.returncode == EXIT_SNAPSHOT, r.stderr
    assert "made on hardware KVM" in r.stderr and "rebuild it here" in r.stderr


def test_a_pvm_snapshot_on_hardware_kvm_restores_with_a_warning(tmp_path, procs, monkeypatch):
    snap = snapshot_with(tmp_path, procs, monkeypatch, "1")
    monkeypatch.setenv("MSB_PVM", "0")
    q = start(procs, tmp_path / "r", ["--restore", str(snap)])
    assert q.cmd("status") == "OK running\n", q.stderr()
    assert q.cmd("quit") == "OK\n"
    assert q.wait() == EXIT_OK
    assert "runs with noxsave" in q.stderr() and "rebuild it" in q.stderr()


# ---- the AVX state switch in a real guest (a cold boot each) ------------------------------------
# four_processes runs by default (~45 s on PVM; MSB_TEST_AVX_VM=0 skips it), the snapshot
# variant only with MSB_TEST_AVX_VM=1 (another cold boot and 20 s of holding).

PROBES = Path(__file__).resolve().parent / "probes"
PROBE_CFLAGS = ["-O2", "-static", "-nostdlib", "-fno-stack-protector", "-no-pie",
                "-mgeneral-regs-only", "-fno-tree-loop-distribute-patterns"]
YMM_BASE = "console=ttyS0 reboot=k panic=-1 quiet"
YMM_CLEAN = "ymminit: 0 of 4 probes saw another process's YMM state"
avx_vm = pytest.mark.skipif(os.environ.get("MSB_TEST_AVX_VM") != "1",
                            reason="boots the guest kernel cold (minutes on PVM): "
                                   "set MSB_TEST_AVX_VM=1")
avx_vm_default = pytest.mark.skipif(os.environ.get("MSB_TEST_AVX_VM") == "0",
                                    reason="MSB_TEST_AVX_VM=0")


def ymm_guest(tmp_path):
    """(kernel, initramfs of ymminit as /init + ymmprobe)."""
    need_kvm()
    root = tmp_path / "root"
    root.mkdir()
    for src, name in (("ymminit.c", "init"), ("ymmprobe.c", "ymmprobe")):
        subprocess.run(["gcc"] + PROBE_CFLAGS + ["-o", str(root / name), str(PROBES / src)],
                       check=True)
    cpio = tmp_path / "ymm.cpio"
    with open(cpio, "wb") as f:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                       input=b"init\nymmprobe\n", stdout=f, check=True)
    # MSB_TEST_AVX_KERNEL: try another kernel (e.g. one without patch 0006: it fails on PVM).
    kernel = Path(os.environ.get("MSB_TEST_AVX_KERNEL", KERNEL_DIR / "vmlinux"))
    return kernel, cpio


@avx_vm_default
def test_four_processes_on_one_vcpu_keep_their_ymm_state(tmp_path):
    """ymminit starts four ymmprobe processes that hold a pid-tagged pattern in ymm7
    across 3000 yields and 30 signals each; on PVM this passes only with kernel patch
    0006 + msb_pvm.avx (without: another process's pattern, or zeros after a signal)."""
    kernel, cpio = ymm_guest(tmp_path)
    r = subprocess.run([str(MSB_VMM), "--kernel", str(kernel), "--initrd", str(cpio),
                        "--serial", "-", "--memory", "128", "--base-cmdline", YMM_BASE],
                       capture_output=True, text=True, timeout=scaled(1800))
    print(r.stdout[-2000:])
    assert YMM_CLEAN in r.stdout, r.stderr
    assert oks(r.stdout) == 4, r.stdout
    assert r.returncode == EXIT_OK, r.stderr


def oks(serial):
    """How many probes printed their final "ok" (the console writes \\r\\n)."""
    return sum(1 for line in serial.splitlines() if line.strip() == "ok")


def wait_for_text(path, text, count, proc, timeout):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        out = path.read_text(errors="replace") if path.exists() else ""
        if out.count(text) >= count:
            return out
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"waited for {count} x {text!r}; serial: {out[-2000:]}")
        time.sleep(0.05)


@avx_vm
def test_ymm_state_survives_a_snapshot_and_restore(tmp_path, procs):
    """The four probes hold their ymm7 patterns; the VM is snapshotted while they
    run (the running task's AVX state is in the vCPU's XSAVE state, the others' in
    their FPU areas in guest memory, where msb-vmm put it), stopped and restored;
    the probes go on checking in the restored VM and all still see their own."""
    kernel, cpio = ymm_guest(tmp_path)
    serial = tmp_path / "serial.txt"
    p = start(procs, tmp_path / "boot",
              ["--kernel", str(kernel), "--initrd", str(cpio), "--serial", str(serial),
               "--memory", "128", "--base-cmdline", YMM_BASE, "--cmdline", "hold"])
    before = wait_for_text(serial, "ymmprobe: holding", 4, p.proc, 1800)
    snap = tmp_path / "snap"
    assert p.cmd(f"snapshot {snap}") == "OK\n", p.stderr()
    assert p.cmd("quit") == "OK\n"
    assert p.wait() == EXIT_OK
    assert "ymminit:" not in before and oks(before) == 0, before
    serial2 = tmp_path / "serial2.txt"
    q = start(procs, tmp_path / "restored", ["--restore", str(snap), "--serial", str(serial2)])
    after = wait_for_text(serial2, "ymminit:", 1, q.proc, 600)
    print(before[-1000:], after[-1000:])
    assert YMM_CLEAN in after, after
    assert oks(after) == 4, after
    assert q.wait(60) == EXIT_OK, q.stderr()
