// Live density readout for the Radial Attention nodes.
//
// On "Sparsity Preview" and "Radial Attention Patch" nodes this shows the radial mask's density
// and expected attention speedup for the current widget values, updated as they are edited,
// without running the graph; on "Radial LoRA Loader" the radial settings it will apply. The
// numbers come from the pack's HTTP routes (GET /radial_attention/estimate and /lora_settings,
// nodes/routes.py): all mask math stays in Python. A value is sent once it has stopped changing,
// and only when it is inside the route's limits (GET /radial_attention/limits). What the readout
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

async function localProblem(p) {
  const lim = await loadLimits();
  if (!lim) return null; // the server checks everything anyway
  for (const name of ["width", "height", "frames", "text_tokens"]) {
    const [lo, hi] = lim[name];
    const v = Number(p[name]);
    if (!/^-?\d+$/.test(String(p[name])) || v < lo || v > hi) {
      return `${name} ${String(p[name]).slice(0, 12)} is outside ${lo}-${hi}`;
    }
  }
  const d = Number(p.decay_factor);
  const [dlo, dhi] = lim.decay_factor;
  if (!Number.isFinite(d) || d < dlo || d > dhi) return `decay_factor ${p.decay_factor} is outside ${dlo}-${dhi}`;
  if (!lim.families.includes(p.family)) return `family ${p.family} has no preview`;
  if (!lim.block_sizes.map(String).includes(p.block_size)) return `block_size ${p.block_size} is not 64 or 128`;
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
// (EmptyHunyuanLatentVideo, WanImageToVideo, EmptyMochiLatentVideo, ...).
function sizeFromGraph(node) {
  for (const n of graphOf(node)?._nodes ?? []) {
    const w = value(n, null, "width");
    const h = value(n, null, "height");
    const f = value(n, null, "length", "frames");
    if (n.comfyClass !== PREVIEW && Number.isFinite(w) && Number.isFinite(h) && Number.isFinite(f)) {
      return { width: w, height: h, frames: f, from: n.title || n.comfyClass };
    }
  }
  return { ...DEFAULT_SIZE, from: null };
}

function upstream(node, inputName) {
  const input = node.inputs?.find((i) => i.name === inputName && i.link != null);
  if (!input) return null;
  const graph = graphOf(node);
  const link = graph.links?.[input.link] ?? graph.links?.get?.(input.link);
  return link ? graph.getNodeById(link.origin_id) : null;
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

function ask(route, query) {
  const key = `${route}?${query}`;
  if (!answers.has(key)) {
    const promise = api
      .fetchApi(`/radial_attention/${key}`)
      .then(async (r) => ({ ok: r.ok, body: await r.json().catch(() => ({ error: r.statusText })) }))
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
    const waiting = state === "busy";
    el.querySelector(".radial-main").textContent = waiting ? "..." : state === "invalid" ? "not yet valid" : "cannot estimate";
    el.querySelector(".radial-detail").textContent = body?.error ?? "";
    el.querySelector(".radial-note").textContent = "";
    el.title = body?.error ?? "";
  }
  node.setDirtyCanvas?.(true, false);
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
  if (info.route === "estimate") {
    const problem = await localProblem(info.p);
    if (node.radialKey !== key) return;
    if (problem) {
      node.radialReadout.dataset.query = info.query;
      show(node, "invalid", { error: problem }, info);
      return;
    }
  } else {
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
  // a fixed-height box: both renderers (canvas and Vue "Nodes 2.0") give it the same room, and
  // the last line keeps a margin from the node's edge
  el.style.cssText =
    "font: 12px/1.35 ui-monospace, monospace; padding: 4px 6px; border-radius: 4px;" +
    "background: rgba(0,0,0,0.35); color: #e6e8ee; overflow: hidden; white-space: normal;" +
    "box-sizing: border-box; height: 112px; max-height: 112px; flex: 0 0 112px; margin-bottom: 6px;";
  el.innerHTML = '<div class="radial-assumed" style="display:none;font-weight:700;color:#ff9f43;' +
    'text-transform:uppercase;letter-spacing:0.02em"></div>' +
    '<div class="radial-main" style="font-weight:600;color:#f6c945"></div>' +
    '<div class="radial-detail" style="opacity:0.85"></div>' +
    '<div class="radial-note" style="opacity:0.6"></div>';
  const w = node.addDOMWidget(READOUT, "radial_readout", el, {
    hideOnZoom: false,
    serialize: false,
    getValue: () => "",
    setValue: () => {},
  });
  w.serialize = false;
  w.computeLayoutSize = () => ({ minHeight: 118, maxHeight: 118, minWidth: 260 });
  node.radialReadout = el;
  // make room for the readout once the node has its final widgets (never shrink a node)
  requestAnimationFrame(() => {
    const [w, h] = node.computeSize?.() ?? node.size;
    if (node.size[0] < w || node.size[1] < h) {
      node.setSize([Math.max(node.size[0], w), Math.max(node.size[1], h)]);
      node.setDirtyCanvas?.(true, true);
    }
  });
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

// ComfyUI may serve this folder under two names (the pack's WEB_DIRECTORY and pyproject's
// [tool.comfy] web), loading this file twice: register once per page.
if (!window.__radialAttentionReadout) {
  window.__radialAttentionReadout = true;
  app.registerExtension(EXTENSION);
}
