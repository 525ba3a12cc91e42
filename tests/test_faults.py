"""Faults during a run with the Radial Attention Patch: ComfyUI's interrupt mid-sampling, a GPU
out-of-memory error inside a patched step, and partial model loading (``--lowvram``). Each time the
next run must give exactly what a clean run gives. Real ComfyUI, tiny random-weight models."""

from __future__ import annotations

import pytest
import torch

import helpers_models as hm

pytestmark = pytest.mark.comfy

STEPS = 4


@pytest.fixture(scope="module")
def rp(comfy):
    return comfy.pack_module("nodes.radial_patcher")


@pytest.fixture(autouse=True)
def no_interrupt_left(comfy):
    yield
    import comfy.model_management as mm

    mm.interrupt_current_processing(False)


def patched(rp, base, recorder):
    return hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="1",
                                                  dense_steps_first=1, dense_steps_last=1), recorder)


def decisions(rec: hm.Recorder) -> list[tuple]:
    return [(e["kind"], e.get("step"), e.get("block")) for e in rec.events]


class InterruptAt(hm.Recorder):
    """Observer that presses ComfyUI's interrupt (what POST /interrupt and the Cancel button do)
    at the first sparse call of ``step``, i.e. in the middle of the sampling run."""

    def __init__(self, step: int):
        super().__init__()
        self.step, self.fired = step, False

    def __call__(self, event: dict) -> None:
        super().__call__(event)
        if not self.fired and event["kind"] == "sparse" and event.get("step") == self.step:
            import comfy.model_management as mm

            self.fired = True
            mm.interrupt_current_processing(True)


@pytest.mark.parametrize("kind", ["wan_t2v", "hunyuan_t2v"])
def test_interrupt_mid_sampling_then_queue_again_gives_the_uninterrupted_result(rp, kind):
    import comfy.model_management as mm

    base = hm.load_model(kind)
    lat = hm.latent(kind, 8, 16, 16)
    clean_rec = hm.Recorder()
    clean = hm.sample(patched(rp, base, clean_rec), kind, lat, steps=STEPS)
    assert clean_rec.sparse(), "the patch must run sparse calls for this test to mean anything"

    stopper = InterruptAt(step=2)
    model = patched(rp, base, stopper)
    with pytest.raises(mm.InterruptProcessingException):
        hm.sample(model, kind, lat, steps=STEPS)
    assert stopper.fired and not mm.processing_interrupted()
    # queued again: the same patched MODEL (as ComfyUI's cache keeps it), a fresh run
    again_rec = hm.Recorder()
    hm.observe(model, again_rec)
    again = hm.sample(model, kind, lat, steps=STEPS)
    assert torch.equal(again, clean)
    assert decisions(again_rec) == decisions(clean_rec)  # steps counted from 0 again, same blocks


def test_interrupt_through_comfyuis_executor_then_run_again(comfy, rp):
    """The executor's own handling: the interrupted prompt ends with execution_interrupted, and the
    next prompt with the same patched MODEL runs its whole schedule again."""
    import comfy.model_management as mm

    base = hm.load_model("wan_t2v")
    lat = hm.latent("wan_t2v", 8, 16, 16)
    clean_rec = hm.Recorder()
    clean = hm.sample(patched(rp, base, clean_rec), "wan_t2v", lat, steps=STEPS)
    stopper = InterruptAt(step=1)
    model = patched(rp, base, stopper)
    try:
        hm.sample(model, "wan_t2v", lat, steps=STEPS)
    except mm.InterruptProcessingException:
        pass
    else:
        pytest.fail("ComfyUI's interrupt did not stop the sampler")
    # a second interrupt in the next run's first step, then a third, clean run
    stopper2 = InterruptAt(step=1)
    hm.observe(model, stopper2)
    with pytest.raises(mm.InterruptProcessingException):
        hm.sample(model, "wan_t2v", lat, steps=STEPS)
    hm.observe(model, hm.Recorder())
    assert torch.equal(hm.sample(model, "wan_t2v", lat, steps=STEPS), clean)


