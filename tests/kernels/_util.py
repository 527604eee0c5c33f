"""Shared helpers of the kernel tests: where they run, tolerances, error measure."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"

# Norm-relative error bars |out - ref| / |ref| against a float64 reference (METHOD.md: fp32 lands far
# below 1e-3; bf16 operands between 1e-3 and 1e-2). One bf16 rounding of a result is ~2e-3.
REL_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.2e-2}
DTYPES = [torch.float32, torch.bfloat16, torch.float16]

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def gpu_only(*cases):
    """Extra parametrizations (full Llama shapes) that only exist when a GPU is present."""
    return list(cases) if ON_GPU else []


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a, e = actual.detach().double(), expected.detach().double()
    if a.shape != e.shape:
        raise AssertionError(f"shape {tuple(a.shape)} != expected {tuple(e.shape)}")
    if not torch.isfinite(a).all():
        raise AssertionError(f"non-finite values in result ({(~torch.isfinite(a)).sum().item()} of {a.numel()})")
    denom = e.norm().item()
    return (a - e).norm().item() / (denom if denom > 0 else 1.0)


def assert_rel(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str = "") -> None:
    err = rel_err(actual, expected)
    assert err <= tol and not math.isnan(err), f"{what}: relative error {err:.3g} > {tol:.3g}"


def to64(t: torch.Tensor, grad: bool = True) -> torch.Tensor:
    """A float64 leaf copy (the reference's inputs)."""
    return t.detach().double().requires_grad_(grad)


def randn(*shape, gen: torch.Generator, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
    """Standard normal values (times scale) on the test device, drawn in fp32 then cast."""
    return (torch.randn(*shape, generator=gen, device=gen.device, dtype=torch.float32) * scale).to(dtype)


@contextmanager
def saved_for_backward() -> Iterator[list[int]]:
    """Counts the bytes autograd saves for backward inside the block (box[0])."""
    box = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        box[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield box
