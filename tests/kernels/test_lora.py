"""Fused LoRA blocks (MLP, QKV, O) against plain autograd through the same math, and against real
PEFT LoRA layers over bitsandbytes Linear4bit and nn.Linear."""

from __future__ import annotations

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf
import pytest
import torch
from lookout_kernels.lora import (
    LoraMLPFunction,
    LoraWeights,
    lora_mlp,
    lora_mlp_reference,
    lora_o,
    lora_o_reference,
    lora_qkv,
    lora_qkv_reference,
    lora_weights_from_peft,
)
from lookout_kernels.nf4 import dequantize_nf4_reference
from lookout_kernels.rms_norm import norm_source, rms_norm, rms_norm_reference
from peft import LoraConfig, get_peft_model

from ._util import DEVICE, ON_GPU, REL_TOL, assert_rel, gpu_only, randn, saved_for_backward

# (tokens, hidden, intermediate, q out, kv out, rank). GPU: Llama-3.2-1B and 3B projections.
SHAPES = [(7, 64, 96, 64, 32, 4), (10, 128, 160, 128, 64, 8)] + gpu_only(
    (4096, 2048, 8192, 2048, 512, 16), (2048, 3072, 8192, 3072, 1024, 16)
)
# The fused path computes the LoRA product in the compute dtype (as Unsloth does) where PEFT uses fp32.
TOL = {torch.bfloat16: 2e-2, torch.float16: 4e-3, torch.float32: 1e-5}


def projection(out_f, in_f, rank, dtype, gen, four_bit=True) -> LoraWeights:
    w = randn(out_f, in_f, gen=gen, dtype=dtype, scale=in_f**-0.5)
    if four_bit:
        base, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    else:
        base, state = w, None
    # B is random (not PEFT's zero init) so that every gradient path carries signal
    a = randn(rank, in_f, gen=gen, scale=in_f**-0.5).requires_grad_()
    b = randn(out_f, rank, gen=gen, scale=rank**-0.5).requires_grad_()
    return LoraWeights(base, state, a, b, scaling=2.0)


def as_float64(p: LoraWeights) -> LoraWeights:
    """The same projection with every value exactly representable in float64."""
    w = dequantize_nf4_reference(p.base_weight, p.quant_state) if p.quant_state is not None else p.base_weight
    return LoraWeights(w.double(), None, p.lora_A.detach().double().requires_grad_(),
                       p.lora_B.detach().double().requires_grad_(), p.scaling)


