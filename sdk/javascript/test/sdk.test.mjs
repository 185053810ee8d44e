// The JavaScript SDK under node's test runner.  Offline parts (results,
// errors, .env, the requests it sends, recorded by a capture server) always
// run; the parts against a real `msb server` run when the integration test
// (tests/integration/test_sdk_javascript.py) passes its URLs:
//   MSB_TEST_DEV_URL       a `--dev` server
//   MSB_TEST_KEYED_URL     a server with API keys, MSB_TEST_TOKEN a valid key,
//                          MSB_TEST_EXPIRED_TOKEN an expired one
//   MSB_TEST_DOWN_URL      where nothing listens
//   MSB_TEST_SANDBOXES=1   run the agent script (needs sandboxes)
//   MSB_TEST_AVAILABLE=1   the server runs sandboxes ("unavailable" checks skip)
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";

import * as msb from "../dist/esm/index.js";

const env = process.env;
const UNAVAILABLE = "sandboxes are not available in this build yet";
const needServer = (v) => (v ? false : "no server URL given (run tests/integration/test_sdk_javascript.py)");

function started(url, key, name = "sdk-box", cls = msb.PythonSandbox) {
  const sb = new cls({ serverUrl: url, apiKey: key, name });
  sb._isStarted = true; // reach the methods that need a started sandbox
  return sb;
}

test("CommonJS build exports the same API", () => {
  const cjs = createRequire(import.meta.url)("../dist/cjs/index.js");
  for (const k of ["PythonSandbox", "NodeSandbox", "Execution", "CommandExecution", "AuthError", "ServerUnreachable", "Client"]) {
    assert.equal(typeof cjs[k], "function", k);
  }
  assert.ok(existsSync(new URL("../dist/esm/index.d.ts", import.meta.url)));
  assert.ok(existsSync(new URL("../dist/cjs/index.d.ts", import.meta.url)));
});

test("results are read as upstream's", async () => {
  const ex = new msb.Execution({
    status: "success",
    language: "python",
    output: [
      { stream: "stdout", text: "a" },
      { stream: "stderr", text: "warn" },
      { stream: "stdout", text: "b " },
    ],
  });
  assert.equal(await ex.output(), "a\nb");
  assert.equal(await ex.error(), "warn");
  assert.equal(ex.hasError(), true);
  assert.equal(new msb.Execution({ status: "error", output: [] }).hasError(), true);
  const ce = new msb.CommandExecution({ command: "ls", args: ["-l"], exit_code: 2, success: false, output: [] });
  assert.deepEqual([ce.exitCode, ce.success, ce.command, ce.args, await ce.output()], [2, false, "ls", ["-l"], ""]);
  assert.equal(new msb.CommandExecution({}).exitCode, -1);
  assert.equal(new msb.CommandExecution({}).outOfMemory, false); // an upstream server's result
  assert.equal(new msb.CommandExecution({ exit_code: 137, out_of_memory: true }).outOfMemory, true);
});

test("error bodies map to typed errors", () => {
  const a = msb.fromResponse(401, '{"error":"Invalid credentials","code":1001}', "ctx");
  assert.ok(a instanceof msb.AuthError && a instanceof msb.MicrosandboxError && a instanceof Error);
  assert.equal(a.message, "ctx: Invalid credentials");
  assert.equal(a.serverMessage, "Invalid credentials");
  const n = msb.fromResponse(404, '{"jsonrpc":"2.0","error":{"code":-32001,"message":"no sandbox x","data":{"kind":"not_found"}}}');
  assert.ok(n instanceof msb.SandboxNotFound);
  assert.equal(n.kind, "not_found");
  assert.ok(msb.fromResponse(404, '{"error":{"code":-32001,"message":"/a: no such file"}}', undefined, true) instanceof msb.FileNotFound);
  assert.ok(msb.fromResponse(504, '{"error":{"code":-32003,"message":"t"}}') instanceof msb.Timeout);
  assert.ok(msb.fromResponse(415, "Expected request with `Content-Type: application/json`") instanceof msb.InvalidRequest);
  assert.ok(msb.fromResponse(500, '{"error":"x","code":5002}') instanceof msb.ServerError);
});

