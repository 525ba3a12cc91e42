"""Cost of Radial Attention Calibrate against dense sampling over the same steps (GPU).

    python bench/bench_calibrate.py --comfyui DIR [--layers 4] [--steps 20] [--probe-steps auto]
                                    [--query-rows 256] [--json out.json]

The Wan 2.1-14B shape at 1280x720, 81 frames (21 latent frames x 3600 tokens = 75,600 tokens),
random bf16 weights, built the way ``bench/bench_e2e.py`` builds it (ComfyUI's own key-based
detection, real model classes; ``--layers`` sets the depth, stated in the output: every block
costs the same, so the ratio holds at any depth while the run stays short). Two runs on the same
noise and conditioning, euler, cfg 1 (one model call per step):

- dense: ``comfy.sample.sample`` on the unpatched model over ``--steps`` steps;
- calibrate: ``run_calibration`` (what the node runs) over the same steps: dense sampling, the
  probes at the probed steps, and the radial re-run of each probed model call at the
  recommended setting (the output check; with random weights the recommendation is usually
  "keep it dense", so the check runs at the start setting, to count its full cost).

Prints both times, their ratio (the issue's bound: at most 1.5x) and both peak GPU memories
(bound: at most 5 % more). Without CUDA it says so and exits 0 (``--smoke`` runs a tiny Wan on
the CPU to check the script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import bench_e2e as e2e  # noqa: E402  (installs the pack as ComfyUI imports it)


def _timed(fn):
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0, (torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_DIR", str(ROOT / ".comfyui")))
    ap.add_argument("--layers", type=int, default=4, help="Wan blocks to build (full model: 40)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--probe-steps", default="auto")
    ap.add_argument("--query-rows", type=int, default=256)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--smoke", action="store_true", help="a tiny Wan on the CPU: checks the script")
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    if not a.smoke and not torch.cuda.is_available():
        print(
            "bench_calibrate: no CUDA device; this benchmark needs the GPU machine (use --smoke on the CPU). Skipped."
        )
        return 0
    e2e.import_comfy(Path(a.comfyui))
    import comfy.sample

    cn = e2e.pack_import.module("nodes.calibrate_node")
    if a.smoke:
        sizes, (w, h, f), layers = e2e.SMOKE["wan21"], (64, 64, 9), None
    else:
        sizes, (w, h, f), layers = e2e.FULL["wan21"], (1280, 720, 81), a.layers
    model = e2e.build_model("wan21", layers, sizes)
    depth = layers or sizes["layers"]
    dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    cond = e2e.conditioning("wan21", dev)
    latent = e2e.empty_latent("wan21", w, h, f)
    tokens = latent.shape[3] // 2 * latent.shape[4] // 2
    print(f"Wan 2.1-14B shape {w}x{h}x{f} ({latent.shape[2]} latent frames x {tokens} tokens), {depth} of 40 "
          f"blocks, random bf16 weights, {a.steps} steps, euler, cfg 1, "
          f"probes {a.probe_steps}, {a.query_rows} query rows, target {a.target}")

    def dense():
        noise = comfy.sample.prepare_noise(latent, 0)
        with torch.inference_mode():
            return comfy.sample.sample(model, noise, a.steps, 1.0, "euler", "simple", cond, cond, latent,
                                       denoise=1.0, seed=0, disable_pbar=True)

    def calibrate():
        with torch.inference_mode():
            return cn.run_calibration(model, cond, cond, {"samples": latent}, seed=0, steps=a.steps, cfg=1.0,
                                      sampler_name="euler", scheduler="simple", probe_steps=a.probe_steps,
                                      query_rows=a.query_rows, target=a.target, save=False,
                                      check_start=True)

    # warm-up: ComfyUI's model load, and the sparse kernel's compilation (the output check runs it),
    # as bench_e2e.py warms up; the masks of the probed decays are built inside the timed run
    short = e2e.shorter(latent)
    noise = comfy.sample.prepare_noise(short, 0)
    patched = e2e.pack_import.module("nodes.radial_patcher").apply_radial_patch(model)
    with torch.inference_mode():
        for m in (model, patched):
            comfy.sample.sample(m, noise, 1, 1.0, "euler", "simple", cond, cond, short, denoise=1.0, seed=0,
                                disable_pbar=True)
    _, t_dense, mem_dense = _timed(dense)
    res, t_cal, mem_cal = _timed(calibrate)
    ratio = t_cal / t_dense
    extra = mem_cal / mem_dense - 1 if mem_dense else 0.0
    probes = res.session.probes
    print(f"dense sampling   : {t_dense:8.2f} s, peak {mem_dense:6.2f} GiB")
    print(f"calibrate        : {t_cal:8.2f} s, peak {mem_cal:6.2f} GiB "
          f"({len(probes)} probed steps {list(probes)})")
    print(f"ratio            : {ratio:.3f}x time (bound 1.5x), {extra:+.1%} peak memory (bound +5%)")
    print(res.report)
    if a.json:
        Path(a.json).write_text(json.dumps({
            "shape": [w, h, f], "layers": depth, "steps": a.steps, "probes": list(probes),
            "query_rows": a.query_rows, "dense_s": t_dense, "calibrate_s": t_cal, "ratio": ratio,
            "dense_peak_gib": mem_dense, "calibrate_peak_gib": mem_cal, "memory_extra": extra,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "recommendation": res.payload["recommendation"],
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
