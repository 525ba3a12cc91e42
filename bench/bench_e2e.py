"""End to end in ComfyUI: one denoising step of a full-size video model, dense vs Radial Attention.

    python bench/bench_e2e.py [--comfyui DIR] [--cases wan81,wan321,hunyuan129] [--layers N]
    python bench/bench_e2e.py --cases hy15_720p,ltx2_481   # ComfyUI 0.33+: HunyuanVideo 1.5, LTX-2

Real ComfyUI model classes at full size (Wan 2.1-14B: dim 5120, 40 blocks, 40 heads;
HunyuanVideo: hidden 3072, 20 double + 40 single blocks, 24 heads; HunyuanVideo 1.5 (8.3B):
hidden 2048, 16 heads, 54 double blocks, patch 1x1x1, text 3584 wide; LTX-2 (LTXAV, 19B): video
4096 wide = 32 heads x 128, audio 2048 = 32 x 64, 48 joint blocks; sizes and where they come
from at ``FULL``) with random bf16 weights on the GPU: ComfyUI's own key-based detection picks
the model config from a meta-device state dict
with the real key names and shapes, ``get_model`` builds the model, and the weights are filled
with random values in place. Each case samples one step through ComfyUI's real sampler
(``comfy.sample.sample``, euler, cfg 1 so one model call per step) on the same noise and
conditioning: unpatched (ComfyUI's default attention) and patched through the pack's
``apply_radial_patch`` (what the "Radial Attention Patch" node calls). Also an all-kept mask
(patched, huge decay) to show the pack's own overhead. Prints per-step time, speedup and peak
GPU memory.

``--layers N`` builds N blocks instead of the full depth (every block of these models costs the
same, so the dense/radial ratio is unchanged and per-step time scales with N; HunyuanVideo: N
double + 2N single blocks, HunyuanVideo 1.5: N double blocks, LTX-2: N joint audio-video blocks);
the table says when a case ran with fewer blocks. ``--smoke`` runs tiny models of the same classes
on the CPU (cases ``smoke``, ``smoke_hy15``, ``smoke_ltx2``; tests/test_bench_e2e.py runs them).
"""

from __future__ import annotations

import argparse
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
    # ComfyUI 0.33+. HunyuanVideo 1.5 T2V 720p, 121 frames: 31 latent frames x 45 x 80 = 111,600
    # video tokens + 256 text tokens (the geometry's text allowance; the conditioning below has 256).
    "hy15_720p": ("hunyuan15", 1280, 720, 121, None),
    # LTX-2 1280x704, 481 frames (19.2 s at 25 fps): 61 latent frames x 22 x 40 = 53,680 video
    # tokens (self-attention over video only), plus 481 audio tokens (25 audio latents per second,
    # ComfyUI's LTX audio VAE defaults) in their own stream; text is cross-attention.
    "ltx2_481": ("ltxav", 1280, 704, 481, None),
    # CPU checks of this script (with --smoke), tiny models of the same classes
    "smoke": ("wan21", 64, 64, 9, None),
    "smoke_hy15": ("hunyuan15", 64, 64, 9, None),
    "smoke_ltx2": ("ltxav", 64, 64, 17, None),
}
SMOKE_CASES = ("smoke", "smoke_hy15", "smoke_ltx2")

# LTX-2's transformer settings that ComfyUI reads from the checkpoint's "config" metadata (the key
# shapes give it the block count, head width and cross-attention width). These are the values of
# ComfyUI 0.33's LTXAVModel defaults (comfy/ldm/lightricks/av_model.py: 32 heads x 128, audio 32 x
# 64, cross-attention 4096 / 2048, Gemma-3 caption features 3840, 128 latent channels); the text
# connectors keep ComfyUI's defaults (the conditioning below skips them, see ``conditioning``).
LTX2_CONFIG = {
    "in_channels": 128, "num_attention_heads": 32, "attention_head_dim": 128, "cross_attention_dim": 4096,
    "caption_channels": 3840, "audio_num_attention_heads": 32, "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048, "audio_in_channels": 128,
}
LTX_AUDIO_LATENTS_PER_S = 16000 / 160 / 4  # ComfyUI's LTX audio VAE: 16 kHz, mel hop 160, latent /4
LTX_FPS = 25  # LTXAV.extra_conds' default frame_rate

