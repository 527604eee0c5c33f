"""Activation checkpointing per decoder layer, optionally with the saved input in host memory.

`True` uses `torch.utils.checkpoint` (non-reentrant): each layer keeps only its input and is
recomputed in backward. `"offload"` keeps even that input off the GPU (Unsloth's idea): the
forward copies it to pinned CPU memory, the backward copies it back and recomputes the layer.
At Llama-3.2-1B width that frees layers x tokens x 2048 x 2 bytes of GPU memory (1 GiB at batch
8 x 2048), the part that grows with batch and sequence length.

The copies run on a side CUDA stream so they overlap compute: the forward's device-to-host copy
runs while the next layer computes, and each layer's backward starts the host-to-device copy of
the layer below it (found through its output, which is the next layer's input) before it
recomputes, so the input is usually back on the GPU by the time it is needed. On the CPU there is
nothing to move and the same autograd function simply keeps the input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint
from torch.utils.weak import WeakIdKeyDictionary

from lookout.train.fast_llama import GradientCheckpointing

_STREAMS: dict[torch.device, torch.cuda.Stream] = {}
_PRODUCER: WeakIdKeyDictionary = WeakIdKeyDictionary()  # layer output -> the _HostCopy of that layer's input


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    if device not in _STREAMS:
        _STREAMS[device] = torch.cuda.Stream(device)
    return _STREAMS[device]


class _HostCopy:
    """One layer's input, in pinned host memory, plus a prefetched device copy when one was started."""

    __slots__ = ("host", "device", "fetched", "ready", "below", "__weakref__")

    def __init__(self, x: torch.Tensor) -> None:
        self.device, self.fetched, self.ready, self.below = x.device, None, None, None
        if x.device.type != "cuda":
            self.host = x.detach()  # already in host memory
            return
        stream = _side_stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))  # x is complete
        with torch.cuda.stream(stream):
            self.host = torch.empty(x.shape, dtype=x.dtype, device="cpu", pin_memory=True)
            self.host.copy_(x, non_blocking=True)
        x.record_stream(stream)  # the allocator must not reuse x before the copy has read it

    def prefetch(self) -> None:
        if self.device.type != "cuda" or self.fetched is not None:
            return
        stream = _side_stream(self.device)
        with torch.cuda.stream(stream):
            self.fetched = self.host.to(self.device, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record(stream)

    def take(self) -> torch.Tensor:
        """The input back on its device, usable on the current stream."""
        if self.device.type != "cuda":
            x = self.host
        else:
            self.prefetch()
            current = torch.cuda.current_stream(self.device)
            current.wait_event(self.ready)
            x = self.fetched
            x.record_stream(current)  # allocated on the side stream, used on this one
        self.host = self.fetched = None
        return x


def _device_states(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda_state


class _OffloadedLayer(torch.autograd.Function):
    """Runs `run(x)` without keeping activations; backward recomputes it from the host copy of x.

    `anchor` is an empty tensor that requires grad, so backward runs even when x does not
    (the first layer's input comes from a frozen embedding).
    """

    @staticmethod
    def forward(ctx: Any, run: Callable[..., torch.Tensor], x: torch.Tensor, anchor: torch.Tensor,
                preserve_rng: bool) -> torch.Tensor:
        ctx.run, ctx.x_requires_grad = run, x.requires_grad
        ctx.saved = _HostCopy(x)
        below = _PRODUCER.get(x)
        ctx.saved.below = below  # the layer under this one, to prefetch during this backward
        ctx.autocast = (torch.is_autocast_enabled(x.device.type), torch.get_autocast_dtype(x.device.type))
        ctx.rng = _device_states(x.device) if preserve_rng else None
        out = run(x)
        _PRODUCER[out] = ctx.saved
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[None, torch.Tensor | None, None, None]:
        saved = ctx.saved
        x = saved.take().requires_grad_(True)
        if saved.below is not None:  # overlap the next copy with this layer's recompute and backward
            saved.below.prefetch()
        device = x.device
        enabled, dtype = ctx.autocast
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=ctx.rng is not None):
            if ctx.rng is not None:
                torch.set_rng_state(ctx.rng[0])
                if ctx.rng[1] is not None:
                    torch.cuda.set_rng_state(ctx.rng[1], device)
            with torch.enable_grad(), torch.autocast(device.type, dtype=dtype, enabled=enabled):
                out = ctx.run(x)
        torch.autograd.backward(out, grad_out)
        ctx.run = ctx.saved = saved.below = None
        return None, (x.grad if ctx.x_requires_grad else None), None, None


def offloaded_checkpoint(function: Callable[..., torch.Tensor], hidden_states: torch.Tensor, *args: Any,
                         preserve_rng: bool = True, **kwargs: Any) -> torch.Tensor:
    """Drop-in for `torch.utils.checkpoint.checkpoint` as HF's decoder layers call it."""
    if any(torch.is_tensor(a) and a.requires_grad for a in (*args, *kwargs.values())):
        raise ValueError("offloaded checkpointing only supports gradients through the first argument")
    run = functools.partial(function, *args, **kwargs) if args or kwargs else function
    anchor = torch.empty(0, device=hidden_states.device, requires_grad=True)
    return _OffloadedLayer.apply(run, hidden_states, anchor, preserve_rng)


def set_gradient_checkpointing(model: torch.nn.Module, mode: GradientCheckpointing, preserve_rng: bool = True) -> int:
    """Turn checkpointing on or off for every HF `GradientCheckpointingLayer`; returns how many layers.

    `preserve_rng=False` skips saving RNG states for the recompute (safe when nothing is random).
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    if mode not in (True, False, "offload"):
        raise ValueError(f"gradient_checkpointing must be True, False or 'offload', not {mode!r}")
    if mode == "offload":
        func: Callable[..., Any] = functools.partial(offloaded_checkpoint, preserve_rng=preserve_rng)
    else:
        func = functools.partial(checkpoint, use_reentrant=False, preserve_rng_state=preserve_rng)
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.gradient_checkpointing = bool(mode)
        layer._gradient_checkpointing_func = func
    return len(layers)
