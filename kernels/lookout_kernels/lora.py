"""Fused LoRA blocks with hand-written backward for a Llama layer on a frozen (usually NF4) base.

Each projection is y = x @ W.T + scaling * (x @ A.T) @ B.T with W frozen, A [r, in], B [out, r].
Compared with autograd through PEFT + bitsandbytes:
  * forward saves the inputs and small [tokens, r] products only; the MLP saves gate and up
    pre-activations and recomputes silu(gate) * up in backward (fused into the SwiGLU backward kernel,
    which writes its results over the buffers it read);
  * frozen 4-bit weights are dequantized again in backward rather than kept;
  * no gradient is ever formed for a frozen weight;
  * dX accumulates all projections' contributions in one buffer through addmm;
  * when the input is an RMSNorm output of this package (`rms_norm.norm_source`), the norm's input and
    inverse RMS, which the norm keeps anyway, stand in for it: the LoRA A gradients need x only as
    dyb.T @ x = ((dyb * rstd).T @ x_in) * w, so the normed input is freed after the forward
    (2 x hidden values per token and decoder layer, about 15% of a Llama layer's activations).
Matmuls run in the compute dtype (the autocast dtype when autocast is on, else x's dtype), the LoRA
factors cast to it, as Unsloth does; their gradients come back in the factors' own dtype (fp32 for PEFT).
Only plain LoRA qualifies: dropout 0, no bias, one active adapter, no DoRA or other variant. For
anything else `lora_weights_from_peft` returns None and the caller keeps PEFT's path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._common import autocast_dtype, use_triton
from .nf4 import dequantize_nf4, dequantize_nf4_reference
from .rms_norm import norm_source
from .swiglu import swiglu_backward_inplace, swiglu_forward

__all__ = ["LoraWeights", "lora_mlp", "lora_qkv", "lora_o", "lora_linear", "lora_weights_from_peft",
           "lora_mlp_reference", "lora_qkv_reference", "lora_o_reference", "lora_linear_reference"]


@dataclass
class LoraWeights:
    """One LoRA projection: a frozen base weight [out, in] (bnb NF4 data + quant_state, or a plain
    tensor with quant_state None), the trainable factors lora_A [r, in] and lora_B [out, r], and
    scaling (lora_alpha / r, or PEFT's rsLoRA value)."""

    base_weight: torch.Tensor
    quant_state: object | None
    lora_A: torch.Tensor
    lora_B: torch.Tensor
    scaling: float

    @property
    def out_features(self) -> int:
        return self.lora_B.shape[0]

    @property
    def in_features(self) -> int:
        return self.lora_A.shape[1]


def _check(p: LoraWeights, in_features: int, name: str) -> None:
    if p.lora_A.dim() != 2 or p.lora_B.dim() != 2 or p.lora_A.shape[0] != p.lora_B.shape[1]:
        raise ValueError(f"{name}: lora_A must be [r, in] and lora_B [out, r]; got "
                         f"{tuple(p.lora_A.shape)} and {tuple(p.lora_B.shape)}")
    if p.in_features != in_features:
        raise ValueError(f"{name}: expects {p.in_features} input features, got {in_features}")
    shape = tuple(p.quant_state.shape) if p.quant_state is not None else tuple(p.base_weight.shape)
    if shape != (p.out_features, p.in_features):
        raise ValueError(f"{name}: base weight {shape} does not match LoRA shapes ({p.out_features}, {p.in_features})")
    if p.quant_state is None and p.base_weight.requires_grad:
        raise ValueError(f"{name}: the base weight requires grad; the fused LoRA path only supports a frozen base")


def _base(p: LoraWeights, dtype: torch.dtype, use_kernels: bool) -> torch.Tensor:
    """The frozen weight [out, in] in the compute dtype; NF4 weights are dequantized afresh each call."""
    if p.quant_state is not None:
        w = dequantize_nf4(p.base_weight, p.quant_state) if use_kernels else \
            dequantize_nf4_reference(p.base_weight, p.quant_state)
    else:
        w = p.base_weight.detach()
    return w if w.dtype == dtype else w.to(dtype)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return autocast_dtype(x) or x.dtype


def _rows(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    return x2.to(dtype).contiguous()


def _input_to_save(x: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What backward keeps of the input: (x2,), or (norm input rows, norm weight, rstd) for a norm output."""
    src = norm_source(x)
    if src is None:
        return (x2,)
    x_in, weight, rstd = src
    return x_in.reshape(-1, x_in.shape[-1]), weight, rstd


def _xt_matmul(dyb: torch.Tensor, saved: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """dyb.T @ x2 ([r, in]) from what `_input_to_save` kept."""
    if len(saved) == 1:
        return dyb.t() @ saved[0]
    x_in, weight, rstd = saved
    scaled = (dyb.float() * rstd[:, None]).to(x_in.dtype)
    return (scaled.t() @ x_in).float().mul_(weight.float())


class LoraLinearsFunction(torch.autograd.Function):
    """Several LoRA projections of the same input (Q/K/V, or O alone).

    Saves x and each x @ A.T ([tokens, r]); backward dequantizes each W again."""

    @staticmethod
    def forward(ctx, x, projections, use_kernels, dtype, *factors):
        x2 = _rows(x, dtype)
        outs, xas = [], []
        casts = [f.to(dtype) for f in factors]  # kept for backward: cast once per forward, not again there
        for i, p in enumerate(projections):
            a, b = casts[2 * i], casts[2 * i + 1]
            y = x2 @ _base(p, dtype, use_kernels).t()
            xa = x2 @ a.t()
            y.addmm_(xa, b.t(), alpha=p.scaling)
            outs.append(y.view(*x.shape[:-1], y.shape[-1]))
            xas.append(xa)
        ctx.projections, ctx.use_kernels, ctx.dtype, ctx.x_shape, ctx.x_dtype = (
            projections, use_kernels, dtype, x.shape, x.dtype)
        kept = _input_to_save(x, x2)
        ctx.n_kept, ctx.factor_dtypes = len(kept), [f.dtype for f in factors]
        ctx.save_for_backward(*kept, *casts, *xas)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        n, k = len(ctx.projections), ctx.n_kept
        saved = ctx.saved_tensors
        kept, casts, xas = saved[:k], saved[k:k + 2 * n], saved[k + 2 * n:]
        dtype = ctx.dtype
        need_dx = ctx.needs_input_grad[0]
        dx = None
        dfactors: list[torch.Tensor | None] = []
        for i, p in enumerate(ctx.projections):
            a, b = casts[2 * i], casts[2 * i + 1]
            a_dtype, b_dtype = ctx.factor_dtypes[2 * i], ctx.factor_dtypes[2 * i + 1]
            dy = grads[i].reshape(-1, grads[i].shape[-1]).to(dtype)
            dyb = dy @ b  # [tokens, r]
            if need_dx:
                w = _base(p, dtype, ctx.use_kernels)
                if dx is None:
                    dx = dy @ w
                else:
                    dx.addmm_(dy, w)
                del w
                dx.addmm_(dyb, a, alpha=p.scaling)
            need_a, need_b = ctx.needs_input_grad[4 + 2 * i], ctx.needs_input_grad[5 + 2 * i]
            dfactors.append(_xt_matmul(dyb, kept).mul_(p.scaling).to(a_dtype) if need_a else None)
            dfactors.append((dy.t() @ xas[i]).mul_(p.scaling).to(b_dtype) if need_b else None)
        if dx is not None:
            dx = dx.view(ctx.x_shape).to(ctx.x_dtype)
        return (dx, None, None, None, *dfactors)


class LoraMLPFunction(torch.autograd.Function):
    """down(silu(gate(x)) * up(x)) with LoRA on all three.

    Saves x, the gate and up pre-activations e and g, and the [tokens, r] products x@A_gate.T,
    x@A_up.T, h@A_down.T. Backward: dh from down, then one kernel turns (dh, e, g) into
    (h, de, dg) in those same buffers, then dx from gate and up."""

    @staticmethod
    def forward(ctx, x, gate, up, down, use_kernels, dtype, g_a, g_b, u_a, u_b, d_a, d_b):
        x2 = _rows(x, dtype)
        ga, gb, ua, ub, da, db = (t.to(dtype) for t in (g_a, g_b, u_a, u_b, d_a, d_b))
        e = x2 @ _base(gate, dtype, use_kernels).t()
        xa_g = x2 @ ga.t()
        e.addmm_(xa_g, gb.t(), alpha=gate.scaling)
        g = x2 @ _base(up, dtype, use_kernels).t()
        xa_u = x2 @ ua.t()
        g.addmm_(xa_u, ub.t(), alpha=up.scaling)
        h = swiglu_forward(e, g) if use_kernels else torch.nn.functional.silu(e) * g
        out = h @ _base(down, dtype, use_kernels).t()
        ha_d = h @ da.t()
        out.addmm_(ha_d, db.t(), alpha=down.scaling)
        del h  # recomputed in backward
        ctx.lora = (gate, up, down)
        ctx.use_kernels, ctx.dtype, ctx.x_shape, ctx.x_dtype = use_kernels, dtype, x.shape, x.dtype
        ctx.consumed = False
        kept = _input_to_save(x, x2)
        ctx.n_kept = len(kept)
        ctx.factor_dtypes = [t.dtype for t in (g_a, g_b, u_a, u_b, d_a, d_b)]
        ctx.save_for_backward(*kept, e, g, xa_g, xa_u, ha_d, ga, gb, ua, ub, da, db)  # the casts: no recast
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, dout):
        if ctx.consumed:
            raise RuntimeError("lora_mlp's backward overwrites its saved activations and can run only once "
                               "(retain_graph=True with a second backward is not supported)")
        ctx.consumed = True
        saved = ctx.saved_tensors  # once: checkpointing's unpack hooks allow one unpack
        kept, rest = saved[:ctx.n_kept], saved[ctx.n_kept:]
        e, g, xa_g, xa_u, ha_d, ga, gb, ua, ub, da, db = rest
        ga_t, gb_t, ua_t, ub_t, da_t, db_t = ctx.factor_dtypes
        gate, up, down = ctx.lora
        dtype, use_kernels = ctx.dtype, ctx.use_kernels
        need = ctx.needs_input_grad
        dy = dout.reshape(-1, dout.shape[-1]).to(dtype)

        # through down: dh = dy @ W_down + s (dy @ B_down) @ A_down
        dyb = dy @ db
        dh = dy @ _base(down, dtype, use_kernels)
        dh.addmm_(dyb, da, alpha=down.scaling)

        # through SwiGLU: afterwards dh holds h, e holds d e, g holds d g
        if use_kernels:
            swiglu_backward_inplace(dh, e, g)
            h, de, dg = dh, e, g
        else:
            sig = torch.sigmoid(e.float())
            ef, gf, dhf = e.float(), g.float(), dh.float()
            h = (ef * sig * gf).to(dtype)
            de = (dhf * gf * sig * (1 + ef * (1 - sig))).to(dtype)
            dg = (dhf * ef * sig).to(dtype)
        d_da = (dyb.t() @ h).mul_(down.scaling).to(da_t) if need[10] else None
        d_db = (dy.t() @ ha_d).mul_(down.scaling).to(db_t) if need[11] else None
        del h, dh

        # through gate and up
        deb, dgb = de @ gb, dg @ ub
        d_ga = _xt_matmul(deb, kept).mul_(gate.scaling).to(ga_t) if need[6] else None
        d_gb = (de.t() @ xa_g).mul_(gate.scaling).to(gb_t) if need[7] else None
        d_ua = _xt_matmul(dgb, kept).mul_(up.scaling).to(ua_t) if need[8] else None
        d_ub = (dg.t() @ xa_u).mul_(up.scaling).to(ub_t) if need[9] else None
        dx = None
        if need[0]:
            dx = de @ _base(gate, dtype, use_kernels)
            dx.addmm_(dg, _base(up, dtype, use_kernels))
            dx.addmm_(deb, ga, alpha=gate.scaling)
            dx.addmm_(dgb, ua, alpha=up.scaling)
            dx = dx.view(ctx.x_shape).to(ctx.x_dtype)
        return dx, None, None, None, None, None, d_ga, d_gb, d_ua, d_ub, d_da, d_db


# ---------------------------------------------------------------- references (plain autograd)


def lora_linear_reference(x: torch.Tensor, p: LoraWeights) -> torch.Tensor:
    """PEFT's computation: dequantized base matmul, plus the LoRA path in the factors' dtype cast back."""
    w = dequantize_nf4_reference(p.base_weight, p.quant_state) if p.quant_state is not None else p.base_weight
    result = torch.nn.functional.linear(x, w.to(x.dtype).detach())
    lora = torch.nn.functional.linear(torch.nn.functional.linear(x.to(p.lora_A.dtype), p.lora_A), p.lora_B)
    return result + (lora * p.scaling).to(result.dtype)


def lora_qkv_reference(x, q: LoraWeights, k: LoraWeights, v: LoraWeights):
    return lora_linear_reference(x, q), lora_linear_reference(x, k), lora_linear_reference(x, v)


def lora_o_reference(x, o: LoraWeights):
    return lora_linear_reference(x, o)


def lora_mlp_reference(x, gate: LoraWeights, up: LoraWeights, down: LoraWeights):
    h = torch.nn.functional.silu(lora_linear_reference(x, gate)) * lora_linear_reference(x, up)
    return lora_linear_reference(h, down)


# ---------------------------------------------------------------- public entry points


def _factors(ps) -> list[torch.Tensor]:
    return [t for p in ps for t in (p.lora_A, p.lora_B)]


def lora_linear(x: torch.Tensor, *projections: LoraWeights) -> tuple[torch.Tensor, ...]:
    """Any number of LoRA projections of one input, fused backward (dX accumulated once)."""
    for i, p in enumerate(projections):
        _check(p, x.shape[-1], f"projection {i}")
    dtype = _compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):  # matmul dtypes are chosen here, as autocast would
        return LoraLinearsFunction.apply(x, tuple(projections), use_triton(x), dtype, *_factors(projections))


def lora_qkv(x: torch.Tensor, q: LoraWeights, k: LoraWeights, v: LoraWeights):
    """(Q, K, V) projections of the attention input, each with its LoRA; x [..., hidden]."""
    if not use_triton(x):
        return lora_qkv_reference(x, q, k, v)
    return lora_linear(x, q, k, v)


def lora_o(x: torch.Tensor, o: LoraWeights) -> torch.Tensor:
    """The attention output projection with its LoRA."""
    if not use_triton(x):
        return lora_o_reference(x, o)
    return lora_linear(x, o)[0]


def lora_mlp(x: torch.Tensor, gate: LoraWeights, up: LoraWeights, down: LoraWeights) -> torch.Tensor:
    """The Llama MLP down(silu(gate(x)) * up(x)) with LoRA on all three projections."""
    _check(gate, x.shape[-1], "gate")
    _check(up, x.shape[-1], "up")
    _check(down, gate.out_features, "down")
    if gate.out_features != up.out_features:
        raise ValueError(f"gate ({gate.out_features}) and up ({up.out_features}) widths differ")
    if not use_triton(x):
        return lora_mlp_reference(x, gate, up, down)
    dtype = _compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):  # matmul dtypes are chosen here, as autocast would
        return LoraMLPFunction.apply(x, gate, up, down, True, dtype, *_factors((gate, up, down)))


# ---------------------------------------------------------------- PEFT bridge


def lora_weights_from_peft(module: torch.nn.Module) -> LoraWeights | None:
    """LoraWeights for a PEFT LoRA layer over a bitsandbytes Linear4bit (NF4) or an nn.Linear, or None
    when the fused path cannot reproduce it: adapters disabled or merged, not exactly one active adapter,
    dropout > 0, DoRA or another LoRA variant, a bias (base or LoRA), a trainable base, fan_in_fan_out,
    FP4 or CPU-repacked 4-bit weights. Call it per forward: it reads the module's current state."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return None
    if not isinstance(module, LoraLayer):
        return None
    if module.disable_adapters or module.merged or getattr(module, "fan_in_fan_out", False):
        return None
    active = module.active_adapters
    if len(active) != 1 or active[0] not in module.lora_A:
        return None
    name = active[0]
    if module.use_dora.get(name, False) or name in getattr(module, "lora_variant", {}):
        return None
    lora_a, lora_b = module.lora_A[name], module.lora_B[name]
    if not (isinstance(lora_a, torch.nn.Linear) and isinstance(lora_b, torch.nn.Linear)):
        return None
    if lora_a.bias is not None or lora_b.bias is not None:
        return None
    dropout = module.lora_dropout[name]
    if not isinstance(dropout, torch.nn.Identity) and not (isinstance(dropout, torch.nn.Dropout) and dropout.p == 0):
        return None
    base = module.get_base_layer()
    if getattr(base, "bias", None) is not None:
        return None
    weight = base.weight
    quant_state = getattr(weight, "quant_state", None)
    if quant_state is not None:  # bitsandbytes Params4bit
        if getattr(quant_state, "quant_type", None) != "nf4" or getattr(quant_state, "packing_format_for_cpu", False):
            return None
        return LoraWeights(weight.data, quant_state, lora_a.weight, lora_b.weight, float(module.scaling[name]))
    if type(base) is not torch.nn.Linear or weight.requires_grad:
        return None
    return LoraWeights(weight, None, lora_a.weight, lora_b.weight, float(module.scaling[name]))
