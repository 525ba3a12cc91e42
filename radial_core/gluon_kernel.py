"""Hopper forward kernel in Gluon: warp-specialised, with the softmax overlapping the MMAs.

The Triton kernel (``triton_kernel``) leaves the schedule to the compiler, which on Hopper runs
each program's two products and its softmax one after the other (docs/perf-notes.md). This
kernel writes the schedule out, after FlashAttention-3 (Shah et al., 2024):

- one program = one 128-row query block of one (batch, head), 12 warps in three partitions of
  four: a **producer** (the default partition, 24 registers a thread) that issues every TMA
  copy (the two halves of Q, then K and V of each kept key block, read from the CSR, into a
  ring of ``dispatch.GLUON_STAGES`` shared-memory buffers), and two **consumers** (240
  registers), each owning 64 of the query rows; both read the same K/V buffers, and each releases a buffer (an
  ``mbarrier`` arrive) once its last product on it is done. (Triton 3.6 does not lower scalar
  loads in the default partition when it is a consumer, nor TMA copies from a one-warp
  partition: hence a four-warp producer as the default.)
- inside a consumer, FlashAttention-3's intra-warpgroup overlap: the S = Q.K^T product of tile
  t and the O += P.V product of tile t - 1 are issued as asynchronous ``wgmma``, and the
  softmax of tile t runs while the P.V product is still on the tensor cores; O is rescaled
  after that product completes (the rescale then applies to tile t - 1's contribution too,
  which was computed against the previous maximum: the algebra is FlashAttention-2's);
- online softmax in base 2 with the scale folded into one multiplier, float32 statistics and
  accumulator; keys past S (the block holding the sequence end) and padded keys get -inf
  before the row maximum; a row that has no valid key keeps zeros (never NaN).

``precision="int8-qk"`` (``forward_int8``): the same schedule with S = Q.K^T on int8 wgmma over
quantised copies of Q and K (one scale per consumer's 64 rows, one per 128-key tile, K smoothed
by its mean; ``int8_quant.quantize_int8``), the int32 scores turned to float by an integer add
(``_int_scores``), P.V in V's 16-bit dtype.

``precision="int8"`` (``forward_int8`` with ``v8``): P.V on int8 wgmma too. V comes quantised per
channel with its mean out, transposed (``int8_quant.quantize_v8``); each tile's P is taken
against the tile's own row maximum and rounded to 0..255 (``_softmax_step8``), stored as
``u8 - 128`` (Triton's integer wgmma is s8 x s8) in a shared buffer per consumer (an 8-bit
register operand cannot be kept alive across Triton 3.6's wgmma wait), and the tile's int32
product, plus ``128 x`` V's column sums, is folded into the float32 accumulator with the
tile's factor. Measured on an H100 it is slower than ``"int8-qk"`` (the fold and rounding add
ALU work to consumers that were ALU-bound already; docs/perf-notes.md), so the node does not
offer it.

Only the launch geometry it was written for: compute capability 9.x, bf16/fp16, head dim 64
or 128, mask block 128, 16-byte-aligned strides, and the Triton release it was measured with
(``dispatch.gluon_takes`` and ``dispatch.decide`` say where; elsewhere the Triton kernel runs).
``tests/test_gluon_compile.py`` compiles it for sm_90a without a GPU. Written from the Gluon
tutorials' building blocks (TMA,
``warpgroup_mma``, ``warp_specialize``); no code taken from FlashAttention.
"""

import functools

import torch

from .int8_quant import quantize_int8, quantize_v8
from .torch_path import out_layout
from .triton_tiles import LOG2E, launch_context

try:  # Gluon ships with Triton 3.5+; older Tritons use the Triton kernel only
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared, mbarrier, tma, warpgroup_mma, warpgroup_mma_wait)
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    from triton.language.core import _aggregate as aggregate
    HAVE_GLUON = True
except ImportError:  # pragma: no cover - depends on the installed Triton
    HAVE_GLUON = False


QUERY_BLOCK = 128  # rows per program: the mask block
HALF = QUERY_BLOCK // 2  # rows per consumer warpgroup
# int8 Q.K^T: (query rows, keys) that one int8 scale covers
INT8_GROUPS = (HALF, QUERY_BLOCK)


