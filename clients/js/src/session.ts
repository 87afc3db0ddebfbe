/** One open session as the client sees it: its turns, the frames that belong to it, and how it catches up after a
 * resume (the frames it missed, or a snapshot when the server could not replay them). */

import { compact } from "./codec.js";
import { Emitter } from "./emitter.js";
import { AbortError, RtError, TextMismatch } from "./errors.js";
import type { Frame, Id, JsonSchema, Params, SessionFrame, SessionState, Snapshot, TurnEnd, TurnKind } from "./frames.js";
import { SeqTracker } from "./sequence.js";
import { mismatch } from "./textcheck.js";
import { Turn, type TurnResult } from "./turn.js";

/** What a session needs from its client. */
export interface Link {
  nextId(): number;
  sendTurn(frame: Frame): void;
  request(frame: Frame, expect?: string): Promise<Frame>;
  forget(sid: string): void;
}

/** Duck-typed so that the core needs no DOM or Node types: any AbortSignal fits. */
export interface SignalLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", fn: () => void, options?: { once?: boolean }): void;
}

export interface TurnOptions {
  params?: Params;
  signal?: SignalLike; // aborting it cancels the turn
}

export interface SayOptions extends TurnOptions {
  interrupt?: boolean; // end the running turn (as cancelled) first
  schema?: JsonSchema; // the reply follows this JSON schema; TurnResult.parsed says whether it parsed
  grammar?: string; // or this llama.cpp GBNF grammar (start rule `root`)
}

export interface SessionEvents {
  [name: string]: unknown;
  turn: Turn; // a turn started, by this client or another one attached to the session
  state: SessionState; // persona, parameters or head changed
  resumed: { recovered: boolean; why?: string }; // after a reconnect
  closed: { error?: RtError }; // closed (here or elsewhere), or found gone on resume (error: unknown_session)
}

export class Session extends Emitter<SessionEvents> {
  readonly sid: string;
  readonly tracker: SeqTracker;
  state: SessionState;
  snapshot: Snapshot | null;
  closed = false;
  readonly turns = new Map<number, Turn>(); // by tid, while running
  readonly pending = new Map<Id, Turn>(); // by frame id, until turn.start
  private resendAfter: number | null = null;

  constructor(
    private readonly link: Link,
    frame: SessionFrame,
  ) {
    super();
    this.sid = frame.sid;
    this.tracker = new SeqTracker(frame.ep, frame.seq);
    this.state = frame.state;
    this.snapshot = frame.snap ?? null;
  }

  // --- operations ----------------------------------------------------------------------------------------------

  /** Starts a turn: iterate the returned Turn for the reply's pieces, await `turn.result` for its end. */
  say(text: string, options: SayOptions = {}): Turn {
    const { params, interrupt, schema, grammar, signal } = options;
    return this.turn("say", { text, params, interrupt: interrupt || undefined, schema, grammar }, signal);
  }

  /** A new alternative for the last reply; the head moves to it. */
  regenerate(options: TurnOptions = {}): Turn {
    return this.turn("regenerate", { params: options.params }, options.signal);
  }

  /** Extends the last reply; the turn's text is the continuation only. */
  continue(options: TurnOptions = {}): Turn {
    return this.turn("continue", { params: options.params }, options.signal);
  }

  /** Stops the running turn; resolves on its turn.end. Rejects with RtError no_turn if none runs. */
  async cancel(): Promise<void> {
    await this.link.request({ t: "cancel", sid: this.sid }, "turn.end");
  }

  /** Moves the head back to turn `tid` (0: before the first turn); resolves with the new state. */
  async rollback(tid: number): Promise<SessionState> {
    const f = await this.link.request({ t: "rollback", sid: this.sid, tid }, "session.updated");
    return f.state as SessionState;
  }

  /** Changes persona and/or default parameters; resolves with the full effective state. */
  async update(changes: { persona?: string; params?: Params }): Promise<SessionState> {
    const f = await this.link.request({ t: "session.update", sid: this.sid, ...changes }, "session.updated");
    return f.state as SessionState;
  }

  /** Reads the session as it is now (state and snapshot: the history's text of each turn on the active path). */
  async refresh(): Promise<Snapshot> {
    const f = (await this.link.request({ t: "session.open", sid: this.sid, snapshot: true })) as SessionFrame;
    this.state = f.state;
    this.snapshot = f.snap ?? null;
    return this.snapshot ?? { turns: [], running: null };
  }

  /** Ends the session for good (the server deletes it). */
  async close(): Promise<void> {
    await this.link.request({ t: "session.close", sid: this.sid }, "session.closed");
    this.markClosed();
  }

  /** For Turn.cancel: cancel this turn if it is still the one running. */
  async cancelTurn(turn: Turn): Promise<void> {
    if (turn.done || this.state.running !== turn.tid) return;
    try {
      await this.cancel();
    } catch (exc) {
      if (!(exc instanceof RtError && exc.code === "no_turn")) throw exc; // it ended meanwhile
    }
  }

  private turn(kind: TurnKind, fields: Omit<Frame, "t">, signal?: SignalLike): Turn {
    const id = this.link.nextId();
    const frame = compact({ t: kind, id, sid: this.sid, ...fields });
    const turn = new Turn(kind, frame, this);
    if (signal?.aborted) {
      turn._fail(new AbortError("the signal was aborted before the turn was sent"));
      return turn;
    }
    this.pending.set(id, turn);
    signal?.addEventListener("abort", () => void turn.cancel().catch(() => {}), { once: true });
    this.link.sendTurn(frame);
    return turn;
  }

