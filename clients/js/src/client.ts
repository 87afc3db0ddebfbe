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
import { type Codec, codecFor, compact } from "./codec.js";
import { Emitter } from "./emitter.js";
import { ConnectionLost, ProtocolError, RtError } from "./errors.js";
import {
  type ErrorFrame,
  type Frame,
  type Id,
  type Params,
  SUBPROTOCOL_MSGPACK,
  type SessionFrame,
  type Subprotocol,
  type Welcome,
} from "./frames.js";
import { handshake } from "./handshake.js";
import { defaultWebSocket, sleep, timer, type WebSocketConstructor, type WebSocketLike } from "./host.js";
import { GapError } from "./sequence.js";
import { type Link, Session } from "./session.js";

export const VERSION = "0.1.0";

export interface ClientOptions {
  /** The WebSocket class; defaults to the global one (browsers, React Native, Node 22). Node 20: `ws`. */
  WebSocket?: WebSocketConstructor;
  subprotocol?: Subprotocol; // rt.v1.msgpack (default) or rt.v1.json
  name?: string; // hello.client
  /** hello.token, or a function asked for a fresh one before every connect and reconnect. */
  token?: string | (() => string | Promise<string>);
  reconnect?: boolean; // default true
  backoff?: Backoff | BackoffOptions;
  openTimeout?: number; // seconds to open the socket and get welcome (default 10)
  /** Seconds between keepalive pings (default: welcome.hb, the server's heartbeat); 0 turns them off. */
  keepalive?: number;
  sleep?: (seconds: number) => Promise<void>; // injected by tests, with timer and now
  timer?: (seconds: number, fn: () => void) => () => void; // returns the function that stops it
  now?: () => number; // milliseconds
}

export interface OpenOptions {
  persona?: string;
  params?: Params;
  model?: string;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface ClientEvents {
  [name: string]: unknown;
  open: { welcome: Welcome; reconnects: number }; // connected (again), sessions resumed
  disconnected: { code: number; reason: string }; // the socket closed; reconnecting follows unless it is over
  reconnecting: { attempt: number; delay: number }; // waiting `delay` seconds before attempt `attempt`
  closed: { error: ConnectionLost }; // for good: closed by the application, or reconnecting gave up
  frame: Frame; // every frame received, decoded (for devtools and measurements)
}

interface Waiter {
  resolve: (f: Frame) => void;
  reject: (e: unknown) => void;
  expect: string; // the frame type that answers (session, pong, or a session frame: turn.end, ...)
  sid?: string;
  socket: number; // the socket it was sent on; 0 while queued
}

const NO_RECONNECT = new Set([1008]); // malformed frames: fix the encoder, do not reconnect (PROTOCOL.md §3)

export class Client extends Emitter<ClientEvents> implements Link {
  readonly sessions = new Map<string, Session>();
  welcome: Welcome | null = null;
  reconnects = 0;
  state: ConnectionState = "connecting";
  private readonly WS: WebSocketConstructor;
  private readonly codec: Codec;
  private readonly backoff: Backoff;
  private readonly sleep: (seconds: number) => Promise<void>;
  private readonly timer: (seconds: number, fn: () => void) => () => void;
  private stopKeepalive = (): void => {};
  private readonly now: () => number;
  private heard = 0; // when the socket last delivered a frame (ms)
  private ws: WebSocketLike | null = null;
  private socketNo = 0; // which socket this is (1, 2, ...): replies to requests sent on an older one will not come
  private ids = 0;
  private readonly waiting = new Map<Id, Waiter>();
  private readonly resuming = new Map<Id, Session>();
  private outbox: Frame[] = []; // requests made while reconnecting, sent once resumed

  constructor(
    readonly url: string,
    private readonly options: ClientOptions = {},
  ) {
    super();
    this.WS = options.WebSocket ?? defaultWebSocket();
    this.codec = codecFor(options.subprotocol ?? SUBPROTOCOL_MSGPACK);
    const b = options.backoff;
    this.backoff = b instanceof Backoff ? b : new Backoff(b);
    this.sleep = options.sleep ?? sleep;
    this.timer = options.timer ?? timer;
    this.now = options.now ?? Date.now;
  }

  /** A connected client. */
  static async connect(url: string, options: ClientOptions = {}): Promise<Client> {
    const client = new Client(url, options);
    await client.connect();
    return client;
  }

  get subprotocol(): Subprotocol {
    return this.codec.subprotocol;
  }

