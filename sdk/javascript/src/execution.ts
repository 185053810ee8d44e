/** Results of `run()` and `command.run()`, shaped as upstream's SDK. */

export interface OutputLine {
  stream: "stdout" | "stderr";
  text: string;
}

export interface OutputData {
  output?: OutputLine[];
  status?: string;
  language?: string;
  success?: boolean;
  exit_code?: number;
  out_of_memory?: boolean;
  command?: string;
  args?: string[];
}

function join(lines: OutputLine[], stream: string): string {
  return lines
    .filter((l) => l && l.stream === stream)
    .map((l) => String(l.text ?? ""))
    .join("\n")
    .trim();
}

/** The result of `sandbox.run(code)` (sandbox.repl.run). */
export class Execution {
  private readonly lines: OutputLine[];
  private readonly _status: string;
  private readonly _language: string;
  private readonly _hasError: boolean;

  constructor(outputData?: OutputData) {
    const d = outputData ?? {};
    this.lines = Array.isArray(d.output) ? d.output : [];
    this._status = d.status ?? "unknown";
    this._language = d.language ?? "unknown";
    this._hasError =
      this._status === "error" || this._status === "exception" || this.lines.some((l) => l && l.stream === "stderr" && !!l.text);
  }

  /** The stdout lines joined by newlines, trimmed. */
  async output(): Promise<string> {
    return join(this.lines, "stdout");
  }

  /** The stderr lines joined by newlines, trimmed. */
  async error(): Promise<string> {
    return join(this.lines, "stderr");
  }

  hasError(): boolean {
    return this._hasError;
  }

  get status(): string {
    return this._status;
  }

  get language(): string {
    return this._language;
  }

  /** The raw [{stream, text}] lines, in order. */
  get outputLines(): OutputLine[] {
    return [...this.lines];
  }
}

/** The result of `sandbox.command.run(cmd, args)` (sandbox.command.run). */
export class CommandExecution {
  private readonly lines: OutputLine[];
  private readonly _command: string;
  private readonly _args: string[];
  private readonly _exitCode: number;
  private readonly _success: boolean;
  private readonly _outOfMemory: boolean;

  constructor(outputData?: OutputData) {
    const d = outputData ?? {};
    this.lines = Array.isArray(d.output) ? d.output : [];
    this._command = d.command ?? "";
    this._args = Array.isArray(d.args) ? d.args : [];
    this._exitCode = typeof d.exit_code === "number" ? d.exit_code : -1;
    this._success = !!d.success;
    this._outOfMemory = !!d.out_of_memory; // this project's field; upstream: absent
  }

  async output(): Promise<string> {
    return join(this.lines, "stdout");
  }

  async error(): Promise<string> {
    return join(this.lines, "stderr");
  }

  get exitCode(): number {
    return this._exitCode;
  }

  get success(): boolean {
    return this._success;
  }

  /** True when the guest's memory guard killed the command (exit code 137). */
  get outOfMemory(): boolean {
    return this._outOfMemory;
  }

  get command(): string {
    return this._command;
  }

  get args(): string[] {
    return [...this._args];
  }

  get outputLines(): OutputLine[] {
    return [...this.lines];
  }
}
