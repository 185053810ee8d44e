"""msb-vmm snapshots as users see them: the control socket (pause, resume,
snapshot, quit, status), --restore in a new process, damaged snapshots refused
with exit status 3; tiny guests that take milliseconds.  Then one Linux guest
(msb-init, the agent over vsock) snapshotted and restored twice at once.
Format and protocol: docs/snapshot.md."""

import hashlib
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (BUILD, EXIT_FORCED, EXIT_OK, EXIT_USAGE, KERNEL_DIR, MSB_VMM, need_kvm,
                      scaled, tiny_elf)

EXIT_SNAPSHOT = 3
COUNTER_GPA = 0x3000

# rax counts, and every turn stores it at COUNTER_GPA: the count in memory
# goes on from the snapshot's only if registers and memory were restored.
GUEST_COUNT = bytes.fromhex(
    "31c0"              # xor eax, eax
    "48ffc0"            # loop: inc rax
    "48890425" "00300000"  # mov [0x3000], rax
    "ebf3")             # jmp loop

# Every turn writes the UART's scratch register and reads it back (two PIO
# exits); a wrong value reports failure on the power port (exit 7).  Pausing
# in the middle of these exits must not lose one.
GUEST_PIO_ECHO = bytes.fromhex(
    "66baff03"          # mov dx, 0x3ff
    "ffc3"              # loop: inc ebx
    "88d8"              # mov al, bl
    "ee"                # out dx, al
    "ec"                # in al, dx
    "38d8"              # cmp al, bl
    "750a"              # jne fail
    "48891c25" "00300000"  # mov [0x3000], rbx
    "ebec"              # jmp loop
    "66ba1005"          # fail: mov dx, 0x510
    "b001"              # mov al, 1
    "ee"                # out dx, al
    "ebfe")             # jmp $


class Proc:
    """One msb-vmm with a control socket."""

    def __init__(self, work, args):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.control = self.work / "ctl.sock"
        self.stderr_path = self.work / "stderr.log"
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([str(MSB_VMM)] + list(args) +
                                     ["--control", str(self.control)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._err)
        deadline = time.monotonic() + scaled(10)
        while not self.control.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no control socket; msb-vmm: {self.stderr()}")
            time.sleep(0.01)

    def cmd(self, line, timeout=60):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(scaled(timeout))
        s.connect(str(self.control))
        s.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        s.close()
        return reply.decode()

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout=20):
        return self.proc.wait(timeout=scaled(timeout))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


@pytest.fixture
def procs():
    made = []
    yield made
    for p in made:
        p.close()


def start(procs, work, args):
    p = Proc(work, args)
    procs.append(p)
    return p


def counter(snapdir):
    with open(Path(snapdir) / "memory", "rb") as f:
        f.seek(COUNTER_GPA)
        return struct.unpack("<Q", f.read(8))[0]


def run_restore(args, timeout=20):
    return subprocess.run([str(MSB_VMM)] + args, capture_output=True, text=True,
                          timeout=scaled(timeout))


@pytest.fixture
def counted(tmp_path, procs):
    """A counting guest snapshotted once: (snapshot dir, count in it)."""
    need_kvm()
    elf = tmp_path / "count.elf"
    elf.write_bytes(tiny_elf(GUEST_COUNT))
    p = start(procs, tmp_path / "boot", ["--kernel", str(elf), "--memory", "32"])
    time.sleep(0.2)
    snap = tmp_path / "snap"
    assert p.cmd(f"snapshot {snap}") == "OK\n"
    assert p.cmd("quit") == "OK\n"
    assert p.wait() == EXIT_OK
    return snap, counter(snap)


# ---- options ----------------------------------------------------------------------------------

def test_help_documents_restore_control_and_status_3():
    r = subprocess.run([str(MSB_VMM), "--help"], capture_output=True, text=True)
    assert "--restore DIR" in r.stdout and "--control PATH" in r.stdout
    assert "\n  3  the snapshot cannot be restored" in r.stdout


