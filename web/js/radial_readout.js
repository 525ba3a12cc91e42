// Live density readout for the Radial Attention nodes.
//
// On "Sparsity Preview" and "Radial Attention Patch" nodes this shows the radial mask's density
// and expected attention speedup for the current widget values, updated as they are edited,
// without running the graph; on "Radial LoRA Loader" the radial settings it will apply. The
// numbers come from the pack's HTTP routes (GET /radial_attention/estimate and /lora_settings,
// nodes/routes.py): all mask math stays in Python. A value is sent once it has stopped changing,
// and only when it is inside the limits the server states for its input (GET
// /radial_attention/limits, read generically per input name); what only the server can judge (a
// LoRA file, a dense_blocks list) comes back as a structured answer (the X-Radial-Readout header),
// so a value being typed never logs a failed request. Every message is shown whole: the box wraps
// and the node grows to fit it, on the classic canvas and with Vue nodes ("Nodes 2.0"). What the readout
// knows about model families (their keys, the file names that tell them) is the server's one
// family registry (GET /radial_attention/families, radial_core/families.py), not a list here.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PREVIEW = "SparsityPreview";
const PATCH = "RadialAttentionPatch";
const LORA = "RadialLoraLoader";
const READOUT = "radial_readout";
const DEFAULT_SIZE = { width: 1280, height: 720, frames: 81 };
const POLL_MS = 300;
const SETTLE_MS = 450; // ask the server only once a value has stopped changing this long
const READOUT_FONT = "12px/1.35 ui-monospace, monospace";
const MIN_HEIGHT = 64; // four lines at 12 px: the box before its first answer

const answers = new Map(); // route + query string -> Promise<{ok, body}>

// A route's JSON, asked once per page (a Promise; null when the request fails).
const fixed = new Map(); // route -> Promise<body | null>
function fetchOnce(route) {
  if (!fixed.has(route)) {
    fixed.set(route, api.fetchApi(route).then((r) => (r.ok ? r.json() : null)).catch(() => null));
  }
  return fixed.get(route);
}

// What the estimate route accepts (GET /radial_attention/limits): values outside it are explained
// here without a request, so typing "1" on the way to "129" logs no 400 in the console.
const loadLimits = () => fetchOnce("/radial_attention/limits");

// The family registry (GET /radial_attention/families): {families: {key: entry}, pass_through}.
const loadFamilies = () => fetchOnce("/radial_attention/families");

// The family a model file name tells, by the registry's file_names (the longest piece found wins:
// "wan2.2_ti2v_5b" over "wan2.2" over "wan"); null when none does.
function familyFromName(name, fams) {
  let best = null;
  let bestLength = 0;
  for (const [key, entry] of Object.entries(fams?.families ?? {})) {
    for (const piece of entry.file_names ?? []) {
      if (piece.length > bestLength && name.includes(piece)) {
        best = key;
        bestLength = piece.length;
      }
    }
  }
  return best;
}

// The rule the server states for one input (GET /radial_attention/limits), whatever shape the
// route writes it in: {settings: {name: {type, min, max, choices, max_chars, max_index, pattern}}}
// (the settings contract) or {name: {...}}, {name: [min, max]}, or the allowed values under the
// plural name ("families", "block_sizes"). null when the route states none (the server checks it).
function ruleOf(lim, name) {
  const plural = name.endsWith("y") ? `${name.slice(0, -1)}ies` : `${name}s`;
  const entry = lim?.settings?.[name] ?? lim?.[name];
  if (entry && typeof entry === "object" && !Array.isArray(entry)) {
    return { type: entry.type, min: entry.min, max: entry.max, choices: entry.choices ?? entry.options ?? null,
             pattern: entry.pattern, maxLength: entry.max_chars ?? entry.max_length, maxIndex: entry.max_index };
  }
  if (Array.isArray(entry) && entry.length === 2 && entry.every((x) => typeof x === "number") && entry[0] <= entry[1]) {
    return { min: entry[0], max: entry[1] };
  }
  if (Array.isArray(entry)) return { choices: entry };
  if (Array.isArray(lim?.[plural])) return { choices: lim[plural] };
  return null;
}

