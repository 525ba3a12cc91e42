#!/usr/bin/env python3
"""``make demo``: the bundled Wan graph through real ComfyUI, dense vs radial attention, to video.

What it does (no downloads; every model is made here with random weights, and said so):
1. builds a small Wan 2.1 T2V (ComfyUI's real WanModel class), a T5-base text encoder and a small
   Wan 2.1 VAE as safetensors files with the real key names (scripts/make_tiny_models.py,
   scripts/make_demo_models.py); ComfyUI's own UNETLoader, CLIPLoader and VAELoader load them;
2. runs workflows/api/demo_wan_tiny.json headlessly through ComfyUI's prompt executor:
   CLIPLoader (type wan) -> CLIPTextEncode (prompt and negative prompt) -> KSampler with
   ComfyUI's default attention and KSampler through the Radial
   Attention Patch (Triton kernel on CUDA, the PyTorch block path elsewhere) -> VAEDecode ->
   CreateVideo -> SaveVideo, and the Sparsity Preview of the patched model -> SaveImage; a
   one-step warm-up runs first;
3. writes one picture: the mask, both sampling times and a frame of each video side by side;
4. prints the mask density, both times, the speedup and the paths.

The weights are random: the videos are coloured noise, not a fox. The point is the attention
path, its timing and that the whole ComfyUI pipeline runs from prompt to video file.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# API format ("Export (API)"): kept out of workflows/ itself, whose files the template browser lists
WORKFLOW = ROOT / "workflows" / "api" / "demo_wan_tiny.json"
UNET, VAE = "radial_demo_wan_t2v_tiny.safetensors", "radial_demo_wan_vae_random.safetensors"
TEXT_ENCODER = "radial_demo_t5_base_random.safetensors"
PATCH, POSITIVE, LATENT, DENSE, RADIAL, DEC_DENSE, DEC_RADIAL, PREVIEW = "2", "4", "6", "7", "8", "10", "11", "16"
OUTPUTS = ["14", "15", "17"]


def comfyui_dir() -> Path:
    env = os.environ.get("COMFYUI_DIR")
    if env:
        return Path(env).resolve()
    recorded = Path(sys.prefix) / "comfyui-path"  # written by scripts/setup_env.sh
    if recorded.exists():
        return Path(recorded.read_text().strip())
    return ROOT / ".comfyui"


def _import_script(name: str):
    key = f"radial_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    spec.loader.exec_module(mod)
    return mod


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
    for kind, sub in (("diffusion_models", "diffusion_models"), ("text_encoders", "text_encoders"), ("vae", "vae")):
        folder_paths.add_model_folder_path(kind, str(models_dir / sub), is_default=True)
    import asyncio

    import comfy.utils
    import utils.json_util  # noqa: F401  ComfyUI's utils package, before nodes.py shadows it
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
    prompt = json.loads(WORKFLOW.read_text())
    missing = sorted({n["class_type"] for n in prompt.values()} - set(nodes.NODE_CLASS_MAPPINGS))
    if missing:
        sys.exit(f"ComfyUI has no node(s) {missing}: this demo needs ComfyUI 0.3.75 or newer.")
    return prompt


def frame_of(images: torch.Tensor):
    """The middle frame of an IMAGE batch ``[F, H, W, 3]`` as a PIL image."""
    from PIL import Image

    f = images[images.shape[0] // 2].clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(f)


def picture(path: Path, mask, dense_frame, radial_frame, lines: list[str]) -> Path:
    """One PNG: the mask on the left, a frame of each video on the right, the figures on top."""
    from PIL import Image, ImageDraw

    pad, head = 16, 24 * len(lines) + 2 * 16
    side = 360
    mask = mask.copy()
    mask.thumbnail((side * 2, side * 2))
    fw = side
    fh = max(1, round(dense_frame.height * fw / dense_frame.width))
    frames = [im.resize((fw, fh)) for im in (dense_frame, radial_frame)]
    width = pad + mask.width + pad + 2 * fw + pad + pad
    height = head + max(mask.height, fh + 28) + pad
    img = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((pad, pad + 24 * i), line, fill=(235, 235, 235) if i else (255, 200, 60))
    img.paste(mask, (pad, head))
    x = pad + mask.width + pad
    for label, fr in zip(("dense (ComfyUI's attention)", "radial attention"), frames):
        draw.text((x, head), label, fill=(200, 200, 200))
        img.paste(fr, (x, head + 22))
        x += fw + pad
    img.save(path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompt", default="a red fox running through fresh snow, cinematic")
    cuda = torch.cuda.is_available()
    # CPU: small enough for a 2-core machine; CUDA: a Wan-1.3B-wide model at 480p x 81 frames
    # (on a CPU the VAE decode of the video, a 3D convolution net, costs more than the sampling)
    ap.add_argument("--width", type=int, default=832 if cuda else 384)
    ap.add_argument("--height", type=int, default=480 if cuda else 224)
    ap.add_argument("--length", type=int, default=81 if cuda else 25, help="pixel frames (4k+1)")
    ap.add_argument("--steps", type=int, default=8 if cuda else 3)
    ap.add_argument("--layers", type=int, default=4 if cuda else 3, help="transformer blocks of the small Wan")
    ap.add_argument("--dim", type=int, default=1536 if cuda else 128, help="model width (heads = dim / 128)")
    ap.add_argument("--ffn", type=int, default=8960 if cuda else 256, help="feed-forward width")
    ap.add_argument(
        "--vae-dim", type=int, default=16 if cuda else 8, help="base width of the small VAE (the real one: 96)"
    )
    ap.add_argument("--out", default=str(ROOT / "out" / "demo"))
    ap.add_argument("--backend", default="auto", choices=["auto", "triton", "pytorch"])
    args = ap.parse_args(argv)
    if args.dim % 128:
        sys.exit(f"--dim must be a multiple of 128 (ComfyUI reads Wan's heads as dim / 128); got {args.dim}")

    # ComfyUI's start-up chatter only at warning level
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
    out = Path(args.out).resolve()
    models_dir = out / "models"
    output_dir = out / "output"
    t_start = time.perf_counter()
    prompt = boot_comfyui(comfyui_dir(), output_dir, models_dir)
    headless = _import_script("comfy_headless")
    device = "CUDA (" + torch.cuda.get_device_name(0) + ")" if cuda else "CPU"

    # 1. the models, saved with the real key names, loaded by ComfyUI's own loader nodes
    tm = _import_script("make_tiny_models")
    dm = _import_script("make_demo_models")
    if not dm.wan_reads_text_width():
        sys.exit("This ComfyUI's Wan detection ignores a model file's config metadata, which the demo uses "
                 "to give its small Wan a 768-wide text input (T5-base): run the demo on ComfyUI 0.33 "
                 "(`make demo` sets it up).")
    tm.save(tm.wan_state_dict("wan_t2v", num_layers=args.layers, dim=args.dim, ffn_dim=args.ffn, seed=0,
                              text_dim=dm.T5_BASE_WIDTH),
            models_dir / "diffusion_models" / UNET, metadata=dm.wan_text_metadata())
    dm.save(dm.wan_vae_state_dict(dim=args.vae_dim, seed=2), models_dir / "vae" / VAE)
    # text: Wan's encoder (UMT5-XXL, 5.7 B parameters) cannot be made small; a random-weight
    # T5-base (the smallest T5 ComfyUI's CLIPLoader builds) goes through CLIPLoader and
    # CLIPTextEncode as in a real Wan workflow
    dm.save(dm.t5_base_state_dict(seed=1), models_dir / "text_encoders" / TEXT_ENCODER)
    prompt[POSITIVE]["inputs"]["text"] = args.prompt

    # 2. the bundled graph, warm-up then timed
    for node in (LATENT, PREVIEW):
        prompt[node]["inputs"].update(width=args.width, height=args.height)
    prompt[LATENT]["inputs"]["length"] = args.length
    prompt[PREVIEW]["inputs"]["frames"] = args.length
    prompt[PATCH]["inputs"]["backend"] = args.backend
    for node in (DENSE, RADIAL):
        prompt[node]["inputs"]["steps"] = args.steps
    # warm-up: loads the models and, on CUDA, compiles the Triton kernel for this shape (the
    # warm-up step is sparse), so the timed run measures sampling only. On a CPU nothing is
    # compiled: a small video is enough there.
    warm = copy.deepcopy(prompt)
    if not cuda:
        warm[LATENT]["inputs"].update(width=128, height=128, length=9)
    warm[PATCH]["inputs"]["dense_steps_first"] = 0
    for node in (DENSE, RADIAL):
        warm[node]["inputs"]["steps"] = 1
    for node in ("14", "15", "17"):
        warm[node]["inputs"]["filename_prefix"] = "radial_demo/warmup/" + node
    w = warm[LATENT]["inputs"]
    print(f"[demo] warm-up on {device}: one step each at {w['width']}x{w['height']}x{w['length']}", flush=True)
    executor = headless.new_executor(classic_cache=True)
    headless.execute(warm, OUTPUTS, executor=executor, extra_data={"client_id": "radial-demo"})
    print(f"[demo] timed run: {args.steps} steps dense, then {args.steps} steps radial, decode, save", flush=True)
    executor, events = headless.execute(prompt, OUTPUTS, executor=executor, extra_data={"client_id": "radial-demo"})
    secs = events.node_seconds()
    print("[demo] seconds per node:", {k: round(v, 2) for k, v in secs.items()}, flush=True)
    t_dense, t_radial = secs.get(DENSE), secs.get(RADIAL)

    # 3. figures, files and the picture
    preview = headless.cached_output(executor, PREVIEW).outputs  # (mask image [1, H, W, 3], summary)
    mask_img, summary_text = frame_of(preview[0][0]), preview[1][0]
    dense_frames = headless.cached_output(executor, DEC_DENSE).outputs[0][0]
    radial_frames = headless.cached_output(executor, DEC_RADIAL).outputs[0][0]
    import re

    density = float(re.search(r"\(density ([\d.]+)%\)", summary_text).group(1)) / 100
    tokens = int(re.search(r"= ([\d,]+) tokens", summary_text).group(1).replace(",", ""))
    videos = sorted((output_dir / "radial_demo").glob("*.mp4"), key=lambda p: p.stat().st_mtime)
    dense_video = next((p for p in reversed(videos) if p.name.startswith("dense")), None)
    radial_video = next((p for p in reversed(videos) if p.name.startswith("radial")), None)
    masks = sorted((output_dir / "radial_demo").glob("mask*.png"), key=lambda p: p.stat().st_mtime)
    diff = float(
        (dense_frames.double() - radial_frames.double()).norm() / dense_frames.double().norm().clamp_min(1e-30)
    )
    backend = "Triton kernel" if cuda and args.backend != "pytorch" else "PyTorch block path"
    import comfy.ldm.modules.attention as attn

    dense_fn = attn.optimized_attention.__name__
    speed = f"speedup {t_dense / t_radial:.2f}x" if t_dense and t_radial else "no timing"
    lat = dense_frames.shape
    head = [
        f"Radial Attention demo: {args.width}x{args.height}, {args.length} frames, {args.steps} steps on {device} "
        f"(random weights: the videos are noise)",
        f"mask density {density:.3f}: {100 * (1 - density):.0f}% of the attention blocks skipped",
        f"sampling: dense {t_dense:.2f} s, radial {t_radial:.2f} s ({speed})"
        if t_dense and t_radial
        else "sampling: no timing",
        f"decoded {lat[0]} frames of {lat[2]}x{lat[1]}; frame {lat[0] // 2} of each video below",
    ]
    pic = picture(out / "radial_demo_summary.png", mask_img, frame_of(dense_frames), frame_of(radial_frames), head)

    lines = [
        "",
        "=== Radial Attention demo (real ComfyUI, real sampler, VAE decode and video save; random weights) ===",
        f"device: {device}; ComfyUI at {comfyui_dir()}",
        f"models (random weights, made here): small Wan 2.1 T2V ({args.layers} blocks, dim {args.dim}, "
        f"{args.dim // 128} head(s), text width 768), Wan 2.1 VAE at width {args.vae_dim}, T5-base text encoder; "
        f"in {models_dir}",
        f"prompt: {args.prompt!r}, encoded by CLIPLoader (type wan) + CLIPTextEncode with a random-weight "
        f"T5-base (ComfyUI's T5 class; it understands nothing: Wan's real UMT5-XXL is 5.7 B parameters)",
        f"mask: {summary_text.splitlines()[1] if len(summary_text.splitlines()) > 1 else ''}",
        f"mask density {density:.3f} ({100 * (1 - density):.0f}% of the attention blocks skipped)",
        f"sampling, {args.steps} steps, cfg {prompt[DENSE]['inputs']['cfg']} (cond+uncond):",
        f"  dense  (ComfyUI's {dense_fn}): {t_dense:.2f} s" if t_dense else "  dense: no timing",
        f"  radial ({backend}): {t_radial:.2f} s" if t_radial else "  radial: no timing",
    ]
    if t_dense and t_radial:
        lines.append(f"  {speed} (radial/dense time {t_radial / t_dense:.2f}x)")
    lines += [
        f"decoded frames differ by relative L2 {diff:.3e} (sparse attention changes the result)",
        f"videos:  {dense_video}",
        f"         {radial_video}",
        f"mask:    {masks[-1] if masks else '?'}",
        f"picture: {pic}",
        f"workflow: {WORKFLOW} (API format)",
        f"total demo time {time.perf_counter() - t_start:.1f} s",
    ]
    if not cuda:
        lines.append("note: on a CPU both paths are slow and the difference is small (the PyTorch block "
                     "path works block group by block group); the speedup the pack is for comes from "
                     "the Triton kernel on a GPU, see docs/benchmarks.md")
    print("\n".join(lines), flush=True)
    summary = {
        "device": device, "dense_seconds": t_dense, "radial_seconds": t_radial, "density": density, "tokens": tokens,
        "relative_difference": diff, "videos": [str(p) for p in (dense_video, radial_video) if p],
        "picture": str(pic), "mask": str(masks[-1]) if masks else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if not (dense_video and radial_video):
        print("error: a video file is missing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
