"""The REAL `msb server` (VM backend) with msb-vmm replaced by the host build of
msb-init (`--serve-unix`, as test_sandbox_host.py): what a client sees over
HTTP when a sandbox's agent connections run out (a typed "busy" error at once,
not a wait on a refusing guest), when its guest stops answering (a timeout
error for a REPL run and a command without a timeout, instead of a request
that never ends), and the sandbox's log (`msb server log NAME`).  Commands run
on this host; seconds, no VM, no /dev/kvm."""

import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import BIN, host_agent_vmm, new_home, scaled
from test_server_http import Server

MSB = BIN / "msb"
IMAGE = "microsandbox/busybox"


@pytest.fixture(scope="module")
def host_server(tmp_path_factory, busybox_layout):
    tmp = tmp_path_factory.mktemp("server-host")
    home = new_home(tmp / "home", (busybox_layout, IMAGE))
    env = dict(host_agent_vmm(tmp), MSB_INITRD=str(tmp / "fake-vmm"), MSB_NO_SNAPSHOT="1",
               # a guest silent for 2 s is asked whether it is alive
               MSB_SERVER_FILE_TIMEOUT="2")
    s = Server(home, dev=True, backend="vm", env=env)
    yield s
    assert s.stop() == 0


def start(server, name, **config):
    status, body = server.rpc("sandbox.start", {"sandbox": name, "config": {"image": IMAGE,
                                                                             **config}})
    assert status == 200, body


def stop(server, name):
    status, body = server.rpc("sandbox.stop", {"sandbox": name})
    assert status == 200, body


def guest_pid(server, name):
    status, body = server.rpc("sandbox.list", {})
    return next(r["pid"] for r in body["result"]["sandboxes"] if r["name"] == name)


def test_a_sandbox_out_of_agent_connections_answers_busy(host_server):
    start(host_server, "busy")
    t0 = time.monotonic()
    execs = []
    for _ in range(30):  # the server opens at most 30 agent connections to one sandbox
        status, body = host_server.rpc("sandbox.exec.start", {"sandbox": "busy",
                                                               "command": "sleep", "args": ["100"]})
        assert status == 200, body
        execs.append(body["result"]["exec"])
    status, body = host_server.rpc("sandbox.exec.start", {"sandbox": "busy", "command": "true"})
    assert status == 409, body
    assert body["error"]["code"] == -32002 and body["error"]["data"]["kind"] == "state"
    assert "sandbox 'busy' is busy: a stream needs an agent connection" in body["error"]["message"]
    # upstream's method: its error body, with the kind our SDKs read
    status, body = host_server.rpc("sandbox.command.run", {"sandbox": "busy", "command": "true"})
    assert status == 500 and body["code"] == 5002 and body["kind"] == "state", body
    assert "is busy: a command needs an agent connection" in body["error"]
    status, _, reply = host_server.request("PUT", "/api/v1/sandbox/file?sandbox=busy&path=/tmp/x",
                                           b"data")
    assert status == 409 and b"a file transfer needs an agent connection" in reply
    assert time.monotonic() - t0 < scaled(30)  # nothing waited on a refusing guest
    # the streams are real: each one's process runs
    status, body = host_server.rpc("sandbox.exec.wait", {"exec": execs[-1], "timeout": 0.1})
    assert status == 200 and body["result"]["exited"] is False, body
    # (on a VM they would end with it; here they are this host's processes)
    for x in execs:
        status, body = host_server.rpc("sandbox.exec.signal", {"exec": x, "signal": "KILL"})
        assert status == 200, body
        status, body = host_server.rpc("sandbox.exec.wait", {"exec": x, "timeout": 30})
        assert status == 200 and body["result"]["signal"] == 9, body
    stop(host_server, "busy")
    assert host_server.healthy()