const INT_TYPES = new Set(["int", "INT", "integer"]);

// A stated pattern (a Python regular expression) that JavaScript cannot read checks nothing.
function matches(pattern, text) {
  try {
    return new RegExp(pattern).test(text);
  } catch {
    return true;
  }
}

// Why `text` is not a value the route takes for `name` (a short sentence), or null.
function ruleProblem(name, text, rule) {
  if (!rule) return null;
  if (rule.choices) {
    return rule.choices.map(String).includes(text) ? null : `${name} ${text.slice(0, 24)} is not one of ${rule.choices.join(", ")}`;
  }
  if (rule.maxLength !== undefined && text.length > rule.maxLength) return `${name} is longer than ${rule.maxLength} characters`;
  if (rule.pattern && !matches(rule.pattern, text)) return `${name} ${text.slice(0, 24)} is not written as the node expects`;
  if (rule.maxIndex !== undefined) {
    // a list of numbers (dense_blocks): none above the cap; how it is written the server judges
    const above = (text.match(/\d+/g) ?? []).find((d) => d.length > 9 || Number(d) > rule.maxIndex);
    if (above !== undefined) return `${name}: ${above.slice(0, 12)} is above the highest index, ${rule.maxIndex}`;
  }
  if (rule.min === undefined && rule.max === undefined) return null;
  const integer = INT_TYPES.has(rule.type);
  const written = integer ? /^[+-]?\d{1,9}$/ : /^[+-]?(\d{1,9}(\.\d{0,20})?|\.\d{1,20})$/;
  const v = Number(text);
  const span = `${rule.min ?? "-inf"} to ${rule.max ?? "inf"}`;
  if (!written.test(text.trim()) || !Number.isFinite(v)) return `${name} ${text.slice(0, 24)} is not a number in ${span}`;
  if ((rule.min !== undefined && v < rule.min) || (rule.max !== undefined && v > rule.max)) {
    return `${name} ${text.slice(0, 24)} is outside ${span}`;
  }
  return null;
}

// The node's own default for an input (its schema): a default is what the node means by "unset"
// (-1 steps, decay 0, an empty list on the loader) and always valid, so it is not checked here.
function schemaDefault(node, name) {
  const spec = node?.constructor?.nodeData?.input;
  const entry = spec?.required?.[name] ?? spec?.optional?.[name];
  return entry?.[1]?.default;
}

// A query's values checked against the limits before any request: typing "1" on the way to "129"
// asks nothing and logs nothing. Combo values come from the node's own list and are not checked.
async function localProblem(p, node) {
  const lim = await loadLimits();
  if (!lim) return null; // the server checks everything anyway
  for (const [name, text] of Object.entries(p)) {
    const w = widget(node, name);
    if (w && (w.type === "combo" || Array.isArray(w.options?.values))) continue;
    const dflt = schemaDefault(node, name);
    if (w && dflt !== undefined && String(dflt) === text) continue;
    // the loader's "from LoRA" value of an override (the contract's override_unset)
    const unset = lim.override_unset?.[name];
    if (node.comfyClass === LORA && unset !== undefined && String(unset) === text) continue;
    const problem = ruleProblem(name, text, ruleOf(lim, name));
    if (problem) return problem;
  }
  return null;
}

function widget(node, ...names) {
  for (const name of names) {
    const w = node.widgets?.find((x) => x.name === name);
    if (w) return w;
  }
  return undefined;
}

function value(node, fallback, ...names) {
  const w = widget(node, ...names);
  return w === undefined || w.value === undefined || w.value === null ? fallback : w.value;
}

// Family from a model loader's file name upstream of the patch node (the patch node detects the
// family from the model itself at run time; this is only the readout's guess).
function familyFromGraph(node, fams) {
  const seen = new Set();
  let current = node;
  for (let hops = 0; current && hops < 12 && !seen.has(current.id); hops++) {
    seen.add(current.id);
    const fromWidget = value(current, null, "family", "model_family");
    if (fromWidget && fams?.families?.[fromWidget]) return fromWidget;
    for (const w of current.widgets ?? []) {
      if (typeof w.value !== "string") continue;
      const family = familyFromName(w.value.toLowerCase(), fams);
      if (family) return family;
    }
    current = upstream(current, "model");
  }
  return null;
}