FULL = {"wan21": dict(dim=5120, ffn=13824, heads=40, layers=40),
        "hunyuan": dict(dim=3072, heads=24, layers=20),
        # HunyuanVideo 1.5 (8.3B): hidden 2048 (ComfyUI: heads = hidden // 128 = 16), 54 double
        # blocks, text features 3584 wide (Qwen2.5-VL-7B, comfy/text_encoders/llama.py), 65 input
        # channels (32 latent + 32 image + 1 mask, HunyuanVideo15.concat_cond)
        "hunyuan15": dict(dim=2048, layers=54, context=3584, in_channels=65),
        "ltxav": dict(config=LTX2_CONFIG, layers=48)}
SMOKE = {"wan21": dict(dim=256, ffn=512, heads=2, layers=1),
         "hunyuan": dict(dim=256, heads=2, layers=1),
         "hunyuan15": dict(dim=256, layers=2, context=32, in_channels=65),
         "ltxav": dict(config=None, layers=2)}  # None: make_tiny_models.LTX_TINY_CONFIG


def import_comfy(comfy_dir: Path):
    sys.path.insert(0, str(comfy_dir))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    if torch.cuda.is_available():
        comfy.cli_args.args.gpu_only = True  # keep every weight on the GPU: no partial loading
    else:
        comfy.cli_args.args.cpu = True
    import comfy.model_management

    # The pack's package (pack_import), without ComfyUI's server-side node registry: the
    # benchmark needs only the patch function that the "Radial Attention Patch" node calls.
    return pack_import.module("nodes.radial_patcher")


def tiny_models():
    return pack_import.file_module("radial_make_tiny_models", ROOT / "scripts" / "make_tiny_models.py")


def meta_state_dict(family: str, layers: int | None, sizes: dict):
    """(meta-device state dict with the real key names and shapes, file metadata or None)."""
    import comfy.ldm.wan.model as wan
    import comfy.ops

    ops = comfy.ops.disable_weight_init
    tm = tiny_models()
    probe, metadata = None, None
    if family == "hunyuan15":  # the keys ComfyUI's detection reads; it fills in the configuration
        probe = tm.hunyuan15_probe(in_channels=sizes["in_channels"], double=layers or sizes["layers"],
                                   hidden=sizes["dim"], context_dim=sizes["context"])
    elif family == "ltxav":
        probe = tm.ltx_probe(audio=True, num_layers=layers or sizes["layers"], config=sizes["config"])
        metadata = tm.ltx_metadata(True, sizes["config"])
    if probe is not None:
        return {k: torch.empty(shape, dtype=torch.bfloat16, device="meta") for k, shape in probe.items()}, metadata
    with torch.device("meta"):
        if family == "wan21":
            m = wan.WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=sizes["dim"],
                             ffn_dim=sizes["ffn"], freq_dim=256, text_dim=4096, out_dim=16,
                             num_heads=sizes["heads"], num_layers=layers or sizes["layers"],
                             qk_norm=True, cross_attn_norm=True, eps=1e-6,
                             operations=ops, device="meta", dtype=torch.bfloat16)
        else:  # HunyuanVideo: the keys ComfyUI's detection reads; it fills in the configuration
            double = layers or sizes["layers"]
            probe = tm.hunyuan_probe(in_channels=16, double=double, single=2 * double,
                                     hidden=sizes["dim"], context_dim=4096, guidance=True)
            return {k: torch.empty(shape, dtype=torch.bfloat16) for k, shape in probe.items()}, None
    return dict(m.state_dict()), None


@torch.no_grad()
def build_model(family: str, layers: int | None, sizes: dict):
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher

    sd, metadata = meta_state_dict(family, layers, sizes)
    unet_config = comfy.model_detection.detect_unet_config(sd, "", metadata=metadata)
    if unet_config is None:
        raise SystemExit(f"ComfyUI's model detection did not recognise the {family} keys: this ComfyUI "
                         f"is too old for the family (HunyuanVideo 1.5 and LTX-2 need ComfyUI 0.33+)")
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config, sd)
    if model_config is None:
        raise SystemExit(f"ComfyUI has no model config for {family} ({unet_config.get('image_model')}): "
                         f"this ComfyUI is too old for the family (HunyuanVideo 1.5 and LTX-2 need 0.33+)")
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


