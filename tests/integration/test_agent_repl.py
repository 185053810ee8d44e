"""Persistent REPLs (REPL_RUN) and PTY commands (EXEC with PTY, RESIZE) against
the real msb-init in host mode (`msb-init --serve-unix`), with this host's
python3 and node standing in for an image's, through the wire format written
from docs/agent-protocol.md and through msb-agent."""

import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from test_agent_host import (BIN, DATA, EOF, ERROR, EXEC, EXIT, SCALE, WINDOW, Conn, agent_tool,
                             field, field_u32, frame, parse_fields, u32, u64)
from test_agent_host import agent as host_agent

assert host_agent  # the fixture, used below


def wait_accepting(path):
    """msb-init's socket file exists from bind(), before listen(): wait for the latter."""
    deadline = time.time() + 10 * SCALE
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return
        except (ConnectionRefusedError, FileNotFoundError):
            assert time.time() < deadline, "msb-init does not accept connections"
            time.sleep(0.01)
        finally:
            s.close()


@pytest.fixture
def agent(host_agent):
    wait_accepting(host_agent.path)
    return host_agent

REPL_RUN, REPL_RESULT, RESIZE = 0x50, 0x51, 0x17
T_ENV, T_CWD, T_TIMEOUT_MS, T_STDIN = 21, 22, 23, 24
T_LANGUAGE, T_CODE, T_STATUS, T_MESSAGE, T_RESTARTED = 90, 91, 92, 93, 94
T_PTY, T_ROWS, T_COLS, T_TERM = 0x8000 | 110, 111, 112, 113
OK, ERR, TIMEOUT = 0, 1, 2

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


class Repl:
    """REPL runs on one connection; ids count up."""

    def __init__(self, path):
        self.c = Conn.open(path)
        self.next_id = 1

    def send(self, lang, code, timeout_ms=0, id_=None, extra=b""):
        id_ = id_ or self.next_id
        self.next_id = max(self.next_id, id_) + 1
        p = field(T_LANGUAGE, lang) + field(T_CODE, code)
        if timeout_ms:
            p += u64(T_TIMEOUT_MS, timeout_ms)
        self.c.send(frame(REPL_RUN, id_, payload=p + extra))
        return id_

    def wait(self, id_, timeout=60):
        """stdout, stderr, result fields (or ('error', fields) when refused)."""
        out, err = b"", b""
        while True:
            t, i, stream, payload = self.c.recv(timeout)
            if i != id_:
                continue
            if t == DATA:
                if stream == 1:
                    out += payload
                elif stream == 2:
                    err += payload
            elif t == REPL_RESULT:
                return out.decode(), err.decode(), parse_fields(payload)
            elif t == ERROR:
                return None, None, ("error", parse_fields(payload))

    def run(self, lang, code, timeout_ms=0, timeout=60):
        return self.wait(self.send(lang, code, timeout_ms), timeout)


def status(res):
    return field_u32(res, T_STATUS)


def message(res):
    return res[T_MESSAGE][0].decode() if T_MESSAGE in res else ""


def restarted(res):
    return T_RESTARTED in res and field_u32(res, T_RESTARTED) == 1


def interpreter_pids(marker):
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker in f.read():
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


# ---- python -------------------------------------------------------------------------------
def test_python_state_persists_and_expression_value_is_printed(agent):
    r = Repl(agent.path)
    out, err, res = r.run("python", "x = 20\ndef f(a):\n    return a * 2\n")
    assert (out, err, status(res), restarted(res)) == ("", "", OK, False)
    out, err, res = r.run("python", "print('x is', x)\nf(x) + 2")
    assert (out, err, status(res)) == ("x is 20\n42\n", "", OK)
    # A statement as the last line prints nothing; None is not echoed either.
    out, _, res = r.run("python", "y = f(1)\nNone")
    assert (out, status(res)) == ("", OK)
    # Another connection sees the same interpreter (one per language per guest).
    out, _, res = Repl(agent.path).run("python", "y")
    assert (out, status(res)) == ("2\n", OK)


def test_python_streams_are_separate_and_complete(agent):
    r = Repl(agent.path)
    code = ("import sys\n"
            "for i in range(2000):\n"
            "    print('out', i)\n"
            "    print('err', i, file=sys.stderr)\n"
            "_ = sys.stderr.write('the very last stderr bytes')\n")
    for _ in range(3):
        out, err, res = r.run("python", code)
        assert status(res) == OK
        assert out == "".join(f"out {i}\n" for i in range(2000))
        assert err == "".join(f"err {i}\n" for i in range(2000)) + "the very last stderr bytes"


