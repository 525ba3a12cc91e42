// The example workflows in ComfyUI's real front end: headless Debian chromium via playwright-core.
//
//   node tests/browser/workflows_ui.mjs <comfyui url> <module> <out dir> <name> [<name> ...]
//
// For each workflow, fetched as the template browser fetches it (/api/workflow_templates/<module>/
// <name>.json), it loads the graph with app.loadGraphData, checks that every node type is known to
// the front end and drawn, converts the graph with the front end's own app.graphToPrompt() (the
// converter "Queue" uses) and saves a screenshot of the whole graph to <out dir>/<name>.png. Last it
// opens the template browser, searches for the workflows and records which thumbnails it fetched.
// The canvas part runs on the classic canvas (set here: settings persist on the server); then each
// workflow is opened again with Vue nodes ("Nodes 2.0") and the drawn boxes of its nodes are
// measured: result.vueOverlaps lists every pair that overlaps (the test allows none).
// Prints one JSON line {ok, workflows: {name: {nodes, prompt, screenshot}}, consoleErrors}; exit 1
// on failure. tests/test_workflows_browser.py compares the prompts with tests/workflow_convert.py.
import fs from "node:fs";
import path from "node:path";
import { notOurs } from "./console_errors.mjs";
import { openApp, runInBrowser, setRenderer } from "./page_helpers.mjs";

const [url, moduleName, outDir, ...names] = process.argv.slice(2);
if (!url || !moduleName || !outDir || names.length === 0) {
  console.error("usage: node workflows_ui.mjs <comfyui url> <module> <out dir> <name>...");
  process.exit(2);
}
const host = new URL(url).host;
fs.mkdirSync(outDir, { recursive: true });

// Console errors a bare ComfyUI 0.3.75 / frontend 1.32.9 prints offline (see preview_ui.mjs).
// Files in the workflows folder that are not templates (API format, no thumbnail), named by the test
// so their missing thumbnail is listed as a known issue instead of failing every run.
const NOT_TEMPLATES = (process.env.RADIAL_NOT_TEMPLATES || "").split(",").filter(Boolean);

function knownNoise(e) {
  if (/status of 404/.test(e.text) && NOT_TEMPLATES.some((n) => (e.url || "").endsWith(`/${encodeURIComponent(n)}.jpg`))) {
    return "not a template (API-format file in workflows/)";
  }
  return notOurs(e, host);  // console_errors.mjs: only the pack's errors fail
}

