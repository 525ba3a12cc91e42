"""Small random-weight video models, conditioning and a sampler call for the patch tests.

The models are ComfyUI's real classes (see scripts/make_tiny_models.py); Wan and HunyuanVideo go
through a safetensors file and ComfyUI's own loader. Everything here needs the ``comfy`` fixture
(real ComfyUI imported) first.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
_CACHE: dict = {}
_TMP = Path(tempfile.mkdtemp(prefix="radial-tiny-models-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


def tiny_models_module():
    from conftest import script_module

    return script_module("make_tiny_models")


def load_model(kind: str):
    """A ModelPatcher of the given kind, loaded once per session (callers clone or patch it)."""
    if kind in _CACHE:
        return _CACHE[kind]
    tm = tiny_models_module()
    if kind in tm.WAN_KINDS:
        path = tm.save(tm.wan_state_dict(kind), _TMP / f"{kind}.safetensors")
        model = tm.load_with_comfy(path)
    elif kind == "hunyuan_t2v":
        path = tm.save(tm.hunyuan_state_dict(), _TMP / "hunyuan_t2v.safetensors")
        model = tm.load_with_comfy(path)
    elif kind == "hunyuan_i2v":
        path = tm.save(tm.hunyuan_state_dict(in_channels=33), _TMP / "hunyuan_i2v.safetensors")
        model = tm.load_with_comfy(path)
    elif kind == "mochi":
        model = tm.tiny_mochi(path=_TMP / "mochi.safetensors")
    else:
        raise KeyError(kind)
    if model is None:
        raise RuntimeError(f"ComfyUI could not load the tiny {kind} model")
    _CACHE[kind] = model
    return model


def conditioning(kind: str, *, seed: int = 0, text_len: int = 8, real_tokens: int | None = None):
    """A CONDITIONING list for the model kind (random text features, as a text encoder gives)."""
    g = torch.Generator().manual_seed(seed)
    if kind.startswith("wan"):
        return [[torch.randn(1, text_len, 4096, generator=g), {}]]
    if kind.startswith("hunyuan"):
        extra = {"pooled_output": torch.randn(1, 768, generator=g)}
        if real_tokens is not None:
            m = torch.zeros(1, text_len, dtype=torch.long)
            m[:, :real_tokens] = 1
            extra["attention_mask"] = m
        return [[torch.randn(1, text_len, 32, generator=g), extra]]
    if kind == "mochi":
        n = real_tokens if real_tokens is not None else text_len
        m = torch.zeros(1, 256, dtype=torch.long)
        m[:, :n] = 1
        return [[torch.randn(1, 256, 64, generator=g), {"attention_mask": m}]]
    raise KeyError(kind)


def latent(kind: str, frames: int, height: int, width: int, batch: int = 1) -> torch.Tensor:
    channels = {"wan22_5b": 48, "mochi": 12}.get(kind, 16)
    return torch.zeros(batch, channels, frames, height, width)


def sample(model, kind: str, lat: torch.Tensor, *, steps: int = 2, cfg: float = 1.0, seed: int = 0,
           positive=None, negative=None, start_step=None, last_step=None, force_full_denoise=True,
           sampler: str = "euler", scheduler: str = "simple"):
    """ComfyUI's real sampler (what the KSampler / KSamplerAdvanced nodes call)."""
    import comfy.sample

    positive = positive if positive is not None else conditioning(kind, seed=1)
    negative = negative if negative is not None else conditioning(kind, seed=2)
    noise = comfy.sample.prepare_noise(lat, seed)
    with torch.inference_mode():  # as ComfyUI's prompt executor runs every node
        return comfy.sample.sample(
            model, noise, steps, cfg, sampler, scheduler, positive, negative, lat,
            denoise=1.0, start_step=start_step, last_step=last_step,
            force_full_denoise=force_full_denoise, seed=seed, disable_pbar=True,
        )


class Recorder:
    """Keeps every attention decision of a model given to :func:`observe` / :func:`with_observer`."""

    def __init__(self, keep_tensors: bool = False):
        self.events: list[dict] = []
        self.keep_tensors = keep_tensors

    def __call__(self, event: dict) -> None:
        if not self.keep_tensors:
            event = {k: v for k, v in event.items() if not isinstance(v, torch.Tensor)}
        else:
            event = {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in event.items()}
        self.events.append(event)

    def sparse(self) -> list[dict]:
        return [e for e in self.events if e["kind"] == "sparse"]

    def dense(self, reason: str | None = None) -> list[dict]:
        return [e for e in self.events if e["kind"] == "dense" and (reason is None or reason in e["reason"])]


def _observer(recorder):
    """The override's observer hook, reporting each executed plan to ``recorder``:
    ``{"kind": "sparse", "block", "step", "q", "k", "v", "out", "block_mask",
    "key_padding_mask", "frames", "tokens_per_frame", "text_tokens", "text_first", "backend"}``
    after a sparse call ([B, H, L, D] tensors), ``{"kind": "dense", "reason", "block", "step"}``
    before a dense one."""
    def observer(kind, plan, q=None, k=None, v=None, out=None):
        if kind == "dense":
            recorder({"kind": "dense", "reason": plan.reason, "block": plan.block, "step": plan.step})
            return
        recorder({"kind": "sparse", "block": plan.block, "step": plan.step,
                  "q": q, "k": k, "v": v, "out": out, "block_mask": plan.mask.blocks,
                  "key_padding_mask": plan.key_padding_mask, "frames": plan.frames,
                  "tokens_per_frame": plan.tokens_per_frame, "text_tokens": plan.text_tokens,
                  "text_first": plan.text_first, "backend": plan.backend})
    return observer


def observe(model, recorder: Recorder):
    """Report every attention decision of the patched ``model`` (in place) to ``recorder``."""
    topts = model.model_options.setdefault("transformer_options", {})
    ov = topts.get("optimized_attention_override")
    if ov is None or not hasattr(ov, "observer"):
        raise AssertionError(f"observe: the model carries no Radial Attention override (got {ov!r})")
    topts["optimized_attention_override"] = type(ov)(ov.config, ov.previous, observer=_observer(recorder))
    return model


def with_observer(model, recorder: Recorder):
    """Clone of the patched ``model`` whose override reports to ``recorder`` (see :func:`observe`)."""
    return observe(model.clone(), recorder)
