"""The JavaScript SDK (sdk/javascript): installed with `npm ci`, built with
tsc, its node:test suite (sdk/javascript/test) run against the REAL `msb
server` (a --dev one, a keyed one with keygen and expired tokens, and a port
where nothing listens); the requests it sends replayed to the real server;
the README's quick start run as written.  The agent script skips loudly
while the server reports sandboxes unavailable."""

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import BIN, TOP, scaled
from test_sdk_python import (  # noqa: F401  (fixtures)
    ERROR_CASES,
    UNAVAILABLE,
    VM_TIMEOUT,
    dev_server,
    down_url,
    proto_server,
    keyed_server,
    readme_block,
    replier,
    sandboxes_available,
)
from test_server_http import free_port, make_token

JS_DIR = TOP / "sdk" / "javascript"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The package built in a private copy (concurrent test runs must not
    rebuild or reinstall each other's tree): node_modules is the tree's when
    present, else `npm ci` into the copy."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed (scripts/deps.d/sdk.txt lists nodejs)")
    copy = tmp_path_factory.mktemp("js") / "microsandbox"
    shutil.copytree(JS_DIR, copy, ignore=shutil.ignore_patterns("node_modules", "dist"))
    if (JS_DIR / "node_modules" / "typescript" / "package.json").is_file():
        (copy / "node_modules").symlink_to(JS_DIR / "node_modules")
    else:
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=copy, capture_output=True,
                           text=True, timeout=scaled(300))
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout}\n{r.stderr}"
    r = subprocess.run(["npm", "run", "build"], cwd=copy, capture_output=True, text=True,
                       timeout=scaled(300))
    assert r.returncode == 0, f"tsc build failed:\n{r.stdout}\n{r.stderr}"
    for f in ("dist/esm/index.js", "dist/esm/index.d.ts", "dist/cjs/index.js", "dist/cjs/index.d.ts"):
        assert (copy / f).exists(), f
    return copy


def tap_counts(out):
    return {k: int(v) for k, v in re.findall(r"^# (pass|fail|skip(?:ped)?|tests) (\d+)$", out, re.M)}


def test_node_test_suite_against_the_real_server(built, proto_server, keyed_server, down_url, tmp_path):
    """Everything but the agent script, against the server without VMs
    (MSB_SERVER_BACKEND=unavailable): the "unavailable" checks run."""
    shapes = tmp_path / "shapes.json"
    available = sandboxes_available(proto_server)
    assert not available
    env = dict(os.environ, MSB_TEST_DEV_URL=proto_server.url, MSB_TEST_KEYED_URL=keyed_server.url,
               MSB_TEST_TOKEN=keyed_server.token(), MSB_TEST_DOWN_URL=down_url,
               MSB_TEST_EXPIRED_TOKEN=make_token(keyed_server.key, exp=int(time.time()) - 3600),
               # the agent script runs in test_agent_script
               MSB_TEST_SANDBOXES="0", MSB_TEST_AVAILABLE="1" if available else "0",
               MSB_TEST_SHAPES_OUT=str(shapes))
    env.pop("MSB_API_KEY", None)
    env.pop("MSB_SERVER_URL", None)
    r = subprocess.run(["node", "--test", "test/sdk.test.mjs"], cwd=built, env=env,
                       capture_output=True, text=True, timeout=scaled(300))
    counts = tap_counts(r.stdout)
    assert r.returncode == 0 and counts.get("fail") == 0, r.stdout[-6000:] + r.stderr[-3000:]
    skipped = counts.get("skipped", counts.get("skip"))
    # the agent script (test_agent_script runs it on VMs)
    assert skipped == 1, r.stdout[-3000:]
    assert counts["pass"] == counts["tests"] - skipped

    # What the SDK sent, to the real server: its validation accepts each call.
    calls = json.loads(shapes.read_text())
    assert {c["method"] for c in calls} >= {"sandbox.start", "sandbox.repl.run", "sandbox.command.run",
                                             "sandbox.metrics.get", "sandbox.exec.stream",
                                             "sandbox.exec.stdin", "sandbox.exec.signal",
                                             "sandbox.stop"}
    for c in calls:
        status, reply = proto_server.rpc(c["method"], c["params"])
        assert status == 500 and UNAVAILABLE in json.dumps(reply), (c, status, reply)
    assert proto_server.healthy() and keyed_server.healthy()


