/**
 * The connection to one msb server: URL, API key, JSON-RPC and the raw file
 * route, on Node's fetch.  `Client` is usable on its own (health, list, any
 * method by name); every sandbox holds one.
 */

import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import * as http from "node:http";
import * as https from "node:https";
import type { Readable } from "node:stream";

import { MicrosandboxError, ProtocolError, ServerUnreachable, Timeout, fromResponse } from "./errors.js";

export const DEFAULT_SERVER_URL = "http://127.0.0.1:5555";

/** Bodies larger than this are sent with "Expect: 100-continue" (as curl does). */
export const EXPECT_ABOVE = 1024 * 1024;

/** Load KEY=VALUE lines from `path` into process.env without overriding what
 * is set (as dotenv, which upstream's SDK used).  A missing file is fine. */
export function loadDotenv(path = ".env"): void {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return;
  }
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    if (line.startsWith("export ")) line = line.slice(7).trimStart();
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) {
      value = value.slice(1, -1);
    } else if (value.includes(" #")) {
      value = value.split(" #")[0].trimEnd();
    }
    if (process.env[key] === undefined) process.env[key] = value;
  }
}

export interface ClientOptions {
  serverUrl?: string;
  apiKey?: string;
}

export interface CallOptions {
  /** seconds to wait for the reply (none by default) */
  timeout?: number;
  /** prefixes the error message: "<context>: <server message>" */
  context?: string;
  files?: boolean;
}

/** The ServerUnreachable for a failed connection to `url`. */
export function unreachable(url: string, e: any): MicrosandboxError {
  const code = e?.cause?.code ?? e?.code;
  const why =
    code === "ECONNREFUSED"
      ? "connection refused"
      : code === "ENOTFOUND"
        ? "host not found"
        : String(e?.cause?.message ?? e?.message ?? e);
  return new ServerUnreachable(
    `cannot reach the microsandbox server at ${url}: ${why}; start it with \`msb server start\` ` +
      "(or `msb server start --dev` without API keys) or point MSB_SERVER_URL at it",
    { cause: e },
  );
}

export class Client {
  readonly serverUrl: string;
  readonly apiKey: string | undefined;

