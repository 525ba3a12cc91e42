"""RadialMask keeps its kept blocks as runs (issue 13, item 3): the CSRs come straight from them
and the dense [nb, nb] tensor is painted only when something asks for ``blocks``.

Every list of the CSR built from the runs (query side and key side) must equal the one built
from the dense mask, and the dense mask must equal the previous builder's, over random shapes,
decays, both models, text before / after / without video, both block sizes. The kernels' path
(``block_sparse_attention`` with a RadialMask, forward and backward, eager and compiled) must
not paint the dense mask.
"""

from __future__ import annotations

import pytest
import torch

from attention_helpers import make_qkv
from mask_reference import previous_block_mask, random_builder_cases
from radial_core import csr as csr_module
from radial_core import mask as mask_module
from radial_core.attention import block_sparse_attention

CSR_FIELDS = ("row_start", "row_len", "col_idx", "row_order")


def _cases(n, seed=4242):
    """Random shapes: up to 128 frames, odd and tiny token counts, text after or before the
    video or none, both models and dist1 rules, both block sizes, sparse to dense decays."""
    cases = [(127, 3599, 0, 64, 1.0, "wan", "full", False), (128, 3599, 0, 128, 1.0, "wan", "full", False),
             (125, 3599, 0, 64, 0.2, "wan", "half", False), (33, 2040, 256, 128, 0.95, "hunyuan", "full", True),
             (33, 2040, 256, 64, 0.95, "hunyuan", "full", False), (1, 1, 0, 128, 1.0, "wan", "full", False),
             (40, 1, 3, 64, 1.0, "hunyuan", "full", True), (2, 1560, 0, 128, 1.0, "wan", "full", False),
             (9, 64, 0, 64, 1.0, "wan", "full", False), (5, 300, 128, 128, 0.95, "hunyuan", "full", True),
             (4, 16127, 0, 128, 0.5, "wan", "half", False), (3, 16300, 77, 64, 1.0, "hunyuan", "full", True)]
    return random_builder_cases(n, seed, cases, text_first_any_model=True)


def _fresh(case):
    mask_module.clear_mask_cache()
    F, T, text, b, decay, model, dist1, text_first = case
    return mask_module.radial_mask(F, T, text_tokens=text, block_size=b, decay_factor=decay, model=model,
                                   dist1=dist1, text_first=text_first)


def _csr_differences(got, want):
    out = [f for f in CSR_FIELDS if getattr(got, f).dtype != getattr(want, f).dtype
           or not torch.equal(getattr(got, f), getattr(want, f))]
    out += [f for f in ("nb", "mask_heads", "kept", "device") if getattr(got, f) != getattr(want, f)]
    return out


def test_csrs_from_runs_equal_those_from_the_dense_mask():
    """Query-side and key-side CSR from the runs == build_csr of the dense mask (and of its
    transpose), list for list; the painted mask == the previous builder's; density alike."""
    cpu = torch.device("cpu")
    bad = []
    for case in _cases(90):
        m = _fresh(case)
        want_mask = previous_block_mask(*case)
        assert m._blocks is None, "radial_mask() painted the dense mask"
        got_csr, got_key = m.csr("cpu"), m.key_csr("cpu")
        assert m._blocks is None, "the CSRs painted the dense mask"
        problems = _csr_differences(got_csr, csr_module.build_csr(want_mask, cpu))
        problems += ["key " + p for p in _csr_differences(got_key, csr_module.build_csr(want_mask.T, cpu))]
        if m.density != mask_module.mask_density(want_mask):
            problems.append("density")
        if m.shape != tuple(want_mask.shape) or not torch.equal(m.blocks, want_mask):
            problems.append("blocks")
        if problems:
            bad.append((case, problems))
    assert not bad, f"{len(bad)} shapes differ, e.g. {bad[:3]}"


