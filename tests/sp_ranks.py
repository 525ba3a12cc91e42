"""One rank of the CPU sequence-parallel runs (tests/test_sequence_parallel.py), spawned over gloo.

Every rank builds the same inputs, runs the one-process override on the whole sequence (the
reference), cuts its own chunk the way raylight lays the sequence out (padded tail; HunyuanVideo's
per-rank ``[text_r | video_r]``), runs the pack's sequence-parallel call on it and checks its real
output rows against the reference, bit for bit. Cases are plain dicts so they pickle to spawn.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

import pack_import

B, D, BLOCK = 1, 16, 64


def _family(m, case):
    fam = m.family.ModelFamily
    if case["kind"] == "joint":
        return fam("hunyuan", "HunyuanVideo-like", "hunyuan", (1, 2, 2), 3, "joint", double_blocks=1)
    if case.get("ltx"):
        return fam("ltxav", "LTX-2-like", "wan", (1, 1, 1), 3, "wan", video_width=case["heads"] * D,
                   exact_video=True)
    return fam("wan21", "Wan-like", "wan", (1, 2, 2), 3, "wan")


def _state(m, case, batch=B):
    cfg = m.plan.RadialConfig(_family(m, case), 0.2, False, BLOCK, frozenset(), "", 0, 0, "full", "pytorch")
    fwd = m.run_state.ForwardContext(
        batch=batch, latent_shape=(batch, 16, case["frames"], 16, 16), frames=case["frames"],
        tokens_per_frame=case["tpf"],
        extra_frames=0, context_len=case.get("text") or None, step=m.steps.StepInfo(3, False, ""),
        schedule=(0, 1, 2), text_first=case.get("text_first", False))
    run = m.run_state.RunState(None)
    override = m.override.RadialAttentionOverride(cfg)
    # the model call's forward context where the APPLY_MODEL wrapper leaves it: its per-call options
    topts = {m.sp.OVERRIDE_KEY: override, m.run_state.RUN_KEY: run, m.run_state.FWD_KEY: fwd}
    if case["kind"] == "joint":
        topts["block_type"] = case["block_type"]
        if case["block_type"] == "single":
            topts["img_slice"] = [case["text"], case["frames"] * case["tpf"]]
    return override, run, topts


def _pad_chunk(t, n, rank):
    """raylight's pad_to_world_size + torch.chunk on dim 1, and which rows are real."""
    L = t.shape[1]
    pad = (-L) % n
    real = torch.cat([torch.ones(L, dtype=torch.bool), torch.zeros(pad, dtype=torch.bool)])
    t = torch.cat([t, t.new_zeros(t.shape[0], pad, *t.shape[2:])], 1)
    return t.chunk(n, 1)[rank], real.chunk(n)[rank]


def engine_chunk(full, case, n, rank):
    """This rank's chunk of ``full`` ([B, L, ...] in the mask's order) as raylight lays it out."""
    video = case["frames"] * case["tpf"]
    if case["kind"] != "joint":
        return _pad_chunk(full, n, rank)
    first_text = case.get("text_first", False)
    vid = full[:, case["text"]:] if first_text else full[:, :video]
    txt = full[:, :case["text"]] if first_text else full[:, video:]
    if case["block_type"] == "double":  # per rank [text_r | video_r], each padded on its own
        (tc, tr), (vc, vr) = _pad_chunk(txt, n, rank), _pad_chunk(vid, n, rank)
        return torch.cat([tc, vc], 1), torch.cat([tr, vr])
    return _pad_chunk(torch.cat([txt, vid], 1), n, rank)  # single blocks: [text | video] padded


def run_rank(rank, n, init_file, cases):
    pack_import.install()

    class m:  # a namespace
        plan = pack_import.module("nodes.attention_plan")
        run_state = pack_import.module("nodes.run_state")
        steps = pack_import.module("nodes.step_tracker")
        family = pack_import.module("nodes.model_family")
        override = pack_import.module("nodes.attention_override")
        sp = pack_import.module("nodes.sequence_parallel")
        training = pack_import.module("nodes.training")

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=n)
    try:
        group = dist.new_group(list(range(n)))
        for case in cases:
            _check(m, case, n, rank, group)
    finally:
        dist.destroy_process_group()


def _check(m, case, n, rank, group):
    if case.get("all_to_all"):
        return _check_all_to_all(m, n, rank, group)
    H = case["heads"]
    L = case["frames"] * case["tpf"] + case.get("text", 0)
    width = case.get("width", H * D)
    g = torch.Generator().manual_seed(1234)
    q, k, v = (torch.randn(B, L, width, generator=g) for _ in range(3))
    joint = case["kind"] == "joint"

    def as_call(t, heads):  # Wan / LTX: [B, L, H*D] with heads; joint: [B, H, L, D]
        return t.view(B, t.shape[1], heads, -1).transpose(1, 2) if joint else t

    heads = width // D
    override, _, topts = _state(m, case)
    ref = override(lambda *a, **kw: None, *(as_call(t, heads) for t in (q, k, v)), heads, skip_reshape=joint,
                   transformer_options=topts)
    run_ref = topts[m.run_state.RUN_KEY]
    assert (ref is None) == bool(case.get("expect_dense")), (case, run_ref.dense_calls)

    # raylight's CFG parallelism: this group runs one of the model call's conds
    override, run, topts = _state(m, case, case.get("fwd_batch", B))
    local = [engine_chunk(t, case, n, rank) for t in (q, k, v)]
    real = local[0][1]
    fallback_calls = []

    def fallback():
        fallback_calls.append(1)
        return torch.full((B, real.numel(), width), float("nan"))

    kind = "joint" if joint else "plain"
    out = m.sp.RadialUlyssesAttention(None, kind).attend(
        *(as_call(t, heads) for t, _ in local), heads, topts, group, n, rank, 1, fallback,
        skip_reshape=joint, skip_output_reshape=False)
    if case.get("expect_dense"):
        assert fallback_calls and run.sparse_calls == 0, (case, run.dense_calls)
        return
    assert not fallback_calls and run.sparse_calls == 1 == run_ref.sparse_calls, (case, run.dense_calls)
    want, _ = engine_chunk(ref, case, n, rank)
    assert out.shape == want.shape, (case, out.shape, want.shape)
    diff = (out[:, real] - want[:, real]).abs().max().item()
    assert torch.equal(out[:, real], want[:, real]), f"{case} rank {rank}: max abs diff {diff}"
    assert torch.count_nonzero(out[:, ~real]) == 0, "padding rows come back as zeros"


def _check_all_to_all(m, n, rank, group):
    """The written-out all-to-all: rank r gets heads r*H/n.. of the whole sequence, and back."""
    S, H = 6 * n, 2 * n
    x = torch.randn(B, S, H, D, generator=torch.Generator().manual_seed(7))
    s, h = S // n, H // n
    local = x[:, rank * s:(rank + 1) * s].contiguous()
    full = m.sp._all_to_all_4d(local, group, 2, 1)
    assert torch.equal(full, x[:, :, rank * h:(rank + 1) * h])
    assert torch.equal(m.sp._all_to_all_4d(full, group, 1, 2), local)
    yc = m.sp._yunchang_all_to_all()
    if yc is not None:  # yunchang's own, where installed: the same tensors
        assert torch.equal(yc.apply(group, local, 2, 1, False), full)
        assert torch.equal(yc.apply(group, full.contiguous(), 1, 2, False), local)
