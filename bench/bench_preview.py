"""Time the Sparsity Preview's work on the CPU: mask, figures and picture, first build.

    python bench/bench_preview.py

Target (issue 6): under a second for any shape up to 4x length.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import pack_import  # the pack as ComfyUI imports it; its root is never on sys.path

pack_import.install()

import torch  # noqa: E402

from radial_core import mask as radial_mask  # noqa: E402
from radial_core import preview  # noqa: E402

SHAPES = [
    ("Wan 2.1 720x1280x81", "wan21", 1280, 720, 81),
    ("HunyuanVideo 720x1280x129", "hunyuan", 1280, 720, 129),
    ("Wan 2.1 720x1280x321 (4x)", "wan21", 1280, 720, 321),
    ("HunyuanVideo 720x1280x509 (4x)", "hunyuan", 1280, 720, 509),
]


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'shape':34} {'nb':>6} {'density':>8} {'figures ms':>11} {'picture ms':>11}")
    for name, fam, w, h, f in SHAPES:
        best_fig = best_pic = float("inf")
        for _ in range(3):
            radial_mask.clear_mask_cache()
            preview.estimate_latent.cache_clear()
            t0 = time.perf_counter()
            est = preview.estimate(fam, w, h, f)
            t1 = time.perf_counter()
            s = est.stats
            geo = preview.geometry_from_pixels(fam, w, h, f)
            m = geo.block_mask(decay_factor=est.decay_factor)
            t2 = time.perf_counter()
            preview.render_mask(m, geo.num_frames, geo.tokens_per_frame, text_tokens=geo.text_tokens,
                                model=geo.mask_model, stats=s)
            t3 = time.perf_counter()
            best_fig, best_pic = min(best_fig, t1 - t0), min(best_pic, t3 - t2)
        print(f"{name:34} {m.shape[0]:>6} {s.density:>8.3f} {best_fig * 1e3:>11.1f} {best_pic * 1e3:>11.1f}")


if __name__ == "__main__":
    main()