@pytest.mark.parametrize("extra", [["--kernel", "k"], ["--cpus", "2"], ["--memory", "64"],
                                   ["--cmdline", "x"], ["--initrd", "i"]])
def test_restore_refuses_what_the_snapshot_fixes(tmp_path, extra):
    r = run_restore(["--restore", str(tmp_path)] + extra)
    assert r.returncode == EXIT_USAGE
    assert "--restore takes the kernel" in r.stderr


# ---- the control socket ----------------------------------------------------------------------------

def test_pause_resume_snapshot_quit_and_status(tmp_path, procs):
    need_kvm()
    elf = tmp_path / "count.elf"
    elf.write_bytes(tiny_elf(GUEST_COUNT))
    p = start(procs, tmp_path / "vm", ["--kernel", str(elf), "--memory", "32"])
    assert stat.S_IMODE(p.control.stat().st_mode) == 0o600
    assert p.cmd("status") == "OK running\n"
    assert p.cmd("pause") == "OK\n"
    assert p.cmd("status") == "OK paused\n"
    assert p.cmd("pause") == "OK\n"  # pausing a paused VM is fine
    snap = tmp_path / "s1"
    assert p.cmd(f"snapshot {snap}") == "OK\n"
    assert p.cmd("status") == "OK paused\n"  # a snapshot leaves it paused
    c1 = counter(snap)
    time.sleep(0.1)
    snap2 = tmp_path / "s2"
    assert p.cmd(f"snapshot {snap2}") == "OK\n"
    assert counter(snap2) == c1, "the guest ran while paused"
    assert p.cmd("resume") == "OK\n"
    assert p.cmd("status") == "OK running\n"
    time.sleep(0.1)
    snap3 = tmp_path / "s3"
    assert p.cmd(f"snapshot {snap3}") == "OK\n"
    assert counter(snap3) > c1
    # Sparse: a 32 MiB guest whose RAM is almost all zero.
    st = (snap / "memory").stat()
    assert st.st_size == 32 * 2**20 + 4096
    assert st.st_blocks * 512 < 2 * 2**20, st.st_blocks
    assert sorted(os.listdir(snap)) == ["memory", "state"]
    assert p.cmd("quit") == "OK\n"
    assert p.wait() == EXIT_OK
    assert not p.control.exists(), "the control socket stays behind"


def test_bad_commands_are_answered_err_and_the_vm_goes_on(tmp_path, procs):
    need_kvm()
    elf = tmp_path / "count.elf"
    elf.write_bytes(tiny_elf(GUEST_COUNT))
    p = start(procs, tmp_path / "vm", ["--kernel", str(elf), "--memory", "32"])
    assert p.cmd("frobnicate").startswith("ERR unknown command 'frobnicate'")
    assert p.cmd("snapshot").startswith("ERR unknown command")
    r = p.cmd("snapshot /proc/no/such/dir")
    assert r.startswith("ERR ") and "/proc/no/such/dir" in r, r
    assert p.cmd("status") == "OK paused\n"
    assert p.cmd("resume") == "OK\n"
    assert p.cmd("status") == "OK running\n"
    p.proc.send_signal(signal.SIGTERM)  # no vsock: stops at once
    assert p.wait() == EXIT_FORCED


def test_sigterm_while_paused_stops_at_once(tmp_path, procs):
    need_kvm()
    elf = tmp_path / "count.elf"
    elf.write_bytes(tiny_elf(GUEST_COUNT))
    p = start(procs, tmp_path / "vm", ["--kernel", str(elf), "--memory", "32"])
    assert p.cmd("pause") == "OK\n"
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait() == EXIT_FORCED
    assert "while paused" in p.stderr()


