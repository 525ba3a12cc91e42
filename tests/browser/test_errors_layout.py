"""Real browser (headless chromium + playwright-core) on the front end of the ComfyUI under test:
one error on the right input for a bad value, and the readout inside its node on the classic
canvas and with Vue nodes ("Nodes 2.0"). Screenshots: tests/browser/artifacts/error_panel.png,
readout_canvas.png, readout_vue_nodes.png. Runs errors_ui.mjs."""

from __future__ import annotations

import json

import pytest

from page_script import run_page_script
from radial_server import ARTIFACTS, get_server, require_browser_tools

pytestmark = [pytest.mark.comfy, pytest.mark.slow]


@pytest.fixture
def a_lora_on_the_server():
    """One LoRA with radial metadata in the server's loras folder, so the loader has one to show."""
    import torch
    from safetensors.torch import save_file

    server = get_server()
    path = server.dir / "models" / "loras" / "radial_browser_test.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 8),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(8, 4)},
              str(path), metadata={"radial_attn.decay_factor": "0.25"})
    yield path
    path.unlink(missing_ok=True)


def test_error_panel_and_readout_layout_in_a_real_browser(a_lora_on_the_server):
    require_browser_tools()
    server = get_server()
    result = run_page_script("errors_ui.mjs", server.url, str(ARTIFACTS), save_as="errors-result.json")
    for step in result["steps"]:
        print("browser:", json.dumps(step)[:400])
    assert result["ok"], f"{result.get('error')}\nserver log:\n{server.log_tail()}"
    names = [s["name"] for s in result["steps"]]
    assert names[-2:] == ["canvas layout", "vue layout"]
    assert (ARTIFACTS / "readout_vue_nodes.png").stat().st_size > 30_000
