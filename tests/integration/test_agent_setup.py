"""SETUP (docs/agent-protocol.md): the request that sets a guest up after a
snapshot restore.  Host mode (`msb-init --serve-unix`) checks what must never
touch the host.  SETUP in a real guest (base mode, then the root mounted, the
clock, the hostname, the machine id, entropy) is test_agent_vm.py's first test,
on that module's VM."""

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