// The graph a node lives in (the root graph or a subgraph).
function graphOf(node) {
  return node?.graph ?? app.graph;
}

// Video size for the patch node: the first node in its graph with width/height/length widgets
// (EmptyHunyuanLatentVideo, WanImageToVideo, EmptyMochiLatentVideo, ...); else one whose widgets
// end in _width/_height/_frames with a size set (Save Radial LoRA's tuned_*: the training size).
const SIZE_NAMES = [["width"], ["height"], ["length", "frames"]];
function sizeOf(n, prefixed) {
  const pick = (names) => {
    if (!prefixed) return value(n, null, ...names);
    const w = (n.widgets ?? []).find((x) => names.some((name) => x.name?.endsWith(`_${name}`)));
    return w && Number(w.value) > 0 ? w.value : null;
  };
  const [w, h, f] = SIZE_NAMES.map(pick);
  return [w, h, f].every(Number.isFinite) ? { width: w, height: h, frames: f, from: n.title || n.comfyClass } : null;
}

function sizeFromGraph(node) {
  const nodes = (graphOf(node)?._nodes ?? []).filter((n) => n.comfyClass !== PREVIEW);
  for (const prefixed of [false, true]) {
    for (const n of nodes) {
      const size = sizeOf(n, prefixed);
      if (size) return size;
    }
  }
  return { ...DEFAULT_SIZE, from: null };
}

// The node linked into `inputName`, through LiteGraph's node API (findInputSlot / isInputConnected /
// getInputNode: front ends 1.32 to 1.58; reading input.link is deprecated since 1.58).
function upstream(node, inputName) {
  const slot = node.findInputSlot?.(inputName) ?? -1;
  if (slot < 0) return null;
  try {
    if (node.isInputConnected && !node.isInputConnected(slot)) return null;
    return node.getInputNode?.(slot) ?? null;
  } catch {
    return null; // a node being removed has no graph
  }
}

// Mask settings of a node's widgets: block size, decay factor (0 = family default), rule.
function maskSettings(node) {
  return {
    block_size: String(value(node, 128, "block_size")),
    decay_factor: String(value(node, 0, "decay_factor")),
    dist1: String(value(node, "full", "dist1")),
  };
}

function params(node, fams) {
  const p = { ...maskSettings(node), text_tokens: String(value(node, -1, "text_tokens")) };
  let note = "";
  if (node.comfyClass === PREVIEW) {
    p.family = value(node, "wan21", "family");
    p.width = String(value(node, 832, "width"));
    p.height = String(value(node, 480, "height"));
    p.frames = String(value(node, 81, "frames"));
    const patch = upstream(node, "model");
    if (patch?.comfyClass === PATCH) {
      // the node takes the patched model's settings when run; show those
      Object.assign(p, maskSettings(patch));
      p.family = familyFromGraph(patch, fams) ?? p.family;
      note += ", settings from the patch";
    } else if (patch) {
      note += ", settings from the model when run";
    }
    if (upstream(node, "latent")) note += ", size from the latent when run";
  } else {
    const family = familyFromGraph(node, fams);
    const size = sizeFromGraph(node);
    p.family = family ?? "wan21";
    p.width = String(size.width);
    p.height = String(size.height);
    p.frames = String(size.frames);
    note = `at ${size.width}x${size.height}, ${size.frames} frames` +
      (size.from ? ` (from ${size.from})` : "");
    const assumed = [];
    if (!size.from) {
      assumed.push(`${size.width}x${size.height}, ${size.frames} frames`);
      note = "· no video size node found";
    }
    if (!family) assumed.push("Wan 2.1");
    if (assumed.length) {
      return { route: "estimate", p, query: new URLSearchParams(p).toString(), note,
               assumed: `assumed: ${assumed.join(", ")}` };
    }
  }
  return { route: "estimate", p, query: new URLSearchParams(p).toString(), note, assumed: "" };
}

