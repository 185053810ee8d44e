"""The REAL `msb server` binary over raw HTTP on a loopback port: health, API
keys, the JSON-RPC envelope and upstream's error bodies, bad and oversized
requests (the server keeps serving after each), 20 concurrent clients, MCP
plain POSTs, the CLI verbs (start -d, status, keygen, stop) and SIGTERM.

These protocol tests run the server with MSB_SERVER_BACKEND=unavailable (no
VMs booted), so every sandbox method must answer 500 "sandboxes are not
available in this build yet" (never a fake result).  The SDK tests
(test_sdk_*.py) drive the same server with real VMs."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, scaled

MSB = BIN / "msb"
UNAVAILABLE = "sandboxes are not available in this build yet"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_token(key, exp, iat=None, header=None):
    """An API key made here, independently of the server's code."""
    h = b64url(json.dumps(header or {"typ": "JWT", "alg": "HS256"}).encode())
    c = b64url(json.dumps({"exp": exp, "iat": iat if iat is not None else int(time.time())}).encode())
    sig = hmac.new(key.encode(), f"{h}.{c}".encode(), hashlib.sha256).digest()
    return f"msb_{h}.{c}.{b64url(sig)}"


class Server:
    """One foreground `msb server start` with its own MICROSANDBOX_HOME;
    backend "vm" boots real sandboxes, "unavailable" none; env: more
    environment for the server."""

    def __init__(self, home, *args, dev=False, backend="unavailable", env=None):
        self.home = home
        self.port = free_port()
        self.env = dict(os.environ, MICROSANDBOX_HOME=str(home), MSB_LOG="info",
                        MSB_SERVER_BACKEND=backend, **(env or {}))
        cmd = [str(MSB), "server", "start", "--port", str(self.port), *args]
        if dev:
            cmd.append("--dev")
        self.log = open(home / "fg.log", "wb")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + scaled(10)
        while time.time() < deadline:
            try:
                if self.request("GET", "/api/v1/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise AssertionError("server did not come up: " + (home / "fg.log").read_text())
        self.key = None if dev else (home / "server.key").read_text().strip()

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=scaled(timeout))
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def token(self, expire="1h"):
        out = subprocess.run([str(MSB), "server", "keygen", "--expire", expire], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        return out.splitlines()[0].removeprefix("Token: ")

    def rpc(self, method, params=None, id=1, token=None, path="/api/v1/rpc"):
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        if id is not None:
            msg["id"] = id
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, hdrs, body = self.request("POST", path, msg, headers)
        return status, json.loads(body) if body else None

    def healthy(self):
        status, _, body = self.request("GET", "/api/v1/health")
        return status == 200 and json.loads(body) == {"message": "Service is healthy"}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


def test_health(server):
    status, headers, body = server.request("GET", "/api/v1/health")
    assert status == 200
    assert json.loads(body) == {"message": "Service is healthy"}
    assert headers["Content-Type"] == "application/json"
    assert server.request("GET", "/no/such/route")[0] == 404


def test_auth_cases(server):
    call = {"jsonrpc": "2.0", "method": "sandbox.stop", "params": {"sandbox": "a"}, "id": 1}

    def post(headers):
        status, _, body = server.request("POST", "/api/v1/rpc", call, headers)
        return status, json.loads(body)

    invalid_credentials = (401, {"error": "Invalid credentials", "code": 1001})
    invalid_token = (401, {"error": "Invalid or expired token", "code": 1004})
    assert post({}) == invalid_credentials
    assert post({"Authorization": "Bearer nope"}) == invalid_credentials
    assert post({"Authorization": "Basic dXNlcjpwdw=="}) == invalid_credentials
    good = server.token()
    assert good.startswith("msb_")
    assert post({"Authorization": good[:-2] + ("AA" if good[-2:] != "AA" else "BB")}) == invalid_token
    assert post({"Authorization": make_token("not-the-key", int(time.time()) + 600)}) == invalid_token
    assert post({"Authorization": make_token(server.key, int(time.time()) - 3600)}) == invalid_token
    assert post({"Authorization": make_token(server.key, int(time.time()) + 600,
                                             header={"alg": "none"})}) == invalid_token
    # A valid key (with or without Bearer, made by keygen or independently)
    # reaches the method, which has no sandboxes to drive.
    for h in ({"Authorization": good}, {"Authorization": "Bearer " + good},
              {"Authorization": make_token(server.key, int(time.time()) + 600)},
              {"Proxy-Authorization": "Bearer " + good, "Authorization": "garbage"}):
        assert post(h) == (500, {"error": UNAVAILABLE, "code": 5002}), h
    # Proxy-Authorization is read first even when Authorization is good.
    assert post({"Proxy-Authorization": "Bearer msb_x.y.z", "Authorization": good}) == invalid_token
    # MCP is behind the same keys.
    status, _, _ = server.request("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert status == 401
    assert server.healthy()


def test_envelope_and_upstream_errors(server):
    tok = server.token()
    auth = {"Authorization": f"Bearer {tok}"}
    # Unknown method: 404 + -32601, id echoed.
    assert server.rpc("sandbox.fly", {}, id="abc", token=tok) == (404, {
        "jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found: sandbox.fly"},
        "id": "abc"})
    # Wrong jsonrpc version: 400 + -32600.
    status, _, body = server.request("POST", "/api/v1/rpc",
                                     {"jsonrpc": "1.0", "method": "sandbox.stop", "id": 5}, auth)
    assert status == 400
    assert json.loads(body)["error"]["code"] == -32600 and json.loads(body)["id"] == 5
    # Validation failures: 400 {"error","code":2001}, before any sandbox is touched.
    for params in ({"sandbox": "-bad"}, {"sandbox": 5}, {"sandbox": "a" * 64},
                   {"sandbox": "a", "config": {"memory": "lots"}},
                   {"sandbox": "a", "config": {"cpus": 1.5}},
                   {"sandbox": "a", "config": {"volumes": "x"}}):
        status, body = server.rpc("sandbox.start", params, token=tok)
        assert status == 400 and body["code"] == 2001, (params, body)
    status, body = server.rpc("sandbox.repl.run", {"sandbox": "a", "language": "cobol", "code": "1"},
                              token=tok)
    assert status == 400 and body["code"] == 2001
    # Unknown params (old clients' namespace) are ignored; no id -> none back.
    for method, params in (("sandbox.start", {"sandbox": "a", "namespace": "default",
                                              "config": {"image": "microsandbox/python"}}),
                           ("sandbox.stop", {"sandbox": "a", "namespace": "default"}),
                           ("sandbox.repl.run", {"sandbox": "a", "language": "python", "code": "1+1"}),
                           ("sandbox.command.run", {"sandbox": "a", "command": "true"}),
                           ("sandbox.metrics.get", {"namespace": "*"})):
        assert server.rpc(method, params, id=None, token=tok) == (
            500, {"error": UNAVAILABLE, "code": 5002}), method
    # This project's methods: JSON-RPC errors, same clear message.
    status, body = server.rpc("sandbox.list", None, id=9, token=tok)
    assert status == 500 and body["error"]["message"] == UNAVAILABLE and body["id"] == 9
    # The HEAD SDKs' paths.
    for path, params in (("/api/v1/sandbox/start", {"sandbox": "a"}),
                         ("/api/v1/sandbox/stop", {"sandbox": "a"}),
                         ("/api/v1/sandbox/command/run", {"sandbox": "a", "command": "ls"})):
        assert server.rpc("ignored", params, id=None, token=tok, path=path) == (
            500, {"error": UNAVAILABLE, "code": 5002}), path
    assert server.healthy()


def test_bad_requests_keep_the_server_serving(server):
    tok = server.token()
    auth = {"Authorization": f"Bearer {tok}"}
    cases = [
        ("malformed JSON", {"Content-Type": "application/json"}, b'{"jsonrpc": "2.0", "meth', 400),
        ("not JSON at all", {"Content-Type": "application/json"}, b"\x00\xff\xfe", 400),
        ("wrong content type", {"Content-Type": "text/plain"}, b'{"jsonrpc":"2.0","method":"x"}', 415),
        ("no content type", {}, b'{"jsonrpc":"2.0","method":"x"}', 415),
        ("an array", {"Content-Type": "application/json"}, b"[]", 422),
        ("method not a string", {"Content-Type": "application/json"}, b'{"jsonrpc":"2.0","method":1}', 422),
        ("deep nesting", {"Content-Type": "application/json"}, b"[" * 100000 + b"]" * 100000, 400),
    ]
    for name, headers, body, want in cases:
        status, _, _ = server.request("POST", "/api/v1/rpc", body, {**headers, **auth}, timeout=30)
        assert status == want, name
        assert server.healthy(), name
    # Oversized (3 MiB > 2 MiB): 413 is answered while the client still sends.
    body = b" " * (3 << 20)
    head = (f"POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    assert send_and_read(server.port, head, body).startswith(b"HTTP/1.1 413")
    assert server.healthy()
    assert send_and_read(server.port, head.replace(b"/api/v1/rpc", b"/mcp"), body).startswith(b"HTTP/1.1 413")
    assert server.healthy()


def send_and_read(port, head, body):
    """Sends head+body while reading the reply, as a client must when the
    server answers before the body is complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(10)) as s:
        s.sendall(head)
        out = []

        def reader():
            try:
                out.append(s.recv(65536))
            except OSError as e:
                out.append(repr(e).encode())

        t = threading.Thread(target=reader)
        t.start()
        try:
            s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        t.join(scaled(10))
        return out[0] if out else b""


def raw(port, data, read=True, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(timeout)) as s:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        return out


def test_malformed_http_and_chunked_oversize(server):
    tok = server.token()
    # Not HTTP at all.
    reply = raw(server.port, b"GARBAGE\r\n\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
    assert server.healthy()
    # A header larger than the connection's memory.
    reply = raw(server.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 +
                b"\r\n\r\n")
    assert reply == b"" or reply.split(b" ")[1] in (b"400", b"413", b"431")
    assert server.healthy()
    # A chunked body that grows past the limit is cut off with 413.
    head = (f"POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"
    reply = send_and_read(server.port, head, chunk * 4 + b"0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    # A declared Content-Length over the limit is refused before the body.
    reply = raw(server.port, (f"POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                              "Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n").encode())
    assert reply.startswith(b"HTTP/1.1 413")
    # A client that connects and says nothing does not block anyone.
    idle = socket.create_connection(("127.0.0.1", server.port))
    try:
        assert server.healthy()
    finally:
        idle.close()
    assert server.healthy()


def test_file_routes(server):
    tok = server.token()
    auth = {"Authorization": f"Bearer {tok}"}
    path = "/api/v1/sandbox/file?sandbox=box&path=/tmp/x"
    assert server.request("PUT", path, b"data")[0] == 401
    assert server.request("GET", path)[0] == 401
    # Bad arguments are refused before any sandbox is asked.
    for bad in ("/api/v1/sandbox/file?sandbox=box", "/api/v1/sandbox/file?sandbox=-x&path=/a",
                "/api/v1/sandbox/file?sandbox=box&path=relative",
                "/api/v1/sandbox/file?sandbox=box&path=/a&mode=99"):
        status, _, body = server.request("PUT", bad, b"data", auth)
        assert status == 400 and json.loads(body)["error"]["code"] == -32602, bad
    # A large upload is answered at once, before its body, when no sandbox
    # can take it (a client reading while it sends sees the reply).
    status, _, body = server.request("PUT", path, b"data", auth)
    assert status == 500 and json.loads(body)["error"]["message"] == UNAVAILABLE
    head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            f"Content-Length: {8 << 20}\r\n\r\n").encode()
    reply = send_and_read(server.port, head, b"\0" * (8 << 20))
    assert reply.startswith(b"HTTP/1.1 500") and UNAVAILABLE.encode() in reply
    status, _, body = server.request("GET", path, None, auth)
    assert status == 500 and json.loads(body)["error"]["message"] == UNAVAILABLE
    assert server.request("DELETE", path, None, auth)[0] == 405
    assert server.healthy()


def test_twenty_concurrent_clients(server):
    tok = server.token()
    errors, done = [], []

    def client(i):
        try:
            for j in range(10):
                assert server.healthy()
                status, body = server.rpc("sandbox.metrics.get", {"sandbox": f"c{i}"}, id=j, token=tok)
                assert (status, body) == (500, {"error": UNAVAILABLE, "code": 5002})
                status, body = server.rpc("sandbox.nope", {}, id=f"{i}-{j}", token=tok)
                assert status == 404 and body["id"] == f"{i}-{j}"
            done.append(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {e!r}")

    def counts():
        pid = server.proc.pid
        return (len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd")))

    baseline = counts()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    assert not errors, errors
    assert sorted(done) == list(range(20))
    print(f"20 clients x 30 requests in {time.time() - t0:.2f} s")
    # Every connection's thread and socket are gone once its client is.
    deadline = time.time() + scaled(5)
    while counts() != baseline and time.time() < deadline:
        time.sleep(0.05)
    assert counts() == baseline


def test_mcp_plain_post(server):
    tok = server.token()
    auth = {"Authorization": f"Bearer {tok}"}
    status, headers, body = server.request("POST", "/mcp", {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2024-11-05", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "0"}}}, auth)
    assert status == 200
    result = json.loads(body)["result"]
    assert result["protocolVersion"] == "2024-11-05"
    assert result["serverInfo"]["name"] == "microsandbox-server"
    assert len(headers["Mcp-Session-Id"]) == 32
    status, _, body = server.request("POST", "/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"}, auth)
    assert (status, body) == (200, b"")
    status, _, body = server.request("POST", "/mcp", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, auth)
    tools = {t["name"]: t for t in json.loads(body)["result"]["tools"]}
    assert {"sandbox_start", "sandbox_stop", "sandbox_run_code", "sandbox_run_command",
            "sandbox_get_metrics"} <= set(tools)
    assert tools["sandbox_start"]["inputSchema"]["required"] == ["sandbox"]
    status, _, body = server.request("POST", "/mcp", {
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "sandbox_start", "arguments": {"sandbox": "py"}}}, auth)
    result = json.loads(body)["result"]
    assert result["isError"] is True and UNAVAILABLE in result["content"][0]["text"]
    assert server.healthy()


def test_sigterm_stops_cleanly(tmp_path):
    s = Server(tmp_path)
    pid_file = tmp_path / "server.pid"
    assert int(pid_file.read_text()) == s.proc.pid
    # A connection left open must not keep the server from stopping.
    idle = socket.create_connection(("127.0.0.1", s.port))
    t0 = time.time()
    rc = s.stop()
    idle.close()
    assert rc == 0
    assert time.time() - t0 < scaled(5)
    assert not pid_file.exists()
    assert "msb server stopped" in (tmp_path / "fg.log").read_text()


def run_msb(home, *args):
    return subprocess.run([str(MSB), *args], env=dict(os.environ, MICROSANDBOX_HOME=str(home)),
                          capture_output=True, text=True, timeout=scaled(30))


def test_cli_detached_lifecycle(tmp_path):
    port = free_port()
    r = run_msb(tmp_path, "server", "status")
    assert "not running" in r.stdout
    r = run_msb(tmp_path, "server", "stop")
    assert r.returncode == 4 and "not running" in r.stderr
    r = run_msb(tmp_path, "server", "keygen")
    assert r.returncode == 3 and "server.key" in r.stderr
    r = run_msb(tmp_path, "server", "start", "--port", str(port), "-d", "-k", "fixed-key")
    assert r.returncode == 0, r.stderr
    try:
        assert (tmp_path / "server.key").read_text().strip() == "fixed-key"
        assert oct((tmp_path / "server.key").stat().st_mode & 0o777) == "0o600"
        pid = int((tmp_path / "server.pid").read_text())
        status = run_msb(tmp_path, "server", "status").stdout
        assert status.splitlines() == [f"msb server is running (pid {pid})", "sandboxes: 0"], status
        r = run_msb(tmp_path, "server", "start", "--port", str(port), "-d")
        assert r.returncode == 0 and "already running" in r.stdout
        r = run_msb(tmp_path, "server", "keygen", "--expire", "2d")
        lines = r.stdout.splitlines()
        assert lines[0].startswith("Token: msb_") and lines[1].startswith("Token expires: ")
        token = lines[0].removeprefix("Token: ")
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["exp"] - claims["iat"] == 2 * 86400
        r = run_msb(tmp_path, "server", "keygen", "--expire", "7x")
        assert r.returncode == 2
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/api/v1/rpc", body=json.dumps({"jsonrpc": "2.0", "method": "sandbox.list", "id": 1}),
                     headers={"Content-Type": "application/json", "Authorization": token})
        reply = conn.getresponse()  # authorised; the real (VM) backend has none running
        assert (reply.status, json.loads(reply.read())["result"]) == (200, {"sandboxes": []})
        conn.close()
        assert "listening" in run_msb(tmp_path, "server", "log").stdout
        r = run_msb(tmp_path, "server", "log", "nobox")
        assert r.returncode == 3 and "projects/.menv/log/Sandboxfile/nobox.log" in r.stderr, r.stderr
        r = run_msb(tmp_path, "server", "log", "nobox", "-p", str(tmp_path / "elsewhere"))
        assert r.returncode == 3 and "elsewhere/.menv/log/Sandboxfile/nobox.log" in r.stderr
        # A second server on the same port says what to do.
        r = run_msb(tmp_path / "other", "server", "start", "--port", str(port))
        assert r.returncode != 0 and "in use" in r.stderr
    finally:
        r = run_msb(tmp_path, "server", "stop")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert not (tmp_path / "server.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_dev_mode_needs_no_key_and_reset_key(tmp_path):
    s = Server(tmp_path, dev=True)
    try:
        status, body = s.rpc("sandbox.stop", {"sandbox": "a"})
        assert (status, body) == (500, {"error": UNAVAILABLE, "code": 5002})
    finally:
        s.stop()
    s = Server(tmp_path)
    first = s.key
    s.stop()
    s = Server(tmp_path, "-r")
    try:
        assert s.key != first and len(s.key) == 32
        status, _, _ = s.request("POST", "/api/v1/rpc", {"jsonrpc": "2.0", "method": "sandbox.list"},
                                 {"Authorization": make_token(first, int(time.time()) + 600)})
        assert status == 401
    finally:
        s.stop()


def test_host_option(tmp_path):
    """--host takes IP literals (IPv6 too) and refuses names with what to do."""
    port = free_port()
    r = run_msb(tmp_path, "server", "start", "--host", "localhost", "--port", str(port), "--dev")
    assert r.returncode == 2 and "--host 'localhost' is not an IP address" in r.stderr
    try:
        socket.create_connection(("::1", 0), timeout=1)
    except OSError as e:
        if e.errno in (97, 99):  # EAFNOSUPPORT, EADDRNOTAVAIL: no IPv6 loopback here
            pytest.skip("LOUD SKIP: no IPv6 loopback on this host")
    env = dict(os.environ, MICROSANDBOX_HOME=str(tmp_path), MSB_SERVER_BACKEND="unavailable")
    r = subprocess.run([str(MSB), "server", "start", "--host", "::1", "--port", str(port), "--dev",
                        "-d"], env=env, capture_output=True, text=True, timeout=scaled(30))
    assert r.returncode == 0, r.stderr
    try:
        assert f"msb server started on [::1]:{port} " in r.stdout
        conn = http.client.HTTPConnection("::1", port, timeout=10)
        conn.request("GET", "/api/v1/health")
        assert conn.getresponse().status == 200
        conn.close()
        with pytest.raises(OSError):  # not on IPv4
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert "msb server is running" in run_msb(tmp_path, "server", "status").stdout
    finally:
        assert run_msb(tmp_path, "server", "stop").returncode == 0
