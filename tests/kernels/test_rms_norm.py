"""RMSNorm kernel against Hugging Face's LlamaRMSNorm (the reference), forward and backward."""

from __future__ import annotations

import pytest
import torch
from lookout_kernels.rms_norm import rms_norm, rms_norm_reference
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ._util import DEVICE, DTYPES, REL_TOL, assert_rel, gpu_only, randn, saved_for_backward, to64

# (rows, hidden): odd row counts, non-power-of-two widths; on the GPU the Llama-3.2-1B/3B widths
SHAPES = [(1, 8), (7, 37), (5, 130)] + gpu_only((4097, 2048), (2049, 3072), (16384, 2048))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("train_weight", [True, False])
def test_forward_and_backward_match_reference(shape, dtype, train_weight, gen):
    rows, hidden = shape
    x = randn(rows, hidden, gen=gen, dtype=dtype, scale=2.0).requires_grad_()
    w = (1.0 + randn(hidden, gen=gen, dtype=dtype, scale=0.3)).requires_grad_(train_weight)
    dy = randn(rows, hidden, gen=gen, dtype=dtype)

    y = rms_norm(x, w, eps=1e-5)
    y.backward(dy)

    x64, w64 = to64(x), to64(w, train_weight)
    y64 = rms_norm_reference(x64, w64, eps=1e-5)
    y64.backward(dy.double())
    tol = REL_TOL[dtype]
    assert y.dtype == dtype and y.shape == x.shape
    assert_rel(y, y64, tol, "y")
    assert_rel(x.grad, x64.grad, tol, "dx")
    if train_weight:
        assert_rel(w.grad, w64.grad, tol, "dw")
    else:
        assert w.grad is None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_equals_hugging_face_module_in_its_dtype(dtype, gen):
    hidden = 96
    module = LlamaRMSNorm(hidden, eps=1e-6).to(device=DEVICE, dtype=dtype)
    with torch.no_grad():
        module.weight.copy_(1.0 + randn(hidden, gen=gen, scale=0.2))
    x = randn(3, 5, hidden, gen=gen, dtype=dtype)
    ours = rms_norm(x, module.weight, eps=1e-6)
    theirs = module(x)
    # same rounding points as HF (normalize in fp32, round to dtype, multiply); sums may differ in order
    torch.testing.assert_close(ours, theirs, rtol=REL_TOL[dtype], atol=REL_TOL[dtype])
    assert_rel(rms_norm_reference(x, module.weight, eps=1e-6), theirs, 0.0, "reference == HF")


def test_weight_gradient_skipped_on_request_and_input_may_be_a_strided_view(gen):
    base = randn(6, 4, 40, gen=gen)
    x = base.transpose(0, 1).requires_grad_()  # [4, 6, 40], rows not contiguous
    w = (1.0 + randn(40, gen=gen, scale=0.1)).requires_grad_()
    y = rms_norm(x, w, weight_requires_grad=False)
    dy = randn(*y.shape, gen=gen)
    y.backward(dy)
    x64 = to64(x)
    rms_norm_reference(x64, w.detach().double()).backward(dy.double())
    assert w.grad is None  # never formed for a weight we were told is frozen
    assert_rel(x.grad, x64.grad, REL_TOL[torch.float32], "dx")


def test_saves_only_input_weight_and_one_fp32_per_row(gen):
    rows, hidden = 9, 48
    x = randn(rows, hidden, gen=gen, dtype=torch.bfloat16).requires_grad_()
    w = randn(hidden, gen=gen, dtype=torch.bfloat16)
    with saved_for_backward() as saved:
        rms_norm(x, w)
    assert saved[0] == x.numel() * 2 + w.numel() * 2 + rows * 4
