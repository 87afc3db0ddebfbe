// The protocol's golden vectors (protocol/vectors/frames.json): the JS codec reads every frame to its JSON form and
// writes the client and server frames marked `encode` byte for byte, as the Python codec does.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { compact, JsonCodec, MsgpackCodec, textCheck } from "../../dist/rtclient.js";

const VECTORS = JSON.parse(readFileSync(new URL("../../../../protocol/vectors/frames.json", import.meta.url), "utf8"));
const BY_NAME = Object.fromEntries(VECTORS.map((v) => [v.name, v.json]));
const hex = (bytes) => Buffer.from(bytes).toString("hex");

test("there are vectors for every client frame type", () => {
  const types = new Set(VECTORS.map((v) => v.json.t));
  const client = ["hello", "session.open", "session.resume", "say", "cancel", "regenerate", "continue", "rollback"];
  for (const t of [...client, "session.update", "session.close", "ping"]) assert.ok(types.has(t), t);
});

for (const v of VECTORS) {
  test(`decodes ${v.name}`, () => {
    assert.deepEqual(new MsgpackCodec().decode(Buffer.from(v.msgpack, "hex")), v.json);
  });
  if (v.encode) {
    test(`encodes ${v.name} byte for byte`, () => {
      assert.equal(hex(new MsgpackCodec().encode(v.json)), v.msgpack);
    });
  }
  test(`round-trips ${v.name} over rt.v1.json`, () => {
    const codec = new JsonCodec();
    assert.deepEqual(codec.decode(codec.encode(v.json)), v.json);
  });
}

test("the client leaves null keys out of what it sends (null is absent)", () => {
  const sent = compact(BY_NAME.say_null);
  assert.equal("sid" in sent, false);
  assert.deepEqual(sent.params, BY_NAME.say_null.params); // inside params the server reads null as absent
});

test("turn.end's xlen and xcrc are those of the deltas before it", () => {
  const text = BY_NAME.delta.x + BY_NAME.delta_unicode.x;
  assert.deepEqual(textCheck(text), [BY_NAME.turn_end.xlen, BY_NAME.turn_end.xcrc]);
  assert.ok(BY_NAME.turn_end.xcrc >= 2 ** 31); // the unsigned form
  const failed = BY_NAME.turn_end_store_failed;
  assert.deepEqual(textCheck(BY_NAME.delta.x), [failed.xlen, failed.xcrc]);
});

test("decoding refuses text on msgpack, binary on JSON, and non-maps", () => {
  assert.throws(() => new MsgpackCodec().decode("{}"), { code: "bad_frame" });
  assert.throws(() => new JsonCodec().decode(new Uint8Array([0x80])), { code: "bad_frame" });
  assert.throws(() => new MsgpackCodec().decode(new Uint8Array([0x01])), { code: "bad_frame" });
  assert.throws(() => new MsgpackCodec().decode(new Uint8Array([0xc1])), { code: "bad_frame" });
  assert.throws(() => new JsonCodec().decode("[1]"), { code: "bad_frame" });
});
