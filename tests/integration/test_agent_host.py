"""The agent protocol against the real msb-init, run as a host process
(`msb-init --serve-unix PATH`), driven through the real msb-agent tool and
through a small independent Python implementation of the wire format
(docs/agent-protocol.md), which also sends hostile frames."""

import hashlib
import os
import random
import signal
import socket
import struct
import subprocess
import time

import pytest

BUILD = os.environ.get("MSB_BUILD_DIR", os.path.join(os.getcwd(), "build/release"))
BIN = os.path.join(BUILD, "bin")
SCALE = float(os.environ.get("MSB_TEST_TIMEOUT_SCALE", "1"))

# ---- the wire format, written from the spec ------------------------------------------
HELLO, READY, ERROR, OK = 0x01, 0x02, 0x03, 0x04
EXEC, STARTED, DATA, EOF, EXIT, WINDOW, SIGNAL, SHUTDOWN = (
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x20)
T_VERSION, T_NAME, T_HOSTNAME = 1, 2, 3
T_ERR_KIND, T_ERR_ERRNO, T_ERR_MSG = 10, 11, 12
T_ARGV, T_ENV, T_CWD, T_TIMEOUT_MS, T_STDIN = 20, 21, 22, 23, 24
T_PID, T_EXIT_CODE, T_SIGNAL, T_TIMED_OUT, T_INCREMENT = 30, 40, 41, 42, 50
E_BAD_REQUEST, E_UNSUPPORTED, E_NOT_FOUND, E_EXISTS, E_LIMIT = 2, 3, 4, 5, 7
INITIAL_WINDOW = 256 << 10
MAX_PAYLOAD = 1 << 20


def field(tag, value):
    if isinstance(value, str):
        value = value.encode()
    return struct.pack("<HI", tag, len(value)) + value


def u32(tag, v):
    return field(tag, struct.pack("<I", v))


def u64(tag, v):
    return field(tag, struct.pack("<Q", v))


def frame(type_, id_=0, stream=0, payload=b"", flags=0):
    return struct.pack("<IHHII", len(payload), type_, flags, id_, stream) + payload


def parse_fields(payload):
    out, i = {}, 0
    while i < len(payload):
        tag, n = struct.unpack_from("<HI", payload, i)
        out.setdefault(tag, []).append(payload[i + 6:i + 6 + n])
        i += 6 + n
    assert i == len(payload), "fields overrun the payload"
    return out


def field_u32(fields, tag):
    return struct.unpack("<I", fields[tag][0])[0]


def vsock_connect(path, port, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout * SCALE)
    s.connect(path)
    s.sendall(b"CONNECT %d\n" % port)
    line = b""
    while not line.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            raise ConnectionError("closed during CONNECT")
        line += c
    assert line.startswith(b"OK "), line
    return s