  /** `serverUrl` defaults to $MSB_SERVER_URL, then http://127.0.0.1:5555;
   * `apiKey` to $MSB_API_KEY (a `.env` file in the working directory is
   * read when MSB_API_KEY is not set). */
  constructor(options: ClientOptions = {}) {
    if (process.env.MSB_API_KEY === undefined) loadDotenv();
    const url = options.serverUrl || process.env.MSB_SERVER_URL || DEFAULT_SERVER_URL;
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new TypeError(`server URL must be http:// or https://, not ${url}`);
    }
    this.serverUrl = url.replace(/\/+$/, "");
    this.apiKey = options.apiKey || process.env.MSB_API_KEY || undefined;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.apiKey) h["Authorization"] = `Bearer ${this.apiKey}`;
    return { ...h, ...extra };
  }

  /** fetch() with the SDK's error mapping for transport failures. */
  async fetch(path: string, init: RequestInit & { duplex?: "half" }, timeout?: number, context?: string): Promise<Response> {
    const signal = timeout !== undefined && timeout > 0 ? AbortSignal.timeout(timeout * 1000) : undefined;
    try {
      return await fetch(this.serverUrl + path, { ...init, signal });
    } catch (e: any) {
      if (e?.name === "TimeoutError" || e?.name === "AbortError") {
        throw new Timeout(`no reply from ${this.serverUrl} within ${timeout} s`, { context, cause: e });
      }
      const err = unreachable(this.serverUrl, e);
      throw context ? new ServerUnreachable(err.serverMessage, { context, cause: e }) : err;
    }
  }

  /**
   * One request whose body is sent only after the server's "100 Continue"
   * (or after a second without any reply), over node:http since fetch
   * cannot: a request the server refuses up front (413 over its body limit,
   * no such sandbox, a bad path) gets its reply read instead of a reset
   * connection.  `body` is a buffer or a function opening a stream.
   */
  async sendExpecting(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer | (() => Readable),
    length: number,
    timeout?: number,
    context?: string,
  ): Promise<{ status: number; text: string }> {
    const url = new URL(this.serverUrl + path);
    const hdrs = { ...this.headers(headers), "Content-Length": String(length), Expect: "100-continue" };
    return new Promise((resolve, reject) => {
      const req = (url.protocol === "https:" ? https : http).request(url, { method, headers: hdrs });
      let sent = false;
      const send = () => {
        if (sent) return;
        sent = true;
        if (Buffer.isBuffer(body)) {
          req.end(body);
        } else {
          const src = body();
          src.on("error", (e) => req.destroy(e));
          src.pipe(req);
        }
      };
      req.on("continue", send);
      const wait = setTimeout(send, 1000);
      const limit = timeout !== undefined && timeout > 0 ? setTimeout(() => req.destroy(new Error("timeout")), timeout * 1000) : undefined;
      req.on("response", (res) => {
        clearTimeout(wait);
        sent = true;
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          clearTimeout(limit);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() });
        });
        res.on("error", reject);
      });
      req.on("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(wait);
        clearTimeout(limit);
        if (e.message === "timeout") {
          reject(new Timeout(`no reply from ${this.serverUrl} within ${timeout} s`, { context, cause: e }));
          return;
        }
        const connect = ["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"].includes(e.code ?? "");
        const msg = connect ? unreachable(this.serverUrl, e).serverMessage : `the connection to ${this.serverUrl} failed: ${e.message}`;
        reject(new ServerUnreachable(msg, { context, cause: e }));
      });
      req.flushHeaders();
    });
  }

  static envelope(method: string, params: unknown): Record<string, unknown> {
    return { jsonrpc: "2.0", method, params, id: randomUUID() };
  }

  /** Call one JSON-RPC method and return its `result`; failures throw the
   * matching MicrosandboxError subclass carrying the server's message. */
  async rpc<T = any>(method: string, params?: unknown, opts: CallOptions = {}): Promise<T> {
    const body = Buffer.from(JSON.stringify(Client.envelope(method, params ?? null)), "utf8");
    let status: number;
    let text: string;
    if (body.length > EXPECT_ABOVE) {
      ({ status, text } = await this.sendExpecting(
        "POST",
        "/api/v1/rpc",
        { "Content-Type": "application/json" },
        body,
        body.length,
        opts.timeout,
        opts.context,
      ));
    } else {
      const resp = await this.fetch(
        "/api/v1/rpc",
        { method: "POST", headers: this.headers({ "Content-Type": "application/json" }), body },
        opts.timeout,
        opts.context,
      );
      status = resp.status;
      text = await resp.text();
    }
    if (status < 200 || status >= 300) throw fromResponse(status, text, opts.context, opts.files);
    let doc: any;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new ProtocolError(`the server's reply is not JSON: ${text.slice(0, 200)}`, { context: opts.context });
    }
    if (doc && typeof doc === "object" && "error" in doc) throw fromResponse(status, text, opts.context, opts.files);
    if (!doc || typeof doc !== "object" || !("result" in doc)) {
      throw new ProtocolError(`the server's reply has no result: ${text.slice(0, 200)}`, { context: opts.context });
    }
    return doc.result as T;
  }

  /** POST a streaming method; resolves to the response positioned at its
   * NDJSON body (errors before the stream starts are thrown). */
  async openStream(method: string, params: unknown, context?: string, signal?: AbortSignal): Promise<Response> {
    let resp: Response;
    try {
      resp = await fetch(this.serverUrl + "/api/v1/rpc", {
        method: "POST",
        headers: this.headers({ "Content-Type": "application/json", Accept: "application/x-ndjson" }),
        body: JSON.stringify(Client.envelope(method, params)),
        signal,
      });
    } catch (e: any) {
      throw new ServerUnreachable(unreachable(this.serverUrl, e).serverMessage, { context, cause: e });
    }
    const ctype = resp.headers.get("content-type") ?? "";
    if (resp.status !== 200 || !ctype.includes("ndjson")) {
      const text = await resp.text();
      throw fromResponse(resp.status === 200 ? 500 : resp.status, text, context);
    }
    return resp;
  }

  filePath(sandbox: string, path: string, mode?: number): string {
    const q = new URLSearchParams({ sandbox, path });
    if (mode !== undefined) q.set("mode", mode.toString(8));
    return `/api/v1/sandbox/file?${q.toString()}`;
  }

  /** True when GET /api/v1/health answers 200. */
  async health(): Promise<boolean> {
    const resp = await this.fetch("/api/v1/health", { method: "GET" }, 10);
    await resp.arrayBuffer();
    return resp.status === 200;
  }

  /** The server's sandboxes: [{name, status, image, pid}] (sandbox.list). */
  async list(): Promise<Array<{ name: string; status: string; image: string | null; pid: number | null }>> {
    const res = await this.rpc("sandbox.list", {}, { context: "Failed to list sandboxes" });
    return Array.isArray(res?.sandboxes) ? res.sandboxes : [];
  }
}
