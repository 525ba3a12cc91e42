"""Backward benchmark (issue 14): forward + backward of ours vs flex_attention vs dense cuDNN.

One command on a CUDA machine (from the repository root):

    python3 bench/bench_backward.py                       # Wan 480p and 720p, B=1, H=40, D=128
    python3 bench/bench_backward.py --sweep wan720 --json out.json   # + config sweep of ours
    python3 bench/bench_backward.py --shapes wan720 --skip-flex --sweep wan720

Per shape (Wan 2.1-14B's 81 frames: 21 latent frames x 1 560 / 3 600 tokens, the radial mask at
the authors' decay 0.2, block 128, bf16, ComfyUI's [B, S, H*D] layout): median CUDA-event time
of the forward alone (with inputs that require grad, so ours also writes its LSE) and of forward
+ backward (``torch.autograd.grad`` of all three inputs; no accumulation into ``.grad``) for
cuDNN dense SDPA, flex_attention (compiled) on the same block mask, and ours; the backward's
time is their difference. Gradient errors of ours and flex against a float32 reference on
sampled rows and keys of two heads (tests/test_backward.py's chunked reference). Targets: ours
>= 1.3x flex, >= 0.8 / density x dense (forward + backward). The table comes last.

``--sweep SHAPE``: each row of ``SWEEP`` (a launch configuration of the dQ pass or of the dK/dV
pass, with or without tensor-descriptor loads; the other pass at its default) timed as the
whole backward and its gradients checked against the same reference; then the fastest correct
dQ row and dK/dV row together through the op (forward + backward), printed as ``best`` after
the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]
import pack_import  # noqa: E402  the pack as ComfyUI imports it; its root is never on sys.path

pack_import.install()

from bench_kernel import (  # noqa: E402
    SHAPES, cuda_time_ms, environment, flex_block_mask, kept_token_pairs,
)
from radial_core.attention import block_sparse_attention  # noqa: E402
from radial_core.csr import block_csr  # noqa: E402
from radial_core.dispatch import PassConfig, decide  # noqa: E402
from radial_core.mask import radial_block_mask  # noqa: E402

# (part, config): the launch of the dQ or the dK/dV pass. USE_TMA: that pass loads the
# tiles it walks (K, V for dQ; Q, dO for dK/dV) through tensor descriptors. The first row of
# each part is the default (dispatch.backward_config, Hopper); rows measured before (other
# stages, warps, and dQ fused into the dK/dV pass: slower, docs/benchmarks.md "Backward") are
# not repeated.
SWEEP = [("dq", dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2)),
         ("dq", dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2, USE_TMA=True)),
         ("dq", dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, USE_TMA=True)),
         ("dq", dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2, USE_TMA=True)),
         ("dq", dict(BLOCK_M=128, BLOCK_N=32, num_warps=4, num_stages=3, USE_TMA=True)),
         ("dkdv", dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2)),
         ("dkdv", dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2, USE_TMA=True)),
         ("dkdv", dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, USE_TMA=True)),
         ("dkdv", dict(BLOCK_M=32, BLOCK_N=128, num_warps=4, num_stages=3)),
         ("dkdv", dict(BLOCK_M=32, BLOCK_N=128, num_warps=4, num_stages=3, USE_TMA=True)),
         ("dkdv", dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3, USE_TMA=True)),
         ("dkdv", dict(BLOCK_M=64, BLOCK_N=128, num_warps=8, num_stages=2, USE_TMA=True))]


def sampled_reference(q, k, v, g, mask, bs, heads=2, n=192, seed=0):
    """float32 reference dq[rows], dk[keys], dv[keys] of the first ``heads`` heads on ``n``
    random rows and keys plus the last 64: ``(rows, keys, (dq, dk, dv))``."""
    from test_backward import chunked_reference_grads

    S, D = q.shape[2], q.shape[3]
    gen = torch.Generator().manual_seed(seed)
    rows = torch.cat([torch.randint(0, S, (n,), generator=gen), torch.arange(S - 64, S)])
    keys = torch.cat([torch.randint(0, S, (n,), generator=gen), torch.arange(S - 64, S)])
    rows, keys = rows.unique().to(q.device), keys.unique().to(q.device)
    hs = slice(0, heads)
    ref = chunked_reference_grads(q[:, hs].detach(), k[:, hs].detach(), v[:, hs].detach(),
                                  g[:, hs], mask.to(q.device), bs, 1.0 / D ** 0.5, rows, keys,
                                  chunk=2048)
    return rows, keys, ref


def compare(grads, reference, heads=2):
    """Relative errors of dq, dk, dv against ``sampled_reference``'s (NaN where not finite)."""
    rows, keys, ref = reference
    hs = slice(0, heads)
    got = (grads[0][:, hs][:, :, rows], grads[1][:, hs][:, :, keys], grads[2][:, hs][:, :, keys])
    out = []
    for a, b in zip(got, ref):
        a, b = a.double(), b.double()
        out.append(float("nan") if not torch.isfinite(a).all()
                   else ((a - b).norm() / b.norm()).item())
    return out


