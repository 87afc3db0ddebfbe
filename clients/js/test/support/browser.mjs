// Headless Chromium for the tests and the benchmark: the system's browser (Debian's chromium) driven by
// playwright-core, which never downloads one. RTSERVER_CHROMIUM names another executable.
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.RTSERVER_CHROMIUM ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);

export async function launch() {
  if (!CHROMIUM) throw new Error("no Chromium: apt-get install chromium (or set RTSERVER_CHROMIUM)");
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
}

/** A page on the demo at `httpUrl`, once it has connected and opened its sessions. */
export async function openDemo(browser, httpUrl) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const errors = [];
  page.on("pageerror", (exc) => errors.push(exc.message));
  await page.goto(httpUrl);
  await page.waitForSelector("body[data-ready=true]");
  return { page, errors };
}
