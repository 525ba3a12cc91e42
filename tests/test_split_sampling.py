"""Split sampling through ComfyUI's real prompt executor and its cache (CPU, tiny Wan models).

A schedule split over two KSamplerAdvanced passes (the Wan 2.2 A14B pattern: high-noise expert
for the first steps, low-noise expert for the rest) must make every dense/sparse decision the
one-pass graph with the same schedule makes, and give the same latent bit for bit whether pass 1
ran in the same prompt, came from ComfyUI's cache (only the second sampler changed), or pass 2
was interrupted and queued again.

Bit-for-bit holds between the two-pass runs. Against the one-pass graph the decisions are
compared exactly and the latent to ComfyUI's own rounding: splitting a schedule takes the latent
out of the sampler and back in (``process_latent_out`` / ``inverse_noise_scaling`` and their
inverses), which moves it by a few 1e-6 with or without the patch.

The graph's edges that ComfyUI has no node for here (random text features, an empty latent, a
sink that keeps the result, an observer of the attention decisions) are small test nodes
registered for this module only.
"""

from __future__ import annotations

import pytest
import torch

import helpers_models as hm
from conftest import script_module

pytestmark = pytest.mark.comfy

STEPS = 6
RESULTS: dict[str, torch.Tensor] = {}
RECORDERS: dict[str, hm.Recorder] = {}


class _Interrupted:
    done = False


class TestConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 99})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "run"
    CATEGORY = "radial_test"

    def run(self, seed):
        return (hm.conditioning("wan_t2v", seed=seed),)


class TestLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("INT", {"default": 8, "min": 1, "max": 64})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "run"
    CATEGORY = "radial_test"

    def run(self, frames):
        return ({"samples": hm.latent("wan_t2v", frames, 16, 16)},)


