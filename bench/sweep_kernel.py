"""One device call's worth of kernel experiments: quantisation schemes and launch configs.

    python3 bench/sweep_kernel.py [--out DIR] [--parts errors,schemes,bf16,shapes]

- ``errors``: relative error against a float32 reference (dense mask, random bf16 inputs,
  B = 1, H = 8, D = 128, S = 8192, ComfyUI's views) of each quantisation scheme of
  ``triton_kernel.SCHEMES`` and of the e4m3 P.V accumulation variants (``IMPRECISE``), so the
  FP8 error can be split into its sources (Q.K rounding, P.V rounding, accumulator).
- ``schemes``: time and error of each scheme x launch config at the Wan 720p shape (views).
- ``bf16``: bf16 launch configs at the Wan 720p shape (views).
- ``shapes``: the leading bf16 and quantised configs at the other benchmark shapes.
- ``gluon``: the warp-specialised Gluon kernel (``gluon_kernel``, 2 and 3 stages) against the
  Triton kernel's default row at the four benchmark shapes, both layouts at Wan 720p.
- ``gluon8``: ``precision="fp8"`` in the Gluon kernel (int8 Q.K^T, 2 and 3 stages) against
  Gluon bf16 and the Triton int8 row at the four benchmark shapes (views).

Prints one JSON line per measurement and a table last; writes everything to ``DIR/sweep.json``.
Every timed variant is also checked against the float32 masked reference on sampled rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import pack_import  # noqa: E402  the pack as ComfyUI imports it; its root is never on sys.path

pack_import.install()

from bench_kernel import (  # noqa: E402
    SHAPES, cuda_time_ms, error_vs_reference, kept_token_pairs, make_inputs,
)
from radial_core.csr import block_mask_to_csr  # noqa: E402
from radial_core.mask import radial_block_mask  # noqa: E402
from radial_core import triton_kernel as tk  # noqa: E402

RESULTS: list[dict] = []


def emit(rec):
    RESULTS.append(rec)
    print(json.dumps(rec), flush=True)


def cfg(bm=128, bn=64, w=4, s=2, tma=True, **extra):
    return dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=s, BLOCK_D=128, USE_TMA=tma,
                **extra)


def run_variant(tag, q, k, v, csr, mask, bs, flop, scheme, config, reps=10):
    fp8 = scheme is not None
    fn = lambda: tk.triton_block_sparse_attention(q, k, v, csr, bs, config=config,  # noqa
                                                  fp8=fp8, scheme=scheme)
    rec = {"part": tag, "scheme": scheme or "bf16",
           **{kk: vv for kk, vv in config.items() if kk != "BLOCK_D"}}
    try:
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        rec["first_s"] = round(time.perf_counter() - t0, 2)
        rec["err"] = error_vs_reference(out, q, k, v, mask, bs)
        del out
        rec["ms"] = cuda_time_ms(fn, target_ms=500, max_reps=reps)
        rec["tflops"] = flop / (rec["ms"] * 1e-3) / 1e12
    except Exception as exc:  # a variant that does not compile: report and go on
        rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
    emit(rec)
    return rec


def shape_inputs(key, layout="bshd", dtype=torch.bfloat16):
    _, F_, T, text, H, model, decay = SHAPES[key]
    S = F_ * T + text
    mask = radial_block_mask(F_, T, text_tokens=text, block_size=128, decay_factor=decay,
                             model=model)
    torch.manual_seed(0)
    q, k, v = make_inputs(1, S, H, 128, dtype, layout)
    flop = 4.0 * H * 128 * kept_token_pairs(mask, S, 128)
    return q, k, v, mask, block_mask_to_csr(mask, q.device), flop


def part_errors():
    S, H = 8192, 8
    torch.manual_seed(1)
    q, k, v = make_inputs(1, S, H, 128, torch.bfloat16, "bshd")
    nb = S // 128
    full = torch.ones(nb, nb, dtype=torch.bool)
    csr = block_mask_to_csr(full, q.device)
    base = cfg(s=3)
    variants = [(None, cfg())]
    for sch in ("fp8", "fp8-qk", "fp8-pv", "int8", "int8-fp8"):
        variants.append((sch, dict(base, Q_ROWS=False)))
    variants += [("int8", dict(base, Q_ROWS=True)), ("fp8", dict(base, Q_ROWS=True)),
                 ("fp8", dict(base, IMPRECISE=32)), ("fp8", dict(base, IMPRECISE=-1)),
                 ("fp8-pv", dict(base, IMPRECISE=-1)), ("fp8-pv", dict(base, IMPRECISE=64))]
    for sch, c in variants:
        rec = {"part": "errors", "S": S, "scheme": sch or "bf16",
               **{kk: vv for kk, vv in c.items() if kk in ("Q_ROWS", "IMPRECISE")}}
        try:
            out = tk.triton_block_sparse_attention(q, k, v, csr, 128, config=c,
                                                   fp8=sch is not None, scheme=sch)
            rec["err"] = error_vs_reference(out, q, k, v, full, 128)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
        emit(rec)
    del q, k, v


def part_schemes():
    q, k, v, mask, csr, flop = shape_inputs("wan720")
    # the quantisation passes alone
    for sch, qr in (("fp8", False), ("int8", True)):
        fn = lambda: tk.quantize_fp8(q, k, v, 1.0, 128, 64, 128, 128, scheme=sch,  # noqa
                                     q_rows=qr)
        emit({"part": "quant_only", "scheme": sch, "ms": cuda_time_ms(fn, 300, 10)})
    run_variant("schemes", q, k, v, csr, mask, 128, flop, None, cfg())
    for sch, c in (
        ("fp8", cfg(s=3)), ("int8", cfg(s=3)), ("int8", cfg(s=2)), ("int8", cfg(s=3, Q_ROWS=False)),
        ("int8", cfg(bn=128, w=8, s=2)), ("int8", cfg(bn=128, w=8, s=3)),
    ):
        run_variant("schemes", q, k, v, csr, mask, 128, flop, sch, c)
    del q, k, v


def part_regress():
    """The bf16 default at Wan 720p with the kernel before and after this session's edits."""
    import importlib

    q, k, v, mask, csr, flop = shape_inputs("wan720")
    mods = {"before_lse": "radial_core._tk_old", "lse_commit": "radial_core._tk_lse",
            "now": "radial_core.triton_kernel"}
    for rnd in range(2):
        for name, mod in mods.items():
            try:
                m = importlib.import_module(mod)
            except ImportError as exc:
                emit({"part": "regress", "version": name, "error": str(exc)})
                continue
            fn = lambda: m.triton_block_sparse_attention(q, k, v, csr, 128)  # noqa
            ms = cuda_time_ms(fn, 500, 10)
            emit({"part": "regress", "version": name, "round": rnd, "ms": ms,
                  "tflops": flop / (ms * 1e-3) / 1e12})
    del q, k, v


