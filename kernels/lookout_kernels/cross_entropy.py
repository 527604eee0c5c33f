"""Cross-entropy over logits [N, V] with integer labels and ignore_index (-100 by default).

Forward streams each row once with an online max / sum-of-exp (fp32) and keeps one log-sum-exp per
row; backward re-reads the logits and writes softmax - onehot. Nothing [N, V]-sized is saved beyond
the logits the caller already holds (PyTorch's saves a log-softmax copy).

`cross_entropy_rows_inplace` computes loss and gradient in one kernel and overwrites the logits with
their gradient: the fused linear + cross-entropy op uses it on logit chunks it owns.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import add_combine, launchable, max_combine, use_triton

__all__ = ["cross_entropy", "cross_entropy_reference", "cross_entropy_forward", "cross_entropy_backward",
           "cross_entropy_rows_inplace", "check_labels", "CrossEntropyFunction"]

_MAX_BLOCK = 32768  # Liger's cap: 64 KiB of bf16 per program and step keeps registers in check
_REDUCTIONS = ("mean", "sum", "none")


def _block(n_cols: int) -> tuple[int, int]:
    block = min(_MAX_BLOCK, triton.next_power_of_2(n_cols))
    return block, (32 if block >= 16384 else 16 if block >= 4096 else 8 if block >= 1024 else 4)


@triton.jit
def _ce_forward_kernel(
    LOSS, LSE, LOGITS, row_stride, LABELS, n_cols, ignore_index,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * row_stride
    label = tl.load(LABELS + row).to(tl.int64)
    valid = label != ignore_index
    m = float("-inf")
    s = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.reduce(x, 0, max_combine))
        s = s * tl.exp(m - m_new) + tl.reduce(tl.exp(x - m_new), 0, add_combine)
        m = m_new
    lse = m + tl.log(s)
    x_label = tl.load(base + label, mask=valid, other=0.0).to(tl.float32)
    tl.store(LSE + row, lse)
    tl.store(LOSS + row, tl.where(valid, lse - x_label, 0.0))


@triton.jit
def _ce_backward_kernel(
    DLOGITS, d_row_stride, LOGITS, row_stride, LABELS, LSE, DLOSS, dloss_stride, n_cols, ignore_index,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(LABELS + row).to(tl.int64)
    # ignored rows get zero gradient (and never read DLOSS, which may be inf when all rows are ignored)
    scale = tl.where(label != ignore_index, tl.load(DLOSS + row * dloss_stride).to(tl.float32), 0.0)
    lse = tl.load(LSE + row)
    base = LOGITS + row * row_stride
    dbase = DLOGITS + row * d_row_stride
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.exp(x - lse) - tl.where(cols == label, 1.0, 0.0)
        tl.store(dbase + cols, (g * scale).to(DLOGITS.dtype.element_ty), mask=mask)


@triton.jit
def _ce_rows_inplace_kernel(
    LOSS, LOGITS, row_stride, LABELS, SCALE, n_cols, ignore_index,
    COMPUTE_GRAD: tl.constexpr, BLOCK: tl.constexpr,
):
    # Pass 1: online log-sum-exp. Pass 2: overwrite the row with (softmax - onehot) * scale. The row was
    # just read, so pass 2 mostly hits L2.
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * row_stride
    label = tl.load(LABELS + row).to(tl.int64)
    valid = label != ignore_index
    m = float("-inf")
    s = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.reduce(x, 0, max_combine))
        s = s * tl.exp(m - m_new) + tl.reduce(tl.exp(x - m_new), 0, add_combine)
        m = m_new
    lse = m + tl.log(s)
    x_label = tl.load(base + label, mask=valid, other=0.0).to(tl.float32)
    tl.store(LOSS + row, tl.where(valid, lse - x_label, 0.0))
    if COMPUTE_GRAD:
        scale = tl.where(valid, tl.load(SCALE).to(tl.float32), 0.0)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            g = tl.exp(x - lse) - tl.where(cols == label, 1.0, 0.0)
            tl.store(base + cols, (g * scale).to(LOGITS.dtype.element_ty), mask=mask)


def check_labels(labels: torch.Tensor, n_classes: int, ignore_index: int) -> None:
    """Labels must be integers in [0, n_classes) or ignore_index: a label outside would make the kernel
    read another row's logits. One host sync; a device-side assert would avoid it but leaves the CUDA
    context unusable, which is no clear error. Skipped while a CUDA graph is being captured (no sync
    is allowed there)."""
    if labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be int64 or int32, got {labels.dtype}")
    if labels.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    if labels.numel():
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= n_classes))
        if bad.any():
            raise ValueError(f"labels must be in [0, {n_classes}) or equal ignore_index ({ignore_index}); "
                             f"got {labels[bad][:5].tolist()}")


def _check(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> None:
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"need logits [N, V] and labels [N]; got {tuple(logits.shape)} and {tuple(labels.shape)}")
    check_labels(labels, logits.shape[1], ignore_index)


def cross_entropy_forward(logits, labels, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row losses (0 for ignored rows) and per-row log-sum-exp, both fp32."""
    _check(logits, labels, ignore_index)
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    n_rows, n_cols = logits.shape
    loss = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    lse = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    block, warps = _block(n_cols)
    if n_rows:
        launchable(_ce_forward_kernel)[(n_rows,)](
            loss, lse, logits, logits.stride(0), labels.contiguous(), n_cols, ignore_index,
            BLOCK=block, num_warps=warps,
        )
    return loss, lse


