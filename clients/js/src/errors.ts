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

export class RtClientError extends Error {
  override name = "RtClientError";
}

export class RtError extends RtClientError {
  override name = "RtError";
  constructor(
    readonly code: string,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(`${code}: ${message}`);
  }
}

export class ConnectionLost extends RtClientError {
  override name = "ConnectionLost";
}

export class TextMismatch extends RtClientError {
  override name = "TextMismatch";
  constructor(
    readonly result: TurnResult,
    readonly detail: string,
  ) {
    super(`turn ${result.tid}: ${detail}`);
  }
}

export class ProtocolError extends RtClientError {
  override name = "ProtocolError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export class AbortError extends RtClientError {
  override name = "AbortError";
}
