"""Rotary position embeddings on Q and K in one launch, Hugging Face layout and semantics.

q is [B, n_heads, T, D] and k is [B, n_kv_heads, T, D] (HF's views after `transpose(1, 2)`, usually
not contiguous); cos and sin are what LlamaRotaryEmbedding returns, [B or 1, T, D], already gathered
per position id, so packed sequences with per-token position ids need nothing special.

One program per (batch, token) rotates every Q and K head of that token: cos and sin are read once
for all heads. Backward is the transpose of the rotation (for HF's cos/sin, the inverse rotation),
done by the same kernel with the signs of the sin terms flipped. Nothing but cos and sin is saved.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import launchable, use_triton

__all__ = ["apply_rope", "apply_rope_reference", "rope_forward", "rope_backward", "RoPEFunction"]


@triton.jit
def _rope_kernel(
    QO, qo_sb, qo_sh, qo_st,
    KO, ko_sb, ko_sh, ko_st,
    Q, q_sb, q_sh, q_st,
    K, k_sb, k_sh, k_st,
    COS, c_sb, c_st,
    SIN, s_sb, s_st,
    seq_len, n_q_heads, n_k_heads,
    HALF: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_QH: tl.constexpr, BLOCK_KH: tl.constexpr,
    BACKWARD: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    b = pid // seq_len
    t = pid % seq_len
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HALF
    # Both halves of cos/sin are read: HF's are duplicated halves, but reading both keeps the kernel
    # equal to q*cos + rotate_half(q)*sin for any cos/sin.
    c_row = COS + b * c_sb + t * c_st
    s_row = SIN + b * s_sb + t * s_st
    c1 = tl.load(c_row + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
    c2 = tl.load(c_row + HALF + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
    s1 = tl.load(s_row + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
    s2 = tl.load(s_row + HALF + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]

    # Q heads of this token
    h = tl.arange(0, BLOCK_QH)[:, None]
    m = (h < n_q_heads) & d_mask[None, :]
    src = Q + b * q_sb + t * q_st + h * q_sh + d[None, :]
    x1 = tl.load(src, mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF, mask=m, other=0.0).to(tl.float32)
    if BACKWARD:  # transpose of [[c1, -s1], [s2, c2]]
        o1 = x1 * c1 + x2 * s2
        o2 = x2 * c2 - x1 * s1
    else:  # x*cos + rotate_half(x)*sin, rotate_half(x) = [-x2, x1]
        o1 = x1 * c1 - x2 * s1
        o2 = x2 * c2 + x1 * s2
    dst = QO + b * qo_sb + t * qo_st + h * qo_sh + d[None, :]
    tl.store(dst, o1.to(QO.dtype.element_ty), mask=m)
    tl.store(dst + HALF, o2.to(QO.dtype.element_ty), mask=m)

    # K heads of this token
    h = tl.arange(0, BLOCK_KH)[:, None]
    m = (h < n_k_heads) & d_mask[None, :]
    src = K + b * k_sb + t * k_st + h * k_sh + d[None, :]
    x1 = tl.load(src, mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF, mask=m, other=0.0).to(tl.float32)
    if BACKWARD:
        o1 = x1 * c1 + x2 * s2
        o2 = x2 * c2 - x1 * s1
    else:
        o1 = x1 * c1 - x2 * s1
        o2 = x2 * c2 + x1 * s2
    dst = KO + b * ko_sb + t * ko_st + h * ko_sh + d[None, :]
    tl.store(dst, o1.to(KO.dtype.element_ty), mask=m)
    tl.store(dst + HALF, o2.to(KO.dtype.element_ty), mask=m)


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _check(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"q and k must be [B, heads, T, D]; got {tuple(q.shape)} and {tuple(k.shape)}")
    bsz, _, seq_len, dim = q.shape
    if k.shape[0] != bsz or k.shape[2] != seq_len or k.shape[3] != dim:
        raise ValueError(f"k {tuple(k.shape)} does not match q {tuple(q.shape)} in batch, tokens or head dim")
    if dim % 2:
        raise ValueError(f"head dim must be even, got {dim}")
    if cos.dim() == 2:  # [T, D]: shared by the whole batch
        cos, sin = cos.unsqueeze(0), sin.unsqueeze(0)
    if cos.shape != sin.shape or cos.dim() != 3 or cos.shape[1:] != (seq_len, dim) or cos.shape[0] not in (1, bsz):
        raise ValueError(
            f"cos/sin must be [B or 1, T, D] = [{bsz} or 1, {seq_len}, {dim}]; got {tuple(cos.shape)}, {tuple(sin.shape)}"
        )
    # a batch dim of 1 broadcasts through a zero stride
    return _unit_last(cos.expand(bsz, seq_len, dim)), _unit_last(sin.expand(bsz, seq_len, dim))


def _launch(q_out, k_out, q, k, cos, sin, backward: bool) -> None:
    bsz, n_q, seq_len, dim = q.shape
    n_k = k.shape[1]
    if bsz * seq_len == 0:
        return
    half = dim // 2
    block_d = triton.next_power_of_2(half)
    block_qh = triton.next_power_of_2(n_q)
    block_kh = triton.next_power_of_2(n_k)
    num_warps = 4 if block_qh * block_d <= 2048 else 8
    launchable(_rope_kernel)[(bsz * seq_len,)](
        q_out, q_out.stride(0), q_out.stride(1), q_out.stride(2),
        k_out, k_out.stride(0), k_out.stride(1), k_out.stride(2),
        q, q.stride(0), q.stride(1), q.stride(2),
        k, k.stride(0), k.stride(1), k.stride(2),
        cos, cos.stride(0), cos.stride(1),
        sin, sin.stride(0), sin.stride(1),
        seq_len, n_q, n_k,
        HALF=half, BLOCK_D=block_d, BLOCK_QH=block_qh, BLOCK_KH=block_kh, BACKWARD=backward,
        num_warps=num_warps,
    )


def rope_forward(q, k, cos, sin, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k in one launch. With `inplace`, results overwrite q and k (each element is read
    before it is written, by the same program), else they go to new tensors with q's and k's layout."""
    cos, sin = _check(q, k, cos, sin)
    q, k = _unit_last(q), _unit_last(k)
    if inplace:
        q_out, k_out = q, k
    else:
        # empty_like keeps the (transposed) HF layout, so downstream attention sees the same strides
        q_out = torch.empty_like(q, dtype=torch.result_type(q, cos))
        k_out = torch.empty_like(k, dtype=torch.result_type(k, cos))
    _launch(q_out, k_out, q, k, cos, sin, backward=False)
    return q_out, k_out