def cross_entropy_backward(dloss_rows, logits, labels, lse, ignore_index: int = -100) -> torch.Tensor:
    """d logits given the gradient of each row's loss (`dloss_rows`, [N], may be an expanded scalar)."""
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    n_rows, n_cols = logits.shape
    dlogits = torch.empty_like(logits)
    block, warps = _block(n_cols)
    if n_rows:
        launchable(_ce_backward_kernel)[(n_rows,)](
            dlogits, dlogits.stride(0), logits, logits.stride(0), labels.contiguous(), lse,
            dloss_rows, dloss_rows.stride(0), n_cols, ignore_index,
            BLOCK=block, num_warps=warps,
        )
    return dlogits


def cross_entropy_rows_inplace(
    logits: torch.Tensor, labels: torch.Tensor, loss_out: torch.Tensor, scale: torch.Tensor | None,
    ignore_index: int = -100, block: int | None = None, check: bool = True,
) -> None:
    """Write each row's loss into `loss_out` (fp32, 0 for ignored rows) and, when `scale` (a 1-element
    fp32 tensor: the gradient of every valid row's loss) is given, overwrite `logits` with
    (softmax - onehot) * scale. `logits` must have unit stride along rows. `check=False` skips the
    label range check (one host sync) for callers that checked all labels already."""
    if logits.stride(-1) != 1:
        raise ValueError("logits rows must be contiguous")
    if check:
        _check(logits, labels, ignore_index)
    n_rows, n_cols = logits.shape
    blk, warps = _block(n_cols)
    if block is not None:
        blk = block
    if n_rows:
        launchable(_ce_rows_inplace_kernel)[(n_rows,)](
            loss_out, logits, logits.stride(0), labels, scale if scale is not None else loss_out,
            n_cols, ignore_index, COMPUTE_GRAD=scale is not None, BLOCK=blk, num_warps=warps,
        )


class CrossEntropyFunction(torch.autograd.Function):
    """Saves the logits (the caller's tensor, no copy), labels and one fp32 log-sum-exp per row."""

    @staticmethod
    def forward(ctx, logits, labels, ignore_index, reduction):
        loss_rows, lse = cross_entropy_forward(logits, labels, ignore_index)
        ctx.ignore_index, ctx.reduction = ignore_index, reduction
        if reduction == "mean":
            n_valid = (labels != ignore_index).sum().to(torch.float32)  # stays on the device
            ctx.save_for_backward(logits, labels, lse, n_valid)
            return loss_rows.sum() / n_valid  # nan when every row is ignored, as in PyTorch
        ctx.save_for_backward(logits, labels, lse)
        return loss_rows.sum() if reduction == "sum" else loss_rows

    @staticmethod
    def backward(ctx, dloss):
        logits, labels, lse, *rest = ctx.saved_tensors
        n_rows = logits.shape[0]
        dloss = dloss.to(torch.float32)
        if ctx.reduction == "mean":
            dloss_rows = (dloss / rest[0]).reshape(1).expand(n_rows)
        elif ctx.reduction == "sum":
            dloss_rows = dloss.reshape(1).expand(n_rows)
        else:
            dloss_rows = dloss
        return cross_entropy_backward(dloss_rows, logits, labels, lse, ctx.ignore_index), None, None, None


def cross_entropy_reference(logits, labels, ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """PyTorch's cross-entropy on fp32-upcast logits (what Hugging Face's causal-LM loss does)."""
    return torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction=reduction)


def cross_entropy(logits, labels, ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits [N, V] against labels [N]; the loss is fp32, the gradient has the logits'
    dtype. reduction: 'mean' over non-ignored rows, 'sum', or 'none' (per row, 0 where ignored)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not use_triton(logits, labels):
        return cross_entropy_reference(logits, labels, ignore_index, reduction)
    return CrossEntropyFunction.apply(logits, labels, ignore_index, reduction)
