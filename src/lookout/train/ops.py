"""The ops the patched Llama calls: `lookout_kernels` when it is importable, else plain PyTorch.

`lookout_kernels` picks Triton on a GPU and its own PyTorch reference on the CPU. This module
adds one more fallback level: when a kernel module is missing (an older or partial install),
the op runs the reference below, which computes exactly what Hugging Face's Llama does. The
LoRA ops fall back to calling the PEFT modules themselves, so a missing `lookout_kernels.lora`
only costs speed, never correctness.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


@functools.cache
def kernel(module: str, name: str) -> Callable[..., Any] | None:
    """`lookout_kernels.<module>.<name>`, or None when that module or name does not exist yet."""
    try:
        mod = importlib.import_module(f"lookout_kernels.{module}")
    except ImportError:
        return None
    return getattr(mod, name, None)


def triton_active() -> bool:
    """Whether `lookout_kernels` runs its Triton kernels here (else its PyTorch references)."""
    try:
        import lookout_kernels
    except ImportError:
        return False
    return lookout_kernels.available()


def available_kernels() -> dict[str, bool]:
    """Which `lookout_kernels` entry points this process found (for logs and the model card)."""
    names = {
        "rms_norm": ("rms_norm", "rms_norm"),
        "rope": ("rope", "apply_rope"),
        "swiglu": ("swiglu", "swiglu"),
        "fused_linear_ce": ("fused_linear_ce", "fused_linear_cross_entropy"),
        "lora": ("lora", "lora_weights_from_peft"),
    }
    return {key: kernel(mod, fn) is not None for key, (mod, fn) in names.items()}


# ----------------------------------------------------------------------------------------------
# References (the exact math of transformers' modeling_llama and loss_utils)


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_reference(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def _ce_sum(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = F.linear(hidden, weight).float()
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")


def fused_linear_ce_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    chunk_size: int | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of `hidden @ weight.T`, chunked over rows and recomputed in backward.

    Only one chunk of logits is alive at a time, so even this fallback never holds the
    (tokens x vocab) logits of the whole batch.
    """
    if ignore_index != IGNORE_INDEX:
        labels = torch.where(labels == ignore_index, torch.full_like(labels, IGNORE_INDEX), labels)
    n = hidden.shape[0]
    if chunk_size is None:  # about 256 MiB of fp32 logits per chunk
        chunk_size = max(1, min(n, (64 * 2**20) // max(1, weight.shape[0])))
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, n, chunk_size):
        h, y = hidden[start : start + chunk_size], labels[start : start + chunk_size]
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            total = total + checkpoint(_ce_sum, h, weight, y, use_reentrant=False)
        else:
            total = total + _ce_sum(h, weight, y)
    if num_items_in_batch is None:
        count = (labels != IGNORE_INDEX).sum()
        return total / count.clamp(min=1)  # HF's "mean" reduction (NaN-free on an empty batch)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


# ----------------------------------------------------------------------------------------------
# Dispatch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    fn = kernel("rms_norm", "rms_norm")
    if fn is None:
        return rms_norm_reference(x, weight, eps)
    return fn(x, weight, eps=eps, weight_requires_grad=weight.requires_grad)


def apply_rope(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding; q is [B, heads, T, D], k is [B, kv_heads, T, D], cos/sin are [B or 1, T, D]."""
    fn = kernel("rope", "apply_rope")
    if fn is None:
        return rope_reference(q, k, cos, sin)
    if cos.shape[0] != q.shape[0]:  # HF gives one row of positions for the whole batch
        cos, sin = cos.expand(q.shape[0], -1, -1), sin.expand(q.shape[0], -1, -1)
    return fn(q, k, cos, sin)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    fn = kernel("swiglu", "swiglu")
    return swiglu_reference(gate, up) if fn is None else fn(gate, up)


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    fn = kernel("fused_linear_ce", "fused_linear_cross_entropy")
    if fn is None:
        fn = fused_linear_ce_reference
    return fn(hidden, weight, labels, ignore_index=IGNORE_INDEX, num_items_in_batch=num_items_in_batch)


def lora_weights(layer: torch.nn.Module) -> Any | None:
    """The fused-kernel view of one PEFT LoRA layer, or None to run PEFT's own forward.

    None when the kernel is missing, the adapter is disabled or merged, or the layer is not
    plain LoRA (dropout, bias, DoRA, several adapters: `lora_weights_from_peft` decides those).
    """
    fn = kernel("lora", "lora_weights_from_peft")
    if fn is None or not hasattr(layer, "lora_A"):
        return None
    if getattr(layer, "disable_adapters", False) or getattr(layer, "merged", False):
        return None
    return fn(layer)


def lora_qkv(
    x: torch.Tensor, q: torch.nn.Module, k: torch.nn.Module, v: torch.nn.Module
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    weights = [lora_weights(m) for m in (q, k, v)]
    fn = kernel("lora", "lora_qkv")
    if fn is None or any(w is None for w in weights):
        return q(x), k(x), v(x)
    return fn(x, *weights)


def lora_o(x: torch.Tensor, o: torch.nn.Module) -> torch.Tensor:
    weights = lora_weights(o)
    fn = kernel("lora", "lora_o")
    if fn is None or weights is None:
        return o(x)
    return fn(x, weights)


def lora_mlp(
    x: torch.Tensor, gate: torch.nn.Module, up: torch.nn.Module, down: torch.nn.Module
) -> torch.Tensor:
    weights = [lora_weights(m) for m in (gate, up, down)]
    fn = kernel("lora", "lora_mlp")
    if fn is None or any(w is None for w in weights):
        return down(swiglu(gate(x), up(x)))
    return fn(x, *weights)