class PartialLoadCheck(hm.Recorder):
    """Observer that records, at each sparse call, whether ComfyUI has the model only partly on
    the GPU (``model_lowvram``: the rest of the weights are cast to the GPU layer by layer)."""

    def __init__(self, patcher_ref: list):
        super().__init__()
        self.patcher_ref, self.partial = patcher_ref, []

    def __call__(self, event: dict) -> None:
        super().__call__(event)
        if event["kind"] == "sparse":
            self.partial.append(bool(getattr(self.patcher_ref[0].model, "model_lowvram", False)))


@pytest.mark.parametrize("state", ["LOW_VRAM", "NO_VRAM"])
def test_partial_model_loading_gives_the_full_load_result(comfy, rp, cuda, state):
    """ComfyUI's --lowvram / --novram loading (VRAMState; with --novram nothing stays on the GPU
    between layers) with the patch: same decisions and the same result as a full load."""
    import comfy.model_management as mm

    base = hm.load_model("wan_t2v")
    lat = hm.latent("wan_t2v", 8, 16, 16)
    mm.unload_all_models()
    full_rec = hm.Recorder()
    full = hm.sample(patched(rp, base, full_rec), "wan_t2v", lat, steps=STEPS)
    mm.unload_all_models()
    ref: list = []
    low_rec = PartialLoadCheck(ref)
    low_model = patched(rp, base, low_rec)
    ref.append(low_model)
    saved = mm.vram_state
    mm.vram_state = getattr(mm.VRAMState, state)
    try:
        low = hm.sample(low_model, "wan_t2v", lat, steps=STEPS)
    finally:
        mm.vram_state = saved
        mm.unload_all_models()
    if state == "NO_VRAM":
        assert low_rec.partial and all(low_rec.partial), "ComfyUI did not load the model partially"
    assert decisions(low_rec) == decisions(full_rec)
    torch.testing.assert_close(low, full, rtol=2e-2, atol=2e-2)


def test_gpu_out_of_memory_in_a_patched_step_leaves_comfyui_able_to_run_the_next(comfy, rp, cuda):
    """The GPU fills up in the middle of a patched step (another process, a bigger node: here a
    filler that takes all free memory at the first sparse call of step 1). The run fails with
    torch's out-of-memory error, as ComfyUI expects; after ComfyUI's own clean-up (execution.py on
    an OOM: unload the models, empty the cache) the next run works and equals a clean run."""
    import comfy.model_management as mm

    base = hm.load_model("wan_t2v")
    lat = hm.latent("wan_t2v", 8, 16, 16)
    mm.unload_all_models()
    clean = hm.sample(patched(rp, base, hm.Recorder()), "wan_t2v", lat, steps=STEPS)

    class FillAt(hm.Recorder):
        def __init__(self):
            super().__init__()
            self.filler: list[torch.Tensor] = []

        def __call__(self, event):
            super().__call__(event)
            if event["kind"] == "sparse" and event.get("step") == 1 and not self.filler:
                for chunk in (1 << 30, 1 << 26, 1 << 20, 1 << 16):
                    while True:
                        try:
                            self.filler.append(torch.empty(chunk, dtype=torch.uint8, device="cuda"))
                        except torch.OutOfMemoryError:
                            break

    filler = FillAt()
    model = patched(rp, base, filler)
    with pytest.raises(torch.OutOfMemoryError):
        hm.sample(model, "wan_t2v", lat, steps=STEPS)
    assert filler.filler, "the filler took no memory"
    filler.filler.clear()
    mm.unload_all_models()
    mm.soft_empty_cache(True)
    rec = hm.Recorder()
    hm.observe(model, rec)
    again = hm.sample(model, "wan_t2v", lat, steps=STEPS)
    assert rec.sparse()
    torch.testing.assert_close(again, clean, rtol=0, atol=0)
