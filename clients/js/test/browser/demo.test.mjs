// The demo page in headless Chromium, driven as a person would: type, press Enter, watch the reply stream in, click
// cancel, regenerate, a version, continue, roll back; and a socket dropped mid-reply (a TCP proxy between the page
// and the server resets it). RTSERVER_DEMO_URL: a `serve --demo --engine scripted --scripted-rate 50` server (started
// by tests/js/test_js_client.py; skipped without it). Replies run 2-3 s there, so cancel and the drop land mid-reply.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { Client } from "../../dist/rtclient.js";
import { launch, openDemo } from "../support/browser.mjs";
import { startProxy } from "../support/proxy.mjs";

const WS_URL = process.env.RTSERVER_DEMO_URL;
const opts = { skip: WS_URL ? false : "RTSERVER_DEMO_URL is not set (tests/js/test_js_client.py starts a server)" };
const HTTP_URL = WS_URL?.replace(/^ws/, "http");
let browser;

before(async () => {
  if (WS_URL) browser = await launch();
});
after(() => browser?.close());

const ended = (selector) => (sel) => {
  const meta = document.querySelector(sel);
  return meta && /tok\/s/.test(meta.textContent) && document.querySelector("#cancel").disabled;
};

/** Types `line` into the composer and presses Enter. */
async function say(page, line) {
  await page.fill("#input", line);
  await page.press("#input", "Enter");
}

/** The server's text of the last turn of a session, read by a second client. */
async function serverReply(sid) {
  const client = await Client.connect(WS_URL, { WebSocket });
  const session = await client.attach(sid);
  client.close();
  return session.snapshot.turns.at(-1).reply;
}

test("chat: a reply streams in with its TTFT and tokens/s; regenerate; another persona", opts, async () => {
  const { page, errors } = await openDemo(browser, HTTP_URL);
  await say(page, "Hello there");
  await page.waitForFunction(ended("#chat-log .msg.reply:last-child .reply-meta"), "#chat-log .msg.reply:last-child .reply-meta");
  const text = await page.textContent("#chat-log .msg.reply:last-child .text");
  assert.ok(text.startsWith("You said: Hello there."), text);
  assert.match(await page.textContent("#chat-log .reply-meta"), /^TTFT \d+ ms · \d+ tok\/s · length$/);
  const sid = await page.evaluate(() => window.rtdemo.modes.chat.session.sid);
  assert.equal(await serverReply(sid), text);

  await page.click("#regenerate");
  await page.waitForFunction(() => window.rtdemo.modes.chat.session.state.head === 2);
  await page.waitForFunction(ended("#chat-log .reply-meta"), "#chat-log .reply-meta");
  assert.equal(await page.locator("#chat-log .msg.reply").count(), 1); // replaced, not added
  assert.equal(await page.textContent("#chat-log .text"), await serverReply(sid));

  await page.selectOption("#persona", "mira");
  await page.waitForFunction((old) => window.rtdemo.modes.chat.session.sid !== old, sid);
  const state = await page.evaluate(() => window.rtdemo.modes.chat.session.state);
  assert.match(state.persona, /Mira/);
  assert.equal(await page.locator("#chat-log .msg").count(), 0);
  assert.deepEqual(errors, []);
  await page.close();
});

test("chat: cancel stops the reply mid-stream", opts, async () => {
  const { page } = await openDemo(browser, HTTP_URL);
  await say(page, "Talk to me");
  await page.waitForSelector("#chat-log .text:not(:empty)");
  await page.click("#cancel");
  await page.waitForFunction(() => /cancelled$/.test(document.querySelector("#chat-log .reply-meta").textContent));
  const shown = await page.textContent("#chat-log .text");
  const sid = await page.evaluate(() => window.rtdemo.modes.chat.session.sid);
  assert.equal(await serverReply(sid), shown); // the history keeps exactly what was shown
  await page.close();
});

test("story: regenerate offers versions, a version is picked, continue extends, roll back removes", opts, async () => {
  const { page, errors } = await openDemo(browser, HTTP_URL);
  await page.click("button[data-mode=story]");
  await say(page, "A lighthouse keeper finds a letter");
  await page.waitForFunction(ended(".passage .reply-meta"), ".passage .reply-meta");
  const first = await page.textContent(".passage .text");
  await page.click("#regenerate");
  await page.waitForSelector(".passage .alts button >> nth=1");
  const story = () => page.evaluate(() => window.rtdemo.modes.story.session.state);
  assert.equal((await story()).head, 2);

  await page.click(".passage .alts button >> nth=0"); // back to the first version: rollback to its turn
  await page.waitForFunction(() => window.rtdemo.modes.story.session.state.head === 1);
  assert.equal(await page.textContent(".passage .text"), first);
  assert.equal(await page.getAttribute(".passage .alts button >> nth=0", "aria-pressed"), "true");

  await page.click("#story-continue");
  await page.waitForSelector(".passage >> nth=1");
  await page.waitForFunction(ended(".passage:nth-child(2) .reply-meta"), ".passage:nth-child(2) .reply-meta");
  assert.equal((await story()).head, 3);
  assert.equal(await page.locator(".passage .alts button").count(), 0); // versions only on the last passage
  await page.click("#story-rollback");
  await page.waitForFunction(() => window.rtdemo.modes.story.session.state.head === 1);
  assert.equal(await page.locator(".passage").count(), 1);
  assert.equal(await page.locator(".passage .alts button").count(), 2); // its versions are back
  assert.deepEqual(errors, []);
  await page.close();
});

test("npc: a reply that is not JSON (the scripted engine) is said so, and the choices stay usable", opts, async () => {
  const { page } = await openDemo(browser, HTTP_URL);
  await page.click("button[data-mode=npc]");
  await page.click("#npc-choices button >> nth=0");
  await page.waitForSelector("#npc-line .reply-meta.error");
  assert.match(await page.textContent("#npc-log .msg.user"), /rooms/);
  assert.ok((await page.locator("#npc-choices button").count()) > 0);
  await page.close();
});

test("a socket dropped mid-reply: the banner shows, the reply finishes with nothing lost or repeated", opts, async () => {
  const proxy = await startProxy(WS_URL);
  const { page, errors } = await openDemo(browser, proxy.http);
  await say(page, "Keep talking");
  await page.waitForSelector("#chat-log .text:not(:empty)");
  // The banner may show for a few ms only (the first retry waits 0-0.5 s): the page records each change of it.
  await page.evaluate(() => {
    window.bannerSeen = [];
    const banner = document.querySelector("#banner");
    new MutationObserver(() => window.bannerSeen.push(banner.hidden ? "hidden" : banner.textContent)).observe(banner, {
      attributes: true,
      childList: true,
    });
  });
  proxy.cut();
  await page.waitForFunction(ended("#chat-log .reply-meta"), "#chat-log .reply-meta");
  await page.waitForSelector("#banner", { state: "hidden" });
  const seen = await page.evaluate(() => window.bannerSeen);
  assert.ok(seen.some((x) => /reconnecting/.test(x)), String(seen));
  assert.equal(seen.at(-1), "hidden");
  const sid = await page.evaluate(() => window.rtdemo.modes.chat.session.sid);
  assert.equal(await page.textContent("#chat-log .text"), await serverReply(sid));
  assert.match(await page.textContent("#status"), /reconnected 1×/);
  assert.doesNotMatch(await page.textContent("#chat-log .reply-meta"), /Error|Mismatch/);
  assert.deepEqual(errors, []);
  await page.close();
  await proxy.close();
});
