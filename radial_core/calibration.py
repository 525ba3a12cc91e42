"""Calibration: how much of a model's attention the radial mask keeps, and which settings to use.

Radial Attention rests on the paper's *spatiotemporal energy decay*: post-softmax attention mass
falls as the temporal (frames) and spatial (tokens within a frame) distance between tokens grows.
This module measures it on one attention call at a time and turns the measurements into a
recommendation; it needs no ComfyUI (the "Radial Attention Calibrate" node feeds it real calls).

Per call (:func:`attention_energy`): the exact float32 softmax of a sample of video query rows
over all keys, one head chunk at a time (the memory is ``rows x S`` per head, never ``S x S``),
summed over batch and heads into one ``[rows, S]`` energy map, then reduced to

- energy by temporal distance ``|frame(query) - frame(key)|`` and by spatial distance
  ``|c - r|`` (token indices inside their frames, the distance the mask's window measures), each
  with the number of (row, key) pairs at that distance so that a mean energy per key follows;
- energy on the other tokens (text, in the joint families), which the mask always keeps;
- the energy inside the radial block mask for each candidate decay factor (the mask's own kept
  blocks; the rows and columns of other tokens are kept as the mask keeps them).

Recommendation (:func:`recommend`), the rule the README states: the lowest-density decay whose
kept energy meets the target at every probed step in every block not recommended dense; blocks
and steps that cannot meet it become dense blocks / dense steps (the first N steps, the way the
Patch node counts them). "Lowest density" is the attention work that is left: dense steps and
dense blocks count as density 1. When no decay saves at least ``min_saving`` of the attention
work, the recommendation is "keep it dense", with the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .mask import RadialMask, radial_mask

# Decay factors probed: a geometric ladder from very sparse to the largest the nodes accept.
# Masks that come out identical (the window already covers whole frames) are probed once.
DECAY_LADDER = (0.05, 0.08, 0.12, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 0.95, 1.2, 1.6, 2.0, 3.0, 5.0, 10.0)
# The authors' published operating points (their quality figures): family label -> decay.
AUTHORS_POINTS = {"Wan 2.1": 0.2, "Wan 2.2": 0.8, "HunyuanVideo": 0.95}
DEFAULT_TARGET = 0.95
MIN_SAVING = 0.10  # a recommendation must save at least this share of the attention work
_BUDGET_BYTES = 128 << 20  # float32 scores of one head chunk


@dataclass(frozen=True)
class CallGeometry:
    """The sequence of one self-attention call: ``[video (frames x T) | other]`` or, with
    ``text_first``, ``[other | video]``."""

    frames: int
    tokens_per_frame: int
    text_tokens: int = 0
    text_first: bool = False

    @property
    def video_tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def seq_len(self) -> int:
        return self.video_tokens + self.text_tokens

    @property
    def video_start(self) -> int:
        return self.text_tokens if self.text_first else 0


def sample_rows(geo: CallGeometry, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` distinct video query rows (sequence positions, sorted), uniformly at random; all of
    them when the video has no more than ``n`` tokens."""
    v = geo.video_tokens
    if n >= v:
        idx = torch.arange(v)
    else:
        idx = torch.randperm(v, generator=generator)[:n].sort().values
    return idx + geo.video_start


@dataclass
class CallStats:
    """Energy sums of sampled query rows (float64, CPU). Energies are softmax mass summed over
    rows, batch and heads; ``*_keys`` count the (row, batch x head, key) pairs behind each entry."""

    temporal: np.ndarray  # [F] energy at frame distance d
    temporal_keys: np.ndarray  # [F]
    spatial: np.ndarray  # [T] energy at in-frame token distance s
    spatial_keys: np.ndarray  # [T]
    other: float  # energy on the non-video keys (always kept by the mask)
    total: float  # all energy of the sampled rows (one per row and head, less padded keys)
    kept: np.ndarray  # [len(masks)] energy inside each mask
    rows: int  # softmax rows behind the sums (sampled rows x batch x heads)

    def merge(self, other: "CallStats") -> "CallStats":
        def add(a, b):
            if a.shape == b.shape:
                return a + b
            n = max(a.size, b.size)
            out = np.zeros(n)
            out[:a.size] += a
            out[:b.size] += b
            return out

        return CallStats(add(self.temporal, other.temporal), add(self.temporal_keys, other.temporal_keys),
                         add(self.spatial, other.spatial), add(self.spatial_keys, other.spatial_keys),
                         self.other + other.other, self.total + other.total, self.kept + other.kept,
                         self.rows + other.rows)

    @property
    def kept_fraction(self) -> np.ndarray:
        return self.kept / self.total if self.total > 0 else np.ones_like(self.kept)