def test_pausing_between_pio_exits_loses_none(tmp_path, procs):
    """40 pause/resume rounds while the guest does nothing but PIO exits, then a
    snapshot restored in a new process that goes on checking."""
    need_kvm()
    elf = tmp_path / "echo.elf"
    elf.write_bytes(tiny_elf(GUEST_PIO_ECHO))
    p = start(procs, tmp_path / "vm", ["--kernel", str(elf), "--memory", "32", "--cpus", "1"])
    for _ in range(40):
        assert p.cmd("pause") == "OK\n"
        assert p.cmd("resume") == "OK\n"
    snap = tmp_path / "snap"
    assert p.cmd(f"snapshot {snap}") == "OK\n"
    assert p.cmd("quit") == "OK\n"
    assert p.wait() == EXIT_OK, p.stderr()
    c1 = counter(snap)
    assert c1 > 0
    q = start(procs, tmp_path / "r", ["--restore", str(snap)])
    for _ in range(10):
        assert q.cmd("pause") == "OK\n"
        assert q.cmd("resume") == "OK\n"
    snap2 = tmp_path / "snap2"
    assert q.cmd(f"snapshot {snap2}") == "OK\n"
    assert counter(snap2) > c1
    assert q.cmd("quit") == "OK\n"
    assert q.wait() == EXIT_OK, q.stderr()


# ---- restore -------------------------------------------------------------------------------------

def test_restored_guest_goes_on_counting(tmp_path, procs, counted):
    snap, c1 = counted
    assert c1 > 0
    q = start(procs, tmp_path / "r", ["--restore", str(snap)])
    assert q.cmd("status") == "OK running\n"
    time.sleep(0.2)
    snap2 = tmp_path / "after"
    assert q.cmd(f"snapshot {snap2}") == "OK\n"
    c2 = counter(snap2)
    assert c2 > c1, (c1, c2)
    # A snapshot of a restored VM restores too.
    assert q.cmd("quit") == "OK\n"
    assert q.wait() == EXIT_OK
    r = start(procs, tmp_path / "r2", ["--restore", str(snap2)])
    time.sleep(0.1)
    assert r.cmd(f"snapshot {tmp_path / 'third'}") == "OK\n"
    assert counter(tmp_path / "third") > c2
    assert r.cmd("quit") == "OK\n"


def test_two_restores_of_one_snapshot_are_independent(tmp_path, procs, counted):
    snap, c1 = counted
    before = hashlib.sha256((snap / "memory").read_bytes()).hexdigest()
    a = start(procs, tmp_path / "a", ["--restore", str(snap)])
    b = start(procs, tmp_path / "b", ["--restore", str(snap)])
    time.sleep(0.2)
    assert a.cmd(f"snapshot {tmp_path / 'sa'}") == "OK\n"
    time.sleep(0.1)
    assert b.cmd(f"snapshot {tmp_path / 'sb'}") == "OK\n"
    ca, cb = counter(tmp_path / "sa"), counter(tmp_path / "sb")
    assert ca > c1 and cb > c1
    assert ca != cb  # each counts on its own copy of memory
    for v in (a, b):
        assert v.cmd("quit") == "OK\n"
        assert v.wait() == EXIT_OK
    # Private mappings: the guests' writes never reached the snapshot's file.
    assert hashlib.sha256((snap / "memory").read_bytes()).hexdigest() == before
    assert counter(snap) == c1


def test_restored_msb_vmm_own_memory_is_at_most_5_mib(tmp_path, procs, counted):
    """msb-vmm's RSS minus the guest pages it maps, for a restored VM (the
    guest RAM mapping is the snapshot's memory file here)."""
    from test_vmm import vmm_overhead_kib
    snap, _ = counted
    q = start(procs, tmp_path / "r", ["--restore", str(snap)])
    time.sleep(0.5)
    assert q.cmd("status") == "OK running\n"
    overhead, guest = vmm_overhead_kib(q.proc.pid, 32)
    print(f"restored msb-vmm overhead {overhead} KiB (guest pages mapped: {guest} KiB)")
    assert overhead <= 5 * 1024, overhead
    assert q.cmd("quit") == "OK\n"