// The Radial LoRA Loader: its LoRA and override widgets, for GET /radial_attention/lora_settings.
function loraParams(node) {
  const p = { lora_name: String(value(node, "", "lora_name")) };
  for (const name of ["decay_factor", "block_size", "dense_blocks", "dense_steps_first", "dense_steps_last",
                      "dist1", "family"]) {
    const v = value(node, null, name);
    if (v !== null) p[name] = String(v);
  }
  return { route: "lora_settings", p, query: new URLSearchParams(p).toString(), note: "", assumed: "" };
}

// The route's answer, asked once per query. The X-Radial-Readout header asks the route to answer a
// value it refuses with 200 and {error} instead of a 400 (which the browser would log as a failed
// request while the user is still typing); a server without that answers 400, read the same way.
function ask(route, query) {
  const key = `${route}?${query}`;
  if (!answers.has(key)) {
    const promise = api
      .fetchApi(`/radial_attention/${key}`, { headers: { "X-Radial-Readout": "1" } })
      .then(async (r) => {
        const body = await r.json().catch(() => ({ error: r.statusText }));
        return { ok: r.ok && !(body && "error" in body), body };
      })
      .catch((e) => ({ ok: false, body: { error: String(e) } }));
    answers.set(key, promise);
    if (answers.size > 200) answers.delete(answers.keys().next().value);
  }
  return answers.get(key);
}

const SOURCE = { metadata: "from the LoRA", override: "set here", default: "default" };

function showLora(el, body) {
  const v = body.values;
  const src = (k) => SOURCE[body.sources[k]] ?? body.sources[k];
  const decay = v.decay_factor === null ? "family default" : v.decay_factor;
  el.querySelector(".radial-main").textContent =
    `applies: decay ${decay} · block ${v.block_size} · dense blocks ${v.dense_blocks}`;
  el.querySelector(".radial-detail").textContent =
    `dense steps first ${v.dense_steps_first} / last ${v.dense_steps_last} · dist1 ${v.dist1}` +
    (v.family && v.family !== "auto" ? ` · ${v.family}` : "");
  el.querySelector(".radial-note").textContent = body.from_file
    ? `decay ${src("decay_factor")}, dense blocks ${src("dense_blocks")}, dense steps ${src("dense_steps_first")}`
    : "no radial settings in this LoRA: the authors' defaults (or the values set here)";
  el.title = body.text;
}

// The headline over a message: what the node will do with these values.
function headline(state, info) {
  if (state === "busy") return "...";
  if (state === "invalid") return "not yet valid";
  return info?.route === "lora_settings" ? "the loader will refuse this" : "cannot estimate";
}

function show(node, state, body, info) {
  const el = node.radialReadout;
  if (!el) return;
  el.dataset.state = state;
  const assumed = el.querySelector(".radial-assumed");
  assumed.textContent = info?.assumed ?? "";
  assumed.style.display = info?.assumed ? "" : "none";
  el.dataset.assumed = info?.assumed ? "true" : "false";
  if (state === "ok" && info.route === "lora_settings") {
    showLora(el, body);
  } else if (state === "ok") {
    const pct = (x) => `${(100 * x).toFixed(1)} %`;
    el.querySelector(".radial-main").textContent =
      `density ${pct(body.density)} · ~${body.expected_speedup.toFixed(2)}x attention`;
    el.querySelector(".radial-detail").textContent =
      `${body.num_frames} x ${body.tokens_per_frame} tokens` +
      (body.text_tokens ? ` + ${body.text_tokens} text` : "") +
      `, ${body.num_blocks} blocks, ${pct(body.flops_saved)} FLOPs saved`;
    const where = node.comfyClass === PATCH ? `${body.label} ${info.note}` : info.note;
    el.querySelector(".radial-note").textContent = where.replace(/^[ ,]+/, "");
    el.title = body.summary;
  } else {
    el.querySelector(".radial-main").textContent = headline(state, info);
    el.querySelector(".radial-detail").textContent = body?.error ?? "";
    el.querySelector(".radial-note").textContent = "";
    el.title = body?.error ?? "";
  }
  fit(node);
}