  // --- frames --------------------------------------------------------------------------------------------------

  /** A frame of this session (throws GapError when frames were lost on a live connection). */
  _onFrame(f: Frame & { seq: number }): void {
    if (!this.tracker.accept(f.seq)) return; // already delivered (a replay overlapping what we saw)
    switch (f.t) {
      case "turn.start": {
        const tid = f.tid as number;
        let turn = f.id !== undefined ? this.pending.get(f.id) : undefined;
        if (turn !== undefined) this.pending.delete(f.id!);
        else turn = new Turn(f.kind as TurnKind, { t: f.kind as string }, this); // started by another client
        turn._start(tid, f.parent as number);
        this.turns.set(tid, turn);
        this.state.running = tid;
        this.emit("turn", turn);
        if (turn.cancelRequested) void turn.cancel().catch(() => {});
        break;
      }
      case "delta":
        this.turns.get(f.tid as number)?._feed(f.x as string);
        break;
      case "turn.end": {
        const turn = this.turns.get(f.tid as number);
        this.turns.delete(f.tid as number);
        this.state.running = null;
        // The head moves to a turn that ended in the history (a store_failed one is not in it).
        if (f.code !== "store_failed") this.state.head = f.tid as number;
        if (turn !== undefined) endTurn(turn, f as TurnEnd);
        break;
      }
      case "session.updated":
        this.state = f.state as SessionState;
        this.emit("state", this.state);
        break;
      case "session.closed":
        this.markClosed();
        break;
    }
    if (this.resendAfter !== null && f.seq >= this.resendAfter) this.resendUnstarted();
  }

  /** The server's answer to session.resume after a reconnect. */
  _onResumed(f: SessionFrame): void {
    if (f.recovered) {
      // Replayed frames follow; a turn asked for that has not started by seq f.seq never reached the server.
      if (f.seq <= this.tracker.lastSeq) this.resendUnstarted();
      else this.resendAfter = f.seq;
      this.emit("resumed", { recovered: true });
      return;
    }
    this.tracker.reset(f.ep, f.seq);
    this.state = f.state;
    this.snapshot = f.snap ?? null;
    const snap = f.snap ?? { turns: [], running: null };
    const done = new Map(snap.turns.map((t) => [t.tid, t]));
    const running = snap.running;
    for (const [tid, turn] of [...this.turns]) {
      const node = done.get(tid);
      if (running !== null && running.tid === tid) {
        turn._catchUp(running.text);
        continue;
      }
      this.turns.delete(tid);
      if (node !== undefined) {
        turn._catchUp(node.reply);
        turn._end(result(tid, node.reason, turn.text, { usage: node.usage ?? {} }));
      } else {
        turn._end(result(tid, "cancelled", turn.text, { error: "lost with the server's frame log" }));
      }
    }
    if (running !== null && !this.turns.has(running.tid)) {
      for (const [id, turn] of this.pending) {
        if (turn.kind === running.kind && (turn.frame.text ?? null) === (running.user ?? null)) {
          this.pending.delete(id);
          turn._start(running.tid, running.parent);
          turn._catchUp(running.text);
          this.turns.set(running.tid, turn);
          break;
        }
      }
    }
    this.emit("resumed", { recovered: false, why: f.why });
    this.resendUnstarted();
  }

  /** The session is gone: closed here or elsewhere, or unknown to the server on resume. */
  markClosed(error?: RtError): void {
    if (this.closed) return;
    this.closed = true;
    this.link.forget(this.sid);
    const failure = error ?? new RtError("unknown_session", "the session was closed");
    for (const turn of [...this.pending.values(), ...this.turns.values()]) turn._fail(failure);
    this.pending.clear();
    this.turns.clear();
    this.emit("closed", error === undefined ? {} : { error });
  }

  /** Fails every turn (the connection is gone for good). */
  _failAll(error: unknown): void {
    for (const turn of [...this.pending.values(), ...this.turns.values()]) turn._fail(error);
  }

  /** A request with this frame id was refused: if it was a turn, the turn fails. */
  _refused(id: Id, error: RtError): boolean {
    const turn = this.pending.get(id);
    if (turn === undefined) return false;
    this.pending.delete(id);
    turn._fail(error);
    return true;
  }

  private resendUnstarted(): void {
    this.resendAfter = null;
    for (const turn of this.pending.values()) this.link.sendTurn(turn.frame);
  }
}

function result(tid: number, reason: TurnResult["reason"], text: string, extra: Partial<TurnResult>): TurnResult {
  return { tid, reason, text, usage: {}, timings: {}, cache: "miss", ...extra };
}

/** Ends `turn` on its turn.end, checking the assembled text against xlen/xcrc. */
function endTurn(turn: Turn, f: TurnEnd): void {
  const r = result(f.tid, f.reason, turn.text, {
    usage: f.usage ?? {},
    timings: f.timings ?? {},
    cache: f.cache ?? "miss",
  });
  if (f.error != null) r.error = f.error;
  if (f.parsed != null) r.parsed = f.parsed;
  if (f.code != null) r.code = f.code;
  const problem = mismatch(turn.text, f);
  if (problem === null) turn._end(r);
  else turn._fail(new TextMismatch(r, problem));
}
