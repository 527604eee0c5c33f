"""Fused lm_head + cross-entropy that never materializes the [tokens, vocab] logits.

Forward walks the tokens in chunks: logits_chunk = hidden_chunk @ W.T (+ bias) on the tensor cores,
then one Triton kernel turns the chunk's logits into its losses and, in place, into d logits; two more
matmuls fold that into d hidden (and d W when W is trainable) before the next chunk reuses the memory.
Backward only scales the stored gradients by the incoming scalar. At Llama-3 scale (vocab 128256) the
full fp32 logits of 16k tokens would be 8 GiB; one chunk is a few hundred MiB.

Normalization: the gradient scale must be known before the first chunk, so it is computed up front
on the device (no host sync): 1 / (number of labels != ignore_index) for a mean, or
1 / num_items_in_batch when the caller normalizes across gradient-accumulation micro-batches
(Hugging Face's `num_items_in_batch`), in which case the loss is sum / num_items_in_batch.
"""

from __future__ import annotations

import torch
import triton

from ._common import autocast_dtype, use_triton
from .cross_entropy import check_labels, cross_entropy_rows_inplace

__all__ = ["fused_linear_cross_entropy", "fused_linear_cross_entropy_reference", "FusedLinearCrossEntropyFunction",
           "default_chunk_size", "CHUNK_LOGITS_BYTES"]


# fp16 only (see FusedLinearCrossEntropyFunction.forward): lifts softmax values of a 128k vocabulary
# (~1e-5) into fp16's normal range, yet keeps the d weight matmul of a chunk in range even when one
# token is the label of many rows of the chunk (count * 32 * |hidden| < 65504).
FP16_SCALE = 32.0
CHUNK_LOGITS_BYTES = 256 * 2**20  # one chunk of logits; full logits at 16k x 128256 bf16 would be 4 GiB