if HAVE_GLUON:

    # a scalar argument may arrive as a constexpr (Triton specialises an integer equal to 1)
    _SCALAR = (gl.tensor, gl.constexpr)

    @gluon.constexpr_function
    def _scalar(x):
        return x if isinstance(x, gl.tensor) else gl.constexpr(x)

    @aggregate
    class Shared:
        """What the producer and the two consumers share, by name: the tensor descriptors
        (TMA; ``o_desc`` writes the output), their shared-memory buffers (``o_smem`` is
        ``q_smem`` for 16-bit inputs), the barriers of the ring (``q_bar``; per stage
        ``k_ready``, ``v_ready``, ``kv_empty``), the mask's CSR, the sizes and pointers
        (``LSE``, ``KPM`` with batch stride ``skpb``, the int8 scales ``QS``, ``KS`` over ``SP``
        padded rows; with 8-bit V, ``int8_quant.quantize_v8``'s tile sums ``VS``, channel
        scales ``VSC`` and means ``VMU``) and the compile-time flags."""

        q_desc: tma.tensor_descriptor
        k_desc: tma.tensor_descriptor
        v_desc: tma.tensor_descriptor
        o_desc: tma.tensor_descriptor
        q_smem: gl.shared_memory_descriptor
        k_smem: gl.shared_memory_descriptor
        v_smem: gl.shared_memory_descriptor
        o_smem: gl.shared_memory_descriptor
        p_smem: gl.shared_memory_descriptor
        q_bar: gl.shared_memory_descriptor
        k_ready: gl.shared_memory_descriptor
        v_ready: gl.shared_memory_descriptor
        kv_empty: gl.shared_memory_descriptor
        row_start: gl.tensor
        row_len: gl.tensor
        col_idx: gl.tensor
        H: _SCALAR
        S: _SCALAR
        NB: _SCALAR
        qk_mul: _SCALAR
        LSE: gl.tensor
        KPM: gl.tensor
        skpb: _SCALAR
        QS: gl.tensor
        KS: gl.tensor
        VS: gl.tensor
        VSC: gl.tensor
        VMU: gl.tensor
        SP: _SCALAR
        PER_HEAD_MASK: gl.constexpr
        EVEN_S: gl.constexpr
        HAS_KPM: gl.constexpr
        RETURN_LSE: gl.constexpr
        NSTAGE: gl.constexpr

        @gluon.constexpr_function
        def __init__(self, q_desc, k_desc, v_desc, o_desc, q_smem, k_smem, v_smem, o_smem,
                     p_smem, q_bar, k_ready, v_ready, kv_empty, row_start, row_len, col_idx, H,
                     S, NB, qk_mul, LSE, KPM, skpb, QS, KS, VS, VSC, VMU, SP, PER_HEAD_MASK,
                     EVEN_S, HAS_KPM, RETURN_LSE, NSTAGE):
            self.q_desc, self.k_desc, self.v_desc, self.o_desc = q_desc, k_desc, v_desc, o_desc
            self.q_smem, self.k_smem, self.v_smem, self.o_smem = q_smem, k_smem, v_smem, o_smem
            self.p_smem = p_smem
            self.q_bar, self.k_ready = q_bar, k_ready
            self.v_ready, self.kv_empty = v_ready, kv_empty
            self.row_start, self.row_len, self.col_idx = row_start, row_len, col_idx
            # (constexpr arguments arrive here unwrapped: scalars and flags are wrapped again)
            self.H, self.S, self.NB = _scalar(H), _scalar(S), _scalar(NB)
            self.qk_mul, self.skpb, self.SP = _scalar(qk_mul), _scalar(skpb), _scalar(SP)
            self.LSE, self.KPM, self.QS, self.KS = LSE, KPM, QS, KS
            self.VS, self.VSC, self.VMU = VS, VSC, VMU
            self.PER_HEAD_MASK = gl.constexpr(PER_HEAD_MASK)
            self.EVEN_S = gl.constexpr(EVEN_S)
            self.HAS_KPM = gl.constexpr(HAS_KPM)
            self.RETURN_LSE = gl.constexpr(RETURN_LSE)
            self.NSTAGE = gl.constexpr(NSTAGE)

    @gluon.jit
    def _scores_masked(s, entry, seq_len, kpm_base, tail,
                       BLOCK_N: gl.constexpr, EVEN_S: gl.constexpr, HAS_KPM: gl.constexpr,
                       layout: gl.constexpr):
        """-inf where a key is past the sequence end (``tail``: this tile holds it) or padded.
        ``entry`` points at the tile's CSR entry (read only for key padding)."""
        if HAS_KPM:
            start_n = gl.load(entry) * BLOCK_N
            offs = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, layout))
            ok = offs < seq_len
            keep = gl.load(kpm_base + offs, mask=ok, other=0)
            s = gl.where((ok & (keep != 0))[None, :], s, float("-inf"))
        elif not EVEN_S:
            if tail:
                # the tail tile is the sequence's last block
                offs = (gl.cdiv(seq_len, BLOCK_N) - 1) * BLOCK_N + gl.arange(
                    0, BLOCK_N, layout=gl.SliceLayout(0, layout))
                s = gl.where((offs < seq_len)[None, :], s, float("-inf"))
        return s

    @gluon.jit
    def _softmax_step(s, m_i, l_i, mul, off):
        """Fold one tile of raw scores into the running (max, sum): ``(p, m, l, alpha)``.

        The tile's base-2 logits are ``(s - off) * mul``: ``mul`` > 0 the scale, ``off`` a
        constant offset (0 for 16-bit scores, the int-to-float offset of ``_int_scores``), so
        the row maximum of ``s`` gives the row maximum of the logits. (One scale for all rows:
        a per-row one costs the consumers the few registers they do not have: spills.)"""
        m_new = gl.maximum(m_i, (gl.max(s, axis=1) - off) * mul)
        # a row with no valid key so far keeps m = -inf: subtract 0 instead (no NaN)
        m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
        p = gl.exp2(s * mul - (off * mul + m_use)[:, None])
        alpha = gl.exp2(m_i - m_use)
        l_new = l_i * alpha + gl.sum(p, axis=1)
        return p, m_new, l_new, alpha

    @gluon.jit
    def _softmax_step8(s, m_i, l_i, mul, off):
        """``_softmax_step`` for 8-bit P: ``(p, m, l, alpha, beta)``. The tile's exponentials are
        taken against the tile's own row maximum, times 255 (``p`` in [0, 255], the maximum
        255: each (row, tile) gets the whole 8-bit range, the error model's most accurate
        8-bit scheme); ``beta`` = 2^(tile max - running max) brings the tile's
        product into the running frame, and ``l`` counts in the same 255-scaled units, so the
        255 cancels in ``O / l``."""
        LOG2_255: gl.constexpr = 7.994353436858858
        t_max = (gl.max(s, axis=1) - off) * mul
        m_new = gl.maximum(m_i, t_max)
        # rows with no valid key (all -inf): exponents of 0 instead of NaN; their p is 0
        t_use = gl.where(t_max == float("-inf"), 0.0, t_max)
        m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
        p = gl.exp2(s * mul - (off * mul + t_use - LOG2_255)[:, None])
        alpha = gl.exp2(m_i - m_use)
        beta = gl.exp2(t_use - m_use)
        l_new = l_i * alpha + beta * gl.sum(p, axis=1)
        return p, m_new, l_new, alpha, beta

    @gluon.jit
    def _p_u8(p):
        """``round(p) - 128`` as int8 for p in [0, 255]: unsigned 8-bit P in a signed operand
        (Triton's integer wgmma is s8 x s8); ``quantize_v8``'s tile sums add the 128 back.
        Adding 1.5 * 2**23 rounds p into the float's mantissa; one integer subtract takes
        the offset and the 128 out (no float-to-int conversion)."""
        return ((p + 12582912.0).to(gl.int32, bitcast=True) - (0x4B400000 + 128)).to(gl.int8)

    @gluon.jit
    def _p8_store(p, p_s):
        """P of one tile into this consumer's shared buffer, the A operand of its 8-bit P.V
        (the register form of an 8-bit A operand cannot be kept alive across Triton 3.6's
        ``warpgroup_mma_wait``). Stored as soon as the softmax made it, so its float form does
        not stay live beside the next tile's scores."""
        p_s.store(_p_u8(p))
        fence_async_shared()

    @gluon.jit
    def _pv8_part(part, vs_row, entry, HEAD_D: gl.constexpr, o_layout: gl.constexpr):
        """One tile's int32 P.V product as float, with the tile's ``128 x column sums of V``
        added (the u8 offset of ``_p_u8``): sum(round(p) x v8), exact (|.| < 2**22). (The
        integer-add conversion of ``_int_scores`` measured 5 % slower here: docs/perf-notes.md.)"""
        cols = gl.arange(0, HEAD_D, layout=gl.SliceLayout(0, o_layout))
        return (part + gl.load(vs_row + gl.load(entry) * HEAD_D + cols)[None, :]).to(gl.float32)

    @gluon.jit
    def _int_scores(s):
        """int32 scores (|s| <= 127**2 x 128 < 2**22 for head dim <= 128) as float32
        ``s + 1.5 * 2**23``, exactly: one integer add
        and a reinterpretation instead of a conversion, which runs at a quarter of the FMA
        rate (the float's mantissa field holds 2**22 + s; the offset goes into the softmax's
        ``off``)."""
        return (s + 0x4B400000).to(gl.float32, bitcast=True)

    @gluon.jit
    def _program(row_start, row_len, col_idx, H, NB, PER_HEAD_MASK: gl.constexpr,
                 EVEN_S: gl.constexpr):
        """Where this program stands: ``(b, h, bh, row, first, count, tail_in_row)``."""
        row = gl.program_id(0)
        bh = gl.program_id(1)
        b = bh // H
        h = bh % H
        if PER_HEAD_MASK:
            r_idx = h * NB + row
        else:
            r_idx = row
        first = gl.load(row_start + r_idx)
        count = gl.load(row_len + r_idx)
        if EVEN_S:
            tail = count < 0  # never
        else:
            last = gl.load(col_idx + first + count - 1, mask=count > 0, other=-1)
            tail = last == NB - 1
        return b, h, bh, row, first, count, tail

    @gluon.jit
    def _producer(sh):
        """Four warps (the default partition): Q's two halves, then K and V of every kept
        block, into the ring."""
        b, h, bh, row, first, count, tail = _program(sh.row_start, sh.row_len, sh.col_idx, sh.H,
                                                     sh.NB, sh.PER_HEAD_MASK, sh.EVEN_S)
        half: gl.constexpr = sh.q_desc.block_type.shape[2]
        block_n: gl.constexpr = sh.k_desc.block_type.shape[2]
        PV8: gl.constexpr = sh.v_desc.dtype.primitive_bitwidth == 8
        mbarrier.expect(sh.q_bar, 2 * sh.q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(sh.q_desc, [b, h, row * 2 * half, 0], sh.q_bar,
                                        sh.q_smem.index(0))
        tma.async_copy_global_to_shared(sh.q_desc, [b, h, row * 2 * half + half, 0], sh.q_bar,
                                        sh.q_smem.index(1))
        for t in range(count):
            st = t % sh.NSTAGE
            ph = (t // sh.NSTAGE) & 1
            # a fresh mbarrier counts as having completed phase 1: the first pass goes through
            mbarrier.wait(sh.kv_empty.index(st), ph ^ 1)
            start = gl.load(sh.col_idx + first + t) * block_n
            mbarrier.expect(sh.k_ready.index(st), sh.k_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(sh.k_desc, [b, h, start, 0], sh.k_ready.index(st),
                                            sh.k_smem.index(st))
            mbarrier.expect(sh.v_ready.index(st), sh.v_desc.block_type.nbytes)
            if PV8:  # 8-bit V is stored transposed, [B, H, D, S_pad]
                tma.async_copy_global_to_shared(sh.v_desc, [b, h, 0, start],
                                                sh.v_ready.index(st), sh.v_smem.index(st))
            else:
                tma.async_copy_global_to_shared(sh.v_desc, [b, h, start, 0],
                                                sh.v_ready.index(st), sh.v_smem.index(st))

    @gluon.jit
    def _tile_scores(s_tok, q_scale, ks_base, entry, seq_len, kpm_base, tail,
                     BLOCK_N: gl.constexpr, EVEN_S: gl.constexpr, HAS_KPM: gl.constexpr,
                     QK8: gl.constexpr, layout: gl.constexpr, PENDING: gl.constexpr):
        """Wait for a tile's S = Q.K^T (``PENDING``: the products issued after it, which may
        still run: the previous tile's P.V) and return ``(s, mul)``: masked scores and their
        scale for ``_softmax_step``. int8 scores come back as ``_int_scores`` floats with
        ``mul`` = the scale of this consumer's 64 Q rows x the tile's K scale."""
        if QK8:
            k_scale = gl.load(ks_base + gl.load(entry))
            s = warpgroup_mma_wait(PENDING, deps=[s_tok])
            s = _int_scores(s)
            mul = q_scale * k_scale
        else:
            s = warpgroup_mma_wait(PENDING, deps=[s_tok])
            mul = q_scale
        s = _scores_masked(s, entry, seq_len, kpm_base, tail, BLOCK_N, EVEN_S, HAS_KPM, layout)
        return s, mul

    @gluon.jit
    def _consume(sh, CID: gl.constexpr):
        """Four warps: query rows ``CID * 64 ..`` of the block against every kept key tile."""
        b, h, bh, row, first, count, tail = _program(sh.row_start, sh.row_len, sh.col_idx, sh.H,
                                                     sh.NB, sh.PER_HEAD_MASK, sh.EVEN_S)
        half: gl.constexpr = sh.q_desc.block_type.shape[2]
        head_d: gl.constexpr = sh.q_desc.block_type.shape[3]
        block_n: gl.constexpr = sh.k_desc.block_type.shape[2]
        # (the operand dtypes tell the int8 forms at compile time)
        QK8: gl.constexpr = sh.q_desc.dtype.primitive_bitwidth == 8
        PV8: gl.constexpr = sh.v_desc.dtype.primitive_bitwidth == 8
        # 8-bit wgmma takes 32 along K per instruction, 16-bit 16
        k_step: gl.constexpr = 256 // sh.q_desc.dtype.primitive_bitwidth
        pv_step: gl.constexpr = 256 // sh.v_desc.dtype.primitive_bitwidth
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, block_n, k_step])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, head_d, pv_step])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout,
                                                     k_width=pv_step // 8)
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        kpm_base = sh.KPM + b.to(gl.int64) * sh.skpb
        row0 = row * 2 * half + CID * half
        if QK8:
            # the scale of Q's 64 rows (softmax scale and log2 e folded in); K's per tile
            q_scale = gl.load(sh.QS + bh.to(gl.int64) * (sh.SP // half) + row0 // half)
            ks_base = sh.KS + bh.to(gl.int64) * (sh.SP // block_n)
            zero_s = gl.zeros([half, block_n], gl.int32, layout=s_layout)
            off = 12582912.0  # 1.5 * 2**23: the offset _int_scores adds
        else:
            q_scale = sh.qk_mul
            ks_base = sh.KS
            zero_s = gl.zeros([half, block_n], gl.float32, layout=s_layout)
            off = 0.0
        if PV8:
            dt: gl.constexpr = gl.int8
            vs_row = sh.VS + bh.to(gl.int64) * (sh.SP // block_n) * head_d
            p_s = sh.p_smem.index(CID)
            zero_o = gl.zeros([half, head_d], gl.int32, layout=o_layout)
        else:
            dt: gl.constexpr = sh.v_desc.dtype
            vs_row = sh.VS
            p_s = sh.p_smem
            zero_o = gl.zeros([half, head_d], gl.float32, layout=o_layout)

        q_s = sh.q_smem.index(CID).reshape([half, head_d])
        acc = gl.zeros([half, head_d], gl.float32, layout=o_layout)
        m_i = gl.full([half], float("-inf"), gl.float32, layout=row_s)
        l_i = gl.zeros([half], gl.float32, layout=row_s)
        beta = gl.zeros([half], gl.float32, layout=row_s)
        mbarrier.wait(sh.q_bar, 0)
        if count > 0:
            # tile 0: its scores and softmax; its P.V is issued with tile 1's scores
            mbarrier.wait(sh.k_ready.index(0), 0)
            k_s = sh.k_smem.index(0).reshape([block_n, head_d])
            s_tok = warpgroup_mma(q_s, k_s.permute((1, 0)), zero_s, use_acc=False,
                                  is_async=True)
            s, mul = _tile_scores(s_tok, q_scale, ks_base, sh.col_idx + first, sh.S, kpm_base,
                                  tail & (count == 1), block_n, sh.EVEN_S, sh.HAS_KPM, QK8,
                                  s_layout, 0)
            if PV8:
                p, m_i, l_i, alpha, beta = _softmax_step8(s, m_i, l_i, mul, off)
                _p8_store(p, p_s)
            else:
                p, m_i, l_i, alpha = _softmax_step(s, m_i, l_i, mul, off)
            for t in range(1, count):
                st = t % sh.NSTAGE
                sp = (t - 1) % sh.NSTAGE
                mbarrier.wait(sh.k_ready.index(st), (t // sh.NSTAGE) & 1)
                k_s = sh.k_smem.index(st).reshape([block_n, head_d])
                s_tok = warpgroup_mma(q_s, k_s.permute((1, 0)), zero_s, use_acc=False,
                                      is_async=True)
                mbarrier.wait(sh.v_ready.index(sp), ((t - 1) // sh.NSTAGE) & 1)
                if PV8:
                    v_s = sh.v_smem.index(sp).reshape([head_d, block_n]).permute((1, 0))
                    o_tok = warpgroup_mma(p_s, v_s, zero_o, use_acc=False, is_async=True)
                    beta_prev = beta
                else:
                    v_s = sh.v_smem.index(sp).reshape([block_n, head_d])
                    p_op = gl.convert_layout(p.to(dt), p_layout)
                    o_tok = warpgroup_mma(p_op, v_s, acc, is_async=True)
                # the scores are done (issued first); the P.V product may still run
                s, mul = _tile_scores(s_tok, q_scale, ks_base, sh.col_idx + first + t, sh.S,
                                      kpm_base, tail & (t == count - 1), block_n, sh.EVEN_S,
                                      sh.HAS_KPM, QK8, s_layout, 1)
                if PV8:
                    p, m_i, l_i, alpha, beta = _softmax_step8(s, m_i, l_i, mul, off)
                    part = warpgroup_mma_wait(0, deps=[o_tok])
                    mbarrier.arrive(sh.kv_empty.index(sp))
                    _p8_store(p, p_s)  # the previous P.V has read the buffer
                    # (acc + beta' part) alpha: the previous tile into this tile's frame
                    acc = (acc * gl.convert_layout(alpha, row_o)[:, None]
                           + _pv8_part(part, vs_row, sh.col_idx + first + t - 1, head_d,
                                       o_layout)
                           * gl.convert_layout(beta_prev * alpha, row_o)[:, None])
                else:
                    p, m_i, l_i, alpha = _softmax_step(s, m_i, l_i, mul, off)
                    acc, p_op = warpgroup_mma_wait(0, deps=[o_tok, p_op])
                    mbarrier.arrive(sh.kv_empty.index(sp))
                    acc = acc * gl.convert_layout(alpha, row_o)[:, None]
            sl = (count - 1) % sh.NSTAGE
            mbarrier.wait(sh.v_ready.index(sl), ((count - 1) // sh.NSTAGE) & 1)
            if PV8:
                v_s = sh.v_smem.index(sl).reshape([head_d, block_n]).permute((1, 0))
                o_tok = warpgroup_mma(p_s, v_s, zero_o, use_acc=False, is_async=True)
                part = warpgroup_mma_wait(0, deps=[o_tok])
                acc = acc + (_pv8_part(part, vs_row, sh.col_idx + first + count - 1, head_d,
                                       o_layout) * gl.convert_layout(beta, row_o)[:, None])
            else:
                v_s = sh.v_smem.index(sl).reshape([block_n, head_d])
                p_op = gl.convert_layout(p.to(dt), p_layout)
                o_tok = warpgroup_mma(p_op, v_s, acc, is_async=True)
                acc, p_op = warpgroup_mma_wait(0, deps=[o_tok, p_op])
            mbarrier.arrive(sh.kv_empty.index(sl))

        l_safe = gl.where(l_i > 0.0, l_i, 1.0)
        if PV8:
            # O = P.(V - mean) x scale / l + mean; a row with no kept key stays 0
            cols = gl.arange(0, head_d, layout=gl.SliceLayout(0, o_layout))
            v_scale = gl.load(sh.VSC + bh.to(gl.int64) * head_d + cols)
            v_mean = gl.load(sh.VMU + bh.to(gl.int64) * head_d + cols)
            kept = gl.convert_layout(gl.where(l_i > 0.0, 1.0, 0.0), row_o)
            out = (acc * gl.convert_layout(1.0 / l_safe, row_o)[:, None] * v_scale[None, :]
                   + kept[:, None] * v_mean[None, :])
        else:
            out = acc / gl.convert_layout(l_safe, row_o)[:, None]
        # 16-bit inputs: Q's buffer is free now (every product that read it is done) and is
        # where O is staged (o_smem is q_smem); int8 Q is too small, O has its own buffer
        o_s = sh.o_smem.index(CID)
        o_s.reshape([half, head_d]).store(out.to(sh.o_desc.dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(sh.o_desc, [b, h, row0, 0], o_s)
        if sh.RETURN_LSE:
            # natural-log LSE of the scaled scores (m, log2 l in base-2 units); +inf for a
            # row with no kept key, so exp(s - lse) is 0 there
            LN2: gl.constexpr = 0.6931471805599453
            lse = gl.where(l_i > 0.0, (m_i + gl.log2(l_safe)) * LN2, float("inf"))
            rows = row0 + gl.arange(0, half, layout=row_s)
            gl.store(sh.LSE + bh.to(gl.int64) * sh.S + rows, lse, mask=rows < sh.S)
        tma.store_wait(0)

    @gluon.jit
    def _consumer0(sh):
        _consume(sh, 0)

    @gluon.jit
    def _consumer1(sh):
        _consume(sh, 1)

    @gluon.jit
    def _radial_fwd_ws(q_desc, k_desc, v_desc, o_desc, LSE, KPM, row_start, row_len, col_idx,
                       QS, KS, VS, VSC, VMU, skpb, H, S, SP, NB, qk_mul,
                       PER_HEAD_MASK: gl.constexpr, EVEN_S: gl.constexpr,
                       HAS_KPM: gl.constexpr, RETURN_LSE: gl.constexpr, NSTAGE: gl.constexpr,
                       QK8: gl.constexpr, CONSUMER_REGS: gl.constexpr):
        q_smem = gl.allocate_shared_memory(q_desc.dtype, [2] + q_desc.block_type.shape,
                                           q_desc.layout)
        k_smem = gl.allocate_shared_memory(k_desc.dtype, [NSTAGE] + k_desc.block_type.shape,
                                           k_desc.layout)
        v_smem = gl.allocate_shared_memory(v_desc.dtype, [NSTAGE] + v_desc.block_type.shape,
                                           v_desc.layout)
        if QK8:
            o_smem = gl.allocate_shared_memory(o_desc.dtype, [2] + o_desc.block_type.shape,
                                               o_desc.layout)
        else:
            o_smem = q_smem
        if v_desc.dtype.primitive_bitwidth == 8:
            # 8-bit P of each consumer's 64 rows (the A operand of its P.V)
            p_block: gl.constexpr = [q_desc.block_type.shape[2], k_desc.block_type.shape[2]]
            p_smem = gl.allocate_shared_memory(
                gl.int8, [2] + p_block, gl.NVMMASharedLayout.get_default_for(p_block, gl.int8))
        else:
            p_smem = o_smem
        q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        k_ready = gl.allocate_shared_memory(gl.int64, [NSTAGE, 1], mbarrier.MBarrierLayout())
        v_ready = gl.allocate_shared_memory(gl.int64, [NSTAGE, 1], mbarrier.MBarrierLayout())
        kv_empty = gl.allocate_shared_memory(gl.int64, [NSTAGE, 1], mbarrier.MBarrierLayout())
        mbarrier.init(q_bar, count=1)
        for i in gl.static_range(NSTAGE):
            mbarrier.init(k_ready.index(i), count=1)
            mbarrier.init(v_ready.index(i), count=1)
            mbarrier.init(kv_empty.index(i), count=2)  # one arrive per consumer
        sh = Shared(q_desc, k_desc, v_desc, o_desc, q_smem, k_smem, v_smem, o_smem, p_smem, q_bar,
                    k_ready, v_ready, kv_empty, row_start, row_len, col_idx, H, S, NB, qk_mul,
                    LSE, KPM, skpb, QS, KS, VS, VSC, VMU, SP, PER_HEAD_MASK, EVEN_S, HAS_KPM,
                    RETURN_LSE, NSTAGE)
        args = (sh,)
        gl.warp_specialize([(_producer, args), (_consumer0, args), (_consumer1, args)],
                           [4, 4], [CONSUMER_REGS, CONSUMER_REGS])


_GL_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.int8: "int8"}


def _desc(t: torch.Tensor, rows: int, cols: int | None = None):
    block = [1, 1, rows, cols or t.shape[-1]]
    dt = getattr(gl, _GL_DTYPES[t.dtype])
    layout = gl.NVMMASharedLayout.get_default_for(block, dt)
    return TensorDescriptor(t, list(t.shape), list(t.stride()), block, layout)


def forward(q, k, v, out, csr, qk_mul: float, kpm, skpb: int, stages: int, lse=None,
            regs: tuple[int, int] = (240, 168), warmup: bool = False):
    """Launch on ``[B, H, S, D]`` inputs (16-byte-aligned strides: ``dispatch.tma_ok``) into ``out``
    (same shape); ``csr`` on q's device with block 128; ``qk_mul`` = softmax scale x log2 e;
    ``kpm``: int8 ``[B, S]`` (1 = real key) with batch stride ``skpb``, or None; ``lse``: a
    float32 ``[B, H, S]`` buffer to fill, or None. ``regs`` = (consumer, kernel maxnreg)
    registers a thread; the producer gets the rest: 168 x 384 - 2 x 128 x 240 = 128 x 24.
    ``warmup=True`` compiles for the current target without launching and returns Triton's
    compiled kernel (tests compile for Hopper on a machine without one)."""
    B, H, S, D = q.shape
    return _launch(q, k, v, out, csr, qk_mul, kpm, skpb, lse, stages, regs,
                   q_scales=None, k_scales=None, padded=S, warmup=warmup)


def forward_int8(q8, k8, v, out, csr, q_scales, k_scales, kpm, skpb: int,
                 stages: int, regs: tuple[int, int] = (240, 168),
                 warmup: bool = False, v8=None):
    """The ``precision="int8-qk"`` forward: S = Q.K^T on int8 wgmma, P.V in V's 16-bit dtype;
    with ``v8`` (``precision="int8"``) P.V on int8 wgmma too.

    ``q8``, ``k8``: contiguous int8 ``[B, H, S_pad, D]`` (``S_pad`` a multiple of 128, zero
    past S) from ``int8_quant.quantize_int8`` with 64-row Q blocks and
    128-key K blocks: ``q_scales`` float32 ``[B*H, S_pad / 64]`` (the softmax scale x log2 e
    folded in), ``k_scales`` ``[B*H, S_pad / 128]``; K already smoothed by its mean
    (SageAttention's).
    ``v``, ``out``: ``[B, H, S, D]`` in V's 16-bit dtype, as for ``forward``; or, with ``v8`` =
    ``(v_sums, v_scales, v_means)``, ``v`` is ``int8_quant.quantize_v8``'s transposed int8
    ``[B, H, D, S_pad]`` and P is rounded to 8 bits per (row, key tile). No LSE."""
    return _launch(q8, k8, v, out, csr, 1.0, kpm, skpb, None, stages, regs,
                   q_scales=q_scales, k_scales=k_scales, padded=q8.shape[2], warmup=warmup,
                   v8=v8)


def launch(q, k, v, csr, cfg, *, int8: bool = False, pv8: bool = False, key_padding_mask=None,
           scale: float, return_lse: bool = False):
    """The attention op's entry: ``[B, H, S, D]`` inputs (validated, ``dispatch`` chose this
    kernel and ``cfg``, a ``dispatch.GluonConfig``), ``csr`` on q's device with block 128.
    ``pv8`` (with ``int8``): P.V in 8 bits too. Returns the output (a transposed view of a
    ``[B, S, H, D]`` buffer), with ``return_lse`` (exact only) ``(out, lse)`` as
    ``triton_kernel`` returns them."""
    B, H, S, D = q.shape
    out = out_layout(q)
    kpm, skpb, _prec, guard = launch_context(q, key_padding_mask, csr.row_len)
    kpm = kpm if key_padding_mask is not None else None
    lse = torch.empty((B, H, S), dtype=torch.float32, device=q.device) if return_lse else None
    qk_mul = float(scale) * LOG2E
    with guard:
        if int8:
            q8, k8, qs, ks = quantize_int8(q, k, qk_mul, *INT8_GROUPS, QUERY_BLOCK, D)
            if pv8:
                v8t, vsum, vscale, vmean = quantize_v8(v, QUERY_BLOCK, D)
                forward_int8(q8, k8, v8t, out, csr, qs, ks, kpm, skpb, cfg.stages,
                             v8=(vsum, vscale, vmean))
            else:
                forward_int8(q8, k8, v, out, csr, qs, ks, kpm, skpb, cfg.stages)
        else:
            forward(q, k, v, out, csr, qk_mul, kpm, skpb, cfg.stages, lse=lse)
    return (out, lse) if return_lse else out


def _launch(q, k, v, out, csr, qk_mul, kpm, skpb, lse, stages, regs, q_scales, k_scales,
            padded, warmup, v8=None):
    B, H, S, D = out.shape
    nb = csr.nb
    grid = (nb, B * H)
    has_kpm = kpm is not None
    qk8 = q_scales is not None
    kernel = (functools.partial(_radial_fwd_ws.warmup, grid=grid) if warmup
              else _radial_fwd_ws[grid])
    compiled = kernel(
        _desc(q, HALF), _desc(k, QUERY_BLOCK),
        _desc(v, D, QUERY_BLOCK) if v8 is not None else _desc(v, QUERY_BLOCK), _desc(out, HALF),
        lse if lse is not None else csr.row_len, kpm if has_kpm else csr.row_len,
        csr.row_start, csr.row_len, csr.col_idx,
        q_scales if qk8 else csr.row_len, k_scales if qk8 else csr.row_len,
        *(v8 if v8 is not None else (csr.row_len,) * 3),
        skpb, H, S, padded, nb, float(qk_mul),
        PER_HEAD_MASK=csr.mask_heads > 1, EVEN_S=S % QUERY_BLOCK == 0, HAS_KPM=has_kpm,
        RETURN_LSE=lse is not None, NSTAGE=stages, QK8=qk8, CONSUMER_REGS=regs[0],
        num_warps=4, maxnreg=regs[1])
    return compiled if warmup else out
