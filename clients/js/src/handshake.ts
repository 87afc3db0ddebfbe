/** Opening one connection: the socket, `hello` (with the token, if any) and the server's `welcome`. */

import type { Codec } from "./codec.js";
import { ConnectionLost, RtError } from "./errors.js";
import type { Frame, Welcome } from "./frames.js";
import { timer, type WebSocketConstructor, type WebSocketLike } from "./host.js";

export interface Hello {
  url: string;
  WebSocket: WebSocketConstructor;
  codec: Codec;
  name: string;
  version: string;
  token: string | undefined;
  openTimeout: number; // seconds for the socket to open and welcome to arrive
}

/** Resolves with the open socket and its welcome; rejects with ConnectionLost (or RtError if the server refused
 * the hello) and leaves nothing open behind. The caller sets the socket's handlers from then on. */
export function handshake(h: Hello): Promise<{ ws: WebSocketLike; welcome: Welcome }> {
  return new Promise((resolve, reject) => {
    const ws = new h.WebSocket(h.url, [h.codec.subprotocol]);
    ws.binaryType = "arraybuffer";
    let settled = false;
    const fail = (error: unknown): void => {
      if (settled) return;
      settled = true;
      stop();
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
      reject(error);
    };
    const stop = timer(h.openTimeout, () => fail(new ConnectionLost("no welcome in time")));
    ws.onerror = () => {}; // the close event that follows says what happened
    ws.onclose = (ev) => fail(new ConnectionLost(`closed before welcome (${ev.code} ${ev.reason})`));
    ws.onopen = () => {
      const hello: Frame = { t: "hello", client: h.name, version: h.version };
      if (h.token !== undefined) hello.token = h.token;
      ws.send(h.codec.encode(hello));
    };
    ws.onmessage = (ev) => {
      let f: Frame;
      try {
        f = h.codec.decode(ev.data);
      } catch (exc) {
        fail(exc);
        return;
      }
      if (f.t !== "welcome") {
        fail(new RtError((f.code as string) ?? "bad_frame", (f.msg as string) ?? "expected welcome"));
        return;
      }
      settled = true;
      stop();
      ws.onopen = ws.onmessage = ws.onclose = null;
      resolve({ ws, welcome: f as Welcome });
    };
  });
}