def test_python_output_streams_while_the_run_goes_on(agent):
    r = Repl(agent.path)
    id_ = r.send("python", "import time\nprint('early', flush=True)\ntime.sleep(3)\nprint('late')")
    t0 = time.time()
    early = b""
    while early != b"early\n":
        t, i, stream, payload = r.c.recv(30)
        assert (t, i, stream) == (DATA, id_, 1)
        early += payload
    assert time.time() - t0 < 2.5 * SCALE, "output waited for the end of the run"
    out, _, res = r.wait(id_)
    assert (out, status(res)) == ("late\n", OK)


def test_python_exception_is_an_error_with_its_text(agent):
    r = Repl(agent.path)
    out, err, res = r.run("python", "a = 1\nprint('before')\n1 / 0\n")
    assert status(res) == ERR
    assert message(res) == "ZeroDivisionError: division by zero"
    assert out == "before\n"
    assert "Traceback" in err and "1 / 0" in err and "ZeroDivisionError" in err
    assert "_msb_repl" not in err, "the driver's own frame leaks into the traceback"
    out, err, res = r.run("python", "def broken(:\n")
    assert status(res) == ERR and "SyntaxError: invalid syntax" in message(res)
    # State survives errors.
    out, _, res = r.run("python", "a")
    assert (out, status(res)) == ("1\n", OK)


def test_python_timeout_is_an_error_and_the_repl_keeps_working(agent):
    r = Repl(agent.path)
    r.run("python", "kept = 'yes'")
    t0 = time.time()
    out, err, res = r.run("python", "print('start', flush=True)\nwhile True:\n    pass\n",
                          timeout_ms=500)
    assert status(res) == TIMEOUT
    assert message(res) == "timed out after 500 ms"
    assert out == "start\n" and "KeyboardInterrupt" in err
    assert time.time() - t0 < 10 * SCALE
    # Interrupted, not restarted: the state is still there.
    out, _, res = r.run("python", "kept")
    assert (out, status(res), restarted(res)) == ("'yes'\n", OK, False)


def test_python_that_ignores_the_interrupt_is_restarted(agent):
    r = Repl(agent.path)
    r.run("python", "lost = 1")
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n"
    out, err, res = r.run("python", code, timeout_ms=300)
    assert status(res) == TIMEOUT
    assert "timed out after 300 ms" in message(res) and "fresh" in message(res)
    out, err, res = r.run("python", "'lost' in globals()")
    assert (out, status(res), restarted(res)) == ("False\n", OK, True)


def test_python_killed_interpreter_is_restarted_and_says_so(agent):
    r = Repl(agent.path)
    out, _, res = r.run("python", "import os\nos.getpid()")
    pid = int(out)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    out, err, res = r.run("python", "import os\nos.getpid()")
    assert status(res) == OK and restarted(res)
    assert int(out) != pid
    # Dying during a run is an error of that run.
    out, err, res = r.run("python", "print('bye', flush=True)\nimport os\nos._exit(3)")
    assert status(res) == ERR and out == "bye\n"
    assert "exited with status 3" in message(res)
    out, _, res = r.run("python", "1 + 1")
    assert (out, status(res), restarted(res)) == ("2\n", OK, True)


def test_concurrent_runs_of_one_language_are_serialized(agent):
    a, b = Repl(agent.path), Repl(agent.path)
    a.run("python", "import time\nlog = []")
    ia = a.send("python", "log.append('a1'); time.sleep(1); log.append('a2')")
    time.sleep(0.2)
    ib = b.send("python", "log.append('b')\nlog")
    _, _, ra = a.wait(ia)
    out, _, rb = b.wait(ib)
    assert status(ra) == OK and status(rb) == OK
    assert out == "['a1', 'a2', 'b']\n"


def test_repl_cwd_and_env_apply_when_the_interpreter_starts(agent, tmp_path):
    r = Repl(agent.path)
    extra = field(T_CWD, str(tmp_path)) + field(T_ENV, "MSB_REPL_TEST=hello")
    id_ = r.send("python", "import os\nprint(os.getcwd(), os.environ['MSB_REPL_TEST'])",
                 extra=extra)
    out, _, res = r.wait(id_)
    assert (out, status(res)) == (f"{tmp_path} hello\n", OK)


