"""One LoRA training step of a full-size Wan 2.1-14B in ComfyUI, dense vs Radial Attention.

    python bench/bench_train_step.py [--comfyui DIR] [--size 1280x720x81] [--rank 64] [--steps 3]
                                     [--layers N] [--dense-blocks 2] [--json PATH]
    python bench/bench_train_step.py --tiny        # CPU dry run of this script (tiny model)

The model is built as ``bench/bench_e2e.py`` builds it: ComfyUI's own key-based detection on a
meta-device state dict with the real Wan 2.1-14B key names and shapes (dim 5120, 40 blocks, 40
heads), ``get_model``, random bf16 weights filled in place on the GPU. The step is ComfyUI's own
training loop, the one its "Train LoRA" node runs (``comfy_extras/nodes_train.py``: ``TrainGuider``
+ ``TrainSampler``: x0-prediction MSE at a random noise level, ``backward``, AdamW step), with:

- LoRA adapters (ComfyUI's ``LoRA`` weight adapter, rank ``--rank``, alpha 1) on the attention
  projections only (``self_attn`` and ``cross_attn`` q, k, v, o of every block), added as weight
  wrappers like Train LoRA adds them;
- gradient checkpointing per transformer block (Train LoRA's ``patch``, ``checkpoint_depth`` 2 on
  ComfyUI 0.33; each top-level module on 0.3.x);
- batch 1, bf16 compute, one random text conditioning of 512 tokens.

"dense" is the model as ComfyUI runs it (its default attention); "radial" the same model through
``apply_radial_patch`` (what the Radial Attention Patch node calls) at the family's decay, block
128 and ``--dense-blocks`` (default 2, the length-extension setting of the bundled training
workflow). Each mode runs ``--steps`` training steps; the first one (kernel compilation, mask and
CSR build, allocator warm-up) is not timed. Prints per-step time (median), speedup, peak GPU memory
and the losses.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import pack_import  # noqa: E402  the pack as ComfyUI imports it; its root is never on sys.path

pack_import.install()

ATTENTION_PROJECTIONS = re.compile(r"\.blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|o)$")


def bench_e2e():
    """bench/bench_e2e.py: the model builder and ComfyUI import shared with it."""
    return pack_import.file_module("radial_bench_e2e", ROOT / "bench" / "bench_e2e.py")


def _kwargs_for(fn, **candidates):
    """The candidates ``fn`` accepts (ComfyUI versions differ in Train LoRA's helpers)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in candidates.items() if k in params}


def train_steps(model, latent, cond, *, rank: int, steps: int, lr: float, dtype) -> dict:
    """``steps`` LoRA training steps on ``model`` (a ModelPatcher) through ComfyUI's training loop."""
    import comfy.model_management as mm
    import comfy_extras.nodes_train as nt
    from comfy_extras.nodes_custom_sampler import Guider_Basic
    from comfy.weight_adapter import adapter_maps

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.inference_mode(False):
        mp = model.clone()
        mp.set_model_compute_dtype(dtype)
        mp.model.requires_grad_(False).train()
        params, adapters = [], 0
        for name, module in mp.model.named_modules():
            if hasattr(module, "weight_function") and getattr(module, "weight", None) is not None \
                    and ATTENTION_PROJECTIONS.search(name):
                adapter = adapter_maps["LoRA"].create_train(module.weight, rank=rank, alpha=1.0).to(dtype)
                adapter.train().requires_grad_(True)
                mp.add_weight_wrapper(f"{name}.weight", adapter)
                params += [p for p in adapter.parameters() if p.requires_grad]
                adapters += 1
        if not adapters:
            raise SystemExit("no attention projection found for the LoRA (model key names changed?)")
        optimizer = torch.optim.AdamW(params, lr=lr)
        dm = mp.model.diffusion_model
        if hasattr(nt, "find_modules_at_depth"):  # ComfyUI 0.33: per block = depth 2
            checkpointed = nt.find_modules_at_depth(dm, depth=2)
        else:  # 0.3.x: every top-level module
            checkpointed = nt.find_all_highest_child_module_with_forward(dm)
        for m in checkpointed:
            nt.patch(m)
        times: list[float] = []
        losses: list[float] = []
        stamp = [0.0]

        def on_loss(loss: float) -> None:  # after forward + backward of each step (loss.item() synced)
            sync()
            now = time.perf_counter()
            times.append(now - stamp[0])
            stamp[0] = now
            losses.append(loss)

        try:
            mm.load_models_gpu([mp], memory_required=1e20, force_full_load=True)
            sampler = nt.TrainSampler(torch.nn.MSELoss(), optimizer, **_kwargs_for(
                nt.TrainSampler.__init__, loss_callback=on_loss, batch_size=1, grad_acc=1, total_steps=steps,
                seed=0, training_dtype=dtype))
            # 0.33: TrainGuider; 0.3.x: the plain guider, as its Train LoRA uses
            guider = nt.TrainGuider(mp) if hasattr(nt, "TrainGuider") else Guider_Basic(mp)
            guider.set_conds(cond)
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            sync()
            stamp[0] = time.perf_counter()
            noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
            has_flag = hasattr(mm, "in_training")  # 0.33: Train LoRA sets it around its loop
            if has_flag:
                mm.in_training = True
            guider.sample(noise, latent, sampler, torch.tensor([0]), seed=0)
        finally:
            if hasattr(mm, "in_training"):
                mm.in_training = False
            for m in checkpointed:
                nt.unpatch(m)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    # times[i]: step i's forward + backward plus step i-1's optimizer update (step 0: warm-up)
    timed = times[1:] if len(times) > 1 else times
    return {"step_s": statistics.median(timed), "first_s": times[0], "peak_gib": peak, "losses": losses,
            "lora_modules": adapters, "lora_params": sum(p.numel() for p in params)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_DIR", str(ROOT / ".comfyui")))
    ap.add_argument("--size", default="1280x720x81", help="WIDTHxHEIGHTxFRAMES in pixels (default 1280x720x81)")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="training steps per mode; the first is not timed")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--layers", type=int, default=None, help="blocks to build (default: all 40)")
    ap.add_argument("--dense-blocks", default="2", help="Radial Attention Patch dense_blocks (default 2)")
    ap.add_argument("--modes", default="dense,radial")
    ap.add_argument("--tiny", action="store_true", help="tiny Wan on the CPU at 64x64x9: checks the script")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.tiny:
        args.size, args.rank, args.steps = "64x64x9", min(args.rank, 4), max(2, min(args.steps, 2))
        args.layers = args.layers or 3  # the smoke Wan has 1 block: 3, so that 2 dense blocks leave one radial
    elif not torch.cuda.is_available():
        raise SystemExit("bench_train_step needs a CUDA GPU (or --tiny to check the script on the CPU)")
    e2e = bench_e2e()
    radial_patcher = e2e.import_comfy(Path(args.comfyui))
    from radial_core.families import default_decay
    from radial_core.geometry import geometry_from_pixels

    w, h, f = (int(x) for x in args.size.lower().split("x"))
    sizes = (e2e.SMOKE if args.tiny else e2e.FULL)["wan21"]
    dtype = torch.bfloat16
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = "none"
    import comfyui_version

    print(f"{card}, torch {torch.__version__}, triton {tv}, ComfyUI {comfyui_version.__version__}, "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    model = e2e.build_model("wan21", args.layers, sizes)
    if torch.cuda.is_available():  # the dense mode needs it too (the patch does it for its own training calls)
        pack_import.module("nodes.training").settle_sdpa_backend_order(str(model.load_device))
    geom = geometry_from_pixels("wan21", w, h, f)
    latent = torch.randn(1, 16, (f - 1) // 4 + 1, h // 8, w // 8, generator=torch.Generator().manual_seed(2))
    cond = e2e.conditioning("wan21", None)
    decay = default_decay("wan21")
    density = float(geom.block_mask(block_size=128, decay_factor=decay).float().mean())
    depth = args.layers or sizes["layers"]
    results = {}
    # count the sparse op's calls (as the patch makes them) to show that radial attention ran
    override = sys.modules[radial_patcher.__name__.rsplit(".", 1)[0] + ".attention_override"]
    op, calls = override.block_sparse_attention, {"n": 0, "grad": 0}

    def counted(q, *a, **k):  # counted when the op returned (a kernel error falls back to dense)
        out = op(q, *a, **k)
        calls["n"] += 1
        calls["grad"] += int(q.requires_grad and torch.is_grad_enabled())
        return out

    override.block_sparse_attention = counted
    for mode in args.modes.split(","):
        calls.update(n=0, grad=0)
        m = model if mode == "dense" else radial_patcher.apply_radial_patch(
            model, decay_factor=decay, block_size=128, dense_blocks=args.dense_blocks)
        r = train_steps(m, latent, cond, rank=args.rank, steps=args.steps, lr=args.lr, dtype=dtype)
        r["sparse_calls"], r["sparse_calls_with_grad"] = calls["n"], calls["grad"]
        results[mode] = r
        print(f"  {mode}: {r['step_s']:.2f} s/step (first {r['first_s']:.1f} s), peak {r['peak_gib']:.1f} GiB, "
              f"losses {[round(x, 4) for x in r['losses']]}, LoRA on {r['lora_modules']} projections "
              f"({r['lora_params'] / 1e6:.1f} M parameters), sparse attention calls {r['sparse_calls']} "
              f"({r['sparse_calls_with_grad']} with gradients)", flush=True)
        del m
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(f"\nWan 2.1-14B shape, {depth} blocks, {w}x{h}x{f} = {geom.seq_len} tokens, LoRA rank {args.rank} on the "
          f"attention projections, gradient checkpointing per block, bf16; radial: decay {decay}, block 128, "
          f"dense blocks {args.dense_blocks}, mask density {density:.3f}")
    header = ("mode", "s/step", "peak GiB", "speedup")
    rows = [(k, f"{v['step_s']:.2f}", f"{v['peak_gib']:.1f}",
             f"{results['dense']['step_s'] / v['step_s']:.2f}x" if "dense" in results else "-")
            for k, v in results.items()]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(x).ljust(wd) for x, wd in zip(r, widths)))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "card": card, "torch": torch.__version__, "triton": tv, "comfyui": comfyui_version.__version__,
            "date": time.strftime("%Y-%m-%d"), "size": [w, h, f], "tokens": geom.seq_len, "blocks": depth,
            "rank": args.rank, "dense_blocks": args.dense_blocks, "density": density, "results": results,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
