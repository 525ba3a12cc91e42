"""radial_core: the radial block mask and block-sparse attention, importable without ComfyUI.

Public API:
    radial_block_mask(...)       the exact radial mask (see radial_core.mask)
    radial_mask(...)             the same mask as a shared RadialMask (what the kernels take)
    block_sparse_attention(...)  Triton kernel on CUDA, PyTorch path elsewhere; a torch.library
                                 custom op (torch.compile keeps one graph); precision= one of
                                 PRECISIONS ("exact", its alias "bf16", opt-in "int8-qk",
                                 whose old name "fp8" is read as it);
                                 differentiable w.r.t. q, k, v on every backend
    block_csr(mask, block_size, device)  a bool block mask as the CSR the op takes (build it
                                 outside a compiled graph)
    decide(q, k, v, ...)         which backend, kernel, precision and launch runs (dispatch)
    supports_backward(q, backend) (True, "triton" | "pytorch"): which backward runs
"""

from . import families, geometry
from .attention import PRECISIONS, block_sparse_attention, can_use_triton, supports_backward
from .csr import BlockCSR, block_csr
from .dispatch import Decision, decide
from .mask import RadialMask, mask_density, radial_block_mask, radial_mask

__all__ = [
    "radial_block_mask",
    "radial_mask",
    "RadialMask",
    "BlockCSR",
    "block_csr",
    "decide",
    "Decision",
    "mask_density",
    "families",
    "geometry",
    "block_sparse_attention",
    "can_use_triton",
    "supports_backward",
    "PRECISIONS",
]
