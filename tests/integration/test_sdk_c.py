"""libmicrosandbox (include/microsandbox.h, src/client) against the REAL `msb
server`: the exported ABI (exactly the header's functions, versioned), the
static library, every operation through sdk/c/tests/probe.c (server down,
API keys, sandboxes unavailable, bad parameters), the requests it sends
(recorded, then replayed to the real server), and the README's quick start
compiled as written.  The agent run skips loudly while sandboxes are
unavailable."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import BUILD, TOP, scaled
from test_sdk_python import (  # noqa: F401  (fixtures)
    ERROR_CASES,
    UNAVAILABLE,
    Capture,
    capture,
    VM_TIMEOUT,
    dev_server,
    down_url,
    proto_server,
    keyed_server,
    readme_block,
    replier,
    sandboxes_available,
)
from test_server_http import make_token

LIB = BUILD / "lib"
HEADER = TOP / "include" / "microsandbox.h"
CC = os.environ.get("CC", "cc")


def compile_c(src, out, static=False):
    cmd = [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{TOP / 'include'}", str(src), "-o", str(out)]
    if static:
        cmd += [str(LIB / "libmicrosandbox.a"), "-lcurl", "-ljansson", "-pthread"]
    else:
        cmd += [f"-L{LIB}", "-lmicrosandbox", f"-Wl,-rpath,{LIB}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(120))
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return out


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if not (LIB / "libmicrosandbox.so").exists():
        pytest.fail(f"{LIB}/libmicrosandbox.so is not built (make libmicrosandbox; `make all` builds it)")
    return compile_c(TOP / "sdk" / "c" / "tests" / "probe.c", tmp_path_factory.mktemp("c") / "probe")


def run_probe(probe, url, key, *args):
    r = subprocess.run([str(probe), url, key or "-", *args], capture_output=True, text=True,
                       errors="replace", timeout=scaled(120), env={k: v for k, v in os.environ.items()
                                                  if k not in ("MSB_API_KEY", "MSB_SERVER_URL")})
    assert r.returncode == 0, r.stderr
    ops = {}
    for line in r.stdout.splitlines():
        m = re.match(r"op (\w+) (-?\d+) (\w+) (\d+) (-?\d+) ?(.*)$", line)
        if m:
            ops[m.group(1)] = dict(rc=int(m.group(2)), status=m.group(3), http=int(m.group(4)),
                                   code=int(m.group(5)), msg=m.group(6))
    return ops, r.stdout


def test_exported_abi():
    """Exactly the header's functions, at version MICROSANDBOX_0; nothing internal."""
    declared = set(re.findall(r"\b(msbc_[a-z_]+)\(", HEADER.read_text()))
    declared -= {"msbc_output_fn"}
    out = subprocess.run(["nm", "-D", "--defined-only", str(LIB / "libmicrosandbox.so")],
                         capture_output=True, text=True, check=True).stdout
    exported = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "T":
            name, _, version = parts[2].partition("@@")
            exported[name] = version
    assert set(exported) == declared
    assert set(exported.values()) == {"MICROSANDBOX_0"}
    soname = subprocess.run(["objdump", "-p", str(LIB / "libmicrosandbox.so")], capture_output=True,
                            text=True, check=True).stdout
    assert re.search(r"SONAME\s+libmicrosandbox\.so\.0\b", soname)


def test_static_library_links_alone(tmp_path, proto_server):
    exe = compile_c(TOP / "sdk" / "c" / "examples" / "quickstart.c", tmp_path / "qs", static=True)
    r = subprocess.run([str(exe), proto_server.url], capture_output=True, text=True, timeout=scaled(60))
    assert r.returncode == 1
    assert r.stderr.strip() == f"start: Failed to start sandbox: {UNAVAILABLE} (server)"


def test_server_down(probe, down_url):
    ops, out = run_probe(probe, down_url, None, "all", "sdk-box", __file__)
    assert len(ops) == 13, out
    for op, o in ops.items():
        assert o["status"] == "unreachable", (op, o)
        assert f"cannot reach the microsandbox server at {down_url}" in o["msg"], (op, o)
        assert "msb server start" in o["msg"]