def part_bf16():
    q, k, v, mask, csr, flop = shape_inputs("wan720")
    for c in (cfg(w=8), cfg(w=8, s=3), cfg(bn=128, w=8, s=3), cfg(bn=128, w=8, s=2),
              cfg(bm=64, w=4, s=3), cfg(tma=False)):
        run_variant("bf16", q, k, v, csr, mask, 128, flop, None, c)
    del q, k, v


def part_shapes(bf16_cfgs, q_cfgs):
    for key in ("wan480", "hunyuan720", "wan720x4"):
        q, k, v, mask, csr, flop = shape_inputs(key)
        for c in bf16_cfgs:
            r = run_variant("shape:" + key, q, k, v, csr, mask, 128, flop, None, c, reps=6)
        for sch, c in q_cfgs:
            r = run_variant("shape:" + key, q, k, v, csr, mask, 128, flop, sch, c, reps=6)
        del q, k, v, r
        torch.cuda.empty_cache()


def part_gluon():
    rows = (cfg(), dict(KERNEL="gluon", STAGES=2), dict(KERNEL="gluon", STAGES=3))
    for key, layouts in (("wan720", ("bshd", "bhsd")), ("wan480", ("bshd",)),
                         ("hunyuan720", ("bshd",)), ("wan720x4", ("bshd",))):
        for layout in layouts:
            q, k, v, mask, csr, flop = shape_inputs(key, layout)
            for c in rows:
                run_variant(f"gluon:{key}:{layout}", q, k, v, csr, mask, 128, flop, None, c,
                            reps=6)
            del q, k, v
            torch.cuda.empty_cache()


