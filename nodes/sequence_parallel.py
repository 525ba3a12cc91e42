"""Radial attention under Ulysses sequence parallelism (raylight), one attention call at a time.

Under Ulysses each rank holds a contiguous chunk of the sequence for all heads; one all-to-all
turns that into the whole sequence for ``heads / degree`` heads, attention runs locally, and a
second all-to-all turns it back. The radial mask is the same for every head, so the local call is
the one-GPU call with fewer heads, and the result is the one-GPU result (each head is computed on
its own). What differs is the order and length of the gathered sequence:

- the engine pads the sequence to a multiple of the degree (zeros at the end): the tail is cut
  before planning and comes back as zero rows;
- joint models (HunyuanVideo's double blocks under raylight) pad text and video separately and
  concatenate each rank's ``[text_r | video_r]``, so the gathered order is
  ``[text_0 video_0 | text_1 video_1 | ...]``: the tokens are gathered into the order the mask
  expects (``[video | text]`` or ``[text | video]``) and scattered back;
- the plan reads the call as one logical call (all heads, the real sequence), so LTX-2's
  video/audio test sees the model's width, not the local ``heads / degree`` width.

:func:`sequence_parallel_attention` is that call (all-to-all, local attention, all-to-all back),
tested on CPU over gloo against the one-process override. :class:`RadialUlyssesAttention` puts
it in place of raylight's ``xfuser_optimized_attention`` inside a Ray worker; it plans with the
pack's own planner and runs the pack's kernel, and hands every call it does not take (cross-
attention, dense blocks and steps, calls outside a patched run, ring degree > 1) to raylight's
function unchanged. :func:`install` wires both into a worker's model. ``radial_core`` knows
nothing of any of this.

raylight binds ``xfuser_optimized_attention`` at import time in each model family's
``xdit_context_parallel`` module and passes no ``transformer_options`` to it, so the wrapper reads
them from a context variable that a DIFFUSION_MODEL wrapper sets. This follows raylight's code as
read at :data:`RAYLIGHT_TESTED`; where a raylight version lacks those names, :func:`install` says
so once and attention stays raylight's own.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

SP_KEY = "radial_attention_sp"  # the DIFFUSION_MODEL wrapper's key
# the raylight commit this adapter was read against (its main branch at that commit)
RAYLIGHT_TESTED = "komikndr/raylight c049571"
# family module -> how its self-attention calls lay out the sequence ("plain": one stream padded at
# the end, e.g. Wan and LTX-2; "joint": HunyuanVideo's text + video through the Flux blocks)
RAYLIGHT_MODULES = {
    "raylight.diffusion_models.wan.xdit_context_parallel": "plain",
    "raylight.diffusion_models.lightricks.xdit_context_parallel": "plain",
    "raylight.diffusion_models.flux.xdit_context_parallel": "joint",
}
ATTENTION_NAME = "xfuser_optimized_attention"
OVERRIDE_KEY = "optimized_attention_override"  # ComfyUI's key (radial_patcher's, without importing comfy)

_TOLD: set[str] = set()  # raylight modules already reported as unlike the one read
# transformer_options of the model call being run in this thread (set by the DIFFUSION_MODEL wrapper)
_CURRENT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("radial_attention_sp_options", default=None)


# --- the all-to-all ---------------------------------------------------------------------------

def _yunchang_all_to_all():
    try:
        from yunchang.comm.all_to_all import SeqAllToAll4D  # optional, raylight's own
    except Exception:  # noqa: BLE001 - not installed (or broken): the equivalent below
        return None
    return SeqAllToAll4D


def _all_to_all_4d(x: torch.Tensor, group, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    """``[B, S/N, H, D]`` -> ``[B, S, H/N, D]`` (scatter 2, gather 1) and back (scatter 1, gather 2),
    with the layout of yunchang's ``all_to_all_4D`` (rank r gets heads r*H/N ... and the chunks in
    rank order). Used where yunchang is not installed."""
    n = dist.get_world_size(group)
    if n == 1:
        return x
    B, a, b, D = x.shape
    if (scatter_dim, gather_dim) == (2, 1):  # x = [B, s, H, D]
        s, H = a, b
        send = x.reshape(B, s, n, H // n, D).permute(2, 1, 0, 3, 4).contiguous()  # [n, s, B, h, D]
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send, group=group)
        return recv.reshape(n * s, B, H // n, D).transpose(0, 1).contiguous()  # [B, S, h, D]
    if (scatter_dim, gather_dim) == (1, 2):  # x = [B, S, h, D]
        S, h = a, b
        send = x.reshape(B, n, S // n, h, D).permute(1, 3, 2, 0, 4).contiguous()  # [n, h, s, B, D]
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send, group=group)
        return recv.reshape(n * h, S // n, B, D).permute(2, 1, 0, 3).contiguous()  # [B, s, H, D]
    raise ValueError(f"all-to-all: scatter {scatter_dim} / gather {gather_dim} not supported")


def all_to_all_4d(x: torch.Tensor, group, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    """yunchang's ``SeqAllToAll4D`` (raylight's own all-to-all) where it imports, else the same
    exchange written with ``all_to_all_single``."""
    impl = _yunchang_all_to_all()
    if impl is not None:
        # use_sync=False: True calls torch.cuda.synchronize, which a CPU (gloo) run cannot
        return impl.apply(group, x.contiguous(), scatter_dim, gather_dim, False)
    return _all_to_all_4d(x, group, scatter_dim, gather_dim)


# --- the gathered sequence and the order the mask expects -------------------------------------

@dataclass(frozen=True)
class SPLayout:
    """Where each real token of the gathered (padded) sequence sits.

    ``segments``: ``(name, real length)`` in the engine's order, names ``"video"`` and ``"text"``.
    ``per_rank``: each segment is padded to a multiple of ``degree`` and every rank holds its chunk
    of each segment in turn (raylight's HunyuanVideo double blocks); otherwise the segments follow
    each other and the padding is one tail. ``text_first``: the order the mask expects for joint
    sequences (the plan's ``fwd.text_first``).
    """

    degree: int
    padded_len: int
    segments: tuple[tuple[str, int], ...]
    per_rank: bool = False
    text_first: bool = False

    @property
    def seq_len(self) -> int:
        return sum(n for _, n in self.segments)

    def _chunk(self, length: int) -> int:
        return -(-length // self.degree)

    def valid(self) -> bool:
        if self.per_rank:
            return self.degree * sum(self._chunk(n) for _, n in self.segments) == self.padded_len
        return self.padded_len - self.degree < self.seq_len <= self.padded_len

    def canonical_index(self) -> torch.Tensor | None:
        """Gathered position of each token in the mask's order; None when that is ``[:seq_len]``."""
        return _canonical_index(self)


@functools.lru_cache(maxsize=64)
def _canonical_index(layout: SPLayout) -> torch.Tensor | None:
    pos: dict[str, torch.Tensor] = {}
    if layout.per_rank:
        chunk = sum(layout._chunk(n) for _, n in layout.segments)  # tokens per rank
        off = 0
        for name, n in layout.segments:
            c = layout._chunk(n)
            j = torch.arange(n)
            pos[name] = (j // c) * chunk + off + j % c
            off += c
    else:
        off = 0
        for name, n in layout.segments:
            pos[name] = torch.arange(off, off + n)
            off += n
    order = ("text", "video") if layout.text_first else ("video", "text")
    idx = torch.cat([pos[name] for name in order if name in pos])
    if torch.equal(idx, torch.arange(layout.seq_len)):
        return None
    return idx


def to_canonical(t: torch.Tensor, layout: SPLayout) -> torch.Tensor:
    """``[B, padded_len, h, D]`` -> ``[B, seq_len, h, D]`` in the mask's order."""
    idx = layout.canonical_index()
    if idx is None:
        return t[:, : layout.seq_len]
    return t.index_select(1, idx.to(t.device))


def from_canonical(t: torch.Tensor, layout: SPLayout) -> torch.Tensor:
    """Inverse of :func:`to_canonical`; padding rows come back as zeros."""
    B, _, h, D = t.shape
    out = t.new_zeros(B, layout.padded_len, h, D)
    idx = layout.canonical_index()
    if idx is None:
        out[:, : layout.seq_len] = t
    else:
        out.index_copy_(1, idx.to(t.device), t)
    return out


def sequence_parallel_attention(q, k, v, heads: int, attend, layout: SPLayout, group, *,
                                skip_reshape: bool = False, skip_output_reshape: bool = False) -> torch.Tensor:
    """One Ulysses self-attention call: all-to-all, ``attend`` on the local heads, all-to-all back.

    ``q, k, v``: this rank's chunk, ``[B, s, H*D]`` (or ``[B, H, s, D]`` with ``skip_reshape``),
    ComfyUI's convention. ``attend(q, k, v)`` takes and returns ``[B, H/N, seq_len, D]`` in the
    mask's order. Returns this rank's chunk of the output in ComfyUI's layout.
    """
    if skip_reshape:
        B, H, s, D = q.shape
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    else:
        B, s, HD = q.shape
        H, D = heads, HD // heads
        q, k, v = (t.reshape(B, s, H, D) for t in (q, k, v))
    full = [to_canonical(all_to_all_4d(t, group, 2, 1), layout).transpose(1, 2) for t in (q, k, v)]
    out = attend(*full)  # [B, h, L, D]
    out = from_canonical(out.transpose(1, 2), layout)
    out = all_to_all_4d(out, group, 1, 2)  # [B, s, H, D]
    if skip_output_reshape:
        return out.transpose(1, 2)
    return out.reshape(B, s, H * D)


# --- inside a raylight worker -----------------------------------------------------------------

def raylight_groups():
    """(Ulysses process group, its size, this rank in it, ring size) from yunchang's globals,
    which xfuser's ``initialize_model_parallel`` fills in raylight's workers; None outside one."""
    try:
        from yunchang.globals import PROCESS_GROUP  # only inside a raylight worker
    except Exception:  # noqa: BLE001
        return None
    pg = getattr(PROCESS_GROUP, "ULYSSES_PG", None)
    if pg is None or not dist.is_initialized():
        return None
    ring = getattr(PROCESS_GROUP, "RING_PG", None)
    return pg, dist.get_world_size(pg), dist.get_rank(pg), (dist.get_world_size(ring) if ring is not None else 1)


def _segments_for(kind: str, fwd, topts: dict, padded_len: int, degree: int) -> SPLayout:
    """The layout of a self-attention call of raylight's family module ``kind`` (as read at
    :data:`RAYLIGHT_TESTED`): Wan and LTX-2 pad one stream at the end; HunyuanVideo's single blocks
    see ``[text | video]`` padded at the end, its double blocks per-rank ``[text_r | video_r]``."""
    video = fwd.seq_frames * fwd.tokens_per_frame
    if kind != "joint":
        n = video if padded_len - degree < video <= padded_len else padded_len  # else: not video
        return SPLayout(degree, padded_len, (("video", n),))
    chunk = -(-video // degree)
    if topts.get("block_type") == "double":
        text_padded = padded_len - degree * chunk
        text = fwd.context_len
        if text is None or not text_padded - degree < text <= text_padded:
            text = max(text_padded, 0)  # text length unknown: its pad counts as text, as raylight attends it
        return SPLayout(degree, padded_len, (("text", text), ("video", video)), True, fwd.text_first)
    sizes = topts.get("img_slice")  # raylight: [text, video] real lengths before the single blocks
    text = int(sizes[0]) if isinstance(sizes, (list, tuple)) and sizes else max(padded_len - video, 0)
    if not padded_len - degree < text + video <= padded_len:
        text = max(padded_len - video, 0)
    return SPLayout(degree, padded_len, (("text", text), ("video", video)), False, fwd.text_first)


class RadialUlyssesAttention:
    """Stands in for raylight's ``xfuser_optimized_attention`` in one family module.

    Same signature as raylight's function. Video self-attention calls of a patched run that the
    plan keeps sparse go through :func:`sequence_parallel_attention` with the pack's kernel; every
    other call goes to raylight's function (``original``) unchanged.
    """

    def __init__(self, original, kind: str):
        self.original = original
        self.kind = kind

    @torch.compiler.disable
    def __call__(self, q, k, v, heads, join_q=None, join_k=None, join_v=None, mask=None, attn_precision=None,
                 skip_reshape=False, skip_output_reshape=False, *args, **kwargs):
        def raylight_path():
            return self.original(q, k, v, heads, join_q, join_k, join_v, mask, attn_precision, skip_reshape,
                                 skip_output_reshape, *args, **kwargs)

        topts = _CURRENT.get()
        if topts is None or join_q is not None or q.shape != k.shape or q.shape != v.shape:
            return raylight_path()  # not a patched run, xfuser's joint tensors, or cross-attention
        groups = raylight_groups()
        if groups is None:
            return raylight_path()
        group, degree, rank, ring = groups
        return self.attend(q, k, v, heads, topts, group, degree, rank, ring, raylight_path,
                           skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape)

    def attend(self, q, k, v, heads, topts, group, degree, rank, ring, fallback, *, skip_reshape, skip_output_reshape):
        """The decision and the call for one self-attention call (``fallback``: raylight's path)."""
        from .attention_override import RadialAttentionOverride, log_dense, log_plan
        from .attention_plan import Call, plan_call
        from .run_state import RUN_KEY, forward_of

        override = topts.get(OVERRIDE_KEY)
        run = topts.get(RUN_KEY)
        fwd = forward_of(topts)
        if not isinstance(override, RadialAttentionOverride) or run is None or fwd is None:
            return fallback()
        fwd.seen = True
        log = rank == 0  # every rank plans the same; one rank tells the user
        if ring > 1:
            if log:
                run.once("sp-ring", logging.WARNING,
                         f"Radial Attention: ring degree {ring} is not supported (radial needs every "
                         f"rank's keys at every ring step); raylight's dense attention runs. Use "
                         f"Ulysses only (ring degree 1).")
            return fallback()
        if skip_reshape:
            B, H, s, D = q.shape
        else:
            B, s, HD = q.shape
            H, D = heads, HD // heads
        layout = _segments_for(self.kind, fwd, topts, s * degree, degree)
        # the plan reads one logical call: all heads and the real sequence (shapes only). raylight's
        # CFG parallelism gives each CFG group a share of the model call's batch: the same video
        plan_batch = fwd.batch if B < fwd.batch and fwd.batch % B == 0 else B
        logical = q.new_empty(()).expand(plan_batch, H, layout.seq_len, D)
        call = Call(logical, logical, logical, H, None, True, True)
        cfg = override.config
        plan = plan_call(call, fwd, cfg, topts)
        if plan.video:
            fwd.advance()
        if plan.sparse and (H % degree or not layout.valid()):
            plan = plan.dense_because(f"a sequence-parallel layout the adapter cannot read ({H} heads, "
                                      f"Ulysses degree {degree}, {s * degree} tokens)", True)
        if log:
            log_plan(run, cfg, fwd, call, plan)
            if plan.mask is not None:
                run.once("sp-shape", logging.INFO,
                         f"Radial Attention: Ulysses degree {degree}, {H // degree} of {H} heads per rank, "
                         f"{layout.seq_len} tokens (+{layout.padded_len - layout.seq_len} padding)")
        if plan.sparse:
            try:
                out = sequence_parallel_attention(
                    q, k, v, heads, lambda a, b, c: override.sparse_attention(plan, call, a, b, c), layout, group,
                    skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape)
            except Exception as exc:  # noqa: BLE001 - as the one-GPU override: a kernel error goes dense
                # Same shapes on every rank, so a kernel error is every rank's: all of them go dense.
                plan = plan.dense_because(f"a sparse-kernel error ({type(exc).__name__}: {exc})", True)
                if log:
                    log_dense(run, plan)
            else:
                run.sparse_calls += 1
                return out
        run.count_dense(plan.reason)
        return fallback()


class _DiffusionModelWrapper:
    """Keeps the model call's ``transformer_options`` where :class:`RadialUlyssesAttention` reads them."""

    def __call__(self, executor, *args, **kwargs):
        topts = kwargs.get("transformer_options")
        if not isinstance(topts, dict):
            from .run_state import RUN_KEY

            topts = next((a for a in args if isinstance(a, dict) and RUN_KEY in a), None)
        # raylight imports a family's module when it injects USP at model load, which can come
        # after the patch: bind any that appeared since
        if not rebind_raylight(import_missing=False) and "raylight" in sys.modules and SP_KEY not in _TOLD:
            _TOLD.add(SP_KEY)
            logger.warning("Radial Attention (Ray): none of raylight's model modules %s is loaded in this "
                           "worker; attention stays raylight's own (the pack follows %s).",
                           list(RAYLIGHT_MODULES), RAYLIGHT_TESTED)
        token = _CURRENT.set(topts)
        try:
            return executor(*args, **kwargs)
        finally:
            _CURRENT.reset(token)


def rebind_raylight(import_missing: bool = True) -> list[str]:
    """Put :class:`RadialUlyssesAttention` in place of raylight's attention in each family module
    (imported here, or only those already imported); returns the modules done. Idempotent."""
    done = []
    for name, kind in RAYLIGHT_MODULES.items():
        mod = sys.modules.get(name)
        if mod is None and import_missing:
            try:
                mod = importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - a family raylight cannot import here
                logger.debug("Radial Attention (Ray): %s not imported (%s)", name, exc)
        if mod is None:
            continue
        fn = getattr(mod, ATTENTION_NAME, None)
        if fn is None:
            if name in _TOLD:
                continue
            _TOLD.add(name)
            logger.warning(
                "Radial Attention (Ray): raylight's %s has no %s; this raylight differs from the one the "
                "pack was written against (%s), so attention there stays raylight's own (dense). Please "
                "report the raylight version.", name, ATTENTION_NAME, RAYLIGHT_TESTED)
            continue
        if not isinstance(fn, RadialUlyssesAttention):
            setattr(mod, ATTENTION_NAME, RadialUlyssesAttention(fn, kind))
        done.append(name)
    return done


def install(model):
    """Inside a raylight worker, after the radial patch: the wrapper that exposes each model call's
    options, and raylight's attention rebound (see the module doc). Returns ``model``."""
    import comfy.patcher_extension as pe  # nodes/ may import ComfyUI

    model.remove_wrappers_with_key(pe.WrappersMP.DIFFUSION_MODEL, SP_KEY)
    model.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, SP_KEY, _DiffusionModelWrapper())
    # modules raylight has not imported yet are bound at the first model call (the wrapper)
    logger.debug("Radial Attention (Ray): raylight attention bound in %s", rebind_raylight())
    return model


# --- the Ray node's settings, checked in the ComfyUI process and in each worker ---------------

def sequence_parallel_problem(parallel: dict | None, heads: int | None = None) -> str | None:
    """Why these raylight settings (its ``parallel_dict``) cannot run radial attention, or None.

    Ring attention: radial keeps blocks in every (query chunk, key chunk) pair, so no ring step can
    be skipped and the local call would need a rectangular kernel with LSE merging: refused, with
    the fix. Ulysses splits the heads: they must divide by its degree (``heads`` where known).
    """
    parallel = parallel or {}
    ring = int(parallel.get("ring_degree") or 1)
    ulysses = int(parallel.get("ulysses_degree") or 1)
    if parallel.get("is_xdit") and ring > 1:
        return (f"raylight's ring_degree is {ring}; Radial Attention runs under Ulysses only (ring "
                f"degree 1): the radial mask keeps blocks between every pair of ring chunks, so ring "
                f"would move all keys at every step and skip nothing. Fix: set ring_degree 1 and "
                f"ulysses_degree {ulysses * ring} in Ray Init Actor.")
    if parallel.get("is_xdit") and heads and heads % ulysses:
        good = [d for d in range(2, min(heads, 8) + 1) if heads % d == 0]
        return (f"raylight's ulysses_degree {ulysses} does not divide this model's {heads} attention "
                f"heads (Ulysses gives each GPU heads/degree heads). Fix: use a ulysses_degree of {good}.")
    return None


def model_heads(model) -> int | None:
    """Attention heads of the diffusion model (Wan, HunyuanVideo: ``num_heads``; LTX: ``num_attention_heads``)."""
    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    for name in ("num_heads", "num_attention_heads", "heads"):
        value = getattr(dm, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def patch_worker_model(model, settings: dict):
    """In one raylight worker: check the Ulysses settings against the model, apply the radial patch
    and wire it into raylight's attention (:func:`install`). ``settings``: the patch's inputs plus
    ``"parallel"`` (raylight's ``parallel_dict`` as the node read it)."""
    from .radial_patcher import apply_radial_patch, get_radial_config

    parallel = settings.pop("parallel", None)
    if model is None:
        raise ValueError("Radial Attention Patch (Ray): this Ray worker has no model loaded. Fix: connect the "
                         "output of a raylight model loader (Load Diffusion Model (Ray)).")
    problem = sequence_parallel_problem(parallel, model_heads(model))
    if problem is not None:
        raise ValueError(f"Radial Attention Patch (Ray): {problem}")
    patched = apply_radial_patch(model, **settings)
    if get_radial_config(patched) is None:
        return patched  # not a supported video model: passed through, with apply_radial_patch's warning
    return install(patched)