class Conn:
    """One agent connection; frames are read whole."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    @classmethod
    def open(cls, path, hello=True, timeout=10):
        c = cls(vsock_connect(path, 1024, timeout))
        if hello:
            c.send(frame(HELLO, payload=u32(T_VERSION, 1) + field(T_NAME, "pytest")))
            h = c.recv(timeout)
            assert h[0] == HELLO, h
            c.hello = parse_fields(h[3])
        return c

    def send(self, data):
        self.s.sendall(data)

    def recv(self, timeout=10):
        self.s.settimeout(timeout * SCALE)
        while len(self.buf) < 16 or len(self.buf) < 16 + struct.unpack_from("<I", self.buf)[0]:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("agent closed the connection")
            self.buf += chunk
        n, t, _flags, id_, stream = struct.unpack_from("<IHHII", self.buf)
        payload, self.buf = self.buf[16:16 + n], self.buf[16 + n:]
        return t, id_, stream, payload

    def exec(self, id_, argv, env=(), cwd=None, timeout_ms=0, stdin=False):
        p = b"".join(field(T_ARGV, a) for a in argv)
        p += b"".join(field(T_ENV, e) for e in env)
        if cwd:
            p += field(T_CWD, cwd)
        if timeout_ms:
            p += u64(T_TIMEOUT_MS, timeout_ms)
        if stdin:
            p += u32(T_STDIN, 1)
        self.send(frame(EXEC, id_, payload=p))

    def run_all(self, ids, window=True, timeout=30):
        """Collect output and exits of the commands `ids`; grant credit as we go."""
        out = {i: [b"", b"", b""] for i in ids}
        exits = {}
        errors = {}
        while len(exits) + len(errors) < len(ids):
            t, id_, stream, payload = self.recv(timeout)
            if t == DATA:
                out[id_][stream] += payload
                if window:
                    self.send(frame(WINDOW, id_, stream, u32(T_INCREMENT, len(payload))))
            elif t == EXIT:
                exits[id_] = parse_fields(payload)
            elif t == ERROR and id_ in ids:
                errors[id_] = parse_fields(payload)
        return out, exits, errors


# ---- fixtures --------------------------------------------------------------------------
@pytest.fixture
def agent(tmp_path):
    path = str(tmp_path / "v.sock")
    proc = subprocess.Popen([os.path.join(BIN, "msb-init"), "--serve-unix", path],
                            stderr=subprocess.PIPE)
    deadline = time.time() + 10 * SCALE
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "msb-init did not create its socket"
        time.sleep(0.01)
    proc.path = path
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    log = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    # The sanitizer builds report here; any report is a failure.
    assert "Sanitizer" not in log and "runtime error" not in log, log


def agent_tool(agent, *args, stdin=None, timeout=60):
    return subprocess.run([os.path.join(BIN, "msb-agent"), "--vsock", agent.path, *args],
                          input=stdin, capture_output=True, timeout=timeout * SCALE)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def procs_with(marker):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    with open(f"/proc/{pid}/stat") as g:
                        state = g.read().rsplit(")", 1)[1].split()[0]
                    if state not in ("Z", "X"):
                        found.append(int(pid))
        except OSError:
            pass
    return found


# ---- through the msb-agent tool ------------------------------------------------------------
def test_exit_codes_and_separate_streams(agent):
    r = agent_tool(agent, "exec", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert agent_tool(agent, "exec", "--", "true").returncode == 0
    assert agent_tool(agent, "exec", "--", "sh", "-c", "exit 255").returncode == 255


def test_signal_is_128_plus_signal(agent):
    r = agent_tool(agent, "exec", "--", "sh", "-c", "kill -KILL $$")
    assert r.returncode == 128 + 9
    r = agent_tool(agent, "exec", "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + 15


def test_stdin_is_forwarded_to_eof(agent):
    data = random.Random(1).randbytes(3 << 20)
    r = agent_tool(agent, "exec", "--", "sha256sum", stdin=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    r = agent_tool(agent, "exec", "--", "cat", stdin=b"")
    assert (r.returncode, r.stdout) == (0, b"")


def test_64_mib_stream_without_loss(agent):
    # stdout and stderr at once: the data, and its digest computed in the "guest".
    t0 = time.time()
    r = agent_tool(agent, "exec", "--no-stdin", "--", "sh", "-c",
                   "head -c 67108864 /dev/urandom | tee /dev/stderr | sha256sum",
                   timeout=120)
    secs = time.time() - t0
    assert r.returncode == 0
    assert len(r.stderr) == 64 << 20
    assert r.stdout.split()[0].decode() == hashlib.sha256(r.stderr).hexdigest()
    print(f"64 MiB through the agent in {secs:.2f} s ({64 / secs:.0f} MiB/s)")


def test_env_and_cwd(agent, tmp_path):
    r = agent_tool(agent, "exec", "--env", "FOO=bar baz", "--env", "HOME=/nowhere",
                   "--cwd", str(tmp_path), "--", "sh", "-c", 'echo "$FOO|$HOME|$PATH"; pwd')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "bar baz|/nowhere|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert lines[1] == str(tmp_path)
    # The agent's own environment does not leak into commands.
    r = agent_tool(agent, "exec", "--", "env")
    assert sorted(r.stdout.decode().split()) == sorted(
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"])


def test_missing_command_and_cwd_are_errors(agent):
    r = agent_tool(agent, "exec", "--", "no-such-command-xyz")
    assert r.returncode == 3, r.stderr
    assert b"no-such-command-xyz" in r.stderr and b"No such file" in r.stderr
    r = agent_tool(agent, "exec", "--cwd", "/no/such/dir", "--", "true")
    assert r.returncode == 3 and b"/no/such/dir" in r.stderr


def test_timeout_kills_the_whole_tree(agent):
    marker = "%d.%d" % (os.getpid(), random.randrange(1 << 30))
    t0 = time.time()
    r = agent_tool(agent, "exec", "--timeout", "1", "--", "sh", "-c",
                   f"sleep 100{marker} & setsid sleep 200{marker} & sleep 300{marker}; echo never")
    took = time.time() - t0
    assert r.returncode == 128 + 9, r.stderr
    assert b"timed out" in r.stderr
    assert r.stdout == b""
    assert took < 10 * SCALE
    time.sleep(0.2)
    assert procs_with(marker) == []


def test_wait_ready_and_shutdown(agent):
    r = agent_tool(agent, "wait-ready", "--timeout", "5")
    assert r.returncode == 0 and r.stdout.startswith(b"ready"), r.stderr
    marker = "%d.%d" % (os.getpid(), random.randrange(1 << 30))
    c = Conn.open(agent.path)
    c.exec(1, ["sleep", f"400{marker}"])
    assert c.recv()[0] == STARTED
    r = agent_tool(agent, "shutdown")
    assert r.returncode == 0, r.stderr
    assert agent.wait(10 * SCALE) == 0
    assert procs_with(marker) == []
    assert agent_tool(agent, "wait-ready", "--timeout", "0.3").returncode == 5


def test_power_port_shuts_down(agent):
    s = vsock_connect(agent.path, 1025)
    s.close()
    assert agent.wait(10 * SCALE) == 0


def test_ready_is_announced_to_host_port_1023(tmp_path):
    path = str(tmp_path / "r.sock")
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path + "_1023")
    lst.listen(1)
    lst.settimeout(10 * SCALE)
    proc = subprocess.Popen([os.path.join(BIN, "msb-init"), "--serve-unix", path])
    try:
        s, _ = lst.accept()
        c = Conn(s)
        t, id_, _, payload = c.recv()
        assert (t, id_) == (READY, 0)
        f = parse_fields(payload)
        assert field_u32(f, T_VERSION) == 1
        assert f[T_NAME][0].startswith(b"msb-init")
    finally:
        proc.terminate()
        proc.wait(10)


# ---- through the Python implementation -------------------------------------------------------
def test_hello_reports_version_and_names(agent):
    c = Conn.open(agent.path)
    assert field_u32(c.hello, T_VERSION) == 1
    assert c.hello[T_HOSTNAME][0] == socket.gethostname().encode()


def test_concurrent_commands_on_one_connection(agent):
    c = Conn.open(agent.path)
    ids = list(range(1, 9))
    t0 = time.time()
    for i in ids:
        c.exec(i, ["sh", "-c", f"sleep 1; echo {i}; echo e{i} >&2; exit {i}"])
    out, exits, errors = c.run_all(ids)
    took = time.time() - t0
    assert not errors
    for i in ids:
        assert out[i][1] == b"%d\n" % i and out[i][2] == b"e%d\n" % i
        assert field_u32(exits[i], T_EXIT_CODE) == i
    assert took < 4 * SCALE, f"8 one-second commands took {took:.1f} s: not concurrent"


def test_output_waits_for_credit(agent):
    """Back-pressure: without WINDOW frames exactly the initial window arrives,
    the command blocks, and msb-init's memory stays small."""
    c = Conn.open(agent.path)
    c.exec(1, ["sh", "-c", "head -c 33554432 /dev/zero; echo done >&2"])
    got, deadline = 0, time.time() + 1.5 * SCALE
    while time.time() < deadline:
        try:
            t, _, stream, payload = c.recv(timeout=0.3)
        except socket.timeout:
            continue
        assert t in (STARTED, DATA), t
        got += len(payload) if t == DATA else 0
    assert got == INITIAL_WINDOW
    assert rss_kib(agent.pid) < 16 * 1024
    # Now grant credit and take everything.
    c.send(frame(WINDOW, 1, 1, u32(T_INCREMENT, INITIAL_WINDOW)))
    out, exits, _ = c.run_all([1])
    assert got + len(out[1][1]) == 32 << 20
    assert out[1][2] == b"done\n"
    assert field_u32(exits[1], T_EXIT_CODE) == 0


