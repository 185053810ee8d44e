"""The Python SDK (sdk/python) against the REAL `msb server` binary.

`dev_server` runs real VMs: the full agent path (start a Python sandbox, keep
a variable across two runs, run a command, read metrics, stop; streams,
stdin, files), the README's quick start and code written for upstream's SDK.
`proto_server` is the same binary with MSB_SERVER_BACKEND=unavailable (no
VMs): every sandbox method -> a typed error carrying "sandboxes are not
available in this build yet", and the requests the SDK sends (recorded by a
capture server) replayed to it, whose validation must accept them.  Also:
server down -> ServerUnreachable, bad, missing and expired keys -> AuthError
with the server's message, bad parameters -> InvalidRequest with the server's
text, `pip install`.

Other SDK tests import the fixtures here (`dev_server`, `proto_server`,
`keyed_server`, `down_url`, `sandboxes_available`, `Capture`)."""

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import BIN, TOP, scaled
from test_server_http import UNAVAILABLE, Server, free_port, make_token

SDK_DIR = TOP / "sdk" / "python"
sys.path.insert(0, str(SDK_DIR))

import microsandbox as msb  # noqa: E402
from microsandbox import errors as msb_errors  # noqa: E402

PYTHON_IMAGE = os.environ.get("MSB_TEST_PYTHON_IMAGE", "microsandbox/python")


# A boot takes minutes on PVM (docs/vmm.md): the full-path tests wait this long for a start.
VM_TIMEOUT = scaled(float(os.environ.get("MSB_VM_BOOT_TIMEOUT", "1500")))


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("sdk-dev"), dev=True, backend="vm")
    s.url = f"http://127.0.0.1:{s.port}"
    if sandboxes_available(s):
        # the full-path tests start microsandbox/python: the project's own test
        # image (scripts/test-images), imported into this server's store
        env = dict(os.environ, MICROSANDBOX_HOME=str(s.home), MSB_BUILD_DIR=str(BIN.parent))
        r = subprocess.run([str(TOP / "scripts" / "test-images"), "--import", "python"], env=env,
                           capture_output=True, text=True, timeout=scaled(1800))
        if r.returncode != 0:
            s.stop()
            pytest.fail(f"scripts/test-images --import python failed:\n{r.stderr[-3000:]}")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def proto_server(tmp_path_factory):
    """The protocol without VMs: every sandbox method answers UNAVAILABLE."""
    s = Server(tmp_path_factory.mktemp("sdk-proto"), dev=True, backend="unavailable")
    s.url = f"http://127.0.0.1:{s.port}"
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("sdk-keyed"))
    s.url = f"http://127.0.0.1:{s.port}"
    yield s
    assert s.stop() == 0


@pytest.fixture
def down_url():
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def sandboxes_available(server):
    """False while the server answers every sandbox method with 'not
    available in this build'."""
    status, body = server.rpc("sandbox.metrics.get", {"sandbox": "probe"})
    return not (status == 500 and body == {"error": UNAVAILABLE, "code": 5002})


def need_sandboxes(server):
    if not sandboxes_available(server):
        pytest.skip("SANDBOXES UNAVAILABLE: the server answers every sandbox method with "
                    f"'{UNAVAILABLE}'; this full-path test runs once the backend lands")


def run(coro):
    return asyncio.run(coro)


