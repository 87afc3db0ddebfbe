/** One open session as the client sees it: its turns, the frames that belong to it, and how it catches up after a
 * resume (the frames it missed, or a snapshot when the server could not replay them). */
import { Emitter } from "./emitter.js";
import { RtError } from "./errors.js";
import type { Frame, Id, JsonSchema, Params, SessionFrame, SessionState, Snapshot } from "./frames.js";
import { SeqTracker } from "./sequence.js";
import { Turn } from "./turn.js";
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
    addEventListener(type: "abort", fn: () => void, options?: {
        once?: boolean;
    }): void;
}
export interface TurnOptions {
    params?: Params;
    signal?: SignalLike;
}
export interface SayOptions extends TurnOptions {
    interrupt?: boolean;
    schema?: JsonSchema;
    grammar?: string;
}
export interface SessionEvents {
    [name: string]: unknown;
    turn: Turn;
    state: SessionState;
    resumed: {
        recovered: boolean;
        why?: string;
    };
    closed: {
        error?: RtError;
    };
}
export declare class Session extends Emitter<SessionEvents> {
    private readonly link;
    readonly sid: string;
    readonly tracker: SeqTracker;
    state: SessionState;
    snapshot: Snapshot | null;
    closed: boolean;
    readonly turns: Map<number, Turn>;
    readonly pending: Map<Id, Turn>;
    private resendAfter;
    constructor(link: Link, frame: SessionFrame);
    /** Starts a turn: iterate the returned Turn for the reply's pieces, await `turn.result` for its end. */
    say(text: string, options?: SayOptions): Turn;
    /** A new alternative for the last reply; the head moves to it. */
    regenerate(options?: TurnOptions): Turn;
    /** Extends the last reply; the turn's text is the continuation only. */
    continue(options?: TurnOptions): Turn;
    /** Stops the running turn; resolves on its turn.end. Rejects with RtError no_turn if none runs. */
    cancel(): Promise<void>;
    /** Moves the head back to turn `tid` (0: before the first turn); resolves with the new state. */
    rollback(tid: number): Promise<SessionState>;
    /** Changes persona and/or default parameters; resolves with the full effective state. */
    update(changes: {
        persona?: string;
        params?: Params;
    }): Promise<SessionState>;
    /** Reads the session as it is now (state and snapshot: the history's text of each turn on the active path). */
    refresh(): Promise<Snapshot>;
    /** Ends the session for good (the server deletes it). */
    close(): Promise<void>;
    /** For Turn.cancel: cancel this turn if it is still the one running. */
    cancelTurn(turn: Turn): Promise<void>;
    private turn;
    /** A frame of this session (throws GapError when frames were lost on a live connection). */
    _onFrame(f: Frame & {
        seq: number;
    }): void;
    /** The server's answer to session.resume after a reconnect. */
    _onResumed(f: SessionFrame): void;
    /** The session is gone: closed here or elsewhere, or unknown to the server on resume. */
    markClosed(error?: RtError): void;
    /** Fails every turn (the connection is gone for good). */
    _failAll(error: unknown): void;
    /** A request with this frame id was refused: if it was a turn, the turn fails. */
    _refused(id: Id, error: RtError): boolean;
    private resendUnstarted;
}
