"""Block mask -> compressed sparse rows (the kept key blocks of each query block), cached.

The radial mask is static for one video shape, so the conversion (and the copy to the GPU)
happens once per mask and device. A :class:`~.mask.RadialMask` keeps its CSRs on itself
(``RadialMask.csr`` / ``key_csr``, built from its runs by :func:`csr_from_runs` and
:func:`key_csr_from_csr` without the dense mask; its painted tensor and the stand-in that the
attention op carries lead back to it), so the pack's own masks need no cache here.
Other bool tensors (a caller's own masks, tests, benchmarks): later calls with the same tensor
object cost a dict lookup, a fresh tensor with the same content is found through a content hash.
An in-place edit of a mask is noticed through its version counter, except for inference tensors
(made under ``torch.inference_mode``), which have none: do not edit those after first use.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from .mask import RadialMask, mask_of_args

_MAX_ENTRIES = 32


@dataclass(frozen=True)
class BlockCSR:
    """Kept key blocks per query block, for ``mask_heads`` masks (1 = shared by all heads).

    All index tensors are int32 on ``device``. Rows are numbered ``h * nb + row``.
    ``row_order`` lists, per mask head, the query blocks longest row first: the PyTorch path
    groups rows in that order so that a group pads its shorter rows as little as possible.
    The Triton kernel does not read it: it walks query blocks in sequence order (a
    longest-row-first schedule measured within noise of it, docs/perf-notes.md).
    """

    nb: int
    mask_heads: int
    row_start: torch.Tensor  # [mask_heads * nb]
    row_len: torch.Tensor  # [mask_heads * nb]
    col_idx: torch.Tensor  # [kept], ascending inside each row
    row_order: torch.Tensor  # [mask_heads * nb], values in [0, nb)
    max_row_len: int
    kept: int
    device: torch.device

    @property
    def density(self) -> float:
        return self.kept / float(self.mask_heads * self.nb * self.nb)


def build_csr(mask: torch.Tensor, device: torch.device) -> BlockCSR:
    """The CSR of a bool mask ``[nb, nb]`` or ``[Hm, nb, nb]`` on ``device``, built now (no cache)."""
    m = mask.detach().to("cpu", torch.bool)
    if m.dim() == 2:
        m = m[None]
    hm, nb, _ = m.shape
    counts = m.sum(dim=-1, dtype=torch.int64).reshape(-1)  # [hm * nb]
    col_idx = m.nonzero()[:, 2].to(torch.int32)  # row-major: sorted by (head, row, col)
    return _assemble(counts, col_idx, hm, nb, device)


def _assemble(counts: torch.Tensor, col_idx: torch.Tensor, hm: int, nb: int, device) -> BlockCSR:
    """The BlockCSR of per-row counts (int64 ``[hm * nb]``) and column indices (int32, row-major)."""
    row_start = (torch.cumsum(counts, 0) - counts).to(torch.int32)
    # longest row first inside each mask head (stable, so equal rows keep their order)
    order = torch.argsort(-counts.view(hm, nb), dim=-1, stable=True).to(torch.int32).reshape(-1)
    kept = int(counts.sum())
    return BlockCSR(
        nb=nb,
        mask_heads=hm,
        row_start=row_start.to(device),
        row_len=counts.to(torch.int32).to(device),
        col_idx=col_idx.to(device),
        row_order=order.to(device),
        max_row_len=int(counts.max()) if counts.numel() else 0,
        kept=kept,
        device=torch.device(device),
    )


def csr_from_runs(nb: int, run_ptr: np.ndarray, lo: np.ndarray, hi: np.ndarray, device) -> BlockCSR:
    """The CSR of a mask ``[nb, nb]`` given as sorted, disjoint runs (``RadialMask.runs``: block
    row ``r`` keeps block columns ``lo[n]..hi[n]-1`` for ``n`` in ``run_ptr[r]..run_ptr[r+1]-1``),
    without the dense mask: the same lists as :func:`build_csr` of the painted mask. The column
    indices are one cumulative sum: 1 per entry, and at each run's first entry the jump from the
    previous run's last column."""
    length = hi.astype(np.int32) - lo
    before = np.zeros(length.size + 1, dtype=np.int64)  # entries before each run
    np.cumsum(length, out=before[1:])
    counts = before[run_ptr[1:]] - before[run_ptr[:-1]]  # int64 [nb]
    kept = int(before[-1])
    col = np.ones(kept, dtype=np.int32)
    if kept:
        step = lo.astype(np.int32)  # a copy
        step[1:] -= hi[:-1] - 1
        col[before[:-1]] = step
        np.cumsum(col, dtype=np.int32, out=col)
    return _assemble(torch.from_numpy(counts), torch.from_numpy(col), 1, nb, device)


