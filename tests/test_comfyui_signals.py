"""What newer ComfyUI gives a pack, each used and tested on the version that has it.

- ``transformer_options["block_index"]``: the block the model says it is in wins over our call
  count (ComfyUI 0.3.x Wan does not report it; the count is the fallback);
- ``AttentionTensorContainer`` q/k/v (single-use holders, 0.33): ComfyUI unwraps them for an
  override without ``container_function``; the sparse and the dense path both work on them;
- an override that re-installs itself on top at every step and passes the calls it declines
  down (what ComfyUI's core "Model Sparse Attention" node does, 0.34+): it takes its calls,
  radial attention gets the rest, and the log says so once.
"""

from __future__ import annotations

import logging

import pytest
import torch

import helpers_models as hm
from radial_core.reference import dense_masked_attention

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def rp(comfy):
    return comfy.pack_module("nodes.radial_patcher")


def _forward(comfy, patched, frames=4, h=8, w=8):
    """A run state with one open forward of the patched Wan model (as its wrappers make it)."""
    run_state = comfy.pack_module("nodes.run_state")
    override = patched.model_options["transformer_options"]["optimized_attention_override"]
    cfg = override.config
    run = run_state.RunState(None)
    x = torch.zeros(1, 16, frames, h, w)
    fwd = run_state.open_forward(run, cfg.family, x, torch.tensor([1.0]), None, {}, {}, 0, 0,
                                 patched.model.diffusion_model)
    return run, fwd, override


def block_of_call(fwd, transformer_options, double_blocks, num_blocks):
    """What the override does for a video self-attention call: read the block, then count the call."""
    block = fwd.peek_block(transformer_options, double_blocks, num_blocks)
    fwd.advance()
    return block


def test_block_index_from_comfyui_wins_over_the_count(comfy, rp):
    run_state = comfy.pack_module("nodes.run_state")
    fwd = run_state.ForwardContext(batch=1, latent_shape=(1, 16, 4, 8, 8), frames=4, tokens_per_frame=16,
                                   extra_frames=0, context_len=None, step=None, schedule=(0, 1, 2))
    assert block_of_call(fwd, {}, 0, 3) == 0  # no signal (Wan in 0.3.x): the count
    assert block_of_call(fwd, {"block_index": 2, "total_blocks": 3}, 0, 3) == 2  # the model's word
    assert block_of_call(fwd, {}, 0, 3) == 2  # the count went on with it
    hy = run_state.ForwardContext(batch=1, latent_shape=(1, 16, 4, 8, 8), frames=4, tokens_per_frame=16,
                                  extra_frames=0, context_len=None, step=None, schedule=(0, 1, 2, 3))
    assert block_of_call(hy, {"block_index": 1, "total_blocks": 2, "block_type": "single"}, 2, 4) == 3
    assert block_of_call(hy, {"block_index": 5, "total_blocks": 2, "block_type": "single"}, 2, 4) is None


def test_dense_blocks_follow_the_models_block_index(rp):
    """With dense_blocks "1" exactly block 0 stays dense in every forward, whichever signal names it."""
    base = hm.load_model("wan_t2v")
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="1"), rec)
    hm.sample(p, "wan_t2v", hm.latent("wan_t2v", 8, 16, 16), steps=2)
    assert [e["block"] for e in rec.dense("dense block")] == [0, 0]
    assert [e["block"] for e in rec.sparse()] == [1, 1]


def test_attention_tensor_containers(comfy, rp):
    attention = pytest.importorskip("comfy.ldm.modules.attention")
    import comfyui_version

    if not hasattr(attention, "AttentionTensorContainer"):
        pytest.skip(f"ComfyUI {comfyui_version.__version__} has no AttentionTensorContainer (0.33 has)")
    C = attention.AttentionTensorContainer
    rs = comfy.pack_module("nodes.run_state")
    rec = hm.Recorder(keep_tensors=True)
    patched = hm.with_observer(rp.apply_radial_patch(hm.load_model("wan_t2v"), block_size=64, dense_blocks=""), rec)
    run, fwd, override = _forward(comfy, patched, frames=8, h=16, w=16)  # 8 frames x 64 tokens: sparse
    topts = {"optimized_attention_override": override, rs.RUN_KEY: run, rs.FWD_KEY: fwd}
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 512, 128, generator=g) for _ in range(3))
    containers = [C(t.clone()) for t in (q, k, v)]
    out = attention.optimized_attention(*containers, heads=1, transformer_options=topts)
    assert all(c.tensor is None for c in containers), "the containers were not consumed"
    (e,) = rec.sparse()
    ref = dense_masked_attention(q.view(1, 512, 1, 128).transpose(1, 2), k.view(1, 512, 1, 128).transpose(1, 2),
                                 v.view(1, 512, 1, 128).transpose(1, 2), e["block_mask"], 64, dtype=torch.float64)
    assert float((out.view(1, 512, 1, 128).transpose(1, 2) - ref).norm() / ref.norm()) < 1e-5
    # dense path (cross-attention: other key length) through containers
    kc, vc = (torch.randn(1, 8, 128, generator=g) for _ in range(2))
    out = attention.optimized_attention(C(q.clone()), C(kc.clone()), C(vc.clone()), heads=1, transformer_options=topts)
    want = attention.optimized_attention(q, kc, vc, heads=1)
    assert torch.allclose(out, want, atol=1e-5)
    assert rec.dense("cross-attention")


