// Real-browser check of the pack's front end: headless Debian chromium driven by playwright-core.
//
//   node tests/browser/preview_ui.mjs <comfyui url> <artifacts dir> [docs screenshot path]
//
// Against a running ComfyUI with the pack it: loads the bundled workflow (as ComfyUI serves it
// to the template browser), checks every node renders with no console errors, clicks a widget's
// arrow on the canvas and waits for the density readout to change to the route's new answer,
// queues the graph with the keyboard shortcut and waits for the preview image in the nodes,
// and saves screenshots. Prints one JSON line with what it saw; exits 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import { notOurs } from "./console_errors.mjs";
import { openApp, runInBrowser, setRenderer } from "./page_helpers.mjs";

const [url, artifacts, docsShot] = process.argv.slice(2);
if (!url || !artifacts) {
  console.error("usage: node preview_ui.mjs <comfyui url> <artifacts dir> [docs screenshot]");
  process.exit(2);
}
const TEMPLATE = "/api/workflow_templates/radial-attention/Sparsity Preview, no model needed.json";
const host = new URL(url).host;
fs.mkdirSync(artifacts, { recursive: true });

const result = { steps: [], consoleErrors: [], ignoredErrors: [] };
const step = (name, data = {}) => result.steps.push({ name, ...data });