// Room for the whole message: the readout's height is its text's, wrapped at the node's width;
// the node grows when the readout needs more than it has (it never shrinks a node the user sized).
const PAD_Y = 8; // the box's vertical padding
const GAP = 6; // margin under the box
function needed(node) {
  const el = node.radialReadout;
  const body = el.querySelector(".radial-body");
  // measure a copy at the box's width: the box itself may be hidden (another graph, zoomed out)
  const width = el.clientWidth || Math.max(200, (node.size?.[0] ?? 300) - 20);
  const probe = body.cloneNode(true);
  probe.style.cssText = `position:absolute;visibility:hidden;left:-10000px;top:0;width:${width - 12}px;` +
    `font:${READOUT_FONT};white-space:normal;overflow-wrap:anywhere`;
  document.body.appendChild(probe);
  const h = Math.ceil(probe.getBoundingClientRect().height);
  probe.remove();
  return Math.max(MIN_HEIGHT, h + PAD_Y + 2);
}

function fit(node) {
  const el = node.radialReadout;
  const need = needed(node);
  el.dataset.need = String(need);
  if (need !== node.radialNeed) {
    node.radialNeed = need;
    el.style.minHeight = `${need}px`;
  }
  const [w, h] = node.computeSize?.() ?? node.size;
  if (node.size && (node.size[0] < w || node.size[1] < h)) {
    node.setSize([Math.max(node.size[0], w), Math.max(node.size[1], h)]);
  }
  node.setDirtyCanvas?.(true, true);
}

async function refresh(node) {
  if (!node.radialReadout) return;
  node.radialReadout.dataset.nodeId = String(node.id); // ids are assigned after creation on load
  const fams = await loadFamilies();
  const info = node.comfyClass === LORA ? loraParams(node) : params(node, fams);
  const key = `${info.route}?${info.query}|${info.note}|${info.assumed}`;
  if (node.radialKey === key) return;
  // wait until the value stops changing (typing "129" passes through "1" and "12")
  const now = performance.now();
  if (node.radialPendingKey !== key) {
    node.radialPendingKey = key;
    node.radialPendingSince = now;
    if (node.radialKey !== null && node.radialKey !== undefined) node.radialReadout.dataset.state = "settling";
    setTimeout(() => refresh(node), SETTLE_MS + 20);
    return;
  }
  if (now - node.radialPendingSince < SETTLE_MS) return;
  node.radialKey = key;
  const problem = await localProblem(info.p, node);
  if (node.radialKey !== key) return;
  if (problem) {
    node.radialReadout.dataset.query = info.query;
    show(node, "invalid", { error: problem }, info);
    return;
  }
  if (info.route === "lora_settings") {
    // only a LoRA the loras folders hold (the node's list): a workflow may name one not downloaded yet
    const listed = widget(node, "lora_name")?.options?.values;
    const known = Array.isArray(listed) ? listed : null;
    if (!info.p.lora_name || (known && !known.includes(info.p.lora_name))) {
      show(node, "invalid", { error: info.p.lora_name
        ? `${info.p.lora_name} is not in the loras folders: put it into models/loras and refresh (R)`
        : "no LoRA chosen" }, info);
      return;
    }
  }
  show(node, "busy", null, info);
  const { ok, body } = await ask(info.route, info.query);
  if (node.radialKey !== key) return; // edited again meanwhile
  node.radialReadout.dataset.query = info.query;
  show(node, ok ? "ok" : "error", body, info);
}

