// The client against a real `rtserver serve` on the scripted engine (started by tests/js/test_js_client.py, which
// passes its URL in RTSERVER_URL; skipped without it). The server runs with --scripted-rate 20 --scripted-words
// 400: a reply left alone streams for 20 s, so a test that cancels, interrupts or drops mid-reply has all the time
// it needs; turns meant to end are cut short by max_tokens.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { Client, RtError } from "../../dist/rtclient.js";
import { startProxy } from "../support/proxy.mjs";

const URL_ = process.env.RTSERVER_URL;
const opts = { skip: URL_ ? false : "RTSERVER_URL is not set (tests/js/test_js_client.py starts a server)" };
const SHORT = { max_tokens: 6 };
const connect = (url = URL_, options = {}) => Client.connect(url, { WebSocket, ...options });

async function collect(turn) {
  const pieces = [];
  for await (const x of turn) pieces.push(x);
  return { pieces, result: await turn.result };
}

test("a conversation of several turns", opts, async () => {
  const client = await connect();
  const session = await client.open({ persona: "You are Bram, a gruff blacksmith.", params: { seed: 7 } });
  for (const [i, line] of ["Hello!", "Any work?", "Goodbye."].entries()) {
    const { pieces, result } = await collect(session.say(line, { params: SHORT }));
    assert.equal(result.text, pieces.join(""));
    assert.ok(result.text.startsWith(`You said: ${line}`), result.text);
    assert.equal(result.reason, "length");
    assert.equal(result.tid, i + 1);
    assert.equal(result.usage.completion, 6);
  }
  const snap = await session.refresh();
  assert.deepEqual(snap.turns.map((t) => t.user), ["Hello!", "Any work?", "Goodbye."]);
  client.close();
});

test("cancel stops a running reply; the turn ends as cancelled and keeps what was sent", opts, async () => {
  const client = await connect();
  const session = await client.open();
  const turn = session.say("Talk for a long time");
  let pieces = 0;
  for await (const _ of turn) if (++pieces === 3) await session.cancel();
  const r = await turn.result;
  assert.equal(r.reason, "cancelled");
  const snap = await session.refresh();
  assert.equal(snap.turns.at(-1).reply, r.text);
  await assert.rejects(session.cancel(), (exc) => exc instanceof RtError && exc.code === "no_turn");
  client.close();
});

test("an AbortSignal cancels its turn", opts, async () => {
  const client = await connect();
  const session = await client.open();
  const controller = new AbortController();
  const turn = session.say("Talk", { signal: controller.signal });
  for await (const _ of turn) controller.abort();
  assert.equal((await turn.result).reason, "cancelled");
  client.close();
});

test("interrupt ends the running turn and starts the new one", opts, async () => {
  const client = await connect();
  const session = await client.open();
  const first = session.say("Talk for a long time");
  await first.started;
  for await (const _ of first) break; // one piece is enough: it runs
  const second = session.say("Stop!", { interrupt: true, params: SHORT });
  assert.equal((await first.result).reason, "cancelled");
  const r = await second.result;
  assert.ok(r.text.startsWith("You said: Stop!"));
  client.close();
});

test("regenerate gives a sibling of the last reply; rollback moves the head back", opts, async () => {
  const client = await connect();
  const session = await client.open();
  const first = await session.say("Hello", { params: SHORT }).result;
  const again = session.regenerate({ params: { ...SHORT, seed: 99 } });
  const r = await again.result;
  assert.equal(again.kind, "regenerate");
  assert.equal(again.parent, 0);
  assert.notEqual(r.tid, first.tid);
  const more = session.continue({ params: SHORT });
  const c = await more.result;
  assert.equal(more.parent, r.tid);
  assert.ok(!c.text.startsWith("You said")); // the continuation only
  const state = await session.rollback(first.tid);
  assert.equal(state.head, first.tid);
  const changed = await session.update({ persona: "You are Mira." });
  assert.equal(changed.persona, "You are Mira.");
  client.close();
});

test("a schema turn carries parsed; a schema the server cannot use is refused with bad_field", opts, async () => {
  const client = await connect();
  const session = await client.open();
  const schema = { type: "object", properties: { line: { type: "string" } }, required: ["line"] };
  const r = await session.say("Any news?", { schema, params: SHORT }).result;
  assert.equal(typeof r.parsed, "boolean"); // the scripted engine ignores the grammar: false here, true on a model
  const bad = session.say("Any news?", { schema: { type: "object", properties: { n: { type: "bogus" } } } });
  await assert.rejects(bad.result, (exc) => exc instanceof RtError && exc.code === "bad_field");
  const grammar = await session.say("Hi", { grammar: 'root ::= "yes" | "no"', params: SHORT }).result;
  assert.equal(grammar.parsed, undefined);
  client.close();
});

test("a socket dropped mid-reply loses and repeats no delta", opts, async () => {
  const proxy = await startProxy(URL_);
  const client = await connect(proxy.url, { backoff: { base: 0.05 } });
  const session = await client.open();
  const turn = session.say("Tell me everything", { params: { max_tokens: 60 } });
  const pieces = [];
  for await (const x of turn) {
    pieces.push(x);
    if (pieces.length === 5 || pieces.length === 30) proxy.cut(); // twice, the second while catching up
  }
  const r = await turn.result; // the client checked xlen/xcrc: the text is the server's
  assert.equal(pieces.join(""), r.text);
  assert.equal(r.usage.completion, 60);
  assert.ok(client.reconnects >= 2);
  const watcher = await connect();
  const attached = await watcher.attach(session.sid);
  assert.equal(attached.snapshot.turns.at(-1).reply, r.text);
  watcher.close();
  client.close();
  await proxy.close();
});

test("unknown_session: attaching to a closed session is refused; its other clients see it close", opts, async () => {
  const a = await connect();
  const b = await connect();
  const session = await a.open();
  const other = await b.attach(session.sid);
  const closed = new Promise((resolve) => session.on("closed", resolve));
  await other.close();
  await closed;
  assert.equal(session.closed, true);
  await assert.rejects(a.attach(session.sid), (exc) => exc instanceof RtError && exc.code === "unknown_session");
  a.close();
  b.close();
});

test("the JSON subprotocol and a token in hello", opts, async () => {
  const client = await connect(URL_, { subprotocol: "rt.v1.json", token: () => "t0ken" });
  assert.equal(client.subprotocol, "rt.v1.json");
  const session = await client.open();
  const r = await session.say("Hi", { params: SHORT }).result;
  assert.ok(r.text.startsWith("You said: Hi"));
  client.close();
});
