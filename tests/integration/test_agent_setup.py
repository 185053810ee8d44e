"""SETUP (docs/agent-protocol.md): the request that sets a guest up after a
snapshot restore.  Host mode (`msb-init --serve-unix`) checks what must never
touch the host; one VM boots in base mode (no msb.root: msb-init stays in its
initramfs) with the disks attached, and SETUP mounts the root, sets the clock,
the hostname and the machine id, and mixes in entropy."""

import os
import struct
import subprocess
import time

import pytest

from test_agent_host import (Conn, ERROR, OK, E_BAD_REQUEST, E_UNSUPPORTED, T_ERR_KIND,
                             T_ERR_MSG, T_HOSTNAME, field, field_u32, frame, parse_fields,
                             u32, u64)

BUILD = os.environ.get("MSB_BUILD_DIR", os.path.join(os.getcwd(), "build/release"))
BIN = os.path.join(BUILD, "bin")
SCALE = float(os.environ.get("MSB_TEST_TIMEOUT_SCALE", "1"))

SETUP = 0x21
T_ROOT_DEV, T_ROOT_FSTYPE, T_OVERLAY, T_REALTIME_NS, T_ENTROPY, T_MACHINE_ID = range(60, 66)


@pytest.fixture
def agent(tmp_path):
    sock = str(tmp_path / "a.sock")
    p = subprocess.Popen([os.path.join(BIN, "msb-init"), "--serve-unix", sock])
    deadline = time.time() + 10 * SCALE
    while not os.path.exists(sock) and time.time() < deadline:
        time.sleep(0.02)
    p.sock = sock
    yield p
    if p.poll() is None:
        p.kill()
        p.wait()


def tool(sock, *args, timeout=60):
    return subprocess.run([os.path.join(BIN, "msb-agent"), "--vsock", sock, *args],
                          capture_output=True, timeout=timeout * SCALE)


def answer(c, id_):
    """The OK or ERROR of request id_ (kind, message) ; (0, None) for OK."""
    while True:
        t, rid, _stream, payload = c.recv()
        if rid != id_:
            continue
        if t == OK:
            return 0, None
        assert t == ERROR, t
        f = parse_fields(payload)
        return field_u32(f, T_ERR_KIND), f[T_ERR_MSG][0].decode()


def test_host_mode_applies_only_the_hostname(agent):
    r = tool(agent.sock, "setup", "--hostname", "resynced-1")
    assert r.returncode == 0, r.stderr
    assert tool(agent.sock, "wait-ready").stdout == b"ready resynced-1\n"
    # What would change the host is refused, before anything is applied.
    for args, what in ((("--clock", "now"), b"clock"), (("--entropy", "64"), b"entropy"),
                       (("--root", "/dev/vda"), b"root"),
                       (("--machine-id", "random"), b"machine id")):
        r = tool(agent.sock, "setup", "--hostname", "not-applied", *args)
        assert r.returncode == 2 and what in r.stderr and b"--serve-unix" in r.stderr, r
    assert tool(agent.sock, "wait-ready").stdout == b"ready resynced-1\n"


def test_setup_refuses_hostile_fields(agent):
    c = Conn.open(agent.sock)
    good_id = "0123456789abcdef0123456789abcdef"
    bad = [
        field(T_HOSTNAME, "a;b"),
        field(T_HOSTNAME, "-lead"),
        field(T_HOSTNAME, "x" * 64),
        field(T_HOSTNAME, b"a\0b"),
        field(T_HOSTNAME, "a") + field(T_HOSTNAME, "b"),
        field(T_ROOT_DEV, "/etc/passwd"),
        field(T_ROOT_DEV, "/dev/../etc"),
        field(T_ROOT_DEV, "/dev/"),
        field(T_ROOT_DEV, "/dev/" + "a" * 70),
        field(T_ROOT_DEV, "/dev/vda") + field(T_ROOT_FSTYPE, "xfs"),
        field(T_OVERLAY, "tmpfs"),  # a writable layer without a root
        field(T_ROOT_DEV, "/dev/vda") + field(T_OVERLAY, "/tmp/x"),
        u64(T_REALTIME_NS, 0),
        u32(T_REALTIME_NS, 5),
        u64(T_REALTIME_NS, 1) + u64(T_REALTIME_NS, 2),
        field(T_ENTROPY, b"\1" * 31),
        field(T_ENTROPY, b"\1" * 257),
        field(T_MACHINE_ID, good_id.upper()),
        field(T_MACHINE_ID, "0" * 32),
        field(T_MACHINE_ID, good_id[:31]),
        u32(0x8000 | 69, 1),  # an unknown critical field
    ]
    for i, payload in enumerate(bad, start=1):
        c.send(frame(SETUP, i, payload=payload))
        kind, msg = answer(c, i)
        assert kind in (E_BAD_REQUEST, E_UNSUPPORTED) and msg, (payload, kind, msg)
        assert kind != E_UNSUPPORTED or i == len(bad), (payload, msg)
    # Truncated field: the frame is refused, the connection stays usable.
    c.send(frame(SETUP, 99, payload=struct.pack("<HI", T_HOSTNAME, 10) + b"abc"))
    assert answer(c, 99)[0] == E_BAD_REQUEST
    # Unknown non-critical fields are skipped; nothing above changed the name.
    c.send(frame(SETUP, 100, payload=field(69, "future") + field(T_HOSTNAME, "still-ok")))
    assert answer(c, 100) == (0, None)
    assert tool(agent.sock, "wait-ready").stdout == b"ready still-ok\n"


# ---- one VM in base mode --------------------------------------------------------------