function attach(node) {
  if (node.radialReadout || ![PREVIEW, PATCH, LORA].includes(node.comfyClass)) return;
  const el = document.createElement("div");
  el.className = "radial-readout";
  el.dataset.nodeId = String(node.id);
  // the box is as tall as its wrapped text (fit): nothing is cut, on either renderer
  el.style.cssText =
    `font: ${READOUT_FONT}; padding: 4px 6px; border-radius: 4px; background: rgba(0,0,0,0.35);` +
    "color: #e6e8ee; overflow: hidden; white-space: normal; overflow-wrap: anywhere;" +
    `box-sizing: border-box; min-height: ${MIN_HEIGHT}px; margin-bottom: ${GAP}px;`;
  el.innerHTML = '<div class="radial-body">' +
    '<div class="radial-assumed" style="display:none;font-weight:700;color:#ff9f43;' +
    'text-transform:uppercase;letter-spacing:0.02em"></div>' +
    '<div class="radial-main" style="font-weight:600;color:#f6c945"></div>' +
    '<div class="radial-detail" style="opacity:0.85"></div>' +
    '<div class="radial-note" style="opacity:0.6"></div></div>';
  node.radialNeed = MIN_HEIGHT;
  const room = () => (node.radialNeed ?? MIN_HEIGHT) + GAP;
  const w = node.addDOMWidget(READOUT, "radial_readout", el, {
    hideOnZoom: false,
    serialize: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: room,
    getMaxHeight: room,
  });
  w.serialize = false;
  w.computeLayoutSize = () => ({ minHeight: room(), maxHeight: room(), minWidth: 260 });
  node.radialReadout = el;
  // make room for the readout once the node has its final widgets (never shrink a node)
  requestAnimationFrame(() => fit(node));
  for (const other of node.widgets ?? []) {
    if (other === w) continue;
    const original = other.callback;
    other.callback = function (...args) {
      const result = original?.apply(this, args);
      setTimeout(() => refresh(node), 0);
      return result;
    };
  }
  refresh(node);
}

const EXTENSION = {
  name: "radial_attention.density_readout",
  nodeCreated(node) {
    attach(node);
  },
  loadedGraphNode(node) {
    attach(node);
    node.radialKey = null;
    refresh(node);
  },
  setup() {
    offerOnlyOpenableTemplates();
    // Catch every way a value can change (typing, arrows, links, graph loads): compare the
    // query of each readout node a few times a second; only a changed query reaches the server.
    setInterval(() => {
      const graphs = new Set([app.graph, app.canvas?.graph].filter(Boolean)); // root, open subgraph
      for (const graph of graphs) {
        for (const node of graph._nodes ?? []) {
          if (node.radialReadout) refresh(node);
        }
      }
    }, POLL_MS);
  },
};

// The template browser offers only the pack's workflows this ComfyUI can open: one that needs a
// node the server lacks (LTX-2's audio nodes on ComfyUI 0.3.75) would open with a missing-node
// dialog. The front end lists custom-node templates through api.getWorkflowTemplates()
// ({folder: [names]}, front ends 1.32 to 1.58); the pack's own entries are checked against the
// server's node types (each workflow read once).
const PACK_FOLDER = decodeURIComponent(new URL(import.meta.url).pathname.split("/extensions/")[1]?.split("/")[0] ?? "");
const openable = new Map(); // workflow name -> Promise<boolean>
function canOpen(folder, name) {
  if (!openable.has(name)) {
    const types = window.LiteGraph?.registered_node_types ?? {};
    const check = api.fetchApi(`/workflow_templates/${encodeURIComponent(folder)}/${encodeURIComponent(name)}.json`)
      .then((r) => (r.ok ? r.json() : null))
      .then((wf) => !Array.isArray(wf?.nodes) || wf.nodes.every((n) => !n.type || n.type in types))
      .catch(() => true);
    openable.set(name, check);
  }
  return openable.get(name);
}

function offerOnlyOpenableTemplates() {
  const list = api.getWorkflowTemplates;
  if (typeof list !== "function" || list.radialFiltered) return;
  const filtered = async function (...args) {
    const all = await list.apply(this, args);
    const ours = PACK_FOLDER && all?.[PACK_FOLDER];
    if (!Array.isArray(ours) || !window.LiteGraph?.registered_node_types) return all;
    const keep = await Promise.all(ours.map((name) => canOpen(PACK_FOLDER, name)));
    return { ...all, [PACK_FOLDER]: ours.filter((_, i) => keep[i]) };
  };
  filtered.radialFiltered = true;
  api.getWorkflowTemplates = filtered;
}

// ComfyUI may serve this folder under two names (the pack's WEB_DIRECTORY and pyproject's
// [tool.comfy] web), loading this file twice: register once per page.
if (!window.__radialAttentionReadout) {
  window.__radialAttentionReadout = true;
  app.registerExtension(EXTENSION);
}
