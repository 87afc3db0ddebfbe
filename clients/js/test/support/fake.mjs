// An in-process fake of rtserver for the client's fault cases: a WebSocket class whose sockets talk to it, sessions
// with numbered frames and a frame log, and levers the tests pull (emit a delta, end a turn, drop every socket,
// answer the next resume with a snapshot or unknown_session). Nothing here waits on a clock: frames are delivered
// in order on the next turns of the event loop, as a socket would.
import { MsgpackCodec, textCheck } from "../../dist/rtclient.js";

export class FakeServer {
  constructor() {
    this.codec = new MsgpackCodec();
    this.sockets = [];
    this.received = []; // every client frame, in order
    this.sessions = new Map();
    this.epoch = "ep1";
    this.resumeAs = "recovered"; // or "snapshot", "unknown"
    this.replayOverlap = 0; // frames at or before last_seq sent again on resume (the client must drop them)
    this.refuse = 0; // connection attempts to refuse before accepting again
    this.autoReply = null; // pieces sent at once after each turn.start, then turn.end
    this.waiters = [];
  }

  get WebSocket() {
    const server = this;
    return class FakeSocket {
      constructor(url, protocols) {
        this.url = url;
        this.protocol = protocols[0];
        this.readyState = 0;
        this.binaryType = "blob";
        this.onopen = this.onmessage = this.onclose = this.onerror = null;
        server.sockets.push(this);
        setImmediate(() => {
          if (server.refuse > 0) {
            server.refuse--;
            this.shut(1006, "refused");
          } else {
            this.readyState = 1;
            this.onopen?.({});
          }
        });
      }
      send(data) {
        if (this.readyState !== 1) throw new Error("not open");
        const frame = server.codec.decode(data);
        setImmediate(() => this.readyState === 1 && server.receive(this, frame));
      }
      close(code = 1000, reason = "") {
        this.shut(code, reason);
      }
      shut(code, reason) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        setImmediate(() => this.onclose?.({ code, reason }));
      }
      deliver(frame) {
        const bytes = server.codec.encode(frame);
        setImmediate(() => this.readyState === 1 && this.onmessage?.({ data: bytes }));
      }
    };
  }

  /** Resolves with the first client frame of type `t` (after `since` frames) that arrives. */
  next(t, since = this.received.length) {
    const seen = this.received.slice(since).find((f) => f.t === t);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ t, resolve }));
  }

  drop(code = 1006) {
    for (const s of this.sockets) s.shut(code, "dropped");
  }

  live() {
    return this.sockets.filter((s) => s.readyState === 1);
  }

  receive(sock, f) {
    this.received.push(f);
    this.waiters = this.waiters.filter((w) => (w.t === f.t ? (w.resolve(f), false) : true));
    const handler = this[`on_${f.t.replace(".", "_")}`];
    if (handler) handler.call(this, sock, f);
  }

  on_hello(sock) {
    const limits = { frame_log: 1024, resume_grace_s: 10 };
    sock.deliver({ t: "welcome", v: 1, server: "fake", node: "n1", limits, hb: 20, models: ["default"] });
  }

  on_session_open(sock, f) {
    let s = f.sid && this.sessions.get(f.sid);
    if (f.sid && !s) return sock.deliver({ t: "error", id: f.id, code: "unknown_session", msg: "no such session" });
    if (!s) {
      const sid = `s${this.sessions.size + 1}`;
      s = { sid, seq: 0, tid: 0, head: 0, log: [], socks: new Set(), turns: [], running: null, persona: f.persona ?? "" };
      this.sessions.set(sid, s);
    }
    s.socks.add(sock);
    sock.deliver({ t: "session", id: f.id, sid: s.sid, seq: s.seq, ep: this.epoch, state: this.state(s), snap: this.snap(s) });
  }

  on_session_resume(sock, f) {
    const s = this.sessions.get(f.sid);
    if (!s || this.resumeAs === "unknown") {
      return sock.deliver({ t: "error", id: f.id, sid: f.sid, code: "unknown_session", msg: "gone" });
    }
    s.socks.add(sock);
    const base = { t: "session", id: f.id, sid: s.sid, seq: s.seq, ep: this.epoch, state: this.state(s) };
    if (this.resumeAs === "snapshot") {
      this.resumeAs = "recovered";
      return sock.deliver({ ...base, recovered: false, why: "gap_too_old", snap: this.snap(s) });
    }
    sock.deliver({ ...base, recovered: true });
    for (const frame of s.log.filter((x) => x.seq > f.last_seq - this.replayOverlap)) sock.deliver(frame);
  }

  on_say(sock, f) {
    this.startTurn(f, "say", f.text);
  }

  on_regenerate(sock, f) {
    this.startTurn(f, "regenerate", null);
  }

  on_cancel(sock, f) {
    const s = this.sessions.get(f.sid);
    if (!s.running) return sock.deliver({ t: "error", id: f.id, sid: s.sid, code: "no_turn", msg: "nothing runs" });
    this.end(s.sid, "cancelled");
  }

  on_rollback(sock, f) {
    const s = this.sessions.get(f.sid);
    s.head = f.tid;
    this.emit(s, { t: "session.updated", state: this.state(s) });
  }

  on_ping(sock, f) {
    sock.deliver({ t: "pong", id: f.id });
  }

  startTurn(f, kind, user) {
    const s = this.sessions.get(f.sid);
    if (s.running) return this.toSocks(s, { t: "error", id: f.id, sid: s.sid, code: "turn_running", msg: "busy" });
    const tid = ++s.tid;
    s.running = { tid, kind, parent: s.head, user, text: "" };
    this.emit(s, { t: "turn.start", id: f.id, tid, kind, parent: s.head });
    if (this.autoReply) {
      for (const x of this.autoReply) this.delta(s.sid, x);
      this.end(s.sid);
    }
  }

  delta(sid, x) {
    const s = this.sessions.get(sid);
    s.running.text += x;
    this.emit(s, { t: "delta", tid: s.running.tid, x });
  }

  end(sid, reason = "stop", check = textCheck(this.sessions.get(sid).running.text)) {
    const s = this.sessions.get(sid);
    const r = s.running;
    s.running = null;
    s.head = r.tid;
    s.turns.push({ tid: r.tid, parent: r.parent, kind: r.kind, user: r.user, reply: r.text, reason });
    const usage = { prompt: 5, reused: 0, completion: 3 };
    const timings = { queue_ms: 0, ttft_ms: 1, total_ms: 2 };
    this.emit(s, { t: "turn.end", tid: r.tid, reason, usage, timings, cache: "miss", xlen: check[0], xcrc: check[1] });
  }

  emit(s, frame) {
    const f = { ...frame, sid: s.sid, seq: ++s.seq };
    s.log.push(f);
    this.toSocks(s, f);
  }

  toSocks(s, f) {
    for (const sock of s.socks) if (sock.readyState === 1) sock.deliver(f);
  }

  state(s) {
    return { model: "default", persona: s.persona, params: {}, head: s.head, turns: s.turns.length, running: s.running?.tid ?? null };
  }

  snap(s) {
    const r = s.running;
    return { turns: s.turns, running: r && { tid: r.tid, kind: r.kind, parent: r.parent, user: r.user, text: r.text } };
  }
}

/** Resolves once `condition()` holds, looking after each turn of the event loop (frames in flight arrive in a few);
 * fails after many turns rather than hang. No timers: nothing here depends on how fast the machine is. */
export async function until(condition, what = "the condition") {
  for (let i = 0; i < 10000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`${what} never held`);
}