await runInBrowser({
  result, viewport: { width: 1500, height: 1000 },
  classify: (e) => notOurs(e, host),  // console_errors.mjs: only the pack's errors fail
  failureShot: path.join(artifacts, "failure.png"),
}, async (page) => {
  // 1. the app with our extension
  await openApp(page, url, () => window.comfyAPI?.app?.app?.graph &&
    window.comfyAPI.app.app.extensionManager?.extensions?.some?.(
      (x) => x.name === "radial_attention.density_readout") !== false &&
    window.__radialAttentionReadout === true);
  // the classic canvas first (settings persist on the server: another test may have left Vue on)
  step("app ready", {
    frontend: await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null),
    vue: await setRenderer(page, false),
  });

  // 2. the bundled workflow, fetched the way the template browser gets it
  const loaded = await page.evaluate(async (template) => {
    const app = window.comfyAPI.app.app;
    const r = await fetch(template);
    if (!r.ok) return { error: `GET ${template}: ${r.status}` };
    await app.loadGraphData(await r.json());
    return { nodes: app.graph._nodes.map((n) => n.type) };
  }, TEMPLATE);
  if (loaded.error) throw new Error(loaded.error);
  step("workflow loaded", loaded);
  await page.waitForTimeout(1000);

  // 3. every node known to the front end and drawn; our readout visible
  const nodes = await page.evaluate(() => {
    const { app } = window.comfyAPI.app;
    const types = window.LiteGraph?.registered_node_types ?? {};
    return app.graph._nodes.map((n) => ({
      id: n.id, type: n.type, known: Boolean(types[n.type]), title: n.title,
      size: [...n.size], widgets: (n.widgets ?? []).map((w) => w.name), errors: Boolean(n.has_errors),
    }));
  });
  step("nodes", { nodes });
  for (const n of nodes) {
    if (!n.known || n.errors || n.size[0] < 50 || n.size[1] < 30) {
      throw new Error(`node ${n.id} (${n.type}) did not render properly: ${JSON.stringify(n)}`);
    }
  }
  const readout = page.locator('.radial-readout[data-node-id="1"]');
  await readout.waitFor({ state: "visible", timeout: 20_000 });
  await page.waitForFunction(
    () => document.querySelector('.radial-readout[data-node-id="1"]')?.dataset.state === "ok",
    null, { timeout: 20_000 });
  const before = (await readout.innerText()).trim();
  step("readout", { text: before });
  if (!/density \d+(\.\d)? % · ~\d+\.\d\dx attention/.test(before)) {
    throw new Error(`unexpected readout: ${before}`);
  }

  // 4. a real edit: click the increment arrow of the "frames" widget on the canvas
  const target = await page.evaluate(() => {
    const { app } = window.comfyAPI.app;
    const node = app.graph.getNodeById(1);
    const w = node.widgets.find((x) => x.name === "frames");
    const h = window.LiteGraph?.NODE_WIDGET_HEIGHT ?? 20;
    const rect = app.canvas.canvas.getBoundingClientRect();
    const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([
      node.pos[0] + node.size[0] - 22, node.pos[1] + (w.y ?? w.last_y) + h / 2,
    ]);
    const dpr = app.canvas.canvas.width / rect.width;
    return { x: rect.left + cx / dpr, y: rect.top + cy / dpr, value: w.value };
  });
  await page.mouse.click(target.x, target.y);
  await page.waitForTimeout(300);
  const framesAfter = await page.evaluate(
    () => window.comfyAPI.app.app.graph.getNodeById(1).widgets.find((x) => x.name === "frames").value);
  if (framesAfter === target.value) throw new Error(`clicking the frames arrow left it at ${framesAfter}`);
  step("edited frames", { from: target.value, to: framesAfter });
  await page.waitForFunction(
    (old) => {
      const el = document.querySelector('.radial-readout[data-node-id="1"]');
      return el?.dataset.state === "ok" && el.innerText.trim() !== old;
    },
    before, { timeout: 20_000 });
  const after = (await readout.innerText()).trim();
  // the readout must be the route's answer for the new value
  const expected = await page.evaluate(async () => {
    const { app } = window.comfyAPI.app;
    const q = document.querySelector('.radial-readout[data-node-id="1"]').dataset.query;
    const frames = app.graph.getNodeById(1).widgets.find((x) => x.name === "frames").value;
    const body = await (await fetch(`/api/radial_attention/estimate?${q}`)).json();
    return { frames, q, density: body.density, num_frames: body.num_frames };
  });
  const pct = `density ${(100 * expected.density).toFixed(1)} %`;
  if (!after.includes(pct) || !expected.q.includes(`frames=${framesAfter}`)) {
    throw new Error(`readout "${after}" does not show the route's ${pct} for ${expected.q}`);
  }
  step("readout changed", { text: after, expected });

  // 5. queue the graph (Ctrl+Enter, the front end's "Queue Prompt" keybinding) and see the image
  await page.mouse.click(1200, 900); // focus the canvas (empty area)
  await page.keyboard.press("Control+Enter");
  await page.waitForFunction(
    () => {
      const { app } = window.comfyAPI.app;
      const ok = (id) => (app.graph.getNodeById(id)?.imgs ?? []).some((i) => i.complete && i.naturalWidth > 100);
      return ok(1) && ok(2);
    },
    null, { timeout: 120_000 });
  const images = await page.evaluate(() => {
    const { app } = window.comfyAPI.app;
    return [1, 2].map((id) => app.graph.getNodeById(id).imgs.map((i) => [i.naturalWidth, i.naturalHeight, i.src]));
  });
  step("preview images", { images });
  await page.waitForTimeout(1500); // let the canvas draw the images

  // 6. the readout on a Radial Attention Patch node too (added as the node search would add it)
  const patch = await page.evaluate(() => {
    const { app } = window.comfyAPI.app;
    const node = window.LiteGraph.createNode("RadialAttentionPatch");
    if (!node) return { error: "RadialAttentionPatch is not registered in the front end" };
    node.pos = [1060, 640];
    app.graph.add(node);
    return { id: node.id };
  });
  if (patch.error) throw new Error(patch.error);
  await page.waitForFunction(
    (id) => document.querySelector(`.radial-readout[data-node-id="${id}"]`)?.dataset.state === "ok",
    patch.id, { timeout: 20_000 });
  const patchText = (await page.locator(`.radial-readout[data-node-id="${patch.id}"]`).innerText()).trim();
  const patchExpected = await page.evaluate(async () => {
    const q = "family=wan21&width=1280&height=720&frames=81&block_size=128&decay_factor=0&dist1=full";
    return (await (await fetch(`/api/radial_attention/estimate?${q}`)).json()).density;
  });
  if (!patchText.includes(`density ${(100 * patchExpected).toFixed(1)} %`) || !/^ASSUMED: 1280x720, 81 frames/i.test(patchText)) {
    throw new Error(`patch node readout "${patchText}" is not the route's answer ${patchExpected}`);
  }
  step("patch node readout", { text: patchText });
  await page.waitForTimeout(500);

  // 6b. the family the readout guesses from the loader's file name comes from the server's family
  //     registry (GET /radial_attention/families, its file_names), not from a list in the front end:
  //     a UNETLoader with ComfyUI's template file names, linked into the patch node
  const registry = await page.evaluate(async () => (await (await fetch("/api/radial_attention/families")).json()));
  for (const [file, family] of [["hunyuanvideo1.5_720p_t2v_fp16.safetensors", "hunyuan15"],
                                ["ltx-2-19b-dev-fp8.safetensors", "ltxav"],
                                ["wan2.2_ti2v_5B_fp16.safetensors", "wan22_5b"]]) {
    const linked = await page.evaluate(({ id, file }) => {
      const { app } = window.comfyAPI.app;
      let loader = app.graph._nodes.find((n) => n.type === "UNETLoader");
      if (!loader) {
        loader = window.LiteGraph.createNode("UNETLoader");
        if (!loader) return { error: "UNETLoader is not registered in the front end" };
        loader.pos = [700, 640];
        app.graph.add(loader);
        loader.connect(0, app.graph.getNodeById(id), 0);
      }
      loader.widgets.find((w) => w.name === "unet_name").value = file;
      return { loader: loader.id };
    }, { id: patch.id, file });
    if (linked.error) throw new Error(linked.error);
    await page.waitForFunction(
      ({ id, family }) => {
        const el = document.querySelector(`.radial-readout[data-node-id="${id}"]`);
        return el?.dataset.state === "ok" && el.dataset.query.includes(`family=${family}&`);
      },
      { id: patch.id, family }, { timeout: 20_000 });
    const text = (await page.locator(`.radial-readout[data-node-id="${patch.id}"]`).innerText()).trim();
    if (!text.includes(registry.families[family].label)) {
      throw new Error(`patch readout for ${file} does not name ${registry.families[family].label}: ${text}`);
    }
    step("family from the registry", { file, family, text });
  }

  const shot = path.join(artifacts, "sparsity_preview_ui.png");
  await page.screenshot({ path: shot });
  result.screenshot = shot;
  if (docsShot) {
    fs.mkdirSync(path.dirname(docsShot), { recursive: true });
    await page.screenshot({ path: docsShot });
  }
  // 7. the same readout with the Vue node renderer ("Nodes 2.0", a setting users switch on):
  //    type a new frame count into the frames input and see the readout follow
  if (!(await setRenderer(page, true))) throw new Error("the Vue renderer did not switch on");
  // the input carries the label itself (front end 1.3x) or sits in a labelled box (1.49)
  const framesInput = page.locator('[data-node-id="1"] input[aria-label="frames"], [data-node-id="1"] [aria-label="frames"] input');
  await framesInput.waitFor({ state: "visible", timeout: 20_000 });
  const vueBefore = (await readout.innerText()).trim();
  // a real mouse click where the input is drawn (in 1.49 a drag-to-scrub layer lies over it and
  // a click without a drag puts the caret into the input)
  const box = await framesInput.boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.keyboard.press("Control+A");
  await page.keyboard.type("161");
  await page.keyboard.press("Enter");
  await page.waitForFunction(
    (old) => {
      const el = document.querySelector('.radial-readout[data-node-id="1"]');
      return el?.dataset.state === "ok" && el.innerText.trim() !== old && el.dataset.query.includes("frames=161");
    },
    vueBefore, { timeout: 20_000 });
  const vueAfter = (await readout.innerText()).trim();
  const vueExpected = await page.evaluate(async () => {
    const q = document.querySelector('.radial-readout[data-node-id="1"]').dataset.query;
    return (await (await fetch(`/api/radial_attention/estimate?${q}`)).json()).density;
  });
  if (!vueAfter.includes(`density ${(100 * vueExpected).toFixed(1)} %`) || !vueAfter.includes("41 x 3600 tokens")) {
    throw new Error(`Vue-node readout "${vueAfter}" is not the route's answer ${vueExpected} for 161 frames`);
  }
  step("vue nodes readout", { text: vueAfter });
  await page.waitForTimeout(500);
  await page.screenshot({ path: path.join(artifacts, "sparsity_preview_vue_nodes.png") });
});