def key_csr_from_csr(csr: BlockCSR, device) -> BlockCSR:
    """The key-side CSR (the CSR of the transposed mask) of a CPU ``csr``, without the dense mask:
    its entries ordered by (head, column) by a stable sort (a radix sort on 16-bit keys while
    ``mask_heads * nb`` < 65536), which keeps each column's rows ascending. The same lists as
    :func:`build_csr` of the transposed mask."""
    hm, nb = csr.mask_heads, csr.nb
    lens = csr.row_len.cpu().numpy()
    rows = np.repeat(np.arange(hm * nb, dtype=np.int64), lens)  # each entry's h * nb + row
    key = csr.col_idx.cpu().numpy().astype(np.int64)
    if hm > 1:
        key += rows - rows % nb  # h * nb + column
    key = key.astype(np.uint16 if hm * nb < 2**16 else np.int64)
    counts = np.bincount(key, minlength=hm * nb).astype(np.int64)
    order = np.argsort(key, kind="stable")
    col = (rows[order] % nb).astype(np.int32)
    return _assemble(torch.from_numpy(counts), torch.from_numpy(col), hm, nb, device)


class _Entry:
    __slots__ = ("ref", "version", "by_device", "key")

    def __init__(self, ref, version, key):
        self.ref = ref
        self.version = version
        self.by_device: dict[str, BlockCSR] = {}
        self.key = key


_lock = threading.Lock()
_by_identity: OrderedDict[int, _Entry] = OrderedDict()
_by_content: OrderedDict[tuple, dict[str, BlockCSR]] = OrderedDict()


def _version(mask: torch.Tensor):
    """In-place edit counter; inference tensors have none (then identity alone is trusted)."""
    try:
        return mask._version
    except RuntimeError:
        return None


def _content_key(mask: torch.Tensor) -> tuple:
    data = mask.detach().to("cpu", torch.bool).contiguous().numpy().tobytes()
    return (tuple(mask.shape), hashlib.blake2b(data, digest_size=16).hexdigest())