class Capture:
    """A loopback HTTP server that records each request (method, path,
    headers, body) and answers like msb's dev server would for a working
    sandbox, so that the SDK's requests can be inspected and replayed."""

    def __init__(self):
        self.requests = []
        self.stdin_data = []
        self.stdin_seen = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        n = int(self.rfile.readline().split(b";")[0], 16)
                        if n == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(n)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, obj, status=200, ctype="application/json"):
                body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, obj):
                line = json.dumps(obj).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()

            def _interactive(self):
                """A process that prints "ready", then waits for the client
                to write to its stdin before it answers and exits: a client
                that does not deliver output as it comes never writes."""
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("X-Msb-Exec", "e1")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self._chunk({"event": "started", "exec": "e1"})
                self._chunk({"event": "stdout", "data": "ready\n"})
                if outer.stdin_seen.wait(scaled(10)):
                    self._chunk({"event": "stdout", "data": "got " + outer.stdin_data[0]})
                    self._chunk({"event": "exit", "exit_code": 0, "signal": None, "timed_out": False})
                else:
                    self._chunk({"event": "exit", "exit_code": 99, "signal": None, "timed_out": True})
                self.wfile.write(b"0\r\n\r\n")

            def _flood(self):
                """A stream whose event never ends: 17 MiB without a newline."""
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                piece = b"x" * (1 << 20)
                try:
                    for _ in range(17):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client gave up, as it should

            def do_GET(self):
                outer.requests.append(("GET", self.path, dict(self.headers), b""))
                self._reply(b"file-bytes", ctype="application/octet-stream")

            def do_PUT(self):
                if self.headers.get("Expect", "").lower() == "100-continue":
                    self.send_response_only(100)
                    self.end_headers()
                body = self._body()
                outer.requests.append(("PUT", self.path, dict(self.headers), body))
                self._reply({"jsonrpc": "2.0", "result": {"path": "/x", "size": len(body)}})

            def do_POST(self):
                body = self._body()
                outer.requests.append(("POST", self.path, dict(self.headers), body))
                call = json.loads(body)
                m, rid = call["method"], call.get("id")
                results = {
                    "sandbox.start": "Sandbox x started successfully",
                    "sandbox.stop": "Sandbox x stopped successfully",
                    "sandbox.repl.run": {"status": "success", "language": "python",
                                         "output": [{"stream": "stdout", "text": "42"}]},
                    "sandbox.command.run": {"command": "echo", "args": ["hi"], "exit_code": 0,
                                            "success": True,
                                            "output": [{"stream": "stdout", "text": "hi"}]},
                    "sandbox.metrics.get": {"sandboxes": [{"name": "x", "running": True,
                                                           "cpu_usage": 1.5, "memory_usage": 30,
                                                           "disk_usage": 4096}]},
                    "sandbox.exec.stdin": {"written": 3, "eof": False},
                    "sandbox.list": {"sandboxes": [{"name": "x", "status": "running",
                                                    "image": "microsandbox/python", "pid": 7}]},
                    "sandbox.exec.signal": {"exec": "e1", "signal": 15},
                }
                if m == "sandbox.exec.stdin" and ("data" in call["params"] or "data_base64" in call["params"]):
                    p = call["params"]
                    data = p["data"] if "data" in p else base64.b64decode(p["data_base64"]).decode()
                    outer.stdin_data.append(data)
                    outer.stdin_seen.set()
                if m == "sandbox.exec.stream" and call["params"].get("command") == "interactive":
                    self._interactive()
                    return
                if m == "sandbox.exec.stream" and call["params"].get("command") == "flood":
                    self._flood()
                    return
                if m == "sandbox.exec.stream":
                    lines = [{"event": "started", "exec": "e1"},
                             {"event": "stdout", "data": "a\n"},
                             {"event": "stderr", "data_base64": "/w=="},
                             {"event": "exit", "exit_code": 3, "signal": None, "timed_out": False,
                              "out_of_memory": True}]
                    payload = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.send_header("X-Msb-Exec", "e1")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for line in payload.split(b"\n")[:-1]:
                        chunk = line + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self._reply({"jsonrpc": "2.0", "result": results.get(m), "id": rid})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def rpc_calls(self):
        return [json.loads(b) for (m, p, h, b) in self.requests if m == "POST"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def capture():
    c = Capture()
    yield c
    c.close()


# Replies the SDKs must map (status, content type, body) -> (Python/JS class, C status).
ERROR_CASES = [
    (401, "application/json", '{"error":"Invalid credentials","code":1001}', "AuthError", "auth"),
    (400, "application/json", '{"error":"Invalid params: bad","code":2001}', "InvalidRequest", "invalid"),
    (500, "application/json", '{"error":"no sandbox x","code":5002,"kind":"not_found"}', "SandboxNotFound", "not_found"),
    (500, "application/json", '{"error":"Sandbox \'x\' not found","code":5002}', "SandboxNotFound", "not_found"),
    (500, "application/json", '{"error":"boom","code":5002,"kind":"timeout"}', "Timeout", "timeout"),
    (500, "application/json", '{"error":"boom","code":5002}', "ServerError", "server"),
    (404, "application/json", '{"jsonrpc":"2.0","error":{"code":-32001,"message":"no such sandbox","data":{"kind":"not_found"}},"id":"1"}', "SandboxNotFound", "not_found"),
    (409, "application/json", '{"jsonrpc":"2.0","error":{"code":-32002,"message":"busy","data":{"kind":"state"}},"id":"1"}', "StateError", "state"),
    (504, "application/json", '{"jsonrpc":"2.0","error":{"code":-32003,"message":"late","data":{"kind":"timeout"}},"id":"1"}', "Timeout", "timeout"),
    (502, "application/json", '{"jsonrpc":"2.0","error":{"code":-32004,"message":"registry","data":{"kind":"network"}},"id":"1"}', "NetworkError", "network"),
    (502, "application/json", '{"jsonrpc":"2.0","error":{"code":-32005,"message":"guest","data":{"kind":"guest"}},"id":"1"}', "GuestError", "guest"),
    (500, "application/json", '{"jsonrpc":"2.0","error":{"code":-32603,"message":"bug","data":{"kind":"internal"}},"id":"1"}', "ServerError", "server"),
    (404, "application/json", '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found: m"},"id":"1"}', "MethodNotFound", "server"),
    (415, "text/plain", "Expected request with `Content-Type: application/json`", "InvalidRequest", "invalid"),
    (413, "text/plain", "Failed to buffer the request body: length limit exceeded", "InvalidRequest", "invalid"),
    (200, "application/json", '{"jsonrpc":"2.0","error":{"code":-32602,"message":"bad","data":{"kind":"usage"}},"id":"1"}', "InvalidRequest", "invalid"),
    (200, "application/json", "not json", "ProtocolError", "protocol"),
    (200, "application/json", '{"jsonrpc":"2.0","id":"1"}', "ProtocolError", "protocol"),
]


class Replier:
    """A loopback HTTP server answering every request with ERROR_CASES[i],
    i taken from the request's path prefix /case/<i>/ (so one server serves
    concurrent clients)."""

    def __init__(self):
        self.cases = list(ERROR_CASES)
        cases = self.cases

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                i = int(self.path.split("/")[2])
                status, ctype, body, _, _ = cases[i]
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, i):
        return f"{self.base}/case/{i}"

    def add(self, status, body):
        """One more reply; returns its URL."""
        self.cases.append((status, "application/json", body, "", ""))
        return self.url(len(self.cases) - 1)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def replier():
    r = Replier()
    yield r
    r.close()