def time_pair(row, name, fwd, q, k, v, g):
    """row[name_fwd_ms], row[name_step_ms] (forward + backward); errors recorded, not raised."""
    def step():
        return torch.autograd.grad(fwd(), (q, k, v), g)

    try:
        row[f"{name}_fwd_ms"] = cuda_time_ms(fwd, target_ms=1500, max_reps=10)
        row[f"{name}_step_ms"] = cuda_time_ms(step, target_ms=2500, max_reps=8)
        row[f"{name}_bwd_ms"] = row[f"{name}_step_ms"] - row[f"{name}_fwd_ms"]
        return step
    except Exception as exc:  # a backend missing on this build / GPU
        row[f"{name}_step_ms"] = float("nan")
        row[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
        print(f"{name}: {row[f'{name}_error']}", flush=True)
        return None


def bench_shape(key, args, results):
    title, F_, T, text, H, model, decay = SHAPES[key]
    bs, D, B = 128, 128, 1
    S = F_ * T + text
    mask = radial_block_mask(F_, T, text_tokens=text, block_size=bs, decay_factor=decay,
                             model=model)
    density = kept_token_pairs(mask, S, bs) / float(S * S)
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, S, H * D, device="cuda", dtype=torch.bfloat16)
               .view(B, S, H, D).transpose(1, 2).requires_grad_(True) for _ in range(3))
    g = torch.randn(B, S, H * D, device="cuda", dtype=torch.bfloat16).view(B, S, H, D) \
        .transpose(1, 2)
    row = {"shape": key, "title": title, "S": S, "H": H, "D": D, "B": B, "dtype": "bf16",
           "layout": "bshd", "decay": decay, "density": density}
    reference = sampled_reference(q, k, v, g, mask, bs)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    time_pair(row, "cudnn", cudnn, q, k, v, g)
    torch.cuda.empty_cache()
    if not args.skip_flex:
        try:
            from torch.nn.attention.flex_attention import flex_attention

            flex = torch.compile(flex_attention, dynamic=False)
            bm = flex_block_mask(mask, S, bs)
            t0 = time.perf_counter()
            step = time_pair(row, "flex", lambda: flex(q, k, v, block_mask=bm), q, k, v, g)
            row["flex_first_s"] = time.perf_counter() - t0
            if step is not None:
                row["flex_grad_err"] = compare(step(), reference)
        except Exception as exc:
            row["flex_step_ms"] = float("nan")
            row["flex_error"] = f"{type(exc).__name__}: {exc}"[:300]
        torch.cuda.empty_cache()
    csr = block_csr(mask, bs, q.device, key_side=True)
    default = decide(q, k, v, block_size=bs, backend="triton", need_grad=True)

    def ours(name, decision):
        step = time_pair(row, name,
                         lambda: block_sparse_attention(q, k, v, csr, decision=decision),
                         q, k, v, g)
        if step is not None:
            row[f"{name}_grad_err"] = compare(step(), reference)

    ours("ours", default)
    if key in args.sweep.split(","):
        row["sweep"], best = sweep(q, k, v, g, csr, bs, reference, default)
        if best:  # the fastest correct dQ and dK/dV rows together, through the op
            row["best_config"] = {p: c._asdict() for p, c in best.items()}
            ours("ours_best", default._replace(backward=default.backward._replace(**best)))
    results.append(row)
    print(json.dumps(row), flush=True)
    q = k = v = g = None  # frees the inputs (not `del`: the closures above read them)
    torch.cuda.empty_cache()


def _pass(c: dict) -> PassConfig:
    return PassConfig(c["BLOCK_M"], c["BLOCK_N"], c["num_warps"], c["num_stages"],
                      bool(c.get("USE_TMA")))


