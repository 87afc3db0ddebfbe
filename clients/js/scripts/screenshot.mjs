// Takes docs/demo.png, the README's picture of the demo page, in headless Chromium:
//   rtserver serve --demo &   node scripts/screenshot.mjs ws://127.0.0.1:8000/ ../../docs/demo.png
import { launch, openDemo } from "../test/support/browser.mjs";

const [url = "ws://127.0.0.1:8000/", out = "../../docs/demo.png"] = process.argv.slice(2);
const browser = await launch();
const { page } = await openDemo(browser, url.replace(/^ws/, "http"));
await page.setViewportSize({ width: 960, height: 600 });
await page.click("button[data-mode=npc]");
for (const n of [1, 2]) {
  if (n === 1) {
    await page.fill("#input", "Good evening! Any news from the road?");
    await page.press("#input", "Enter");
  } else {
    await page.click("#npc-choices button >> nth=0");
  }
  await page.waitForFunction((k) => document.querySelectorAll("#npc-log .msg.reply").length === k, n);
}
await page.screenshot({ path: out });
await browser.close();
console.log(`wrote ${out}`);
