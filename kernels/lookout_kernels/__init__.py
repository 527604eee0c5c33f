"""Triton kernels for fast QLoRA training of Llama models.

Needs only torch and triton. Importing never needs a GPU: `available()` says whether the
Triton path can run here (a CUDA device, or `TRITON_INTERPRET=1` for slow CPU runs in tests).
"""

from __future__ import annotations

import os

__version__ = "0.1.0"


def interpret_mode() -> bool:
    """True when Triton runs kernels in its CPU interpreter (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """Whether Triton kernels can run in this process (GPU present, or the interpreter is on)."""
    try:
        import torch
        import triton  # noqa: F401
    except Exception:
        return False
    return bool(torch.cuda.is_available() or interpret_mode())
