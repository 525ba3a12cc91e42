"""Training a LoRA through the Radial Attention Patch with ComfyUI's own "Train LoRA" (CPU).

Real ComfyUI prompts, run by its validator and executor: a tiny random-weight Wan 2.1 file ->
UNETLoader -> Radial Attention Patch -> TrainLoraNode, fed by LoadTrainingDataset from a dataset
folder that ComfyUI's SaveTrainingDataset node wrote (a few tiny latents with their text
conditioning) -> Save Radial LoRA. The test code observes, never production hooks:
``block_sparse_attention`` as the override calls it and the override itself are wrapped here to
count the calls. Inputs the test does not set take the node definitions' defaults, and outputs
are found by type, so the same prompt runs on both ComfyUI versions (their Train LoRA nodes
differ: 0.33 has checkpoint_depth, 0.3.75 also outputs the trained MODEL).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math

import pytest
import torch

import helpers_models as hm
from conftest import script_module

pytestmark = pytest.mark.comfy

FRAMES, H, W = 8, 16, 16  # latent: 8 frames x 8x8 patches = 64 tokens per frame, 512 tokens
TPF = (H // 2) * (W // 2)
BLOCK = 64
STEPS = 4
LEARNING_RATE = 3e-3
NUM_BLOCKS = 2  # the tiny Wan's transformer blocks
UNET = "tiny_wan_train_test.safetensors"
ALL_KEPT = (2, 32, 32)  # 2 frames x 256 tokens: the radial mask keeps every block of 64


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env(comfy, tmp_path_factory):
    """Builtin nodes, a tiny Wan file in a diffusion_models folder, a temporary output folder (Save
    Radial LoRA, and the dataset folder on 0.3.75) and datasets folder (0.33), one dataset."""
    import folder_paths

    if (
        "TrainLoraNode" not in comfy.nodes.NODE_CLASS_MAPPINGS
        or "LoadTrainingDataset" not in comfy.nodes.NODE_CLASS_MAPPINGS
    ):
        asyncio.run(comfy.nodes.init_builtin_extra_nodes())
    for name in ("TrainLoraNode", "LoadTrainingDataset", "SaveTrainingDataset", "LoraModelLoader"):
        assert name in comfy.nodes.NODE_CLASS_MAPPINGS, f"ComfyUI's {name} did not load"
    if "PreviewAny" not in comfy.nodes.NODE_CLASS_MAPPINGS:
        assert asyncio.run(comfy.nodes.load_custom_node(str(comfy.dir / "comfy_extras" / "nodes_preview_any.py"),
                                                        module_parent="comfy_extras"))
    root = tmp_path_factory.mktemp("training")
    tm = hm.tiny_models_module()
    tm.save(tm.wan_state_dict("wan_t2v"), root / "diffusion_models" / UNET)
    added = [("diffusion_models", str(root / "diffusion_models")), ("loras", str(root / "output" / "loras"))]
    if "datasets" in folder_paths.folder_names_and_paths:  # 0.33: datasets have their own folder
        added.append(("datasets", str(root / "datasets")))
    for kind, path in added:
        folder_paths.add_model_folder_path(kind, path, is_default=kind == "datasets")
    old_out = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(root / "output"))
    try:
        _write_dataset(comfy, "radial_tiny", FRAMES, H, W)
        _write_dataset(comfy, "radial_tiny_all_kept", *ALL_KEPT)
        folder_paths.filename_list_cache.clear()
        yield root
    finally:  # leave ComfyUI's folders as the other tests expect them
        folder_paths.set_output_directory(old_out)
        for kind, path in added:
            paths = folder_paths.folder_names_and_paths[kind][0]
            if path in paths:
                paths.remove(path)
        folder_paths.filename_list_cache.clear()


def _write_dataset(comfy, name: str, frames: int, h: int, w: int) -> None:
    """Three latents, each with its own random text conditioning, written by ComfyUI's own
    SaveTrainingDataset node (its shard format is what LoadTrainingDataset reads)."""
    g = torch.Generator().manual_seed(5)
    latents = [{"samples": torch.randn(1, 16, frames, h, w, generator=g)} for _ in range(3)]
    conds = [hm.conditioning("wan_t2v", seed=10 + i) for i in range(3)]
    save = comfy.nodes.NODE_CLASS_MAPPINGS["SaveTrainingDataset"]
    save.execute(latents=latents, conditioning=conds, folder_name=[name], shard_size=[1000])


@pytest.fixture
def sparse_calls(comfy, monkeypatch):
    """Wrap, from the test, ``block_sparse_attention`` as the override module calls it and the
    override itself; returns the counters (sparse op calls, video self-attention calls)."""
    ao = comfy.pack_module("nodes.attention_override")
    seen = {"op": 0, "op_grad": 0, "video": 0, "video_grad": 0}
    op = ao.block_sparse_attention

    def counting_op(q, k, v, *args, **kwargs):
        seen["op"] += 1
        seen["op_grad"] += int(q.requires_grad and torch.is_grad_enabled())
        return op(q, k, v, *args, **kwargs)

    monkeypatch.setattr(ao, "block_sparse_attention", counting_op)
    call = ao.RadialAttentionOverride.__call__

    def counting_call(self, func, *args, **kwargs):
        q, k = (args + (None, None))[:2]
        if isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and q.shape == k.shape \
                and q.ndim == 3 and q.shape[1] == FRAMES * TPF:  # Wan: [B, L, H*D], the video sequence
            seen["video"] += 1
            seen["video_grad"] += int(q.requires_grad and torch.is_grad_enabled())
        return call(self, func, *args, **kwargs)

    monkeypatch.setattr(ao.RadialAttentionOverride, "__call__", counting_call)
    return seen


# ------------------------------------------------------------------------------------- prompts
def _inputs(comfy, class_type: str, **values) -> dict:
    """The node's inputs: the given values, the definition's defaults for the other widgets."""
    spec = comfy.nodes.NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
    out = {}
    for section in ("required", "optional"):
        for name, s in (spec.get(section) or {}).items():
            opts = s[1] if len(s) > 1 and isinstance(s[1], dict) else {}
            if name in values:
                out[name] = values[name]
            elif "default" in opts:
                out[name] = opts["default"]
    unknown = set(values) - set(out)
    if unknown:  # a value for an input this version lacks: the caller decides (see _train_values)
        raise KeyError(f"{class_type} has no input(s) {sorted(unknown)}")
    return out


def _slot(comfy, class_type: str, type_name: str) -> int:
    return list(comfy.nodes.NODE_CLASS_MAPPINGS[class_type].RETURN_TYPES).index(type_name)


def _train_values(comfy, checkpointing: str, **extra) -> dict:
    spec = comfy.nodes.NODE_CLASS_MAPPINGS["TrainLoraNode"].INPUT_TYPES()
    names = set(spec["required"]) | set(spec.get("optional") or {})
    values = dict(
        batch_size=1,
        steps=STEPS,
        learning_rate=LEARNING_RATE,
        rank=4,
        optimizer="AdamW",
        loss_function="MSE",
        seed=0,
        training_dtype="fp32",
        lora_dtype="fp32",
        gradient_checkpointing=checkpointing != "off",
        existing_lora="[None]",
    )
    values.update(extra)
    if checkpointing == "per-block":
        if "checkpoint_depth" not in names:
            pytest.skip("ComfyUI 0.3.75's Train LoRA has no checkpoint_depth: it always checkpoints each "
                        "top-level module (the blocks), which the 'default' case covers there")
        values["checkpoint_depth"] = 2  # 0.33: depth 1 = the whole diffusion model, 2 = each block
    return values


def training_prompt(comfy, *, patch: dict | None, checkpointing: str = "off", save: bool = True,
                    dataset: str = "radial_tiny") -> dict:
    """UNETLoader -> [Radial Attention Patch] -> Train LoRA <- LoadTrainingDataset; Save Radial LoRA."""
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": "default"}},
        "3": {"class_type": "LoadTrainingDataset", "inputs": {"folder_name": dataset}},
    }
    model = ["1", 0]
    if patch is not None:
        prompt["2"] = {"class_type": "RadialAttentionPatch",
                       "inputs": _inputs(comfy, "RadialAttentionPatch", model=["1", 0], **patch)}
        model = ["2", 0]
    train = _inputs(comfy, "TrainLoraNode", model=model, latents=["3", 0], positive=["3", 1],
                    **_train_values(comfy, checkpointing))
    prompt["4"] = {"class_type": "TrainLoraNode", "inputs": train}
    lora = ["4", _slot(comfy, "TrainLoraNode", "LORA_MODEL")]
    if save:
        prompt["5"] = {"class_type": "SaveRadialLora", "inputs": _inputs(
            comfy, "SaveRadialLora", lora=lora, model=model, filename_prefix="loras/radial_test",
            steps=["4", _slot(comfy, "TrainLoraNode", "INT")], tuned_frames=4 * (FRAMES - 1) + 1,
            tuned_width=8 * W, tuned_height=8 * H)}
    else:
        prompt["5"] = {
            "class_type": "PreviewAny",
            "inputs": {"source": ["4", _slot(comfy, "TrainLoraNode", "LOSS_MAP")]},
        }
    return prompt


def run_training(comfy, prompt: dict, seed: int = 0):
    """Run the prompt (global RNG seeded: Train LoRA draws the LoRA init and the noise levels from
    it); returns (LORA_MODEL dict, loss list, the executor)."""
    headless = script_module("comfy_headless")
    torch.manual_seed(seed)
    executor, _ = headless.execute(prompt)
    out = headless.cached_output(executor, "4").outputs
    lora = out[_slot(comfy, "TrainLoraNode", "LORA_MODEL")][0]
    losses = out[_slot(comfy, "TrainLoraNode", "LOSS_MAP")][0]["loss"]
    return lora, losses, executor


# ------------------------------------------------------------------------------------- evaluation
def dataset(comfy):
    load = comfy.nodes.NODE_CLASS_MAPPINGS["LoadTrainingDataset"]
    out = load.execute(folder_name="radial_tiny")
    result = out.result if hasattr(out, "result") else out
    return result[0], result[1]


def denoising_loss(model, latents, conds, sigmas=(0.25, 0.5, 0.75, 0.95)) -> float:
    """Mean x0-prediction MSE over the dataset at fixed noise levels and noise, through ComfyUI's
    own guider (so the patch's wrappers, and radial attention, run as when sampling)."""
    import comfy.samplers

    losses = []

    class LossSampler(comfy.samplers.Sampler):
        def sample(self, model_wrap, sigmas_, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            ms = model_wrap.inner_model.model_sampling
            g = torch.Generator().manual_seed(3)
            for s in sigmas:
                sig = torch.tensor([ms.percent_to_sigma(1.0 - s)], dtype=latent_image.dtype, device=latent_image.device)
                n = torch.randn(latent_image.shape, generator=g).to(latent_image)
                xt = ms.noise_scaling(sig, n, latent_image, False)
                x0 = model_wrap(xt, sig, **extra_args)
                losses.append(float(torch.nn.functional.mse_loss(x0.float(), latent_image.float())))
            return latent_image

    with torch.inference_mode():
        for lat, cond in zip(latents, conds):
            guider = comfy.samplers.CFGGuider(model)
            guider.set_conds(cond, [])
            guider.set_cfg(1.0)
            x = lat["samples"]
            guider.sample(torch.zeros_like(x), x, LossSampler(), torch.tensor([1.0, 0.0]), seed=0)
    return sum(losses) / len(losses)


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("checkpointing", ["off", "default", "per-block"])
def test_train_lora_through_the_patch_stays_radial(comfy, env, sparse_calls, checkpointing):
    """Every video self-attention call of the training (forward, and the recomputation in backward
    under gradient checkpointing) needs gradients and goes through the sparse op; the model learns."""
    patch = dict(decay_factor=0.2, block_size=BLOCK, dense_blocks="", dense_steps_first=2, backend="pytorch")
    lora, losses, _ = run_training(comfy, training_prompt(comfy, patch=patch, checkpointing=checkpointing, save=False))
    per_forward = NUM_BLOCKS * (2 if checkpointing != "off" else 1)  # a checkpoint runs its forward again
    assert sparse_calls["video"] == STEPS * per_forward, sparse_calls
    assert sparse_calls["video_grad"] == sparse_calls["video"], sparse_calls
    # dense_steps_first does not apply to training (no sampling schedule): every call is sparse
    assert sparse_calls["op"] == sparse_calls["video"] and sparse_calls["op_grad"] == sparse_calls["op"], sparse_calls
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert any(float(t.abs().max()) > 0 for k, t in lora.items() if k.endswith("lora_down.weight")), \
        "the LoRA did not change (its down matrices start at zero)"
    mask = comfy.pack_module("radial_core.mask").radial_mask(FRAMES, TPF, block_size=BLOCK, decay_factor=0.2).blocks
    assert float(mask.float().mean()) < 0.9, "the mask keeps (almost) every block: nothing radial was tested"


def test_dense_blocks_stay_dense_in_forward_and_backward(comfy, env, sparse_calls):
    patch = dict(decay_factor=0.2, block_size=BLOCK, dense_blocks="1", backend="pytorch")
    run_training(comfy, training_prompt(comfy, patch=patch, checkpointing="default", save=False))
    assert sparse_calls["video"] == STEPS * NUM_BLOCKS * 2, sparse_calls
    assert sparse_calls["op"] == STEPS * (NUM_BLOCKS - 1) * 2, sparse_calls  # block 0 dense, block 1 sparse


def test_saved_lora_carries_the_settings_and_the_loader_applies_them(comfy, env, sparse_calls):
    """Save Radial LoRA writes the patch's settings as radial_attn.* metadata; Radial LoRA Loader
    on the plain model applies them and the LoRA lowers the denoising loss on the training data."""
    from safetensors import safe_open

    import folder_paths

    patch = dict(decay_factor=0.3, block_size=BLOCK, dense_blocks="1", dense_steps_first=2, dist1="full",
                 backend="pytorch")
    lora, _, executor = run_training(comfy, training_prompt(comfy, patch=patch, checkpointing="default"))
    headless = script_module("comfy_headless")
    text = headless.cached_output(executor, "5").ui["output"]["text"][0]
    path = text.splitlines()[0]
    assert path.startswith(folder_paths.get_output_directory()) and f"_{STEPS}_steps_" in path, text
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(lora), "the file holds other tensors than Train LoRA's"
        for k in lora:
            assert torch.equal(f.get_tensor(k), lora[k].cpu())
    assert meta["radial_attn.decay_factor"] == "0.3" and meta["radial_attn.block_size"] == str(BLOCK)
    assert meta["radial_attn.dense_blocks"] == "0," and meta["radial_attn.dense_steps"] == "2"
    assert meta["radial_attn.dist1"] == "full" and meta["radial_attn.family"] == "wan21"
    assert meta["radial_attn.tuned_frames"] == str(4 * (FRAMES - 1) + 1)

    folder_paths.filename_list_cache.clear()
    name = path.split("/loras/", 1)[1]
    loader = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": "default"}},
        "2": {"class_type": "RadialLoraLoader", "inputs": _inputs(comfy, "RadialLoraLoader", model=["1", 0],
                                                                     lora_name=name, backend="pytorch")},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
    }
    ex, _ = headless.execute(loader)
    model, report = headless.cached_output(ex, "2").outputs[0][0], headless.cached_output(ex, "2").outputs[1][0]
    cfg = comfy.pack_module("nodes.radial_patcher").get_radial_config(model)
    assert cfg is not None, report
    assert cfg["decay_factor"] == pytest.approx(0.3) and cfg["block_size"] == BLOCK and cfg["dense_blocks"] == [0]
    assert cfg["dense_steps_first"] == 2 and cfg["dist1"] == "full", report
    assert "decay_factor=0.3 (metadata)" in report, report
    assert "matched" in report, report

    base = comfy.pack_module("nodes.radial_patcher").apply_radial_patch(
        hm.tiny_models_module().load_with_comfy(env / "diffusion_models" / UNET), decay_factor=0.3,
        block_size=BLOCK, dense_blocks="1", backend="pytorch")
    latents, conds = dataset(comfy)
    before, after = denoising_loss(base, latents, conds), denoising_loss(model, latents, conds)
    logging.getLogger(__name__).info("denoising loss %.4f -> %.4f", before, after)
    assert after < before * 0.98, f"training did not lower the denoising loss: {before:.4f} -> {after:.4f}"


def test_all_kept_mask_trains_the_same_lora_as_no_patch(comfy, env, sparse_calls):
    """At a mask that keeps every block, radial attention is dense attention: same seed, same LoRA."""
    import radial_core

    frames, h, w = ALL_KEPT
    mask = radial_core.radial_block_mask(frames, (h // 2) * (w // 2), block_size=BLOCK, decay_factor=0.2, model="wan")
    assert bool(mask.all()), "the mask should keep every block at this size"
    patch = dict(decay_factor=0.2, block_size=BLOCK, dense_blocks="", backend="pytorch")
    radial, radial_losses, _ = run_training(comfy, training_prompt(comfy, patch=patch, save=False,
                                                                   dataset="radial_tiny_all_kept"))
    assert sparse_calls["op"] == STEPS * NUM_BLOCKS and sparse_calls["op_grad"] == sparse_calls["op"], sparse_calls
    plain, plain_losses, _ = run_training(comfy, training_prompt(comfy, patch=None, save=False,
                                                                 dataset="radial_tiny_all_kept"))
    assert sparse_calls["op"] == STEPS * NUM_BLOCKS, "the unpatched run went through the sparse op"
    assert set(radial) == set(plain)
    torch.testing.assert_close(radial_losses, plain_losses, rtol=1e-4, atol=1e-6)
    worst = max(float((radial[k] - plain[k]).abs().max()) for k in radial)
    for k in radial:
        if radial[k].is_cuda:
            # On CUDA the unpatched run's attention is ComfyUI's bf16 flash/cuDNN SDPA, ours the
            # float32 PyTorch path: rounding-level gradient differences. AdamW's normalised step
            # moves a weight whose gradient is near zero by up to the learning rate per step
            # from such a difference (H200, 2026-12-02: 1 of 16 384 elements of the first LoRA
            # matrix off by 5.3e-5). A wrong attention moves most elements and the losses.
            diff = (radial[k] - plain[k]).abs()
            off = int((diff > 1e-5 + 1e-3 * plain[k].abs()).sum())
            assert off <= max(1, diff.numel() // 100) and float(diff.max()) <= STEPS * LEARNING_RATE, \
                f"{k}: {off} of {diff.numel()} elements differ, largest {float(diff.max()):.2e}"
        else:
            torch.testing.assert_close(radial[k], plain[k], rtol=1e-3, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    assert any(float(t.abs().max()) > 0 for k, t in radial.items() if k.endswith("lora_down.weight"))
    logging.getLogger(__name__).info("all-kept mask vs no patch: largest LoRA difference %.2e", worst)


def test_save_radial_lora_refuses_a_model_without_the_patch(comfy, env):
    save = comfy.nodes.NODE_CLASS_MAPPINGS["SaveRadialLora"]
    plain = hm.tiny_models_module().load_with_comfy(env / "diffusion_models" / UNET)
    with pytest.raises(ValueError, match="carries no Radial Attention Patch.*Fix: connect the MODEL"):
        save.execute(lora={"x.lora_up.weight": torch.zeros(2, 2)}, model=plain, filename_prefix="loras/x")
    patched = comfy.pack_module("nodes.radial_patcher").apply_radial_patch(plain, block_size=BLOCK)
    with pytest.raises(ValueError, match="lora: expected the LORA_MODEL output"):
        save.execute(lora={}, model=patched, filename_prefix="loras/x")


def test_radial_settings_metadata_reads_back_as_the_loader_reads_it(comfy):
    from radial_core.lora import metadata as lora_radial

    save_mod = comfy.pack_module("nodes.lora_save_node")
    rp = comfy.pack_module("nodes.radial_patcher")
    cfg = rp.get_radial_config(rp.apply_radial_patch(hm.load_model("wan_t2v"), decay_factor=0.25, block_size=64,
                                                     dense_blocks="0,1", dense_steps_first=3, dense_steps_last=1,
                                                     dist1="half"))
    meta = save_mod.radial_settings_metadata(cfg, tuned_frames=161)
    assert all(isinstance(v, str) for v in meta.values()) and json.dumps(meta)
    assert meta == {
        "radial_attn.decay_factor": "0.25", "radial_attn.block_size": "64", "radial_attn.dense_blocks": "0,1",
        "radial_attn.dense_steps": "3", "radial_attn.dense_steps_last": "1", "radial_attn.dist1": "half",
        "radial_attn.family": "wan21", "radial_attn.tuned_frames": "161", "radial_attn.base_model": cfg["variant"],
    }, meta
    assert lora_radial.radial_metadata(**{k[len(lora_radial.RADIAL_PREFIX):]: v for k, v in meta.items()}) == meta


@pytest.mark.parametrize("decay", [5.0, 10.0])
def test_any_decay_the_patch_takes_saves_and_loads(comfy, decay):
    """One decay range (radial_core.settings): the metadata stopped at 4, so a model patched with
    decay 5 trained and then could not be saved."""
    from radial_core.lora import metadata as lora_radial

    save_mod = comfy.pack_module("nodes.lora_save_node")
    rp = comfy.pack_module("nodes.radial_patcher")
    cfg = rp.get_radial_config(rp.apply_radial_patch(hm.load_model("wan_t2v"), decay_factor=decay))
    meta = save_mod.radial_settings_metadata(cfg)
    assert lora_radial.resolve_radial_settings(meta).values["decay_factor"] == decay


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_save_radial_lora_refuses_non_finite_tensors(comfy, bad):
    save = comfy.nodes.NODE_CLASS_MAPPINGS["SaveRadialLora"]
    patched = comfy.pack_module("nodes.radial_patcher").apply_radial_patch(hm.load_model("wan_t2v"), block_size=BLOCK)
    with pytest.raises(ValueError, match="tensor 'x.lora_up.weight' holds NaN or infinite values.*Fix"):
        save.execute(lora={"x.lora_up.weight": torch.tensor([[1.0, bad]])}, model=patched, filename_prefix="loras/x")


def test_bench_train_step_tiny_dry_run(comfy, tmp_path):
    """bench/bench_train_step.py --tiny: the benchmark's code path (ComfyUI's training loop, LoRA on
    the attention projections, per-block checkpointing) on a tiny Wan on the CPU."""
    import subprocess
    import sys

    from conftest import ROOT, comfyui_dir

    out = tmp_path / "train_step.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_train_step.py"), "--tiny",
                           "--comfyui", str(comfyui_dir()), "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())["results"]
    # 2 steps x 1 radial block (3 blocks, 2 dense) x (forward + recomputation in backward)
    assert res["radial"]["sparse_calls"] == 4 and res["radial"]["sparse_calls_with_grad"] == 4, res["radial"]
    assert res["dense"]["sparse_calls"] == 0
    for mode in ("dense", "radial"):
        assert res[mode]["lora_modules"] == 3 * 8 and len(res[mode]["losses"]) == 2
        assert all(math.isfinite(x) for x in res[mode]["losses"]) and res[mode]["step_s"] > 0


@pytest.mark.parametrize("dense_blocks, sparse_blocks", [("", 2), ("1,", 1), ("0,", 1)])
def test_hunyuan_double_and_single_blocks_under_checkpointing(comfy, env, sparse_calls, dense_blocks, sparse_blocks):
    """HunyuanVideo (1 double-stream + 1 single-stream block, video + text in one sequence): Train
    LoRA with gradient checkpointing; the recomputed single-stream block still knows it is block 1."""
    import inspect

    train = comfy.nodes.NODE_CLASS_MAPPINGS["TrainLoraNode"]
    rp = comfy.pack_module("nodes.radial_patcher")
    model = rp.apply_radial_patch(hm.load_model("hunyuan_t2v"), block_size=BLOCK, dense_blocks=dense_blocks,
                                  backend="pytorch")
    g = torch.Generator().manual_seed(7)
    lat = [{"samples": torch.randn(1, 16, FRAMES, H, W, generator=g)} for _ in range(2)]
    cond = [hm.conditioning("hunyuan_t2v", seed=20 + i) for i in range(2)]
    values = {k: [v] for k, v in _inputs(comfy, "TrainLoraNode", **_train_values(comfy, "default", steps=2)).items()}
    values.update(model=[model], latents=lat, positive=cond)
    params = inspect.signature(train.execute).parameters
    torch.manual_seed(0)
    with torch.inference_mode():  # as ComfyUI's executor runs every node
        train.execute(**{k: v for k, v in values.items() if k in params})
    assert sparse_calls["op"] == 2 * sparse_blocks * 2 and sparse_calls["op_grad"] == sparse_calls["op"], sparse_calls


FRESH_PROCESS_TRAINING = r"""
import sys
from pathlib import Path

import torch

root, comfy_dir = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(root / "tests"))
import pack_import

bts = pack_import.file_module("radial_bench_train_step", root / "bench" / "bench_train_step.py")
e2e = bts.bench_e2e()
rp = e2e.import_comfy(comfy_dir)
model = e2e.build_model("wan21", 2, e2e.SMOKE["wan21"])  # 2 heads x 128: q of 768 x 256 elements
latent = torch.randn(1, 16, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # 3 x 256 tokens
patched = rp.apply_radial_patch(model, block_size=64, dense_blocks="1")  # block 0 dense (ComfyUI's SDPA)
r = bts.train_steps(patched, latent, e2e.conditioning("wan21", None), rank=4, steps=2, lr=1e-3,
                    dtype=torch.bfloat16)
print("LOSSES", r["losses"])
"""


def test_first_training_call_of_a_fresh_process_survives_checkpointing_on_cuda(comfy, cuda, tmp_path):
    """The first SDPA call of a process ignores ComfyUI 0.33's backend priority (torch 2.11: cuDNN
    in the forward, flash in the checkpoint's recomputation, see nodes/training.py). A patched Wan
    whose dense block 0 runs ComfyUI's own SDPA (a q of 196 608 elements: over ComfyUI's 128k
    threshold for its backend choice) trains with per-block checkpointing as the very first thing
    a fresh process does, as after a server start."""
    import subprocess
    import sys

    from conftest import ROOT, comfyui_dir

    script = tmp_path / "fresh_training.py"
    script.write_text(FRESH_PROCESS_TRAINING)
    proc = subprocess.run([sys.executable, str(script), str(ROOT), str(comfyui_dir())],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    losses = json.loads(proc.stdout.split("LOSSES", 1)[1].strip().replace("'", '"'))
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