def test_error_mapping(replier):
    """Every error shape the server can send becomes the right typed error,
    with the server's text and code."""
    async def body():
        for i, (status, _, text, cls, _) in enumerate(ERROR_CASES):
            with pytest.raises(msb.MicrosandboxError) as e:
                await started(replier.url(i)).command.run("ls")
            assert type(e.value).__name__ == cls, (i, type(e.value).__name__, str(e.value))
            assert str(e.value).startswith("Failed to execute command: ")
            if cls != "ProtocolError":
                assert e.value.status == status
                assert e.value.message in text
        # the file routes: a not-found without "sandbox" in it is a file
        url = replier.add(404, '{"jsonrpc":"2.0","error":{"code":-32001,"message":"/a: no such file"}}')
        with pytest.raises(msb.FileNotFound):
            await started(url).files.read("/a")
        with pytest.raises(msb.SandboxNotFound):
            await started(replier.url(6)).files.read("/a")

    run(body())


def started(url, key=None, cls=msb.PythonSandbox, name="sdk-box"):
    """A sandbox object marked started without asking the server, to reach
    the methods that need one."""
    sb = cls(server_url=url, api_key=key, name=name)
    sb._is_started = True
    return sb


# ---- server down ------------------------------------------------------------------


def test_unreachable_server(down_url):
    async def body():
        with pytest.raises(msb.ServerUnreachable) as e:
            async with msb.PythonSandbox.create(server_url=down_url, name="x"):
                pass
        assert down_url in str(e.value) and "connection refused" in str(e.value)
        assert "msb server start" in str(e.value)
        assert isinstance(e.value, RuntimeError) and isinstance(e.value, ConnectionError)
        sb = started(down_url)
        for call in (lambda: sb.run("1"), lambda: sb.command.run("ls"), sb.metrics.all,
                     lambda: sb.command.stream("ls"), lambda: sb.files.read("/etc/hostname"),
                     lambda: sb.files.write("/tmp/x", "y"), lambda: sb.files.upload(__file__, "/x"),
                     sb.stop, msb.Client(down_url).list,
                     msb.Client(down_url).health):
            with pytest.raises(msb.ServerUnreachable, match="cannot reach the microsandbox server"):
                await call()

    run(body())