def test_api_keys(probe, keyed_server):
    url = keyed_server.url
    ops, _ = run_probe(probe, url, None, "start", "keyed")
    assert ops["start"] == dict(rc=-2, status="auth", http=401, code=1001,
                                msg="Failed to start sandbox: Invalid credentials")
    ops, _ = run_probe(probe, url, "msb_not.a.jwt", "start", "keyed")
    assert ops["start"]["status"] == "auth" and ops["start"]["code"] == 1004
    assert ops["start"]["msg"].endswith("Invalid or expired token")
    expired = make_token(keyed_server.key, exp=int(time.time()) - 3600)
    ops, _ = run_probe(probe, url, expired, "start", "keyed")
    assert ops["start"]["status"] == "auth" and ops["start"]["msg"].endswith("Invalid or expired token")
    ops, out = run_probe(probe, url, keyed_server.token(), "rpc", "sandbox.list", "{}")
    assert ops["rpc"]["rc"] == 0 or ops["rpc"]["msg"] == f"sandbox.list failed: {UNAVAILABLE}", out
    assert keyed_server.healthy()


def test_every_operation_reports_sandboxes_unavailable(probe, proto_server, tmp_path):
    up = tmp_path / "up.bin"
    up.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    ops, out = run_probe(probe, proto_server.url, None, "all", "sdk-box", str(up), str(tmp_path / "dl"))
    assert ops.pop("health")["rc"] == 0
    assert len(ops) == 13, out
    for op, o in ops.items():
        assert (o["rc"], o["status"], o["http"]) == (-9, "server", 500), (op, o)
        assert o["msg"].endswith(f": {UNAVAILABLE}"), (op, o)
        # upstream methods keep upstream's body; ours are JSON-RPC errors
        assert o["code"] == (5002 if op in ("start", "repl", "command", "metrics", "stop") else -32603), op
    assert not (tmp_path / "dl").exists() and not (tmp_path / "dl.part").exists()


def test_bad_parameters(probe, dev_server):
    ops, _ = run_probe(probe, dev_server.url, None, "start", "bad name")
    assert (ops["start"]["status"], ops["start"]["http"], ops["start"]["code"]) == ("invalid", 400, 2001)
    assert "Invalid sandbox name 'bad name'" in ops["start"]["msg"]
    ops, _ = run_probe(probe, dev_server.url, None, "read", "sdk-box", "relative")
    assert ops["file_read"]["status"] == "invalid" and "absolute path" in ops["file_read"]["msg"]
    ops, _ = run_probe(probe, dev_server.url, None, "big", "3")
    assert (ops["repl"]["status"], ops["repl"]["http"]) == ("invalid", 413)
    assert ops["repl"]["msg"] == "Failed to execute code: Failed to buffer the request body: length limit exceeded"
    ops, _ = run_probe(probe, dev_server.url, None, "rpc", "sandbox.nope", "{}")
    assert (ops["rpc"]["http"], ops["rpc"]["code"]) == (404, -32601)
    assert ops["rpc"]["msg"] == "sandbox.nope failed: Method not found: sandbox.nope"
    ops, _ = run_probe(probe, dev_server.url, None, "rpc", "sandbox.list", "{not json")
    assert ops["rpc"]["status"] == "usage"


def test_error_mapping(probe, replier):
    """Every error shape the server can send maps to its status, keeping the
    HTTP status, the server's code and its text."""
    for i, (status, _, text, _, cstatus) in enumerate(ERROR_CASES):
        ops, out = run_probe(probe, replier.url(i), None, "rpc", "sandbox.metrics.get", '{"sandbox":"x"}')
        o = ops["rpc"]
        assert o["status"] == cstatus, (i, out)
        assert o["msg"].startswith("sandbox.metrics.get failed: "), out
        if cstatus != "protocol":
            assert o["http"] == status, (i, out)
            doc = json.loads(text) if text.startswith("{") else None
            if doc is None:
                assert o["msg"].endswith(text)
            elif isinstance(doc["error"], str):
                assert o["msg"].endswith(doc["error"]) and o["code"] == doc["code"]
            else:
                assert o["msg"].endswith(doc["error"]["message"]) and o["code"] == doc["error"]["code"]
    url = replier.add(404, '{"jsonrpc":"2.0","error":{"code":-32001,"message":"/a: no such file"}}')
    ops, _ = run_probe(probe, url, None, "read", "sdk-box", "/a")
    assert ops["file_read"]["status"] == "not_found" and ops["file_read"]["msg"] == "Failed to read /a: /a: no such file"


