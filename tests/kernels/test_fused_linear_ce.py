"""Chunked lm_head + cross-entropy against the full-logits reference (Hugging Face's causal-LM loss)."""

from __future__ import annotations

import pytest
import torch
from lookout_kernels.fused_linear_ce import (
    default_chunk_size,
    fused_linear_cross_entropy,
    fused_linear_cross_entropy_reference,
)
from torch.utils._python_dispatch import TorchDispatchMode

from ._util import DEVICE, DTYPES, ON_GPU, REL_TOL, assert_rel, gpu_only, randn, to64

# (tokens, hidden, vocab). GPU: Llama-3.2-1B (2048) and 3B (3072) widths with the 128256 vocabulary.
SHAPES = [(11, 16, 300), (7, 24, 97)] + gpu_only((4096, 2048, 128256), (2047, 3072, 128256))
GRAD_TOL = {**REL_TOL, torch.float32: 1e-4}  # see test_cross_entropy: fp32 softmax - onehot cancels


def labels_for(n: int, vocab: int, gen) -> torch.Tensor:
    labels = torch.randint(0, vocab, (n,), generator=gen, device=gen.device)
    labels[::4] = -100  # prompt tokens / padding
    return labels


def inputs(n, hid, vocab, dtype, gen, train_weight=False):
    hidden = randn(n, hid, gen=gen, dtype=dtype).requires_grad_()
    weight = randn(vocab, hid, gen=gen, dtype=dtype, scale=hid**-0.5).requires_grad_(train_weight)
    return hidden, weight, labels_for(n, vocab, gen)


def reference64(hidden, weight, labels, bias=None, num_items=None):
    """The loss and gradients in float64 (the reference's own fp32 upcast would cap the precision)."""
    h64, w64 = to64(hidden), to64(weight, weight.requires_grad)
    b64 = to64(bias, bias.requires_grad) if bias is not None else None
    logits = torch.nn.functional.linear(h64, w64, b64)
    if num_items is None:
        loss = torch.nn.functional.cross_entropy(logits, labels)
    else:
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum") / num_items
    loss.backward()
    return loss, h64, w64, b64


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("train_weight", [False, True], ids=["frozen-head", "trained-head"])
def test_loss_and_gradients_match_reference(shape, dtype, train_weight, gen):
    n, hid, vocab = shape
    hidden, weight, labels = inputs(n, hid, vocab, dtype, gen, train_weight)
    chunk = 4 if n < 100 else None  # several chunks, the last one partial
    loss = fused_linear_cross_entropy(hidden, weight, labels, chunk_size=chunk)
    # fp16 training scales the loss (GradScaler): a mean over thousands of tokens puts d hidden below
    # fp16's normal range otherwise, for any implementation
    loss_scale = 1024.0 if dtype == torch.float16 else 1.0
    (loss * loss_scale).backward()
    ref, h64, w64, _ = reference64(hidden, weight, labels)
    # bf16/fp16 logits are rounded once by the matmul, as in the reference's lm_head
    assert loss.dtype == torch.float32
    assert_rel(loss, ref, {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 5e-3}[dtype], "loss")
    assert_rel(hidden.grad.double() / loss_scale, h64.grad, GRAD_TOL[dtype], "d hidden")
    if train_weight:
        assert_rel(weight.grad.double() / loss_scale, w64.grad, GRAD_TOL[dtype], "d weight")
    else:
        assert weight.grad is None


@pytest.mark.parametrize("chunk", [1, 3, 64, None])
def test_chunk_size_does_not_change_the_result_and_bias_is_supported(chunk, gen):
    hidden, weight, labels = inputs(9, 12, 50, torch.float32, gen, train_weight=True)
    bias = randn(50, gen=gen).requires_grad_()
    loss = fused_linear_cross_entropy(hidden, weight, labels, chunk_size=chunk, bias=bias)
    loss.backward()
    ref, h64, w64, b64 = reference64(hidden, weight, labels, bias=bias)
    assert_rel(loss, ref, 1e-5, "loss")
    assert_rel(hidden.grad, h64.grad, 1e-4, "d hidden")
    assert_rel(weight.grad, w64.grad, 1e-4, "d weight")
    assert_rel(bias.grad, b64.grad, 1e-4, "d bias")


def test_gradient_accumulation_with_num_items_equals_one_big_batch(gen):
    """Two micro-batches normalized by the step's total count of valid labels (HF's num_items_in_batch)
    give the full batch's mean loss and gradients, although each holds a different number of them."""
    hidden, weight, labels = inputs(14, 16, 60, torch.float32, gen, train_weight=True)
    labels[:5] = -100  # first micro-batch has far fewer valid labels
    total = int((labels != -100).sum())
    losses = []
    for part in (slice(0, 7), slice(7, 14)):
        losses.append(fused_linear_cross_entropy(
            hidden[part], weight, labels[part], chunk_size=3, num_items_in_batch=torch.tensor(total)))
        losses[-1].backward()
    ref, h64, w64, _ = reference64(hidden, weight, labels)
    assert_rel(sum(losses), ref, 1e-5, "accumulated loss")
    assert_rel(hidden.grad, h64.grad, 1e-4, "d hidden")
    assert_rel(weight.grad, w64.grad, 1e-4, "d weight")