def _block_rows(mask, rows_blocks: torch.Tensor, device) -> torch.Tensor:
    blocks = mask.blocks if isinstance(mask, RadialMask) else mask
    return blocks.to(torch.bool)[rows_blocks.cpu()].to(device)


def attention_energy(q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, geo: CallGeometry, masks,
                     block_size: int, *, key_padding_mask: torch.Tensor | None = None,
                     scale: float | None = None, head_chunk: int | None = None) -> CallStats:
    """The energy sums of one attention call (see the module doc).

    ``q, k``: ``[B, H, S, D]``; ``rows``: sequence positions of video query rows (from
    :func:`sample_rows`); ``masks``: block masks (``RadialMask`` or bool ``[nb, nb]``) to measure;
    ``key_padding_mask``: ``[B, S]`` True for real keys (padded keys take no softmax mass, as in
    the model). Memory: one head chunk of ``[B, chunk, rows, S]`` float32 scores (about 128 MB
    unless ``head_chunk`` says otherwise) and one ``[rows, S]`` energy map.
    """
    B, H, S, D = q.shape
    if S != geo.seq_len:
        raise ValueError(f"attention_energy: sequence of {S} tokens, geometry says {geo.seq_len}")
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    dev = q.device
    rows = rows.to(dev)
    R = int(rows.numel())
    if head_chunk is None:
        head_chunk = max(1, min(H, _BUDGET_BYTES // max(1, B * R * S * 4)))
    kpm = None
    if key_padding_mask is not None:
        kpm = key_padding_mask.to(dev, torch.bool).expand(B, S)[:, None, None, :]
    nb = -(-S // block_size)
    # the map padded to whole key blocks (zeros past S), so the per-block sums are a view of it
    padded = torch.zeros(R, nb * block_size, dtype=torch.float32, device=dev)
    energy = padded[:, :S]
    for h0 in range(0, H, head_chunk):
        sl = slice(h0, min(H, h0 + head_chunk))
        s = torch.matmul(q[:, sl, rows].float(), k[:, sl].float().transpose(-1, -2))
        s.mul_(scale)
        if kpm is not None:
            s.masked_fill_(~kpm, float("-inf"))
        # softmax in place: one [B, chunk, rows, S] buffer (every row keeps its video keys, so
        # its maximum is finite)
        s.sub_(s.amax(dim=-1, keepdim=True)).exp_()
        s.div_(s.sum(dim=-1, keepdim=True))
        if s.shape[0] * s.shape[1] == 1:
            energy += s[0, 0]  # one batch entry and head: no [rows, S] temporary for the sum
        else:
            energy += s.sum(dim=(0, 1))
        del s
    return _reduce(padded, S, rows, geo, masks, block_size, B * H)


def _reduce(padded: torch.Tensor, S: int, rows: torch.Tensor, geo: CallGeometry, masks, block_size: int,
            per_row: int) -> CallStats:
    # Reductions read the float32 map where it is (no float64 or other copy of the [rows, S] map:
    # the extra memory is what the GPU benchmark holds to a few percent); the reduced results are
    # small and summed in float64.
    dev = padded.device
    R = padded.shape[0]
    energy = padded[:, :S]
    F, T = geo.frames, geo.tokens_per_frame
    v0 = geo.video_start
    video = energy[:, v0:v0 + F * T].unflatten(1, (F, T))
    local = rows - v0
    qf = (local // T).long()  # query frame
    qr = (local % T).long()  # query token inside its frame
    # temporal: energy per key frame, binned by |frame distance|
    by_frame = video.sum(dim=2, dtype=torch.float64)  # [R, F]
    frames = torch.arange(F, device=dev)
    dist = (qf[:, None] - frames[None, :]).abs()
    temporal = torch.zeros(F, dtype=torch.float64, device=dev).index_add_(0, dist.flatten(), by_frame.flatten())
    t_keys = torch.bincount(dist.flatten(), minlength=F).double() * T
    # spatial: energy per in-frame key position (all key frames), binned by |c - r|
    by_pos = video.sum(dim=1, dtype=torch.float64)  # [R, T]
    pos = torch.arange(T, device=dev)
    sdist = (qr[:, None] - pos[None, :]).abs()
    spatial = torch.zeros(T, dtype=torch.float64, device=dev).index_add_(0, sdist.flatten(), by_pos.flatten())
    s_keys = torch.bincount(sdist.flatten(), minlength=T).double() * F
    total = float(energy.sum(dtype=torch.float64))
    other = total - float(by_frame.sum())
    # inside each mask: energy per key block, times the row's kept blocks
    per_block = padded.view(R, -1, block_size).sum(-1, dtype=torch.float64)  # [R, nb]
    rb = rows // block_size
    kept = torch.stack([(per_block * _block_rows(m, rb, dev)).sum() for m in masks]).cpu().numpy() \
        if len(masks) else np.zeros(0)
    return CallStats(temporal.cpu().numpy(), t_keys.cpu().numpy() * per_row, spatial.cpu().numpy(),
                     s_keys.cpu().numpy() * per_row, other, total, np.asarray(kept, dtype=np.float64),
                     R * per_row)


# ----------------------------------------------------------------------------------- decays
def decay_candidates(geo: CallGeometry, *, block_size: int, model: str, dist1: str,
                     ladder=DECAY_LADDER, extra=(), aliases: dict | None = None
                     ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The decays worth probing for this shape and their block densities: the ladder (plus
    ``extra``, e.g. the start point and the authors' settings), dropping a decay whose mask equals
    a lower one's. ``aliases``, when given, is filled with every decay considered -> the index of
    the probed decay with the same mask."""
    out, dens, seen = [], [], {}
    for d in sorted(set(float(x) for x in tuple(ladder) + tuple(extra) if x and x > 0)):
        m = mask_for(geo, d, block_size=block_size, model=model, dist1=dist1)
        run_ptr, lo, hi = m.runs
        key = (m.density, lo.tobytes(), hi.tobytes(), run_ptr.tobytes())
        if key not in seen:
            seen[key] = len(out)
            out.append(d)
            dens.append(m.density)
        if aliases is not None:
            aliases[d] = seen[key]
    return tuple(out), tuple(dens)


def mask_for(geo: CallGeometry, decay: float, *, block_size: int, model: str, dist1: str) -> RadialMask:
    return radial_mask(geo.frames, geo.tokens_per_frame, text_tokens=geo.text_tokens, block_size=block_size,
                       decay_factor=decay, model=model, dist1=dist1, text_first=geo.text_first)


# ----------------------------------------------------------------------------------- fits
def fit_rate(energy: np.ndarray, keys: np.ndarray, start: int = 1) -> float | None:
    """Exponential decay rate of the mean energy per key over distance (least squares on its
    logarithm, distances ``start`` and up that have keys and energy); None without two points.
    A rate r means each step of distance multiplies the energy per key by exp(-r)."""
    e = np.asarray(energy, dtype=np.float64)
    n = np.asarray(keys, dtype=np.float64)
    d = np.arange(e.size, dtype=np.float64)
    ok = (d >= start) & (n > 0) & (e > 0)
    if ok.sum() < 2:
        return None
    y = np.log(e[ok] / n[ok])
    x = d[ok]
    slope = np.polyfit(x, y, 1)[0]
    return float(-slope)


# ----------------------------------------------------------------------------------- rule
@dataclass(frozen=True)
class Recommendation:
    dense: bool  # "keep it dense"
    decay: float | None
    dense_blocks: tuple[int, ...]
    dense_steps: int  # the first N steps dense
    work: float  # attention work left (1 = dense), dense blocks and steps included
    density: float  # the decay's mask density
    kept_min: float  # lowest kept energy fraction over the sparse (step, block) pairs
    why: str = ""

    def dense_blocks_text(self) -> str:
        """The Patch node's ``dense_blocks`` text (a single block gets a trailing comma: a lone
        number means "the first N blocks" there)."""
        b = list(self.dense_blocks)
        if not b:
            return ""
        return ",".join(str(x) for x in b) + ("," if len(b) == 1 else "")


def recommend(kept: dict, densities, decays, *, steps_total: int, target: float = DEFAULT_TARGET,
              min_saving: float = MIN_SAVING, dense_reason: str = "") -> Recommendation:
    """The rule (module doc). ``kept[(step, block)]``: kept energy fraction per decay (array in
    the order of ``decays``); ``densities``: each decay's block density; ``steps_total``: steps
    in the schedule (probed steps are indices in it)."""
    if not kept:
        return Recommendation(True, None, (), 0, 1.0, 1.0, 0.0,
                              why="no attention call was probed (no video self-attention the patch would make sparse)")
    steps = sorted({s for s, _ in kept})
    blocks = sorted({b for _, b in kept})
    nblk = len(blocks)
    best = None
    for i, (decay, rho) in enumerate(zip(decays, densities)):
        ok = {key: float(v[i]) >= target for key, v in kept.items()}
        # dense_steps candidates: 0, each probed step (the probes before it dense), all steps
        for k in [0] + steps[1:] + [steps_total]:
            later = [s for s in steps if s >= k]
            if not later:
                dense_b = ()
                sparse_share = 0.0
            else:
                dense_b = tuple(b for b in blocks if not all(ok[(s, b)] for s in later if (s, b) in ok))
                sparse_share = (nblk - len(dense_b)) / nblk
            frac_steps = min(1.0, k / max(1, steps_total))
            work = frac_steps + (1 - frac_steps) * (1 - sparse_share + sparse_share * rho)
            sparse_vals = [float(kept[(s, b)][i]) for s in later for b in blocks
                           if b not in dense_b and (s, b) in kept]
            cand = (work, rho, k, dense_b, decay, min(sparse_vals) if sparse_vals else 1.0)
            if best is None or cand[:3] < best[:3]:
                best = cand
    work, rho, k, dense_b, decay, kmin = best
    if work > 1 - min_saving:
        why = (f"no decay factor keeps {target:.0%} of the attention energy in every probed block and step "
               f"while saving at least {min_saving:.0%} of the attention work (the best saves "
               f"{1 - work:.0%})")
        if dense_reason:
            why += "; " + dense_reason
        return Recommendation(True, None, tuple(blocks), steps_total, 1.0, 1.0, 1.0, why=why)
    return Recommendation(False, decay, dense_b, k, work, rho, kmin)


# ----------------------------------------------------------------------------------- result
@dataclass
class Calibration:
    """Everything one calibration measured (the node fills it; pure data for the rule, the
    picture, the report and the JSON)."""

    geo: CallGeometry
    block_size: int
    model: str  # mask model ("wan" / "hunyuan")
    dist1: str
    decays: tuple[float, ...]
    densities: tuple[float, ...]
    steps_total: int
    probe_steps: tuple[int, ...]
    stats: dict = field(default_factory=dict)  # (step, block) -> CallStats
    aliases: dict = field(default_factory=dict)  # any decay considered -> index of the probed one with its mask

    def add(self, step: int, block: int, st: CallStats) -> None:
        key = (int(step), int(block))
        got = self.stats.get(key)
        self.stats[key] = st if got is None else got.merge(st)

    def kept_fractions(self) -> dict:
        return {key: st.kept_fraction for key, st in self.stats.items()}

    def by_step(self) -> dict:
        out = {}
        for (s, _), st in sorted(self.stats.items()):
            out[s] = st if s not in out else out[s].merge(st)
        return out

    def overall(self) -> CallStats | None:
        tot = None
        for st in self.stats.values():
            tot = st if tot is None else tot.merge(st)
        return tot

    def rates(self) -> tuple[float | None, float | None]:
        """Fitted (temporal per frame, spatial per token) decay rates over all probes."""
        tot = self.overall()
        if tot is None:
            return None, None
        return fit_rate(tot.temporal, tot.temporal_keys, 1), fit_rate(tot.spatial, tot.spatial_keys, 0)

    def decay_verdict(self) -> str:
        """Why the attention does (not) suit a radial mask, in words (for "keep it dense")."""
        rt, _ = self.rates()
        tot = self.overall()
        if tot is None or rt is None:
            return "too few frames to measure a decay with frame distance"
        far = tot.temporal[2:].sum() / tot.total if tot.total > 0 else 0.0
        far_keys = tot.temporal_keys[2:].sum() / max(1.0, tot.temporal_keys.sum())
        if rt < 0.05:
            return (f"attention does not decay with frame distance here (fitted rate {rt:.3f} per frame; "
                    f"frames 2 or more apart hold {far:.0%} of the energy and {far_keys:.0%} of the keys)")
        return f"attention decays with frame distance at {rt:.3f} per frame, frames 2+ apart hold {far:.0%} of it"

    def recommend(self, target: float = DEFAULT_TARGET, min_saving: float = MIN_SAVING) -> Recommendation:
        return recommend(self.kept_fractions(), self.densities, self.decays, steps_total=self.steps_total,
                         target=target, min_saving=min_saving, dense_reason=self.decay_verdict())

    def index_of(self, decay: float) -> int:
        """Index of the probed decay whose mask ``decay`` gives (else the nearest probed one)."""
        i = self.aliases.get(float(decay))
        return i if i is not None else int(np.argmin([abs(d - decay) for d in self.decays]))

    def kept_at(self, decay: float) -> dict:
        """(step, block) -> kept fraction at ``decay`` (see :meth:`index_of`)."""
        i = self.index_of(decay)
        return {key: float(v[i]) for key, v in self.kept_fractions().items()}

    def figures(self, rec: Recommendation, target: float) -> dict:
        """JSON-ready figures (the saved result and the report)."""
        rt, rs = self.rates()
        kf = self.kept_fractions()
        mean_kept = [float(np.mean([v[i] for v in kf.values()])) if kf else None for i in range(len(self.decays))]
        min_kept = [float(np.min([v[i] for v in kf.values()])) if kf else None for i in range(len(self.decays))]
        temporal = {}
        for s, st in self.by_step().items():
            with np.errstate(divide="ignore", invalid="ignore"):
                per_key = np.where(st.temporal_keys > 0, st.temporal / np.maximum(st.temporal_keys, 1e-300), 0.0)
            temporal[str(s)] = [float(x) for x in per_key]
        return {
            "temporal_rate_per_frame": rt, "spatial_rate_per_token": rs,
            "decays": list(self.decays), "densities": list(self.densities),
            "kept_mean": mean_kept, "kept_min": min_kept,
            "energy_per_key_by_frame_distance": temporal,
            "target": target,
            "authors_points": {k: {"decay": d, "kept_mean": self._kept_near(d, mean_kept),
                                   "kept_min": self._kept_near(d, min_kept),
                                   "density": self._kept_near(d, list(self.densities))}
                               for k, d in AUTHORS_POINTS.items()},
        }

    def _kept_near(self, decay: float, values):
        return values[self.index_of(decay)] if self.decays else None


def save_result(path, payload: dict) -> None:
    """Write a calibration result (small JSON)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, sort_keys=True)


def read_result(path) -> dict:
    """A saved calibration's recommended Patch settings: ``{"decay_factor", "dense_blocks",
    "dense_steps_first", "block_size", "dist1", "family"}`` (what the Patch node and the LoRA
    loader take). Raises ValueError naming the file when it is not a calibration result."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        rec = data["recommendation"]
        settings = data["settings"]
        return {
            "decay_factor": float(rec["decay_factor"]),
            "dense_blocks": str(rec["dense_blocks"]),
            "dense_steps_first": int(rec["dense_steps"]),
            "block_size": int(settings["block_size"]),
            "dist1": str(settings["dist1"]),
            "family": str(data.get("family", "")),
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a Radial Attention calibration result ({type(exc).__name__}: {exc}). "
                         f"Fix: pick a .json file that Radial Attention Calibrate wrote.") from None
