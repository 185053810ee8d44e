// Drives msb server's /mcp with the official MCP TypeScript SDK client and
// prints what it saw as one JSON line (checked by test_server_mcp_sdk.py).
//   node client.mjs URL [TOKEN]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token] = process.argv.slice(2);
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "msb-integration-test", version: "0.0.1" });
const out = {};

await client.connect(transport);
out.serverInfo = client.getServerVersion();
out.capabilities = client.getServerCapabilities();
out.protocolVersion = transport.protocolVersion ?? null;
out.sessionId = transport.sessionId ?? null;

const tools = await client.listTools();
out.tools = tools.tools.map((t) => t.name);
out.schemas = Object.fromEntries(tools.tools.map((t) => [t.name, t.inputSchema]));

const prompts = await client.listPrompts();
out.prompts = prompts.prompts.map((p) => ({ name: p.name, arguments: p.arguments }));
const prompt = await client.getPrompt({
  name: "create_python_sandbox",
  arguments: { sandbox_name: "sdk-box" },
});
out.promptText = prompt.messages[0].content.text;

await client.ping();
// Without sandboxes (MSB_SERVER_BACKEND=unavailable) each tool must say so, not fake it;
// on real VMs the sandbox starts, runs Python and stops (a boot may take minutes).
const slow = { timeout: 3600 * 1000 };
out.start = await client.callTool({
  name: "sandbox_start",
  arguments: { sandbox: "sdk-box", config: { image: "microsandbox/python", memory: 512 } },
}, undefined, slow);
out.runCode = await client.callTool({
  name: "sandbox_run_code",
  arguments: { sandbox: "sdk-box", code: "print(1+1)", language: "python" },
}, undefined, slow);
out.runCommand = await client.callTool({
  name: "sandbox_run_command",
  arguments: { sandbox: "sdk-box", command: "echo", args: ["hello"] },
}, undefined, slow);
out.stop = await client.callTool({ name: "sandbox_stop", arguments: { sandbox: "sdk-box" } },
  undefined, slow);
try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
  out.unknownTool = "no error";
} catch (e) {
  out.unknownTool = String(e.message ?? e);
}

await transport.terminateSession();
out.terminated = transport.sessionId ?? null;
await client.close();
console.log(JSON.stringify(out));
