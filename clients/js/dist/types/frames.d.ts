/** Protocol v1 frames as TypeScript types (protocol/PROTOCOL.md §2). Receivers ignore keys they do not know. */
export declare const SUBPROTOCOL_MSGPACK = "rt.v1.msgpack";
export declare const SUBPROTOCOL_JSON = "rt.v1.json";
export type Subprotocol = typeof SUBPROTOCOL_MSGPACK | typeof SUBPROTOCOL_JSON;
export type Id = string | number;
export type TurnKind = "say" | "regenerate" | "continue";
export type Reason = "stop" | "length" | "cancelled" | "error";
/** Generation parameters; each one left out keeps the session's value. */
export interface Params {
    temperature?: number;
    top_p?: number;
    seed?: number;
    max_tokens?: number;
    stop?: string[];
    priority?: number;
}
/** Any frame: a map with a type tag `t`. */
export interface Frame {
    t: string;
    id?: Id;
    [key: string]: unknown;
}
export interface Limits {
    max_frame_bytes?: number;
    max_text?: number;
    send_queue?: number;
    frame_log?: number;
    frame_log_ttl_s?: number;
    resume_grace_s?: number;
    sessions_per_connection?: number;
    bad_frames_burst?: number;
    bad_frames_per_s?: number;
    [key: string]: number | undefined;
}
export interface Welcome extends Frame {
    t: "welcome";
    v: number;
    server: string;
    node: string;
    limits: Limits;
    hb: number;
    models: string[];
}
export interface SessionState {
    model: string;
    persona: string;
    params: Params;
    head: number;
    turns: number;
    running: number | null;
}
export interface Usage {
    prompt: number;
    reused: number;
    completion: number;
}
export interface Timings {
    queue_ms: number;
    ttft_ms: number | null;
    total_ms: number;
}
export interface SnapTurn {
    tid: number;
    parent: number;
    kind: TurnKind;
    user: string | null;
    reply: string;
    reason: Reason;
    usage?: Usage;
}
export interface SnapRunning {
    tid: number;
    kind: TurnKind;
    parent: number;
    user: string | null;
    text: string;
}
export interface Snapshot {
    turns: SnapTurn[];
    running: SnapRunning | null;
}
export interface SessionFrame extends Frame {
    t: "session";
    sid: string;
    seq: number;
    ep: string;
    state: SessionState;
    recovered?: boolean;
    why?: "epoch_changed" | "gap_too_old" | "ahead";
    snap?: Snapshot;
}
export interface TurnStart extends Frame {
    t: "turn.start";
    sid: string;
    seq: number;
    tid: number;
    kind: TurnKind;
    parent: number;
}
export interface Delta extends Frame {
    t: "delta";
    sid: string;
    seq: number;
    tid: number;
    x: string;
}
export interface TurnEnd extends Frame {
    t: "turn.end";
    sid: string;
    seq: number;
    tid: number;
    reason: Reason;
    usage: Usage;
    timings: Timings;
    cache: string;
    xlen?: number;
    xcrc?: number;
    error?: string;
    code?: string;
    parsed?: boolean;
}
export interface SessionUpdated extends Frame {
    t: "session.updated";
    sid: string;
    seq: number;
    state: SessionState;
}
export interface ErrorFrame extends Frame {
    t: "error";
    code: string;
    msg: string;
    sid?: string;
    retry_after?: number;
}
/** A frame numbered in its session's sequence. */
export type SeqFrame = TurnStart | Delta | TurnEnd | SessionUpdated | (Frame & {
    sid: string;
    seq: number;
});
/** A JSON schema (for `say({schema})`): a plain object. */
export type JsonSchema = {
    [key: string]: unknown;
};