def test_bad_requests_are_refused(agent):
    r = Repl(agent.path)
    _, _, res = r.run("cobol", "DISPLAY 'HI'")
    assert res[0] == "error" and b"unknown language 'cobol'" in res[1][12][0]
    r.c.send(frame(REPL_RUN, 50, payload=field(T_LANGUAGE, "python")))
    t, i, _, p = r.c.recv()
    assert (t, i) == (ERROR, 50) and b"without code" in parse_fields(p)[12][0]
    r.c.send(frame(REPL_RUN, 0, payload=field(T_LANGUAGE, "python") + field(T_CODE, "1")))
    t, i, _, p = r.c.recv()
    assert (t, i) == (ERROR, 0)
    # A critical field it does not know: refused, not silently ignored.
    r.c.send(frame(REPL_RUN, 51, payload=field(T_LANGUAGE, "python") + field(T_CODE, "1") +
                   field(0x8000 | 99, "x")))
    t, i, _, p = r.c.recv()
    assert (t, i, field_u32(parse_fields(p), 10)) == (ERROR, 51, 3)
    # Still serving.
    out, _, res = r.run("python", "6 * 7")
    assert (out, status(res)) == ("42\n", OK)


def test_missing_interpreter_is_a_clear_error(tmp_path):
    path = str(tmp_path / "v.sock")
    env = {"PATH": "/nonexistent"}
    proc = subprocess.Popen([os.path.join(BIN, "msb-init"), "--serve-unix", path], env=env,
                            stderr=subprocess.PIPE)
    try:
        wait_accepting(path)
        r = Repl(path)
        # The command's PATH comes from the agent's default unless ENV says otherwise.
        id_ = r.send("python", "1", extra=field(T_ENV, "PATH=/nonexistent"))
        _, _, res = r.wait(id_)
        assert res[0] == "error"
        assert field_u32(res[1], 10) == 4  # not_found
        assert b"the image has no python3 (nor python) on its PATH" in res[1][12][0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        proc.stderr.close()


def test_closing_the_connection_stops_its_run(agent):
    r = Repl(agent.path)
    r.send("python", "while True:\n    pass\n")
    time.sleep(0.5)
    r.c.s.close()
    out, _, res = Repl(agent.path).run("python", "'next'", timeout=30)
    assert (out, status(res)) == ("'next'\n", OK)


# ---- node ---------------------------------------------------------------------------------
@needs_node
def test_node_state_values_promises_and_errors(agent):
    r = Repl(agent.path)
    out, err, res = r.run("node", "var a = 40; let b = 2; function add(x, y) { return x + y }")
    assert (out, err, status(res)) == ("", "", OK)
    out, err, res = r.run("node", "console.log('sum'); console.error('to stderr'); add(a, b)")
    assert (out, err, status(res)) == ("sum\n42\n", "to stderr\n", OK)
    out, _, res = r.run("node", "new Promise(r => setTimeout(() => r({v: b}), 100))")
    assert (out, status(res)) == ("{ v: 2 }\n", OK)
    out, err, res = r.run("node", "null.x")
    assert status(res) == ERR and message(res).startswith("TypeError: Cannot read properties")
    assert "TypeError" in err
    out, _, res = r.run("node", "Promise.reject(new RangeError('nope'))")
    assert (status(res), message(res)) == (ERR, "RangeError: nope")
    out, _, res = r.run("node", "typeof require('os').hostname")
    assert (out, status(res)) == ("'function'\n", OK)


@needs_node
def test_node_top_level_await_keeps_state(agent):
    r = Repl(agent.path)
    out, err, res = r.run("node", "let a = await Promise.resolve(42)")
    assert (out, err, status(res)) == ("", "", OK)
    out, _, res = r.run("node", "await Promise.resolve(42)")
    assert (out, status(res)) == ("42\n", OK)
    out, _, res = r.run("node", "const t = await new Promise(r => setTimeout(() => r(1), 10)); t")
    assert (out, status(res)) == ("1\n", OK)
    out, _, res = r.run("node", "var late = await new Promise(r => setTimeout(() => r(a), 10))")
    assert status(res) == OK
    out, _, res = r.run("node", "a + t + late")  # no await: the plain path sees the same globals
    assert (out, status(res)) == ("85\n", OK)
    out, err, res = r.run("node", "await Promise.reject(new RangeError('nope'))")
    assert (status(res), message(res)) == (ERR, "RangeError: nope")
    assert "RangeError: nope" in err
    out, _, res = r.run("node", "await missing")
    assert status(res) == ERR and message(res).startswith("ReferenceError: missing")
    # a timer that throws after its run ended is not blamed on the next run
    out, _, res = r.run("node", "await 0; setTimeout(() => { throw new Error('late') }, 5); 'set'")
    assert (out, status(res)) == ("'set'\n", OK)
    out, err, res = r.run("node", "await new Promise(r => setTimeout(() => r('next'), 100))")
    assert (out, status(res)) == ("'next'\n", OK)


@needs_node
def test_node_streams_are_complete_including_late_stderr(agent):
    r = Repl(agent.path)
    code = ("for (let i = 0; i < 2000; i++) { console.log('out ' + i); console.error('err ' + i) }\n"
            "process.stderr.write('the very last stderr bytes')")
    out, err, res = r.run("node", code)
    assert status(res) == OK
    assert out == "".join(f"out {i}\n" for i in range(2000)) + "true\n"
    assert err == "".join(f"err {i}\n" for i in range(2000)) + "the very last stderr bytes"


@needs_node
def test_node_timeout_restarts_and_reports(agent):
    r = Repl(agent.path)
    r.run("node", "var gone = 1")
    out, err, res = r.run("node", "console.log('spin'); while (true) {}", timeout_ms=500)
    assert status(res) == TIMEOUT and message(res).startswith("timed out after 500 ms")
    assert out == "spin\n"
    out, _, res = r.run("node", "typeof gone")
    assert (out, status(res), restarted(res)) == ("'undefined'\n", OK, True)


@needs_node
def test_python_and_node_run_at_once(agent):
    a, b = Repl(agent.path), Repl(agent.path)
    a.run("python", "0")
    b.run("node", "0")
    t0 = time.time()
    ia = a.send("python", "import time\ntime.sleep(1.5)\n'py'")
    ib = b.send("node", "new Promise(r => setTimeout(() => r('js'), 1500))")
    assert a.wait(ia)[0] == "'py'\n" and b.wait(ib)[0] == "'js'\n"
    assert time.time() - t0 < 2.8 * SCALE


# ---- through msb-agent -------------------------------------------------------------------------
def test_msb_agent_repl_tool(agent):
    r = agent_tool(agent, "repl", "python", "--code", "import sys\nprint('o')\n"
                   "print('e', file=sys.stderr)\nz = 5\nz * 2")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"o\n10\n", b"e\n")
    r = agent_tool(agent, "repl", "python", stdin=b"z\n")
    assert (r.returncode, r.stdout) == (0, b"5\n")
    r = agent_tool(agent, "repl", "python", "--code", "raise ValueError('bad')")
    assert r.returncode == 1 and b"msb-agent: ValueError: bad" in r.stderr
    r = agent_tool(agent, "repl", "python", "--timeout", "0.3", "--code", "while 1: pass")
    assert r.returncode == 5 and b"timed out after 300 ms" in r.stderr


