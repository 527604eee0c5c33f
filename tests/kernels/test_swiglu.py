"""SwiGLU kernel (silu(gate) * up) against the Llama MLP's activation, forward and backward."""

from __future__ import annotations

import pytest
import torch
from lookout_kernels.swiglu import swiglu, swiglu_backward_inplace, swiglu_reference

from ._util import DTYPES, REL_TOL, assert_rel, gpu_only, randn, saved_for_backward, to64

# (tokens, intermediate): odd sizes and a tail block; GPU: Llama-3.2 intermediate 8192 at 16k tokens
SHAPES = [(1, 5), (7, 33), (3, 1030)] + gpu_only((16384, 8192), (4097, 8192))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_and_backward_match_reference(shape, dtype, gen):
    gate = randn(*shape, gen=gen, dtype=dtype, scale=3.0).requires_grad_()
    up = randn(*shape, gen=gen, dtype=dtype).requires_grad_()
    dc = randn(*shape, gen=gen, dtype=dtype)
    out = swiglu(gate, up)
    out.backward(dc)
    g64, u64 = to64(gate), to64(up)
    ref = swiglu_reference(g64, u64)
    ref.backward(dc.double())
    tol = REL_TOL[dtype]
    assert out.dtype == dtype
    assert_rel(out, ref, tol, "out")
    assert_rel(gate.grad, g64.grad, tol, "d gate")
    assert_rel(up.grad, u64.grad, tol, "d up")


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")  # exp(200) = inf is part of the test
def test_large_negative_and_positive_gates_stay_finite(gen):
    gate = torch.tensor([-200.0, -30.0, -1.0, 0.5, 30.0, 200.0], device=gen.device).requires_grad_()
    up = randn(6, gen=gen).requires_grad_()
    swiglu(gate, up).sum().backward()
    g64, u64 = to64(gate), to64(up)
    swiglu_reference(g64, u64).sum().backward()
    assert_rel(gate.grad, g64.grad, 1e-6, "d gate")
    assert_rel(up.grad, u64.grad, 1e-6, "d up")


def test_in_place_backward_leaves_activation_and_gradients_in_the_buffers(gen):
    gate, up, dh = (randn(5, 40, gen=gen) for _ in range(3))
    g64, u64 = to64(gate), to64(up)
    ref = swiglu_reference(g64, u64)
    ref.backward(dh.double())
    swiglu_backward_inplace(dh, gate, up)  # dh <- h, gate <- d gate, up <- d up
    assert_rel(dh, ref, 1e-6, "h")
    assert_rel(gate, g64.grad, 1e-6, "d gate")
    assert_rel(up, u64.grad, 1e-6, "d up")


def test_saves_only_the_two_inputs(gen):
    gate = randn(4, 24, gen=gen, dtype=torch.bfloat16).requires_grad_()
    up = randn(4, 24, gen=gen, dtype=torch.bfloat16).requires_grad_()
    with saved_for_backward() as saved:
        swiglu(gate, up)
    assert saved[0] == 2 * gate.numel() * 2  # PyTorch's version also keeps silu(gate)


def test_shape_mismatch_is_rejected(gen):
    with pytest.raises(ValueError, match="same shape"):
        swiglu(randn(2, 3, gen=gen), randn(3, 2, gen=gen))