def default_chunk_size(n_tokens: int, vocab: int, element_size: int = 2) -> int:
    """Rows per chunk: a power of two (matmul-friendly) with at most CHUNK_LOGITS_BYTES of logits, and no
    more rows than there are tokens. At vocab 128256 in bf16 that is 1024 rows: the d hidden matmul of a
    chunk (1024 x 128256 @ 128256 x hidden) then still fills an H100/H200 with output tiles."""
    rows = max(1, CHUNK_LOGITS_BYTES // max(1, vocab * element_size))
    rows = 1 << (rows.bit_length() - 1)  # round down to a power of two
    return max(16, min(rows, triton.next_power_of_2(max(n_tokens, 1))))


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    """Saves only the gradients it computed in forward ([N, H], plus [V, H] when W is trainable)."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, bias, ignore_index, chunk_size, num_items_in_batch, grad_enabled):
        n_tokens, hid = hidden.shape
        vocab = weight.shape[0]
        # needs_input_grad stays True under torch.no_grad(); evaluation must not pay for gradients
        need_dh, need_dw = grad_enabled and ctx.needs_input_grad[0], grad_enabled and ctx.needs_input_grad[1]
        need_db = bias is not None and grad_enabled and ctx.needs_input_grad[3]
        any_grad = need_dh or need_dw or need_db
        dev = hidden.device

        if num_items_in_batch is None:
            denom = (labels != ignore_index).sum().to(torch.float32)
        else:
            denom = torch.as_tensor(num_items_in_batch, dtype=torch.float32, device=dev).reshape(())
        scale = (1.0 / denom).reshape(1)  # gradient of every valid row's loss

        # fp16 cannot hold (softmax - onehot) / n: at a 128k vocabulary and thousands of tokens the values
        # fall below its normal range, and the incoming loss scale only arrives in backward. So in fp16 the
        # kernel writes (softmax - onehot) * FP16_SCALE, the matmuls' fp16 outputs stay in range, and the
        # gradients accumulate in fp32, unscaled after the last chunk. bf16 and fp32 have fp32's range.
        fp16 = hidden.dtype == torch.float16
        kernel_scale = torch.full((1,), FP16_SCALE, dtype=torch.float32, device=dev) if fp16 else scale
        acc_dtype = torch.float32 if fp16 else None

        hidden = hidden if hidden.stride(-1) == 1 else hidden.contiguous()
        labels = labels.contiguous()
        check_labels(labels, vocab, ignore_index)  # once, not per chunk (it syncs)
        loss_rows = torch.empty(n_tokens, dtype=torch.float32, device=dev)
        grad_hidden = torch.empty_like(hidden, dtype=acc_dtype) if need_dh else None
        # Accumulated across chunks in the weight's dtype (as Liger does); fp32 weights stay fp32.
        grad_weight = torch.zeros_like(weight, dtype=acc_dtype) if need_dw else None
        grad_bias = torch.zeros(vocab, dtype=torch.float32, device=dev) if need_db else None

        chunk = chunk_size or default_chunk_size(n_tokens, vocab, hidden.element_size())
        w_t = weight.t()
        for start in range(0, n_tokens, chunk):
            end = min(start + chunk, n_tokens)
            h = hidden[start:end]
            logits = torch.addmm(bias, h, w_t) if bias is not None else h @ w_t
            cross_entropy_rows_inplace(
                logits, labels[start:end], loss_rows[start:end], kernel_scale if any_grad else None, ignore_index,
                check=False,
            )
            if not any_grad:
                continue
            dlogits = logits  # overwritten in place by the kernel
            if need_dh:
                if fp16:
                    grad_hidden[start:end] = dlogits @ weight
                else:
                    torch.mm(dlogits, weight, out=grad_hidden[start:end])
            if need_dw:
                if fp16:
                    grad_weight += dlogits.t() @ h
                else:
                    grad_weight.addmm_(dlogits.t(), h)
            if need_db:
                grad_bias += dlogits.sum(0, dtype=torch.float32)
            del logits, dlogits

        if fp16:
            unscale = scale / FP16_SCALE
            for g in (grad_hidden, grad_weight, grad_bias):
                if g is not None:
                    g.mul_(unscale)
        loss = loss_rows.sum() / denom
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias if need_db else None)
        return loss

    @staticmethod
    def backward(ctx, dloss):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors

        # Out of place: backward may run twice with retain_graph, and the saved gradients must survive.
        def scaled(g, dtype):
            return None if g is None else (g * dloss.to(g.dtype)).to(dtype)

        h_dtype, w_dtype, b_dtype = ctx.dtypes
        return (scaled(grad_hidden, h_dtype), scaled(grad_weight, w_dtype), None, scaled(grad_bias, b_dtype),
                None, None, None, None)


def fused_linear_cross_entropy_reference(
    hidden, weight, labels, ignore_index: int = -100, chunk_size: int | None = None,
    num_items_in_batch=None, bias=None,
) -> torch.Tensor:
    """lm_head then Hugging Face's causal-LM loss (fp32 upcast of the full logits). chunk_size is ignored."""
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(logits, labels, ignore_index=ignore_index)
    total = torch.nn.functional.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    return total / num_items_in_batch


def fused_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100,
    chunk_size: int | None = None, num_items_in_batch=None, bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar fp32 loss of (hidden @ weight.T + bias) against labels, chunked over tokens.

    hidden [N, H], weight [V, H], labels [N] (already shifted for next-token prediction). Mean over
    labels != ignore_index, or sum / num_items_in_batch when that is given (int or tensor: the count of
    valid labels over all micro-batches of an optimizer step). d weight is formed only when
    weight.requires_grad.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"need hidden [N, H] and weight [V, H]; got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} must be [N] with N = {hidden.shape[0]}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if not use_triton(hidden, weight, labels):
        return fused_linear_cross_entropy_reference(
            hidden, weight, labels, ignore_index, chunk_size, num_items_in_batch, bias
        )
    amp = autocast_dtype(hidden)
    if amp is not None and hidden.dtype != amp:
        hidden = hidden.to(amp)  # what autocast does to lm_head's input; the gradient is cast back
    if weight.dtype != hidden.dtype:
        weight = weight.to(hidden.dtype)  # matmul needs one dtype; autograd casts the gradient back
    if bias is not None and bias.dtype != hidden.dtype:
        bias = bias.to(hidden.dtype)
    grad_enabled = torch.is_grad_enabled()
    with torch.autocast(hidden.device.type, enabled=False):  # dtypes are settled above
        return FusedLinearCrossEntropyFunction.apply(
            hidden, weight, labels, bias, ignore_index, chunk_size, num_items_in_batch, grad_enabled
        )