  async connect(): Promise<void> {
    try {
      await this.openSocket();
    } catch (exc) {
      this.state = "closed";
      throw exc;
    }
    this.state = "open";
    this.emit("open", { welcome: this.welcome!, reconnects: 0 });
  }

  /** Opens a new session. */
  async open(options: OpenOptions = {}): Promise<Session> {
    const reply = (await this.request({ t: "session.open", ...options })) as SessionFrame;
    return this.adopt(reply);
  }

  /** Joins an existing session (another device, a spectator); `session.snapshot` holds its history. */
  async attach(sid: string): Promise<Session> {
    return this.adopt((await this.request({ t: "session.open", sid })) as SessionFrame);
  }

  /** Seconds for a ping's round trip. */
  async ping(): Promise<number> {
    const t0 = Date.now();
    await this.request({ t: "ping" }, "pong");
    return (Date.now() - t0) / 1000;
  }

  /** Closes the connection for good: every turn still running fails with ConnectionLost. */
  close(): void {
    if (this.state === "closed") return;
    const ws = this.ws;
    this.ws = null;
    this.stopKeepalive();
    ws?.close(1000, "client closed");
    this.giveUp(new ConnectionLost("client closed"));
  }

  /** Closes the socket as if the network dropped it: the client reconnects and resumes (tests, demos). */
  dropConnection(): void {
    this.ws?.close(4000, "dropped by the application");
  }

  // --- Link: what sessions use -----------------------------------------------------------------------------------

  nextId(): number {
    return ++this.ids;
  }

  sendTurn(frame: Frame): void {
    // While reconnecting a turn request waits in its session's `pending`, which the resume sends again.
    if (this.state === "open") this.sendNow(frame);
  }

