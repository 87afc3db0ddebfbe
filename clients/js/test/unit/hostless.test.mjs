// The built module runs with nothing from its host but a WebSocket and timers (what browsers, React Native and Node
// all give): no DOM, no Node API, no TextEncoder. It is evaluated in a fresh V8 context holding only those, and a
// whole conversation, a dropped socket included, runs through it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import vm from "node:vm";
import { FakeServer, until } from "../support/fake.mjs";

const BUNDLE = readFileSync(new URL("../../dist/rtclient.js", import.meta.url), "utf8");

/** The bundle as a script in a function (so its top-level names stay local): its final `export { a as b, ... };`
 * becomes an object given to `__exports`. */
function asScript(source) {
  const match = source.match(/export\s*\{([^}]*)\};?\s*$/);
  assert.ok(match, "the bundle ends with one export list");
  const names = match[1].split(",").map((part) => part.trim().split(/\s+as\s+/));
  const body = names.map(([local, exported]) => `${exported ?? local}: ${local}`).join(", ");
  return `(function () {\n${source.slice(0, match.index)}\n__exports({ ${body} });\n})();`;
}

test("the client needs nothing but a WebSocket (and timers) from its host", async () => {
  const server = new FakeServer();
  let rt;
  const context = vm.createContext({ WebSocket: server.WebSocket, setTimeout, clearTimeout, __exports: (x) => (rt = x) });
  const before = new Set(Object.getOwnPropertyNames(vm.runInContext("globalThis", context)));
  vm.runInContext(asScript(BUNDLE), context, { filename: "rtclient.js" });
  for (const name of ["document", "window", "process", "Buffer", "TextEncoder", "TextDecoder", "require"]) {
    assert.equal(vm.runInContext(`typeof ${name}`, context), "undefined", name);
  }

  const client = new rt.Client("ws://fake/", { sleep: async () => {} }); // the context's global WebSocket
  await client.connect();
  const session = await client.open({ persona: "Bram", params: { seed: 7 } });
  const turn = session.say("Grüße 🐉");
  await turn.started;
  server.delta(session.sid, "Hmph, ");
  await until(() => turn.text.length > 0);
  server.drop();
  server.delta(session.sid, "a dragon? 🐉");
  await server.next("session.resume");
  server.end(session.sid);
  const r = await turn.result;
  assert.equal(r.text, "Hmph, a dragon? 🐉");
  assert.equal(server.received.find((f) => f.t === "say").text, "Grüße 🐉");
  client.close();

  const after = Object.getOwnPropertyNames(vm.runInContext("globalThis", context)).filter((k) => !before.has(k));
  assert.deepEqual(after, []); // and it leaves no globals behind
});