class TestObserve:
    """The model with the attention decisions reported to ``RECORDERS[tag]``; with
    ``interrupt_after`` > 0, the n-th model call of the pass stops the prompt as ComfyUI's
    interrupt does (once per test)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "tag": ("STRING", {"default": ""}),
                             "interrupt_after": ("INT", {"default": 0, "min": 0, "max": 99})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "run"
    CATEGORY = "radial_test"

    def run(self, model, tag, interrupt_after):
        import comfy.model_management as mm
        import comfy.patcher_extension as pe

        rec = RECORDERS.setdefault(tag, hm.Recorder())
        m = hm.with_observer(model, rec)
        if interrupt_after:
            calls = []

            def interrupt(executor, *args, **kwargs):
                calls.append(1)
                if len(calls) == interrupt_after and not _Interrupted.done:
                    _Interrupted.done = True
                    raise mm.InterruptProcessingException()
                return executor(*args, **kwargs)

            m.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "radial_test_interrupt", interrupt)
        return (m,)


class TestKeep:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "tag": ("STRING", {"default": ""})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "radial_test"

    def run(self, samples, tag):
        RESULTS[tag] = samples["samples"].clone()
        return ()


TEST_NODES = {"RadialTestConditioning": TestConditioning, "RadialTestLatent": TestLatent,
              "RadialTestObserve": TestObserve, "RadialTestKeep": TestKeep}


@pytest.fixture(scope="module")
def graph(comfy, tmp_path_factory):
    """Two tiny Wan files in a diffusion_models folder (the high- and low-noise experts) and the
    test nodes registered with ComfyUI."""
    import folder_paths

    tm = hm.tiny_models_module()
    models = tmp_path_factory.mktemp("diffusion_models")
    tm.save(tm.wan_state_dict("wan_t2v", seed=0), models / "tiny_split_high.safetensors")
    tm.save(tm.wan_state_dict("wan_t2v", seed=1), models / "tiny_split_low.safetensors")
    folder_paths.add_model_folder_path("diffusion_models", str(models))
    comfy.nodes.NODE_CLASS_MAPPINGS.update(TEST_NODES)
    yield
    for name in TEST_NODES:
        comfy.nodes.NODE_CLASS_MAPPINGS.pop(name, None)
    folder_paths.folder_names_and_paths["diffusion_models"][0].remove(str(models))


def _patch(model_ref, first, last):
    return {"class_type": "RadialAttentionPatch",
            "inputs": {"model": model_ref, "decay_factor": 0.0, "block_size": 64, "dense_blocks": "",
                       "dense_steps_first": first, "dense_steps_last": last, "dist1": "full",
                       "backend": "pytorch", "family": "wan22_14b", "precision": "exact"}}


def _sampler(model_ref, latent_ref, start, end, *, add_noise=True, leftover=False, seed=0):
    return {"class_type": "KSamplerAdvanced",
            "inputs": {"model": model_ref, "add_noise": "enable" if add_noise else "disable", "noise_seed": seed,
                       "steps": STEPS, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                       "positive": ["c1", 0], "negative": ["c2", 0], "latent_image": latent_ref,
                       "start_at_step": start, "end_at_step": end,
                       "return_with_leftover_noise": "enable" if leftover else "disable"}}


def _prompt(first, last, split, *, two_experts=False, pass2_seed=0, interrupt_after=0, tag="out"):
    """Two KSamplerAdvanced passes: steps 0..split on the high-noise model, split..end on the
    low-noise one (the same file unless ``two_experts``), each expert patched."""
    low_file = "tiny_split_low.safetensors" if two_experts else "tiny_split_high.safetensors"
    return {
        "hi": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "tiny_split_high.safetensors", "weight_dtype": "default"},
        },
        "lo": {"class_type": "UNETLoader", "inputs": {"unet_name": low_file, "weight_dtype": "default"}},
        "phi": _patch(["hi", 0], first, last),
        "plo": _patch(["lo", 0], first, last),
        "ohi": {"class_type": "RadialTestObserve", "inputs": {"model": ["phi", 0], "tag": "hi", "interrupt_after": 0}},
        "olo": {
            "class_type": "RadialTestObserve",
            "inputs": {"model": ["plo", 0], "tag": "lo", "interrupt_after": interrupt_after},
        },
        "c1": {"class_type": "RadialTestConditioning", "inputs": {"seed": 1}},
        "c2": {"class_type": "RadialTestConditioning", "inputs": {"seed": 2}},
        "lat": {"class_type": "RadialTestLatent", "inputs": {"frames": 8}},
        "s1": _sampler(["ohi", 0], ["lat", 0], 0, split, leftover=True),
        "s2": _sampler(["olo", 0], ["s1", 0], split, 10000, add_noise=False, seed=pass2_seed),
        "keep": {"class_type": "RadialTestKeep", "inputs": {"samples": ["s2", 0], "tag": tag}},
    }


def _one_pass_prompt(first, last, tag="one"):
    return {
        "hi": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "tiny_split_high.safetensors", "weight_dtype": "default"},
        },
        "phi": _patch(["hi", 0], first, last),
        "ohi": {"class_type": "RadialTestObserve", "inputs": {"model": ["phi", 0], "tag": "one", "interrupt_after": 0}},
        "c1": {"class_type": "RadialTestConditioning", "inputs": {"seed": 1}},
        "c2": {"class_type": "RadialTestConditioning", "inputs": {"seed": 2}},
        "lat": {"class_type": "RadialTestLatent", "inputs": {"frames": 8}},
        "s1": _sampler(["ohi", 0], ["lat", 0], 0, 10000),
        "keep": {"class_type": "RadialTestKeep", "inputs": {"samples": ["s1", 0], "tag": tag}},
    }


def _queue(executor, prompt, *, check=True):
    """Queue ``prompt`` on ``executor`` (its cache persists between prompts); returns the nodes
    ComfyUI served from its cache."""
    headless = script_module("comfy_headless")
    for rec in RECORDERS.values():  # a cached observer node keeps reporting to its recorder
        rec.events.clear()
    # with a client id the executor reports its messages (execution_cached among them)
    executor, events = headless.execute(prompt, executor=executor, check=check,
                                        extra_data={"client_id": "radial-test"})
    cached = set()
    for event, data in events.events:
        if event == "execution_cached":
            cached.update(data.get("nodes", []))
    return cached


def _new_executor():
    return script_module("comfy_headless").new_executor(classic_cache=True)


def _decisions(*tags):
    """(block, decision) of every video self-attention call, in call order (a pass that is not
    placed in its schedule reports no global step index, so the steps are compared apart)."""
    return [(e["block"], "sparse" if e["kind"] == "sparse" else e["reason"])
            for tag in tags for e in RECORDERS[tag].events if e["kind"] == "sparse" or "dense step" in e["reason"]]


def _dense_steps(*tags):
    """Steps of the whole schedule with a dense-step call (pass 2's calls counted from the split)."""
    return sorted({e["step"] for tag in tags for e in RECORDERS[tag].dense("dense step")})


def test_last_steps_reach_back_into_pass_one(graph):
    """dense_steps_last longer than pass 2: pass 1's last step is one of the schedule's last."""
    first, last, split = 1, 3, 4
    _queue(_new_executor(), _one_pass_prompt(first, last))
    one, one_decisions = RESULTS["one"], _decisions("one")
    assert _dense_steps("one") == [0, 3, 4, 5]
    _queue(_new_executor(), _prompt(first, last, split))
    assert _decisions("hi", "lo") == one_decisions
    assert (RESULTS["out"] - one).abs().max().item() < 1e-4  # ComfyUI's rounding at the split


@pytest.mark.parametrize("two_experts", [False, True], ids=["one_model", "wan22_a14b_two_experts"])
def test_split_graph_after_a_cache_hit_and_an_interrupt(graph, two_experts):
    """Steps 0-1 on the high-noise model, 2-5 on the low-noise one; dense first 3 and last 1."""
    first, last, split = 3, 1, 2
    ex = _new_executor()
    _queue(ex, _prompt(first, last, split, two_experts=two_experts, tag="fresh"))
    fresh, fresh_decisions = RESULTS["fresh"], _decisions("hi", "lo")
    pass2 = _decisions("lo")
    assert _dense_steps("hi") == [0, 1] and not RECORDERS["hi"].sparse()
    lo = [d for _, d in pass2]
    per_step = len(lo) // 4
    assert lo == ["dense step (one of the first 3)"] * per_step + ["sparse"] * 2 * per_step \
        + ["dense step (one of the last 1)"] * per_step, "pass 2: step 2 dense, 3-4 sparse, 5 dense"
    if not two_experts:  # the one-pass graph with the same schedule
        _queue(_new_executor(), _one_pass_prompt(first, last))
        assert _decisions("one") == fresh_decisions
        assert (RESULTS["one"] - fresh).abs().max().item() < 1e-4  # ComfyUI's rounding at the split

    # only the second sampler changes (its seed, unused: it adds no noise): pass 1 is a cache hit
    cached = _queue(ex, _prompt(first, last, split, two_experts=two_experts, pass2_seed=1, tag="cached"))
    assert "s1" in cached and not RECORDERS["hi"].events, "pass 1 ran again instead of coming from the cache"
    assert _decisions("lo") == pass2
    assert torch.equal(RESULTS["cached"], fresh)

    # pass 2 interrupted (pass 1 from the cache again), then the same prompt queued again
    _Interrupted.done = False
    _queue(ex, _prompt(first, last, split, two_experts=two_experts, pass2_seed=2, interrupt_after=2,
                       tag="stopped"), check=False)
    assert _Interrupted.done and "stopped" not in RESULTS, "pass 2 was not interrupted"
    cached = _queue(ex, _prompt(first, last, split, two_experts=two_experts, pass2_seed=2, tag="again"))
    assert "s1" in cached and not RECORDERS["hi"].events
    assert _decisions("lo") == pass2
    assert torch.equal(RESULTS["again"], fresh)
