"""Time the radial mask builder on the CPU (first build, cache cleared) for the shapes users run.

    python bench/bench_mask.py

Target (../shared/docs/performance.md, issue 13): first build <= 50 ms for every shape up to
128 latent frames (the worst case: 127 frames x 3 599 tokens). ``--sweep`` times every frame count
1..128 at 3 599 and 3 600 tokens per frame, both block sizes, and prints the slowest.
"""

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import pack_import  # noqa: E402  the pack as ComfyUI imports it; its root is never on sys.path

pack_import.install()

import torch  # noqa: E402

from radial_core import mask as radial_mask  # noqa: E402
from radial_core.geometry import geometry_from_pixels  # noqa: E402

SHAPES = [
    ("Wan 2.1 480x832x81", "wan21", 832, 480, 81),
    ("Wan 2.1 720x1280x81", "wan21", 1280, 720, 81),
    ("HunyuanVideo 720x1280x129", "hunyuan", 1280, 720, 129),
    ("Wan 2.1 720x1280x321 (4x)", "wan21", 1280, 720, 321),
    ("Wan 2.1 720x1280x509 (128 latent frames)", "wan21", 1280, 720, 509),
    ("odd T: 712x1256x509", "wan21", 1256, 712, 509),
]


def first_build_ms(geom, block_size, decay, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        radial_mask.clear_mask_cache()
        t0 = time.perf_counter()
        m = geom.block_mask(block_size=block_size, decay_factor=decay)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3, m


def direct_first_build_ms(frames, tpf, block_size, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        radial_mask.clear_mask_cache()
        t0 = time.perf_counter()
        radial_mask.radial_mask(frames, tpf, block_size=block_size, decay_factor=1.0)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def sweep():
    worst = (0.0, None)
    for tpf in (3599, 3600):
        for b in (128, 64):
            for f in range(1, 129):
                ms = direct_first_build_ms(f, tpf, b)
                worst = max(worst, (ms, (f, tpf, b)))
    ms, (f, tpf, b) = worst
    print(f"slowest first build over 1..128 frames x 3599/3600 tokens, block 128/64: {ms:.1f} ms "
          f"({f} frames x {tpf} tokens, block {b}); target 50 ms")


def main():
    if "--sweep" in sys.argv:
        sweep()
        return
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    rows = []
    for name, fam, w, h, f in SHAPES:
        g = geometry_from_pixels(fam, w, h, f)
        for b in (128, 64):
            ms, m = first_build_ms(g, b, 1.0)
            t0 = time.perf_counter()
            g.block_mask(block_size=b, decay_factor=1.0)
            cached_ms = (time.perf_counter() - t0) * 1e3
            rows.append((name, f"{g.num_frames}x{g.tokens_per_frame}", b, m.shape[0], f"{m.float().mean():.3f}", f"{ms:.1f}", f"{cached_ms:.2f}"))
    for b in (128, 64):
        ms = direct_first_build_ms(127, 3599, b, repeats=5)
        m = radial_mask.radial_mask(127, 3599, block_size=b, decay_factor=1.0)
        rows.append(("issue 13's worst case", "127x3599", b, m.nb, f"{m.density:.3f}", f"{ms:.1f}", "-"))
    header = ("shape", "F x T", "block", "nb", "density", "first build ms", "cached ms")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(x).ljust(wd) for x, wd in zip(r, widths)))


if __name__ == "__main__":
    main()
