"""Rotary embedding kernel against Hugging Face's apply_rotary_pos_emb, with cos/sin from the real
LlamaRotaryEmbedding (llama3 scaling) and per-token position ids of packed sequences."""

from __future__ import annotations

import pytest
import torch
from lookout_kernels.rope import apply_rope, apply_rope_reference
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from ._util import DEVICE, DTYPES, REL_TOL, assert_rel, gpu_only, randn, saved_for_backward, to64

# (batch, tokens, q heads, kv heads, head dim); head dim 6 has a non-power-of-two half.
# GPU: Llama-3.2-1B (32/8 heads of 64) and 3B (24/8 heads of 128).
SHAPES = [(1, 3, 2, 1, 8), (2, 5, 4, 2, 6), (2, 7, 3, 1, 16)] + gpu_only(
    (2, 2048, 32, 8, 64), (1, 4096, 24, 8, 128)
)


def rotary(head_dim: int, batch: int, tokens: int, dtype, gen, packed: bool):
    """cos, sin as a Llama 3.2 model computes them: [batch, tokens, head_dim] in the activation dtype.
    Packed rows restart their positions at random document boundaries."""
    config = LlamaConfig(
        hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim, max_position_embeddings=131072,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
    )
    emb = LlamaRotaryEmbedding(config).to(DEVICE)
    if packed:
        pos = torch.zeros(batch, tokens, dtype=torch.long, device=DEVICE)
        for b in range(batch):
            starts = torch.randint(0, tokens, (2,), generator=gen, device=gen.device).tolist()
            p, t0 = [], 0
            for t in range(tokens):
                if t in starts:
                    t0 = t
                p.append(t - t0 + 7 * b)
            pos[b] = torch.tensor(p, device=DEVICE)
    else:
        pos = torch.arange(tokens, device=DEVICE)[None] + 1000  # one shared row: batch dim 1
    return emb(torch.empty(1, device=DEVICE, dtype=dtype), pos)


def hf_layout(batch, tokens, heads, dim, dtype, gen):
    """[B, heads, T, D] as the attention module makes it: a transposed view of [B, T, heads, D]."""
    return randn(batch, tokens, heads, dim, gen=gen, dtype=dtype).transpose(1, 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("packed", [True, False], ids=["per-token-positions", "shared-positions"])
def test_forward_and_backward_match_reference(shape, dtype, packed, gen):
    b, t, hq, hk, d = shape
    q = hf_layout(b, t, hq, d, dtype, gen).requires_grad_()
    k = hf_layout(b, t, hk, d, dtype, gen).requires_grad_()
    cos, sin = rotary(d, b, t, dtype, gen, packed)
    dq, dk = randn(b, hq, t, d, gen=gen, dtype=dtype), randn(b, hk, t, d, gen=gen, dtype=dtype)

    q_rot, k_rot = apply_rope(q, k, cos, sin)
    torch.autograd.backward((q_rot, k_rot), (dq, dk))

    q64, k64 = to64(q), to64(k)
    q_ref, k_ref = apply_rope_reference(q64, k64, cos.double(), sin.double())
    torch.autograd.backward((q_ref, k_ref), (dq.double(), dk.double()))
    tol = REL_TOL[dtype]
    assert q_rot.dtype == dtype and q_rot.stride() == q.stride()  # same layout as HF's result
    assert_rel(q_rot, q_ref, tol, "q_rot")
    assert_rel(k_rot, k_ref, tol, "k_rot")
    assert_rel(q.grad, q64.grad, tol, "dq")
    assert_rel(k.grad, k64.grad, tol, "dk")


def test_reference_is_hugging_face_apply_rotary_pos_emb(gen):
    q, k = hf_layout(2, 6, 4, 16, torch.float32, gen), hf_layout(2, 6, 2, 16, torch.float32, gen)
    cos, sin = rotary(16, 2, 6, torch.float32, gen, packed=True)
    for ours, theirs in zip(apply_rope_reference(q, k, cos, sin), apply_rotary_pos_emb(q, k, cos, sin), strict=True):
        assert torch.equal(ours, theirs)
    kernel_q, kernel_k = apply_rope(q, k, cos, sin)
    hf_q, hf_k = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(kernel_q, hf_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kernel_k, hf_k, rtol=1e-5, atol=1e-5)


def test_backward_undoes_the_rotation(gen):
    """With HF's duplicated-half cos/sin the rotation is orthogonal: backward of ones-weighted output
    applied to the rotated tensor gives the original back."""
    q, k = hf_layout(1, 5, 2, 8, torch.float32, gen), hf_layout(1, 5, 1, 8, torch.float32, gen)
    cos, sin = rotary(8, 1, 5, torch.float32, gen, packed=True)
    q_rot, k_rot = apply_rope(q, k, cos, sin)
    q_leaf, k_leaf = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    torch.autograd.backward(apply_rope(q_leaf, k_leaf, cos, sin), (q_rot.detach(), k_rot.detach()))
    assert_rel(q_leaf.grad, q, 1e-6, "inverse rotation of q")
    assert_rel(k_leaf.grad, k, 1e-6, "inverse rotation of k")


def test_in_place_writes_into_q_and_k_and_keeps_gradients_right(gen):
    q0, k0 = hf_layout(2, 4, 3, 8, torch.float32, gen), hf_layout(2, 4, 1, 8, torch.float32, gen)
    cos, sin = rotary(8, 2, 4, torch.float32, gen, packed=False)
    q_leaf, k_leaf = q0.detach().clone().requires_grad_(), k0.detach().clone().requires_grad_()
    q, k = q_leaf * 1.0, k_leaf * 1.0  # non-leaf tensors nobody else needs, as in attention
    q_rot, k_rot = apply_rope(q, k, cos, sin, inplace=True)
    assert q_rot.data_ptr() == q.data_ptr() and k_rot.data_ptr() == k.data_ptr()
    dq, dk = randn(*q.shape, gen=gen), randn(*k.shape, gen=gen)
    torch.autograd.backward((q_rot, k_rot), (dq, dk))
    q64, k64 = to64(q0), to64(k0)
    torch.autograd.backward(apply_rope_reference(q64, k64, cos.double(), sin.double()), (dq.double(), dk.double()))
    assert_rel(q_rot, apply_rope_reference(q0, k0, cos, sin)[0], 1e-5, "q_rot")
    assert_rel(q_leaf.grad, q64.grad, 1e-5, "dq")
    assert_rel(k_leaf.grad, k64.grad, 1e-5, "dk")


def test_saves_only_cos_and_sin(gen):
    q, k = hf_layout(2, 4, 2, 8, torch.bfloat16, gen).requires_grad_(), hf_layout(2, 4, 1, 8, torch.bfloat16, gen)
    cos, sin = rotary(8, 2, 4, torch.bfloat16, gen, packed=True)
    with saved_for_backward() as saved:
        apply_rope(q, k, cos, sin)
    assert saved[0] == 2 * cos.numel() * cos.element_size()


def test_mismatched_shapes_are_rejected_with_a_clear_error(gen):
    q, k = hf_layout(1, 4, 2, 8, torch.float32, gen), hf_layout(1, 5, 1, 8, torch.float32, gen)
    cos, sin = rotary(8, 1, 4, torch.float32, gen, packed=False)
    with pytest.raises(ValueError, match="does not match"):
        apply_rope(q, k, cos, sin)
