/** What the client needs from its host, declared here so that the core compiles against ES2020 alone: a WebSocket
 * (the browser's, React Native's, or one passed in, such as Node's `ws`) and timers. Nothing DOM- or Node-only. */

export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

declare const globalThis: { WebSocket?: WebSocketConstructor };
declare function setTimeout(fn: () => void, ms: number): unknown;
declare function clearTimeout(handle: unknown): void;

export function defaultWebSocket(): WebSocketConstructor {
  const ws = globalThis.WebSocket;
  if (ws === undefined) {
    throw new TypeError("no global WebSocket: pass one, e.g. new Client(url, { WebSocket }) with WebSocket from 'ws'");
  }
  return ws;
}

/** Resolves after `seconds`. */
export function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

/** Calls `fn` after `seconds` unless the returned function is called first. */
export function timer(seconds: number, fn: () => void): () => void {
  const handle = setTimeout(fn, seconds * 1000);
  return () => clearTimeout(handle);
}