def test_agent_script(built, dev_server, tmp_path):
    """The agent script of the node:test suite, against real sandboxes; its sandbox also gets
    a volume and a port through start() (the guest reads and writes the host directory, a
    listener in its REPL answers on the host port; nothing does after the stop)."""
    if not sandboxes_available(dev_server):
        pytest.skip("SANDBOXES UNAVAILABLE: the server answers every sandbox method with "
                    f"'{UNAVAILABLE}'; the JavaScript agent script runs once the backend lands")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in.txt").write_text("from-host\n")
    hport = free_port()
    env = dict(os.environ, MSB_TEST_DEV_URL=dev_server.url, MSB_TEST_SANDBOXES="1",
               MSB_TEST_START_TIMEOUT=str(int(VM_TIMEOUT)), MSB_TEST_VOLUME=str(vol),
               MSB_TEST_HOST_PORT=str(hport))
    env.pop("MSB_API_KEY", None)
    r = subprocess.run(["node", "--test", "--test-name-pattern", "the agent script", "test/sdk.test.mjs"],
                       cwd=built, env=env, capture_output=True, text=True, timeout=VM_TIMEOUT + scaled(900))
    counts = tap_counts(r.stdout)
    assert r.returncode == 0 and counts.get("pass") == 1, r.stdout[-6000:] + r.stderr[-3000:]
    assert (vol / "out.txt").read_text() == "from-guest\n"
    with pytest.raises(OSError):  # stopped: nothing serves the port any more
        socket.create_connection(("127.0.0.1", hport), timeout=scaled(30)).close()


def test_readme_quick_start(built, dev_server, tmp_path):
    """The README's example, as written, importing the package by its name."""
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "microsandbox").symlink_to(built)
    (tmp_path / "quick.mjs").write_text(readme_block(built / "README.md", "js"))
    env = dict(os.environ, MSB_SERVER_URL=dev_server.url)
    env.pop("MSB_API_KEY", None)
    r = subprocess.run(["node", "quick.mjs"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=VM_TIMEOUT + scaled(600))
    if not sandboxes_available(dev_server):
        assert r.returncode != 0 and f"ServerError: Failed to start sandbox: {UNAVAILABLE}" in r.stderr, r.stderr
        pytest.skip("SANDBOXES UNAVAILABLE: the quick start reached the server and got "
                    f"'{UNAVAILABLE}'; its output is checked once sandboxes exist")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:3] == ["42", "0 hello", "true"]


# Code in the style of upstream's JavaScript SDK README (UPSTREAM-v0.2.md §6): a
# NodeSandbox by name, state kept across two runs, exec.output(), command.run
# with upstream's positional timeout, the metrics helpers, stop.  Only the
# import would differ from code written for upstream's package.
UPSTREAM_JS = """
import { NodeSandbox } from "microsandbox";

async function main() {
  const sb = await NodeSandbox.create({ name: "upstream-js" });
  try {
    let exec = await sb.run("var name = 'JavaScript'");
    exec = await sb.run("console.log(`Hello ${name}!`)");
    console.log(await exec.output());
    const cmd = await sb.command.run("ls", ["-la", "/"], 30);
    console.log(cmd.exitCode, cmd.success, JSON.stringify(await cmd.error()), (await cmd.output()).includes("etc"));
    const cpu = await sb.metrics.cpu();
    console.log(typeof cpu, (await sb.metrics.memory()) > 0, await sb.metrics.isRunning());
    console.log(JSON.stringify(Object.keys(await sb.metrics.all()).sort()));
  } finally {
    await sb.stop();
  }
}

main().catch(console.error);
"""