def conditioning(family: str, dev, model=None, sizes=None):
    g = torch.Generator().manual_seed(1)
    if family == "wan21":
        return [[torch.randn(1, 512, 4096, generator=g), {}]]
    if family == "hunyuan15":  # Qwen2.5-VL text features; HunyuanVideo15.extra_conds drops an all-ones mask
        mask = torch.ones(1, 256, dtype=torch.long)
        return [[torch.randn(1, 256, sizes["context"], generator=g),
                 {"pooled_output": torch.randn(1, 768, generator=g), "attention_mask": mask}]]
    if family == "ltxav":
        # Text already refined by LTX-2's connectors: ComfyUI's preprocess_text_embeds passes a
        # context of 2 x caption_channels (video half, audio half) through unchanged (LTX-2.3's
        # refined width is cross + audio cross; LTX-2 splits at caption_channels), so the
        # connectors, which a real text encoder's output would run through, stay out of the step.
        width = 2 * model.model.diffusion_model.caption_channels
        return [[torch.randn(1, 256, width, generator=g), {"attention_mask": torch.ones(1, 256, dtype=torch.long)}]]
    mask = torch.ones(1, 256, dtype=torch.long)
    return [[torch.randn(1, 256, 4096, generator=g), {"pooled_output": torch.randn(1, 768, generator=g),
                                                       "attention_mask": mask, "guidance": 6.0}]]