def part_gluon8():
    """precision="fp8" on Hopper: the Gluon kernel with int8 Q.K^T (2 and 3 stages; the
    quantisation pass included) against Gluon bf16 and the Triton int8 row."""
    rows = ((None, dict(KERNEL="gluon", STAGES=3)), ("int8", cfg(s=3)),
            ("int8", dict(KERNEL="gluon", STAGES=2)), ("int8", dict(KERNEL="gluon", STAGES=3)))
    for key in ("wan720", "wan480", "hunyuan720", "wan720x4"):
        q, k, v, mask, csr, flop = shape_inputs(key, "bshd")
        for scheme, c in rows:
            run_variant(f"gluon8:{key}", q, k, v, csr, mask, 128, flop, scheme, c, reps=6)
        del q, k, v
        torch.cuda.empty_cache()


def table():
    print()
    print("part | scheme | BM BN w s tma extra | first s | ms | TF/s | err")
    for r in RESULTS:
        if "part" not in r:
            continue
        if r["part"] == "errors":
            print(f"errors S={r['S']} | {r['scheme']} | Q_ROWS={r.get('Q_ROWS', '-')} "
                  f"IMPRECISE={r.get('IMPRECISE', '-')} | err {r.get('err', float('nan')):.3e} "
                  f"{r.get('error', '')}")
        elif r["part"] == "regress":
            print(f"regress | {r['version']} | {r.get('ms', float('nan')):.2f} ms "
                  f"{r.get('tflops', float('nan')):.0f} TF/s {r.get('error', '')}")
        elif r["part"] == "quant_only":
            print(f"quant_only | {r['scheme']} | {r['ms']:.2f} ms")
        else:
            extra = {kk: r[kk] for kk in ("Q_ROWS", "IMPRECISE") if kk in r}
            launch = (f"gluon {r['STAGES']} stages" if r.get("KERNEL") == "gluon" else
                      f"{r['BLOCK_M']} {r['BLOCK_N']} {r['num_warps']} {r['num_stages']} "
                      f"{r['USE_TMA']}")
            print(f"{r['part']} | {r['scheme']} | {launch} {extra} | "
                  f"{r.get('first_s', '-')} | {r.get('ms', float('nan')):.2f} | "
                  f"{r.get('tflops', float('nan')):.0f} | {r.get('err', float('nan')):.2e} "
                  f"{r.get('error', '')[:120]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    ap.add_argument("--parts", default="errors,schemes,bf16,shapes")
    args = ap.parse_args()
    import triton

    emit({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
          "triton": triton.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    parts = args.parts.split(",")
    try:
        if "regress" in parts:
            part_regress()
        if "errors" in parts:
            part_errors()
        if "schemes" in parts:
            part_schemes()
        if "bf16" in parts:
            part_bf16()
        if "gluon" in parts:
            part_gluon()
        if "gluon8" in parts:
            part_gluon8()
        if "shapes" in parts:
            part_shapes([cfg(), cfg(w=8, s=3), cfg(bn=128, w=8, s=3)],
                        [("int8", cfg(s=3)), ("int8", cfg(s=2, Q_ROWS=False))])
    finally:
        table()
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sweep.json").write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", "/tmp/radial_inductor_cache")
    main()
