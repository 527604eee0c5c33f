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

`"auto"` (`AutoCheckpointPolicy`) offloads only the first k layers, k the fewest that keep the other
layers' activations within a memory budget, so recomputation is paid only where memory needs it.
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


# Activation elements one decoder layer keeps per token when it is not checkpointed, an upper bound
# for the patched Llama block: the attention's input, Q, K, V, SDPA output and the O projection's input
# (5 x hidden minus what GQA shares: 3 x hidden + 2 x kv width), the MLP's input (hidden) and its gate and
# up pre-activations (2 x intermediate). On the kernels' path the fused LoRA blocks keep the norms' inputs
# instead of their outputs (lookout_kernels.lora); the reference path (CPU) keeps both norm outputs too
# (2 x hidden more). LoRA's [tokens, r] products are negligible. At Llama-3.2-1B width, kernels' path:
# 55.3 KB/token/layer in bf16.
def layer_activation_bytes_per_token(config: Any, dtype_bytes: int = 2, norm_outputs_kept: bool = False) -> int:
    hidden = config.hidden_size
    heads = config.num_attention_heads
    kv_width = (getattr(config, "num_key_value_heads", None) or heads) * (getattr(config, "head_dim", None)
                                                                           or hidden // heads)
    kept = 5 * hidden + 2 * kv_width + 2 * config.intermediate_size
    return dtype_bytes * (kept + (2 * hidden if norm_outputs_kept else 0))


AUTO_DEVICE_FRACTION = 0.5  # of the GPU's total memory, for activations, when no budget is given


class AutoCheckpointPolicy:
    """`gradient_checkpointing="auto"`: checkpoint (offloaded) only as many layers as the budget needs.

    At every forward it reads the token count (batch x sequence) of the hidden states and estimates the
    activations a non-checkpointed layer keeps (`layer_activation_bytes_per_token`). With L layers and
    budget B, the first k layers (in forward order) are checkpointed with their inputs offloaded to host
    memory, k the smallest count with (L - k) x per-layer bytes <= B; the other layers keep their
    activations and skip the recompute. Recomputing costs about a third of a layer's compute, so every
    layer left out of checkpointing is time saved; the budget bounds what that may cost in memory.

    The budget is `memory_budget_gib` when given. Otherwise, on a GPU, it is AUTO_DEVICE_FRACTION of the
    memory this process may use (total, times any `set_per_process_memory_fraction` cap) minus what
    is allocated when checkpointing is set up (weights, LoRA, caches): the other half stays free for
    the optimizer state, the loss's logits chunks, the allocator's fragmentation and other processes. On the CPU without a budget every layer is checkpointed (host
    memory is shared with the data and the offloaded inputs themselves). The decision depends only on
    the model config, the token count and the budget, so it is the same at every step of a fixed shape.
    """

    def __init__(self, config: Any, n_layers: int, budget_bytes: float | None, dtype_bytes: int = 2,
                 norm_outputs_kept: bool = False) -> None:
        self.n_layers, self.budget_bytes = n_layers, budget_bytes
        self.per_token = layer_activation_bytes_per_token(config, dtype_bytes, norm_outputs_kept)
        self.last: dict[str, int] = {}

    def layers_to_checkpoint(self, tokens: int) -> int:
        if self.budget_bytes is None:
            return self.n_layers
        per_layer = self.per_token * tokens
        kept = int(max(self.budget_bytes, 0) // per_layer) if per_layer else self.n_layers
        return max(0, self.n_layers - min(kept, self.n_layers))

    def __call__(self, index: int, function: Callable[..., torch.Tensor], hidden_states: torch.Tensor, *args: Any,
                 preserve_rng: bool = True, **kwargs: Any) -> torch.Tensor:
        k = self.layers_to_checkpoint(hidden_states.shape[:-1].numel())
        self.last = {"tokens": hidden_states.shape[:-1].numel(), "checkpointed_layers": k, "layers": self.n_layers}
        if index < k:
            return offloaded_checkpoint(function, hidden_states, *args, preserve_rng=preserve_rng, **kwargs)
        return function(hidden_states, *args, **kwargs)


def _auto_budget_bytes(model: torch.nn.Module, memory_budget_gib: float | None) -> float | None:
    if memory_budget_gib is not None:
        if memory_budget_gib < 0:
            raise ValueError(f"memory_budget_gib must be >= 0, got {memory_budget_gib}")
        return memory_budget_gib * 2**30
    param = next(model.parameters(), None)
    if param is None or param.device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(param.device).total_memory
    get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # torch >= 2.7
    if get_fraction is not None:
        total *= get_fraction(param.device)  # a cap set with set_per_process_memory_fraction
    return AUTO_DEVICE_FRACTION * total - torch.cuda.memory_allocated(param.device)


def set_gradient_checkpointing(model: torch.nn.Module, mode: GradientCheckpointing, preserve_rng: bool = True,
                               memory_budget_gib: float | None = None) -> int:
    """Turn checkpointing on or off for every HF `GradientCheckpointingLayer`; returns how many layers.

    `mode` is False (none), True (every layer, input kept on the GPU), "offload" (every layer, input in
    pinned host memory) or "auto" (`AutoCheckpointPolicy`: only as many offloaded layers as
    `memory_budget_gib`, or half the GPU, requires). The policy object is stored on the model as
    `lookout_checkpoint_policy` (None unless "auto"); its `last` says what the latest forward did.
    `preserve_rng=False` skips saving RNG states for the recompute (safe when nothing is random).
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    if mode not in (True, False, "offload", "auto"):
        raise ValueError(f"gradient_checkpointing must be True, False, 'offload' or 'auto', not {mode!r}")
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    policy = None
    if mode == "auto":
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "intermediate_size"):
            raise ValueError("gradient_checkpointing='auto' needs a decoder config with hidden and intermediate sizes")
        param = next(model.parameters(), None)
        on_gpu = param is None or param.device.type == "cuda"
        policy = AutoCheckpointPolicy(config, len(layers), _auto_budget_bytes(model, memory_budget_gib),
                                      2 if on_gpu else 4, norm_outputs_kept=not on_gpu)
    elif memory_budget_gib is not None:
        raise ValueError("memory_budget_gib only applies to gradient_checkpointing='auto'")
    for index, layer in enumerate(layers):
        if mode == "auto":
            func: Callable[..., Any] = functools.partial(policy, index, preserve_rng=preserve_rng)
        elif mode == "offload":
            func = functools.partial(offloaded_checkpoint, preserve_rng=preserve_rng)
        else:
            func = functools.partial(checkpoint, use_reentrant=False, preserve_rng_state=preserve_rng)
        layer.gradient_checkpointing = bool(mode)
        layer._gradient_checkpointing_func = func
    model.lookout_checkpoint_policy = policy
    return len(layers)
