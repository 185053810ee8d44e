/** `sandbox.command`: upstream's `run()` plus streamed processes (`stream()`). */

import type { BaseSandbox } from "./sandbox.js";
import { CommandExecution } from "./execution.js";
import { ProtocolError, Timeout, fromResponse } from "./errors.js";

/** Longest NDJSON event accepted from a stream (events carry output chunks). */
const MAX_EVENT = 16 * 1024 * 1024;

/** One piece of a process's output: `data` is text, or bytes when the chunk
 * was not valid UTF-8. */
export interface Output {
  stream: "stdout" | "stderr";
  data: string | Uint8Array;
  text: string;
}

export interface StreamOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** seconds, enforced by the server */
  timeout?: number;
  /** give the process a stdin pipe (feed it with write()) */
  stdin?: boolean;
  tty?: boolean;
}

/**
 * A command running in the sandbox, its output streamed.  `for await (const
 * out of proc)` yields `Output` pieces until it ends; then `exitCode` (-1
 * when killed by a signal), `signal`, `timedOut` and `outOfMemory` (the
 * guest's memory guard killed it) are set.  `write()` /
 * `closeStdin()` feed stdin, `sendSignal()` signals it, `wait()` reads the
 * rest and resolves to the exit code, `close()` drops the connection (the
 * server then kills the process if it still runs).
 */
export class Process implements AsyncIterable<Output> {
  id: string;
  exitCode: number | null = null;
  signal: number | null = null;
  timedOut = false;
  outOfMemory = false;
  finished = false;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private lines: string[] = [];
  private partial: string[] = [];
  private partialLength = 0;
  private readonly out: string[] = [];
  private readonly err: string[] = [];

  constructor(
    private readonly sandbox: BaseSandbox,
    resp: Response,
    private readonly context: string,
    private readonly controller: AbortController,
  ) {
    this.id = resp.headers.get("x-msb-exec") ?? "";
    if (!resp.body) throw new ProtocolError("the stream has no body", { context });
    this.reader = resp.body.getReader();
  }

  private async nextLine(): Promise<string | null> {
    for (;;) {
      const queued = this.lines.shift();
      if (queued !== undefined) return queued.replace(/\r$/, "");
      const { value, done } = await this.reader.read();
      if (done) {
        const rest = this.decoder.decode();
        if (rest) this.take(rest);
        if (this.lines.length) continue;
        if (this.partialLength) {
          const line = this.partial.join("");
          this.partial = [];
          this.partialLength = 0;
          return line;
        }
        return null;
      }
      this.take(this.decoder.decode(value, { stream: true }));
    }
  }

  /** Split new text into complete lines and the unfinished rest; only the
   * new text is searched (a long event costs linear time, not quadratic). */
  private take(text: string): void {
    const pieces = text.split("\n");
    if (pieces.length === 1) {
      this.partial.push(text);
      this.partialLength += text.length;
      if (this.partialLength > MAX_EVENT) {
        this.close();
        throw new ProtocolError(`a stream event is over ${MAX_EVENT} characters`, { context: this.context });
      }
      return;
    }
    this.partial.push(pieces[0]);
    this.lines.push(this.partial.join(""));
    for (let i = 1; i < pieces.length - 1; i++) this.lines.push(pieces[i]);
    const last = pieces[pieces.length - 1];
    this.partial = [last];
    this.partialLength = last.length;
  }

