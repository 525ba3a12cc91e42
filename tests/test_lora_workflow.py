"""Radial LoRA Loader inside a real ComfyUI prompt: ComfyUI's validate_prompt and PromptExecutor
run UNETLoader (a tiny random-weight Wan file) -> Radial LoRA Loader -> Preview as Text."""

from __future__ import annotations

import asyncio

import pytest
import torch

import lora_helpers as H
from conftest import script_module
from lora_helpers import Target

pytestmark = pytest.mark.comfy


def _load_preview_any(comfy):
    if "PreviewAny" not in comfy.nodes.NODE_CLASS_MAPPINGS:
        path = str(comfy.dir / "comfy_extras" / "nodes_preview_any.py")
        assert asyncio.run(comfy.nodes.load_custom_node(path, module_parent="comfy_extras"))


def _run(prompt):
    from conftest import script_module

    headless = script_module("comfy_headless")
    valid, error, outputs, node_errors = headless.validate(prompt)
    executor = headless.new_executor()
    if valid:
        executor.execute(prompt, "lora-prompt", {}, outputs)
    return valid, error, node_errors, executor


@pytest.fixture(scope="module")
def unet_file(comfy, tmp_path_factory):
    """A tiny random-weight Wan 2.1 file in a diffusion_models folder; returns its state dict."""
    import folder_paths
    from comfy.model_detection import model_config_from_unet_config
    from safetensors.torch import save_file

    _load_preview_any(comfy)
    models = tmp_path_factory.mktemp("diffusion_models")
    cfg = model_config_from_unet_config(dict(H.WAN_CONFIG))
    g = torch.Generator().manual_seed(0)
    sd = {
        k: torch.randn(v.shape, generator=g) * 0.02
        for k, v in cfg.get_model({}, "").diffusion_model.state_dict().items()
    }
    save_file(sd, str(models / "tiny_wan_lora_test.safetensors"))
    folder_paths.add_model_folder_path("diffusion_models", str(models))
    return sd


def _prompt(lora_name, strength=0.5):
    return {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "tiny_wan_lora_test.safetensors", "weight_dtype": "default"},
        },
        "2": {
            "class_type": "RadialLoraLoader",
            "inputs": {
                "model": ["1", 0],
                "lora_name": lora_name,
                "strength": strength,
                "radial_mode": "auto",
                "decay_factor": 0.0,
                "block_size": "from LoRA",
                "dense_blocks": "",
                "dense_steps_first": -1,
                "dense_steps_last": -1,
                "dist1": "from LoRA",
                "family": "from LoRA",
                "backend": "pytorch",
            },
        },
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
    }


def test_prompt_with_unet_loader_and_radial_lora(comfy, unet_file, tmp_path):
    import folder_paths

    loras = tmp_path / "loras"
    targets = [Target("transformer.blocks.0.attn1.to_q", "diffusion_model.blocks.0.self_attn.q.weight", 128, 128)]
    tensors, mats = H.make_lora(targets, "diffusers")
    H.write_safetensors(loras / "wf_radial.safetensors", tensors,
                        metadata={"radial_attn.decay_factor": "0.25", "radial_attn.dense_steps": "1"})
    folder_paths.add_model_folder_path("loras", str(loras))

    valid, error, node_errors, executor = _run(_prompt("wf_radial.safetensors"))
    assert valid, f"ComfyUI rejected the prompt: {error} {node_errors}"
    assert executor.success, executor.status_messages
    model, report = (o[0] for o in script_module("comfy_headless").cached_output(executor, "2").outputs)
    assert "matched 2 of 2 LoRA tensors" in report and "decay_factor=0.25 (metadata)" in report
    assert script_module("comfy_headless").cached_output(executor, "3").ui["output"]["text"] == [report]
    cfg = comfy.pack_module("nodes.radial_patcher").get_radial_config(model)
    assert cfg["decay_factor"] == pytest.approx(0.25) and cfg["dense_steps_first"] == 1 and cfg["backend"] == "pytorch"
    w = H.patched_weights(model)["diffusion_model.blocks.0.self_attn.q.weight"]
    up, down = mats["transformer.blocks.0.attn1.to_q"]
    torch.testing.assert_close(w, unet_file["blocks.0.self_attn.q.weight"] + 0.5 * up @ down, rtol=1e-5, atol=1e-6)


def test_prompt_with_a_truncated_or_missing_lora_is_refused_when_queued(comfy, unet_file, tmp_path):
    import folder_paths

    loras = tmp_path / "loras_bad"
    tensors, _ = H.make_lora([Target("diffusion_model.blocks.0.self_attn.q", "x", 128, 128)], "comfyui")
    p = H.write_safetensors(loras / "cut_in_half.safetensors", tensors)
    p.write_bytes(p.read_bytes()[:-64])
    folder_paths.add_model_folder_path("loras", str(loras))
    # the header shows the cut: refused when queued, one error on lora_name, nothing runs
    valid, error, node_errors, executor = _run(_prompt("cut_in_half.safetensors"))
    assert not valid, "a truncated LoRA passed queue validation"
    refused = node_errors["2"]["errors"]
    assert [e["extra_info"]["input_name"] for e in refused] == ["lora_name"], refused
    # named relative to the loras folder, never by the server's path
    message = refused[0]["details"]
    assert f"LoRA {p.name}: truncated" in message and str(loras) not in message, message
    # a name that is not in the loras folders: the node's own check, on both ComfyUI versions
    valid, _, node_errors, executor = _run(_prompt("missing.safetensors"))
    assert not valid
    refused = node_errors["2"]["errors"]
    assert [e["extra_info"]["input_name"] for e in refused] == ["lora_name"], refused
    assert "'missing.safetensors' is not in the loras folders" in refused[0]["details"], refused
