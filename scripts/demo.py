#!/usr/bin/env python3
"""``make demo``: a bundled Wan workflow through real ComfyUI, dense vs radial attention.

What it does (no downloads):
1. builds a small Wan 2.1 T2V model locally: ComfyUI's real WanModel class, random weights,
   saved as safetensors with the real key names (loaded by ComfyUI's UNETLoader node);
2. encodes the prompt with a toy random-weight text encoder (scripts/toy_text_encoder.py) and
   hands the tensors to the workflow through ComfyUI's LoadTrainingDataset node;
3. runs workflows/api/demo_wan_tiny.json headlessly through ComfyUI's prompt executor: the same
   sampling once with ComfyUI's default attention and once through the Radial Attention Patch
   (Triton kernel on CUDA, the PyTorch block path elsewhere), after a one-step warm-up;
4. prints the mask density, the two sampling times and their difference, and where the saved
   latents are.

The model has random weights: the outputs are noise-like latents, not a video. The point is
the attention path, its timing and that the whole ComfyUI pipeline runs.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# API format ("Export (API)"): kept out of workflows/ itself, whose files the template browser lists
WORKFLOW = ROOT / "workflows" / "api" / "demo_wan_tiny.json"
MODEL_NAME = "radial_demo_wan_t2v_tiny.safetensors"
DATASET = "radial_demo_conditioning"
DENSE_SAMPLER, RADIAL_SAMPLER, PATCH, LOADER, LATENT = "6", "7", "2", "1", "5"
SAVE_OUTPUTS = ["8", "9"]


def comfyui_dir() -> Path:
    env = os.environ.get("COMFYUI_DIR")
    if env:
        return Path(env).resolve()
    recorded = Path(sys.prefix) / "comfyui-path"  # written by scripts/setup_env.sh
    if recorded.exists():
        return Path(recorded.read_text().strip())
    return ROOT / ".comfyui"


def _import_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"radial_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


class HeadlessServer:
    """What ComfyUI's executor needs of its server: it records the events with a clock."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.events: list[tuple[float, str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.events.append((time.perf_counter(), event, data))

    def queue_updated(self):
        pass

    def node_seconds(self) -> dict[str, float]:
        """Seconds from each node's start to the next node's start (or the end of the prompt)."""
        out: dict[str, float] = {}
        starts = [(t, d.get("node")) for t, e, d in self.events if e == "executing" and d.get("node")]
        ends = [t for t, e, _ in self.events if e in ("executing", "execution_success", "execution_error")]
        for t, node in starts:
            later = [x for x in ends if x > t]
            if later:
                out[node] = later[0] - t
        return out


def boot_comfyui(cdir: Path, out_dir: Path, models_dir: Path):
    if not (cdir / "main.py").exists():
        sys.exit(f"ComfyUI not found at {cdir}: run `make demo` (it sets one up) or set COMFYUI_DIR.")
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != cdir]
    sys.path.insert(0, str(cdir))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    if not torch.cuda.is_available():
        comfy.cli_args.args.cpu = True
    import folder_paths

    folder_paths.set_output_directory(str(out_dir))
    folder_paths.add_model_folder_path("diffusion_models", str(models_dir), is_default=True)
    import comfy.utils
    import execution
    import nodes

    comfy.utils.PROGRESS_BAR_ENABLED = False  # no tqdm bars between the demo's lines

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    # this checkout's pack (through ComfyUI's link to it when there is one: the name ComfyUI
    # itself would give it); a link to another copy is not used
    link = cdir / "custom_nodes" / "radial-attention"
    pack = link if link.exists() and link.resolve() == ROOT.resolve() else ROOT
    if not asyncio.run(nodes.load_custom_node(str(pack))):
        sys.exit(f"ComfyUI could not load the Radial Attention pack from {pack} (see the log above).")
    # the pack's own log lines (one info line per sampling run) stay visible
    logging.getLogger(str(pack).replace(".", "_x_")).setLevel(logging.INFO)
    for needed in ("RadialAttentionPatch", "UNETLoader", "LoadTrainingDataset", "KSampler", "SaveLatent"):
        if needed not in nodes.NODE_CLASS_MAPPINGS:
            sys.exit(f"ComfyUI has no node {needed!r}: this demo needs ComfyUI 0.3.75 or newer.")
    return nodes, execution, folder_paths