def factor_grads(ps):
    return [t.grad for p in ps for t in (p.lora_A, p.lora_B)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_mlp_matches_reference(shape, dtype, gen):
    n, hid, inter, _, _, r = shape
    gate, up = projection(inter, hid, r, dtype, gen), projection(inter, hid, r, dtype, gen)
    down = projection(hid, inter, r, dtype, gen, four_bit=dtype != torch.float32)  # also a plain base
    x = randn(n, hid, gen=gen, dtype=dtype).requires_grad_()
    dy = randn(n, hid, gen=gen, dtype=dtype)
    y = lora_mlp(x, gate, up, down)
    y.backward(dy)

    ps64 = [as_float64(p) for p in (gate, up, down)]
    x64 = x.detach().double().requires_grad_()
    y64 = lora_mlp_reference(x64, *ps64)
    y64.backward(dy.double())
    tol = TOL[dtype]
    assert y.dtype == dtype
    assert_rel(y, y64, tol, "y")
    assert_rel(x.grad, x64.grad, tol, "dx")
    for i, (g, g64) in enumerate(zip(factor_grads((gate, up, down)), factor_grads(ps64), strict=True)):
        assert g.dtype == torch.float32  # the factors' own dtype
        assert_rel(g, g64, tol, f"factor grad {i}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_qkv_and_o_match_reference(shape, dtype, gen):
    n, hid, _, q_out, kv_out, r = shape
    q, k = projection(q_out, hid, r, dtype, gen), projection(kv_out, hid, r, dtype, gen)
    v = projection(kv_out, hid, r, dtype, gen, four_bit=False)
    o = projection(hid, q_out, r, dtype, gen)
    x = randn(2, n, hid, gen=gen, dtype=dtype).requires_grad_()  # [batch, tokens, hidden]
    grads_out = [randn(2, n, f, gen=gen, dtype=dtype) for f in (q_out, kv_out, kv_out)]
    outs = lora_qkv(x, q, k, v)
    attn = randn(2, n, q_out, gen=gen, dtype=dtype).requires_grad_()
    y = lora_o(attn, o)
    d_o = randn(*y.shape, gen=gen, dtype=dtype)
    torch.autograd.backward((*outs, y), (*grads_out, d_o))

    ps64 = [as_float64(p) for p in (q, k, v, o)]
    x64, attn64 = x.detach().double().requires_grad_(), attn.detach().double().requires_grad_()
    outs64 = lora_qkv_reference(x64, *ps64[:3])
    y64 = lora_o_reference(attn64, ps64[3])
    torch.autograd.backward((*outs64, y64), (*(g.double() for g in grads_out), d_o.double()))
    tol = TOL[dtype]
    for name, a, b in zip("QKV", outs, outs64, strict=True):
        assert_rel(a, b, tol, name)
    assert_rel(y, y64, tol, "O")
    assert_rel(x.grad, x64.grad, tol, "dx")
    assert_rel(attn.grad, attn64.grad, tol, "d attn")
    for i, (g, g64) in enumerate(zip(factor_grads((q, k, v, o)), factor_grads(ps64), strict=True)):
        assert_rel(g, g64, tol, f"factor grad {i}")


def test_manual_backward_math_without_kernels(gen):
    """The MLP Function's own backward (PyTorch ops instead of kernels) is right at a size the
    interpreter would be slow at."""
    gate, up, down = (projection(o, i, 8, torch.float32, gen, four_bit=False)
                      for o, i in ((320, 96), (320, 96), (96, 320)))
    x = randn(33, 96, gen=gen).requires_grad_()
    factors = [t for p in (gate, up, down) for t in (p.lora_A, p.lora_B)]
    y = LoraMLPFunction.apply(x, gate, up, down, False, torch.float32, *factors)
    dy = randn(*y.shape, gen=gen)
    y.backward(dy)
    ps64 = [as_float64(p) for p in (gate, up, down)]
    x64 = x.detach().double().requires_grad_()
    lora_mlp_reference(x64, *ps64).backward(dy.double())
    assert_rel(x.grad, x64.grad, 1e-5, "dx")
    for g, g64 in zip(factor_grads((gate, up, down)), factor_grads(ps64), strict=True):
        assert_rel(g, g64, 1e-5, "factor grad")


def test_mlp_saves_inputs_and_small_products_only(gen):
    n, hid, inter, r = 6, 64, 96, 4
    gate, up, down = projection(inter, hid, r, torch.bfloat16, gen), projection(inter, hid, r, torch.bfloat16, gen), \
        projection(hid, inter, r, torch.bfloat16, gen)
    x = randn(n, hid, gen=gen, dtype=torch.bfloat16).requires_grad_()
    with saved_for_backward() as saved:
        lora_mlp(x, gate, up, down)
    factors = sum(t.numel() * 2 for p in (gate, up, down) for t in (p.lora_A, p.lora_B))
    # x, gate and up pre-activations, three [tokens, r] products, the factors' casts to the compute dtype
    assert saved[0] == (n * hid + 2 * n * inter + 3 * n * r) * 2 + factors
    with saved_for_backward() as saved_ref:
        lora_mlp_reference(x, gate, up, down)
    assert saved_ref[0] > saved[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_blocks_after_an_rms_norm_keep_the_norm_input_not_its_output(shape, dtype, gen):
    """RMSNorm -> Q/K/V and RMSNorm -> MLP, as in a Llama layer: the LoRA blocks keep the norm's input
    and inverse RMS (kept by the norm anyway) instead of the normed activations, with the same gradients."""
    n, hid, inter, q_out, kv_out, r = shape
    q, k, v = (projection(o, hid, r, dtype, gen) for o in (q_out, kv_out, kv_out))
    gate, up, down = projection(inter, hid, r, dtype, gen), projection(inter, hid, r, dtype, gen), \
        projection(hid, inter, r, dtype, gen)
    w_attn, w_mlp = (1 + 0.1 * randn(hid, gen=gen, dtype=dtype) for _ in range(2))
    x = randn(2, n, hid, gen=gen, dtype=dtype).requires_grad_()
    normed = rms_norm(x, w_attn, 1e-5)
    assert norm_source(normed) is not None and norm_source(normed)[0].data_ptr() == x.data_ptr()
    outs = lora_qkv(normed, q, k, v)
    mid = x + outs[0][..., :hid] if q_out >= hid else x
    normed_mlp = rms_norm(mid, w_mlp, 1e-5)
    with saved_for_backward() as saved:
        y = lora_mlp(normed_mlp, gate, up, down)
    # the normed input is not among the MLP's saved tensors: x's rows, the norm weight and rstd are
    size = dtype.itemsize
    assert saved[0] == (2 * n * hid + 2 * 2 * n * inter + 3 * 2 * n * r + hid) * size + 2 * n * 4 + sum(
        t.numel() * size for p in (gate, up, down) for t in (p.lora_A, p.lora_B))
    grads_out = [randn(*t.shape, gen=gen, dtype=dtype) for t in (*outs, y)]
    torch.autograd.backward((*outs, y), grads_out)

    ps64 = [as_float64(p) for p in (q, k, v, gate, up, down)]
    x64 = x.detach().double().requires_grad_()
    outs64 = lora_qkv_reference(rms_norm_reference(x64, w_attn.double(), 1e-5), *ps64[:3])
    mid64 = x64 + outs64[0][..., :hid] if q_out >= hid else x64
    y64 = lora_mlp_reference(rms_norm_reference(mid64, w_mlp.double(), 1e-5), *ps64[3:])
    torch.autograd.backward((*outs64, y64), [g.double() for g in grads_out])
    tol = TOL[dtype]
    assert_rel(x.grad, x64.grad, tol, "dx")
    for i, (g, g64) in enumerate(zip(factor_grads((q, k, v, gate, up, down)), factor_grads(ps64), strict=True)):
        assert_rel(g, g64, tol, f"factor grad {i}")


def test_second_backward_through_the_mlp_is_a_clear_error(gen):
    gate, up, down = (projection(o, i, 4, torch.bfloat16, gen) for o, i in ((96, 64), (96, 64), (64, 96)))
    x = randn(3, 64, gen=gen, dtype=torch.bfloat16).requires_grad_()
    y = lora_mlp(x, gate, up, down).sum()
    y.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="can run only once"):
        y.backward()


def test_no_gradient_for_frozen_input_or_base(gen):
    gate, up, down = (projection(o, i, 4, torch.float32, gen, four_bit=False)
                      for o, i in ((96, 64), (96, 64), (64, 96)))
    x = randn(3, 64, gen=gen)  # does not require grad (e.g. the embedding output of a frozen model)
    lora_mlp(x, gate, up, down).sum().backward()
    assert x.grad is None and gate.base_weight.grad is None
    assert all(g is not None for g in factor_grads((gate, up, down)))


def test_trainable_base_weight_is_rejected(gen):
    p = projection(32, 64, 4, torch.float32, gen, four_bit=False)
    p.base_weight.requires_grad_()
    with pytest.raises(ValueError, match="frozen base"):
        lora_o(randn(2, 64, gen=gen), p)


# ---------------------------------------------------------------- PEFT bridge


class _Block(torch.nn.Module):
    def __init__(self, hid: int, out: int, dtype):
        super().__init__()
        self.q_proj = bnb.nn.Linear4bit(hid, out, bias=False, compute_dtype=dtype, compress_statistics=True,
                                        quant_type="nf4")
        self.o_proj = torch.nn.Linear(out, hid, bias=False, dtype=dtype)
        self.is_loaded_in_4bit = True  # what PEFT looks at to wrap Linear4bit layers


def peft_block(gen, dtype=torch.bfloat16, **lora_kwargs):
    hid, out = 64, 48
    block = _Block(hid, out, dtype)
    w = randn(out, hid, gen=gen, dtype=dtype, scale=0.1).cpu()
    block.q_proj.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=True)
    block.to(DEVICE)
    config = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "o_proj"], init_lora_weights=False)
    config.update(lora_kwargs)
    return get_peft_model(block, LoraConfig(**config)).base_model.model