class OnTopEveryStep:
    """Behaves as ComfyUI's Model Sparse Attention node does with its override: an ON_PREPARE_STATE
    callback puts it on top of whatever override is there at every step; it takes the calls of
    the blocks it wants (here: block 1 and up, by ComfyUI's block_index) and hands every other
    call to the override below it."""

    def __init__(self):
        self.taken = 0
        self.below = None

    def install(self, model):
        import comfy.patcher_extension as pe

        def on_prepare_state(patcher, timestep, model_options=None, *args, **kwargs):
            # this step's options (ComfyUI 0.33 passes them; 0.3.75 only the patcher)
            opts = model_options if model_options is not None else patcher.model_options
            topts = opts.setdefault("transformer_options", {})
            current = topts.get("optimized_attention_override")
            if current is not self:
                self.below = current
                topts["optimized_attention_override"] = self

        model.add_callback_with_key(pe.CallbacksMP.ON_PREPARE_STATE, "on-top-test", on_prepare_state)
        return model

    def __call__(self, func, *args, **kwargs):
        topts = kwargs.get("transformer_options") or {}
        q, k = args[0], args[1]
        if topts.get("block_index", 0) >= 1 and q.shape == k.shape:
            self.taken += 1
            return func(*args, **kwargs)
        if self.below is not None:
            return self.below(func, *args, **kwargs)
        return func(*args, **kwargs)


def test_an_override_on_top_at_every_step_takes_its_calls_radial_the_rest(comfy, rp, caplog):
    import comfy.model_patcher as mp

    if not hasattr(mp.ModelPatcher, "add_callback_with_key"):
        pytest.skip("this ComfyUI has no keyed model callbacks")
    base = hm.load_model("wan_t2v")
    rec = hm.Recorder()
    patched = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    top = OnTopEveryStep()
    model = top.install(patched.clone())
    with caplog.at_level(logging.WARNING):
        hm.sample(model, "wan_t2v", hm.latent("wan_t2v", 8, 16, 16), steps=2)
    sparse = rec.sparse()
    if top.taken == 0:
        import comfyui_version

        pytest.skip(f"on ComfyUI {comfyui_version.__version__} an ON_PREPARE_STATE callback gets no model_options "
                    f"of the step and cannot put an override on top (0.33 passes them)")
    # Wan reports block_index (0.33): the override on top took block 1, radial got block 0
    assert top.taken == 2 and [e["block"] for e in sparse] == [0, 0]
    notes = [r.getMessage() for r in caplog.records if "runs above Radial Attention Patch" in r.getMessage()]
    assert len(notes) == 1, notes
    assert "OnTopEveryStep" in notes[0]


def test_precision_input_reaches_the_kernel_call(comfy, rp, caplog):
    """precision "int8-qk" on the node: on a machine without the int8 kernel (this CPU) the sparse
    calls run exact, so the sampled latent equals the exact run's; the choice is in the config.
    A workflow saved with its old name "fp8" gets the same, with one INFO line and no error."""
    base = hm.load_model("wan_t2v")
    lat = hm.latent("wan_t2v", 8, 16, 16)
    exact = rp.apply_radial_patch(base, block_size=64, dense_blocks="")
    int8 = rp.apply_radial_patch(base, block_size=64, dense_blocks="", precision="int8-qk")
    assert rp.get_radial_config(int8)["precision"] == "int8-qk"
    assert rp.get_radial_config(exact)["precision"] == "exact"
    with caplog.at_level(logging.INFO):
        for _ in range(2):
            old = rp.apply_radial_patch(base, block_size=64, dense_blocks="", precision="fp8")
            assert rp.get_radial_config(old)["precision"] == "int8-qk"
    renamed = [r for r in caplog.records if "old name" in r.getMessage()]
    assert len(renamed) <= 1 and all(r.levelno == logging.INFO for r in renamed), renamed
    if torch.cuda.is_available():
        pytest.skip("on a GPU the int8 kernel may run: tests/test_fp8_attention.py checks its error")
    assert torch.equal(hm.sample(int8, "wan_t2v", lat, steps=2), hm.sample(exact, "wan_t2v", lat, steps=2))
    with pytest.raises(ValueError, match="precision"):
        rp.apply_radial_patch(base, precision="fp4")


def test_dense_calls_go_to_the_function_comfyui_would_run(comfy, rp):
    """--use-ck-attention (0.33) makes comfy-kitchen's INT8 attention ComfyUI's default: ComfyUI
    hands that function to the override as ``func``; every call radial attention declines must
    run it (here a stand-in that records its calls), with the arguments unchanged."""
    rs = comfy.pack_module("nodes.run_state")
    patched = rp.apply_radial_patch(hm.load_model("wan_t2v"), block_size=64, dense_blocks="1")
    run, fwd, override = _forward(comfy, patched, frames=8, h=16, w=16)
    topts = {rs.RUN_KEY: run, rs.FWD_KEY: fwd}
    calls = []

    def default_attention(q, k, v, heads, **kwargs):
        calls.append((q, k, v, heads))
        return q * 0 + 1

    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 512, 128, generator=g)
    text = torch.randn(1, 8, 128, generator=g)
    out = override(default_attention, q, text, text, heads=1, transformer_options=topts)  # cross-attention
    assert len(calls) == 1 and calls[0][0] is q and calls[0][1] is text and torch.equal(out, torch.ones_like(q))
    out = override(default_attention, q, q, q, heads=1, transformer_options=topts)  # block 0: a dense block
    assert len(calls) == 2 and torch.equal(out, torch.ones_like(q))
    override(default_attention, q, q, q, heads=1, transformer_options=topts)  # block 1: sparse, ours
    assert len(calls) == 2