  request(frame: Frame, expect = "session"): Promise<Frame> {
    if (this.state === "closed") return Promise.reject(new ConnectionLost("the client is closed"));
    const id = (frame.id = this.nextId());
    return new Promise<Frame>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, expect, socket: 0 };
      if (typeof frame.sid === "string") waiter.sid = frame.sid;
      this.waiting.set(id, waiter);
      if (this.state === "open") {
        waiter.socket = this.socketNo;
        this.sendNow(frame);
      } else {
        this.outbox.push(frame);
      }
    });
  }

  forget(sid: string): void {
    this.sessions.delete(sid);
  }

  // --- connection ----------------------------------------------------------------------------------------------

  private adopt(reply: SessionFrame): Session {
    const session = new Session(this, reply);
    this.sessions.set(session.sid, session);
    return session;
  }

  private sendNow(frame: Frame): void {
    try {
      this.ws?.send(this.codec.encode(compact(frame)));
    } catch {
      // The socket is closing: its close event starts the reconnect, whose resume covers what was lost.
    }
  }

  /** Opens a socket, says hello and waits for welcome; on success it becomes the client's socket. */
  private async openSocket(): Promise<void> {
    const { token, name, openTimeout } = this.options;
    const { ws, welcome } = await handshake({
      url: this.url,
      WebSocket: this.WS,
      codec: this.codec,
      name: name ?? "rtclient-js",
      version: VERSION,
      token: typeof token === "function" ? await token() : token,
      openTimeout: openTimeout ?? 10,
    });
    this.welcome = welcome;
    this.ws = ws;
    this.socketNo++;
    this.heard = this.now();
    ws.onmessage = (e) => this.onMessage(ws, e.data);
    ws.onclose = (e) => this.onClose(ws, e.code, e.reason);
    this.keepalive(ws, this.options.keepalive ?? welcome.hb);
  }

  /** Every `seconds`, a ping; a socket from which nothing came for two periods is dropped (a browser cannot see
   * the server's WebSocket pings go unanswered, so a half-open connection is found this way). 0: off. */
  private keepalive(ws: WebSocketLike, seconds: number): void {
    if (!(seconds > 0)) return;
    const tick = (): void => {
      if (ws !== this.ws) return;
      if (this.now() - this.heard > 2 * seconds * 1000) {
        this.dropConnection();
        return;
      }
      this.sendNow({ t: "ping" });
      this.stopKeepalive = this.timer(seconds, tick);
    };
    this.stopKeepalive = this.timer(seconds, tick);
  }

  private onMessage(ws: WebSocketLike, data: unknown): void {
    if (ws !== this.ws) return; // a socket given up on
    this.heard = this.now();
    let f: Frame;
    try {
      f = this.codec.decode(data);
    } catch (exc) {
      if (exc instanceof ProtocolError) return; // unreadable: the seq gap it leaves forces a resume
      throw exc;
    }
    if (this.hasListeners("frame")) this.emit("frame", f);
    try {
      this.onFrame(f);
    } catch (exc) {
      if (!(exc instanceof GapError)) throw exc;
      this.dropConnection(); // frames were lost on a live connection: start over and resume from what we have
    }
  }

  private onClose(ws: WebSocketLike, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopKeepalive();
    if (this.isClosed()) return; // closed by the application while a reconnect was opening this socket
    this.emit("disconnected", { code, reason });
    if (this.options.reconnect === false || NO_RECONNECT.has(code)) {
      this.giveUp(new ConnectionLost(`connection closed (${code} ${reason})`));
      return;
    }
    this.state = "reconnecting";
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    let attempt = 0;
    for (const delay of this.backoff.delays()) {
      attempt++;
      this.emit("reconnecting", { attempt, delay });
      await this.sleep(delay);
      if (this.isClosed()) return;
      try {
        await this.openSocket();
      } catch {
        if (this.isClosed()) return;
        continue;
      }
      if (this.isClosed()) {
        this.ws?.close(1000, "client closed");
        return;
      }
      this.resumed();
      return;
    }
    this.giveUp(new ConnectionLost("could not reconnect"));
  }

  /** A new socket is open: fail what the old one took with it, resume every session, send what waited. */
  private resumed(): void {
    this.reconnects++;
    for (const [id, w] of this.waiting) {
      if (w.socket !== 0) {
        this.waiting.delete(id);
        w.reject(new ConnectionLost("the connection dropped before the reply"));
      }
    }
    this.resuming.clear();
    for (const s of this.sessions.values()) {
      const id = this.nextId();
      this.resuming.set(id, s);
      this.sendNow({ t: "session.resume", id, sid: s.sid, ep: s.tracker.epoch, last_seq: s.tracker.lastSeq });
    }
    this.state = "open";
    const queued = this.outbox;
    this.outbox = [];
    for (const frame of queued) {
      const w = this.waiting.get(frame.id!);
      if (w !== undefined) w.socket = this.socketNo;
      this.sendNow(frame);
    }
    this.emit("open", { welcome: this.welcome!, reconnects: this.reconnects });
  }

  /** A method, not a comparison of `state`: it changes while reconnect() awaits. */
  private isClosed(): boolean {
    return this.state === "closed";
  }

  private giveUp(error: ConnectionLost): void {
    this.state = "closed";
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
    this.outbox = [];
    for (const s of this.sessions.values()) s._failAll(error);
    this.emit("closed", { error });
  }

  // --- frames ----------------------------------------------------------------------------------------------------

  private onFrame(f: Frame): void {
    const id = f.id;
    if (id !== undefined && this.resuming.has(id)) {
      const session = this.resuming.get(id)!;
      this.resuming.delete(id);
      if (f.t === "session") session._onResumed(f as SessionFrame);
      else session.markClosed(new RtError((f.code as string) ?? "unknown_session", (f.msg as string) ?? ""));
      return;
    }
    if (f.t === "error") {
      const e = f as ErrorFrame;
      const error = new RtError(e.code, e.msg ?? "", e.retry_after);
      if (id === undefined) return;
      for (const s of this.sessions.values()) if (s._refused(id, error)) return;
      this.settle(id, null, error);
      return;
    }
    if (f.t === "session") {
      if (id !== undefined) this.settle(id, f, null); // carries sid and seq, but is the answer to a request
      return;
    }
    if (typeof f.seq === "number" && typeof f.sid === "string") {
      this.sessions.get(f.sid)?._onFrame(f as Frame & { seq: number });
      if (f.t === "turn.end" || f.t === "session.updated" || f.t === "session.closed") this.ack(f);
      return;
    }
    if (id !== undefined) this.settle(id, f, null);
  }

  /** Requests answered by a session frame (cancel: turn.end; rollback, update: session.updated; close) end on it. */
  private ack(f: Frame): void {
    for (const [id, w] of this.waiting) {
      if (w.sid === f.sid && w.expect === f.t && w.socket !== 0) {
        this.settle(id, f, null);
        return;
      }
    }
  }

  private settle(id: Id, f: Frame | null, error: unknown): void {
    const w = this.waiting.get(id);
    if (w === undefined) return;
    this.waiting.delete(id);
    if (error !== null) w.reject(error);
    else w.resolve(f!);
  }
}
