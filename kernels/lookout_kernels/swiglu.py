"""SwiGLU, the Llama MLP activation: c = silu(gate) * up.

Forward saves only its two inputs; backward recomputes sigmoid(gate) instead of storing silu(gate)
(one fewer [tokens, intermediate] tensor alive between forward and backward). Arithmetic in fp32:
sigmoid of a bf16 value loses too much.

`swiglu_backward_inplace` is the variant the fused LoRA MLP uses: it owns its gate/up buffers, so it
overwrites them with their gradients and the upstream gradient buffer with the recomputed activation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import launchable, use_triton

__all__ = ["swiglu", "swiglu_reference", "swiglu_forward", "swiglu_backward", "swiglu_backward_inplace",
           "SwiGLUFunction"]

_BLOCK = 1024  # elements per program: 2 KiB of bf16 per input, enough in flight to saturate HBM
_WARPS = 4


@triton.jit
def _swiglu_forward_kernel(C, A, B, n_elements, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    a = tl.load(A + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offs, mask=mask, other=0.0).to(tl.float32)
    c = a / (1.0 + tl.exp(-a)) * b  # silu(a) * b
    tl.store(C + offs, c.to(C.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_backward_kernel(DA, DB, H, DC, A, B, n_elements, STORE_H: tl.constexpr, BLOCK: tl.constexpr):
    # DA/DB/H may alias A/B/DC: every element is read before it is written, by the same program.
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    dc = tl.load(DC + offs, mask=mask, other=0.0).to(tl.float32)
    a = tl.load(A + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offs, mask=mask, other=0.0).to(tl.float32)
    sig = 1.0 / (1.0 + tl.exp(-a))  # recomputed, not stored by forward
    silu = a * sig
    db = dc * silu
    # d silu / da = sig * (1 + a * (1 - sig))
    da = dc * b * sig * (1.0 + a * (1.0 - sig))
    tl.store(DA + offs, da.to(DA.dtype.element_ty), mask=mask)
    tl.store(DB + offs, db.to(DB.dtype.element_ty), mask=mask)
    if STORE_H:
        tl.store(H + offs, (silu * b).to(H.dtype.element_ty), mask=mask)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, _BLOCK),)


def swiglu_forward(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    if gate.shape != up.shape:
        raise ValueError(f"gate {tuple(gate.shape)} and up {tuple(up.shape)} must have the same shape")
    gate, up = _flat(gate), _flat(up)
    out = torch.empty_like(gate, dtype=torch.result_type(gate, up))
    n = out.numel()
    if n:
        launchable(_swiglu_forward_kernel)[_grid(n)](out, gate, up, n, BLOCK=_BLOCK, num_warps=_WARPS)
    return out


def swiglu_backward(dc: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d gate, d up) into new tensors."""
    dc, gate, up = _flat(dc), _flat(gate), _flat(up)
    dgate, dup = torch.empty_like(gate), torch.empty_like(up)
    n = gate.numel()
    if n:
        launchable(_swiglu_backward_kernel)[_grid(n)](
            dgate, dup, dgate, dc, gate, up, n, STORE_H=False, BLOCK=_BLOCK, num_warps=_WARPS
        )
    return dgate, dup


def swiglu_backward_inplace(dh: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> None:
    """For callers that own all three (contiguous) buffers: afterwards dh holds silu(gate)*up (the
    activation, needed again for LoRA gradients), gate holds d gate and up holds d up."""
    if not (dh.is_contiguous() and gate.is_contiguous() and up.is_contiguous()):
        raise ValueError("swiglu_backward_inplace needs contiguous buffers")
    n = gate.numel()
    if n:
        launchable(_swiglu_backward_kernel)[_grid(n)](
            gate, up, dh, dh, gate, up, n, STORE_H=True, BLOCK=_BLOCK, num_warps=_WARPS
        )


class SwiGLUFunction(torch.autograd.Function):
    """Saves gate and up only; silu(gate) is recomputed in backward."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return swiglu_forward(gate, up)

    @staticmethod
    def backward(ctx, dc):
        gate, up = ctx.saved_tensors
        return swiglu_backward(dc, gate, up)


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The Llama MLP's act_fn(gate_proj(x)) * up_proj(x) with act_fn = SiLU."""
    return torch.nn.functional.silu(gate) * up


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up with a backward that recomputes the activation."""
    if not use_triton(gate, up):
        return swiglu_reference(gate, up)
    return SwiGLUFunction.apply(gate, up)