# ---- PTY ---------------------------------------------------------------------------------
def pty_exec(c, id_, argv, rows=24, cols=80, term="xterm-256color", stdin=True):
    p = b"".join(field(20, a) for a in argv) + u32(T_PTY, 1) + u32(T_ROWS, rows)
    p += u32(T_COLS, cols) + field(T_TERM, term)
    if stdin:
        p += u32(T_STDIN, 1)
    c.send(frame(EXEC, id_, payload=p))


def collect(c, id_, until=None, timeout=20):
    """Output of stream 1 until EXIT (or until `until` appears); (output, exit fields)."""
    out = b""
    while True:
        t, i, stream, payload = c.recv(timeout)
        if i != id_:
            continue
        if t == DATA:
            assert stream == 1, "a PTY command has only stream 1"
            out += payload
            c.send(frame(WINDOW, id_, stream, u32(50, len(payload))))
            if until and until in out:
                return out, None
        elif t == EXIT:
            return out, parse_fields(payload)
        elif t == ERROR:
            raise AssertionError(parse_fields(payload))


def test_pty_command_has_a_terminal_its_size_and_term(agent):
    c = Conn.open(agent.path)
    pty_exec(c, 1, ["sh", "-c", "tty; stty size; echo $TERM; test -t 0 && test -t 2 && "
                    "echo all-ttys; exit 7"], rows=33, cols=101, stdin=False)
    out, ex = collect(c, 1)
    lines = out.decode().replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/")
    assert lines[1:] == ["33 101", "xterm-256color", "all-ttys"]
    assert field_u32(ex, 40) == 7


