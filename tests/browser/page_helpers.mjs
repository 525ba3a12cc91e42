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
    // deprecated front-end API the pack's extension used (front end 1.58+: LiteGraph's
    // onDeprecationWarning, attributed by the call stack; see openApp)
    for (const d of await page.evaluate(() => window.__radialDeprecations ?? []).catch(() => [])) {
      result.consoleErrors.push({ text: `deprecated front-end API used by the extension: ${d.message}`, url: d.stack });
    }
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
  // exit once the line is written: a long line to a pipe is written in pieces
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(result.ok ? 0 : 1));
}

// The front end at `url`, waited for until `ready()` (run in the page) holds, then a moment to draw.
// Every deprecation warning LiteGraph raises (front end 1.58+) is checked for the pack's script in
// its call stack: those are collected in window.__radialDeprecations (errors of ours, see
// runInBrowser); repeats are not suppressed, so one the front end raised first still counts.
export async function openApp(page, url, ready) {
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(ready, null, { timeout: 90_000 });
  await page.evaluate(() => {
    const lg = window.LiteGraph;
    window.__radialDeprecations = [];
    if (!lg || !Array.isArray(lg.onDeprecationWarning)) return;
    lg.alwaysRepeatWarnings = true;
    const seen = new Set();
    lg.onDeprecationWarning.push((message) => {
      const stack = new Error().stack ?? "";
      const ours = stack.split("\n").find((line) => /radial[-_ ]?attention|radial_readout/i.test(line));
      if (!ours || seen.has(message + ours) || seen.size > 20) return; // once per message and place
      seen.add(message + ours);
      window.__radialDeprecations.push({ message, stack: ours.trim() });
    });
  });
  await page.waitForTimeout(1500);
}

// The node renderer a test means to test: the classic LiteGraph canvas (false) or Vue "Nodes 2.0"
// (true). Settings persist on the server between tests, so every test sets the one it measures,
// and this waits until the page shows it (Vue node elements present or gone).
export async function setRenderer(page, vue) {
  await page.evaluate(async (vue) => {
    await window.comfyAPI.app.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", vue);
  }, vue);
  await page.waitForFunction((vue) => {
    const { app } = window.comfyAPI.app;
    if (!app.graph._nodes.length) return true;
    const vueNodes = document.querySelectorAll(".lg-node[data-node-id], [data-node-id].lg-node").length;
    return vue ? vueNodes > 0 : vueNodes === 0;
  }, vue, { timeout: 20_000 }).catch(() => {});
  await page.waitForTimeout(1200);
  return page.evaluate(() => window.comfyAPI.app.app.extensionManager.setting.get("Comfy.VueNodes.Enabled"));
}