def test_environment_and_dotenv(dev_server, down_url, tmp_path, monkeypatch):
    """MSB_SERVER_URL / MSB_API_KEY pick the server and key; a .env file is
    read only when MSB_API_KEY is unset, and never overrides the environment."""
    monkeypatch.delenv("MSB_API_KEY", raising=False)
    monkeypatch.setenv("MSB_SERVER_URL", down_url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("# comment\nexport MSB_API_KEY='from-dotenv'\nOTHER=1 # x\n")
    sb = msb.PythonSandbox()
    assert sb._server_url == down_url and sb._api_key == "from-dotenv"
    assert re.fullmatch(r"sandbox-[0-9a-f]{8}", sb.name)
    monkeypatch.setenv("MSB_API_KEY", "from-env")
    assert msb.PythonSandbox()._api_key == "from-env"
    assert msb.PythonSandbox(server_url=dev_server.url, api_key="arg")._api_key == "arg"
    monkeypatch.delenv("MSB_SERVER_URL")
    assert msb.PythonSandbox()._server_url == "http://127.0.0.1:5555"


# ---- API keys -----------------------------------------------------------------------


def test_auth_errors_carry_the_servers_message(keyed_server):
    url = keyed_server.url

    async def start(key):
        sb = msb.PythonSandbox(server_url=url, api_key=key, name="keyed")
        await sb.start()

    async def body():
        with pytest.raises(msb.AuthError) as e:
            await start(None)
        assert (e.value.status, e.value.code, e.value.message) == (401, 1001, "Invalid credentials")
        with pytest.raises(msb.AuthError) as e:
            await start("msb_not.a.jwt")
        assert (e.value.code, e.value.message) == (1004, "Invalid or expired token")
        expired = make_token(keyed_server.key, exp=int(time.time()) - 3600)
        with pytest.raises(msb.AuthError, match="Invalid or expired token"):
            await start(expired)
        # A valid key from `msb server keygen` gets past auth to the backend.
        try:
            assert isinstance(await msb.Client(url, keyed_server.token()).list(), list)
        except msb.ServerError as e:
            assert e.message == UNAVAILABLE
        with pytest.raises(msb.AuthError):
            await msb.Client(url, "msb_x").list()

    run(body())
    assert keyed_server.healthy()


# ---- every method reaches the server and gets its typed error ------------------------------


def test_every_method_reports_sandboxes_unavailable(proto_server, tmp_path):
    url = proto_server.url
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 5))

    async def body():
        with pytest.raises(msb.ServerError) as e:
            async with msb.PythonSandbox.create(server_url=url, name="sdk-box"):
                pass
        assert e.value.message == UNAVAILABLE and e.value.status == 500 and e.value.code == 5002
        assert str(e.value) == f"Failed to start sandbox: {UNAVAILABLE}"
        with pytest.raises(RuntimeError, match=UNAVAILABLE):  # upstream code catches this
            async with msb.NodeSandbox.create(server_url=url):
                pass
        sb = started(url)
        calls = {
            "run": lambda: sb.run("x = 1", timeout=5),
            "command": lambda: sb.command.run("ls", ["-l"], timeout=5),
            "metrics": sb.metrics.all,
            "cpu": sb.metrics.cpu,
            "stream": lambda: sb.command.stream("ls", stdin=True, env={"A": "1"}, cwd="/"),
            "read": lambda: sb.files.read("/etc/hostname"),
            "write": lambda: sb.files.write("/tmp/x", b"\x00\xff"),
            "upload": lambda: sb.files.upload(src, "/tmp/up.bin"),
            "download": lambda: sb.files.download("/etc/hostname", tmp_path / "down"),
            "list-dir": lambda: sb.files.list("/tmp"),
            "list": msb.Client(url).list,
            "stop": sb.stop,
        }
        for what, call in calls.items():
            with pytest.raises(msb.ServerError) as e:
                await call()
            assert e.value.message == UNAVAILABLE, what
            assert e.value.status == 500, what
        assert not (tmp_path / "down").exists() and not (tmp_path / "down.part").exists()
        assert await msb.Client(url).health() is True

    run(body())
    assert proto_server.healthy()


