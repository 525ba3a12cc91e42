"""radial_core: the radial block mask and block-sparse attention, importable without ComfyUI.

Public API:
    radial_block_mask(...)       the exact radial mask (see radial_core.mask)
    block_sparse_attention(...)  Triton kernel on CUDA, PyTorch path elsewhere; a torch.library
                                 custom op (torch.compile keeps one graph); precision= one of
                                 PRECISIONS ("exact", its alias "bf16", opt-in "fp8");
                                 differentiable w.r.t. q, k, v on every backend
    supports_backward(q, backend) (True, "triton" | "pytorch"): which backward runs
"""

from . import families, geometry
from .attention import PRECISIONS, block_sparse_attention, can_use_triton, supports_backward
from .mask import mask_density, radial_block_mask

__all__ = [
    "radial_block_mask",
    "mask_density",
    "families",
    "geometry",
    "block_sparse_attention",
    "can_use_triton",
    "supports_backward",
    "PRECISIONS",
]
