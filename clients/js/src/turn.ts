/** A streaming turn as the application sees it: iterate it for the reply's pieces, await `result` for its end. */

import type { Frame, Reason, Timings, TurnKind, Usage } from "./frames.js";

export interface TurnResult {
  tid: number;
  reason: Reason;
  text: string; // the whole reply (for a continue: the continuation)
  usage: Partial<Usage>;
  timings: Partial<Timings>;
  cache: string;
  error?: string;
  parsed?: boolean; // a turn with a schema: whether the reply parsed as JSON
  code?: string; // with reason "error": engine_error, internal, or store_failed (not in the history)
}

/** The part of a session a turn needs to cancel itself. */
interface Canceller {
  cancelTurn(turn: Turn): Promise<void>;
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // whoever awaits it sees the failure; nobody awaiting is not an unhandled rejection
  return { promise, resolve, reject };
}

export class Turn implements AsyncIterable<string> {
  tid: number | null = null;
  parent: number | null = null;
  /** The reply so far. */
  text = "";
  /** Resolves with the turn id once the server started the turn (`turn.start`). */
  readonly started: Promise<number>;
  /** Resolves when the turn ends, with its reason, usage and timings; rejects with RtError (refused), TextMismatch
   * or ConnectionLost. A cancelled turn resolves, with reason "cancelled". */
  readonly result: Promise<TurnResult>;
  /** Set by `cancel()` before the server started the turn: cancel as soon as it starts. */
  cancelRequested = false;
  private readonly start = deferred<number>();
  private readonly end = deferred<TurnResult>();
  private pieces: string[] = [];
  private wake: (() => void) | null = null;
  private finished = false;
  private failure: unknown = null;

  constructor(
    readonly kind: TurnKind,
    /** The frame that asked for it, sent again after a reconnect if the server never started it. */
    readonly frame: Frame,
    private readonly owner: Canceller | null,
  ) {
    this.started = this.start.promise;
    this.result = this.end.promise;
  }

  get done(): boolean {
    return this.finished;
  }

  /** Stops the turn (it ends with reason "cancelled"); does nothing once it ended. */
  cancel(): Promise<void> {
    if (this.finished || this.owner === null) return Promise.resolve();
    if (this.tid === null) {
      this.cancelRequested = true;
      return Promise.resolve();
    }
    return this.owner.cancelTurn(this);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      if (this.pieces.length > 0) {
        const batch = this.pieces;
        this.pieces = [];
        yield* batch;
        continue;
      }
      if (this.finished) break;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    if (this.failure !== null) throw this.failure;
  }

  // --- fed by the session ---------------------------------------------------------------------------------------

  _start(tid: number, parent: number): void {
    this.tid = tid;
    this.parent = parent;
    this.start.resolve(tid);
  }

  _feed(piece: string): void {
    this.text += piece;
    this.pieces.push(piece);
    this.poke();
  }

  /** Delivers what a snapshot holds beyond what was already delivered. */
  _catchUp(full: string): void {
    if (full.length > this.text.length && full.startsWith(this.text)) this._feed(full.slice(this.text.length));
  }

  _end(result: TurnResult): void {
    if (this.finished) return;
    this.finished = true;
    this.end.resolve(result);
    this.poke();
  }

  _fail(error: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.failure = error;
    this.start.reject(error);
    this.end.reject(error);
    this.poke();
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
