"""ComfyUI 0.33's dynamic VRAM (comfy-aimdo, ``ModelPatcherDynamic``) with the Radial Attention Patch
and the Radial LoRA Loader, through ComfyUI's real ``main.py`` and its HTTP API.

ComfyUI 0.33 turns dynamic VRAM on by default on NVIDIA GPUs (main.py: with comfy-aimdo initialised
it makes ``ModelPatcherDynamic`` the core model patcher and logs "DynamicVRAM support detected and
enabled"); ``--disable-dynamic-vram`` gives the estimate-based loading of before. The GPU test starts
main.py twice as a user does (default flags, then ``--disable-dynamic-vram``), each time with only
this pack in its custom_nodes, queues the same prompt and compares the saved latents bit for bit.

The prompt is the bundled demo graph (workflows/api/demo_wan_tiny.json: small random-weight Wan,
CLIPLoader + CLIPTextEncode with a random-weight T5-base, the patch, a dense and a radial KSampler)
with SaveLatent in place of decoding, and two more branches with one LoRA: Radial LoRA Loader ->
KSampler, and ComfyUI's LoraLoaderModelOnly -> the patch -> KSampler (the two must agree bit for
bit in each mode). Sizes: 128x128 px, 33 frames -> 9 latent frames x 64 tokens, block 64: mask density
0.21, so the patch runs sparse calls. What the patch did is read from its own log lines (the
per-run count of sparse calls is a DEBUG line, read from a DEBUG log file given with ``--verbose
DEBUG FILE``: the console stays at the default level); how ComfyUI loaded the model is read from
ComfyUI's own DETAIL line "Model loaded: patcher=..." in the same file.

The same machinery runs on the CPU (``--cpu``, where dynamic VRAM is off) so that it is exercised
everywhere; the dynamic-VRAM comparison itself needs CUDA.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import ROOT, require_cuda, script_module

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
from radial_server import ComfyServer

pytestmark = pytest.mark.comfy

WORKFLOW = ROOT / "workflows" / "api" / "demo_wan_tiny.json"
UNET, TEXT_ENCODER = "radial_demo_wan_t2v_tiny.safetensors", "radial_demo_t5_base_random.safetensors"
LORA = "radial_dynamic_vram_test_lora.safetensors"
# workflow node ids: the dense and the radial KSampler; added here: the Radial LoRA Loader's branch
# and the same LoRA through ComfyUI's own LoraLoaderModelOnly -> Radial Attention Patch
DENSE, RADIAL, LORA_SAMPLER, COMFY_LORA_SAMPLER = "7", "8", "21", "24"
SAVES = {DENSE: "30", RADIAL: "31", LORA_SAMPLER: "32", COMFY_LORA_SAMPLER: "33"}
STEPS = 3
DYNAMIC_ON = "DynamicVRAM support detected and enabled"
DYNAMIC_OFF_BY_FLAG = "Dynamic vram disabled with argument"
SPARSE_RUN = re.compile(r"Radial Attention: run done, (\d+) sparse calls, dense calls (\{.*\})")
MODEL_LOADED = re.compile(r"Model loaded: patcher=(\w+) model=(\w+)")
PATCH_SETTINGS = {"block_size": 64, "dense_blocks": "1", "dense_steps_first": 1, "dense_steps_last": 0}


def comfyui_has_dynamic_vram() -> None:
    """Skip, naming the version, on a ComfyUI without dynamic VRAM (0.3.75 has none)."""
    import comfy.model_patcher
    import comfyui_version

    if not hasattr(comfy.model_patcher, "ModelPatcherDynamic"):
        pytest.skip(f"ComfyUI {comfyui_version.__version__} has no dynamic VRAM (no "
                    "comfy.model_patcher.ModelPatcherDynamic; ComfyUI 0.33 has it)")


@pytest.fixture(scope="module")
def models(comfy, tmp_path_factory) -> Path:
    """A models folder with the demo's small Wan (768-wide text input) and T5-base, made here with
    random weights, and a LoRA for the q projection of both blocks in ComfyUI's key format (both
    ComfyUI's LoRA loader and the pack's read it).

    The LoRA's factors are -1/8, 0 or 1/8 (rank 4), so that every product and partial sum of
    up @ down is exact in float16: ComfyUI merges a LoRA in two ways, the product in float32 with
    the estimate-based loading (``comfy.lora.calculate_weight``'s default) and in the weight's dtype
    under dynamic VRAM (``LowVramPatch`` passes ``intermediate_dtype=weight.dtype``, float16 on the
    H200), and with arbitrary factors the merged weights differ in their last bits (H200,
    2026-12-02, a LoRA of 0.1 * randn factors: the LoRA branch differed by max |diff| 0.052, every
    other branch was bit-exact). With these factors both ways give the same merged weights, which
    still change the q weights by about 23 %."""
    comfyui_has_dynamic_vram()
    dm, tm = script_module("make_demo_models"), script_module("make_tiny_models")
    if not dm.wan_reads_text_width():  # 0.33 reads it; a ComfyUI with dynamic VRAM does
        pytest.skip("this ComfyUI's Wan detection ignores the model file's text width")
    from lora_helpers import write_safetensors

    root = tmp_path_factory.mktemp("dynamic-vram-models")
    tm.save(tm.wan_state_dict("wan_t2v", num_layers=2, dim=128, ffn_dim=256, seed=0, text_dim=dm.T5_BASE_WIDTH),
            root / "diffusion_models" / UNET, metadata=dm.wan_text_metadata())
    dm.save(dm.t5_base_state_dict(seed=1), root / "text_encoders" / TEXT_ENCODER)
    g = torch.Generator().manual_seed(3)
    tensors = {}
    for b in (0, 1):
        for part, shape in (("lora_up", (128, 4)), ("lora_down", (4, 128))):
            tensors[f"diffusion_model.blocks.{b}.self_attn.q.{part}.weight"] = (
                torch.randint(-1, 2, shape, generator=g).float() / 8)
    write_safetensors(root / "loras" / LORA, tensors)
    return root


def prompt() -> dict:
    """The demo graph's models, text, latent and both samplers, saved as latents; plus the Radial
    LoRA Loader's branch with the patch's settings (it differs from the radial branch by the LoRA's
    weights) and the same LoRA through ComfyUI's LoraLoaderModelOnly and the patch (the same model)."""
    wf = json.loads(WORKFLOW.read_text())
    p = {k: copy.deepcopy(wf[k]) for k in ("1", "2", "3", "4", "5", "6", DENSE, RADIAL)}
    p["6"]["inputs"].update(width=128, height=128, length=33)
    p["2"]["inputs"].update(PATCH_SETTINGS, backend="auto")
    for sampler in (DENSE, RADIAL):
        p[sampler]["inputs"]["steps"] = STEPS
    s = PATCH_SETTINGS
    p["20"] = {"class_type": "RadialLoraLoader", "inputs": {
        "model": ["1", 0], "lora_name": LORA, "strength": 1.0, "radial_mode": "auto", "decay_factor": 0.0,
        "block_size": str(s["block_size"]), "dense_blocks": s["dense_blocks"],
        "dense_steps_first": s["dense_steps_first"], "dense_steps_last": s["dense_steps_last"],
        "dist1": "full", "family": "from LoRA", "backend": "auto"}}
    p["22"] = {"class_type": "LoraLoaderModelOnly",
               "inputs": {"model": ["1", 0], "lora_name": LORA, "strength_model": 1.0}}
    p["23"] = copy.deepcopy(p["2"])
    p["23"]["inputs"]["model"] = ["22", 0]
    for sampler, model in ((LORA_SAMPLER, "20"), (COMFY_LORA_SAMPLER, "23")):
        p[sampler] = copy.deepcopy(p[RADIAL])
        p[sampler]["inputs"]["model"] = [model, 0]
    for sampler, save in SAVES.items():
        p[save] = {"class_type": "SaveLatent",
                   "inputs": {"samples": [sampler, 0], "filename_prefix": f"radial_dynamic_vram/{sampler}"}}
    return p


@dataclass
class ServerRun:
    log: str  # main.py's console output (default level)
    debug_log: str  # the DEBUG log file
    latents: dict[str, torch.Tensor]  # sampler node id -> saved latent

    def sparse_runs(self) -> list[tuple[int, str]]:
        """(sparse calls, dense calls by reason) of each patched sampling run, from the pack's log."""
        return [(int(n), dense) for n, dense in SPARSE_RUN.findall(self.debug_log)]

    def patchers(self, model: str = "WAN21") -> set[str]:
        """The patcher classes ComfyUI loaded ``model`` (its class name) with, from ComfyUI's log."""
        return {patcher for patcher, cls in MODEL_LOADED.findall(self.debug_log) if cls == model}


def serve_and_run(mode: str, flags: tuple[str, ...], models: Path) -> ServerRun:
    """Start ComfyUI's main.py with ``flags`` and only this pack in its custom_nodes (a fresh base
    directory), queue :func:`prompt` over HTTP, read back the saved latents, stop the server."""
    class PackServer(ComfyServer):
        def check_pack(self) -> None:  # the pack goes into this server's own base directory
            pass

    server = PackServer(flags=flags, log_name=f"dynamic-vram-{mode}.log")
    base = server.work
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "radial-attention").symlink_to(ROOT, target_is_directory=True)
    web = base / "web"  # main.py needs a front end to serve; none is used here
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>radial tests</title>")
    debug_path = server.log_path.with_suffix(".debug.log")
    debug_path.unlink(missing_ok=True)  # ComfyUI appends to a log file
    server.flags += ["--base-directory", str(base), "--models-directory", str(models),
                     "--front-end-root", str(web), "--verbose", "DEBUG", str(debug_path)]
    server.start()
    try:
        entry = server.run_prompt(prompt(), timeout=300)
        status = entry.get("status", {})
        assert status.get("completed") and status.get("status_str") == "success", (
            f"{mode}: the prompt failed: {status.get('messages')}\n{server.log_tail()}")
        from safetensors.torch import load_file

        latents = {}
        for sampler, save in SAVES.items():
            (saved,) = entry["outputs"][save]["latents"]
            path = base / "output" / saved["subfolder"] / saved["filename"]
            latents[sampler] = load_file(str(path))["latent_tensor"]
    finally:
        server.stop()
    return ServerRun(server.log_path.read_text(errors="replace"), debug_path.read_text(errors="replace"), latents)