def test_runs_are_sorted_disjoint_and_read_only():
    for case in _cases(30, seed=7):
        m = _fresh(case)
        run_ptr, lo, hi = m.runs
        assert run_ptr[0] == 0 and run_ptr[-1] == lo.size == hi.size and run_ptr.size == m.nb + 1
        assert bool((lo < hi).all()) and bool((lo >= 0).all()) and bool((hi <= m.nb).all())
        starts = run_ptr[1:-1]
        later = torch.ones(lo.size, dtype=torch.bool).numpy()
        later[starts[starts < lo.size]] = False  # a row's first run follows nothing of its row
        later[0] = False
        assert bool((lo[1:][later[1:]] > hi[:-1][later[1:]]).all()), f"{case}: runs overlap or touch"
        for a in m.runs:
            with pytest.raises(ValueError):
                a[:1] = 0


def test_blocks_painted_once_as_a_normal_tensor_under_inference_mode():
    m = _fresh((21, 3600, 0, 128, 0.2, "wan", "full", False))
    with torch.inference_mode():
        blocks = m.blocks
    assert not blocks.is_inference() and blocks.dtype == torch.bool and tuple(blocks.shape) == m.shape
    assert m.blocks is blocks
    with pytest.raises(AttributeError):
        m.density = 0.5


def _attention(mask, S, block_size, seed):
    """Forward + backward through block_sparse_attention (PyTorch backend): output, gradients."""
    q, k, v = (t.requires_grad_() for t in make_qkv(1, 2, S, 16, torch.float32, seed=seed))
    out = block_sparse_attention(q, k, v, mask, block_size=block_size, backend="pytorch")
    out.square().sum().backward()
    return out.detach(), q.grad, k.grad, v.grad


def test_attention_with_a_radial_mask_never_paints_the_dense_mask():
    F, T, b = 5, 200, 64
    dense = mask_module.radial_block_mask(F, T, block_size=b, decay_factor=0.5)  # a painted copy
    m = _fresh((F, T, 0, b, 0.5, "wan", "full", False))  # a new mask, nothing painted yet
    ours = _attention(m, F * T, b, seed=3)
    assert m._blocks is None, "the attention call (forward and backward) painted the dense mask"
    for a, z in zip(ours, _attention(dense, F * T, b, seed=3)):
        assert torch.equal(a, z)


def test_compiled_call_with_a_radial_mask_equals_eager_without_painting():
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    m = _fresh((4, 150, 0, 64, 0.3, "wan", "full", False))
    S = 4 * 150
    q, k, v = make_qkv(1, 2, S, 16, torch.float32, seed=11)

    def f(q, k, v):
        return block_sparse_attention(q, k, v, m, block_size=64, backend="pytorch") * 2

    want = f(q, k, v)
    dynamo.reset()
    counters.clear()
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(q, k, v)
    assert sum(counters["graph_break"].values()) == 0
    assert torch.equal(got, want)
    assert m._blocks is None


@pytest.mark.parametrize("group_entries", [1, 100, 5000])
def test_small_groups_carry_incomplete_rows(monkeypatch, group_entries):
    """Groups of one or a few row frames (a block row shared by frames of two groups, or by
    several frames when T < block): the same runs as in one group."""
    monkeypatch.setattr(mask_module, "_GROUP_ENTRIES", group_entries)
    bad = []
    for case in [(9, 50, 0, 128, 1.0, "wan", "full", False), (12, 33, 20, 64, 0.5, "hunyuan", "full", True),
                 (7, 300, 77, 128, 0.95, "hunyuan", "full", False), (6, 127, 256, 128, 0.8, "hunyuan", "full", True),
                 (40, 1, 3, 64, 1.0, "hunyuan", "full", True), *_cases(12, seed=3)]:
        m = _fresh(case)
        if not torch.equal(m.blocks, previous_block_mask(*case)):
            bad.append(case)
    assert not bad, f"{len(bad)} shapes differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("heads", [1, 3])
def test_key_csr_from_csr_equals_the_transposed_masks_csr(heads):
    """The key side from any CPU CSR (per-head masks too), list for list."""
    from attention_helpers import random_block_mask

    cpu = torch.device("cpu")
    for nb, density, seed in [(1, 1.0, 0), (37, 0.3, 1), (200, 0.05, 2), (129, 0.9, 3)]:
        mask = random_block_mask(nb, density, seed=seed, heads=None if heads == 1 else heads)
        got = csr_module.key_csr_from_csr(csr_module.build_csr(mask, cpu), cpu)
        assert not _csr_differences(got, csr_module.build_csr(mask.transpose(-1, -2), cpu)), (nb, heads)
