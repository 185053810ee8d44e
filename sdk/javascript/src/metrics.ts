/** `sandbox.metrics`: upstream's accessors over sandbox.metrics.get. */

import type { BaseSandbox } from "./sandbox.js";

export interface SandboxMetrics {
  name?: string;
  running?: boolean;
  cpu_usage?: number | null;
  memory_usage?: number | null;
  disk_usage?: number | null;
}

export class Metrics {
  constructor(private readonly sandbox: BaseSandbox) {}

  private async get(): Promise<SandboxMetrics> {
    this.sandbox.requireStarted();
    const res = await this.sandbox.client.rpc(
      "sandbox.metrics.get",
      { sandbox: this.sandbox.name },
      { context: "Failed to get sandbox metrics" },
    );
    const boxes = Array.isArray(res?.sandboxes) ? res.sandboxes : [];
    return boxes.length ? boxes[0] : {};
  }

  /** {name, running, cpu_usage, memory_usage (MiB), disk_usage (bytes)} */
  async all(): Promise<SandboxMetrics> {
    return this.get();
  }

  /** CPU usage in percent, or undefined when not available. */
  async cpu(): Promise<number | undefined> {
    return (await this.get()).cpu_usage ?? undefined;
  }

  /** Memory usage in MiB, or undefined. */
  async memory(): Promise<number | undefined> {
    return (await this.get()).memory_usage ?? undefined;
  }

  /** Disk usage in bytes, or undefined. */
  async disk(): Promise<number | undefined> {
    return (await this.get()).disk_usage ?? undefined;
  }

  async isRunning(): Promise<boolean> {
    return !!(await this.get()).running;
  }
}
