"""Module-scoped fixtures that ComfyUI test files share, made by name: a test file binds the ones
it uses, e.g. ``lora_node = pack_module_fixture("nodes.lora_node")`` or
``wan = lora_model_fixture(lora_helpers.WAN_CONFIG, seed=0)``; pytest finds them by that name."""

from __future__ import annotations

import pytest

import lora_helpers


def pack_module_fixture(name: str):
    """A module-scoped fixture: the pack's module ``name`` (``"nodes.lora_node"``), imported the
    way ComfyUI loads the pack (the ``comfy`` fixture)."""

    @pytest.fixture(scope="module")
    def module(comfy):
        return comfy.pack_module(name)

    return module


def lora_model_fixture(config: dict, seed: int):
    """A module-scoped fixture: ``lora_helpers.build_model(config, seed=seed)``, a tiny
    random-weight model loaded by ComfyUI."""

    @pytest.fixture(scope="module")
    def model(comfy):
        return lora_helpers.build_model(config, seed=seed)

    return model