def rope_backward(dq, dk, cos, sin, q_dtype, k_dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of q and k: the transposed rotation, into new tensors (grad outputs may be shared)."""
    cos, sin = _check(dq, dk, cos, sin)
    dq, dk = _unit_last(dq), _unit_last(dk)
    dq_in = torch.empty_like(dq, dtype=q_dtype)
    dk_in = torch.empty_like(dk, dtype=k_dtype)
    _launch(dq_in, dk_in, dq, dk, cos, sin, backward=True)
    return dq_in, dk_in


class RoPEFunction(torch.autograd.Function):
    """Saves only cos and sin (the model holds them anyway)."""

    @staticmethod
    def forward(ctx, q, k, cos, sin, inplace):
        q_out, k_out = rope_forward(q, k, cos, sin, inplace=inplace)
        if inplace:
            ctx.mark_dirty(q, k)
        ctx.save_for_backward(cos, sin)
        ctx.dtypes = (q.dtype, k.dtype)
        return q_out, k_out

    @staticmethod
    def backward(ctx, dq, dk):
        cos, sin = ctx.saved_tensors
        dq_in, dk_in = rope_backward(dq, dk, cos, sin, *ctx.dtypes)
        return dq_in, dk_in, None, None, None


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Hugging Face's rotate_half: [x1, x2] -> [-x2, x1] over the last dim."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope_reference(q, k, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's apply_rotary_pos_emb (unsqueeze_dim=1)."""
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def apply_rope(q, k, cos, sin, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(q_rot, k_rot) in one launch. `inplace=True` writes into q and k (they must not be needed
    afterwards; autograd is told through mark_dirty, and an in-place write to a view of a tensor
    autograd needs raises rather than corrupting it). The default allocates the outputs: the same bytes
    move, and the inputs are usually freed right after anyway."""
    if not use_triton(q, k, cos, sin):
        return apply_rope_reference(q, k, cos, sin)
    if inplace and (q.stride(-1) != 1 or k.stride(-1) != 1 or q.dtype != torch.result_type(q, cos)
                    or k.dtype != torch.result_type(k, cos)):
        inplace = False  # the result cannot live in q/k's memory
    return RoPEFunction.apply(q, k, cos, sin, inplace)