def test_upstream_javascript_code_runs_on_a_vm(built, dev_server, tmp_path):
    """Upstream's JavaScript README code on a real Node sandbox, through node."""
    if not sandboxes_available(dev_server):
        pytest.skip("SANDBOXES UNAVAILABLE: this test needs the VM backend")
    env = dict(os.environ, MICROSANDBOX_HOME=str(dev_server.home), MSB_BUILD_DIR=str(BIN.parent))
    r = subprocess.run([str(TOP / "scripts" / "test-images"), "--import", "node"], env=env,
                       capture_output=True, text=True, timeout=scaled(1800))
    assert r.returncode == 0, r.stderr[-3000:]
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "microsandbox").symlink_to(built)
    (tmp_path / "upstream.mjs").write_text(UPSTREAM_JS)
    env = dict(os.environ, MSB_SERVER_URL=dev_server.url)
    env.pop("MSB_API_KEY", None)
    r = subprocess.run(["node", "upstream.mjs"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=VM_TIMEOUT + scaled(600))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines() == [
        "Hello JavaScript!",
        '0 true "" true',
        "number true true",
        '["cpu_usage","disk_usage","memory_usage","name","running"]',
    ], r.stdout
    assert "upstream-js" not in json.dumps(dev_server.rpc("sandbox.list", {})[1])


def test_commonjs_require(built, proto_server, tmp_path):
    """require("microsandbox") works too, with the same typed errors."""
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "microsandbox").symlink_to(built)
    (tmp_path / "t.cjs").write_text(
        'const { PythonSandbox, ServerError } = require("microsandbox");\n'
        "PythonSandbox.create({ serverUrl: process.argv[2], name: 'cjs' })\n"
        "  .then(() => console.log('started'), (e) => console.log(e instanceof ServerError, e.serverMessage));\n")
    r = subprocess.run(["node", "t.cjs", proto_server.url], cwd=tmp_path, capture_output=True, text=True,
                       timeout=scaled(60))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"true {UNAVAILABLE}"


MAPPING_SCRIPT = """
import * as msb from "microsandbox";
const out = [];
for (const url of JSON.parse(process.argv[2])) {
  const sb = new msb.PythonSandbox({ serverUrl: url, name: "x" });
  sb._isStarted = true;
  try {
    await sb.command.run("ls");
    out.push(["none"]);
  } catch (e) {
    out.push([e.constructor.name, e instanceof msb.MicrosandboxError, e.message, e.status ?? null, e.code ?? null]);
  }
}
console.log(JSON.stringify(out));
"""


def test_error_mapping(built, replier, tmp_path):
    """Every error shape the server can send becomes the right typed error
    (the same table as the Python and C SDKs)."""
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "microsandbox").symlink_to(built)
    (tmp_path / "map.mjs").write_text(MAPPING_SCRIPT)
    urls = [replier.url(i) for i in range(len(ERROR_CASES))]
    r = subprocess.run(["node", "map.mjs", json.dumps(urls)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for (status, _, text, cls, _), (name, is_msb, message, st, code) in zip(ERROR_CASES, got):
        assert (name, is_msb) == (cls, True), (text, name, message)
        assert message.startswith("Failed to execute command: ")
        if cls != "ProtocolError":
            assert st == status


USER_TS = """
import { PythonSandbox, CommandExecution, SandboxOptions, MicrosandboxError, Timeout } from "microsandbox";

export async function agent(): Promise<number> {
  const sb = await PythonSandbox.create(SandboxOptions.builder().name("t").build());
  try {
    const r: CommandExecution = await sb.command.run("ls", ["-l"], 5);
    const out: string = await (await sb.run("1", { timeout: 2.5 })).output();
    for await (const o of await sb.command.stream("ls")) out.concat(o.text);
    return r.exitCode + out.length;
  } catch (e) {
    if (e instanceof Timeout || e instanceof MicrosandboxError) return -1;
    throw e;
  } finally {
    await sb.stop();
  }
}
"""

BAD_TS = """
import { PythonSandbox } from "microsandbox";
export async function f(sb: PythonSandbox): Promise<string> {
  return (await sb.command.run("ls")).exitCode;
}
"""


@pytest.mark.parametrize("module", ["NodeNext", "CommonJS"])
def test_type_declarations(built, tmp_path, module):
    """The shipped .d.ts serve a strict TypeScript user, as ES module and as
    CommonJS, and catch a misuse."""
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "microsandbox").symlink_to(built)
    (tmp_path / "node_modules" / "@types").symlink_to(built / "node_modules" / "@types")
    if module == "NodeNext":
        (tmp_path / "package.json").write_text('{"type": "module"}')
    resolution = "NodeNext" if module == "NodeNext" else "Node10"
    tsc = [str(built / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict", "--target", "ES2022",
           "--module", module, "--moduleResolution", resolution, "--types", "node"]
    (tmp_path / "user.ts").write_text(USER_TS)
    r = subprocess.run([*tsc, "user.ts"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=scaled(300))
    assert r.returncode == 0, r.stdout + r.stderr
    (tmp_path / "bad.ts").write_text(BAD_TS)
    r = subprocess.run([*tsc, "bad.ts"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=scaled(300))
    assert r.returncode != 0 and "Type 'number' is not assignable to type 'string'" in r.stdout, r.stdout
