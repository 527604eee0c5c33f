"""RMSNorm as in Hugging Face's LlamaRMSNorm: y = weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype).

Forward keeps one fp32 inverse RMS per row for backward (4 bytes a row instead of the normalized
row). Backward gives dX, and dW only when the weight is trainable: under LoRA it is frozen, and the
per-program dW partial sums are the only part of backward that is not a single streaming pass.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.utils.weak import WeakIdKeyDictionary

from ._common import add_combine, as_rows, launchable, row_settings, sm_count, use_triton

__all__ = ["rms_norm", "rms_norm_reference", "rms_norm_forward", "rms_norm_backward", "RMSNormFunction"]


@triton.jit
def _rms_norm_forward_kernel(
    Y, y_row_stride, X, x_row_stride, W, RSTD, n_cols, eps, BLOCK_SIZE: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    x = tl.load(X + row * x_row_stride + cols, mask=mask, other=0.0)
    x32 = x.to(tl.float32)  # HF upcasts before squaring: bf16 squares would lose the sum
    mean_sq = tl.reduce(x32 * x32, 0, add_combine) / n_cols
    rstd = tl.rsqrt(mean_sq + eps)
    tl.store(RSTD + row, rstd)
    # HF rounds the normalized row back to the input dtype *before* the weight multiply; do the same
    # so bf16 outputs agree bit-for-bit far more often than a single fused rounding would.
    normed = (x32 * rstd).to(x.dtype).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * y_row_stride + cols, (normed * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_backward_kernel(
    DX, dx_row_stride, DY, dy_row_stride, X, x_row_stride, W, RSTD, DW_PARTIAL,
    n_rows, n_cols, rows_per_program,
    HAS_DW: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):
    # Each program walks `rows_per_program` rows so dW partial sums stay in registers (one fp32 row per
    # program instead of one per input row); without dW the grid is one program per row.
    pid = tl.program_id(0)
    row_start = pid.to(tl.int64) * rows_per_program  # int64 loop bounds: row * stride may pass 2**31
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.full([BLOCK_SIZE], 0.0, tl.float32)
    for r in range(row_start, row_end):
        x_raw = tl.load(X + r * x_row_stride + cols, mask=mask, other=0.0)
        x = x_raw.to(tl.float32)
        dy = tl.load(DY + r * dy_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + r)
        n = x * rstd
        g = dy * w
        # d/dx of x*rstd(x): rstd * (g - n * mean(g * n))
        dx = rstd * (g - n * (tl.reduce(g * n, 0, add_combine) / n_cols))
        tl.store(DX + r * dx_row_stride + cols, dx.to(DX.dtype.element_ty), mask=mask)
        if HAS_DW:
            dw_acc += dy * n.to(x_raw.dtype).to(tl.float32)
    if HAS_DW:
        tl.store(DW_PARTIAL + pid * n_cols + cols, dw_acc, mask=mask)


def rms_norm_forward(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel. Returns (y shaped like x, fp32 inverse RMS per row)."""
    x2 = as_rows(x)
    n_rows, n_cols = x2.shape
    if weight.shape != (n_cols,):
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match the last dim {n_cols} of x")
    out_dtype = torch.result_type(weight, x)  # HF: weight * normed.to(x.dtype) promotes
    y = torch.empty((n_rows, n_cols), dtype=out_dtype, device=x.device)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    block, num_warps = row_settings(n_cols)
    if n_rows:
        launchable(_rms_norm_forward_kernel)[(n_rows,)](
            y, y.stride(0), x2, x2.stride(0), weight.contiguous(), rstd, n_cols, eps,
            BLOCK_SIZE=block, num_warps=num_warps,
        )
    return y.view(*x.shape[:-1], n_cols), rstd


def rms_norm_backward(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor, compute_dw: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch the backward kernel. Returns (dx shaped like x, dW or None)."""
    x2 = as_rows(x)
    dy2 = as_rows(dy)
    n_rows, n_cols = x2.shape
    dx = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    block, num_warps = row_settings(n_cols)
    if compute_dw:
        programs = max(1, min(n_rows, sm_count(x.device) * 4))
        rows_per_program = triton.cdiv(n_rows, programs)
        programs = triton.cdiv(n_rows, rows_per_program) if n_rows else 1
        dw_partial = torch.empty((programs, n_cols), dtype=torch.float32, device=x.device)
    else:
        programs, rows_per_program = n_rows, 1
        dw_partial = rstd  # unused placeholder pointer
    if n_rows:
        launchable(_rms_norm_backward_kernel)[(programs,)](
            dx, dx.stride(0), dy2, dy2.stride(0), x2, x2.stride(0), weight.contiguous(), rstd, dw_partial,
            n_rows, n_cols, rows_per_program,
            HAS_DW=compute_dw, BLOCK_SIZE=block, num_warps=num_warps,
        )
    dw = None
    if compute_dw:
        dw = dw_partial.sum(0).to(weight.dtype) if n_rows else torch.zeros_like(weight)
    return dx.view(x.shape), dw


# output -> (input, weight, inverse RMS) of every RMSNormFunction output still alive: a consumer that
# would keep the output for its backward (the fused LoRA blocks) can keep these instead, which the norm
# keeps anyway, and let the output go after the forward (`norm_source`).
_SOURCES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def norm_source(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(x, weight, rstd) when y is the output of `rms_norm` on the Triton path (y = weight * (x * rstd)
    per row, rounded to x's dtype) and neither y nor x changed in place since, else None."""
    entry = _SOURCES.get(y)
    if entry is None:
        return None
    x, weight, rstd, versions = entry
    return (x, weight, rstd) if (y._version, x._version) == versions else None


class RMSNormFunction(torch.autograd.Function):
    """Saves x, the weight and the fp32 inverse RMS per row; nothing of the output."""

    @staticmethod
    def forward(ctx, x, weight, eps, weight_requires_grad):
        y, rstd = rms_norm_forward(x, weight, eps)
        ctx.compute_dw = bool(weight_requires_grad)
        ctx.save_for_backward(x, weight, rstd)
        x_in = x.detach()  # shares x's version counter: an in-place change to x shows
        _SOURCES[y] = (x_in, weight.detach(), rstd, (y._version, x_in._version))
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, rstd = ctx.saved_tensors
        compute_dw = ctx.compute_dw and ctx.needs_input_grad[1]
        dx, dw = rms_norm_backward(dy, x, weight, rstd, compute_dw)
        return (dx if ctx.needs_input_grad[0] else None), dw, None, None


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Hugging Face's LlamaRMSNorm.forward, op for op."""
    input_dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5, weight_requires_grad: bool | None = None
) -> torch.Tensor:
    """RMSNorm over the last dim of x. dW is formed only when the weight requires grad (or
    `weight_requires_grad=True`); pass False to skip it for a weight you will not update."""
    if weight_requires_grad is None:
        weight_requires_grad = weight.requires_grad
    if not use_triton(x, weight):
        if not weight_requires_grad and weight.requires_grad:
            weight = weight.detach()
        return rms_norm_reference(x, weight, eps)
    return RMSNormFunction.apply(x, weight, float(eps), weight_requires_grad)