const result = { workflows: {}, consoleErrors: [], ignoredErrors: [] };
await runInBrowser({
  result, viewport: { width: 2400, height: 1350 }, classify: knownNoise,
  failureShot: path.join(outDir, "workflows-failure.png"), profile: "radial-wf-chromium-",
}, async (page) => {
  await openApp(page, url,
    () => window.comfyAPI?.app?.app?.graph && window.LiteGraph?.registered_node_types?.RadialAttentionPatch);
  // screenshots: full-quality drawing at the fitted zoom
  await page.evaluate(async () => {
    const { app } = window.comfyAPI.app;
    try { await app.extensionManager.setting.set("LiteGraph.Canvas.LowQualityRenderingZoomThreshold", 0.1); } catch {}
  });
  result.canvasRenderer = !(await setRenderer(page, false));

  for (const name of names) {
    const template = `/api/workflow_templates/${moduleName}/${encodeURIComponent(name)}.json`;
    const loaded = await page.evaluate(async ([template, name]) => {
      const { app } = window.comfyAPI.app;
      const r = await fetch(template);
      if (!r.ok) return { error: `GET ${template}: ${r.status}` };
      // as the template browser opens it, minus the missing-models dialog (no weights here)
      await app.loadGraphData(await r.json(), true, true, name, { showMissingModelsDialog: false });
      return { ok: true };
    }, [template, name]);
    if (loaded.error) throw new Error(loaded.error);
    await page.waitForTimeout(1500);
    const info = await page.evaluate(async () => {
      const { app } = window.comfyAPI.app;
      const types = window.LiteGraph.registered_node_types;
      const nodes = app.graph._nodes.map((n) => ({
        id: n.id, type: n.type, known: Boolean(types[n.type]), mode: n.mode,
        size: [...n.size], widgets: (n.widgets ?? []).map((w) => w.name),
      }));
      // fit the whole graph into the view for the screenshot
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const n of app.graph._nodes) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
      }
      const rect = app.canvas.canvas.getBoundingClientRect();
      // free area: right of the side bar, below the tab bar, left of the Run button
      const [left, top, right, bottom] = [90, 90, 60, 40];
      const w = rect.width - left - right, h = rect.height - top - bottom;
      const scale = Math.min(w / (x1 - x0), h / (y1 - y0), 1);
      app.canvas.ds.scale = scale;
      app.canvas.ds.offset[0] = (left + (w - scale * (x1 - x0)) / 2) / scale - x0;
      app.canvas.ds.offset[1] = top / scale - y0;
      if ("low_quality_zoom_threshold" in app.canvas) app.canvas.low_quality_zoom_threshold = 0.1;
      app.canvas.setDirty(true, true);
      const { output } = await app.graphToPrompt();
      return { nodes, prompt: output };
    });
    if (info.nodes.length === 0) throw new Error(`${name}: the front end opened an empty graph`);
    // the pack's readouts once answered: what size and family they assume, what they say
    await page.waitForFunction(() => [...document.querySelectorAll(".radial-readout")].every(
      (el) => ["ok", "invalid", "error"].includes(el.dataset.state)), null, { timeout: 30_000 }).catch(() => {});
    info.readouts = await page.evaluate(() => [...document.querySelectorAll(".radial-readout")].map((el) => ({
      id: el.dataset.nodeId, state: el.dataset.state, assumed: el.dataset.assumed, text: el.innerText.trim(),
    })));
    for (const n of info.nodes) {
      if (!n.known || n.size[0] < 50 || n.size[1] < 30) {
        throw new Error(`${name}: node ${n.id} (${n.type}) is not known or not drawn: ${JSON.stringify(n)}`);
      }
    }
    await page.waitForTimeout(700);
    const shot = path.join(outDir, `${name}.png`);
    await page.screenshot({ path: shot });
    result.workflows[name] = { ...info, screenshot: shot };
  }
  // Vue nodes: every workflow again, the nodes' drawn boxes (graph units) and the pairs that overlap
  result.vueRenderer = await setRenderer(page, true);
  result.vueOverlaps = {};
  result.vueBoxes = {};
  for (const name of names) {
    const template = `/api/workflow_templates/${moduleName}/${encodeURIComponent(name)}.json`;
    await page.evaluate(async ([template, name]) => {
      const { app } = window.comfyAPI.app;
      const data = await (await fetch(template)).json();
      await app.loadGraphData(data, true, true, name, { showMissingModelsDialog: false });
    }, [template, name]);
    await page.waitForFunction(() => {
      const { app } = window.comfyAPI.app;
      return app.graph._nodes.every((n) => document.querySelector(`.lg-node[data-node-id="${n.id}"]`));
    }, null, { timeout: 30_000 });
    await page.waitForTimeout(2000); // readouts answered, nodes grown
    const measured = await page.evaluate(() => {
      const { app } = window.comfyAPI.app;
      const scale = app.canvas.ds.scale;
      const boxes = app.graph._nodes.map((n) => {
        const r = document.querySelector(`.lg-node[data-node-id="${n.id}"]`).getBoundingClientRect();
        return { id: n.id, type: n.type, x0: r.left / scale, y0: r.top / scale, x1: r.right / scale, y1: r.bottom / scale };
      });
      const overlaps = [];
      for (const a of boxes) {
        for (const b of boxes) {
          if (a.id >= b.id) continue;
          const dx = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0);
          const dy = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
          if (dx > 1 && dy > 1) overlaps.push({ a: `${a.id} ${a.type}`, b: `${b.id} ${b.type}`, dx: Math.round(dx), dy: Math.round(dy) });
        }
      }
      return { boxes, overlaps };
    });
    result.vueBoxes[name] = measured.boxes;
    result.vueOverlaps[name] = measured.overlaps;
    await page.screenshot({ path: path.join(outDir, `${name} (Vue nodes).png`) });
  }
  await setRenderer(page, false);

  // The template browser: our cards, with their thumbnails fetched from the pack's folder.
  const thumbs = {};
  page.on("response", (r) => {
    const m = r.url().match(/\/api\/workflow_templates\/[^/]+\/([^/]+)\.jpg$/);
    if (m) thumbs[decodeURIComponent(m[1])] = r.status();
  });
  await page.evaluate(() => window.comfyAPI.app.app.extensionManager.command.execute("Comfy.BrowseTemplates"));
  // the pack's own category, listed under "Extensions" by its folder name
  const dialog = page.getByRole("dialog").filter({ hasText: "Templates" }).last();
  await dialog.waitFor({ state: "visible", timeout: 30_000 });
  const category = dialog.getByText(moduleName, { exact: true }).last();
  await category.waitFor({ state: "visible", timeout: 30_000 });
  await category.click();
  await page.waitForFunction((n) => n.every((x) => document.body.innerText.includes(x)), names, { timeout: 30_000 });
  for (let i = 0; i < 60 && !names.every((n) => thumbs[n]); i++) await page.waitForTimeout(500);
  await page.waitForTimeout(1500);
  await page.screenshot({ path: path.join(outDir, "template_browser.png") });
  result.thumbnails = thumbs;
  result.templateDialogText = (await dialog.innerText()).slice(0, 20000); // the cards' titles as shown
});