@pytest.mark.parametrize("layer_name", ["q_proj", "o_proj"], ids=["Linear4bit", "nn.Linear"])
def test_peft_layer_forward_and_backward_reproduced(layer_name, gen):
    block = peft_block(gen)
    layer = getattr(block, layer_name)
    weights = lora_weights_from_peft(layer)
    assert weights is not None and (weights.quant_state is not None) == (layer_name == "q_proj")
    x = randn(5, layer.in_features, gen=gen, dtype=torch.bfloat16).requires_grad_()
    dy = randn(5, layer.out_features, gen=gen, dtype=torch.bfloat16)
    y = lora_o(x, weights)
    y.backward(dy)
    ours = [x.grad.clone(), layer.lora_A["default"].weight.grad.clone(), layer.lora_B["default"].weight.grad.clone()]
    x.grad = None
    layer.zero_grad()
    y_peft = layer(x)
    y_peft.backward(dy)
    theirs = [x.grad, layer.lora_A["default"].weight.grad, layer.lora_B["default"].weight.grad]
    assert_rel(y, y_peft, REL_TOL[torch.bfloat16], "y")
    for name, a, b in zip(("dx", "dA", "dB"), ours, theirs, strict=True):
        assert_rel(a, b, 2e-2, name)


@pytest.mark.filterwarnings("ignore:`lora_bias=True` was passed")
@pytest.mark.parametrize("case", ["dropout", "dora", "two-adapters", "disabled", "base-bias", "lora-bias"])
def test_peft_layers_the_fused_path_cannot_reproduce_fall_back(case, gen):
    kwargs = {"dropout": {"lora_dropout": 0.1}, "dora": {"use_dora": True},
              "lora-bias": {"lora_bias": True}}.get(case, {})
    block = peft_block(gen, **kwargs)
    layer = block.o_proj
    if case == "two-adapters":
        layer.update_layer("second", 4, lora_alpha=8, config=LoraConfig(r=4, lora_alpha=8))
        layer.set_adapter(["default", "second"])
    elif case == "disabled":
        layer.enable_adapters(False)
    elif case == "base-bias":
        layer.base_layer.bias = torch.nn.Parameter(torch.zeros(layer.out_features, device=DEVICE))
    assert lora_weights_from_peft(layer) is None
    assert lora_weights_from_peft(torch.nn.Linear(4, 4)) is None  # not a LoRA layer at all


