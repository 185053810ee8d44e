/** BaseSandbox, PythonSandbox, NodeSandbox: start/stop, run, and the
 * `command`, `metrics` and `files` namespaces (upstream's API plus more). */

import { randomBytes } from "node:crypto";

import { Client } from "./client.js";
import { Command } from "./command.js";
import { InvalidRequest, NotStarted } from "./errors.js";
import { Execution } from "./execution.js";
import { Files } from "./files.js";
import { Metrics } from "./metrics.js";

/** Options of `create()` (upstream's names). */
export interface SandboxOptions {
  serverUrl?: string;
  /** accepted for upstream code; the server has no namespaces */
  namespace?: string;
  name?: string;
  apiKey?: string;
  image?: string;
  /** MiB */
  memory?: number;
  /** rounded to a whole number of vCPUs (at least 1) */
  cpus?: number;
  volumes?: string[];
  ports?: string[];
  envs?: string[];
  dependsOn?: string[];
  workdir?: string;
  shell?: string;
  scripts?: Record<string, string>;
  exec?: string;
  /** seconds the client waits for the start (plus 30) */
  timeout?: number;
}

export type StartOptions = Omit<SandboxOptions, "serverUrl" | "namespace" | "name" | "apiKey">;

/** Upstream's builder: `SandboxOptions.builder().name("x").memory(1024).build()`. */
export class SandboxOptionsBuilder {
  private readonly options: SandboxOptions = {};

  serverUrl(value: string): SandboxOptionsBuilder {
    this.options.serverUrl = value;
    return this;
  }

  namespace(value: string): SandboxOptionsBuilder {
    this.options.namespace = value;
    return this;
  }

  name(value: string): SandboxOptionsBuilder {
    this.options.name = value;
    return this;
  }

  apiKey(value: string): SandboxOptionsBuilder {
    this.options.apiKey = value;
    return this;
  }

  image(value: string): SandboxOptionsBuilder {
    this.options.image = value;
    return this;
  }

  memory(value: number): SandboxOptionsBuilder {
    this.options.memory = value;
    return this;
  }

  cpus(value: number): SandboxOptionsBuilder {
    this.options.cpus = value;
    return this;
  }

  volumes(value: string[]): SandboxOptionsBuilder {
    this.options.volumes = value;
    return this;
  }

  ports(value: string[]): SandboxOptionsBuilder {
    this.options.ports = value;
    return this;
  }

  envs(value: string[]): SandboxOptionsBuilder {
    this.options.envs = value;
    return this;
  }

  dependsOn(value: string[]): SandboxOptionsBuilder {
    this.options.dependsOn = value;
    return this;
  }

  workdir(value: string): SandboxOptionsBuilder {
    this.options.workdir = value;
    return this;
  }

  shell(value: string): SandboxOptionsBuilder {
    this.options.shell = value;
    return this;
  }

  scripts(value: Record<string, string>): SandboxOptionsBuilder {
    this.options.scripts = value;
    return this;
  }

  exec(value: string): SandboxOptionsBuilder {
    this.options.exec = value;
    return this;
  }

  timeout(value: number): SandboxOptionsBuilder {
    this.options.timeout = value;
    return this;
  }

  build(): SandboxOptions {
    return { ...this.options };
  }
}

// eslint-disable-next-line @typescript-eslint/no-namespace
export namespace SandboxOptions {
  export const builder = (): SandboxOptionsBuilder => new SandboxOptionsBuilder();
}

export abstract class BaseSandbox {
  readonly client: Client;
  protected _name: string;
  protected _namespace: string;
  protected _isStarted = false;
  protected abstract readonly language: string;

  constructor(options: SandboxOptions = {}) {
    this.client = new Client({ serverUrl: options.serverUrl, apiKey: options.apiKey });
    this._name = options.name || `sandbox-${randomBytes(4).toString("hex")}`;
    this._namespace = options.namespace || "default";
  }

  abstract getDefaultImage(): Promise<string>;

  get name(): string {
    return this._name;
  }

  /** Upstream's namespace; kept for code that reads it, never sent (the server has none). */
  get namespace(): string {
    return this._namespace;
  }

