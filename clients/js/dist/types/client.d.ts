/**
 * The reference client: one WebSocket, any number of sessions, streaming turns, and transparent reconnect + resume.
 *
 *   const client = await Client.connect("ws://127.0.0.1:8000/");
 *   const session = await client.open({ persona: "You are Bram, a gruff blacksmith." });
 *   const turn = session.say("Hello!");
 *   for await (const piece of turn) show(piece);
 *   const { reason, usage, timings } = await turn.result;
 *
 * When the socket drops, the client reconnects with exponential backoff and full jitter (0.5 s doubling to 20 s),
 * says hello again (asking `token` for a fresh credential when it is a function), resumes every open session
 * from the last seq it delivered, and the application sees every delta exactly once. When the server cannot
 * replay the gap, the session catches up from the snapshot instead. Each turn's text is checked against
 * turn.end's xlen/xcrc; a difference rejects `turn.result` with TextMismatch (PROTOCOL.md §3).
 */
import { Backoff, type BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { ConnectionLost } from "./errors.js";
import { type Frame, type Params, type Subprotocol, type Welcome } from "./frames.js";
import { type WebSocketConstructor } from "./host.js";
import { type Link, Session } from "./session.js";
export declare const VERSION = "0.1.0";
export interface ClientOptions {
    /** The WebSocket class; defaults to the global one (browsers, React Native, Node 22). Node 20: `ws`. */
    WebSocket?: WebSocketConstructor;
    subprotocol?: Subprotocol;
    name?: string;
    /** hello.token, or a function asked for a fresh one before every connect and reconnect. */
    token?: string | (() => string | Promise<string>);
    reconnect?: boolean;
    backoff?: Backoff | BackoffOptions;
    openTimeout?: number;
    /** Seconds between keepalive pings (default: welcome.hb, the server's heartbeat); 0 turns them off. */
    keepalive?: number;
    sleep?: (seconds: number) => Promise<void>;
    timer?: (seconds: number, fn: () => void) => () => void;
    now?: () => number;
}
export interface OpenOptions {
    persona?: string;
    params?: Params;
    model?: string;
}
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";
export interface ClientEvents {
    [name: string]: unknown;
    open: {
        welcome: Welcome;
        reconnects: number;
    };
    disconnected: {
        code: number;
        reason: string;
    };
    reconnecting: {
        attempt: number;
        delay: number;
    };
    closed: {
        error: ConnectionLost;
    };
    frame: Frame;
}
export declare class Client extends Emitter<ClientEvents> implements Link {
    readonly url: string;
    private readonly options;
    readonly sessions: Map<string, Session>;
    welcome: Welcome | null;
    reconnects: number;
    state: ConnectionState;
    private readonly WS;
    private readonly codec;
    private readonly backoff;
    private readonly sleep;
    private readonly timer;
    private stopKeepalive;
    private readonly now;
    private heard;
    private ws;
    private socketNo;
    private ids;
    private readonly waiting;
    private readonly resuming;
    private outbox;
    constructor(url: string, options?: ClientOptions);
    /** A connected client. */
    static connect(url: string, options?: ClientOptions): Promise<Client>;
    get subprotocol(): Subprotocol;
    connect(): Promise<void>;
    /** Opens a new session. */
    open(options?: OpenOptions): Promise<Session>;
    /** Joins an existing session (another device, a spectator); `session.snapshot` holds its history. */
    attach(sid: string): Promise<Session>;
    /** Seconds for a ping's round trip. */
    ping(): Promise<number>;
    /** Closes the connection for good: every turn still running fails with ConnectionLost. */
    close(): void;
    /** Closes the socket as if the network dropped it: the client reconnects and resumes (tests, demos). */
    dropConnection(): void;
    nextId(): number;
    sendTurn(frame: Frame): void;
    request(frame: Frame, expect?: string): Promise<Frame>;
    forget(sid: string): void;
    private adopt;
    private sendNow;
    /** Opens a socket, says hello and waits for welcome; on success it becomes the client's socket. */
    private openSocket;
    /** Every `seconds`, a ping; a socket from which nothing came for two periods is dropped (a browser cannot see
     * the server's WebSocket pings go unanswered, so a half-open connection is found this way). 0: off. */
    private keepalive;
    private onMessage;
    private onClose;
    private reconnect;
    /** A new socket is open: fail what the old one took with it, resume every session, send what waited. */
    private resumed;
    /** A method, not a comparison of `state`: it changes while reconnect() awaits. */
    private isClosed;
    private giveUp;
    private onFrame;
    /** Requests answered by a session frame (cancel: turn.end; rollback, update: session.updated; close) end on it. */
    private ack;
    private settle;
}