def sweep(q, k, v, g, csr, bs, reference, default):
    """Each launch configuration of dQ and of dK/dV (the other pass at ``default``'s), timed as
    the whole backward, and each one's gradients against ``reference``
    (``sampled_reference``). Returns the rows and ``{"dq": ..., "dkdv": ...}``, the fastest
    dQ-pass and dK/dV-pass configs whose errors stay within 1.5x the default's (None when
    some part has no such row)."""
    from radial_core.triton_backward import triton_block_sparse_attention_backward
    from radial_core.triton_kernel import triton_block_sparse_attention

    q, k, v = (t.detach() for t in (q, k, v))
    exact = default.exact_forward
    if default.exact_kernel != "triton":  # the sweep times the Triton backward on any forward
        from radial_core.dispatch import capability, triton_config

        exact = triton_config(q.shape[-1], q.dtype, bs, capability(q.device))
    out, lse = triton_block_sparse_attention(q, k, v, csr, exact, scale=q.shape[-1] ** -0.5,
                                             return_lse=True)
    base = default.backward

    def backward(cfg):
        return triton_block_sparse_attention_backward(q, k, v, out, lse, g, csr, csr.key, cfg,
                                                      scale=q.shape[-1] ** -0.5)

    default_err = compare(backward(base), reference)
    res = []
    for part, c in SWEEP:
        cfg = base._replace(**{part: _pass(c)})
        rec = {"part": part, **c}
        try:
            rec["ms"] = cuda_time_ms(lambda: backward(cfg), target_ms=600, max_reps=6)
            err = compare(backward(cfg), reference)
            mine = [i for i, n in enumerate(("dq", "dkdv", "dkdv")) if part == n]
            rec["err"] = err
            rec["ok"] = all(err[i] <= 1.5 * default_err[i] for i in mine)
        except Exception as exc:  # e.g. out of shared memory for this tile shape
            rec["ms"] = f"{type(exc).__name__}: {exc}"[:120]
        res.append(rec)
        print(f"sweep {part} {c} -> {rec['ms']} err {rec.get('err')}", flush=True)
    best = {}
    for part in ("dq", "dkdv"):
        good = [r for r in res if r["part"] == part and r.get("ok")]
        if not good:
            return res, None
        best[part] = _pass(min(good, key=lambda r: r["ms"]))
    return res, best


def print_table(env, results):
    print()
    print(f"# {env['gpu']} | driver {env['driver']} | torch {env['torch']} | "
          f"triton {env['triton']} | {env['date']}")
    hdr = ("shape", "S", "dens", "cuDNN f/f+b ms", "flex f/f+b ms", "ours f/f+b ms",
           "ours bwd", "vs flex", "vs dense", "target",
           "ours err dq/dk/dv", "flex err")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in results:
        def g(n):
            return r.get(n, float("nan"))

        def pair(n):
            return f"{g(n + '_fwd_ms'):.1f} / {g(n + '_step_ms'):.1f}"

        def errs(n):
            e = r.get(n)
            return "/".join(f"{x:.1e}" for x in e) if e else "-"

        print("| " + " | ".join([
            r["shape"], str(r["S"]), f"{r['density']:.3f}", pair("cudnn"), pair("flex"),
            pair("ours"), f"{g('ours_bwd_ms'):.1f}",
            f"{g('flex_step_ms') / g('ours_step_ms'):.2f}x",
            f"{g('cudnn_step_ms') / g('ours_step_ms'):.2f}x", f"{0.8 / r['density']:.2f}x",
            errs("ours_grad_err"), errs("flex_grad_err")]) + " |")
    for r in results:
        for w in r.get("sweep", []):
            cfg = f"{w['BLOCK_M']}x{w['BLOCK_N']} w{w['num_warps']} s{w['num_stages']}" + (
                " TMA" if w.get("USE_TMA") else "")
            ms = f"{w['ms']:.1f} ms" if isinstance(w["ms"], float) else w["ms"]
            err = "/".join(f"{x:.1e}" for x in w.get("err", []))
            print(f"sweep {r['shape']} {w['part']} {cfg}: {ms} "
                  f"err {err}{'' if w.get('ok', True) else ' (ERROR TOO LARGE)'}")
        if "ours_best_step_ms" in r:
            print(f"best {r['shape']} {r['best_config']}: f/f+b {r['ours_best_fwd_ms']:.1f} / "
                  f"{r['ours_best_step_ms']:.1f} ms, bwd {r['ours_best_bwd_ms']:.1f} ms, vs flex "
                  f"{r.get('flex_step_ms', float('nan')) / r['ours_best_step_ms']:.2f}x, vs "
                  f"dense {r['cudnn_step_ms'] / r['ours_best_step_ms']:.2f}x (target "
                  f"{0.8 / r['density']:.2f}x), err "
                  + "/".join(f"{x:.1e}" for x in r.get("ours_best_grad_err", [])))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="wan480,wan720")
    ap.add_argument("--skip-flex", action="store_true")
    ap.add_argument("--sweep", default="", help="shapes (comma-separated) on which to time "
                    "launch configs of ours' backward kernels")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_backward needs a CUDA GPU")
        return 1
    env = environment()
    results = []
    for key in args.shapes.split(","):
        bench_shape(key, args, results)
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=1))
    print_table(env, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
