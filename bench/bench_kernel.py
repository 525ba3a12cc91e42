"""Kernel benchmark: cuDNN SDPA, flex_attention on the same mask, comfy-kitchen, SageAttention2,
SpargeAttn on the same mask, ours exact / int8-qk / int8.

``ours``, ``fp8`` and ``pv8`` are what ``precision="exact"`` / ``"int8-qk"`` / ``"int8"`` run on
the card (``dispatch``: on Hopper the Gluon kernel, ``gluon_kernel``; int8-qk, named fp8 before =
int8 Q.K, 16-bit P.V, the columns keep the name ``fp8`` so earlier JSON reads the same; int8 =
8-bit Q.K and P.V, the Gluon kernel only), on the mask's CSR built once
(``csr.block_csr``), as a caller that holds its mask does.

One command on any CUDA machine (run from the repository root):

    python3 bench/bench_kernel.py                # the four shapes of docs (performance.md)
    python3 bench/bench_kernel.py --shapes wan720 --sweep   # + launch-config sweep for ours

Prints, per shape and input layout (contiguous [B,H,S,D] and ComfyUI's [B,S,H*D] views): time
(median of CUDA-event timings after warm-up) of cuDNN dense SDPA, flex_attention on the same
block mask, comfy-kitchen's ``sol_attn`` and ``int8_attention`` (when ``comfy_kitchen``
imports), dense SageAttention2 (``sageattention.sageattn``: on Hopper its INT8 Q.K / FP8 P.V sm90
kernel) and SpargeAttn's ``block_sparse_sage2_attn_cuda`` on the same radial mask (when they
import; bench/build_peers.sh builds both; otherwise their columns print why not), ours in bf16
and int8-qk; TFLOP/s on kept blocks (dense rows: on all blocks), speedups, and relative errors
against a float32 reference on sampled query rows (every column's own output). ``--errors`` adds FP8
beside comfy-kitchen INT8 on the same dense random inputs. The table comes last;
``--json PATH`` also writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import pack_import  # the pack as ComfyUI imports it; its root is never on sys.path

pack_import.install()

from radial_core.attention import block_sparse_attention  # noqa: E402
from radial_core.csr import block_csr  # noqa: E402
from radial_core.dispatch import TritonConfig, capability, decide, triton_config  # noqa: E402
from radial_core.mask import radial_block_mask  # noqa: E402
from radial_core.reference import masked_attention_rows  # noqa: E402
from radial_core.triton_kernel import triton_block_sparse_attention  # noqa: E402

# name: (frames F, tokens per frame T, text tokens, heads, model, authors' decay factor)
SHAPES = {
    "wan480": ("Wan 2.1-14B 480x832, 81 frames", 21, 1560, 0, 40, "wan", 0.2),
    "wan720": ("Wan 2.1-14B 720x1280, 81 frames", 21, 3600, 0, 40, "wan", 0.2),
    "hunyuan720": ("HunyuanVideo 720x1280, 129 frames (+256 text)", 33, 3600, 256, 24,
                   "hunyuan", 0.95),
    "wan720x4": ("Wan 2.1-14B 720x1280, 321 frames", 81, 3600, 0, 40, "wan", 0.2),
}


def cuda_time_ms(fn, target_ms: float = 1500.0, max_reps: int = 30, min_reps: int = 3) -> float:
    """Median of CUDA-event timings after one warm-up call (two when the call is fast)."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    est = start.elapsed_time(end)
    reps = int(min(max_reps, max(min_reps, target_ms / max(est, 1e-3))))
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kept_token_pairs(mask: torch.Tensor, S: int, bs: int) -> int:
    """Exact count of (query, key) token pairs inside kept blocks (tail block counted short)."""
    nb = mask.shape[-1]
    sizes = torch.full((nb,), bs, dtype=torch.float64)
    sizes[-1] = S - (nb - 1) * bs
    return int(sizes @ mask.to(torch.float64) @ sizes)