def agent_hello(path):
    """One raw agent connection (CONNECT 1024, HELLO) to a sandbox's guest: the answer's
    frame type and error kind (0 unless ERROR), and the socket, kept open."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(scaled(10))
    s.connect(path)
    s.sendall(b"CONNECT 1024\n")
    f = s.makefile("rb")
    assert f.readline().startswith(b"OK "), "CONNECT refused"
    hello = struct.pack("<HI", 1, 4) + struct.pack("<I", 1)  # VERSION 1
    s.sendall(struct.pack("<IHHII", len(hello), 1, 0, 0, 0) + hello)
    n, type_ = struct.unpack("<IH", f.read(16)[:6])
    payload, kind, i = f.read(n), 0, 0
    while i < n:
        tag, ln = struct.unpack_from("<HI", payload, i)
        kind = struct.unpack_from("<I", payload, i + 6)[0] if tag == 10 else kind
        i += 6 + ln
    return type_, kind, s


def test_a_guest_out_of_agent_connections_answers_busy(host_server):
    # Connections the server does not count (another client of the same guest) use up the
    # guest's 32: the server's call fails at once with the guest's "busy", kind state.
    start(host_server, "full")
    with open(f"/proc/{guest_pid(host_server, 'full')}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    path = args[args.index(b"--serve-unix") + 1].decode()
    held = []
    try:
        for _ in range(33):
            type_, kind, s = agent_hello(path)
            held.append(s)
            if type_ != 1:
                break
        assert (type_, kind) == (3, 7), "no ERROR limit from a guest with 32 connections open"
        assert len(held) <= 32  # the sandbox's own connection is one of the 32
        t0 = time.monotonic()
        status, body = host_server.rpc("sandbox.exec.start", {"sandbox": "full",
                                                               "command": "true"})
        assert status == 409 and body["error"]["data"]["kind"] == "state", body
        assert "the guest is busy: its agent serves 32 connections" in body["error"]["message"]
        assert time.monotonic() - t0 < scaled(10)  # no retrying what looked like a reset
    finally:
        for s in held:
            s.close()
    for _ in range(100):  # the guest sees the closes soon
        status, body = host_server.rpc("sandbox.exec.start", {"sandbox": "full",
                                                               "command": "true"})
        if status == 200:
            break
        time.sleep(0.05)
    assert status == 200, body
    status, body = host_server.rpc("sandbox.exec.wait", {"exec": body["result"]["exec"],
                                                         "timeout": 30})
    assert status == 200 and body["result"]["exit_code"] == 0, body
    assert body["result"]["out_of_memory"] is False
    stop(host_server, "full")


def test_a_hung_guest_ends_calls_without_a_timeout(host_server):
    start(host_server, "hung")
    status, body = host_server.rpc("sandbox.repl.run", {"sandbox": "hung", "language": "python",
                                                        "code": "x = 41"})
    assert status == 200 and body["result"]["status"] == "success", body
    pid = guest_pid(host_server, "hung")
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        status, body = host_server.rpc("sandbox.repl.run", {"sandbox": "hung",
                                                            "language": "python", "code": "x + 1"})
        took = time.monotonic() - t0
        assert status == 500 and body["code"] == 5002 and body["kind"] == "timeout", body
        assert "the sandbox stopped answering during the python run: no sign of life for 2 s" \
            in body["error"]
        assert 3.5 <= took < scaled(20)
        t0 = time.monotonic()
        status, body = host_server.rpc("sandbox.command.run", {"sandbox": "hung",
                                                               "command": "sleep", "args": ["1"]})
        assert status == 500 and body["kind"] == "timeout", body
        assert "sandbox 'hung' did not accept an agent connection within 2 s" in body["error"]
        assert time.monotonic() - t0 < scaled(20)
        assert host_server.healthy()
    finally:
        os.kill(pid, signal.SIGCONT)
    # it answers again, with its interpreter's state
    status, body = host_server.rpc("sandbox.repl.run", {"sandbox": "hung", "language": "python",
                                                        "code": "print(x + 1)"})
    assert status == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "42"}], body
    stop(host_server, "hung")


def test_stdin_and_signals_answer_while_a_hung_guest_is_probed(host_server):
    # An exec.wait that finds its exec silent for 2 s probes the guest (up to 2 s more): a
    # stdin write and a signal to the same exec meanwhile answer at once, and the wait then
    # ends with the hung guest's timeout.
    start(host_server, "probed")
    status, body = host_server.rpc("sandbox.exec.start", {"sandbox": "probed", "command": "cat",
                                                          "stdin": True})
    assert status == 200, body
    exec_id = body["result"]["exec"]
    pid = guest_pid(host_server, "probed")
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(2.5)  # silent past the limit: the next wait probes at once
        waited = {}

        def wait():
            waited["reply"] = host_server.rpc("sandbox.exec.wait", {"exec": exec_id,
                                                                    "timeout": 30})
            waited["at"] = time.monotonic()

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.5)  # the wait is inside its probe now (it takes 2 s on a stopped guest)
        status, body = host_server.rpc("sandbox.exec.stdin", {"exec": exec_id, "data": "hi\n"})
        stdin_at = time.monotonic()
        assert status == 200, body
        status, body = host_server.rpc("sandbox.exec.signal", {"exec": exec_id,
                                                               "signal": "TERM"})
        signal_at = time.monotonic()
        assert status == 200, body
        t.join(scaled(30))
        assert not t.is_alive()
        # both answered before the probe ended the exec, not behind it
        assert stdin_at < signal_at < waited["at"], (stdin_at, signal_at, waited["at"])
        status, body = waited["reply"]
        assert status == 504 and body["error"]["data"]["kind"] == "timeout", body
        assert "the sandbox stopped answering during 'cat'" in body["error"]["message"]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert host_server.healthy()
    stop(host_server, "probed")


def test_server_log_shows_the_sandboxs_start_exec_and_stop(host_server):
    start(host_server, "logged", exec="echo exec-says-hi; echo oops >&2")
    env = dict(host_server.env)
    deadline = time.monotonic() + scaled(30)
    while True:
        r = subprocess.run([str(MSB), "server", "log", "logged"], env=env, capture_output=True,
                           text=True, timeout=scaled(30))
        if "config.exec exited with 0" in r.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.returncode == 0, r.stderr
    lines = [line.split(" ", 1)[1] if line.startswith("20") else line
             for line in r.stdout.splitlines()]
    assert lines[0].startswith("msb: starting sandbox logged (image microsandbox/busybox")
    assert lines[1].startswith("msb: sandbox logged started (msb-vmm pid ")
    assert lines[2] == "msb: config.exec: echo exec-says-hi; echo oops >&2"
    assert sorted(lines[3:5]) == ["exec-says-hi", "oops"]
    assert lines[5] == "msb: config.exec exited with 0"
    stop(host_server, "logged")
    r = subprocess.run([str(MSB), "server", "log", "logged", "-t", "1"], env=env,
                       capture_output=True, text=True, timeout=scaled(30))
    assert r.stdout.endswith("msb: sandbox logged stopped\n"), r.stdout
