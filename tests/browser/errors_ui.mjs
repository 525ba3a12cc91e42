// Real-browser check of what a user sees when a value is wrong, and of the readout's layout.
//
//   node tests/browser/errors_ui.mjs <comfyui url> <artifacts dir> <broken lora> <long lora>
//
// 1. A graph with a Radial Attention Patch whose dense_blocks is "abc,-3" is queued the way the
//    Queue button does it: the front end must hold exactly one error for that node, on dense_blocks,
//    and show the message once; a screenshot of the error panel is saved.
// 2. The readout of every kind of message, the longest of each: an estimate (Sparsity Preview,
//    Radial Attention Patch, an unconnected Patch that says "assumed" first), a LoRA's settings
//    (a long file name), a value outside the server's limits (checked in the page), a size the
//    server refuses, a LoRA that is not in the loras folders (a long name), a LoRA file the server
//    cannot read (a long name; the message ends with the fix). On the classic canvas and with the
//    Vue renderer ("Nodes 2.0"), each set explicitly: each readout lies inside its node with a margin
//    at the bottom and shows its whole text (nothing cut at the bottom or the right). Screenshots of
//    both renderers.
// 3. With Vue nodes, typing a value the server refuses into the loader's dense_blocks, key by key:
//    no failed request to the pack's routes, no console error or deprecation warning of ours, and
//    the readout shows the server's message.
// Prints one JSON line with what it saw; exits 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import { notOurs } from "./console_errors.mjs";
import { openApp, runInBrowser, setRenderer } from "./page_helpers.mjs";

const [url, artifacts, brokenLora, longLora] = process.argv.slice(2);
const host = new URL(url).host;
fs.mkdirSync(artifacts, { recursive: true });
const result = { steps: [], consoleErrors: [], ignoredErrors: [] };
const step = (name, data = {}) => result.steps.push({ name, ...data });
const BAD = "abc,-3";

function addNodes() {
  const { app } = window.comfyAPI.app;
  app.graph.clear();
  const make = (type, pos) => {
    const n = window.LiteGraph.createNode(type);
    n.pos = pos;
    app.graph.add(n);
    return n;
  };
  const loader = make("UNETLoader", [40, 60]);
  const patch = make("RadialAttentionPatch", [420, 60]);
  const preview = make("SparsityPreview", [820, 60]);
  const lora = make("RadialLoraLoader", [420, 520]);
  loader.connect(0, patch, 0);
  patch.connect(0, preview, preview.inputs.findIndex((i) => i.name === "model"));
  const unconnected = make("RadialAttentionPatch", [1220, 60]);
  return { loader: loader.id, patch: patch.id, preview: preview.id, lora: lora.id, unconnected: unconnected.id };
}

// One node per kind of message, each with the longest text of its kind.
function addMessageNodes({ brokenLora, longLora }) {
  const { app } = window.comfyAPI.app;
  const make = (type, pos, values) => {
    const n = window.LiteGraph.createNode(type);
    n.pos = pos;
    app.graph.add(n);
    for (const [name, v] of Object.entries(values)) n.widgets.find((w) => w.name === name).value = v;
    return n.id;
  };
  return {
    longLora: make("RadialLoraLoader", [820, 520], { lora_name: longLora }),
    missingLora: make("RadialLoraLoader", [1220, 520], { lora_name: `radial_${"not_downloaded_".repeat(8)}lora.safetensors` }),
    brokenLora: make("RadialLoraLoader", [1620, 520], { lora_name: brokenLora }),
    outOfRange: make("SparsityPreview", [1620, 60], { frames: 99999 }),
    tooLarge: make("SparsityPreview", [2020, 60], { width: 8192, height: 8192, frames: 2049 }),
  };
}
const STATES = { patch: "ok", preview: "ok", lora: "ok", unconnected: "ok", longLora: "ok", missingLora: "invalid",
                 brokenLora: "error", outOfRange: "invalid", tooLarge: "error" };

async function layout(page, ids) {
  return page.evaluate((ids) => {
    const { app } = window.comfyAPI.app;
    const out = {};
    for (const [name, id] of Object.entries(ids)) {
      const el = document.querySelector(`.radial-readout[data-node-id="${id}"]`);
      if (!el) continue;
      const r = el.getBoundingClientRect();
      // the node's box: its Vue element, or its canvas rectangle converted to the page
      let box = document.querySelector(`.lg-node[data-node-id="${id}"]`)?.getBoundingClientRect();
      if (!box || box.width === 0) {
        const node = app.graph.getNodeById(id);
        const rect = app.canvas.canvas.getBoundingClientRect();
        const dpr = app.canvas.canvas.width / rect.width;
        const [x0, y0] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1]]);
        const [x1, y1] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0], node.pos[1] + node.size[1]]);
        box = { left: rect.left + x0 / dpr, top: rect.top + y0 / dpr, right: rect.left + x1 / dpr, bottom: rect.top + y1 / dpr };
      }
      const scale = app.canvas.ds.scale;
      out[name] = {
        state: el.dataset.state, text: el.innerText.trim(), assumed: el.dataset.assumed,
        headline: el.querySelector(".radial-main")?.innerText ?? "", title: el.title,
        height: r.height / scale, inside: r.left >= box.left - 1 && r.right <= box.right + 1 && r.top >= box.top - 1,
        bottomMargin: (box.bottom - r.bottom) / scale,
        // the text's own height and width against the box's: more means a cut line or word
        cut: el.scrollHeight > el.clientHeight + 1 || el.scrollWidth > el.clientWidth + 1,
        scroll: [el.scrollWidth, el.scrollHeight, el.clientWidth, el.clientHeight],
        firstLine: el.querySelector(".radial-assumed")?.offsetParent ? el.querySelector(".radial-assumed").innerText : "",
      };
    }
    return out;
  }, ids);
}

