"""Time the radial mask builder on the CPU (first build, cache cleared) for the shapes users run.

    python bench/bench_mask.py [--sweep] [--previous] [--threads N] [--fresh [N] [--device cuda]]

Target (../shared/docs/performance.md, issue 13): first build <= 50 ms for every shape up to
128 latent frames (the worst case: 127 frames x 3 599 tokens). ``--sweep`` times every frame count
1..128 at 3 599 and 3 600 tokens per frame, both block sizes, re-times the slowest and prints
the slowest.
``--previous`` also times the previous torch builder (tests/mask_reference.py) on the worst case.
``--fresh [N]`` times the very first build in N brand-new processes (default 9) per shape
(127 x 3599 and the sweep's slowest shapes, both block sizes) and prints the median and the
maximum, for the first ``radial_mask()`` alone and with its CPU CSR (``mask.csr("cpu")``: what
the patch needs before its first kernel call; ``--device cuda``: its CSR on the GPU, copy
included): a new process faults in every page its buffers touch (system time), which later
builds in the same process mostly reuse.

Times are the best of a few first builds, as CPU time of this process (``time.process_time``: what
the build costs while other work loads the machine) and as wall time; torch runs single-threaded
unless ``--threads`` says otherwise (the builder itself is numpy, one thread).
"""

import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import pack_import  # the pack as ComfyUI imports it; its root is never on sys.path

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


def best_ms(build, repeats):
    """(CPU ms, wall ms, result): the best of ``repeats`` calls of ``build`` by each clock."""
    cpu = wall = float("inf")
    for _ in range(repeats):
        radial_mask.clear_mask_cache()
        c0, w0 = time.process_time(), time.perf_counter()
        out = build()
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
    return cpu * 1e3, wall * 1e3, out


def geometry_mask(geom, block_size, decay):
    """The shared RadialMask of a geometry (geom.block_mask would add radial_block_mask's copy)."""
    return radial_mask.radial_mask(geom.num_frames, geom.tokens_per_frame, text_tokens=geom.text_tokens,
                                   block_size=block_size, decay_factor=decay, model=geom.mask_model,
                                   text_first=geom.text_first)


def first_build_ms(geom, block_size, decay, repeats=5):
    return best_ms(lambda: geometry_mask(geom, block_size, decay), repeats)


def direct_first_build_ms(frames, tpf, block_size, repeats=3):
    return best_ms(lambda: radial_mask.radial_mask(frames, tpf, block_size=block_size, decay_factor=1.0), repeats)[:2]


def sweep(confirm=6):
    """Every shape once (best of 3), then the ``confirm`` slowest per block size and 127 x 3599
    again (best of 9): on a machine others load, one slow sample is noise, a slow shape is slow
    every time."""
    times = {128: [], 64: []}
    for tpf in (3599, 3600):
        for b in (128, 64):
            for f in range(1, 129):
                cpu, wall = direct_first_build_ms(f, tpf, b)
                times[b].append((cpu, wall, f, tpf))
    for b, rows in times.items():
        rows.sort(reverse=True)
        raw = rows[0]
        candidates = {(f, tpf) for _, _, f, tpf in rows[:confirm]} | {(127, 3599)}  # + issue 13's worst case
        again = sorted(((*direct_first_build_ms(f, tpf, b, repeats=9), f, tpf) for f, tpf in candidates), reverse=True)
        cpu, wall, f, tpf = again[0]
        print(f"block {b}: slowest first build over 1..128 frames x 3599/3600 tokens: {cpu:.1f} ms CPU "
              f"({wall:.1f} ms wall) at {f} frames x {tpf} tokens (first pass: {raw[0]:.1f} ms CPU at "
              f"{raw[2]} x {raw[3]}); target 50 ms")


def previous():
    import mask_reference  # (tests/, on sys.path above)

    for b in (128, 64):
        cpu, wall, _ = best_ms(lambda: mask_reference.previous_block_mask(127, 3599, 0, b, 1.0, "wan", "full"), 5)
        print(f"previous torch builder, 127 x 3599, block {b}: {cpu:.1f} ms CPU ({wall:.1f} ms wall)")


# --fresh: 127 x 3599 (issue 13's worst case) and the slowest shapes of --sweep on this machine
FRESH_SHAPES = [(127, 3599), (128, 3599), (125, 3599)]


def _thp_faults() -> int:
    """Transparent huge pages faulted in so far, machine-wide (0 where /proc/vmstat has none)."""
    try:
        with open("/proc/vmstat") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("thp_fault_alloc ")), 0)
    except OSError:
        return 0


