// What the Playwright scripts (preview_ui.mjs, errors_ui.mjs, workflows_ui.mjs) share: a headless
// Debian chromium with a throw-away profile, the browser console's errors sorted into the pack's
// own (they fail the script) and the rest (kept with the reason), the app's start, and the one
// JSON line each script prints for its Python test before it exits (1 on any failure).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// Runs `body(page)` in a new headless chromium and exits with `result` printed as one JSON line.
// `classify(e)` says why a console error `{text, url}` is not the pack's (it goes, with that
// reason, to result.ignoredErrors) or returns null (result.consoleErrors: the run fails).
// result.ok / result.error say how it ended; a failure saves a screenshot at `failureShot`.
export async function runInBrowser({ result, viewport, classify, failureShot, profile = "radial-chromium-" }, body) {
  result.consoleErrors ??= [];
  result.ignoredErrors ??= [];
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), profile));
  let browser;
  try {
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, viewport, args: ARGS,
    });
    // as if the user had dismissed the "Nodes 2.0" banner once (it would cover the canvas top)
    await browser.addInitScript(() => localStorage.setItem("vueNodesBannerDismissed", "true"));
    const page = browser.pages()[0] ?? (await browser.newPage());
    const record = (e) => {
      const why = classify(e);
      (why ? result.ignoredErrors : result.consoleErrors).push(why ? { ...e, why } : e);
    };
    page.on("console", (m) => {
      if (m.type() === "error") record({ text: m.text(), url: m.location()?.url || "" });
    });
    page.on("pageerror", (err) => record({ text: `${err.message}\n${err.stack || ""}`, url: "" }));
    await body(page);
    if (result.consoleErrors.length) {
      throw new Error(`console errors: ${JSON.stringify(result.consoleErrors, null, 1)}`);
    }
    result.ok = true;
  } catch (err) {
    result.ok = false;
    result.error = String(err?.stack || err);
    try {
      const page = browser?.pages()[0];
      if (page) await page.screenshot({ path: failureShot });
    } catch {}
  } finally {
    await browser?.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

// The front end at `url`, waited for until `ready()` (run in the page) holds, then a moment to draw.
export async function openApp(page, url, ready) {
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(ready, null, { timeout: 90_000 });
  await page.waitForTimeout(1500);
}
