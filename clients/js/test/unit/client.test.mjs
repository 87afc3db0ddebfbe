// The client against the in-process fake server: streaming, reconnect and resume (every delta exactly once), the
// snapshot path, unknown_session, the text check, tokens on every connect, AbortSignal, backoff, 1008.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, ConnectionLost, RtError, TextMismatch } from "../../dist/rtclient.js";
import { FakeServer, until } from "../support/fake.mjs";

async function connected(server, options = {}) {
  const delays = [];
  const sleep = async (s) => delays.push(s); // no real waiting: the delays are recorded
  const client = await Client.connect("ws://fake/", { WebSocket: server.WebSocket, sleep, ...options });
  return { client, delays };
}

async function collect(turn, pieces) {
  for await (const x of turn) pieces.push(x);
  return turn.result;
}

test("a turn streams its deltas and ends with its result", async () => {
  const server = new FakeServer();
  server.autoReply = ["Hmph", ".", " What?"];
  const { client } = await connected(server);
  const session = await client.open({ persona: "Bram" });
  const pieces = [];
  const r = await collect(session.say("Hello"), pieces);
  assert.deepEqual(pieces, ["Hmph", ".", " What?"]);
  assert.equal(r.text, "Hmph. What?");
  assert.equal(r.reason, "stop");
  assert.equal(server.received.find((f) => f.t === "say").text, "Hello");
  client.close();
});

test("a socket dropped mid-reply: the client resumes and sees every delta exactly once", async () => {
  const server = new FakeServer();
  server.replayOverlap = 2; // the resume also sends frames the client already has: it must drop them
  const { client, delays } = await connected(server);
  const session = await client.open();
  const turn = session.say("Tell me a story");
  const pieces = [];
  const done = collect(turn, pieces);
  await turn.started;
  const sid = session.sid;
  server.delta(sid, "Once");
  server.delta(sid, " upon");
  await until(() => pieces.length === 2, "two pieces");
  server.drop();
  server.delta(sid, " a"); // produced while the client is away: kept in the frame log
  server.delta(sid, " time");
  const resume = await server.next("session.resume");
  assert.equal(resume.last_seq, 3); // turn.start and the two deltas it saw
  await until(() => pieces.length === 4, "the missed pieces");
  server.end(sid);
  const r = await done;
  assert.deepEqual(pieces, ["Once", " upon", " a", " time"]);
  assert.equal(r.text, "Once upon a time");
  assert.equal(client.reconnects, 1);
  assert.equal(delays.length, 1);
  assert.ok(delays[0] >= 0 && delays[0] <= 0.5);
  client.close();
});

test("when the server cannot replay, the running turn catches up from the snapshot", async () => {
  const server = new FakeServer();
  const { client } = await connected(server);
  const session = await client.open();
  const turn = session.say("Hi");
  const pieces = [];
  const done = collect(turn, pieces);
  await turn.started;
  server.delta(session.sid, "Good");
  await until(() => pieces.length === 1);
  server.resumeAs = "snapshot";
  server.drop();
  server.delta(session.sid, " morning");
  const resumed = new Promise((resolve) => session.on("resumed", resolve));
  assert.deepEqual(await resumed, { recovered: false, why: "gap_too_old" });
  server.delta(session.sid, "!");
  server.end(session.sid);
  assert.equal((await done).text, "Good morning!");
  assert.deepEqual(pieces, ["Good", " morning", "!"]);
  client.close();
});

test("a session unknown on resume is closed and its turn fails with unknown_session", async () => {
  const server = new FakeServer();
  const { client } = await connected(server);
  const session = await client.open();
  const turn = session.say("Hi");
  await turn.started;
  const closed = new Promise((resolve) => session.on("closed", resolve));
  server.resumeAs = "unknown";
  server.drop();
  const { error } = await closed;
  assert.equal(error.code, "unknown_session");
  await assert.rejects(turn.result, (exc) => exc instanceof RtError && exc.code === "unknown_session");
  assert.equal(session.closed, true);
  assert.equal(client.sessions.size, 0);
  client.close();
});

test("a say sent while the socket is down is sent once after the resume", async () => {
  const server = new FakeServer();
  const { client, delays } = await connected(server);
  const session = await client.open();
  server.refuse = 2; // the first two reconnect attempts fail: the delays grow
  server.drop();
  await until(() => client.state === "reconnecting");
  server.autoReply = ["ok"];
  const r = await session.say("while away").result;
  assert.equal(r.text, "ok");
  assert.equal(server.received.filter((f) => f.t === "say").length, 1);
  assert.equal(delays.length, 3);
  assert.ok(delays[1] <= 1 && delays[2] <= 2);
  client.close();
});

