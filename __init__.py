"""Radial Attention for ComfyUI.

ComfyUI imports this file as the custom-node package. The nodes live in ``nodes/``; all mask
math and the attention kernels live in ``radial_core/`` (importable without ComfyUI).
"""

try:
    import comfy_api.latest  # noqa: F401
except ImportError:  # imported outside ComfyUI (a test runner, another tool): nodes need ComfyUI
    __all__ = []
else:
    from .nodes.extension import comfy_entrypoint  # (ComfyUI's v3 node-pack entry point)

    # Front-end extension (density readout); ComfyUI serves this folder to the browser.
    WEB_DIRECTORY = "./web/js"

    __all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
