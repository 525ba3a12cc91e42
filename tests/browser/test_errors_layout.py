"""Real browser (headless chromium + playwright-core) on the front end of the ComfyUI under test:
one error on the right input for a bad value; the longest message of each kind shown whole inside
its node on the classic canvas and with Vue nodes ("Nodes 2.0"), each renderer set by the test;
no failed request, console error or deprecation warning of ours while typing values the server
refuses. Screenshots: tests/browser/artifacts/error_panel.png, readout_canvas.png,
readout_vue_nodes.png. Runs errors_ui.mjs, on each front end of ``FRONT_ENDS``."""

from __future__ import annotations

import json

import pytest

from page_script import run_page_script
from radial_server import artifacts_for, front_end, front_end_server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.comfy, pytest.mark.slow]


LONG = "radial_" + "wan21_t2v_14B_length_extension_" * 4  # a long file name (the readout wraps it)
BROKEN = LONG + "broken.safetensors"  # not a safetensors file: the server's file error, with the fix
GOOD = LONG + "lora.safetensors"


@pytest.fixture
def loras_on_the_server(front_end_server):
    """LoRAs in the server's loras folder, so the loader has them in its list: one with radial
    metadata (a long name) and one the server cannot read (a long name)."""
    import torch
    from safetensors.torch import save_file

    folder = front_end_server.dir / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in ("radial_browser_test.safetensors", GOOD, BROKEN)]
    for path in paths[:2]:
        save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 8),
                   "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(8, 4)},
                  str(path), metadata={"radial_attn.decay_factor": "0.25"})
    paths[2].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)


def test_error_panel_and_readout_layout_in_a_real_browser(front_end, loras_on_the_server, front_end_server):
    server = front_end_server
    out = artifacts_for(front_end)
    result = run_page_script("errors_ui.mjs", server.url, str(out), BROKEN, GOOD,
                             save_as=f"errors-result-{front_end}.json")
    for step in result["steps"]:
        print("browser:", json.dumps(step)[:400])
    assert result["ok"], f"{result.get('error')}\nserver log:\n{server.log_tail()}"
    assert result["consoleErrors"] == []
    names = [s["name"] for s in result["steps"]]
    assert names[-3:] == ["canvas layout", "vue layout", "typed out-of-range values"]
    layouts = {s["name"]: s for s in result["steps"]}
    assert layouts["canvas layout"]["vue"] is False and layouts["vue layout"]["vue"] is True
    assert (out / "readout_vue_nodes.png").stat().st_size > 30_000
