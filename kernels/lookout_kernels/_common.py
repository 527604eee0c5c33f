"""Launch plumbing shared by the ops: when to take the Triton path, how to launch a kernel in the
current mode (compiled or CPU interpreter), and block-size choices.

Triton decides at `@triton.jit` time (module import) whether a kernel is compiled or interpreted.
A test session may import these modules before `TRITON_INTERPRET=1` is set (or the other way round),
so `launchable()` re-wraps the kernel for the mode in force at launch time instead of trusting the
import-time choice.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from triton.runtime.jit import JITFunction

from . import available, interpret_mode


# Reductions go through tl.reduce with these combiners rather than tl.sum / tl.max: those (and
# tl.sigmoid, tl.zeros) are @triton.jit functions of triton.language itself, fixed as compiled or
# interpreted when triton.language is first imported, so they fail in the CPU interpreter whenever
# something imported Triton before TRITON_INTERPRET was set (a whole test session does). Triton's own
# combiners are reused when present: the interpreter recognizes them and reduces with numpy instead
# of element by element in Python.
@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


add_combine = getattr(tl.standard, "_sum_combine", _add)
max_combine = getattr(tl.standard, "_elementwise_max", _max)


# Liger's limit: one program keeps at most this many elements of a row in registers.
MAX_FUSED_SIZE = 65536


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """Whether to run the Triton path for these inputs: Triton can run here and the tensors live where
    it can reach them (CUDA, or anywhere when the CPU interpreter is on)."""
    if not available():
        return False
    if interpret_mode():
        return True
    return all(t.is_cuda for t in tensors if t is not None)


_converted: dict[tuple[int, bool], object] = {}


def launchable(kernel):
    """The kernel object to index with a grid, for the mode in force now (see module docstring).
    Kernels call no @triton.jit helpers except the combiners above (see there)."""
    want_interpreted = interpret_mode()
    if not want_interpreted and type(kernel) is JITFunction:
        return kernel  # the common case, kept cheap: this runs on every launch
    from triton.runtime.interpreter import InterpretedFunction

    if isinstance(kernel, InterpretedFunction) == want_interpreted:
        return kernel
    key = (id(kernel), want_interpreted)
    conv = _converted.get(key)
    if conv is None:
        # Both kinds keep the undecorated Python function in `.fn`.
        conv = InterpretedFunction(kernel.fn) if want_interpreted else triton.jit(kernel.fn)
        _converted[key] = conv
    return conv


def row_settings(n_cols: int) -> tuple[int, int]:
    """(BLOCK_SIZE, num_warps) for a kernel that keeps one whole row of `n_cols` in registers."""
    block = triton.next_power_of_2(n_cols)
    if block > MAX_FUSED_SIZE:
        raise ValueError(f"row width {n_cols} exceeds the {MAX_FUSED_SIZE} elements one program can hold")
    num_warps = 4
    if block >= 32768:
        num_warps = 32
    elif block >= 8192:
        num_warps = 16
    elif block >= 2048:
        num_warps = 8
    return block, num_warps


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors on `device`; a small stand-in for the CPU interpreter."""
    if device.type == "cuda":
        return _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    return 4


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """View `x` as [rows, last_dim] with unit stride along the row (copying only when it must)."""
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    return x2


def autocast_dtype(t: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype in force for t's device type, or None when autocast is off there. Ops that
    call matmuls inside an autograd.Function decide the dtype themselves, as autocast would have."""
    dev = t.device.type
    if dev in ("cuda", "cpu") and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return None