def test_vm_base_mode_then_setup_mounts_the_root(tmp_path):
    from test_agent_vm import BOOT_TIMEOUT, CMDLINE, KERNEL, build_root_image, require_vm_parts
    require_vm_parts()
    tmp = str(tmp_path)
    root_img, rw_img = os.path.join(tmp, "root.img"), os.path.join(tmp, "rw.img")
    build_root_image(tmp, root_img)
    subprocess.run(["truncate", "-s", "64M", rw_img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", rw_img], check=True)
    sock, console = os.path.join(tmp, "v.sock"), os.path.join(tmp, "console.log")
    with open(CMDLINE) as f:
        base = f.read().strip()
    t0 = time.time()
    # No msb.root: the base mode a snapshot is taken in.
    vmm = subprocess.Popen(
        [os.path.join(BIN, "msb-vmm"), "--kernel", KERNEL,
         "--initrd", os.path.join(BUILD, "initramfs.cpio"), "--base-cmdline", base,
         "--cmdline", "msb.hostname=base", "--disk", root_img + ",ro", "--disk", rw_img,
         "--disk", "none",  # /dev/vdc: an empty slot, as in a base snapshot
         "--vsock", sock, "--console", console, "--memory", "128"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + BOOT_TIMEOUT
        while not os.path.exists(sock) and vmm.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        r = tool(sock, "wait-ready", "--timeout", str(max(1, deadline - time.time())),
                 timeout=BOOT_TIMEOUT + 30)
        with open(console, errors="replace") as f:
            log = f.read()
        assert r.returncode == 0, (r.stderr, log[-3000:])
        assert r.stdout == b"ready base\n"
        # Base mode is no failure: no error on the console, none for the host.
        assert "msb-init: error" not in log, log[-3000:]
        ready = time.time()
        print(f"base VM ready after {ready - t0:.1f} s")
        # The initramfs holds msb-init only: nothing to run yet.
        r = tool(sock, "--connect-timeout", str(300 * SCALE), "exec", "--no-stdin", "--",
                 "sh", "-c", "true", timeout=600)
        assert r.returncode == 3 and b"sh" in r.stderr, r

        # An empty slot never gets a size: a bounded wait, then a clear error.
        t1 = time.time()
        r = tool(sock, "setup", "--root", "/dev/vdc", timeout=600)
        assert r.returncode == 3 and b"/dev/vdc still had no medium" in r.stderr, r
        assert time.time() - t1 >= 10, "msb-init did not wait for the disk"
        # A mount error says what failed, with the errno; nothing stays mounted.
        r = tool(sock, "setup", "--root", "/dev/vda", "--root-fstype", "erofs", timeout=600)
        assert r.returncode == 7, r  # kind guest: the guest reported a failure
        assert b"mounting the root image /dev/vda (erofs) read-only" in r.stderr, r

        machine_id = os.urandom(16).hex()
        past = 1_000_000_000  # 2001-09-09: far from both the host's clock and boot's
        r = tool(sock, "--connect-timeout", str(300 * SCALE), "setup", "--root", "/dev/vda",
                 "--root-fstype", "ext4", "--overlay", "/dev/vdb", "--hostname", "sandbox-1",
                 "--clock", str(past * 10**9), "--entropy", "64", "--machine-id", machine_id,
                 "--timeout", str(600 * SCALE), timeout=700)
        assert r.returncode == 0, r.stderr
        print(f"SETUP with the root took {time.time() - ready:.1f} s")
        r = tool(sock, "--connect-timeout", str(300 * SCALE), "exec", "--no-stdin", "--",
                 "sh", "-c", "cat /proc/mounts; echo ---; hostname; cat /etc/machine-id; "
                 "date +%s; echo ---; echo kept > /root/kept", timeout=600)
        assert r.returncode == 0, r.stderr
        mounts, ident, _ = r.stdout.decode().split("---\n")
        assert any(l.split()[1] == "/" and l.split()[2] == "overlay"
                   for l in mounts.splitlines()), mounts
        for m in ("/proc", "/sys", "/dev", "/dev/pts"):
            assert f" {m} " in mounts, (m, mounts)
        host, mid, secs = ident.split()
        assert (host, mid) == ("sandbox-1", machine_id)
        assert past <= int(secs) < past + 3600, secs  # this slow guest: minutes at most

        # A resync any time: the clock back to now, a new name.  The root only once.
        r = tool(sock, "setup", "--clock", "now", "--hostname", "sandbox-2", timeout=600)
        assert r.returncode == 0, r.stderr
        r = tool(sock, "exec", "--no-stdin", "--", "sh", "-c", "hostname; date +%s",
                 timeout=600)
        host, secs = r.stdout.decode().split()
        assert host == "sandbox-2" and abs(int(secs) - time.time()) < 600, r.stdout
        r = tool(sock, "setup", "--root", "/dev/vda", timeout=600)
        assert r.returncode == 2 and b"the root is already mounted" in r.stderr, r

        # Power-off unmounts the layers SETUP mounted: the writable disk is clean.
        r = tool(sock, "shutdown", "--timeout", str(120 * SCALE), timeout=600)
        assert r.returncode == 0, r.stderr
        assert vmm.wait(timeout=300 * SCALE) == 0
        fsck = subprocess.run(["e2fsck", "-fn", rw_img], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        dump = subprocess.run(["debugfs", "-R", "cat /upper/root/kept", rw_img],
                              capture_output=True, text=True)
        assert dump.stdout == "kept\n", dump
    finally:
        if vmm.poll() is None:
            vmm.kill()
            vmm.wait()