def test_stdin_respects_the_window_and_signal_works(agent):
    c = Conn.open(agent.path)
    c.exec(1, ["sleep", "30"], stdin=True)  # never reads its stdin
    assert c.recv()[0] == STARTED
    # More than the window at once: refused, not buffered.
    c.send(frame(DATA, 1, 0, b"x" * (INITIAL_WINDOW + 1)))
    t, id_, _, payload = c.recv()
    assert (t, id_) == (ERROR, 1) and b"window" in parse_fields(payload)[T_ERR_MSG][0]
    c.send(frame(SIGNAL, 1, payload=u32(T_SIGNAL, 15)))
    out, exits, _ = c.run_all([1])
    assert field_u32(exits[1], T_SIGNAL) == 15


def test_duplicate_id_and_unknown_messages(agent):
    c = Conn.open(agent.path)
    c.exec(5, ["sleep", "0.5"])
    assert c.recv()[0] == STARTED
    c.exec(5, ["true"])
    t, id_, _, p = c.recv()
    assert (t, id_, field_u32(parse_fields(p), T_ERR_KIND)) == (ERROR, 5, E_EXISTS)
    c.send(frame(0x7777, 9, payload=b"whatever"))
    t, id_, _, p = c.recv()
    assert (t, id_, field_u32(parse_fields(p), T_ERR_KIND)) == (ERROR, 9, E_UNSUPPORTED)
    # Unknown non-critical fields are skipped, critical ones refused.
    c.send(frame(EXEC, 6, payload=field(T_ARGV, "true") + field(4000, "future")))
    c.send(frame(EXEC, 7, payload=field(T_ARGV, "true") + field(0x8000 | 4000, "x")))
    out, exits, errors = c.run_all([5, 6, 7])
    assert set(exits) == {5, 6} and set(errors) == {7}
    assert field_u32(errors[7], T_ERR_KIND) == E_UNSUPPORTED