  /** The next piece of output, or null when the process has ended. */
  async next(): Promise<Output | null> {
    while (!this.finished) {
      const line = await this.nextLine();
      if (line === null) {
        this.finished = true;
        throw new ProtocolError("the output stream ended without an exit event", { context: this.context });
      }
      if (!line.trim()) continue; // keep-alive
      let ev: any;
      try {
        ev = JSON.parse(line);
      } catch {
        throw new ProtocolError(`bad stream event ${line.slice(0, 200)}`, { context: this.context });
      }
      switch (ev.event) {
        case "started":
          this.id = ev.exec ?? this.id;
          break;
        case "stdout":
        case "stderr": {
          const data: string | Uint8Array =
            typeof ev.data_base64 === "string" ? new Uint8Array(Buffer.from(ev.data_base64, "base64")) : String(ev.data ?? "");
          const text = typeof data === "string" ? data : new TextDecoder().decode(data);
          (ev.event === "stdout" ? this.out : this.err).push(text);
          return { stream: ev.event, data, text };
        }
        case "exit":
          this.exitCode = ev.exit_code ?? null;
          this.signal = ev.signal ?? null;
          this.timedOut = !!ev.timed_out;
          this.outOfMemory = !!ev.out_of_memory;
          this.finished = true;
          this.close();
          break;
        case "error":
          this.finished = true;
          this.close();
          throw fromResponse(500, JSON.stringify({ error: { code: ev.code, message: ev.message } }), this.context);
      }
    }
    return null;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Output> {
    for (;;) {
      const o = await this.next();
      if (o === null) return;
      yield o;
    }
  }

  /** Read the stream to its end; resolves to the exit code (-1: signalled).
   * With `timeout` (seconds) rejects with Timeout if it has not ended. */
  async wait(timeout?: number): Promise<number> {
    const drain = (async () => {
      while ((await this.next()) !== null) {
        /* collected in stdout()/stderr() */
      }
    })();
    if (timeout === undefined) {
      await drain;
    } else {
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Timeout(`the process did not end within ${timeout} s`, { context: this.context })),
          timeout * 1000,
        );
      });
      try {
        await Promise.race([drain, limit]);
      } finally {
        clearTimeout(timer);
      }
    }
    return this.exitCode ?? -1;
  }

  /** Everything read from stdout so far. */
  stdout(): string {
    return this.out.join("");
  }

  stderr(): string {
    return this.err.join("");
  }

  /** Write to the process's stdin; resolves to the bytes written. */
  async write(data: string | Uint8Array): Promise<number> {
    const params: Record<string, unknown> = { exec: this.id };
    if (typeof data === "string") params.data = data;
    else params.data_base64 = Buffer.from(data).toString("base64");
    const res = await this.sandbox.client.rpc("sandbox.exec.stdin", params, {
      context: "Failed to write to the process's stdin",
    });
    return Number(res?.written ?? 0);
  }

  async closeStdin(): Promise<void> {
    await this.sandbox.client.rpc("sandbox.exec.stdin", { exec: this.id, eof: true }, { context: "Failed to close stdin" });
  }

  async sendSignal(signal: number | string = "SIGTERM"): Promise<void> {
    await this.sandbox.client.rpc("sandbox.exec.signal", { exec: this.id, signal }, { context: "Failed to signal the process" });
  }

  async kill(): Promise<void> {
    await this.sendSignal("SIGKILL");
  }

  close(): void {
    this.finished = true;
    this.reader.cancel().catch(() => undefined);
    this.controller.abort();
  }
}

export class Command {
  constructor(private readonly sandbox: BaseSandbox) {}

  /** Run `command` with `args` to completion (sandbox.command.run).
   * `timeout` seconds is enforced by the server. */
  async run(command: string, args?: string[], timeout?: number): Promise<CommandExecution> {
    this.sandbox.requireStarted();
    const params: Record<string, unknown> = { sandbox: this.sandbox.name, command, args: args ?? [] };
    if (timeout !== undefined) params.timeout = timeout;
    const res = await this.sandbox.client.rpc("sandbox.command.run", params, {
      timeout: timeout !== undefined ? timeout + 30 : undefined,
      context: "Failed to execute command",
    });
    return new CommandExecution(res ?? {});
  }

  /** Start `command` and return a Process whose output arrives as it is
   * written (sandbox.exec.stream). */
  async stream(command: string, args?: string[], opts: StreamOptions = {}): Promise<Process> {
    this.sandbox.requireStarted();
    const params: Record<string, unknown> = { sandbox: this.sandbox.name, command, args: args ?? [] };
    if (opts.env) params.env = Object.entries(opts.env).map(([k, v]) => `${k}=${v}`);
    if (opts.cwd !== undefined) params.cwd = opts.cwd;
    if (opts.timeout !== undefined) params.timeout = opts.timeout;
    if (opts.stdin) params.stdin = true;
    if (opts.tty) params.tty = true;
    const context = `Failed to run '${command}'`;
    const controller = new AbortController();
    const resp = await this.sandbox.client.openStream("sandbox.exec.stream", params, context, controller.signal);
    return new Process(this.sandbox, resp, context, controller);
  }
}
