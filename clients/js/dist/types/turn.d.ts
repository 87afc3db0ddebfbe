/** A streaming turn as the application sees it: iterate it for the reply's pieces, await `result` for its end. */
import type { Frame, Reason, Timings, TurnKind, Usage } from "./frames.js";
export interface TurnResult {
    tid: number;
    reason: Reason;
    text: string;
    usage: Partial<Usage>;
    timings: Partial<Timings>;
    cache: string;
    error?: string;
    parsed?: boolean;
    code?: string;
}
/** The part of a session a turn needs to cancel itself. */
interface Canceller {
    cancelTurn(turn: Turn): Promise<void>;
}
export declare class Turn implements AsyncIterable<string> {
    readonly kind: TurnKind;
    /** The frame that asked for it, sent again after a reconnect if the server never started it. */
    readonly frame: Frame;
    private readonly owner;
    tid: number | null;
    parent: number | null;
    /** The reply so far. */
    text: string;
    /** Resolves with the turn id once the server started the turn (`turn.start`). */
    readonly started: Promise<number>;
    /** Resolves when the turn ends, with its reason, usage and timings; rejects with RtError (refused), TextMismatch
     * or ConnectionLost. A cancelled turn resolves, with reason "cancelled". */
    readonly result: Promise<TurnResult>;
    /** Set by `cancel()` before the server started the turn: cancel as soon as it starts. */
    cancelRequested: boolean;
    private readonly start;
    private readonly end;
    private pieces;
    private wake;
    private finished;
    private failure;
    constructor(kind: TurnKind, 
    /** The frame that asked for it, sent again after a reconnect if the server never started it. */
    frame: Frame, owner: Canceller | null);
    get done(): boolean;
    /** Stops the turn (it ends with reason "cancelled"); does nothing once it ended. */
    cancel(): Promise<void>;
    [Symbol.asyncIterator](): AsyncIterator<string>;
    _start(tid: number, parent: number): void;
    _feed(piece: string): void;
    /** Delivers what a snapshot holds beyond what was already delivered. */
    _catchUp(full: string): void;
    _end(result: TurnResult): void;
    _fail(error: unknown): void;
    private poke;
}
export {};