function checkLayout(where, lay, ids) {
  for (const name of Object.keys(ids)) {
    if (name === "loader") continue;
    const l = lay[name];
    if (!l) throw new Error(`${where}: no readout on the ${name} node`);
    if (l.state !== STATES[name]) throw new Error(`${where}: the ${name} readout is ${l.state}, not ${STATES[name]}: ${JSON.stringify(l)}`);
    if (!l.inside) throw new Error(`${where}: the ${name} readout sticks out of its node: ${JSON.stringify(l)}`);
    if (l.bottomMargin < 2) throw new Error(`${where}: the ${name} readout touches its node's edge: ${JSON.stringify(l)}`);
    if (l.cut) throw new Error(`${where}: the ${name} readout cuts its text: ${JSON.stringify(l)}`);
    if (l.state === "error" && !l.text.includes(l.title)) throw new Error(`${where}: the ${name} readout does not show the whole message: ${JSON.stringify(l)}`);
  }
  if (!/^ASSUMED: 1280X720, 81 FRAMES/i.test(lay.unconnected.firstLine)) {
    throw new Error(`${where}: the unconnected patch does not say "assumed" first: ${JSON.stringify(lay.unconnected)}`);
  }
  if (!/applies: decay/.test(lay.lora.text)) throw new Error(`${where}: LoRA readout: ${lay.lora.text}`);
  if (/cannot estimate/.test(lay.brokenLora.headline) || !/fix|put|download|replace|save/i.test(lay.brokenLora.text)) {
    throw new Error(`${where}: a LoRA file error must not say "cannot estimate" and must show the fix: ${lay.brokenLora.text}`);
  }
  if (!lay.missingLora.text.includes("not_downloaded_".repeat(8))) throw new Error(`${where}: the missing LoRA's name is cut: ${lay.missingLora.text}`);
}

// the 400 of the bad prompt itself is what this test provokes
function classify(e) {
  const provoked = /\/api\/prompt/.test(e.url || "") || /status of 400/.test(e.text || "") && /prompt/.test(e.url || "");
  return provoked ? "the bad prompt's own 400 (provoked)" : notOurs(e, host);
}

