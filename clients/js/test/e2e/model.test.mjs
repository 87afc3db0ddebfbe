// The main path on the real engine: llama.cpp on the bundled model behind `rtserver serve`, driven by the JS client
// (RTSERVER_MODEL_URL, set by tests/js/test_js_client.py's model test; skipped without it).
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { Client } from "../../dist/rtclient.js";

const URL_ = process.env.RTSERVER_MODEL_URL;
const opts = { skip: URL_ ? false : "RTSERVER_MODEL_URL is not set (tests/js/test_js_client.py starts a server)" };
export const NPC_SCHEMA = {
  type: "object",
  properties: {
    line: { type: "string", maxLength: 80 },
    emotion: { type: "string", enum: ["happy", "angry", "sad", "neutral"] },
    choices: { type: "array", items: { type: "string", maxLength: 30 }, maxItems: 3 },
  },
  required: ["line", "emotion", "choices"],
};

test("a conversation on the model: replies stream, the history's KV is reused", opts, async () => {
  const client = await Client.connect(URL_, { WebSocket });
  const session = await client.open({ persona: "You are Mira, a cheerful herbalist in the village of Ashvale.", params: { seed: 11, temperature: 0.7 } });
  const results = [];
  for (const line of ["Hello!", "What is your name?"]) {
    const turn = session.say(line);
    const pieces = [];
    for await (const x of turn) pieces.push(x);
    const r = await turn.result;
    assert.equal(r.reason, "stop");
    assert.equal(r.text, pieces.join(""));
    assert.ok(r.text.trim() && !r.text.includes("<|"), r.text);
    results.push(r);
  }
  assert.match(results[1].text, /Mira/);
  assert.ok(results[1].usage.reused > 0.7 * results[1].usage.prompt);
  assert.ok(results[1].timings.ttft_ms > 0);
  client.close();
});

test("a schema turn on the model: the reply is JSON with line, emotion and choices; regenerate keeps the schema", opts, async () => {
  const client = await Client.connect(URL_, { WebSocket });
  const session = await client.open({ persona: "You are Hilda, the innkeeper of the Drowned Lantern.", params: { seed: 3 } });
  const turn = session.say("Any news?", { schema: NPC_SCHEMA });
  let pieces = 0;
  for await (const _ of turn) pieces++;
  const r = await turn.result;
  assert.equal(r.parsed, true);
  assert.ok(pieces > 3); // streamed as generated, like any reply
  const reply = JSON.parse(r.text);
  assert.deepEqual(Object.keys(reply).sort(), ["choices", "emotion", "line"]);
  assert.ok(NPC_SCHEMA.properties.emotion.enum.includes(reply.emotion));
  assert.ok(Array.isArray(reply.choices) && reply.choices.length <= 3);
  const again = await session.regenerate({ params: { seed: 4 } }).result;
  assert.equal(again.parsed, true);
  JSON.parse(again.text);
  client.close();
});