def damage_truncate_state(snap):
    data = (snap / "state").read_bytes()
    (snap / "state").write_bytes(data[:len(data) // 2])
    return "truncated"


def damage_flip_state(snap):
    data = bytearray((snap / "state").read_bytes())
    data[len(data) // 2] ^= 0x40
    (snap / "state").write_bytes(bytes(data))
    return "checksum"


def damage_version(snap):
    data = bytearray((snap / "state").read_bytes())
    data[8:12] = struct.pack("<I", 99)
    (snap / "state").write_bytes(bytes(data))
    return "format version 99"


def damage_magic(snap):
    data = bytearray((snap / "state").read_bytes())
    data[0:8] = b"NOTASNAP"
    (snap / "state").write_bytes(bytes(data))
    return "wrong magic"


def damage_no_memory(snap):
    (snap / "memory").unlink()
    return "memory"


def damage_short_memory(snap):
    os.truncate(snap / "memory", 4096)
    return "truncated"


def damage_no_state(snap):
    (snap / "state").unlink()
    return "state"


@pytest.mark.parametrize("damage", [damage_truncate_state, damage_flip_state, damage_version,
                                    damage_magic, damage_no_memory, damage_short_memory,
                                    damage_no_state])
def test_damaged_snapshot_exits_3_with_one_clear_message(tmp_path, counted, damage):
    snap, _ = counted
    needle = damage(snap)
    r = run_restore(["--restore", str(snap)])
    assert r.returncode == EXIT_SNAPSHOT, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("msb-vmm: cannot restore the snapshot: "), lines[0]
    assert needle in lines[0], lines[0]


def test_missing_snapshot_directory_exits_3(tmp_path):
    r = run_restore(["--restore", str(tmp_path / "nope")])
    assert r.returncode == EXIT_SNAPSHOT
    assert "No such file" in r.stderr


def test_other_devices_than_the_snapshots_are_refused(tmp_path, procs):
    need_kvm()
    elf = tmp_path / "count.elf"
    elf.write_bytes(tiny_elf(GUEST_COUNT))
    p = start(procs, tmp_path / "vm", ["--kernel", str(elf), "--memory", "32", "--rng"])
    snap = tmp_path / "snap"
    r = p.cmd(f"snapshot {snap}")
    if r.startswith("ERR") and "not implemented" in r:
        pytest.skip("the virtio devices cannot be snapshotted yet")
    assert r == "OK\n"
    assert p.cmd("quit") == "OK\n"
    r = run_restore(["--restore", str(snap)])
    assert r.returncode == EXIT_SNAPSHOT
    assert "[rng]" in r.stderr and "[none]" in r.stderr, r.stderr
    r = run_restore(["--restore", str(snap), "--disk", "none"])
    assert r.returncode == EXIT_SNAPSHOT
    assert "[rng]" in r.stderr and "[blk]" in r.stderr, r.stderr
    q = start(procs, tmp_path / "ok", ["--restore", str(snap), "--rng"])
    assert q.cmd("status") == "OK running\n"
    assert q.cmd("quit") == "OK\n"
    assert q.wait() == EXIT_OK


# ---- one Linux guest ---------------------------------------------------------------------------

AGENT = BUILD / "bin" / "msb-agent"
BOOT = 900


def busybox_initrd(dst):
    """msb-init's initramfs with /bin/busybox appended (the kernel unpacks
    concatenated archives)."""
    def entry(name, mode, data=b"", ino=1):
        nb = name.encode() + b"\0"
        out = b"070701" + b"".join(b"%08x" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)) + nb
        out += b"\0" * (-len(out) % 4) + data
        return out + b"\0" * (-len(out) % 4)
    extra = entry("bin", 0o40755, ino=9001)
    extra += entry("bin/busybox", 0o100755, Path("/bin/busybox").read_bytes(), ino=9002)
    extra += entry("TRAILER!!!", 0, ino=0)
    extra += b"\0" * (-len(extra) % 512)
    dst.write_bytes((BUILD / "initramfs.cpio").read_bytes() + extra)


def linux_devices(work):
    return ["--disk", "none", "--disk", "none", "--console", str(work / "console.log"),
            "--vsock", str(work / "v.sock"), "--rng"]


def agent(work, *args, timeout=300):
    return subprocess.run([str(AGENT), "--vsock", str(work / "v.sock")] + list(args),
                          capture_output=True, text=True, timeout=scaled(timeout))


def test_linux_guest_snapshot_restored_twice_runs_commands(tmp_path, procs):
    """Boot msb-init, wait for the agent, snapshot, quit; restore twice at once
    and run a command through the agent in each.  Boots a VM: run alone
    (flock /tmp/msb-vm.lock)."""
    need_kvm()
    kernel = KERNEL_DIR / "vmlinux"
    for f in (kernel, BUILD / "initramfs.cpio", AGENT, Path("/bin/busybox")):
        if not f.exists():
            pytest.skip(f"{f} is missing")
    initrd = tmp_path / "initrd.cpio"
    busybox_initrd(initrd)
    base = (KERNEL_DIR / "cmdline.txt").read_text().strip()
    boot = tmp_path / "boot"
    boot.mkdir()
    ready = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ready.bind(str(boot / "v.sock_1023"))
    ready.listen(1)
    p = start(procs, boot, ["--kernel", str(kernel), "--initrd", str(initrd), "--base-cmdline",
                            base, "--memory", "128"] + linux_devices(boot))
    t0 = time.monotonic()
    ready.settimeout(scaled(BOOT))
    c, _ = ready.accept()  # msb-init's READY
    c.close()
    ready.close()
    r = agent(boot, "wait-ready", "--timeout", "300")
    assert r.returncode == 0, r.stderr
    # A process started before the snapshot: counts into /count every 0.2 s.
    r = agent(boot, "exec", "--", "/bin/busybox", "setsid", "/bin/busybox", "sh", "-c",
              "i=0; while :; do i=$((i+1)); echo $i > /count; /bin/busybox sleep 0.2; done "
              "</dev/null >/dev/null 2>&1 &")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + scaled(120)
    while agent(boot, "exec", "--", "/bin/busybox", "cat", "/count").stdout.strip() in ("", "1"):
        assert time.monotonic() < deadline, "the counting process did not start"
        time.sleep(0.5)
    t_boot = time.monotonic() - t0
    snap = tmp_path / "snap"
    t1 = time.monotonic()
    assert p.cmd(f"snapshot {snap}", timeout=300) == "OK\n"
    t_snap = time.monotonic() - t1
    assert p.cmd("quit") == "OK\n"
    assert p.wait() == EXIT_OK

    vms = []
    for name in ("r1", "r2"):
        w = tmp_path / name
        w.mkdir()
        vms.append((w, start(procs, w, ["--restore", str(snap)] + linux_devices(w))))
    for i, (w, v) in enumerate(vms):
        r = agent(w, "exec", "--", "/bin/busybox", "sh", "-c", f"echo restored {i} > /x; "
                  "cat /x")
        assert r.returncode == 0, (r.stderr, v.stderr())
        assert r.stdout == f"restored {i}\n"
    # Each guest has its own memory: the file written in one is not in the other.
    r = agent(vms[0][0], "exec", "--", "/bin/busybox", "cat", "/x")
    assert r.stdout == "restored 0\n"
    # The process started before the snapshot goes on counting in both.
    for w, _ in vms:
        first = int(agent(w, "exec", "--", "/bin/busybox", "cat", "/count").stdout)
        deadline = time.monotonic() + scaled(60)
        while int(agent(w, "exec", "--", "/bin/busybox", "cat", "/count").stdout) <= first:
            assert time.monotonic() < deadline, "the counting process stopped after restore"
            time.sleep(0.5)
    for _, v in vms:
        assert v.cmd("quit") == "OK\n"
        assert v.wait(60) == EXIT_OK
    print(f"boot to a counting process: {t_boot:.1f} s, snapshot: {t_snap:.1f} s, "
          f"whole test: {time.monotonic() - t0:.1f} s")