await runInBrowser({
  result, viewport: { width: 1700, height: 1100 }, classify, failureShot: path.join(artifacts, "errors_failure.png"),
}, async (page) => {
  await openApp(page, url, () => window.comfyAPI?.app?.app?.graph && window.__radialAttentionReadout === true);
  const version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
  step("app ready", { frontend: version, vue: await setRenderer(page, false) });

  // 1. the error: one, on dense_blocks
  const ids = await page.evaluate(addNodes);
  await page.evaluate(({ id, bad }) => {
    const { app } = window.comfyAPI.app;
    app.graph.getNodeById(id).widgets.find((w) => w.name === "dense_blocks").value = bad;
    app.graph.setDirtyCanvas(true, true);
  }, { id: ids.patch, bad: BAD });
  await page.evaluate(() => window.comfyAPI.app.app.queuePrompt(0));
  await page.waitForFunction((id) => {
    const errs = window.comfyAPI.app.app.lastNodeErrors;
    return errs && errs[id];
  }, ids.patch, { timeout: 30_000 });
  await page.waitForTimeout(1500);
  const errors = await page.evaluate((id) => window.comfyAPI.app.app.lastNodeErrors[id].errors, ids.patch);
  step("errors of the patch node", { errors });
  if (errors.length !== 1 || errors[0].extra_info?.input_name !== "dense_blocks" || !errors[0].details.includes(BAD)) {
    throw new Error(`expected one error on dense_blocks naming ${BAD}: ${JSON.stringify(errors)}`);
  }
  // what the user reads: the message appears once on the page (the dialog or the error panel)
  const count = () => page.evaluate((bad) => document.body.innerText.split(`'${bad}' is not a block count`).length - 1, BAD);
  let shown = await count();
  if (shown === 0) {
    // front end 1.49: a toast ("2 errors found") whose "View details" opens the error panel
    const details = page.getByText("View details", { exact: true });
    if (await details.count()) {
      await details.first().click();
      await page.waitForTimeout(2000);
      shown = await count();
      step("error panel opened", { text: (await page.evaluate(() => document.body.innerText)).slice(0, 3000) });
    }
  }
  // front end 1.49's panel lists "<node title> - <input>" per error, the message behind an icon
  const listed = await page.evaluate(() => (document.body.innerText.match(/Radial Attention Patch - \w+/g) ?? []));
  step("message shown", { times: shown, listed });
  await page.screenshot({ path: path.join(artifacts, "error_panel.png") });
  const panelOk = listed.length === 1 && listed[0] === "Radial Attention Patch - dense_blocks";
  if (shown !== 1 && !(shown === 0 && panelOk)) {
    throw new Error(`the message is shown ${shown} times, the panel lists ${JSON.stringify(listed)} (expected once, on dense_blocks)`);
  }
  await page.screenshot({ path: path.join(artifacts, "error_panel.png") });
  // close the dialog, clear the error marks for the layout part
  await page.keyboard.press("Escape");
  await page.evaluate(({ id }) => {
    const { app } = window.comfyAPI.app;
    app.graph.getNodeById(id).widgets.find((w) => w.name === "dense_blocks").value = "1";
  }, { id: ids.patch });

  // 2. the readout's layout on the canvas, then with Vue nodes
  Object.assign(ids, await page.evaluate(addMessageNodes, { brokenLora, longLora }));
  await page.evaluate(() => {
    const { app } = window.comfyAPI.app;
    app.canvas.ds.scale = 0.75;
    app.canvas.ds.offset = [10, 10];
    app.canvas.setDirty(true, true);
  });
  const settled = (ids) => Object.entries(ids).every(([name, id]) => name === "loader" ||
    ["ok", "invalid", "error"].includes(document.querySelector(`.radial-readout[data-node-id="${id}"]`)?.dataset.state));
  await page.waitForFunction(settled, ids, { timeout: 30_000 });
  await page.waitForTimeout(1000);
  const canvas = await layout(page, ids);
  step("canvas layout", { vue: await page.evaluate(() => window.comfyAPI.app.app.extensionManager.setting.get("Comfy.VueNodes.Enabled")), ...canvas });
  await page.screenshot({ path: path.join(artifacts, "readout_canvas.png") });
  checkLayout("canvas", canvas, ids);

  const vueOn = await setRenderer(page, true);
  await page.waitForFunction(settled, ids, { timeout: 30_000 });
  await page.waitForTimeout(1000);
  const vue = await layout(page, ids);
  step("vue layout", { vue: vueOn, ...vue });
  await page.screenshot({ path: path.join(artifacts, "readout_vue_nodes.png") });
  if (!vueOn) throw new Error("the Vue renderer did not switch on");
  checkLayout("vue nodes", vue, ids);

  // 3. typing a value the server refuses, key by key (Vue nodes): nothing failed, nothing logged
  const failed = [];
  page.on("response", (r) => { if (r.status() >= 400 && /radial_attention/.test(r.url())) failed.push(`${r.status()} ${r.url()}`); });
  const input = page.locator(`.lg-node[data-node-id="${ids.lora}"] input[aria-label="dense_blocks"], ` +
    `.lg-node[data-node-id="${ids.lora}"] [aria-label="dense_blocks"] input, ` +
    `.lg-node[data-node-id="${ids.lora}"] textarea[aria-label="dense_blocks"]`).first();
  await input.waitFor({ state: "visible", timeout: 20_000 });
  await input.click();
  await page.keyboard.press("Control+A");
  const seen = [];
  for (const text of ["0-999999999", "abc", "1e3", "-"]) {
    await page.keyboard.type(text, { delay: 120 });
    await page.keyboard.press("Tab");
    await page.waitForFunction((id) => ["ok", "error", "invalid"].includes(
      document.querySelector(`.radial-readout[data-node-id="${id}"]`)?.dataset.state), ids.lora, { timeout: 20_000 });
    await page.waitForTimeout(1200);
    const now = (await layout(page, { lora: ids.lora })).lora;
    seen.push({ typed: text, state: now.state, text: now.text, cut: now.cut, inside: now.inside });
    await input.click();
    await page.keyboard.press("Control+A");
  }
  await page.keyboard.press("Backspace");
  await page.keyboard.press("Tab");
  await page.waitForTimeout(1500);
  step("typed out-of-range values", { failed, seen });
  // "0-999999999" is typed for its keystrokes (each a value on the way); whether the server refuses
  // it depends on its block cap, so only the three malformed values must read as refused
  const wrong = seen.filter((x) => x.cut || !x.inside ||
    (x.typed !== "0-999999999" && (x.state === "ok" || !/dense_blocks|block/i.test(x.text))));
  if (wrong.length) throw new Error(`a refused value is not shown whole as refused: ${JSON.stringify(wrong)}`);
  if (failed.length) throw new Error(`requests that failed while typing: ${failed.join(", ")}`);
});