def test_requests_before_hello_and_bad_version(agent):
    c = Conn.open(agent.path, hello=False)
    c.exec(1, ["true"])
    t, id_, _, p = c.recv()
    assert (t, id_) == (ERROR, 1) and b"HELLO" in parse_fields(p)[T_ERR_MSG][0]
    c.send(frame(HELLO, payload=u32(T_VERSION, 99)))
    t, _, _, p = c.recv()
    assert t == ERROR and field_u32(parse_fields(p), T_ERR_KIND) == E_UNSUPPORTED
    with pytest.raises(EOFError):
        c.recv()


def test_one_connection_over_the_cap_is_told_the_guest_is_busy(agent):
    conns = [Conn.open(agent.path) for _ in range(32)]
    over = Conn.open(agent.path, hello=False)
    over.send(frame(HELLO, payload=u32(T_VERSION, 1) + field(T_NAME, "pytest")))
    t, id_, _, p = over.recv()
    f = parse_fields(p)
    assert (t, id_, field_u32(f, T_ERR_KIND)) == (ERROR, 0, E_LIMIT)
    assert b"the guest is busy" in f[T_ERR_MSG][0] and b"32 connections" in f[T_ERR_MSG][0]
    with pytest.raises(EOFError):
        over.recv()
    # The client tool fails at once with the message (kind state: exit 4), no retrying.
    t0 = time.time()
    r = agent_tool(agent, "--connect-timeout", "30", "exec", "--", "true")
    assert r.returncode == 4, r.stderr
    assert b"the guest is busy" in r.stderr
    assert time.time() - t0 < 10 * SCALE
    # A closed one's place is taken at once (its close is seen before a refusal).
    conns.pop().s.close()
    r = agent_tool(agent, "exec", "--", "true")
    assert r.returncode == 0, r.stderr
    for c in conns:
        c.exec(1, ["true"])
        _, exits, errors = c.run_all([1])
        assert field_u32(exits[1], T_EXIT_CODE) == 0 and not errors