def test_bad_parameters_are_invalid_requests(dev_server):
    async def body():
        with pytest.raises(msb.InvalidRequest) as e:
            await msb.PythonSandbox(server_url=dev_server.url, name="bad name").start()
        assert "Invalid sandbox name 'bad name'" in e.value.message and e.value.code == 2001
        sb = started(dev_server.url)
        with pytest.raises(msb.InvalidRequest, match="absolute path"):
            await sb.files.read("relative/path")
        with pytest.raises(msb.InvalidRequest) as e:
            await sb.command.stream("ls", timeout=10**9)
        assert e.value.kind == "usage" and e.value.code == -32602
        with pytest.raises(msb.InvalidRequest):
            await sb.run("1", timeout=-1)
        # over the server's 2 MiB body limit: refused before the body is read,
        # and reported as the server's 413, not as a broken connection
        with pytest.raises(msb.InvalidRequest, match="length limit exceeded") as e:
            await sb.run("x" * (3 << 20))
        assert e.value.status == 413
        with pytest.raises(msb.MethodNotFound, match="Method not found: sandbox.nope"):
            await msb.Client(dev_server.url).rpc("sandbox.nope", {})
        with pytest.raises(msb.NotStarted, match="Call start"):
            await msb.PythonSandbox(server_url=dev_server.url).run("1")

    run(body())


# ---- what the SDK sends ------------------------------------------------------------------------


