/**
 * `sandbox.files`: read, write, list, upload and download files in a
 * sandbox, over the server's raw file route (PUT/GET /api/v1/sandbox/file),
 * streamed both ways.
 */

import { createReadStream, createWriteStream, promises as fsp } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

import type { BaseSandbox } from "./sandbox.js";
import { FileNotFound, GuestError, ProtocolError, fromResponse } from "./errors.js";

export interface FileInfo {
  name: string;
  path: string;
  type: "file" | "directory" | "symlink" | "other";
  size: number;
  mode: number;
  mtime: number;
}

// Portable across coreutils and busybox: one "type|size|mode|mtime|name" line
// per entry, dot files included.  Exit 3: the path is not a directory.
const LIST_SCRIPT =
  'cd -- "$1" 2>/dev/null || exit 3; ' +
  "for f in .* *; do " +
  '[ "$f" = . ] || [ "$f" = .. ] && continue; ' +
  '[ -e "$f" ] || [ -L "$f" ] || continue; ' +
  'stat -c "%F|%s|%a|%Y|%n" -- "$f"; ' +
  "done";

function kind(t: string): FileInfo["type"] {
  const l = t.toLowerCase();
  if (l.includes("directory")) return "directory";
  if (l.includes("symbolic link")) return "symlink";
  if (l.includes("regular")) return "file";
  return "other";
}

export class Files {
  constructor(private readonly sandbox: BaseSandbox) {}

  private async open(path: string, context: string): Promise<Response> {
    const sb = this.sandbox;
    sb.requireStarted();
    const resp = await sb.client.fetch(sb.client.filePath(sb.name, path), { method: "GET", headers: sb.client.headers() }, undefined, context);
    if (resp.status !== 200) throw fromResponse(resp.status, await resp.text(), context, true);
    return resp;
  }

  /** Write `data` (a string is UTF-8) to the absolute `path`; the file
   * appears only once all of it arrived.  Resolves to the size. */
  async write(path: string, data: string | Uint8Array, mode?: number): Promise<number> {
    const sb = this.sandbox;
    sb.requireStarted();
    const body = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
    const context = `Failed to write ${path}`;
    const { status, text } = await sb.client.sendExpecting(
      "PUT",
      sb.client.filePath(sb.name, path, mode),
      { "Content-Type": "application/octet-stream" },
      body,
      body.length,
      undefined,
      context,
    );
    return this.uploaded(status, text, context);
  }

  /** The whole content of `path`. */
  async read(path: string): Promise<Uint8Array> {
    const resp = await this.open(path, `Failed to read ${path}`);
    return new Uint8Array(await resp.arrayBuffer());
  }

  async readText(path: string): Promise<string> {
    return new TextDecoder().decode(await this.read(path));
  }

  /** Stream a local file to `path` in the sandbox (any size).  Sent with
   * `Expect: 100-continue` (node:http; fetch cannot), so a request the server
   * refuses up front (no such sandbox, bad path) is answered before any of
   * the body goes out. */
  async upload(localPath: string, path: string, mode?: number): Promise<number> {
    const sb = this.sandbox;
    sb.requireStarted();
    const st = await fsp.stat(localPath);
    const context = `Failed to upload ${localPath} to ${path}`;
    const { status, text } = await sb.client.sendExpecting(
      "PUT",
      sb.client.filePath(sb.name, path, mode ?? st.mode & 0o7777),
      { "Content-Type": "application/octet-stream" },
      () => createReadStream(localPath),
      st.size,
      undefined,
      context,
    );
    return this.uploaded(status, text, context);
  }

  private uploaded(status: number, text: string, context: string): number {
    if (status < 200 || status >= 300) throw fromResponse(status, text, context, true);
    try {
      return Number(JSON.parse(text).result.size);
    } catch {
      throw new ProtocolError(`bad upload reply ${text.slice(0, 200)}`, { context });
    }
  }

  /** Stream `path` into a local file (written under a temporary name,
   * renamed when complete).  Resolves to the size. */
  async download(path: string, localPath: string): Promise<number> {
    const resp = await this.open(path, `Failed to download ${path}`);
    const tmp = `${localPath}.part`;
    try {
      await pipeline(Readable.fromWeb(resp.body as any), createWriteStream(tmp));
      await fsp.rename(tmp, localPath);
    } catch (e) {
      await fsp.unlink(tmp).catch(() => undefined);
      throw e;
    }
    return (await fsp.stat(localPath)).size;
  }

  /** The entries of the directory `path`, sorted by name (runs `stat` in
   * the sandbox; names containing newlines are not supported). */
  async list(path = "/"): Promise<FileInfo[]> {
    const r = await this.sandbox.command.run("sh", ["-c", LIST_SCRIPT, "sh", path]);
    const context = `Failed to list ${path}`;
    if (r.exitCode === 3) throw new FileNotFound(`${path} is not a directory in the sandbox`, { context });
    if (!r.success) throw new GuestError((await r.error()) || `exit status ${r.exitCode}`, { context });
    const base = path.replace(/\/+$/, "");
    const out: FileInfo[] = [];
    for (const line of (await r.output()).split("\n")) {
      const parts = line.split("|");
      if (parts.length < 5) continue;
      const [t, size, mode, mtime] = parts;
      const name = parts.slice(4).join("|");
      out.push({ name, path: `${base}/${name}`, type: kind(t), size: Number(size), mode: parseInt(mode, 8), mtime: Number(mtime) });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
