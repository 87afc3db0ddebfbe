// The client's small parts: the text check, backoff delays, the sequence tracker, a turn as an async iterator.
import assert from "node:assert/strict";
import { test } from "node:test";
import { crc32 } from "node:zlib";
import { Backoff, GapError, mismatch, SeqTracker, textCheck, Turn } from "../../dist/rtclient.js";

test("textCheck is the UTF-8 length and zlib CRC-32 of the text", () => {
  for (const text of ["", "hello", "Grüße, 世界 🐉 ok", "a\u0000b", "\uD83D\uDE00", "lone \uD800 surrogate"]) {
    const bytes = new TextEncoder().encode(text);
    assert.deepEqual(textCheck(text), [bytes.length, crc32(bytes)], JSON.stringify(text));
  }
});

test("mismatch names what differs, and passes a turn.end without the keys", () => {
  const [xlen, xcrc] = textCheck("abc");
  assert.equal(mismatch("abc", { xlen, xcrc }), null);
  assert.equal(mismatch("abc", {}), null);
  assert.match(mismatch("abd", { xlen, xcrc }), /CRC-32/);
  assert.match(mismatch("abcd", { xlen, xcrc }), /4 UTF-8 bytes/);
});

test("backoff doubles from 0.5 s to a 20 s cap, with full jitter", () => {
  const top = [...new Backoff({ random: () => 1, maxAttempts: 9 }).delays()];
  assert.deepEqual(top, [0.5, 1, 2, 4, 8, 16, 20, 20, 20]);
  const bottom = [...new Backoff({ random: () => 0, maxAttempts: 3 }).delays()];
  assert.deepEqual(bottom, [0, 0, 0]);
  const half = [...new Backoff({ random: () => 0.5, maxAttempts: 2 }).delays()];
  assert.deepEqual(half, [0.25, 0.5]);
  const endless = new Backoff().delays();
  for (let i = 0; i < 100; i++) {
    const d = endless.next().value;
    assert.ok(d >= 0 && d < 20);
  }
});

test("the sequence tracker drops repeats and finds gaps", () => {
  const t = new SeqTracker("e", 3);
  assert.equal(t.accept(2), false);
  assert.equal(t.accept(4), true);
  assert.throws(() => t.accept(6), GapError);
  assert.equal(t.lastSeq, 4);
  t.reset("f", 10);
  assert.equal(t.accept(11), true);
});

test("a turn yields its pieces in order, then ends; a failed one throws from the loop and its result", async () => {
  const turn = new Turn("say", { t: "say" }, null);
  turn._start(1, 0);
  turn._feed("a");
  const seen = [];
  const loop = (async () => {
    for await (const x of turn) seen.push(x);
  })();
  turn._feed("b");
  turn._catchUp("abcd");
  turn._end({ tid: 1, reason: "stop", text: turn.text, usage: {}, timings: {}, cache: "miss" });
  await loop;
  assert.deepEqual(seen, ["a", "b", "cd"]);
  assert.equal((await turn.result).text, "abcd");

  const failing = new Turn("say", { t: "say" }, null);
  failing._feed("x");
  failing._fail(new Error("boom"));
  await assert.rejects(failing.result, /boom/);
  await assert.rejects(failing.started, /boom/);
  const got = [];
  await assert.rejects(async () => {
    for await (const x of failing) got.push(x);
  }, /boom/);
  assert.deepEqual(got, ["x"]);
});