def test_request_shapes(capture, proto_server, tmp_path):
    """Each method's request, as recorded; then each recorded JSON-RPC body
    is replayed to the real server, whose validation must accept it (it then
    answers 'not available', not 400)."""
    src = tmp_path / "f.bin"
    src.write_bytes(b"0123456789")

    async def body():
        sb = msb.PythonSandbox(server_url=capture.url, api_key="msb_k", name="shape")
        await sb.start(memory=256, cpus=1.6, volumes=["./d:/d"], ports=["8080:80"],
                       envs=["A=1"], depends_on=["db"], workdir="/w", shell="/bin/sh",
                       scripts={"hi": "echo hi"}, exec="python app.py")
        ex = await sb.run("print(42)")
        assert (await ex.output(), ex.status, ex.language, ex.has_error()) == ("42", "success", "python", False)
        ce = await sb.command.run("echo", ["hi"], timeout=7)
        assert (ce.exit_code, ce.success, await ce.output(), ce.command, ce.args) == (0, True, "hi", "echo", ["hi"])
        assert ce.out_of_memory is False  # absent (an upstream server): False
        m = await sb.metrics.all()
        assert m["memory_usage"] == 30 and await sb.metrics.cpu() == 1.5
        assert await sb.metrics.disk() == 4096 and await sb.metrics.is_running() is True
        proc = await sb.command.stream("sh", ["-c", "x"], env={"K": "V"}, cwd="/tmp", timeout=3,
                                       stdin=True)
        assert proc.id == "e1"
        assert await proc.write("abc") == 3
        await proc.write(b"\x00\x01")
        await proc.close_stdin()
        await proc.send_signal("SIGINT")
        outs = [o async for o in proc]
        assert [(o.stream, o.data) for o in outs] == [("stdout", "a\n"), ("stderr", b"\xff")]
        assert (proc.exit_code, proc.signal, proc.timed_out, proc.out_of_memory) == (3, None, False, True)
        assert await sb.files.write("/tmp/w", "héllo", mode=0o600) == 6
        assert await sb.files.upload(src, "/tmp/u") == 10
        assert await sb.files.read("/tmp/r") == b"file-bytes"
        await sb.stop()
        node = msb.NodeSandbox(server_url=capture.url, name="shape-node")
        await node.start()
        await node.run("1")

    run(body())
    calls = capture.rpc_calls()
    for c in calls:
        assert c["jsonrpc"] == "2.0" and isinstance(c["id"], str)
    by = {(c["method"], c["params"].get("sandbox", c["params"].get("exec"))): c["params"] for c in calls}
    assert by[("sandbox.start", "shape")] == {"sandbox": "shape", "config": {
        "image": "microsandbox/python", "memory": 256, "cpus": 2, "volumes": ["./d:/d"],
        "ports": ["8080:80"], "envs": ["A=1"], "depends_on": ["db"], "workdir": "/w",
        "shell": "/bin/sh", "scripts": {"hi": "echo hi"}, "exec": "python app.py"}}
    assert by[("sandbox.start", "shape-node")]["config"] == {
        "image": "microsandbox/node", "memory": 512, "cpus": 1}
    assert by[("sandbox.repl.run", "shape")] == {"sandbox": "shape", "language": "python", "code": "print(42)"}
    assert by[("sandbox.repl.run", "shape-node")]["language"] == "nodejs"
    assert by[("sandbox.command.run", "shape")] == {"sandbox": "shape", "command": "echo", "args": ["hi"], "timeout": 7}
    assert by[("sandbox.metrics.get", "shape")] == {"sandbox": "shape"}
    assert by[("sandbox.exec.stream", "shape")] == {"sandbox": "shape", "command": "sh", "args": ["-c", "x"],
                                                     "env": ["K=V"], "cwd": "/tmp", "timeout": 3, "stdin": True}
    stdin = [c["params"] for c in calls if c["method"] == "sandbox.exec.stdin"]
    assert stdin == [{"exec": "e1", "data": "abc"}, {"exec": "e1", "data_base64": "AAE="},
                     {"exec": "e1", "eof": True}]
    assert by[("sandbox.exec.signal", "e1")] == {"exec": "e1", "signal": "SIGINT"}
    assert by[("sandbox.stop", "shape")] == {"sandbox": "shape"}
    posts = [r for r in capture.requests if r[0] == "POST"]
    for _, path, headers, _ in posts:
        assert path == "/api/v1/rpc"
    assert posts[0][2]["Authorization"] == "Bearer msb_k"
    assert posts[0][2]["Content-Type"] == "application/json"
    puts = [r for r in capture.requests if r[0] == "PUT"]
    assert puts[0][1] == "/api/v1/sandbox/file?sandbox=shape&path=%2Ftmp%2Fw&mode=600"
    assert puts[0][3] == "héllo".encode()
    assert puts[0][2]["Expect"] == "100-continue"
    assert puts[1][3] == b"0123456789" and "path=%2Ftmp%2Fu" in puts[1][1]
    gets = [r for r in capture.requests if r[0] == "GET"]
    assert gets[0][1] == "/api/v1/sandbox/file?sandbox=shape&path=%2Ftmp%2Fr"

    # The same bodies, to the real server: accepted by its parser (it
    # answers "not available", anything but that is a refusal).
    for c in calls:
        if c["method"] in ("sandbox.exec.stdin", "sandbox.exec.signal"):
            expected_status = 500  # no such exec: the backend answers
        else:
            expected_status = 500
        status, reply = proto_server.rpc(c["method"], c["params"])
        text = json.dumps(reply)
        assert status == expected_status and UNAVAILABLE in text, (c, status, reply)


def test_output_is_streamed_as_it_comes(capture):
    """The first output reaches the caller while the process still runs: the
    capture server's process only exits after the client answered it on
    stdin."""
    async def body():
        sb = started(capture.url)
        async with await sb.command.stream("interactive", stdin=True) as proc:
            seen = []
            async for out in proc:
                seen.append(out.text)
                if out.text == "ready\n":
                    await proc.write("ping\n")
        assert seen == ["ready\n", "got ping\n"] and proc.exit_code == 0 and not proc.timed_out

    run(body())


def test_endless_stream_event_is_refused(capture):
    async def body():
        proc = await started(capture.url).command.stream("flood")
        with pytest.raises(msb.ProtocolError, match="stream event is over 16777216 bytes"):
            async for _ in proc:
                pass

    run(body())


# ---- upstream code, packaging, README ------------------------------------------------------------


UPSTREAM_STYLE = '''
import asyncio
from microsandbox import PythonSandbox

async def main():
    try:
        async with PythonSandbox.create(name="upstream-code") as sb:
            exec = await sb.run("name = 'Python'")
            exec = await sb.run("print(f'Hello {name}!')")
            print(await exec.output())
            cmd = await sb.command.run("ls", ["-la", "/"], timeout=30)
            print(cmd.exit_code, cmd.success, await cmd.error())
            print(await sb.metrics.cpu(), await sb.metrics.memory(), await sb.metrics.is_running())
    except RuntimeError as e:
        print("RuntimeError:", e)

asyncio.run(main())
'''


