/** Reconnect delays: exponential backoff with full jitter (0.5 s doubling to a 20 s cap, PROTOCOL.md §3). The
 * random source is injected so tests need no real time. */

export interface BackoffOptions {
  base?: number; // seconds
  cap?: number; // seconds
  maxAttempts?: number | null; // null: keep trying
  random?: () => number; // in [0, 1)
}

export class Backoff {
  readonly base: number;
  readonly cap: number;
  readonly maxAttempts: number | null;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.base = options.base ?? 0.5;
    this.cap = options.cap ?? 20;
    this.maxAttempts = options.maxAttempts ?? null;
    this.random = options.random ?? Math.random;
  }

  /** Seconds to wait before each attempt: uniform in [0, min(cap, base * 2^attempt)). */
  *delays(): Generator<number> {
    for (let attempt = 0; this.maxAttempts === null || attempt < this.maxAttempts; attempt++) {
      yield this.random() * Math.min(this.cap, this.base * 2 ** attempt);
    }
  }
}
