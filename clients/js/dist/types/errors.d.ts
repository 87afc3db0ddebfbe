/**
 * The client's errors, one tree:
 *
 *   RtClientError            anything this client raises
 *   ├── RtError              an `error` frame from the server: `code` (PROTOCOL.md §4), `message`, `retryAfter`
 *   ├── ConnectionLost       the connection is gone and reconnecting is off, gave up, or the client was closed
 *   ├── TextMismatch         a turn's assembled text differs from turn.end's xlen/xcrc (`result` has the text)
 *   ├── ProtocolError        the server sent a frame this client cannot read (`code`: bad_frame)
 *   └── AbortError           the AbortSignal passed to a call fired before the request was sent
 */
import type { TurnResult } from "./turn.js";
export declare class RtClientError extends Error {
    name: string;
}
export declare class RtError extends RtClientError {
    readonly code: string;
    readonly retryAfter?: number | undefined;
    name: string;
    constructor(code: string, message: string, retryAfter?: number | undefined);
}
export declare class ConnectionLost extends RtClientError {
    name: string;
}
export declare class TextMismatch extends RtClientError {
    readonly result: TurnResult;
    readonly detail: string;
    name: string;
    constructor(result: TurnResult, detail: string);
}
export declare class ProtocolError extends RtClientError {
    readonly code: string;
    name: string;
    constructor(code: string, message: string);
}
export declare class AbortError extends RtClientError {
    name: string;
}