def check_patch_ran(run: ServerRun, mode: str) -> None:
    """The three patched samplers ran sparse calls; the radial latent differs from the dense one (the
    mask changed attention) and the LoRA branch from the radial one (the LoRA changed weights); the
    Radial LoRA Loader gives exactly what ComfyUI's LoRA loader + the patch give."""
    runs = run.sparse_runs()
    assert len(runs) == 3 and all(n > 0 for n, _ in runs), f"{mode}: sparse calls per run {runs}"
    assert "Radial Attention: Wan 2.1 T2V" in run.log and "mask density 0.210" in run.log, run.log[-3000:]
    lat = run.latents
    assert all(torch.isfinite(t).all() for t in lat.values())
    assert not torch.equal(lat[RADIAL], lat[DENSE]), f"{mode}: radial equals dense"
    assert not torch.equal(lat[LORA_SAMPLER], lat[RADIAL]), f"{mode}: the LoRA changed nothing"
    assert torch.equal(lat[LORA_SAMPLER], lat[COMFY_LORA_SAMPLER]), (
        f"{mode}: Radial LoRA Loader and LoraLoaderModelOnly + patch differ by "
        f"{(lat[LORA_SAMPLER] - lat[COMFY_LORA_SAMPLER]).abs().max().item():.3e}")