def test_hostile_frames_do_not_hurt_the_agent(agent):
    # An oversized length: the stream cannot be resynchronised, so it is closed.
    c = Conn.open(agent.path)
    c.send(struct.pack("<IHHII", MAX_PAYLOAD + 1, EXEC, 0, 1, 0))
    t, id_, _, p = c.recv()
    assert (t, id_) == (ERROR, 0)
    with pytest.raises(EOFError):
        c.recv()
    # Malformed fields in a well-framed EXEC: an error, the connection lives on.
    c = Conn.open(agent.path)
    for bad in (struct.pack("<HI", T_ARGV, 0xFFFFFFFF) + b"ls", b"\x14\x00\x02",
                field(T_ARGV, "l\0s"), field(T_ENV, "NOEQUALS") + field(T_ARGV, "ls"),
                field(T_TIMEOUT_MS, b"\x01")):
        c.send(frame(EXEC, 3, payload=bad))
        t, id_, _, p = c.recv()
        assert (t, id_) == (ERROR, 3), (bad, t)
    c.send(frame(WINDOW, 3, 1, b"\x01"))  # truncated field
    assert c.recv()[0] == ERROR
    # Random frames with valid lengths, then the agent still runs commands.
    rnd = random.Random(7)
    junk = b""
    for _ in range(300):
        t = rnd.choice([HELLO, ERROR, OK, EXEC, DATA, EOF, EXIT, WINDOW, SIGNAL, 0x99,
                        rnd.randrange(65536)])
        if t == SHUTDOWN:
            continue
        junk += frame(t, rnd.randrange(4), rnd.randrange(4), rnd.randbytes(rnd.randrange(40)))
    c.send(junk)
    c2 = Conn.open(agent.path)
    c2.exec(1, ["echo", "alive"])
    out, exits, _ = c2.run_all([1])
    assert out[1][1] == b"alive\n"
    # A peer that vanishes mid-frame is fine too.
    c3 = Conn.open(agent.path)
    c3.send(frame(EXEC, 1, payload=field(T_ARGV, "true"))[:10])
    c3.s.close()
    assert agent_tool(agent, "exec", "--", "true").returncode == 0
    assert agent.poll() is None


def test_closing_the_connection_kills_its_commands(agent):
    marker = "%d.%d" % (os.getpid(), random.randrange(1 << 30))
    c = Conn.open(agent.path)
    c.exec(1, ["sh", "-c", f"sleep 500{marker}; true"])
    assert c.recv()[0] == STARTED
    assert procs_with(marker)
    c.s.close()
    deadline = time.time() + 5 * SCALE
    while procs_with(marker) and time.time() < deadline:
        time.sleep(0.05)
    assert procs_with(marker) == []
