"""The REAL `msb server` on real VMs, over raw HTTP: upstream's methods with
upstream's bugs fixed (idempotent start, `exec` honoured, late stderr kept,
REPL timeout is an error), unsupported config refused, the REST paths,
streaming execs, files, 20 clients at once on 4 sandboxes, each starting its
sandbox and running a command (two of them also Python code), a client that disconnects mid-run (no
leaked process or thread), and SIGTERM stopping the server's sandboxes.

Sandboxes restore the base snapshot (conftest: MSB_BASE_SNAPSHOTS), so a start
takes about a second once the base exists; the first run of the suite builds
it with one cold boot (minutes on PVM).  One server and one sandbox are shared
by the module; the last test stops that server with SIGTERM.  A guest python
start costs ~20 s of emulated kernel work on PVM, so only the tests about the
REPL start one.  Run it under `flock /tmp/msb-vm.lock` on a shared machine."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, TOP, need_kvm, scaled
from test_server_http import Server

IMAGE = os.environ.get("MSB_TEST_PYTHON_IMAGE", "microsandbox/python")
START_TIMEOUT = scaled(float(os.environ.get("MSB_VM_BOOT_TIMEOUT", "1500")))


def import_python(home):
    env = dict(os.environ, MICROSANDBOX_HOME=str(home), MSB_BUILD_DIR=str(BIN.parent))
    r = subprocess.run([str(TOP / "scripts" / "test-images"), "--import", "python"], env=env,
                       capture_output=True, text=True, timeout=scaled(1800))
    assert r.returncode == 0, r.stderr[-3000:]


def call(server, method, params, timeout=None, path="/api/v1/rpc"):
    msg = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    status, _, body = server.request("POST", path, msg, timeout=timeout or START_TIMEOUT)
    return status, json.loads(body)


def ok(server, method, params, timeout=None):
    status, body = call(server, method, params, timeout)
    assert status == 200 and "result" in body, (method, params, status, body)
    return body["result"]


def lines(result, stream):
    return [o["text"] for o in result["output"] if o["stream"] == stream]


@pytest.fixture(scope="module")
def vm_server(tmp_path_factory):
    need_kvm()
    home = tmp_path_factory.mktemp("server-vm")
    s = Server(home, dev=True, backend="vm")
    import_python(home)
    yield s
    assert s.stop() == 0  # already stopped by test_sigterm_stops_the_servers_sandboxes


@pytest.fixture(scope="module")
def box(vm_server):
    """One running sandbox; config.exec leaves a mark."""
    ok(vm_server, "sandbox.start", {"sandbox": "box", "config": {
        "image": IMAGE, "envs": ["GREETING=hi there"],
        "exec": "echo exec-ran > /tmp/exec-mark"}})
    yield "box"
    if vm_server.proc.poll() is None:
        ok(vm_server, "sandbox.stop", {"sandbox": "box"})


def test_start_is_idempotent_and_exec_is_honoured(vm_server, box):
    t = time.time()
    assert ok(vm_server, "sandbox.start", {"sandbox": box, "config": {"image": IMAGE}}) == \
        "Sandbox box started successfully"
    assert time.time() - t < scaled(5)
    deadline = time.time() + scaled(120)
    while True:  # config.exec runs beside the requests: wait for its mark
        r = ok(vm_server, "sandbox.command.run", {"sandbox": box, "command": "cat",
                                                  "args": ["/tmp/exec-mark"]})
        if r["exit_code"] == 0 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert lines(r, "stdout") == ["exec-ran"]
    # `msb server log box`: the sandbox's start and its config.exec, as upstream kept them
    deadline = time.time() + scaled(60)
    while True:
        log = subprocess.run([str(BIN / "msb"), "server", "log", "box"], capture_output=True,
                             text=True, env=dict(os.environ, MICROSANDBOX_HOME=str(vm_server.home)),
                             timeout=scaled(30))
        if "config.exec exited with 0" in log.stdout or time.time() > deadline:
            break
        time.sleep(0.5)
    assert log.returncode == 0, log.stderr
    assert "msb: sandbox box started (msb-vmm pid" in log.stdout, log.stdout
    assert "msb: config.exec: echo exec-ran > /tmp/exec-mark" in log.stdout, log.stdout
    assert "msb: config.exec exited with 0" in log.stdout, log.stdout
    rows = ok(vm_server, "sandbox.list", {})["sandboxes"]
    assert [(x["name"], x["status"]) for x in rows] == [("box", "running")]
    assert rows[0]["image"].endswith("microsandbox/python:latest") and rows[0]["pid"] > 0


def test_command_run_as_upstream_with_late_stderr(vm_server, box):
    r = ok(vm_server, "sandbox.command.run", {
        "sandbox": box, "command": "sh",
        "args": ["-c", 'echo "$GREETING"; echo e1 >&2; sleep 1; echo late >&2; printf tail; exit 3']})
    assert (r["command"], r["exit_code"], r["success"]) == ("sh", 3, False)
    assert lines(r, "stdout") == ["hi there", "tail"]
    assert lines(r, "stderr") == ["e1", "late"]
    # the HEAD SDKs' REST path
    status, body = call(vm_server, "ignored", {"sandbox": box, "command": "echo", "args": ["rest"]},
                        path="/api/v1/sandbox/command/run")
    assert status == 200 and lines(body["result"], "stdout") == ["rest"]
    # a timeout kills the command and fails the request (upstream: 500)
    t = time.time()
    status, body = call(vm_server, "sandbox.command.run",
                        {"sandbox": box, "command": "sleep", "args": ["30"], "timeout": 2})
    assert status == 500 and "did not finish within 2 s" in body["error"], body
    assert time.time() - t < scaled(25)
    status, body = call(vm_server, "sandbox.command.run", {"sandbox": box, "command": "no-such-binary"})
    assert status == 500 and "no-such-binary" in body["error"], body


def test_repl_keeps_state_and_a_timeout_is_an_error(vm_server, box):
    ok(vm_server, "sandbox.repl.run", {"sandbox": box, "language": "python", "code": "x = 6 * 7"})
    r = ok(vm_server, "sandbox.repl.run", {"sandbox": box, "language": "python", "code": "print(x)"})
    assert (r["status"], r["language"], lines(r, "stdout")) == ("success", "python", ["42"])
    r = ok(vm_server, "sandbox.repl.run", {"sandbox": box, "language": "python", "code": "1/0"})
    assert r["status"] == "error" and lines(r, "stderr")[-1] == "ZeroDivisionError: division by zero"
    status, body = call(vm_server, "sandbox.repl.run", {"sandbox": box, "language": "python",
                                                        "code": "while True: pass", "timeout": 2})
    assert status == 500 and "did not finish within 2 s" in body["error"], body
    r = ok(vm_server, "sandbox.repl.run", {"sandbox": box, "language": "python", "code": "print(x + 1)"})
    assert lines(r, "stdout") == ["43"]


def test_metrics(vm_server, box):
    # a busy loop in the guest shows as CPU
    x = ok(vm_server, "sandbox.exec.start", {"sandbox": box, "command": "sh",
                                             "args": ["-c", "while :; do :; done"]})["exec"]
    try:
        time.sleep(1)
        rows = ok(vm_server, "sandbox.metrics.get", {"sandbox": box})["sandboxes"]
    finally:
        ok(vm_server, "sandbox.exec.signal", {"exec": x, "signal": "KILL"})
    assert len(rows) == 1 and rows[0]["name"] == box and rows[0]["running"] is True
    assert rows[0]["cpu_usage"] > 30, rows
    assert 0 < rows[0]["memory_usage"] < 4096 and rows[0]["disk_usage"] >= 0
    rows = ok(vm_server, "sandbox.metrics.get", {"sandbox": "not-started"})["sandboxes"]
    assert rows == [{"name": "not-started", "running": False, "cpu_usage": None,
                     "memory_usage": None, "disk_usage": None}]


def test_unsupported_config_and_unknown_sandboxes_are_refused(vm_server):
    status, body = call(vm_server, "sandbox.start", {"sandbox": "vol", "config": {
        "image": IMAGE, "volumes": ["/tmp:host"]}})
    assert status == 400 and "not an absolute path" in body["error"], body
    status, body = call(vm_server, "sandbox.start", {"sandbox": "nocfg"})
    # upstream's methods answer 500 {"error","code":5002} for all but bad parameters
    assert (status, body["code"], body["kind"]) == (500, 5002, "not_found"), body
    assert body["error"].startswith("No configuration provided and no existing configuration "
                                    "found for sandbox 'nocfg'"), body
    status, body = call(vm_server, "sandbox.command.run", {"sandbox": "ghost", "command": "true"})
    assert status == 500 and "'ghost' is not running; start it first" in body["error"], body
    status, body = call(vm_server, "sandbox.stop", {"sandbox": "ghost"})
    assert status == 500 and "not running" in body["error"], body
    # this project's methods are JSON-RPC errors with the kind
    status, body = call(vm_server, "sandbox.exec.start", {"sandbox": "ghost", "command": "true"})
    assert status == 404 and body["error"]["data"]["kind"] == "not_found", body


def test_streaming_exec_and_files(vm_server, box):
    x = ok(vm_server, "sandbox.exec.start", {"sandbox": box, "command": "sh", "stdin": True,
                                             "args": ["-c", "read l; echo got $l; echo e >&2; exit 3"]})["exec"]
    assert ok(vm_server, "sandbox.exec.stdin", {"exec": x, "data": "hi\n", "eof": True}) == \
        {"written": 3, "eof": True}
    status, _, body = vm_server.request("POST", "/api/v1/rpc", {
        "jsonrpc": "2.0", "method": "sandbox.exec.stream", "params": {"exec": x}, "id": 1},
        timeout=scaled(120))
    events = [json.loads(line) for line in body.decode().splitlines() if line]
    assert status == 200
    assert [e for e in events if e["event"] != "exit"] == [
        {"event": "stdout", "data": "got hi\n"}, {"event": "stderr", "data": "e\n"}]
    assert events[-1] == {"event": "exit", "exit_code": 3, "signal": None, "timed_out": False,
                          "out_of_memory": False}
    blob = os.urandom(300 * 1024) + b"\x00\xff"
    status, _, body = vm_server.request("PUT", f"/api/v1/sandbox/file?sandbox={box}&path=/tmp/d/blob&mode=0600",
                                        blob, timeout=scaled(600))
    assert status == 200 and json.loads(body)["result"]["size"] == len(blob), body
    status, _, body = vm_server.request("GET", f"/api/v1/sandbox/file?sandbox={box}&path=/tmp/d/blob",
                                        timeout=scaled(600))
    assert status == 200 and body == blob
    r = ok(vm_server, "sandbox.command.run", {"sandbox": box, "command": "stat",
                                              "args": ["-c", "%a %s", "/tmp/d/blob"]})
    assert lines(r, "stdout") == [f"600 {len(blob)}"]
    status, _, body = vm_server.request("GET", f"/api/v1/sandbox/file?sandbox={box}&path=/no/such")
    assert status == 404 and "no such file: /no/such" in body.decode()


def guest_procs(server, box, arg):
    """How many guest processes have `arg` as one whole argument (like '[4]242', a
    regex that the grep's own argument does not match).  One grep reads every
    /proc/PID/cmdline (-z: an argument per record): a process per /proc entry
    would cost seconds of emulated kernel work per call on PVM."""
    r = ok(server, "sandbox.command.run", {"sandbox": box, "command": "sh", "args": [
        "-c", f"grep -s -z -x -c '{arg}' /proc/[0-9]*/cmdline || true"]})
    counts = [int(x.rsplit(":", 1)[1]) for x in lines(r, "stdout") if ":" in x]
    return sum(1 for n in counts if n > 0)


def server_threads(server):
    return len(os.listdir(f"/proc/{server.proc.pid}/task"))


def threads_settle(server, target, wait=30):
    """The server's thread count once it is at most `target` or `wait` s
    passed, without requests of our own meanwhile (each would have a
    connection thread of its own for a moment)."""
    deadline = time.time() + scaled(wait)
    while server_threads(server) > target and time.time() < deadline:
        time.sleep(0.2)
    return server_threads(server)


def test_a_client_that_disconnects_leaks_nothing(vm_server, box):
    before = threads_settle(vm_server, 0, wait=2)  # connection threads of earlier requests gone
    sock = socket.create_connection(("127.0.0.1", vm_server.port))
    body = json.dumps({"jsonrpc": "2.0", "method": "sandbox.exec.stream", "id": 1, "params": {
        "sandbox": box, "command": "sh", "args": ["-c", "echo started; exec sleep 4242"]}}).encode()
    sock.sendall(b"POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    deadline = time.time() + scaled(120)
    while b"started" not in got and time.time() < deadline:
        got += sock.recv(4096)
    assert b"started" in got, got
    assert guest_procs(vm_server, box, "[4]242") == 1
    sock.close()
    deadline = time.time() + scaled(60)
    while time.time() < deadline and guest_procs(vm_server, box, "[4]242") != 0:
        time.sleep(0.5)
    assert guest_procs(vm_server, box, "[4]242") == 0
    assert threads_settle(vm_server, before) <= before
    # the same for a plain sandbox.command.run (no timeout) whose client leaves
    body = json.dumps({"jsonrpc": "2.0", "method": "sandbox.command.run", "id": 2, "params": {
        "sandbox": box, "command": "sleep", "args": ["4243"]}}).encode()
    sock = socket.create_connection(("127.0.0.1", vm_server.port))
    sock.sendall(b"POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    # command.run calls of one sandbox run at once: watch the sleep while it runs
    deadline = time.time() + scaled(60)
    while time.time() < deadline and guest_procs(vm_server, box, "[4]243") != 1:
        time.sleep(0.2)
    assert guest_procs(vm_server, box, "[4]243") == 1
    sock.close()
    deadline = time.time() + scaled(60)
    while time.time() < deadline and guest_procs(vm_server, box, "[4]243") != 0:
        time.sleep(0.5)
    assert guest_procs(vm_server, box, "[4]243") == 0
    assert threads_settle(vm_server, before) <= before
    assert vm_server.healthy()


def test_command_runs_of_one_sandbox_run_at_once(vm_server, box):
    """As upstream's portal: a quick command is not held up by a slow one, and
    8 at once each get their own output."""
    got = {}

    def run(key, command, args):
        t = time.time()
        got[key] = (ok(vm_server, "sandbox.command.run",
                       {"sandbox": box, "command": command, "args": args}), time.time())
        got[key + "-took"] = time.time() - t

    slow = threading.Thread(target=run, args=("slow", "sleep", ["3"]))
    slow.start()
    time.sleep(0.2)  # the sleep is sent first
    run("quick", "echo", ["hi"])
    slow.join(scaled(300))
    assert lines(got["quick"][0], "stdout") == ["hi"]
    assert got["slow"][0]["exit_code"] == 0
    assert got["quick"][1] < got["slow"][1] - 1, got  # the echo came back well before the sleep
    assert got["slow-took"] >= 3

    threads = [threading.Thread(target=run, args=(f"c{i}", "sh", ["-c", f"echo out-{i}; echo err-{i} >&2; exit {i}"]))
               for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(scaled(600))
    for i in range(8):
        r = got[f"c{i}"][0]
        assert (lines(r, "stdout"), lines(r, "stderr"), r["exit_code"]) == \
            ([f"out-{i}"], [f"err-{i}"], i), r


def test_twenty_clients_at_once(vm_server):
    """20 clients at once on 4 sandboxes (5 each, started by all 5 at once: one VM each), each
    client its own command's output; two clients run Python code in the same sandbox's
    interpreter at once.  (Each VM costs seconds of emulated kernel work on PVM and a guest
    python start ~20 s: 20 sandboxes and two interpreters took ~270 s of the suite.)"""
    n, groups = 20, 4
    results = [None] * n
    repl = {0, groups}  # both in sandbox c0
    barriers = [threading.Barrier(n // groups, timeout=START_TIMEOUT + scaled(1800))
                for _ in range(groups)]

    def client(i):
        name, me = f"c{i % groups}", f"client{i}"
        try:
            assert ok(vm_server, "sandbox.start", {"sandbox": name, "config": {"image": IMAGE}}) \
                == f"Sandbox {name} started successfully"
            r = ok(vm_server, "sandbox.command.run", {"sandbox": name, "command": "echo", "args": [me]})
            out = lines(r, "stdout")
            if i in repl:
                r = ok(vm_server, "sandbox.repl.run", {"sandbox": name, "language": "python",
                                                       "code": f"print({i} * 2)"})
                out += lines(r, "stdout")
            if barriers[i % groups].wait() == 0:  # the sandbox's clients are done: one stops it
                rows = ok(vm_server, "sandbox.list", {})["sandboxes"]
                assert [x["status"] for x in rows if x["name"] == name] == ["running"], rows
                ok(vm_server, "sandbox.stop", {"sandbox": name})
            results[i] = out
        except Exception as e:  # reported below with the client's number
            barriers[i % groups].abort()
            results[i] = repr(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    t = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join(START_TIMEOUT + scaled(1800))
    took = time.time() - t
    assert results == [[f"client{i}"] + ([str(i * 2)] if i in repl else []) for i in range(n)], \
        results
    print(f"20 clients on {groups} sandboxes: start + command (+ repl in {len(repl)}) each, "
          f"{took:.1f} s in all")
    assert [x["name"] for x in ok(vm_server, "sandbox.list", {})["sandboxes"]
            if x["name"].startswith("c")] == []


def test_sigterm_stops_the_servers_sandboxes(vm_server, box):
    """Last in the module: SIGTERM to the shared server stops `box` (still running)."""
    pid = [x for x in ok(vm_server, "sandbox.list", {})["sandboxes"] if x["name"] == box][0]["pid"]
    os.kill(pid, 0)
    vm_server.proc.send_signal(signal.SIGTERM)
    assert vm_server.proc.wait(scaled(60)) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "msb server stopped" in (vm_server.home / "fg.log").read_text()