def test_request_shapes(probe, capture, proto_server, tmp_path):
    up = tmp_path / "up.bin"
    up.write_bytes(b"0123456789")
    ops, out = run_probe(probe, capture.url, "msb_k", "all", "shape", str(up), str(tmp_path / "dl"))
    assert all(o["rc"] == 0 for o in ops.values()), out
    assert "result exit=-1 success=1 status=success stdout=[42] stderr=[]" in out
    assert "result exit=0 success=1 status= stdout=[hi] stderr=[]" in out
    assert "metrics running=1 cpu=1:1.5 mem=30 disk=4096" in out
    assert "output stdout 2 a\n" in out and "output stderr 1 \ufffd\n" in out  # one raw 0xff byte
    assert "exit id=e1 code=3 signal=0 timed_out=0" in out
    assert "read 10 file-bytes" in out
    assert 'list {"sandboxes":[{"name":"x"' in out
    assert (tmp_path / "dl").read_bytes() == b"file-bytes"
    calls = capture.rpc_calls()
    by = {c["method"]: c["params"] for c in calls}
    # volumes and ports as upstream's "HOST:GUEST" strings, passed through the extra config
    assert by["sandbox.start"] == {"sandbox": "shape", "config": {
        "envs": ["A=1"], "workdir": "/w", "volumes": ["./d:/d"], "ports": ["8080:80"],
        "image": "microsandbox/python", "memory": 256, "cpus": 2}}
    assert by["sandbox.repl.run"] == {"sandbox": "shape", "language": "python", "code": "print(42)", "timeout": 5.0}
    assert by["sandbox.command.run"] == {"sandbox": "shape", "command": "sh", "args": ["-c", "echo hi"], "timeout": 7.0}
    assert by["sandbox.metrics.get"] == {"sandbox": "shape"}
    assert by["sandbox.exec.stream"] == {"sandbox": "shape", "command": "sh", "args": ["-c", "echo hi"],
                                         "stdin": True, "timeout": 3.0}
    assert by["sandbox.exec.stdin"] == {"exec": "e1", "data_base64": "AAE=", "eof": True}
    assert by["sandbox.exec.signal"] == {"exec": "e1", "signal": 2}
    assert by["sandbox.list"] == {} and by["sandbox.stop"] == {"sandbox": "shape"}
    posts = [r for r in capture.requests if r[0] == "POST"]
    assert all(p[1] == "/api/v1/rpc" and p[2]["Authorization"] == "Bearer msb_k" for p in posts)
    puts = [r for r in capture.requests if r[0] == "PUT"]
    assert puts[0][1] == "/api/v1/sandbox/file?sandbox=shape&path=%2Ftmp%2Fw&mode=0600" and puts[0][3] == b"hello"
    assert puts[1][3] == b"0123456789" and "path=%2Ftmp%2Fup" in puts[1][1]
    # replayed to the real server: its validation accepts every call
    for c in calls:
        status, reply = proto_server.rpc(c["method"], c["params"])
        assert status == 500 and UNAVAILABLE in json.dumps(reply), (c, status, reply)


def test_output_is_streamed_as_it_comes(probe, capture):
    """The callback gets the first output while the process still runs (it
    exits only after the probe answered on stdin from a second client); the
    exec id is known before the first output."""
    ops, out = run_probe(probe, capture.url, None, "interactive")
    assert ops["stdin"]["rc"] == 0 and ops["stream"]["rc"] == 0, out
    assert out.index("output stdout 6 ready") < out.index("op stdin 0") < out.index("output stdout 9 got ping")
    assert "exit id=e1 code=0 timed_out=0" in out


def test_endless_stream_event_is_refused(probe, capture):
    ops, out = run_probe(probe, capture.url, None, "stream", "flood")
    assert ops["stream"]["status"] == "protocol", out
    assert ops["stream"]["msg"] == "a stream event is over 16777216 bytes"


def test_agent_script_readme_quick_start(dev_server, tmp_path):
    """The C quick start is the agent script: start a Python sandbox, keep a
    variable across two runs, run a command, read metrics, stop."""
    code = readme_block(TOP / "sdk" / "c" / "README.md", "c")
    assert code == (TOP / "sdk" / "c" / "examples" / "quickstart.c").read_text()
    (tmp_path / "quickstart.c").write_text(code)
    exe = compile_c(tmp_path / "quickstart.c", tmp_path / "quickstart")
    env = dict(os.environ, MSB_SERVER_URL=dev_server.url)
    env.pop("MSB_API_KEY", None)
    r = subprocess.run([str(exe)], env=env, capture_output=True, text=True,
                       timeout=VM_TIMEOUT + scaled(600))
    if not sandboxes_available(dev_server):
        assert r.returncode == 1 and UNAVAILABLE in r.stderr, r.stderr
        pytest.skip("SANDBOXES UNAVAILABLE: the C quick start (the agent script) reached the server "
                    f"and got '{UNAVAILABLE}'; its output is checked once sandboxes exist")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["42", "0 hello"] and lines[2].startswith("running=1 ")