# Handlers write with os.write: print() from a handler that interrupted a
# print() fails with "reentrant call".
PTY_PROGRAM = """
import os, signal, sys
say = lambda text: os.write(1, (text + '\\n').encode())
signal.signal(signal.SIGWINCH, lambda *a: say('winch %d %d' % os.get_terminal_size(0)[::-1]))
signal.signal(signal.SIGINT, lambda *a: say('got-int'))
say('ready')
for line in sys.stdin:
    say('line:' + line.strip())
    if line.strip() == 'quit':
        sys.exit(3)
"""


def test_pty_input_resize_and_ctrl_c(agent):
    c = Conn.open(agent.path)
    pty_exec(c, 2, ["python3", "-c", PTY_PROGRAM])
    collect(c, 2, until=b"ready")
    c.send(frame(DATA, 2, 0, b"hello\n"))
    out, _ = collect(c, 2, until=b"line:hello")
    assert b"hello\r\n" in out, "the terminal echoes input"
    c.send(frame(RESIZE, 2, payload=u32(T_ROWS, 50) + u32(T_COLS, 132)))
    collect(c, 2, until=b"winch 50 132")
    c.send(frame(DATA, 2, 0, b"\x03"))  # Ctrl-C: the terminal makes it SIGINT
    collect(c, 2, until=b"got-int")
    c.send(frame(DATA, 2, 0, b"quit\n"))
    out, ex = collect(c, 2)
    assert field_u32(ex, 40) == 3


def test_resize_errors(agent):
    c = Conn.open(agent.path)
    c.exec(3, ["sleep", "1"])
    c.send(frame(RESIZE, 3, payload=u32(T_ROWS, 10) + u32(T_COLS, 10)))
    t, i, _, p = c.recv()
    while t != ERROR:
        t, i, _, p = c.recv()
    assert i == 3 and b"without a PTY" in parse_fields(p)[12][0]
    c.send(frame(RESIZE, 3, payload=u32(T_ROWS, 0) + u32(T_COLS, 10)))
    t, i, _, p = c.recv()
    assert (t, i) == (ERROR, 3) and b"out of range" in parse_fields(p)[12][0]
    # Bad PTY fields in EXEC are refused before anything runs.
    c.send(frame(EXEC, 4, payload=field(20, "true") + u32(T_PTY, 1) + field(T_TERM, "x;rm")))
    t, i, _, p = c.recv()
    assert (t, i) == (ERROR, 4)


# ---- msb-agent pty with a terminal on the host side ----------------------------------------
def read_until(fd, marker, timeout=20):
    import select
    out = b""
    deadline = time.time() + timeout * SCALE
    while marker not in out:
        left = deadline - time.time()
        assert left > 0, f"no {marker!r} in {out!r}"
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_msb_agent_pty_with_a_host_terminal(agent):
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 90, 0, 0))
    before = termios.tcgetattr(slave)

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    program = "import os\nos.write(1, b'size %d %d\\n' % os.get_terminal_size(0)[::-1])\n" + \
        PTY_PROGRAM
    p = subprocess.Popen([os.path.join(BIN, "msb-agent"), "--vsock", agent.path, "pty", "--",
                          "python3", "-c", program], stdin=slave, stdout=slave, stderr=slave,
                         preexec_fn=controlling_tty, env={**os.environ, "TERM": "vt100"})
    try:
        out = read_until(master, b"ready")
        assert b"size 30 90" in out
        # Raw mode: no echo or line editing on the host side while it runs.
        raw = termios.tcgetattr(slave)
        assert not raw[3] & termios.ECHO and not raw[3] & termios.ICANON
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        read_until(master, b"winch 40 100")
        os.write(master, b"\x03")  # goes to the guest's program, not to msb-agent
        read_until(master, b"got-int")
        os.write(master, b"quit\r")  # Enter in raw mode is CR; the guest's tty makes it NL
        read_until(master, b"line:quit")
        assert p.wait(20 * SCALE) == 3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert termios.tcgetattr(slave) == before, "the terminal was not restored"
    os.close(master)
    os.close(slave)


def test_pty_stdin_eof_is_the_terminals_eof(agent):
    c = Conn.open(agent.path)
    pty_exec(c, 5, ["sh"])
    c.send(frame(DATA, 5, 0, b"echo piped-$((2+3))\n"))
    c.send(frame(EOF, 5, 0))  # the host's stdin ended: sh reads Ctrl-D and exits
    out, ex = collect(c, 5)
    assert b"piped-5" in out
    assert field_u32(ex, 40) == 0