def empty_latent(family: str, w: int, h: int, f: int):
    """The empty latent ComfyUI's nodes make for the family (LTX-2: a NestedTensor of video and
    audio latents, as LTXVConcatAVLatent makes it; ComfyUI's sampler packs it and passes
    ``latent_shapes``)."""
    from radial_core.families import family_spec

    spec = family_spec(family)
    st, sh, sw = spec.vae_stride
    video = torch.zeros(1, spec.latent_channels, (f - 1) // st + 1, h // sh, w // sw)
    if family != "ltxav":
        return video
    import comfy.nested_tensor

    audio = torch.zeros(1, 8, round(f / LTX_FPS * LTX_AUDIO_LATENTS_PER_S), 16)  # 8 channels x 16 bins
    return comfy.nested_tensor.NestedTensor([video, audio])


def shorter(latent, frames: int = 2):
    """The first ``frames`` latent frames (audio: the same seconds), for the warm-up step."""
    if not getattr(latent, "is_nested", False):
        return latent[:, :, :frames]
    import comfy.nested_tensor

    video, audio = latent.unbind()
    return comfy.nested_tensor.NestedTensor([video[:, :, :frames], audio[:, :, :8 * (frames - 1) + 1]])


def flat(x) -> torch.Tensor:
    if getattr(x, "is_nested", False):
        return torch.cat([t.float().flatten() for t in x.unbind()])
    return x.float().flatten()


def one_step(model, family, latent, cond, repeats=2, long_s=20.0):
    """Best of ``repeats`` one-step samplings; a single run when it takes over ``long_s``."""
    import comfy.sample

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    noise = comfy.sample.prepare_noise(latent, 0)
    best = float("inf")
    out, runs = None, 0
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
        runs += 1
        if best > long_s:
            break
    return best, (torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0), out, runs


def radial_row(radial_patcher, model, case, geom, latent, cond, decay, precision, dense, calls, records):
    """The patched step at ``precision`` timed against the dense one: a table row (and a JSON record)."""
    name, family, (w, h, f), layers = case
    density, t_dense, mem_dense, out_dense = dense
    patched = radial_patcher.apply_radial_patch(model, decay_factor=decay, precision=precision)
    one_step(patched, family, shorter(latent), cond, repeats=1)  # compile kernels, build a mask
    calls["n"] = 0
    t_sparse, mem_sparse, out_sparse, runs = one_step(patched, family, latent, cond, long_s=1e9)
    sparse_calls, calls["n"] = calls["n"], 0
    a, b = flat(out_dense), flat(out_sparse)
    rel = float((b - a).norm() / a.norm())
    depth = f"{layers} blocks" if layers else "full depth"
    n_blocks = len(getattr(model.model.diffusion_model, "blocks", None)
                   or getattr(model.model.diffusion_model, "double_blocks", None)
                   or model.model.diffusion_model.transformer_blocks)
    tokens = str(geom.seq_len)
    audio_tokens = latent.unbind()[1].shape[2] if getattr(latent, "is_nested", False) else 0
    if audio_tokens:
        tokens += f" +{audio_tokens} audio"
    records.append(dict(case=name, precision=precision, comfy_class=type(model.model.model_config).__name__,
                        model=type(model.model).__name__, video=f"{w}x{h}x{f}", tokens=geom.seq_len,
                        video_tokens=geom.video_tokens, audio_tokens=audio_tokens, blocks=n_blocks, density=density,
                        dense_s=t_dense, radial_s=t_sparse, sparse_calls_per_step=sparse_calls / runs, rel_diff=rel,
                        finite=bool(torch.isfinite(a).all() and torch.isfinite(b).all()),
                        peak_gib_dense=mem_dense, peak_gib_radial=mem_sparse))
    return (name + ("" if precision == "exact" else f" ({precision})"), f"{w}x{h}x{f}", tokens, depth,
            f"{density:.3f}", f"{t_dense:.2f}", f"{t_sparse:.2f}", f"{t_dense / t_sparse:.2f}x", f"{mem_dense:.1f}",
            f"{mem_sparse:.1f}", f"{rel:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_DIR", str(ROOT / ".comfyui")))
    ap.add_argument("--cases", default=None, help="comma-separated (default: allkept,wan81,wan321,hunyuan129; "
                    f"with --smoke: {','.join(SMOKE_CASES)})")
    ap.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks the script")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--layers", type=int, default=None, help="blocks to build (default: full depth)")
    ap.add_argument("--layers-long", type=int, default=None, help="blocks for the 321-frame case")
    ap.add_argument("--precision", default="exact",
                    help="the patch's precision input, or both comma-separated (exact,int8-qk: each radial "
                         "run against the same dense step; int8-qk: int8 Q.K^T on sm 8.0+, fp8 its old "
                         "name; default exact)")
    args = ap.parse_args()
    precisions = args.precision.split(",")
    if any(p not in ("exact", "int8-qk", "fp8") for p in precisions):
        raise SystemExit(f"--precision takes exact, int8-qk (or its old name fp8) or both comma-separated; "
                         f"got {args.precision!r}")
    if args.smoke:
        args.cases = args.cases or ",".join(SMOKE_CASES)
        wrong = [c for c in args.cases.split(",") if c not in SMOKE_CASES]
        if wrong:
            raise SystemExit(f"--smoke runs only the tiny cases {', '.join(SMOKE_CASES)}; got {', '.join(wrong)}")
    else:
        args.cases = args.cases or "allkept,wan81,wan321,hunyuan129"
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("bench_e2e needs a CUDA GPU (or --smoke to check the script on the CPU)")
    radial_patcher = import_comfy(Path(args.comfyui))
    from radial_core.families import default_decay
    from radial_core.geometry import geometry_from_pixels

    import triton

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU"
    print(f"{card}, torch {torch.__version__}, triton {triton.__version__}, radial precision {args.precision}")
    # count the sparse kernel calls the patched model makes (the attention override's entry point)
    override = pack_import.module("nodes.attention_override")
    sparse_op, calls = override.block_sparse_attention, {"n": 0}

    def counted(*a, **k):  # counted when the op returned (a kernel error falls back to dense)
        out = sparse_op(*a, **k)
        calls["n"] += 1
        return out

    override.block_sparse_attention = counted
    rows, records = [], []
    models = {}
    for name in args.cases.split(","):
        family, w, h, f, decay = CASES[name]
        sizes = (SMOKE if args.smoke else FULL)[family]
        layers = args.layers_long if (name == "wan321" and args.layers_long) else args.layers
        key = (family, layers)
        if key not in models:
            model = None  # the previous family's model goes before the next one is built
            models.clear()
            torch.cuda.empty_cache()
            models[key] = build_model(family, layers, sizes)
        model = models[key]
        geom = geometry_from_pixels(family, w, h, f)
        latent = empty_latent(family, w, h, f)
        cond = conditioning(family, dev, models[key], sizes)
        decay = decay or default_decay(family)
        mask = geom.block_mask(block_size=128, decay_factor=decay)
        density = float(mask.float().mean())
        t_dense, mem_dense, out_dense, _ = one_step(model, family, latent, cond)
        for precision in precisions:
            rows.append(radial_row(radial_patcher, model, (name, family, (w, h, f), layers), geom, latent, cond,
                                   decay, precision, (density, t_dense, mem_dense, out_dense), calls, records))
            print("  ", rows[-1], flush=True)
    header = ("case", "video", "tokens", "model", "density", "dense s/step", "radial s/step", "speedup",
              "peak GiB dense", "peak GiB radial", "rel. diff of latents")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(x).ljust(wd) for x, wd in zip(r, widths)))
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({"device": card, "torch": torch.__version__, "rows": records},
                                              indent=1))


if __name__ == "__main__":
    main()