@pytest.mark.parametrize("which", ["vm", "unavailable"])
def test_upstream_code_runs_with_only_the_import_changed(dev_server, proto_server, tmp_path, which):
    """Code in upstream's README style runs on real sandboxes; with sandboxes
    unavailable it ends in a RuntimeError that carries the server's message
    (upstream's SDK raised RuntimeError too)."""
    server = dev_server if which == "vm" else proto_server
    script = tmp_path / "upstream.py"
    script.write_text(UPSTREAM_STYLE)
    env = dict(os.environ, MSB_SERVER_URL=server.url, PYTHONPATH=str(SDK_DIR))
    env.pop("MSB_API_KEY", None)
    r = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=VM_TIMEOUT + scaled(300))
    assert r.returncode == 0, r.stderr
    if which == "vm":
        assert "Hello Python!" in r.stdout and "RuntimeError" not in r.stdout, r.stdout
    else:
        assert r.stdout.strip() == f"RuntimeError: Failed to start sandbox: {UNAVAILABLE}"


def test_pip_install(tmp_path):
    """`pip install ./sdk/python` offline (Debian's setuptools, no PyPI)."""
    target = tmp_path / "site"
    # setuptools builds inside the source directory: install from a copy so
    # that concurrent runs do not share (or leave) build output in the tree
    src = tmp_path / "src"
    shutil.copytree(SDK_DIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        "--no-deps", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=scaled(180),
                       env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "microsandbox" / "py.typed").exists()
    r = subprocess.run([sys.executable, "-c", "import microsandbox, sys; print(microsandbox.__file__, "
                        "microsandbox.__version__)"], env=dict(os.environ, PYTHONPATH=str(target)),
                       cwd=tmp_path, capture_output=True, text=True, timeout=scaled(30))
    assert r.returncode == 0 and str(target) in r.stdout and "0.2.0" in r.stdout, r.stderr


def test_typed(tmp_path):
    """py.typed is honest: mypy --strict passes on the package and on a user
    script that uses its API (and catches a misuse)."""
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed (scripts/deps.d/sdk.txt lists python3-mypy)")
    user = tmp_path / "user.py"
    user.write_text(
        "from microsandbox import PythonSandbox, CommandExecution, Timeout\n"
        "async def f() -> int:\n"
        "    async with PythonSandbox.create(name='t') as sb:\n"
        "        r: CommandExecution = await sb.command.run('ls', ['-l'], timeout=5)\n"
        "        out: str = await (await sb.run('1', timeout=2.5)).output()\n"
        "        return r.exit_code + len(out)\n")
    bad = tmp_path / "bad.py"
    bad.write_text("from microsandbox import PythonSandbox\n"
                   "async def f(sb: PythonSandbox) -> str:\n"
                   "    return (await sb.command.run('ls')).exit_code\n")
    cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache")]
    env = dict(os.environ, MYPYPATH=str(SDK_DIR))
    r = subprocess.run([*cmd, str(SDK_DIR / "microsandbox"), str(user)], env=env, capture_output=True,
                       text=True, timeout=scaled(300))
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([*cmd, str(bad)], env=env, capture_output=True, text=True, timeout=scaled(300))
    assert r.returncode == 1 and 'Incompatible return value type (got "int", expected "str")' in r.stdout


def readme_block(path, lang):
    text = Path(path).read_text()
    m = re.search(rf"## Quick start\n.*?```{lang}\n(.*?)```", text, re.S)
    assert m, f"no {lang} quick start in {path}"
    return m.group(1)


def test_readme_quick_start(dev_server, tmp_path):
    code = readme_block(SDK_DIR / "README.md", "python")
    (tmp_path / "quick.py").write_text(code)
    env = dict(os.environ, MSB_SERVER_URL=dev_server.url, PYTHONPATH=str(SDK_DIR))
    env.pop("MSB_API_KEY", None)
    r = subprocess.run([sys.executable, "quick.py"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=VM_TIMEOUT + scaled(600))
    if not sandboxes_available(dev_server):
        assert r.returncode != 0 and UNAVAILABLE in r.stderr, r.stderr
        pytest.skip("SANDBOXES UNAVAILABLE: the quick start reached the server and got "
                    f"'{UNAVAILABLE}'; its output is checked once sandboxes exist")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:3] == ["42", "0 hello", "True"]


