"""When the Triton path runs and when the PyTorch reference does, and that importing needs no GPU."""

from __future__ import annotations

import subprocess
import sys

import bitsandbytes.functional as bnbf
import lookout_kernels
import torch
from lookout_kernels import _common, cross_entropy, fused_linear_ce, lora, nf4, rms_norm, rope, swiglu

from ._util import ON_GPU, randn

KERNEL_MODULES = (rms_norm, rope, swiglu, cross_entropy, fused_linear_ce, nf4, lora)


def run_every_op(gen):
    """Each public op once, forward and backward, on gen's device; returns the outputs."""
    dev = gen.device
    x = randn(3, 16, gen=gen).requires_grad_()
    w = randn(16, gen=gen).requires_grad_()
    q, k = randn(1, 2, 3, 8, gen=gen).requires_grad_(), randn(1, 1, 3, 8, gen=gen).requires_grad_()
    cos, sin = randn(1, 3, 8, gen=gen), randn(1, 3, 8, gen=gen)
    a, b = randn(3, 16, gen=gen).requires_grad_(), randn(3, 16, gen=gen).requires_grad_()
    labels = torch.tensor([1, -100, 7], device=dev)
    head = randn(20, 16, gen=gen)
    packed, state = bnbf.quantize_4bit(randn(24, 16, gen=gen, dtype=torch.bfloat16), quant_type="nf4")
    proj = lora.LoraWeights(packed, state, randn(2, 16, gen=gen).requires_grad_(),
                            randn(24, 2, gen=gen).requires_grad_(), 1.0)
    outs = [
        rms_norm.rms_norm(x, w),
        *rope.apply_rope(q, k, cos, sin),
        swiglu.swiglu(a, b),
        cross_entropy.cross_entropy(randn(3, 20, gen=gen).requires_grad_(), labels),
        fused_linear_ce.fused_linear_cross_entropy(x, head, labels),
        lora.lora_o(x, proj),
    ]
    sum(o.float().sum() for o in outs).backward()
    outs.append(nf4.dequantize_nf4(packed, state))
    return outs


def test_import_needs_neither_torch_nor_triton():
    code = "import sys, lookout_kernels; assert 'torch' not in sys.modules and 'triton' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kernels_run_whenever_available(monkeypatch, gen):
    assert lookout_kernels.available()  # GPU here, or the interpreter (conftest)
    launches = []
    for module in KERNEL_MODULES:
        if hasattr(module, "launchable"):
            real = module.launchable
            monkeypatch.setattr(module, "launchable", lambda k, real=real: launches.append(k.fn.__name__) or real(k))
    run_every_op(gen)
    assert {"_rms_norm_forward_kernel", "_rms_norm_backward_kernel", "_rope_kernel", "_swiglu_forward_kernel",
            "_swiglu_backward_kernel", "_ce_forward_kernel", "_ce_backward_kernel", "_ce_rows_inplace_kernel",
            "_nf4_dequant_kernel"} <= set(launches)


def test_cpu_tensors_without_interpreter_fall_back_to_the_reference(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert lookout_kernels.available() == ON_GPU
    gen = torch.Generator().manual_seed(3)  # CPU tensors, also on a GPU machine

    def no_kernels(kernel):
        raise AssertionError(f"kernel {kernel.fn.__name__} launched on the fallback path")

    for module in KERNEL_MODULES:
        if hasattr(module, "launchable"):
            monkeypatch.setattr(module, "launchable", no_kernels)
    x, w = randn(3, 16, gen=gen), randn(16, gen=gen)
    assert torch.equal(rms_norm.rms_norm(x, w), rms_norm.rms_norm_reference(x, w))
    outs = run_every_op(gen)
    assert all(torch.isfinite(o).all() for o in outs)


def test_launchable_follows_the_mode_in_force(monkeypatch):
    from triton.runtime.interpreter import InterpretedFunction

    kernel = swiglu._swiglu_forward_kernel
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert isinstance(_common.launchable(kernel), InterpretedFunction)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not isinstance(_common.launchable(kernel), InterpretedFunction)
    assert _common.launchable(kernel).fn is kernel.fn