def flex_block_mask(mask: torch.Tensor, S: int, bs: int):
    """flex_attention BlockMask holding exactly our kept blocks, each as a full block."""
    from torch.nn.attention.flex_attention import BlockMask

    m = mask.cuda()
    counts = m.sum(-1).to(torch.int32)[None, None]
    order = torch.argsort((~m).to(torch.int8), dim=-1, stable=True).to(torch.int32)[None, None]
    zeros = torch.zeros_like(counts)

    def mask_mod(b, h, q_idx, kv_idx):  # same mask at token level (only read by eager flex)
        return m[q_idx // bs, kv_idx // bs]

    return BlockMask.from_kv_blocks(zeros, torch.zeros_like(order), counts, order, bs, mask_mod,
                                    (S, S))


def error_vs_reference(out, q, k, v, mask, bs, n_rows=256, seed=0):
    S = q.shape[2]
    g = torch.Generator().manual_seed(seed)
    rows = torch.cat([torch.randint(0, S, (n_rows,), generator=g), torch.arange(S - 64, S)])
    rows = rows.unique().cuda()
    ref = masked_attention_rows(q, k, v, mask, bs, rows, dtype=torch.float32, head_chunk=2)
    o = out[:, :, rows].double()
    if not torch.isfinite(o).all():
        return float("nan")
    return ((o - ref.double()).norm() / ref.double().norm()).item()


def comfy_kitchen():
    """comfy_kitchen when importable with its CUDA kernels, else None (and why)."""
    try:
        import comfy_kitchen as ck

        return ck, ""
    except Exception as exc:  # not installed, or no CUDA build for this machine
        return None, f"{type(exc).__name__}: {exc}"[:200]


def _ck_version() -> str:
    ck, why = comfy_kitchen()
    if ck is None:
        return f"not importable ({why})"
    try:
        from importlib.metadata import version

        return version("comfy-kitchen")
    except Exception:  # a copied package without its dist-info (the GPU bundle)
        return getattr(ck, "__version__", "importable, version unknown")


def peer(module: str):
    """``(module, "")`` when a peer kernel package imports, else ``(None, why not)``."""
    try:
        import importlib

        return importlib.import_module(module), ""
    except Exception as exc:  # not built here (bench/build_peers.sh), or built for another GPU
        return None, f"{type(exc).__name__}: {exc}"[:200]


def _peer_version(dist: str, module: str) -> str:
    mod, why = peer(module)
    if mod is None:
        return f"not importable ({why})"
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # built in place without its dist-info
        return getattr(mod, "__version__", "importable, version unknown")


def sage_call(sage, q, k, v, layout):
    """Dense SageAttention2 on our inputs without a copy: ComfyUI's views are its "NHD" layout
    (``[B, S, H, D]`` memory), the contiguous ones its "HND"."""
    if layout == "bshd":
        qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
        return lambda: sage.sageattn(qt, kt, vt, tensor_layout="NHD").transpose(1, 2)
    return lambda: sage.sageattn(q, k, v, tensor_layout="HND")


def sparge_mask(mask: torch.Tensor, S: int, B: int, H: int, bs: int) -> torch.Tensor:
    """Our block mask at SpargeAttn's granularity: its block-sparse kernel takes one 0/1 entry
    per (query tile, key tile), 64 x 128 on Hopper, 128 x 64 elsewhere (its README and sm90
    kernel), for every batch and head, contiguous."""
    tq, tk = (64, 128) if capability(torch.device("cuda")) >= (9, 0) else (128, 64)
    nq, nk = -(-S // tq), -(-S // tk)
    if bs % tq or bs % tk:
        raise ValueError(f"SpargeAttn's {tq} x {tk} tiles do not divide mask block {bs}: "
                         "use --block-size 128")
    m = mask.cuda().repeat_interleave(bs // tq, 0).repeat_interleave(bs // tk, 1)
    return m[:nq, :nk].to(torch.int8).expand(B, H, nq, nk).contiguous()


def time_peers(row, q, k, v, mask, bs, layout, dense_flop, sparse_flop):
    """SageAttention2 (dense) and SpargeAttn (same mask) into ``row``: time, TF/s, error; the
    reason in ``*_error`` when one is missing or fails."""
    sage, why = peer("sageattention")
    if sage is None:
        row["sage_error"] = why
    else:
        try:
            fn = sage_call(sage, q, k, v, layout)
            row["sage_err"] = error_vs_reference(fn(), q, k, v, torch.ones_like(mask), bs)
            timed(row, "sage", fn, dense_flop)
        except Exception as exc:
            row["sage_ms"] = float("nan")
            row["sage_error"] = f"{type(exc).__name__}: {exc}"[:300]
    sparge, why = peer("spas_sage_attn")
    if sparge is None:
        row["sparge_error"] = why
        return
    try:
        B, H, S, _ = q.shape
        mask_id = sparge_mask(mask, S, B, H, bs)

        def fn():
            # "HND": it takes [B, H, S, D] and copies ComfyUI's views to contiguous (its cost)
            return sparge.block_sparse_sage2_attn_cuda(q, k, v, mask_id=mask_id, tensor_layout="HND")

        row["sparge_err"] = error_vs_reference(fn(), q, k, v, mask, bs)
        timed(row, "sparge", fn, sparse_flop)
    except Exception as exc:
        row["sparge_ms"] = float("nan")
        row["sparge_error"] = f"{type(exc).__name__}: {exc}"[:300]


def make_inputs(B, S, H, D, dtype, layout):
    if layout == "bshd":
        return [torch.randn(B, S, H * D, device="cuda", dtype=dtype).view(B, S, H, D)
                .transpose(1, 2) for _ in range(3)]
    return [torch.randn(B, H, S, D, device="cuda", dtype=dtype) for _ in range(3)]


def timed(row, name, fn, flop):
    """Time fn into row[name_ms] / row[name_tflops]; record the error instead of raising."""
    try:
        row[f"{name}_ms"] = cuda_time_ms(fn, target_ms=800, max_reps=15)
        row[f"{name}_tflops"] = flop / (row[f"{name}_ms"] * 1e-3) / 1e12
    except Exception as exc:  # a backend missing on this build/GPU
        row[f"{name}_ms"] = float("nan")
        row[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]


def bench_shape(key, args, results, dtype):
    """One shape, both layouts: cuDNN, flex (same mask), comfy-kitchen, ours bf16 and fp8."""
    title, F_, T, text, H, model, decay = SHAPES[key]
    if args.decay is not None:
        decay = args.decay
    bs, D, B = args.block_size, args.head_dim, args.batch
    S = F_ * T + text
    t0 = time.perf_counter()
    mask = radial_block_mask(F_, T, text_tokens=text, block_size=bs, decay_factor=decay,
                             model=model)
    mask_ms = (time.perf_counter() - t0) * 1e3
    pairs = kept_token_pairs(mask, S, bs)
    density = pairs / float(S * S)
    dense_flop = 4.0 * B * H * S * S * D
    sparse_flop = 4.0 * B * H * D * pairs
    ck, ck_why = comfy_kitchen()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for layout in args.layouts.split(","):
        torch.manual_seed(0)
        q, k, v = make_inputs(B, S, H, D, dtype, layout)
        row = {"shape": key, "title": title, "S": S, "H": H, "D": D, "B": B,
               "dtype": str(dtype), "layout": layout, "decay": decay, "density": density,
               "mask_build_ms": mask_ms}
        t0 = time.perf_counter()
        csr = block_csr(mask, bs, q.device)
        row["csr_first_ms"] = (time.perf_counter() - t0) * 1e3

        def ours(prec):
            return lambda: block_sparse_attention(q, k, v, csr, backend="triton", precision=prec)

        for name, prec in (("ours", "exact"), ("fp8", "int8-qk"), ("pv8", "int8")):
            out = ours(prec)()
            row[f"{name}_err"] = error_vs_reference(out, q, k, v, mask, bs)
            del out
            timed(row, name, ours(prec), sparse_flop)
        if not args.skip_dense:
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                timed(row, "cudnn", lambda: F.scaled_dot_product_attention(q, k, v), dense_flop)
        if not args.skip_flex:
            try:
                from torch.nn.attention.flex_attention import flex_attention

                flex = torch.compile(flex_attention, dynamic=False)
                bm = flex_block_mask(mask, S, bs)
                flex(q, k, v, block_mask=bm)
                row["flex_err"] = error_vs_reference(flex(q, k, v, block_mask=bm), q, k, v,
                                                     mask, bs)
                timed(row, "flex", lambda: flex(q, k, v, block_mask=bm), sparse_flop)
            except Exception as exc:
                row["flex_ms"] = float("nan")
                row["flex_error"] = f"{type(exc).__name__}: {exc}"[:300]
        if ck is not None and not args.skip_ck:
            # Sol-Attn takes (B, T, H, 128): the [B, S, H*D] views' own memory order
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
            if layout == "bhsd":
                qt, kt, vt = (t.contiguous() for t in (qt, kt, vt))  # its layout, not timed
            timed(row, "sol", lambda: ck.sol_attn(qt, kt, vt), dense_flop)
            del qt, kt, vt
            timed(row, "int8", lambda: ck.int8_attention(q, k, v), dense_flop)
        else:
            row["ck_error"] = ck_why
        if not args.skip_peers:
            time_peers(row, q, k, v, mask, bs, layout, dense_flop, sparse_flop)
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.sweep and key == args.shapes.split(",")[0].strip() and layout == "bshd":
            sweep(q, k, v, csr, bs, sparse_flop, key, results)
        q = k = v = None  # frees the inputs (not `del`: the lambdas above close over them)
        torch.cuda.empty_cache()


def error_table(args, results, dtype):
    """FP8 vs comfy-kitchen INT8 error on the same random inputs, both against float32."""
    ck, why = comfy_kitchen()
    B, H, D, bs = 1, 8, args.head_dim, args.block_size
    for S in (8192, 32760):
        torch.manual_seed(1)
        q, k, v = make_inputs(B, S, H, D, dtype, "bshd")
        nb = -(-S // bs)
        full = torch.ones(nb, nb, dtype=torch.bool)
        rec = {"errors": S, "H": H, "dtype": str(dtype)}
        for name, prec in (("ours_bf16_dense", "exact"), ("ours_fp8_dense", "int8-qk")):
            out = block_sparse_attention(q, k, v, full, block_size=bs, backend="triton",
                                         precision=prec)
            rec[name] = error_vs_reference(out, q, k, v, full, bs)
        rec["sdpa"] = error_vs_reference(F.scaled_dot_product_attention(q, k, v), q, k, v,
                                         full, bs)
        if ck is not None:
            try:
                rec["ck_int8"] = error_vs_reference(ck.int8_attention(q, k, v), q, k, v,
                                                    full, bs)
            except Exception as exc:
                rec["ck_int8_error"] = f"{type(exc).__name__}: {exc}"[:200]
        else:
            rec["ck_error"] = why
        results.append(rec)
        print(json.dumps(rec), flush=True)
        del q, k, v


def sweep(q, k, v, csr, bs, flop, key, results):
    """Time our kernel under several launch configurations (for the config table)."""
    D = q.shape[-1]
    bd = max(16, 1 << (D - 1).bit_length())
    variants = []
    for fp8, tma, bm, bn, warps, stages in (
        (False, True, 128, 64, 4, 2), (False, True, 128, 64, 4, 3), (False, True, 128, 128, 8, 2),
        (False, False, 128, 64, 4, 2), (True, True, 128, 64, 4, 3), (True, True, 128, 64, 4, 2),
        (True, True, 128, 128, 8, 3), (True, False, 128, 64, 4, 3),
    ):
        variants.append((fp8, TritonConfig(bm, bn, bd, warps, stages, tma)))
    default = decide(q, k, v, block_size=bs)
    print("sweep default", default.kernel, default.forward, triton_config(
        D, q.dtype, bs, capability(q.device)), flush=True)
    for fp8, cfg in variants:
        names = dict(BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=cfg.num_warps,
                     num_stages=cfg.num_stages, BLOCK_D=cfg.block_d, USE_TMA=cfg.use_tma)
        try:
            fn = lambda: triton_block_sparse_attention(q, k, v, csr, cfg, int8=fp8,  # noqa: E731
                                                       scale=D ** -0.5)
            ms = cuda_time_ms(fn, target_ms=600, max_reps=10)
            rec = {"sweep": key, "fp8": fp8, **names, "ms": ms,
                   "tflops": flop / (ms * 1e-3) / 1e12}
        except Exception as exc:
            rec = {"sweep": key, "fp8": fp8, **names,
                   "error": f"{type(exc).__name__}: {exc}"[:200]}
        results.append(rec)
        print(json.dumps(rec), flush=True)


def rate_variants(key, args, results):
    """Our rate for odd S, B = 2, fp16 and layouts against the aligned bf16 rate (same shape)."""
    _, F_, T, text, H, model, decay = SHAPES[key]
    decay = args.decay if args.decay is not None else decay
    bs, D = args.block_size, args.head_dim
    S_full = F_ * T + text
    mask_full = radial_block_mask(F_, T, text_tokens=text, block_size=bs, decay_factor=decay,
                                  model=model)
    S_al = (S_full // bs) * bs
    cases = [("aligned bf16 B=1 bhsd", S_al, 1, torch.bfloat16, "bhsd"),
             ("aligned bf16 B=1 bshd", S_al, 1, torch.bfloat16, "bshd"),
             ("odd S bf16 B=1 bshd", S_full, 1, torch.bfloat16, "bshd"),
             ("aligned fp16 B=1 bshd", S_al, 1, torch.float16, "bshd"),
             ("odd S bf16 B=2 bshd", S_full, 2, torch.bfloat16, "bshd"),
             ("odd S fp16 B=2 bshd", S_full, 2, torch.float16, "bshd")]
    base = None
    for name, S, B, dtype, layout in cases:
        nb = -(-S // bs)
        mask = mask_full[:nb, :nb].contiguous()
        if layout == "bshd":
            q, k, v = (torch.randn(B, S, H * D, device="cuda", dtype=dtype).view(B, S, H, D)
                       .transpose(1, 2) for _ in range(3))
        else:
            q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=dtype) for _ in range(3))
        flop = 4.0 * B * H * D * kept_token_pairs(mask, S, bs)
        csr = block_csr(mask, bs, q.device)
        ms = cuda_time_ms(lambda: block_sparse_attention(q, k, v, csr, backend="triton"))
        tf = flop / (ms * 1e-3) / 1e12
        base = base or tf
        rec = {"variant": name, "shape": key, "S": S, "B": B, "ms": ms, "tflops": tf,
               "vs_aligned_bf16": tf / base}
        results.append(rec)
        print(json.dumps(rec), flush=True)
        q = k = v = None  # frees the inputs (not `del`: the lambda above closes over them)
    torch.cuda.empty_cache()


def environment() -> dict:
    import triton

    props = torch.cuda.get_device_properties(0)
    env = {"gpu": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
           "triton": triton.__version__, "cuda": torch.version.cuda,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "python": platform.python_version(),
           "comfy_kitchen": _ck_version(),
           "sageattention": _peer_version("sageattention", "sageattention"),
           "spargeattn": _peer_version("spas_sage_attn", "spas_sage_attn")}
    try:
        import subprocess

        env["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        env["driver"] = "?"
    return env


def print_table(env, results):
    print()
    print(f"# {env['gpu']} | driver {env['driver']} | torch {env['torch']} | "
          f"triton {env['triton']} | comfy_kitchen {env.get('comfy_kitchen')} | "
          f"sageattention {env.get('sageattention')} | spargeattn {env.get('spargeattn')} | {env['date']}")
    hdr = ("shape", "layout", "S", "dens", "cuDNN ms", "flex ms", "sol ms", "int8 ms",
           "ours ms", "fp8 ms", "ours TF/s", "fp8 TF/s", "fp8/ours",
           "vs cuDNN", "target", "vs flex", "vs sol", "fp8 vs sol", "err", "fp8 err")
    print(" | ".join(hdr))
    for r in results:
        if "density" not in r:
            continue

        def g(name):
            return r.get(name, float("nan"))

        print(" | ".join([
            r["shape"], r["layout"], str(r["S"]), f"{r['density']:.3f}",
            f"{g('cudnn_ms'):.1f}", f"{g('flex_ms'):.1f}", f"{g('sol_ms'):.1f}",
            f"{g('int8_ms'):.1f}", f"{g('ours_ms'):.1f}", f"{g('fp8_ms'):.1f}",
            f"{g('ours_tflops'):.0f}", f"{g('fp8_tflops'):.0f}",
            f"{g('ours_ms') / g('fp8_ms'):.2f}x",
            f"{g('cudnn_ms') / g('ours_ms'):.2f}x", f"{0.9 / r['density']:.2f}x",
            f"{g('flex_ms') / g('ours_ms'):.2f}x", f"{g('sol_ms') / g('ours_ms'):.2f}x",
            f"{g('sol_ms') / g('fp8_ms'):.2f}x", f"{g('ours_err'):.1e}", f"{g('fp8_err'):.1e}",
        ]))
    peers = [r for r in results if "density" in r]
    if peers:
        print()
        print("peers (same inputs): dense SageAttention2 TF/s on all blocks, SpargeAttn and ours on "
              "kept blocks; 'x / sage' compares work per second; int8 = precision='int8' "
              "(8-bit Q.K^T and P.V)")
        print(" | ".join(("shape", "layout", "sage ms", "sage TF/s", "sage err", "sparge ms",
                          "sparge TF/s", "sparge err", "int8-qk TF/s", "int8-qk err",
                          "int8 ms", "int8 TF/s", "int8 err", "int8-qk / sage",
                          "int8 / sage", "int8-qk / sparge")))
    for r in peers:
        def g(name):
            return r.get(name, float("nan"))

        print(" | ".join([
            r["shape"], r["layout"], f"{g('sage_ms'):.1f}", f"{g('sage_tflops'):.0f}",
            f"{g('sage_err'):.1e}", f"{g('sparge_ms'):.1f}", f"{g('sparge_tflops'):.0f}",
            f"{g('sparge_err'):.1e}", f"{g('fp8_tflops'):.0f}", f"{g('fp8_err'):.1e}",
            f"{g('pv8_ms'):.1f}", f"{g('pv8_tflops'):.0f}", f"{g('pv8_err'):.1e}",
            f"{g('fp8_tflops') / g('sage_tflops'):.2f}x", f"{g('pv8_tflops') / g('sage_tflops'):.2f}x",
            f"{g('fp8_tflops') / g('sparge_tflops'):.2f}x",
        ]))
    for name in ("sage", "sparge"):
        why = next((r[f"{name}_error"] for r in peers if f"{name}_error" in r), None)
        if why:
            print(f"{name}: no column ({why})")
    for r in results:
        if "errors" in r:
            print(f"error vs float32 at S={r['errors']} (dense, random inputs): " + ", ".join(
                f"{k} {v:.2e}" for k, v in r.items() if isinstance(v, float)))
    var = [r for r in results if "variant" in r]
    if var:
        print("rate variants (TF/s on kept blocks; ratio to aligned bf16 B=1):")
        for r in var:
            print(f"  {r['shape']} {r['variant']}: S={r['S']} {r['ms']:.2f} ms "
                  f"{r['tflops']:.0f} TF/s ({r['vs_aligned_bf16']:.3f})")
    sw = [r for r in results if "sweep" in r and "ms" in r]
    if sw:
        best = sorted(sw, key=lambda r: (r["fp8"], r["ms"]))
        print("sweep:")
        for r in best:
            print(f"  {r['sweep']} fp8={r['fp8']} tma={r['USE_TMA']} BM={r['BLOCK_M']} "
                  f"BN={r['BLOCK_N']} "
                  f"w={r['num_warps']} s={r['num_stages']}: {r['ms']:.2f} ms "
                  f"{r['tflops']:.0f} TF/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list of " + ",".join(SHAPES))
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--block-size", type=int, default=128, choices=[64, 128])
    ap.add_argument("--layouts", default="bhsd,bshd",
                    help="bshd: [B, S, H*D] views as ComfyUI passes them; bhsd: contiguous")
    ap.add_argument("--errors", action="store_true",
                    help="also int8-qk vs comfy-kitchen INT8 error on the same dense random inputs")
    ap.add_argument("--decay", type=float, default=None, help="override the authors' decay")
    ap.add_argument("--skip-dense", action="store_true")
    ap.add_argument("--skip-flex", action="store_true")
    ap.add_argument("--skip-ck", action="store_true", help="do not time comfy-kitchen")
    ap.add_argument("--skip-peers", action="store_true",
                    help="do not time SageAttention2 / SpargeAttn (bench/build_peers.sh builds them)")
    ap.add_argument("--sweep", action="store_true", help="also sweep our launch configs")
    ap.add_argument("--variants", action="store_true",
                    help="also time odd S, B=2, fp16 and layouts at the first shape")
    ap.add_argument("--json", default=None, help="write all numbers to this file")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_kernel.py needs a CUDA GPU", file=sys.stderr)
        return 2
    env = environment()
    print(json.dumps(env), flush=True)
    dtype = getattr(torch, args.dtype)
    results: list[dict] = []
    keys = [k.strip() for k in args.shapes.split(",")]
    for key in keys:
        bench_shape(key, args, results, dtype)
    if args.variants:
        rate_variants(keys[0], args, results)
    if args.errors:
        error_table(args, results, dtype)
    print_table(env, results)
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "args": vars(args),
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", "/tmp/radial_inductor_cache")
    sys.exit(main())
