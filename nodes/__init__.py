"""ComfyUI nodes of the pack (node API v3), one module per node; ``extension.py`` gathers them.

This package file imports nothing, so ``nodes.radial_patcher`` and friends import with only
``comfy`` present.
"""