def _timed(step):
    """(CPU, wall, system ms, minor faults, huge pages) of one call of ``step``."""
    r0, h0 = resource.getrusage(resource.RUSAGE_SELF), _thp_faults()
    c0, w0 = time.process_time(), time.perf_counter()
    out = step()
    c1, w1 = time.process_time(), time.perf_counter()
    r1, h1 = resource.getrusage(resource.RUSAGE_SELF), _thp_faults()
    return out, [(c1 - c0) * 1e3, (w1 - w0) * 1e3, (r1.ru_stime - r0.ru_stime) * 1e3,
                 r1.ru_minflt - r0.ru_minflt, h1 - h0]


def one_fresh_build(frames, tpf, block_size, device="cpu"):
    """In this (new) process: the first ``radial_mask()``'s CPU, wall, system ms, minor faults and
    huge pages, then the same five for the first ``radial_mask()`` and its CSR on ``device``
    together (on the CPU: what the patch needs before its first kernel call, besides the CSR's
    copy to the GPU; ``cuda``: with that copy, the CUDA context made before the clock starts)."""
    if device != "cpu":
        torch.ones(1, device=device)
        torch.cuda.synchronize()

    def csr_now():
        out = m.csr(device)
        if device != "cpu":
            torch.cuda.synchronize()
        return out

    m, build = _timed(lambda: radial_mask.radial_mask(frames, tpf, block_size=block_size, decay_factor=1.0))
    _, csr = _timed(csr_now)
    both = [a + b for a, b in zip(build, csr)]
    print(" ".join(f"{x:.2f}" for x in build + both))


def _fresh_line(label, samples):
    cpu, wall, sys_ms, faults, thp = zip(*samples)
    return (f"  {label}: CPU median {statistics.median(cpu):.1f} ms, max {max(cpu):.1f}; "
            f"wall median {statistics.median(wall):.1f}, max {max(wall):.1f}; system median "
            f"{statistics.median(sys_ms):.1f}, max {max(sys_ms):.1f}; minor faults "
            f"{statistics.median(faults):.0f}, huge pages {statistics.median(thp):.0f}")


def fresh(runs, device="cpu"):
    """Each shape's first build in ``runs`` new processes, one after another (median, max): the
    first ``radial_mask()`` alone, and with its CSR on ``device``."""
    print(f"first build in a new process, {runs} processes per shape (CPU ms = user + system)")
    for frames, tpf in FRESH_SHAPES:
        for b in (128, 64):
            samples = []
            for _ in range(runs):
                out = subprocess.run([sys.executable, __file__, "--one", str(frames), str(tpf), str(b), device],
                                     capture_output=True, text=True, check=True).stdout.split()
                samples.append([float(x) for x in out])
            print(f"{frames} x {tpf}, block {b}:")
            print(_fresh_line("radial_mask()", [s[:5] for s in samples]))
            print(_fresh_line(f"radial_mask() + csr({device!r})", [s[5:] for s in samples]))


def main():
    if "--one" in sys.argv:  # a child of --fresh
        torch.set_num_threads(1)
        i = sys.argv.index("--one")
        one_fresh_build(*(int(x) for x in sys.argv[i + 1:i + 4]), *sys.argv[i + 4:i + 5])
        return
    if "--threads" in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    else:
        torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads"
    )
    if "--sweep" in sys.argv:
        sweep()
        return
    if "--fresh" in sys.argv:
        i = sys.argv.index("--fresh")
        device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
        fresh(int(sys.argv[i + 1]) if i + 1 < len(sys.argv) and sys.argv[i + 1].isdigit() else 9, device)
        return
    if "--previous" in sys.argv:
        previous()
    rows = []
    for name, fam, w, h, f in SHAPES:
        g = geometry_from_pixels(fam, w, h, f)
        for b in (128, 64):
            cpu, wall, m = first_build_ms(g, b, 1.0)
            t0 = time.perf_counter()
            geometry_mask(g, b, 1.0)
            cached_ms = (time.perf_counter() - t0) * 1e3
            rows.append((name, f"{g.num_frames}x{g.tokens_per_frame}", b, m.nb, f"{m.density:.3f}",
                         f"{cpu:.1f}", f"{wall:.1f}", f"{cached_ms:.2f}"))
    for b in (128, 64):
        cpu, wall = direct_first_build_ms(127, 3599, b, repeats=5)
        m = radial_mask.radial_mask(127, 3599, block_size=b, decay_factor=1.0)
        rows.append(
            ("issue 13's worst case", "127x3599", b, m.nb, f"{m.density:.3f}", f"{cpu:.1f}", f"{wall:.1f}", "-")
        )
    header = ("shape", "F x T", "block", "nb", "density", "first build CPU ms", "wall ms", "cached ms")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(x).ljust(wd) for x, wd in zip(r, widths)))


if __name__ == "__main__":
    main()
