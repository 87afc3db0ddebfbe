/** rtserver reference client (protocol v1) for browsers, React Native and Node. */

export { Backoff, type BackoffOptions } from "./backoff.js";
export { Client, type ClientEvents, type ClientOptions, type ConnectionState, type OpenOptions, VERSION } from "./client.js";
export { type Codec, codecFor, compact, JsonCodec, MsgpackCodec } from "./codec.js";
export { AbortError, ConnectionLost, ProtocolError, RtClientError, RtError, TextMismatch } from "./errors.js";
export * from "./frames.js";
export type { WebSocketConstructor, WebSocketLike } from "./host.js";
export { GapError, SeqTracker } from "./sequence.js";
export { type SayOptions, Session, type SessionEvents, type SignalLike, type TurnOptions } from "./session.js";
export { mismatch, textCheck } from "./textcheck.js";
export { Turn, type TurnResult } from "./turn.js";
