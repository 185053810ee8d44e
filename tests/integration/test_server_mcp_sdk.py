"""The official MCP TypeScript SDK client (@modelcontextprotocol/sdk from npm,
installed here into tests/integration/mcp_client) against the REAL msb server:
initialize over Streamable HTTP, tools/list, prompts, ping, tools/call, and
session termination.  With MSB_SERVER_BACKEND=unavailable tools/call must
report that sandboxes are not available; on real VMs the client starts a
sandbox, runs Python and a command, reads the output and stops it."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import BIN, TOP, need_kvm, scaled
from test_server_http import UNAVAILABLE, Server

VM_TIMEOUT = scaled(float(os.environ.get("MSB_VM_BOOT_TIMEOUT", "1500")))

CLIENT_DIR = __import__("pathlib").Path(__file__).resolve().parent / "mcp_client"


@pytest.fixture(scope="module")
def sdk():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed (scripts/deps.d/server.txt lists nodejs)")
    if not (CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        cmd = ["npm", "ci"] if (CLIENT_DIR / "package-lock.json").exists() else ["npm", "install"]
        r = subprocess.run([*cmd, "--no-audit", "--no-fund"], cwd=CLIENT_DIR,
                           capture_output=True, text=True, timeout=scaled(300))
        assert r.returncode == 0, f"npm could not install the MCP SDK:\n{r.stdout}\n{r.stderr}"
    return CLIENT_DIR / "client.mjs"


def run_client(sdk, url, token=None, timeout=60):
    r = subprocess.run(["node", str(sdk), url, *([token] if token else [])], cwd=CLIENT_DIR,
                       capture_output=True, text=True, timeout=scaled(timeout))
    assert r.returncode == 0, f"MCP SDK client failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def check(out, vms=False):
    assert out["serverInfo"]["name"] == "microsandbox-server"
    assert out["protocolVersion"] in ("2025-11-25", "2025-06-18", "2025-03-26")
    assert out["capabilities"]["tools"] == {"listChanged": False}
    assert len(out["sessionId"]) == 32
    assert out["tools"][:5] == ["sandbox_start", "sandbox_stop", "sandbox_run_code",
                                "sandbox_run_command", "sandbox_get_metrics"]
    assert {"sandbox_write_file", "sandbox_read_file"} <= set(out["tools"])
    assert out["schemas"]["sandbox_run_code"]["required"] == ["sandbox", "code", "language"]
    assert out["schemas"]["sandbox_start"]["properties"]["config"]["properties"]["image"]["enum"] == [
        "microsandbox/python", "microsandbox/node"]
    assert [p["name"] for p in out["prompts"]] == ["create_python_sandbox", "create_node_sandbox"]
    assert out["prompts"][0]["arguments"][0]["name"] == "sandbox_name"
    assert "sdk-box" in out["promptText"] and "microsandbox/python" in out["promptText"]
    calls = (out["start"], out["runCode"], out["runCommand"], out["stop"])
    if vms:
        for call in calls:
            assert call.get("isError") is not True, call
        texts = [c["content"][0]["text"] for c in calls]
        assert "Sandbox sdk-box started successfully" in texts[0]
        assert "2" in texts[1] and "hello" in texts[2], texts
        assert "Sandbox sdk-box stopped successfully" in texts[3]
    else:
        for call in calls:
            assert call["isError"] is True
            assert call["content"] == [{"type": "text", "text": f"Error: {UNAVAILABLE}"}]
    assert "-32602" in out["unknownTool"]
    assert out["terminated"] is None


def test_sdk_client_with_api_key(sdk, tmp_path):
    s = Server(tmp_path)
    try:
        check(run_client(sdk, f"http://127.0.0.1:{s.port}/mcp", s.token()))
        # Without a key the SDK's initialize is refused with 401.
        r = subprocess.run(["node", str(sdk), f"http://127.0.0.1:{s.port}/mcp"], cwd=CLIENT_DIR,
                           capture_output=True, text=True, timeout=scaled(60))
        assert r.returncode != 0 and "401" in r.stderr + r.stdout
        assert s.healthy()
    finally:
        assert s.stop() == 0


def test_sdk_client_dev_mode(sdk, tmp_path):
    s = Server(tmp_path, dev=True)
    try:
        check(run_client(sdk, f"http://127.0.0.1:{s.port}/mcp"))
    finally:
        assert s.stop() == 0


def test_sdk_client_on_real_sandboxes(sdk, tmp_path):
    """initialize, start a python sandbox, run Python, read the output, stop."""
    need_kvm()
    s = Server(tmp_path, dev=True, backend="vm")
    try:
        env = dict(os.environ, MICROSANDBOX_HOME=str(tmp_path), MSB_BUILD_DIR=str(BIN.parent))
        r = subprocess.run([str(TOP / "scripts" / "test-images"), "--import", "python"], env=env,
                           capture_output=True, text=True, timeout=scaled(1800))
        assert r.returncode == 0, r.stderr[-3000:]
        out = run_client(sdk, f"http://127.0.0.1:{s.port}/mcp", timeout=VM_TIMEOUT + 600)
        check(out, vms=True)
        print("MCP tool texts:", [c["content"][0]["text"] for c in
                                  (out["start"], out["runCode"], out["runCommand"], out["stop"])])
    finally:
        assert s.stop() == 0
