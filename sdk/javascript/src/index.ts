/**
 * microsandbox: run untrusted code in microVM sandboxes through an msb
 * server.  Upstream's API (PythonSandbox, NodeSandbox, run, command.run,
 * metrics, stop) plus streamed processes, stdin, files, per-run timeouts and
 * typed errors.  No runtime dependency beyond Node's fetch.
 */

export { BaseSandbox, NodeSandbox, PythonSandbox } from "./sandbox.js";
export { SandboxOptions, SandboxOptionsBuilder } from "./sandbox.js";
export type { StartOptions } from "./sandbox.js";
export { Client, DEFAULT_SERVER_URL, loadDotenv } from "./client.js";
export type { ClientOptions, CallOptions } from "./client.js";
export { Command, Process } from "./command.js";
export type { Output, StreamOptions } from "./command.js";
export { CommandExecution, Execution } from "./execution.js";
export type { OutputData, OutputLine } from "./execution.js";
export { Files } from "./files.js";
export type { FileInfo } from "./files.js";
export { Metrics } from "./metrics.js";
export type { SandboxMetrics } from "./metrics.js";
export * from "./errors.js";