test(".env is read only when MSB_API_KEY is unset", () => {
  const dir = mkdtempSync(join(tmpdir(), "msb-js-"));
  writeFileSync(join(dir, ".env"), "# c\nexport MSB_TEST_DOTENV_X='quoted'\nMSB_TEST_DOTENV_Y=1 # note\n");
  msb.loadDotenv(join(dir, ".env"));
  assert.equal(process.env.MSB_TEST_DOTENV_X, "quoted");
  assert.equal(process.env.MSB_TEST_DOTENV_Y, "1");
  process.env.MSB_TEST_DOTENV_X = "env wins";
  msb.loadDotenv(join(dir, ".env"));
  assert.equal(process.env.MSB_TEST_DOTENV_X, "env wins");
  const sb = new msb.PythonSandbox({ serverUrl: "http://127.0.0.1:1/" });
  assert.match(sb.name, /^sandbox-[0-9a-f]{8}$/);
  assert.equal(sb.serverUrl, "http://127.0.0.1:1");
});

/** A loopback server that records requests and answers like a server with a
 * working sandbox. */
async function captureServer() {
  const requests = [];
  const results = {
    "sandbox.start": "Sandbox x started successfully",
    "sandbox.stop": "Sandbox x stopped successfully",
    "sandbox.repl.run": { status: "success", language: "python", output: [{ stream: "stdout", text: "42" }] },
    "sandbox.command.run": { command: "echo", args: ["hi"], exit_code: 0, success: true, output: [{ stream: "stdout", text: "hi" }] },
    "sandbox.metrics.get": { sandboxes: [{ name: "x", running: true, cpu_usage: 1.5, memory_usage: 30, disk_usage: 4096 }] },
    "sandbox.exec.stdin": { written: 3, eof: false },
    "sandbox.exec.signal": { exec: "e1", signal: 15 },
  };
  let stdinSeen;
  const stdinArrived = new Promise((r) => (stdinSeen = r));
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.method === "GET") {
        res.writeHead(200, { "Content-Type": "application/octet-stream" });
        return res.end("file-bytes");
      }
      if (req.method === "PUT") {
        res.writeHead(200, { "Content-Type": "application/json" });
        return res.end(JSON.stringify({ jsonrpc: "2.0", result: { path: "/x", size: body.length } }));
      }
      const call = JSON.parse(body.toString());
      if (call.method === "sandbox.exec.stdin" && "data" in call.params) stdinSeen(call.params.data);
      if (call.method === "sandbox.exec.stream" && call.params.command === "interactive") {
        // prints "ready", exits only once the client wrote to its stdin
        res.writeHead(200, { "Content-Type": "application/x-ndjson", "X-Msb-Exec": "e1" });
        res.write(JSON.stringify({ event: "started", exec: "e1" }) + "\n");
        res.write(JSON.stringify({ event: "stdout", data: "ready\n" }) + "\n");
        const timer = setTimeout(() => stdinSeen(null), 10000);
        stdinArrived.then((data) => {
          clearTimeout(timer);
          if (data !== null) res.write(JSON.stringify({ event: "stdout", data: `got ${data}` }) + "\n");
          res.end(JSON.stringify({ event: "exit", exit_code: data === null ? 99 : 0, signal: null, timed_out: data === null }) + "\n");
        });
        return;
      }
      if (call.method === "sandbox.exec.stream" && call.params.command === "flood") {
        // an event that never ends: 17 MiB without a newline
        res.writeHead(200, { "Content-Type": "application/x-ndjson" });
        const piece = "x".repeat(1 << 20);
        let n = 0;
        const more = () => {
          while (n < 17) {
            n++;
            if (!res.write(piece)) return res.once("drain", more);
          }
          res.end();
        };
        res.on("error", () => undefined);
        more();
        return;
      }
      if (call.method === "sandbox.exec.stream") {
        res.writeHead(200, { "Content-Type": "application/x-ndjson", "X-Msb-Exec": "e1" });
        for (const ev of [
          { event: "started", exec: "e1" },
          { event: "stdout", data: "a\n" },
          { event: "stderr", data_base64: "/w==" },
          { event: "exit", exit_code: 3, signal: null, timed_out: false, out_of_memory: true },
        ])
          res.write(JSON.stringify(ev) + "\n");
        return res.end();
      }
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", result: results[call.method] ?? null, id: call.id }));
    });
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${srv.address().port}`, requests, close: () => srv.close() };
}

test("request shapes", async () => {
  const cap = await captureServer();
  try {
    const sb = await msb.PythonSandbox.create({
      serverUrl: cap.url, apiKey: "msb_k", name: "shape", memory: 256, cpus: 1.6, volumes: ["./d:/d"],
      ports: ["8080:80"], envs: ["A=1"], dependsOn: ["db"], workdir: "/w", shell: "/bin/sh",
      scripts: { hi: "echo hi" }, exec: "python app.py",
    });
    const ex = await sb.run("print(42)", { timeout: 5 });
    assert.deepEqual([await ex.output(), ex.status, ex.language, ex.hasError()], ["42", "success", "python", false]);
    const ce = await sb.command.run("echo", ["hi"], 7);
    assert.deepEqual([ce.exitCode, ce.success, await ce.output()], [0, true, "hi"]);
    assert.equal((await sb.metrics.all()).memory_usage, 30);
    assert.equal(await sb.metrics.cpu(), 1.5);
    assert.equal(await sb.metrics.disk(), 4096);
    assert.equal(await sb.metrics.isRunning(), true);
    const proc = await sb.command.stream("sh", ["-c", "x"], { env: { K: "V" }, cwd: "/tmp", timeout: 3, stdin: true });
    assert.equal(proc.id, "e1");
    assert.equal(await proc.write("abc"), 3);
    await proc.write(new Uint8Array([0, 1]));
    await proc.closeStdin();
    await proc.sendSignal("SIGINT");
    const outs = [];
    for await (const o of proc) outs.push([o.stream, o.data]);
    assert.deepEqual(outs, [["stdout", "a\n"], ["stderr", new Uint8Array([255])]]);
    assert.deepEqual([proc.exitCode, proc.signal, proc.timedOut, proc.outOfMemory], [3, null, false, true]);
    assert.equal(await sb.files.write("/tmp/w", "héllo", 0o600), 6);
    assert.deepEqual(Buffer.from(await sb.files.read("/tmp/r")).toString(), "file-bytes");
    await sb.stop();
    const node = await msb.NodeSandbox.create({ serverUrl: cap.url, name: "shape-node" });
    await node.run("1");
    // upstream's builder
    const built = msb.SandboxOptions.builder().serverUrl(cap.url).name("shape-built").memory(64).cpus(1).build();
    await (await msb.PythonSandbox.create(built)).stop();
    // upstream's positional start()
    const pos = new msb.PythonSandbox({ serverUrl: cap.url, name: "shape-pos" });
    await pos.start("img", 128, 2, 10);

    const calls = cap.requests.filter((r) => r.method === "POST").map((r) => JSON.parse(r.body.toString()));
    for (const c of calls) assert.equal(c.jsonrpc, "2.0");
    const find = (m, key) => calls.find((c) => c.method === m && (c.params.sandbox ?? c.params.exec) === key).params;
    assert.deepEqual(find("sandbox.start", "shape"), {
      sandbox: "shape",
      config: {
        image: "microsandbox/python", memory: 256, cpus: 2, volumes: ["./d:/d"], ports: ["8080:80"], envs: ["A=1"],
        depends_on: ["db"], workdir: "/w", shell: "/bin/sh", scripts: { hi: "echo hi" }, exec: "python app.py",
      },
    });
    assert.deepEqual(find("sandbox.start", "shape-node").config, { image: "microsandbox/node", memory: 512, cpus: 1 });
    assert.deepEqual(find("sandbox.start", "shape-pos").config, { image: "img", memory: 128, cpus: 2 });
    assert.deepEqual(find("sandbox.start", "shape-built").config, { image: "microsandbox/python", memory: 64, cpus: 1 });
    assert.deepEqual(find("sandbox.repl.run", "shape"), { sandbox: "shape", language: "python", code: "print(42)", timeout: 5 });
    assert.equal(find("sandbox.repl.run", "shape-node").language, "nodejs");
    assert.deepEqual(find("sandbox.command.run", "shape"), { sandbox: "shape", command: "echo", args: ["hi"], timeout: 7 });
    assert.deepEqual(find("sandbox.metrics.get", "shape"), { sandbox: "shape" });
    assert.deepEqual(find("sandbox.exec.stream", "shape"), {
      sandbox: "shape", command: "sh", args: ["-c", "x"], env: ["K=V"], cwd: "/tmp", timeout: 3, stdin: true,
    });
    assert.deepEqual(
      calls.filter((c) => c.method === "sandbox.exec.stdin").map((c) => c.params),
      [{ exec: "e1", data: "abc" }, { exec: "e1", data_base64: "AAE=" }, { exec: "e1", eof: true }],
    );
    assert.deepEqual(find("sandbox.exec.signal", "e1"), { exec: "e1", signal: "SIGINT" });
    assert.deepEqual(find("sandbox.stop", "shape"), { sandbox: "shape" });
    const posts = cap.requests.filter((r) => r.method === "POST");
    assert.ok(posts.every((r) => r.url === "/api/v1/rpc"));
    assert.equal(posts[0].headers.authorization, "Bearer msb_k");
    assert.equal(posts[0].headers["content-type"], "application/json");
    const put = cap.requests.find((r) => r.method === "PUT");
    assert.equal(put.url, "/api/v1/sandbox/file?sandbox=shape&path=%2Ftmp%2Fw&mode=600");
    assert.equal(put.body.toString(), "héllo");
    // for the integration test to replay against the real server
    if (env.MSB_TEST_SHAPES_OUT) writeFileSync(env.MSB_TEST_SHAPES_OUT, JSON.stringify(calls));
  } finally {
    cap.close();
  }
});

test("output is streamed as it comes", async () => {
  const cap = await captureServer();
  try {
    const sb = started(cap.url);
    const proc = await sb.command.stream("interactive", [], { stdin: true });
    const seen = [];
    for await (const o of proc) {
      seen.push(o.text);
      if (o.text === "ready\n") await proc.write("ping\n");
    }
    assert.deepEqual(seen, ["ready\n", "got ping\n"]);
    assert.deepEqual([proc.exitCode, proc.timedOut], [0, false]);
  } finally {
    cap.close();
  }
});

test("an endless stream event is refused", async () => {
  const cap = await captureServer();
  try {
    const proc = await started(cap.url).command.stream("flood");
    await assert.rejects(proc.wait(), (e) => e instanceof msb.ProtocolError && /stream event is over 16777216/.test(e.message));
  } finally {
    cap.close();
  }
});

test("server down -> ServerUnreachable", { skip: needServer(env.MSB_TEST_DOWN_URL) }, async () => {
  const url = env.MSB_TEST_DOWN_URL;
  await assert.rejects(msb.PythonSandbox.create({ serverUrl: url, name: "x" }), (e) => {
    assert.ok(e instanceof msb.ServerUnreachable, e.constructor.name);
    assert.match(e.message, /cannot reach the microsandbox server at .*connection refused.*msb server start/);
    return true;
  });
  const sb = started(url);
  for (const call of [() => sb.run("1"), () => sb.command.run("ls"), () => sb.metrics.all(), () => sb.command.stream("ls"),
    () => sb.files.read("/x"), () => sb.files.write("/x", "y"), () => sb.files.upload(new URL(import.meta.url).pathname, "/x"),
    () => sb.stop(), () => new msb.Client({ serverUrl: url }).list()]) {
    await assert.rejects(call(), (e) => e instanceof msb.ServerUnreachable && /cannot reach the microsandbox server at .*connection refused/.test(e.message));
  }
});

test("API keys -> AuthError with the server's message", { skip: needServer(env.MSB_TEST_KEYED_URL) }, async () => {
  const url = env.MSB_TEST_KEYED_URL;
  const start = (apiKey) => new msb.PythonSandbox({ serverUrl: url, apiKey, name: "keyed" }).start();
  const saved = process.env.MSB_API_KEY;
  process.env.MSB_API_KEY = "";
  try {
    await assert.rejects(start(undefined), (e) => e instanceof msb.AuthError && e.status === 401 && e.code === 1001 && e.serverMessage === "Invalid credentials");
  } finally {
    if (saved === undefined) delete process.env.MSB_API_KEY;
    else process.env.MSB_API_KEY = saved;
  }
  await assert.rejects(start("msb_not.a.jwt"), (e) => e instanceof msb.AuthError && e.code === 1004 && e.serverMessage === "Invalid or expired token");
  await assert.rejects(start(env.MSB_TEST_EXPIRED_TOKEN), (e) => e instanceof msb.AuthError && e.serverMessage === "Invalid or expired token");
  // a valid key gets past auth to the backend
  try {
    assert.ok(Array.isArray(await new msb.Client({ serverUrl: url, apiKey: env.MSB_TEST_TOKEN }).list()));
  } catch (e) {
    assert.ok(e instanceof msb.ServerError && e.serverMessage === UNAVAILABLE, String(e));
  }
});

test("every method reports sandboxes unavailable", { skip: needServer(env.MSB_TEST_DEV_URL) || (env.MSB_TEST_AVAILABLE === "1" && "sandboxes exist") }, async () => {
  const url = env.MSB_TEST_DEV_URL;
  await assert.rejects(msb.PythonSandbox.create({ serverUrl: url, name: "sdk-box" }), (e) => {
    assert.ok(e instanceof msb.ServerError, e.constructor.name);
    assert.equal(e.message, `Failed to start sandbox: ${UNAVAILABLE}`);
    assert.deepEqual([e.status, e.code], [500, 5002]);
    return true;
  });
  const sb = started(url);
  const dir = mkdtempSync(join(tmpdir(), "msb-js-"));
  writeFileSync(join(dir, "up"), Buffer.alloc(3 * 1024 * 1024 + 5, 7));
  const calls = {
    run: () => sb.run("x = 1", { timeout: 5 }),
    command: () => sb.command.run("ls", ["-l"], 5),
    metrics: () => sb.metrics.all(),
    stream: () => sb.command.stream("ls", [], { stdin: true }),
    read: () => sb.files.read("/etc/hostname"),
    write: () => sb.files.write("/tmp/x", new Uint8Array([0, 255])),
    upload: () => sb.files.upload(join(dir, "up"), "/tmp/up"),
    download: () => sb.files.download("/etc/hostname", join(dir, "down")),
    list: () => new msb.Client({ serverUrl: url }).list(),
    stop: () => sb.stop(),
  };
  for (const [what, call] of Object.entries(calls)) {
    await assert.rejects(call(), (e) => {
      assert.ok(e instanceof msb.ServerError, `${what}: ${e.constructor.name} ${e.message}`);
      assert.equal(e.serverMessage, UNAVAILABLE, what);
      return true;
    });
  }
  assert.equal(existsSync(join(dir, "down")) || existsSync(join(dir, "down.part")), false);
  await assert.rejects(new msb.PythonSandbox({ serverUrl: url, name: "bad name" }).start(), (e) => e instanceof msb.InvalidRequest && e.serverMessage.includes("Invalid sandbox name 'bad name'"));
  await assert.rejects(sb.files.read("relative"), (e) => e instanceof msb.InvalidRequest && /absolute path/.test(e.message));
  await assert.rejects(sb.run("x".repeat(3 << 20)), (e) => e instanceof msb.InvalidRequest && e.status === 413 && /length limit exceeded/.test(e.message));
  await assert.rejects(new msb.Client({ serverUrl: url }).rpc("sandbox.nope", {}), msb.MethodNotFound);
  await assert.rejects(new msb.PythonSandbox({ serverUrl: url }).run("1"), msb.NotStarted);
  assert.equal(await new msb.Client({ serverUrl: url }).health(), true);
});

test("the agent script", { timeout: 3 * 3600 * 1000, skip: env.MSB_TEST_SANDBOXES === "1" ? false : "SANDBOXES UNAVAILABLE: the server reports sandboxes not available in this build; runs once they exist" }, async () => {
  const sb = await msb.PythonSandbox.create({
    serverUrl: env.MSB_TEST_DEV_URL,
    name: "sdk-js-agent",
    image: env.MSB_TEST_PYTHON_IMAGE || undefined,
    timeout: Number(env.MSB_TEST_START_TIMEOUT || 180),
    // MSB_TEST_VOLUME (a host directory with in.txt) and MSB_TEST_HOST_PORT: start()'s volumes
    // and ports reach the VM (the caller checks out.txt and the closed port after the stop)
    volumes: env.MSB_TEST_VOLUME ? [`${env.MSB_TEST_VOLUME}:/data`] : undefined,
    ports: env.MSB_TEST_HOST_PORT ? [`${env.MSB_TEST_HOST_PORT}:8080`] : undefined,
  });
  try {
    if (env.MSB_TEST_VOLUME) {
      const c = await sb.command.run("sh", ["-c", "cat /data/in.txt && echo from-guest > /data/out.txt"]);
      assert.deepEqual([c.exitCode, await c.output()], [0, "from-host"], await c.error());
      assert.equal(readFileSync(join(env.MSB_TEST_VOLUME, "out.txt"), "utf8"), "from-guest\n");
    }
    if (env.MSB_TEST_HOST_PORT) {
      // a listener run in the REPL (no second python start) answers a host client first
      const listener = sb.run(
        "import socket\n" +
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n" +
          "s.bind(('0.0.0.0', 8080)); s.listen(1)\n" +
          "c, _ = s.accept(); c.sendall(b'from-guest\\n'); c.close(); s.close()\n",
        { timeout: 180 },
      );
      const readLine = () =>
        new Promise((resolve) => {
          let got = "";
          const s = net.connect(Number(env.MSB_TEST_HOST_PORT), "127.0.0.1");
          s.setTimeout(60000, () => s.destroy());
          s.on("data", (d) => (got += d));
          s.on("close", () => resolve(got));
          s.on("error", () => {});
        });
      let got = "";
      for (const end = Date.now() + 120000; !got && Date.now() < end; ) {
        got = await readLine(); // empty while the guest does not listen yet
        if (!got) await new Promise((r) => setTimeout(r, 1000));
      }
      const ex = await listener;
      assert.equal(ex.hasError(), false, await ex.error());
      assert.equal(got, "from-guest\n");
    }
    await sb.run("x = 6 * 7");
    const ex = await sb.run("print(x)");
    assert.equal(await ex.output(), "42");
    const cmd = await sb.command.run("echo", ["hello"]);
    assert.deepEqual([cmd.exitCode, cmd.success, await cmd.output()], [0, true, "hello"]);
    const m = await sb.metrics.all();
    assert.equal(m.name, "sdk-js-agent");
    assert.equal(await sb.metrics.isRunning(), true);
    await assert.rejects(sb.run("while True: pass", { timeout: 2 }), msb.Timeout);
    const proc = await sb.command.stream("sh", ["-c", "read l; echo got $l; exit 3"], { stdin: true });
    await proc.write("hi\n");
    await proc.closeStdin();
    assert.equal(await proc.wait(60), 3);
    assert.equal(proc.stdout(), "got hi\n");
    await sb.files.write("/tmp/a.txt", "hello");
    assert.equal(await sb.files.readText("/tmp/a.txt"), "hello");
    const names = (await sb.files.list("/tmp")).map((e) => e.name);
    assert.ok(names.includes("a.txt"));
    await assert.rejects(sb.files.read("/no/such/file"), msb.FileNotFound);
  } finally {
    await sb.stop();
  }
  assert.equal(readFileSync(new URL("../package.json", import.meta.url), "utf8").includes('"microsandbox"'), true);
});
