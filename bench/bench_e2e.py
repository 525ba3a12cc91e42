"""End to end in ComfyUI: one denoising step of a full-size video model, dense vs Radial Attention.

    python bench/bench_e2e.py [--comfyui DIR] [--cases wan81,wan321,hunyuan129] [--layers N]

Real ComfyUI model classes at full size (Wan 2.1-14B: dim 5120, 40 blocks, 40 heads;
HunyuanVideo: hidden 3072, 20 double + 40 single blocks, 24 heads) with random bf16 weights on
the GPU: ComfyUI's own key-based detection picks the model config from a meta-device state dict
with the real key names and shapes, ``get_model`` builds the model, and the weights are filled
with random values in place. Each case samples one step through ComfyUI's real sampler
(``comfy.sample.sample``, euler, cfg 1 so one model call per step) on the same noise and
conditioning: unpatched (ComfyUI's default attention) and patched through the pack's
``apply_radial_patch`` (what the "Radial Attention Patch" node calls). Also an all-kept mask
(patched, huge decay) to show the pack's own overhead. Prints per-step time, speedup and peak
GPU memory.

``--layers N`` builds N blocks instead of the full depth (every block of these models costs the
same, so the dense/radial ratio is unchanged and per-step time scales with N); the table says
when a case ran with fewer blocks.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import pack_import  # noqa: E402  the pack as ComfyUI imports it; its root is never on sys.path

pack_import.install()

CASES = {
    # name: (family, width, height, pixel frames, decay factor; None = the family default)
    "wan81": ("wan21", 1280, 720, 81, None),
    "wan321": ("wan21", 1280, 720, 321, None),
    "wan480": ("wan21", 832, 480, 81, None),
    "hunyuan129": ("hunyuan", 1280, 720, 129, None),
    # decay 10 at 5 latent frames keeps every block: what the pack itself costs
    "allkept": ("wan21", 832, 480, 17, 10.0),
    "smoke": ("wan21", 64, 64, 9, None),  # CPU check of this script (with --smoke)
}

FULL = {"wan21": dict(dim=5120, ffn=13824, heads=40, layers=40),
        "hunyuan": dict(dim=3072, heads=24, layers=20)}
SMOKE = {"wan21": dict(dim=256, ffn=512, heads=2, layers=1),
         "hunyuan": dict(dim=256, heads=2, layers=1)}


def import_comfy(comfy_dir: Path):
    sys.path.insert(0, str(comfy_dir))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    if torch.cuda.is_available():
        comfy.cli_args.args.gpu_only = True  # keep every weight on the GPU: no partial loading
    else:
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401

    # The pack's package (pack_import), without ComfyUI's server-side node registry: the
    # benchmark needs only the patch function that the "Radial Attention Patch" node calls.
    return pack_import.module("nodes.radial_patcher")


def tiny_models():
    spec = importlib.util.spec_from_file_location("radial_make_tiny_models", ROOT / "scripts" / "make_tiny_models.py")
    mod = sys.modules.get(spec.name)
    if mod is None:
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return mod


def meta_state_dict(family: str, layers: int | None, sizes: dict):
    import comfy.ldm.wan.model as wan
    import comfy.ops

    ops = comfy.ops.disable_weight_init
    with torch.device("meta"):
        if family == "wan21":
            m = wan.WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=sizes["dim"],
                             ffn_dim=sizes["ffn"], freq_dim=256, text_dim=4096, out_dim=16,
                             num_heads=sizes["heads"], num_layers=layers or sizes["layers"],
                             qk_norm=True, cross_attn_norm=True, eps=1e-6,
                             operations=ops, device="meta", dtype=torch.bfloat16)
        else:  # HunyuanVideo: the keys ComfyUI's detection reads; it fills in the configuration
            double = layers or sizes["layers"]
            probe = tiny_models().hunyuan_probe(in_channels=16, double=double, single=2 * double,
                                                hidden=sizes["dim"], context_dim=4096, guidance=True)
            return {k: torch.empty(shape, dtype=torch.bfloat16) for k, shape in probe.items()}
    return dict(m.state_dict())


@torch.no_grad()
def build_model(family: str, layers: int | None, sizes: dict):
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher

    sd = meta_state_dict(family, layers, sizes)
    unet_config = comfy.model_detection.detect_unet_config(sd, "")
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config, sd)
    dev = mm.get_torch_device()
    dtype = torch.bfloat16
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model(sd, "", device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    for name, p in model.diffusion_model.named_parameters():
        p.data = torch.empty(p.shape, dtype=p.dtype, device=dev)  # keeps float32 layers float32
        if p.ndim >= 2:
            p.data.normal_(0.0, 1.0 / math.sqrt(max(1, p[0].numel())), generator=g)
        elif "norm" in name or name.endswith("scale"):
            p.data.fill_(1.0)
        else:
            p.data.normal_(0.0, 0.02, generator=g)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=dev, offload_device=dev)


def conditioning(family: str, dev):
    g = torch.Generator().manual_seed(1)
    if family == "wan21":
        return [[torch.randn(1, 512, 4096, generator=g), {}]]
    mask = torch.ones(1, 256, dtype=torch.long)
    return [[torch.randn(1, 256, 4096, generator=g), {"pooled_output": torch.randn(1, 768, generator=g),
                                                       "attention_mask": mask, "guidance": 6.0}]]


def one_step(model, family, latent, cond, repeats=2, long_s=20.0):
    """Best of ``repeats`` one-step samplings; a single run when it takes over ``long_s``."""
    import comfy.sample

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    noise = comfy.sample.prepare_noise(latent, 0)
    best = float("inf")
    out = None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = comfy.sample.sample(model, noise, 1, 1.0, "euler", "simple", cond, cond, latent,
                                      denoise=1.0, seed=0, disable_pbar=True)
        sync()
        best = min(best, time.perf_counter() - t0)
        if best > long_s:
            break
    return best, (torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_DIR", str(ROOT / ".comfyui")))
    ap.add_argument("--cases", default="allkept,wan81,wan321,hunyuan129")
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the script")
    ap.add_argument("--layers", type=int, default=None, help="blocks to build (default: full depth)")
    ap.add_argument("--layers-long", type=int, default=None, help="blocks for the 321-frame case")
    args = ap.parse_args()
    if args.smoke:
        args.cases = "smoke"
    elif not torch.cuda.is_available():
        raise SystemExit("bench_e2e needs a CUDA GPU (or --smoke to check the script on the CPU)")
    radial_patcher = import_comfy(Path(args.comfyui))
    from radial_core.geometry import default_decay, geometry_from_pixels

    import triton

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU"
    print(f"{card}, torch {torch.__version__}, triton {triton.__version__}")
    rows = []
    models = {}
    for name in args.cases.split(","):
        family, w, h, f, decay = CASES[name]
        sizes = (SMOKE if args.smoke else FULL)[family]
        layers = args.layers_long if (name == "wan321" and args.layers_long) else args.layers
        key = (family, layers)
        if key not in models:
            models.clear()
            torch.cuda.empty_cache()
            models[key] = build_model(family, layers, sizes)
        model = models[key]
        geom = geometry_from_pixels(family, w, h, f)
        lat_t = (f - 1) // 4 + 1
        latent = torch.zeros(1, 16, lat_t, h // 8, w // 8)
        cond = conditioning(family, dev)
        decay = decay or default_decay(family)
        mask = geom.block_mask(block_size=128, decay_factor=decay)
        density = float(mask.float().mean())
        t_dense, mem_dense, out_dense = one_step(model, family, latent, cond)
        patched = radial_patcher.apply_radial_patch(model, decay_factor=decay)
        one_step(patched, family, latent[:, :, :2], cond, repeats=1)  # compile kernels, build a mask
        t_sparse, mem_sparse, out_sparse = one_step(patched, family, latent, cond, long_s=1e9)
        rel = float((out_sparse.float() - out_dense.float()).norm() / out_dense.float().norm())
        depth = f"{layers} blocks" if layers else "full depth"
        rows.append((name, f"{w}x{h}x{f}", geom.seq_len, depth, f"{density:.3f}", f"{t_dense:.2f}",
                     f"{t_sparse:.2f}", f"{t_dense / t_sparse:.2f}x", f"{mem_dense:.1f}", f"{mem_sparse:.1f}",
                     f"{rel:.3f}"))
        print("  ", rows[-1], flush=True)
        del patched
    header = ("case", "video", "tokens", "model", "density", "dense s/step", "radial s/step", "speedup",
              "peak GiB dense", "peak GiB radial", "rel. diff of latents")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(x).ljust(wd) for x, wd in zip(r, widths)))


if __name__ == "__main__":
    main()
