// Live density readout for the Radial Attention nodes.
//
// On "Sparsity Preview" and "Radial Attention Patch" nodes this shows the radial mask's density
// and expected attention speedup for the current widget values, updated as they are edited,
// without running the graph. The numbers come from the pack's HTTP route
// (GET /radial_attention/estimate, nodes/routes.py): all mask math stays in Python.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PREVIEW = "SparsityPreview";
const PATCH = "RadialAttentionPatch";
const READOUT = "radial_readout";
const FAMILIES = ["wan21", "wan22_14b", "wan22_5b", "hunyuan", "mochi"];
const DEFAULT_SIZE = { width: 1280, height: 720, frames: 81 };
const POLL_MS = 300;

const answers = new Map(); // query string -> Promise<{ok, body}>

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
function familyFromGraph(node) {
  const seen = new Set();
  let current = node;
  for (let hops = 0; current && hops < 12 && !seen.has(current.id); hops++) {
    seen.add(current.id);
    const fromWidget = value(current, null, "family", "model_family");
    if (fromWidget && FAMILIES.includes(fromWidget)) return fromWidget;
    for (const w of current.widgets ?? []) {
      if (typeof w.value !== "string") continue;
      const name = w.value.toLowerCase();
      if (name.includes("hunyuan")) return "hunyuan";
      if (name.includes("mochi")) return "mochi";
      if (name.includes("wan2.2") || name.includes("wan2_2") || name.includes("wan22")) {
        return name.includes("5b") ? "wan22_5b" : "wan22_14b";
      }
      if (name.includes("wan")) return "wan21";
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

function params(node) {
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
      p.family = familyFromGraph(patch) ?? p.family;
      note += ", settings from the patch";
    } else if (patch) {
      note += ", settings from the model when run";
    }
    if (upstream(node, "latent")) note += ", size from the latent when run";
  } else {
    const family = familyFromGraph(node);
    const size = sizeFromGraph(node);
    p.family = family ?? "wan21";
    p.width = String(size.width);
    p.height = String(size.height);
    p.frames = String(size.frames);
    note = `at ${size.width}x${size.height}, ${size.frames} frames` + (family ? "" : " (family assumed)");
  }
  return { query: new URLSearchParams(p).toString(), note };
}

function ask(query) {
  if (!answers.has(query)) {
    const promise = api
      .fetchApi(`/radial_attention/estimate?${query}`)
      .then(async (r) => ({ ok: r.ok, body: await r.json().catch(() => ({ error: r.statusText })) }))
      .catch((e) => ({ ok: false, body: { error: String(e) } }));
    answers.set(query, promise);
    if (answers.size > 200) answers.delete(answers.keys().next().value);
  }
  return answers.get(query);
}

function show(node, state, body, note) {
  const el = node.radialReadout;
  if (!el) return;
  el.dataset.state = state;
  if (state === "ok") {
    const pct = (x) => `${(100 * x).toFixed(1)} %`;
    el.querySelector(".radial-main").textContent =
      `density ${pct(body.density)} · ~${body.expected_speedup.toFixed(2)}x attention`;
    el.querySelector(".radial-detail").textContent =
      `${body.num_frames} x ${body.tokens_per_frame} tokens` +
      (body.text_tokens ? ` + ${body.text_tokens} text` : "") +
      `, ${body.num_blocks} blocks, ${pct(body.flops_saved)} FLOPs saved`;
    const where = node.comfyClass === PATCH ? `${body.label} ${note}` : note;
    el.querySelector(".radial-note").textContent = where.replace(/^[ ,]+/, "");
    el.title = body.summary;
  } else {
    el.querySelector(".radial-main").textContent = state === "busy" ? "density: ..." : "cannot estimate";
    el.querySelector(".radial-detail").textContent = body?.error ?? "";
    el.querySelector(".radial-note").textContent = "";
    el.title = body?.error ?? "";
  }
  node.setDirtyCanvas?.(true, false);
}

async function refresh(node) {
  if (!node.radialReadout) return;
  node.radialReadout.dataset.nodeId = String(node.id); // ids are assigned after creation on load
  const { query, note } = params(node);
  const key = query + "|" + note;
  if (node.radialKey === key) return;
  node.radialKey = key;
  show(node, "busy", null, note);
  const { ok, body } = await ask(query);
  if (node.radialKey !== key) return; // edited again meanwhile
  node.radialReadout.dataset.query = query;
  show(node, ok ? "ok" : "error", body, note);
}

function attach(node) {
  if (node.radialReadout || ![PREVIEW, PATCH].includes(node.comfyClass)) return;
  const el = document.createElement("div");
  el.className = "radial-readout";
  el.dataset.nodeId = String(node.id);
  el.style.cssText =
    "font: 12px/1.35 ui-monospace, monospace; padding: 4px 6px; border-radius: 4px;" +
    "background: rgba(0,0,0,0.35); color: #e6e8ee; overflow: hidden; white-space: normal;";
  el.innerHTML = '<div class="radial-main" style="font-weight:600;color:#f6c945"></div>' +
    '<div class="radial-detail" style="opacity:0.85"></div>' +
    '<div class="radial-note" style="opacity:0.6"></div>';
  const w = node.addDOMWidget(READOUT, "radial_readout", el, {
    hideOnZoom: false,
    serialize: false,
    getValue: () => "",
    setValue: () => {},
  });
  w.serialize = false;
  w.computeLayoutSize = () => ({ minHeight: 92, maxHeight: 112, minWidth: 260 });
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