def test_gpu_shapes_present_only_with_a_gpu():
    assert (len(SHAPES) > 2) == ON_GPU


def test_norm_source_is_withdrawn_after_an_in_place_change(gen):
    """A norm output (or its input) changed in place no longer equals weight * x * rstd, so the LoRA blocks
    must not stand the norm's input in for it. (With grad, autograd already forbids changing the output in
    place and checks the saved input's version; this guards the bookkeeping itself.)"""
    w = 1 + 0.1 * randn(64, gen=gen)
    x = randn(6, 64, gen=gen)
    with torch.no_grad():
        y = rms_norm(x, w, 1e-5)
        assert norm_source(y) is not None
        y.mul_(1.5)
        assert norm_source(y) is None
        y2 = rms_norm(x, w, 1e-5)
        x.add_(1.0)
        assert norm_source(y2) is None
    assert norm_source(x) is None  # not a norm output at all


@pytest.mark.parametrize("use_reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_norm_then_blocks_under_activation_checkpointing(use_reentrant, gen):
    """A checkpointed layer re-runs norm -> Q/K/V and norm -> MLP in backward: the recompute must save the
    same tensors (the norm's input in place of its output) and give the same gradients as no checkpointing."""
    from torch.utils.checkpoint import checkpoint

    hid, inter, r = 64, 96, 4
    q, k, v = (projection(o, hid, r, torch.float32, gen) for o in (64, 32, 32))
    gate, up, down = projection(inter, hid, r, torch.float32, gen), projection(inter, hid, r, torch.float32, gen), \
        projection(hid, inter, r, torch.float32, gen)
    w1, w2 = (1 + 0.1 * randn(hid, gen=gen) for _ in range(2))
    x0 = randn(2, 5, hid, gen=gen)

    def layer(x):
        qo, ko, vo = lora_qkv(rms_norm(x, w1, 1e-5), q, k, v)
        mid = x + qo + 0.5 * torch.cat((ko, vo), -1)
        return mid + lora_mlp(rms_norm(mid, w2, 1e-5), gate, up, down)

    ps = (q, k, v, gate, up, down)
    results = []
    for wrap in (False, True):
        for t in (t for p in ps for t in (p.lora_A, p.lora_B)):
            t.grad = None
        x = x0.clone().requires_grad_()
        y = checkpoint(layer, x, use_reentrant=use_reentrant) if wrap else layer(x)
        (y * y).sum().backward()
        results.append([x.grad.clone(), *(g.clone() for g in factor_grads(ps))])
    for a, b in zip(*results, strict=True):
        assert_rel(a, b, 1e-6, "checkpointed vs plain")
