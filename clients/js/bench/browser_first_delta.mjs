// The browser half of bench/browser_first_delta.py: in headless Chromium on the demo page (chat mode, one warm
// session), each line is typed and sent with Enter; the page times, by its own clocks, the keydown event to the
// DOM mutation that adds the reply's first text, and to the moment the client decoded that delta. Then the JS client's msgpack decode cost per delta frame, in the
// page (V8 in Chromium) and in Node. Prints one JSON line.
//   node bench/browser_first_delta.mjs WS_URL --turns 10 --frames 200000
import { parseArgs } from "node:util";
import { MsgpackCodec } from "../dist/rtclient.js";
import { launch, openDemo } from "../test/support/browser.mjs";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { turns: { type: "string", default: "10" }, frames: { type: "string", default: "200000" } },
});
export const LINES = [
  "Hello!", "Any work for me?", "What do you sell?", "How much for a sword?", "Tell me about the village.",
  "Who is the mayor?", "Is the road north safe?", "Can you fix my shield?", "What news from the river?", "Goodbye.",
];
export const DELTA = { t: "delta", sid: "q1W2e3R4t5Y6u7I8o9P0aA", seq: 1234, tid: 7, x: " village" };

const browser = await launch();
const { page } = await openDemo(browser, positionals[0].replace(/^ws/, "http"));
// Installed by the benchmark, not the demo: keydown time and the first text added to each new reply.
await page.evaluate(() => {
  window.bench = { key: null, frame: null, samples: [], toFrame: [] };
  // When the client has decoded the reply's first delta (before the page handles it): the split of each sample.
  window.rtdemo.client.on("frame", (f) => {
    if (f.t === "delta" && window.bench.key !== null && window.bench.frame === null) window.bench.frame = performance.now();
  });
  document.querySelector("#input").addEventListener("keydown", (e) => e.key === "Enter" && (window.bench.key = e.timeStamp), true);
  new MutationObserver((records) => {
    const now = performance.now();
    for (const r of records) {
      const reply = (r.target.nodeType === 1 ? r.target : r.target.parentElement)?.closest(".msg.reply .text");
      if (reply && !reply.dataset.seen && reply.textContent.length > 0 && window.bench.key !== null) {
        reply.dataset.seen = "1";
        window.bench.samples.push(now - window.bench.key);
        window.bench.toFrame.push(window.bench.frame === null ? null : window.bench.frame - window.bench.key);
        window.bench.key = window.bench.frame = null;
      }
    }
  }).observe(document.querySelector("#chat-log"), { childList: true, subtree: true, characterData: true });
});
const done = () => document.querySelector("#cancel").disabled && /tok\/s/.test(document.querySelector("#chat-log .msg.reply:last-child .reply-meta")?.textContent ?? "");
const turns = Number(values.turns);
for (let i = 0; i < turns; i++) {
  await page.fill("#input", LINES[i % LINES.length]);
  await page.press("#input", "Enter");
  await page.waitForFunction(done, null, { polling: 50 }); // not every frame: keep the renderer free
}
const { samples, toFrame } = await page.evaluate(() => window.bench);
const session = await page.evaluate(() => ({ persona: window.rtdemo.modes.chat.session.state.persona, params: window.rtdemo.modes.chat.session.state.params }));

// Decode cost per delta frame: the same bytes decoded N times, in the page and here.
const bytes = [...new MsgpackCodec().encode(DELTA)];
const frames = Number(values.frames);
const pageDecode = await page.evaluate(
  async ({ bytes, frames }) => {
    const { MsgpackCodec } = await import("./rtclient.js");
    const codec = new MsgpackCodec();
    const data = new Uint8Array(bytes).buffer;
    for (let i = 0; i < 10000; i++) codec.decode(data);
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) codec.decode(data);
    return ((performance.now() - t0) * 1000) / frames;
  },
  { bytes, frames },
);
const codec = new MsgpackCodec();
const data = new Uint8Array(bytes).buffer;
for (let i = 0; i < 10000; i++) codec.decode(data);
const t0 = performance.now();
for (let i = 0; i < frames; i++) codec.decode(data);
const nodeDecode = ((performance.now() - t0) * 1000) / frames;
await browser.close();
console.log(JSON.stringify({ key_to_dom_ms: samples, key_to_frame_ms: toFrame, session, lines: LINES.slice(0, turns), decode_us: { chromium: pageDecode, node: nodeDecode }, frame_hex: Buffer.from(bytes).toString("hex") }));