  get serverUrl(): string {
    return this.client.serverUrl;
  }

  get apiKey(): string | undefined {
    return this.client.apiKey;
  }

  get isStarted(): boolean {
    return this._isStarted;
  }

  requireStarted(): void {
    if (!this._isStarted) throw new NotStarted("Sandbox is not started. Call start() first.");
  }

  /**
   * Start the sandbox (sandbox.start).  Upstream's positional form
   * `start(image, memory, cpus, timeout)` and an options object both work.
   */
  async start(image?: string | StartOptions, memory = 512, cpus = 1, timeout = 180): Promise<void> {
    if (this._isStarted) return;
    const o: StartOptions = typeof image === "object" && image !== null ? image : { image, memory, cpus, timeout };
    const c = o.cpus ?? cpus;
    if (typeof c !== "number" || !(c >= 0)) throw new InvalidRequest(`cpus must be a positive number, not ${c}`);
    const config: Record<string, unknown> = {
      image: o.image || (await this.getDefaultImage()),
      memory: Math.trunc(o.memory ?? memory),
      cpus: Math.max(1, Math.round(c)),
    };
    const extra: Array<[string, unknown]> = [
      ["volumes", o.volumes],
      ["ports", o.ports],
      ["envs", o.envs],
      ["depends_on", o.dependsOn],
      ["workdir", o.workdir],
      ["shell", o.shell],
      ["scripts", o.scripts],
      ["exec", o.exec],
    ];
    for (const [k, v] of extra) if (v !== undefined) config[k] = v;
    const result = await this.client.rpc(
      "sandbox.start",
      { sandbox: this._name, config },
      { timeout: (o.timeout ?? timeout) + 30, context: "Failed to start sandbox" },
    );
    if (typeof result === "string" && result.includes("timed out waiting")) {
      console.warn(`Sandbox start warning: ${result}`);
    }
    this._isStarted = true;
  }

  /** Stop the sandbox (sandbox.stop); nothing to do when not started. */
  async stop(): Promise<void> {
    if (!this._isStarted) return;
    await this.client.rpc("sandbox.stop", { sandbox: this._name }, { context: "Failed to stop sandbox" });
    this._isStarted = false;
  }

  /** Run `code` in the sandbox's persistent REPL (variables survive between
   * runs); `timeout` seconds is enforced by the server. */
  async run(code: string, options?: { timeout?: number }): Promise<Execution> {
    this.requireStarted();
    const params: Record<string, unknown> = { sandbox: this._name, language: this.language, code };
    if (options?.timeout !== undefined) params.timeout = options.timeout;
    const res = await this.client.rpc("sandbox.repl.run", params, {
      timeout: options?.timeout !== undefined ? options.timeout + 30 : undefined,
      context: "Failed to execute code",
    });
    return new Execution(res ?? {});
  }

  get command(): Command {
    return new Command(this);
  }

  get metrics(): Metrics {
    return new Metrics(this);
  }

  get files(): Files {
    return new Files(this);
  }

  protected static async createBase<T extends BaseSandbox>(ctor: new (options?: SandboxOptions) => T, options?: SandboxOptions): Promise<T> {
    const sb = new ctor(options);
    const { serverUrl: _u, namespace: _n, name: _m, apiKey: _k, ...start } = options ?? {};
    await sb.start(start);
    return sb;
  }
}

export class PythonSandbox extends BaseSandbox {
  protected readonly language = "python";

  async getDefaultImage(): Promise<string> {
    return "microsandbox/python";
  }

  /** A started Python sandbox (stop it with `stop()`). */
  static async create(options?: SandboxOptions): Promise<PythonSandbox> {
    return BaseSandbox.createBase(PythonSandbox, options);
  }
}

export class NodeSandbox extends BaseSandbox {
  protected readonly language = "nodejs";

  async getDefaultImage(): Promise<string> {
    return "microsandbox/node";
  }

  /** A started Node.js sandbox (stop it with `stop()`). */
  static async create(options?: SandboxOptions): Promise<NodeSandbox> {
    return BaseSandbox.createBase(NodeSandbox, options);
  }
}