def run_prompt(execution, prompt: dict, outputs: list[str]) -> HeadlessServer:
    server = HeadlessServer()
    pid = str(uuid.uuid4())
    valid = asyncio.run(execution.validate_prompt(pid, prompt, outputs))
    if not valid[0]:
        raise RuntimeError(f"the workflow did not validate: {valid[1]} {valid[3]}")
    executor = RUN_STATE.get("executor")
    if executor is None:
        executor = RUN_STATE["executor"] = execution.PromptExecutor(
            server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0})
    executor.server = server
    executor.execute(prompt, pid, {"client_id": "radial-demo"}, outputs)
    if not executor.success:
        msgs = [m for m in executor.status_messages if m[0] == "execution_error"]
        raise RuntimeError(f"ComfyUI reported an error: {msgs}")
    return server


RUN_STATE: dict = {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompt", default="a red fox running through fresh snow, cinematic")
    cuda = torch.cuda.is_available()
    # CPU: small enough for a 2-core machine; CUDA: a Wan-1.3B-wide model at 480p x 81 frames
    ap.add_argument("--width", type=int, default=832 if cuda else 512)
    ap.add_argument("--height", type=int, default=480 if cuda else 320)
    ap.add_argument("--length", type=int, default=81 if cuda else 33, help="pixel frames (4k+1)")
    ap.add_argument("--steps", type=int, default=8 if cuda else 3)
    ap.add_argument("--layers", type=int, default=4 if cuda else 3, help="transformer blocks of the small Wan")
    ap.add_argument("--dim", type=int, default=1536 if cuda else 128, help="model width (heads = dim / 128)")
    ap.add_argument("--ffn", type=int, default=8960 if cuda else 256, help="feed-forward width")
    ap.add_argument("--out", default=str(ROOT / "out" / "demo"))
    ap.add_argument("--backend", default="auto", choices=["auto", "triton", "pytorch"])
    args = ap.parse_args(argv)

    # ComfyUI's start-up chatter (e.g. audio nodes without torchaudio) only at warning level
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
    out = Path(args.out).resolve()
    models_dir = out / "models" / "diffusion_models"
    output_dir = out / "output"
    t_start = time.perf_counter()

    nodes, execution, folder_paths = boot_comfyui(comfyui_dir(), output_dir, models_dir)
    device = "CUDA (" + torch.cuda.get_device_name(0) + ")" if torch.cuda.is_available() else "CPU"

    # 1. the small Wan, saved with the real key names
    tm = _import_script("make_tiny_models")
    if args.dim % 128:
        sys.exit(f"--dim must be a multiple of 128 (ComfyUI reads Wan's heads as dim / 128); got {args.dim}")
    model_path = tm.save(tm.wan_state_dict("wan_t2v", num_layers=args.layers, dim=args.dim, ffn_dim=args.ffn,
                                           seed=0), models_dir / MODEL_NAME)

    # 2. toy text encoder -> conditioning -> a dataset shard that LoadTrainingDataset reads
    te = _import_script("toy_text_encoder")
    te_path = te.save_weights(out / "models" / "text_encoders" / "radial_demo_toy_text_encoder.safetensors")
    cond = [[te.encode(args.prompt, te_path), {}]]
    shard_dir = output_dir / DATASET
    shard_dir.mkdir(parents=True, exist_ok=True)
    frames_lat = (args.length - 1) // 4 + 1
    placeholder = {"samples": torch.zeros(1, 16, frames_lat, args.height // 8, args.width // 8)}
    torch.save({"latents": [placeholder], "conditioning": [cond]}, shard_dir / "shard_0000.pkl")

    # 3. the bundled workflow, warm-up then timed
    prompt = json.loads(WORKFLOW.read_text())
    prompt[LATENT]["inputs"].update(width=args.width, height=args.height, length=args.length)
    prompt[PATCH]["inputs"]["backend"] = args.backend
    for node in (DENSE_SAMPLER, RADIAL_SAMPLER):
        prompt[node]["inputs"]["steps"] = args.steps
    # warm-up: loads the model and, on CUDA, compiles the Triton kernel for this shape (the
    # warm-up step is sparse), so the timed run measures sampling only. On a CPU nothing is
    # compiled: a small video is enough there.
    warm = copy.deepcopy(prompt)
    if not torch.cuda.is_available():
        warm[LATENT]["inputs"].update(width=128, height=128, length=9)
    warm[PATCH]["inputs"]["dense_steps_first"] = 0
    for node in (DENSE_SAMPLER, RADIAL_SAMPLER):
        warm[node]["inputs"]["steps"] = 1
    w = warm[LATENT]["inputs"]
    print(f"[demo] warm-up on {device}: one step each at {w['width']}x{w['height']}x{w['length']}", flush=True)
    run_prompt(execution, warm, SAVE_OUTPUTS)
    print(f"[demo] timed run: {args.steps} steps dense, then {args.steps} steps radial", flush=True)
    server = run_prompt(execution, prompt, SAVE_OUTPUTS)
    secs = server.node_seconds()
    t_dense, t_radial = secs.get(DENSE_SAMPLER), secs.get(RADIAL_SAMPLER)

    # 4. figures
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # after ComfyUI's folder: both have something called `nodes`
    from radial_core import geometry, mask_density

    patch_inputs = prompt[PATCH]["inputs"]
    geo = geometry.geometry_from_latent((frames_lat, args.height // 8, args.width // 8), (1, 2, 2))
    decay = patch_inputs["decay_factor"] or geometry.default_decay("wan21")
    mask = geo.block_mask(block_size=patch_inputs["block_size"], decay_factor=decay, dist1=patch_inputs["dist1"])
    density = mask_density(mask)
    saved = sorted((output_dir / "radial_demo").glob("*.latent"), key=lambda p: p.stat().st_mtime)
    dense_files = [p for p in saved if p.name.startswith("dense")]
    radial_files = [p for p in saved if p.name.startswith("radial")]
    diff = None
    if dense_files and radial_files:
        from safetensors.torch import load_file

        a = load_file(str(dense_files[-1]))["latent_tensor"].double()
        b = load_file(str(radial_files[-1]))["latent_tensor"].double()
        diff = float((a - b).norm() / a.norm().clamp_min(1e-30))
    backend = "Triton kernel" if torch.cuda.is_available() and args.backend != "pytorch" else "PyTorch block path"
    import comfy.ldm.modules.attention as attn

    dense_fn = attn.optimized_attention.__name__
    lines = [
        "",
        "=== Radial Attention demo (real ComfyUI, real sampler; random-weight model) ===",
        f"device: {device}; ComfyUI at {comfyui_dir()}",
        f"model: small Wan 2.1 T2V ({args.layers} blocks, dim {args.dim}, {args.dim // 128} head(s), random "
        f"weights), {model_path}",
        f"text: toy random-weight byte-level encoder ({te_path.name}): the conditioning changes with "
        f"the prompt but carries no meaning; passed through ComfyUI's LoadTrainingDataset node",
        f"video: {args.width}x{args.height}, {args.length} frames -> latent {frames_lat}x{args.height // 8}x"
        f"{args.width // 8} -> {geo.num_frames} frames x {geo.tokens_per_frame} tokens = {geo.seq_len} tokens",
        f"mask: block {patch_inputs['block_size']}, decay {decay:g}, density {density:.3f} "
        f"({100 * (1 - density):.0f}% of the attention blocks skipped); dense blocks "
        f"'{patch_inputs['dense_blocks']}', dense first steps {patch_inputs['dense_steps_first']}",
        f"sampling, {args.steps} steps, cfg {prompt[DENSE_SAMPLER]['inputs']['cfg']} (cond+uncond):",
        f"  dense  (ComfyUI's {dense_fn}): {t_dense:.2f} s" if t_dense else "  dense: no timing",
        f"  radial ({backend}): {t_radial:.2f} s" if t_radial else "  radial: no timing",
    ]
    if t_dense and t_radial:
        lines.append(f"  difference: {t_dense - t_radial:+.2f} s (radial/dense time {t_radial / t_dense:.2f}x, "
                     f"speedup {t_dense / t_radial:.2f}x)")
    if diff is not None:
        lines.append(f"output difference radial vs dense: relative L2 {diff:.3e} (sparse attention changes the result)")
    lines.append(f"outputs: {dense_files[-1] if dense_files else '?'}")
    lines.append(f"         {radial_files[-1] if radial_files else '?'}")
    lines.append(f"workflow: {WORKFLOW} (API format; ComfyUI's Load button opens it after `make serve` once "
                 f"the model file is in models/diffusion_models and the dataset folder in output/)")
    lines.append(f"total demo time {time.perf_counter() - t_start:.1f} s")
    if not torch.cuda.is_available():
        lines.append("note: on a CPU both paths are slow and the difference is small (the PyTorch block "
                     "path works block group by block group); the speedup the pack is for comes from "
                     "the Triton kernel on a GPU, see docs/benchmarks.md")
    print("\n".join(lines))
    summary = {
        "device": device, "dense_seconds": t_dense, "radial_seconds": t_radial, "density": density,
        "tokens": geo.seq_len, "relative_difference": diff,
        "outputs": [str(p) for p in (dense_files[-1:] + radial_files[-1:])],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
