"""Two device threads on one sampling pass (ComfyUI's MultiGPU CFG split), on the CPU.

ComfyUI's "MultiGPU CFG Split" runs one thread per GPU; each thread builds its own
``transformer_options`` per call from the model's (values by reference, so the pass's RunState
is one object shared by the threads) and calls ``apply_model`` on its model clone. Here two
threads do exactly that on one tiny Wan model, with a block replacement that makes the forwards
interleave: both threads meet at a barrier in block 0, and thread B holds its last block until
thread A's whole forward has returned. Every video self-attention call of both threads must be
sparse, each in its own block.
"""

from __future__ import annotations

import threading

import pytest
import torch

import helpers_models as hm

pytestmark = pytest.mark.comfy

TIMEOUT = 120


class ThreadRecorder(hm.Recorder):
    """A recorder that notes which thread made each attention call."""

    def __call__(self, event: dict) -> None:
        super().__call__({**event, "thread": threading.current_thread().name})


def test_two_threads_forwards_interleaved_stay_sparse(comfy):
    rp = comfy.pack_module("nodes.radial_patcher")
    rs = comfy.pack_module("nodes.run_state")
    rec = ThreadRecorder()
    patched = hm.with_observer(rp.apply_radial_patch(hm.load_model("wan_t2v"), block_size=64, dense_blocks="",
                                                     backend="pytorch"), rec)
    blocks = patched.model.diffusion_model.blocks
    last = len(blocks) - 1
    meet = threading.Barrier(2, timeout=TIMEOUT)
    a_inside, a_done = threading.Event(), threading.Event()

    def first_block(args, extra):
        if threading.current_thread().name == "A":
            a_inside.set()
        meet.wait()  # both forwards are open from here on
        return extra["original_block"](args)

    def last_block(args, extra):
        if threading.current_thread().name == "B":
            assert a_done.wait(TIMEOUT), "thread A's forward did not finish"
        return extra["original_block"](args)

    patched.set_model_patch_replace(first_block, "dit", "double_block", 0)
    patched.set_model_patch_replace(last_block, "dit", "double_block", last)
    model_topts = dict(patched.model_options["transformer_options"])
    # what ComfyUI's prepare_model_patcher adds when sampling starts: the patcher's wrappers
    model_topts["wrappers"] = patched.wrappers
    ms = patched.get_model_object("model_sampling")
    sample_sigmas = torch.tensor([float(ms.sigma_max), 0.5, 0.0])
    run = rs.RunState(None)  # one pass: the object every device thread's options share
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 8, 16, 16, generator=g)
    context = torch.randn(1, 8, 4096, generator=g)
    outputs, errors = {}, []

    def device_thread():
        name = threading.current_thread().name
        try:
            if name == "B":  # B opens its forward while A's is open (A waits in block 0)
                assert a_inside.wait(TIMEOUT), "thread A did not start"
            # what ComfyUI's _calc_cond_batch builds per call: a new dict, the values shared
            topts = {**model_topts, "sigmas": sample_sigmas[:1], "sample_sigmas": sample_sigmas, rs.RUN_KEY: run}
            with torch.inference_mode():
                outputs[name] = patched.model.apply_model(x, sample_sigmas[:1], c_crossattn=context,
                                                          transformer_options=topts)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append((name, exc))
            meet.abort()
        finally:
            if name == "A":
                a_done.set()

    threads = [threading.Thread(target=device_thread, name=n) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a device thread hung"
    assert not errors, errors
    for name in ("A", "B"):
        calls = [(e["kind"], e["block"]) for e in rec.events
                 if e["thread"] == name and e.get("reason") != "cross-attention"]
        assert calls == [("sparse", b) for b in range(len(blocks))], f"thread {name}: {calls}"
    assert torch.equal(outputs["A"], outputs["B"])  # same input, same model: the same result
    assert run.sparse_calls == 2 * len(blocks)


def test_a_run_survives_a_deep_copy_of_the_options(comfy):
    """ComfyUI 0.3.x deep-copies model_options on clone(), also while a pass's run sits in them:
    the copy is the same run (a lock cannot be copied; the counters must stay one)."""
    import copy

    rs = comfy.pack_module("nodes.run_state")
    run = rs.RunState(None)
    opts = {"transformer_options": {rs.RUN_KEY: run}}
    assert copy.deepcopy(opts)["transformer_options"][rs.RUN_KEY] is run

