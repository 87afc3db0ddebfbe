/** Opening one connection: the socket, `hello` (with the token, if any) and the server's `welcome`. */
import type { Codec } from "./codec.js";
import type { Welcome } from "./frames.js";
import { type WebSocketConstructor, type WebSocketLike } from "./host.js";
export interface Hello {
    url: string;
    WebSocket: WebSocketConstructor;
    codec: Codec;
    name: string;
    version: string;
    token: string | undefined;
    openTimeout: number;
}
/** Resolves with the open socket and its welcome; rejects with ConnectionLost (or RtError if the server refused
 * the hello) and leaves nothing open behind. The caller sets the socket's handlers from then on. */
export declare function handshake(h: Hello): Promise<{
    ws: WebSocketLike;
    welcome: Welcome;
}>;