def test_server_prompt_through_the_patch_on_the_cpu(comfy, models):
    """``main.py --cpu``: no dynamic VRAM (ComfyUI keeps it off on a CPU), the plain ModelPatcher,
    and the prompt runs through the patch and the LoRA loader with sparse calls."""
    run = serve_and_run("cpu", ("--cpu",), models)
    assert DYNAMIC_ON not in run.log
    assert run.patchers() == {"ModelPatcher"}, run.patchers()
    check_patch_ran(run, "cpu")


def test_dynamic_vram_gives_the_result_of_the_estimate_based_loading(comfy, models):
    """On an NVIDIA GPU: main.py as a user starts it (dynamic VRAM on by default) and with
    ``--disable-dynamic-vram``; same prompt, same sparse calls, the same latents."""
    require_cuda()
    dynamic = serve_and_run("dynamic", (), models)
    legacy = serve_and_run("legacy", ("--disable-dynamic-vram",), models)
    assert DYNAMIC_ON in dynamic.log, dynamic.log[-4000:]
    assert dynamic.patchers() == {"ModelPatcherDynamic"}, dynamic.patchers()
    check_patch_ran(dynamic, "dynamic")
    assert "backend triton" in dynamic.log, dynamic.log[-3000:]

    assert DYNAMIC_OFF_BY_FLAG in legacy.log and DYNAMIC_ON not in legacy.log, legacy.log[-4000:]
    assert legacy.patchers() == {"ModelPatcher"}, legacy.patchers()
    check_patch_ran(legacy, "legacy")

    assert dynamic.sparse_runs() == legacy.sparse_runs()
    diffs = {s: (dynamic.latents[s].double() - legacy.latents[s].double()).abs().max().item() for s in SAVES}
    print(f"dynamic vs estimate-based loading, max |diff| per sampler: {diffs}; "
          f"sparse calls per patched run: {[n for n, _ in dynamic.sparse_runs()]}")
    # the same weights (the LoRA merged exactly, see `models`), kernels and order: how the weights
    # reach the GPU may not change a bit
    for sampler in SAVES:
        assert torch.equal(dynamic.latents[sampler], legacy.latents[sampler]), diffs