# ---- the full path (needs sandboxes) ------------------------------------------------------------------


GUEST_LISTENER = ("import socket\n"
                  "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  "s.bind(('0.0.0.0', 8080)); s.listen(1)\n"
                  "c, _ = s.accept(); c.sendall(b'from-guest\\n'); c.close(); s.close()\n")


def test_agent_script(dev_server, tmp_path):
    """The same agent script as the JavaScript and C tests.  Its sandbox also gets
    start(volumes=, ports=) as upstream's SDK sends them (one VM for both): the volume
    is mounted (a file the host wrote is read in the guest, one the guest writes
    appears on the host) and a guest listener (a REPL run: no second python start)
    answers on the host port (a protocol where the server speaks first)."""
    need_sandboxes(dev_server)
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in.txt").write_text("from-host\n")
    hport = free_port()

    async def fetch_from_guest():
        data, end = b"", time.monotonic() + scaled(120)
        while not data and time.monotonic() < end:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", hport),
                                              scaled(30))
                data = await asyncio.wait_for(r.readline(), scaled(60))
                w.close()
            except (OSError, asyncio.TimeoutError):
                pass
            if not data:  # not listening yet: the forwarder closed the connection
                await asyncio.sleep(1)
        return data

    async def body():
        async with msb.PythonSandbox.create(server_url=dev_server.url, name="sdk-py-agent",
                                            image=PYTHON_IMAGE, timeout=VM_TIMEOUT,
                                            volumes=[f"{vol}:/data"],
                                            ports=[f"{hport}:8080"]) as sb:
            await sb.run("x = 6 * 7")
            ex = await sb.run("print(x)")
            assert await ex.output() == "42" and not ex.has_error()
            cmd = await sb.command.run("echo", ["hello"])
            assert (cmd.exit_code, cmd.success, await cmd.output()) == (0, True, "hello")
            m = await sb.metrics.all()
            assert m["name"] == "sdk-py-agent" and m["running"] is True
            assert await sb.metrics.is_running() is True
            # beyond upstream
            err = await sb.run("1/0")
            assert err.has_error() and "ZeroDivisionError" in await err.error()
            with pytest.raises(msb.Timeout):
                await sb.run("while True: pass", timeout=2)
            proc = await sb.command.stream("sh", ["-c", "read l; echo got $l; echo e >&2; exit 3"],
                                           stdin=True)
            await proc.write("hi\n")
            await proc.close_stdin()
            assert await proc.wait(timeout=scaled(60)) == 3
            assert proc.stdout() == "got hi\n" and proc.stderr() == "e\n"
            await sb.files.write("/tmp/a.txt", "hello")
            assert await sb.files.read("/tmp/a.txt") == b"hello"
            names = {e.name: e for e in await sb.files.list("/tmp")}
            assert names["a.txt"].type == "file" and names["a.txt"].size == 5
            blob = tmp_path / "blob"
            blob.write_bytes(os.urandom(5 * 1024 * 1024))
            await sb.files.upload(blob, "/tmp/blob")
            await sb.files.download("/tmp/blob", tmp_path / "back")
            assert (tmp_path / "back").read_bytes() == blob.read_bytes()
            with pytest.raises(msb.FileNotFound):
                await sb.files.read("/no/such/file")
            # the volume and the port
            cmd = await sb.command.run("sh", ["-c", "cat /data/in.txt && echo from-guest > "
                                                    "/data/out.txt"])
            assert (cmd.exit_code, await cmd.output()) == (0, "from-host"), await cmd.error()
            assert (vol / "out.txt").read_text() == "from-guest\n"
            listener = asyncio.ensure_future(sb.run(GUEST_LISTENER, timeout=scaled(180)))
            data = await fetch_from_guest()
            ex = await listener
            assert not ex.has_error(), await ex.error()
            assert data == b"from-guest\n", "nothing came back through config.ports"
        assert not sb.is_started
        with pytest.raises(msb.NotFound):
            await started(dev_server.url, name="sdk-no-such-box").command.run("true")
        # stopped: nothing listens on the port any more
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", hport), timeout=scaled(30)).close()

    run(body())
