/** Reconnect delays: exponential backoff with full jitter (0.5 s doubling to a 20 s cap, PROTOCOL.md §3). The
 * random source is injected so tests need no real time. */
export interface BackoffOptions {
    base?: number;
    cap?: number;
    maxAttempts?: number | null;
    random?: () => number;
}
export declare class Backoff {
    readonly base: number;
    readonly cap: number;
    readonly maxAttempts: number | null;
    private readonly random;
    constructor(options?: BackoffOptions);
    /** Seconds to wait before each attempt: uniform in [0, min(cap, base * 2^attempt)). */
    delays(): Generator<number>;
}
