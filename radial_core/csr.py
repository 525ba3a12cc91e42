"""Block mask -> compressed sparse rows: the kept key blocks of each query block.

:class:`BlockCSR` is what the attention op and the kernels read, in the spirit of
``flex_attention``'s ``BlockMask``: index tensors on one device, the number of blocks and the
block size they were cut with, and (for the backward pass) the key side, the CSR of the
transposed mask. A :class:`~.mask.RadialMask` builds its CSRs from its runs and keeps them
(``RadialMask.csr`` / ``key_csr``); a caller's own bool mask becomes one through
:func:`block_csr`, once per call at the Python API, or once by the caller (a compiled model
builds it outside the graph and passes it wherever a mask is taken). Nothing here is cached.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class BlockCSR:
    """Kept key blocks per query block, for ``mask_heads`` masks (1 = shared by all heads).

    All index tensors are int32 on one device. Rows are numbered ``h * nb + row``.
    ``row_order`` lists, per mask head, the query blocks longest row first: the PyTorch path
    groups rows in that order so that a group pads its shorter rows as little as possible.
    The Triton kernel does not read it: it walks query blocks in sequence order (a
    longest-row-first schedule measured within noise of it, docs/perf-notes.md).
    ``block_size``: tokens per block (the mask's, 0 where the lists were built without one).
    ``key``: the key-side CSR (:func:`key_csr_from_csr`) when the caller built it, else None.
    """

    nb: int
    mask_heads: int
    row_start: torch.Tensor  # [mask_heads * nb]
    row_len: torch.Tensor  # [mask_heads * nb]
    col_idx: torch.Tensor  # [kept], ascending inside each row
    row_order: torch.Tensor  # [mask_heads * nb], values in [0, nb)
    block_size: int = 0
    key: "BlockCSR | None" = None

    @property
    def device(self) -> torch.device:
        return self.row_start.device

    @property
    def kept(self) -> int:
        return int(self.col_idx.numel())

    @property
    def density(self) -> float:
        return self.kept / float(self.mask_heads * self.nb * self.nb)

    def to(self, device) -> "BlockCSR":
        """The same lists on ``device`` (itself when already there)."""
        device = torch.device(device)
        if _same_device(self.device, device):
            return self
        move = {f: getattr(self, f).to(device) for f in ("row_start", "row_len", "col_idx", "row_order")}
        return replace(self, key=None if self.key is None else self.key.to(device), **move)


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    return (a.index if a.index is not None else torch.cuda.current_device()) == (
        b.index if b.index is not None else torch.cuda.current_device())


def build_csr(mask: torch.Tensor, device: torch.device | str = "cpu", block_size: int = 0) -> BlockCSR:
    """The CSR of a bool mask ``[nb, nb]`` or ``[Hm, nb, nb]`` on ``device``."""
    m = mask.detach().to("cpu", torch.bool)
    if m.dim() == 2:
        m = m[None]
    hm, nb, _ = m.shape
    counts = m.sum(dim=-1, dtype=torch.int64).reshape(-1)  # [hm * nb]
    col_idx = m.nonzero()[:, 2].to(torch.int32)  # row-major: sorted by (head, row, col)
    return _assemble(counts, col_idx, hm, nb, device, block_size)


def block_csr(mask: torch.Tensor, block_size: int, device: torch.device | str = "cpu",
              key_side: bool = False) -> BlockCSR:
    """A caller's bool block mask as the :class:`BlockCSR` that ``block_sparse_attention``
    takes: query side, and with ``key_side`` the key side too (needed for gradients)."""
    csr = build_csr(mask, "cpu", block_size)
    key = key_csr_from_csr(csr, device) if key_side else None
    return replace(csr.to(device), key=key)


def _assemble(counts: torch.Tensor, col_idx: torch.Tensor, hm: int, nb: int, device,
              block_size: int = 0) -> BlockCSR:
    """The BlockCSR of per-row counts (int64 ``[hm * nb]``) and column indices (int32, row-major)."""
    row_start = (torch.cumsum(counts, 0) - counts).to(torch.int32)
    # longest row first inside each mask head (stable, so equal rows keep their order)
    order = torch.argsort(-counts.view(hm, nb), dim=-1, stable=True).to(torch.int32).reshape(-1)
    return BlockCSR(
        nb=nb,
        mask_heads=hm,
        row_start=row_start.to(device),
        row_len=counts.to(torch.int32).to(device),
        col_idx=col_idx.to(device),
        row_order=order.to(device),
        block_size=block_size,
    )


def csr_from_runs(nb: int, run_ptr: np.ndarray, lo: np.ndarray, hi: np.ndarray, device,
                  block_size: int = 0) -> BlockCSR:
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
    return _assemble(torch.from_numpy(counts), torch.from_numpy(col), 1, nb, device, block_size)


def key_csr_from_csr(csr: BlockCSR, device) -> BlockCSR:
    """The key-side CSR (the CSR of the transposed mask) of ``csr``, without the dense mask:
    its entries ordered by (head, column) by a stable sort (a radix sort on 16-bit keys while
    ``mask_heads * nb`` < 65536), which keeps each column's rows ascending. The same lists as
    :func:`build_csr` of the transposed mask: row ``h * nb + kb`` lists, ascending, the query
    blocks that keep key block ``kb`` (the backward's dK/dV walk)."""
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
    return _assemble(torch.from_numpy(counts), torch.from_numpy(col), hm, nb, device, csr.block_size)


def device_key(device: torch.device | str) -> str:
    """``cuda`` names the current GPU: one key per real device."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)