def device_key(device: torch.device | str) -> str:
    """``cuda`` names the current GPU: one key per real device."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def _radial_owner(mask):
    """The RadialMask that ``mask`` is (or whose painted tensor or kernel stand-in it is), else
    None. A stand-in whose mask the cache has dropped meanwhile gets the mask rebuilt (its
    entries are not the mask's); a painted tensor's own entries are, so it needs no owner."""
    if isinstance(mask, RadialMask):
        return mask
    ref = getattr(mask, "_radial_mask", None)
    if ref is None:
        return None
    owner = ref()
    if owner is None:
        args = getattr(mask, "_radial_args", None)
        return mask_of_args(args) if args is not None else None
    return owner if owner.kernel_tensor() is mask or owner._blocks is mask else None


def _refuse_orphan_stand_in(mask) -> None:
    """A RadialMask's kernel stand-in (zero strides, every entry False) that reached the CSR
    lookup without its link back (something rebuilt the tensor object on the way) would read as
    a mask that keeps nothing: refuse it, so the caller falls back instead of returning zeros."""
    if (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.numel() > 1
            and all(st == 0 for st in mask.stride()) and not bool(mask.reshape(-1)[0])):
        raise RuntimeError(
            "block mask: got a RadialMask's stand-in tensor without its link to the mask (the tensor "
            "object was rebuilt on its way to the kernel), expected the stand-in itself or a bool "
            "block mask. Fix: pass the RadialMask, or its .blocks tensor")


def block_mask_to_csr(mask: torch.Tensor, device: torch.device | str = "cpu") -> BlockCSR:
    """CSR form of a bool block mask ``[nb, nb]`` or ``[Hm, nb, nb]`` (or a ``RadialMask``) on
    ``device`` (cached: on the RadialMask, else here)."""
    owner = _radial_owner(mask)
    if owner is not None:
        return owner.csr(device)
    _refuse_orphan_stand_in(mask)
    dkey = device_key(device)
    with _lock:
        ent = _by_identity.get(id(mask))
        if ent is not None and ent.ref() is mask and ent.version == _version(mask):
            _by_identity.move_to_end(id(mask))
            csr = ent.by_device.get(dkey)
            if csr is not None:
                return csr
        else:
            ent = None
    ckey = _content_key(mask)
    with _lock:
        per_dev = _by_content.get(ckey)
        if per_dev is None:
            per_dev = {}
            _by_content[ckey] = per_dev
            while len(_by_content) > _MAX_ENTRIES:
                _by_content.popitem(last=False)
        _by_content.move_to_end(ckey)
        csr = per_dev.get(dkey)
    if csr is None:
        csr = build_csr(mask, torch.device(dkey))
        with _lock:
            per_dev[dkey] = csr
    with _lock:
        if ent is None:
            ent = _Entry(weakref.ref(mask), _version(mask), ckey)
            _by_identity[id(mask)] = ent
            while len(_by_identity) > _MAX_ENTRIES:
                _by_identity.popitem(last=False)
        ent.by_device[dkey] = csr
    return csr


def clear_cache() -> None:
    """Forget every cached conversion (tests, or to free GPU memory)."""
    with _lock:
        _by_identity.clear()
        _by_content.clear()


# --- key side (issue 14, the backward pass) -------------------------------------------------
# The backward's dK/dV pass walks, for each key block, the query blocks that keep it: the CSR
# of the transposed mask. Kept in its own small cache (identity + version, like the one above)
# so that the forward's cache can change independently.

_csc_lock = threading.Lock()
_csc_by_identity: OrderedDict[int, tuple] = OrderedDict()


def block_mask_to_key_csr(mask: torch.Tensor, device: torch.device | str = "cpu") -> BlockCSR:
    """Key-side CSR of a bool block mask ``[nb, nb]`` or ``[Hm, nb, nb]`` on ``device``.

    Row ``h * nb + kb`` lists, ascending, the query blocks ``qb`` with ``mask[(h,) qb, kb]``
    kept (the CSR of ``mask.transpose(-1, -2)``). A RadialMask (or a tensor of one) keeps it on
    itself (``RadialMask.key_csr``); other masks are cached per object, version and device.
    """
    owner = _radial_owner(mask)
    if owner is not None:
        return owner.key_csr(device)
    _refuse_orphan_stand_in(mask)
    dkey = device_key(device)
    ver = _version(mask)
    with _csc_lock:
        ent = _csc_by_identity.get(id(mask))
        if ent is not None and ent[0]() is mask and ent[1] == ver:
            _csc_by_identity.move_to_end(id(mask))
            csr = ent[2].get(dkey)
            if csr is not None:
                return csr
            per_dev = ent[2]
        else:
            per_dev = {}
            _csc_by_identity[id(mask)] = (weakref.ref(mask), ver, per_dev)
            while len(_csc_by_identity) > _MAX_ENTRIES:
                _csc_by_identity.popitem(last=False)
    csr = build_csr(mask.detach().to("cpu", torch.bool).transpose(-1, -2), torch.device(dkey))
    with _csc_lock:
        per_dev[dkey] = csr
    return csr


def clear_key_csr_cache() -> None:
    """Forget every cached key-side conversion."""
    with _csc_lock:
        _csc_by_identity.clear()
