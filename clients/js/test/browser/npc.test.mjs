// The demo's NPC scene on the real model in headless Chromium: the innkeeper answers as JSON {line, emotion,
// choices}; the page shows the line and the emotion and turns the choices into buttons, and clicking one sends it.
// RTSERVER_MODEL_URL: a `serve --demo` server on the bundled model (tests/js/test_js_client.py; skipped without).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { launch, openDemo } from "../support/browser.mjs";

const WS_URL = process.env.RTSERVER_MODEL_URL;
const opts = { skip: WS_URL ? false : "RTSERVER_MODEL_URL is not set (tests/js/test_js_client.py starts a server)" };
const EMOTIONS = ["happy", "angry", "sad", "neutral"];
let browser;

before(async () => {
  if (WS_URL) browser = await launch();
});
after(() => browser?.close());

/** The NPC's answer once it is on the page: its line, its emotion and the choices offered. */
async function answer(page, turns) {
  await page.waitForFunction((n) => document.querySelectorAll("#npc-log .msg.reply").length === n, turns);
  return {
    line: await page.textContent("#npc-line"),
    emotion: await page.textContent("#npc-emotion"),
    choices: await page.locator("#npc-choices button").allTextContents(),
  };
}

test("npc scene: type a line, see the answer, click a choice to answer back", opts, async () => {
  const { page, errors } = await openDemo(browser, WS_URL.replace(/^ws/, "http"));
  await page.click("button[data-mode=npc]");
  await page.fill("#input", "Good evening! Any news from the road?");
  await page.press("#input", "Enter");
  const first = await answer(page, 1);
  assert.match(first.line, /^“.+”$/s);
  assert.ok(EMOTIONS.includes(first.emotion), first.emotion);
  assert.ok(first.choices.length >= 1 && first.choices.length <= 3, String(first.choices));
  assert.match(await page.textContent("#npc-meta"), /^TTFT \d+ ms · \d+ tok\/s/);

  await page.click("#npc-choices button >> nth=0");
  const second = await answer(page, 2);
  const sent = await page.locator("#npc-log .msg.user").allTextContents();
  assert.deepEqual(sent, ["Good evening! Any news from the road?", first.choices[0]]);
  assert.ok(EMOTIONS.includes(second.emotion));
  assert.equal(await page.evaluate(() => window.rtdemo.modes.npc.session.state.head), 2);

  await page.click("button[data-mode=chat]");
  await page.fill("#input", "Hello!");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => /tok\/s/.test(document.querySelector("#chat-log .reply-meta")?.textContent ?? "") && document.querySelector("#cancel").disabled);
  assert.ok((await page.textContent("#chat-log .text")).trim().length > 0);
  assert.deepEqual(errors, []);
  await page.close();
});
