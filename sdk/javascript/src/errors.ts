/**
 * Typed errors.  Every error the SDK throws is a `MicrosandboxError` (an
 * `Error`, as upstream's were); the subclass says what went wrong, `message`
 * reads "<what the SDK was doing>: <server message>", `serverMessage` is the
 * server's own text, `status` the HTTP status, `code` the server's error code
 * and `kind` this project's error kind (docs/errors.md) when sent.
 */

export interface ErrorInfo {
  context?: string;
  status?: number;
  code?: number;
  kind?: string;
  data?: unknown;
  cause?: unknown;
}

export class MicrosandboxError extends Error {
  readonly serverMessage: string;
  readonly context?: string;
  readonly status?: number;
  readonly code?: number;
  readonly kind?: string;
  readonly data?: unknown;

  constructor(message: string, info: ErrorInfo = {}) {
    super(info.context ? `${info.context}: ${message}` : message, info.cause !== undefined ? { cause: info.cause } : undefined);
    this.name = new.target.name;
    this.serverMessage = message;
    this.context = info.context;
    this.status = info.status;
    this.code = info.code;
    this.kind = info.kind;
    this.data = info.data;
  }
}

/** The server could not be reached (refused, reset, DNS, connect timeout). */
export class ServerUnreachable extends MicrosandboxError {}
/** 401: no API key, a malformed one, a bad signature or an expired key. */
export class AuthError extends MicrosandboxError {}
/** The server refused the parameters (HTTP 400/413/415/422, -32602). */
export class InvalidRequest extends MicrosandboxError {}
/** Something named does not exist (-32001). */
export class NotFound extends MicrosandboxError {}
export class SandboxNotFound extends NotFound {}
export class FileNotFound extends NotFound {}
/** Wrong state: exists already, not running, busy (-32002). */
export class StateError extends MicrosandboxError {}
/** A method that needs a started sandbox was called before start(). */
export class NotStarted extends StateError {}
/** A deadline passed, on the server (kind timeout) or in the client. */
export class Timeout extends MicrosandboxError {}
/** The server could not reach what it needed (a registry, -32004). */
export class NetworkError extends MicrosandboxError {}
/** The guest misbehaved or reported a failure (-32005). */
export class GuestError extends MicrosandboxError {}
/** Any other server-side failure (HTTP 5xx, -32603, upstream's 5002). */
export class ServerError extends MicrosandboxError {}
/** The server does not know the method or route (an older server). */
export class MethodNotFound extends ServerError {}
/** The server's reply could not be understood. */
export class ProtocolError extends MicrosandboxError {}

type ErrorClass = new (message: string, info?: ErrorInfo) => MicrosandboxError;

const RPC_CODES: Record<number, ErrorClass> = {
  [-32600]: InvalidRequest,
  [-32601]: MethodNotFound,
  [-32602]: InvalidRequest,
  [-32001]: NotFound,
  [-32002]: StateError,
  [-32003]: Timeout,
  [-32004]: NetworkError,
  [-32005]: GuestError,
  [-32006]: ServerError,
  [-32603]: ServerError,
};

// this project's error kinds (docs/errors.md)
const KINDS: Record<string, ErrorClass> = {
  usage: InvalidRequest,
  not_found: NotFound,
  exists: StateError,
  state: StateError,
  timeout: Timeout,
  network: NetworkError,
  guest: GuestError,
};

/** The typed error for a non-success reply (any of the server's error
 * body shapes, docs/api.md). */
export function fromResponse(status: number, text: string, context?: string, files = false): MicrosandboxError {
  let doc: any = undefined;
  try {
    doc = text.trim() ? JSON.parse(text) : undefined;
  } catch {
    doc = undefined;
  }
  let cls: ErrorClass = ServerError;
  let message = text.trim() || `HTTP ${status}`;
  let code: number | undefined;
  let kind: string | undefined;
  let data: unknown;
  if (doc && typeof doc === "object" && doc.error && typeof doc.error === "object") {
    message = String(doc.error.message ?? message);
    code = typeof doc.error.code === "number" ? doc.error.code : undefined;
    data = doc.error.data;
    if (data && typeof data === "object") kind = (data as any).kind;
    cls = (code !== undefined && RPC_CODES[code]) || ServerError;
  } else if (doc && typeof doc === "object" && typeof doc.error === "string") {
    message = doc.error;
    code = typeof doc.code === "number" ? doc.code : undefined;
    kind = typeof doc.kind === "string" ? doc.kind : undefined;
    const low = message.toLowerCase();
    if (status === 401 || code === 1001 || code === 1004) cls = AuthError;
    else if (code === 2001 || status === 400) cls = InvalidRequest;
    else if (kind !== undefined) cls = KINDS[kind] ?? ServerError;
    else if (low.includes("not found")) cls = NotFound;
    else if (low.includes("timed out") || low.includes("timeout")) cls = Timeout;
  } else if ([400, 413, 415, 422].includes(status)) {
    cls = InvalidRequest;
  } else if (status === 404) {
    cls = MethodNotFound;
  }
  if (status === 401) cls = AuthError;
  if (cls === NotFound) cls = files && !message.toLowerCase().includes("sandbox") ? FileNotFound : SandboxNotFound;
  return new cls(message, { context, status, code, kind, data });
}
