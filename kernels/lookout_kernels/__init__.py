"""Triton kernels for fast QLoRA training of Llama models.

Needs only torch and triton. Importing never needs a GPU: `available()` says whether the
Triton path can run here (a CUDA device, or `TRITON_INTERPRET=1` for slow CPU runs in tests).

One op per module, each with Triton kernels, launchers, a torch.autograd.Function and a plain-PyTorch
reference it falls back to when the Triton path cannot run (CPU tensors without the interpreter):
`rms_norm`, `rope`, `swiglu`, `cross_entropy`, `fused_linear_ce`, `nf4` (bitsandbytes NF4 dequant),
`lora` (fused LoRA MLP / QKV / O blocks on a frozen 4-bit base). Submodules are imported on demand.
"""

from __future__ import annotations

import functools
import os

__version__ = "0.1.0"


def interpret_mode() -> bool:
    """True when Triton runs kernels in its CPU interpreter (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _triton_and_cuda() -> tuple[bool, bool]:
    # Asked once per process: every op asks on every call, and torch.cuda.is_available() is not free.
    try:
        import torch
        import triton  # noqa: F401
    except Exception:
        return False, False
    return True, bool(torch.cuda.is_available())


def available() -> bool:
    """Whether Triton kernels can run in this process (GPU present, or the interpreter is on)."""
    has_triton, has_cuda = _triton_and_cuda()
    return has_triton and (has_cuda or interpret_mode())
