/** What the client needs from its host, declared here so that the core compiles against ES2020 alone: a WebSocket
 * (the browser's, React Native's, or one passed in, such as Node's `ws`) and timers. Nothing DOM- or Node-only. */
export interface WebSocketLike {
    readonly readyState: number;
    readonly protocol: string;
    binaryType: string;
    send(data: string | Uint8Array): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
export declare function defaultWebSocket(): WebSocketConstructor;
/** Resolves after `seconds`. */
export declare function sleep(seconds: number): Promise<void>;
/** Calls `fn` after `seconds` unless the returned function is called first. */
export declare function timer(seconds: number, fn: () => void): () => void;
