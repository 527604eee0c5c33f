"""NF4 layers on the CPU that bitsandbytes dequantizes wrongly run through lookout_kernels instead.

bitsandbytes 0.50's CPU backend dequantizes a 4-bit weight wrongly when its row length is not a
multiple of the 64-element block (relative error ~25% instead of NF4's ~9%); CUDA is unaffected and
real Llama shapes are multiples of 64, but small models (and the tiny profile) are not always. The
trainer never sees it: its fused LoRA kernels dequantize with `lookout_kernels.nf4`, which is
bit-exact with bitsandbytes on CUDA. So on the CPU every `Linear4bit` is checked once at load time
against that reference, and the layers that disagree compute with the reference dequantization:
the planner then runs the same 4-bit weights, with the same math, that its adapter was trained on.

On CPUs with AVX512-BF16, bitsandbytes also repacks a layer's weights at its first inference-mode
call and from then on multiplies in bfloat16, whatever the compute dtype asked for (errors ~1e-3 on
logits, and the result depends on which CPU ran it and on whether the layer had run before). The
repair turns that path off, so plans and tests are the same on every CPU.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def _reference_nf4_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    from lookout_kernels.nf4 import dequantize_nf4

    weight = dequantize_nf4(self.weight.data, self.weight.quant_state).to(x.dtype)
    bias = None if self.bias is None else self.bias.to(x.dtype)
    return F.linear(x, weight, bias)


def repair_cpu_nf4(model: torch.nn.Module) -> list[str]:
    """Route each CPU `Linear4bit` whose bitsandbytes dequantization disagrees with the NF4 reference
    through the reference; returns the names of the layers rerouted."""
    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import dequantize_4bit
        from lookout_kernels.nf4 import dequantize_nf4
    except ImportError:
        return []
    rerouted = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, bnb.nn.Linear4bit) or module.weight.device.type != "cpu":
                continue
            state = getattr(module.weight, "quant_state", None)
            if state is None or getattr(state, "quant_type", "nf4") != "nf4":
                continue
            if getattr(state, "packing_format_for_cpu", False):
                raise RuntimeError(f"{name}: repair_cpu_nf4 must run before the model's first forward pass "
                                   "(bitsandbytes has already repacked this layer for bfloat16)")
            module.support_avx512bf16_for_cpu = False  # compute in the layer's own compute dtype
            ours = dequantize_nf4(module.weight.data, state).float()
            theirs = dequantize_4bit(module.weight.data, state).float()
            if torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6):
                continue
            module.forward = types.MethodType(_reference_nf4_forward, module)
            rerouted.append(name)
    if rerouted:
        log.info("bitsandbytes' CPU dequantization disagrees with the NF4 reference for %d layer(s) "
                 "(rows not a multiple of 64); they run through lookout_kernels.nf4", len(rerouted))
    return rerouted