test("a text that differs from turn.end's xlen/xcrc rejects with TextMismatch", async () => {
  const server = new FakeServer();
  const { client } = await connected(server);
  const session = await client.open();
  const turn = session.say("Hi");
  await turn.started;
  server.delta(session.sid, "abc");
  server.end(session.sid, "stop", [3, 12345]);
  await assert.rejects(turn.result, (exc) => exc instanceof TextMismatch && exc.result.text === "abc");
  client.close();
});

test("a token function is asked for a fresh token before every connect", async () => {
  const server = new FakeServer();
  let n = 0;
  const { client } = await connected(server, { token: async () => `tok${++n}` });
  await client.open();
  server.drop();
  await until(() => server.received.filter((f) => f.t === "hello").length === 2);
  assert.deepEqual(
    server.received.filter((f) => f.t === "hello").map((f) => f.token),
    ["tok1", "tok2"],
  );
  client.close();
});

test("aborting a turn's signal cancels it; the turn ends as cancelled", async () => {
  const server = new FakeServer();
  const { client } = await connected(server);
  const session = await client.open();
  const controller = new AbortController();
  const turn = session.say("Go on", { signal: controller.signal });
  controller.abort(); // before turn.start: cancelled as soon as it starts
  const r = await turn.result;
  assert.equal(r.reason, "cancelled");
  assert.equal(server.received.filter((f) => f.t === "cancel").length, 1);
  client.close();
});

test("refusals reject with the error's code; requests answered by session frames resolve on them", async () => {
  const server = new FakeServer();
  const { client } = await connected(server);
  const session = await client.open();
  await assert.rejects(session.cancel(), (exc) => exc instanceof RtError && exc.code === "no_turn");
  await assert.rejects(client.attach("nope"), (exc) => exc.code === "unknown_session");
  const state = await session.rollback(0);
  assert.equal(state.head, 0);
  const first = session.say("one");
  await first.started;
  const second = session.say("two");
  await assert.rejects(second.result, (exc) => exc.code === "turn_running");
  assert.ok((await client.ping()) >= 0);
  client.close();
  await assert.rejects(first.result, ConnectionLost);
});

test("a seq gap on a live connection makes the client resume from what it has", async () => {
  const server = new FakeServer();
  const { client } = await connected(server);
  const session = await client.open();
  const turn = session.say("Hi");
  const pieces = [];
  const done = collect(turn, pieces);
  await turn.started;
  const s = server.sessions.get(session.sid);
  server.delta(session.sid, "a");
  s.log.push({ t: "delta", sid: s.sid, seq: ++s.seq, tid: 1, x: "b" }); // logged but never sent: lost
  s.running.text += "b";
  server.delta(session.sid, "c");
  const resume = await server.next("session.resume");
  assert.equal(resume.last_seq, 2);
  await until(() => pieces.length === 3);
  server.end(session.sid);
  assert.equal((await done).text, "abc");
  client.close();
});

test("close code 1008 (malformed frames) is not reconnected", async () => {
  const server = new FakeServer();
  const { client } = await connected(server);
  const session = await client.open();
  const turn = session.say("Hi");
  await turn.started;
  const closed = new Promise((resolve) => client.on("closed", resolve));
  server.drop(1008);
  const { error } = await closed;
  assert.ok(error instanceof ConnectionLost);
  await assert.rejects(turn.result, ConnectionLost);
  assert.equal(server.received.filter((f) => f.t === "hello").length, 1);
});

test("keepalive: pings every period; a socket silent for two periods is dropped and resumed", async () => {
  const server = new FakeServer();
  let now = 0;
  const timers = [];
  const timer = (s, fn) => {
    timers.push({ s, fn });
    return () => {};
  };
  const { client } = await connected(server, { timer, now: () => now, keepalive: 5 });
  const session = await client.open();
  const fire = () => timers.shift().fn();
  now += 5000;
  fire(); // heard from recently (the session frame at t=0): a ping
  await server.next("ping");
  for (const s of server.sockets) s.deliver = () => {}; // the server goes silent (a half-open connection)
  now += 11000;
  fire(); // 11 s without a frame since the pong: more than two periods
  await server.next("session.resume");
  assert.equal(client.reconnects, 1);
  assert.equal(timers.at(-1).s, 5);
  assert.equal(session.closed, false);
  client.close();
});