def test_num_items_in_batch_as_int_gives_sum_over_it(gen):
    hidden, weight, labels = inputs(10, 8, 40, torch.float32, gen)
    loss = fused_linear_cross_entropy(hidden, weight, labels, num_items_in_batch=23)
    loss.backward()
    ref, h64, _, _ = reference64(hidden, weight, labels, num_items=23)
    assert_rel(loss, ref, 1e-5, "loss")
    assert_rel(hidden.grad, h64.grad, 1e-4, "d hidden")
    ref32 = fused_linear_cross_entropy_reference(hidden, weight, labels, num_items_in_batch=23)
    assert_rel(loss, ref32, 1e-5, "loss vs fp32 reference")


def test_all_labels_ignored_gives_nan_loss_and_zero_gradient_like_the_reference(gen):
    hidden, weight, _ = inputs(5, 8, 30, torch.float32, gen)
    labels = torch.full((5,), -100, device=DEVICE)
    loss = fused_linear_cross_entropy(hidden, weight, labels, chunk_size=2)
    assert torch.isnan(loss) and torch.isnan(fused_linear_cross_entropy_reference(hidden, weight, labels))
    loss.backward()
    assert torch.equal(hidden.grad, torch.zeros_like(hidden.grad))


def test_gradient_scales_with_the_incoming_gradient(gen):
    hidden, weight, labels = inputs(6, 8, 30, torch.float32, gen)
    (fused_linear_cross_entropy(hidden, weight, labels) * 2.5).backward()
    _, h64, _, _ = reference64(hidden, weight, labels)
    assert_rel(hidden.grad, 2.5 * h64.grad, 1e-4, "d hidden")


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest floating-point tensor any op produces (the CPU
    interpreter's own uint8 copies of kernel arguments are not computation and are left out)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.largest = max(self.largest, t.numel())
        return out


def test_never_materializes_the_full_logits(gen):
    n, hid, vocab = (4096, 2048, 128256) if ON_GPU else (32, 8, 512)
    hidden, weight, labels = inputs(n, hid, vocab, torch.bfloat16, gen)
    chunk = n // 8
    if ON_GPU:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with _LargestTensor() as seen:
        fused_linear_cross_entropy(hidden, weight, labels, chunk_size=chunk).backward()
    assert seen.largest <= max(chunk * vocab, weight.numel())  # no op ever produced [n, vocab]
    if ON_GPU:
        extra = torch.cuda.max_memory_allocated() - before
        full_logits_fp32 = n * vocab * 4
        assert extra < full_logits_fp32 / 4, f"peak extra {extra / 2**20:.0f} MiB"


def test_default_chunk_keeps_a_chunk_of_logits_small():
    assert default_chunk_size(16384, 128256, 2) == 1024  # 250 MiB of bf16 logits per chunk
    assert default_chunk_size(16384, 128256, 4) == 512
    assert default_chunk_size(100, 128256, 2) == 128  # never (much) more rows than tokens
    assert default_chunk_size(5, 50, 2) == 16


def test_fp16_gradients_survive_a_mean_over_many_tokens(gen):
    """With a small head and a mean over hundreds of tokens, d hidden (~1e-6) is below fp16's normal
    range; under the loss scale fp16 training uses it must still come out right (the gradient is
    accumulated in fp32 and only the scaled result is rounded to fp16)."""
    n, hid, vocab = 512, 8, 2048
    hidden = randn(n, hid, gen=gen, dtype=torch.float16).requires_grad_()
    weight = randn(vocab, hid, gen=gen, dtype=torch.float16, scale=0.001)
    labels = labels_for(n, vocab, gen)
    loss = fused_linear_cross_entropy(hidden, weight, labels, chunk_size=256)
    (loss * 1024.0).backward()
    _, h64, _, _ = reference64(hidden, weight, labels)
    assert h64.grad.abs().max() < 6.1e-5  # the unscaled gradient really is subnormal in fp16
    assert_rel(hidden.grad.double() / 1024.0, h64.grad, REL_TOL[torch.float16], "d hidden")


def test_evaluation_under_no_grad_forms_no_gradients(monkeypatch, gen):
    hidden, weight, labels = inputs(9, 8, 40, torch.float32, gen, train_weight=True)
    matmuls = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda *a, **k: matmuls.append(1) or real_mm(*a, **k))
    with torch.no_grad():
        loss = fused_linear_cross_entropy(hidden, weight, labels, chunk_size=4)
    assert not matmuls  # only the logits matmuls (@) ran, no d hidden / d weight
    assert_rel(loss, fused_linear_cross_entropy_reference(hidden, weight, labels), 1e-5, "loss")
