"""NF4 dequantization of bitsandbytes 4-bit weights, bit for bit equal to
`bitsandbytes.functional.dequantize_4bit` (bitsandbytes 0.50).

Layout (bnb `quantize_4bit`, quant_type "nf4"): the weight of `quant_state.shape` is flattened and
packed two values a byte, the first value in the high nibble, as uint8 [ceil(n/2), 1] (or another
`quant_storage` dtype holding the same bytes). Every `blocksize` (64) values share one absmax.
With double quantization (`quant_state.nested`), the absmax are themselves uint8 codes: absmax =
state2.code[q] * state2.absmax[i // state2.blocksize] + offset, in fp32, in that order (bnb runs the
product and the add as two kernels, so the kernel here must not fuse them into an FMA).
Each value is NF4_TABLE[nibble] * absmax in fp32, rounded to `quant_state.dtype` (round to nearest even).

One launch, double-quantized absmax included: each program turns 1024 consecutive packed bytes into
2048 values (`launch_for`), written into `out` when given (a buffer reused across layers and steps).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import interpret_mode
from ._common import launchable, use_triton

__all__ = ["dequantize_nf4", "NF4Launch", "launch_for", "dequantize_nf4_reference", "quantize_nf4", "NF4_TABLE", "NF4QuantState"]

# bitsandbytes.functional.get_4bit_type("nf4"): quantiles of N(0, 1), scaled to [-1, 1].
NF4_TABLE = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)



@dataclass(frozen=True)
class NF4Launch:
    """How the dequantization kernel is launched: `flat` 1-D blocks (or absmax-block rows), packed bytes
    per program, warps per program. `launch_for` picks one by size; benchmarks sweep the others."""

    flat: bool = True
    block_bytes: int = 1024
    num_warps: int = 2


def launch_for(n_bytes: int) -> NF4Launch:
    """The launch settings for a weight of `n_bytes` packed bytes. Measured on the H200
    (`bench/kernels.py --nf4-sweep`, 2026-11-29): 1-D blocks of 1024 bytes with 2 warps were the fastest
    for a Llama-3.2-1B MLP weight (8 MiB packed) and for a 128 MiB one; on a 2 MiB Q/O weight 4 warps were
    (4.7 us against 5.3). Below that one launch's ramp-up dominates whatever the setting."""
    if n_bytes <= 2**22:
        return NF4Launch(num_warps=4)
    return NF4Launch()


@functools.cache
def _nf4_table(device: torch.device) -> torch.Tensor:
    return torch.tensor(NF4_TABLE, dtype=torch.float32, device=device)


@triton.jit
def _nf4_dequant_kernel(
    OUT, PACKED, ABSMAX, CODE, ABSMAX2, CODE2, OFFSET, n_out, n_bytes,
    HALF_BS: tl.constexpr, ROWS: tl.constexpr, BLOCKSIZE2: tl.constexpr, NESTED: tl.constexpr,
    OUT_KIND: tl.constexpr, PAIRED: tl.constexpr, BF16_BY_HAND: tl.constexpr, FLAT: tl.constexpr,
):
    if FLAT:
        # A program covers ROWS * HALF_BS consecutive packed bytes as one 1-D block; each byte gathers
        # its block's absmax (neighbours share it, so the gathers hit L1): wider contiguous accesses.
        byte = tl.program_id(0).to(tl.int64) * (ROWS * HALF_BS) + tl.arange(0, ROWS * HALF_BS)
        blk = byte // HALF_BS
        bmask = byte < n_bytes
        rmask = bmask
    else:
        # A program covers ROWS absmax blocks of HALF_BS packed bytes each: one absmax load per block
        # row, broadcast along it, instead of one gather per byte.
        blk = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
        byte = blk[:, None] * HALF_BS + tl.arange(0, HALF_BS)[None, :]
        bmask = byte < n_bytes
        rmask = blk * HALF_BS < n_bytes
    packed = tl.load(PACKED + byte, mask=bmask, other=0).to(tl.int32)
    v_hi = tl.load(CODE + (packed >> 4))  # 16-entry table: stays in L1
    v_lo = tl.load(CODE + (packed & 15))
    if NESTED:
        q = tl.load(ABSMAX + blk, mask=rmask, other=0).to(tl.int32)
        absmax = tl.load(CODE2 + q) * tl.load(ABSMAX2 + blk // BLOCKSIZE2, mask=rmask, other=0.0)
        absmax = absmax + tl.load(OFFSET)  # a separate rounding, as in bnb: launched without FMA fusion
    else:
        absmax = tl.load(ABSMAX + blk, mask=rmask, other=0.0)
    if FLAT:
        scale = absmax
    else:
        scale = absmax[:, None]
    hi = v_hi * scale  # value 2*byte (high nibble comes first)
    lo = v_lo * scale  # value 2*byte + 1
    # Bit patterns of the rounded outputs, as unsigned ints.
    if OUT_KIND == 0:  # fp32
        hi_bits = hi.to(tl.uint32, bitcast=True)
        lo_bits = lo.to(tl.uint32, bitcast=True)
    elif OUT_KIND == 1:  # fp16 (round to nearest even)
        hi_bits = hi.to(tl.float16).to(tl.uint16, bitcast=True).to(tl.uint32)
        lo_bits = lo.to(tl.float16).to(tl.uint16, bitcast=True).to(tl.uint32)
    elif BF16_BY_HAND:
        # Triton's CPU interpreter truncates fp32 -> bf16; round to nearest even by hand there so the
        # interpreter produces the GPU's bits.
        hb = hi.to(tl.uint32, bitcast=True)
        lb = lo.to(tl.uint32, bitcast=True)
        hi_bits = (hb + 0x7FFF + ((hb >> 16) & 1)) >> 16
        lo_bits = (lb + 0x7FFF + ((lb >> 16) & 1)) >> 16
    else:  # bf16
        hi_bits = hi.to(tl.bfloat16).to(tl.uint16, bitcast=True).to(tl.uint32)
        lo_bits = lo.to(tl.bfloat16).to(tl.uint16, bitcast=True).to(tl.uint32)
    if PAIRED:
        # Both values of a byte are adjacent in the output: store them as one little-endian word
        # (OUT is the int32 view for 16-bit outputs, the int64 view for fp32), so a program's stores
        # are as contiguous and wide as its loads.
        if OUT_KIND == 0:
            word = hi_bits.to(tl.uint64) | (lo_bits.to(tl.uint64) << 32)
            tl.store(OUT + byte, word.to(tl.int64, bitcast=True), mask=bmask)
        else:
            word = hi_bits | (lo_bits << 16)
            tl.store(OUT + byte, word.to(tl.int32, bitcast=True), mask=bmask)
    else:
        # odd element count: element-wise stores into the int32 (fp32) or int16 (16-bit) view
        if OUT_KIND == 0:
            hv = hi_bits.to(tl.int32, bitcast=True)
            lv = lo_bits.to(tl.int32, bitcast=True)
        else:
            hv = hi_bits.to(tl.uint16).to(tl.int16, bitcast=True)
            lv = lo_bits.to(tl.uint16).to(tl.int16, bitcast=True)
        tl.store(OUT + 2 * byte, hv, mask=bmask & (2 * byte < n_out))
        tl.store(OUT + 2 * byte + 1, lv, mask=bmask & (2 * byte + 1 < n_out))


def _validate(weight_data: torch.Tensor, quant_state) -> tuple[int, torch.Size]:
    if quant_state is None:
        raise ValueError("dequantize_nf4 needs the weight's quant_state (bitsandbytes QuantState)")
    if getattr(quant_state, "quant_type", "nf4") != "nf4":
        raise ValueError(f"only nf4 is supported, got quant_type {quant_state.quant_type!r}")
    if getattr(quant_state, "packing_format_for_cpu", False):
        raise ValueError("weight was repacked by bitsandbytes for CPU inference; dequantize it with bitsandbytes")
    shape = torch.Size(quant_state.shape)
    n = shape.numel()
    if weight_data.numel() * weight_data.element_size() != (n + 1) // 2:
        raise ValueError(
            f"packed weight holds {weight_data.numel() * weight_data.element_size()} bytes, "
            f"expected {(n + 1) // 2} for shape {tuple(shape)}"
        )
    bs = quant_state.blocksize
    if bs < 2 or bs & (bs - 1):
        raise ValueError(f"invalid blocksize {bs}: bitsandbytes uses powers of two from 32 to 4096")
    if quant_state.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported output dtype {quant_state.dtype}")
    return n, shape


def dequantize_nf4(weight_data: torch.Tensor, quant_state, out: torch.Tensor | None = None, *,
                   launch: NF4Launch | None = None) -> torch.Tensor:
    """Dequantize a bitsandbytes NF4 weight (Params4bit data + QuantState) into `out` (allocated when
    None; must be contiguous with quant_state's shape and dtype). Same bits as bnb's dequantize_4bit.
    `launch` overrides the kernel's launch settings (`launch_for(bytes)` otherwise)."""
    n, shape = _validate(weight_data, quant_state)
    if out is not None and (out.shape != shape or out.dtype != quant_state.dtype or not out.is_contiguous()):
        raise ValueError(
            f"out must be a contiguous {quant_state.dtype} tensor of shape {tuple(shape)}; "
            f"got {out.dtype} {tuple(out.shape)} contiguous={out.is_contiguous()}"
        )
    if not use_triton(weight_data):
        ref = dequantize_nf4_reference(weight_data, quant_state)
        if out is None:
            return ref
        out.copy_(ref)
        result = out
    else:
        if out is None:
            out = torch.empty(shape, dtype=quant_state.dtype, device=weight_data.device)
        packed = weight_data.contiguous().view(torch.uint8).reshape(-1)
        dev = packed.device
        nested = bool(getattr(quant_state, "nested", False))
        if nested:
            s2 = quant_state.state2
            absmax = quant_state.absmax.contiguous()
            absmax2, code2 = s2.absmax.float().contiguous(), s2.code.float().contiguous()
            offset = torch.as_tensor(quant_state.offset, dtype=torch.float32, device=dev).reshape(1)
            blocksize2 = s2.blocksize
        else:
            absmax = quant_state.absmax.float().contiguous()
            absmax2 = code2 = offset = absmax  # unused
            blocksize2 = 1
        kind = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}[out.dtype]
        word = torch.int64 if kind == 0 else torch.int32
        paired = n % 2 == 0 and out.data_ptr() % word.itemsize == 0
        target = out.view(-1).view(word if paired else (torch.int32 if kind == 0 else torch.int16))
        half_bs = quant_state.blocksize // 2
        cfg = launch or launch_for(packed.numel())
        if cfg.block_bytes < 1 or cfg.block_bytes & (cfg.block_bytes - 1):
            raise ValueError(f"block_bytes must be a power of two, got {cfg.block_bytes}")
        rows = max(1, cfg.block_bytes // half_bs)
        if n:
            launchable(_nf4_dequant_kernel)[(triton.cdiv(triton.cdiv(packed.numel(), half_bs), rows),)](
                target, packed, absmax, _nf4_table(dev), absmax2, code2, offset, n, packed.numel(),
                HALF_BS=half_bs, ROWS=rows, BLOCKSIZE2=blocksize2, NESTED=nested, OUT_KIND=kind, PAIRED=paired,
                BF16_BY_HAND=interpret_mode(), FLAT=cfg.flat, num_warps=cfg.num_warps, enable_fp_fusion=False,
            )
        result = out
    # bnb's backward-compatibility rule: data packed in the transposed [1, n/2] form comes back transposed
    if weight_data.dim() == 2 and weight_data.shape[0] == 1:
        return result.t()
    return result


def _nested_absmax(quant_state) -> torch.Tensor:
    s2 = quant_state.state2
    q = quant_state.absmax.reshape(-1).long()
    idx = torch.arange(q.numel(), device=q.device) // s2.blocksize
    absmax = s2.code.float()[q] * s2.absmax.float()[idx]
    return absmax + quant_state.offset.float()


def dequantize_nf4_reference(weight_data: torch.Tensor, quant_state) -> torch.Tensor:
    """The same computation in plain PyTorch ops (the layout spelled out)."""
    n, shape = _validate(weight_data, quant_state)
    packed = weight_data.contiguous().view(torch.uint8).reshape(-1)
    nibbles = torch.stack((packed >> 4, packed & 15), dim=-1).reshape(-1)[:n].long()
    absmax = _nested_absmax(quant_state) if getattr(quant_state, "nested", False) else quant_state.absmax.float()
    per_value = absmax.reshape(-1).repeat_interleave(quant_state.blocksize)[:n]
    vals = _nf4_table(packed.device)[nibbles] * per_value
    return vals.to(quant_state.dtype).reshape(shape)


@dataclass
class NF4QuantState:
    """The fields of bitsandbytes' QuantState that dequantization reads, for weights quantized here
    (machines without bitsandbytes, e.g. for benchmarks)."""

    absmax: torch.Tensor
    shape: torch.Size
    code: torch.Tensor
    blocksize: int
    dtype: torch.dtype
    quant_type: str = "nf4"
    offset: torch.Tensor | None = None
    state2: NF4QuantState | None = None

    @property
    def nested(self) -> bool:
        return self.state2 is not None


def quantize_nf4(w: torch.Tensor, blocksize: int = 64, compress_statistics: bool = True,
                 blocksize2: int = 256) -> tuple[torch.Tensor, NF4QuantState]:
    """Quantize to bitsandbytes' NF4 layout (packed uint8 [ceil(n/2), 1], fp32 or double-quantized
    absmax). Values are nearest-NF4-code like bnb's, but the nested absmax use a linear 8-bit code, so
    the bytes may differ from bnb's quantizer: use bnb where it is installed."""
    flat = w.reshape(-1).float()
    n = flat.numel()
    n_blocks = triton.cdiv(n, blocksize)
    padded = torch.nn.functional.pad(flat, (0, n_blocks * blocksize - n))
    absmax = padded.view(n_blocks, blocksize).abs().amax(1)
    normed = (padded.view(n_blocks, blocksize) / absmax.clamp_min(1e-12)[:, None]).reshape(-1)[:n]
    table = _nf4_table(w.device)
    mid = (table[1:] + table[:-1]) / 2
    idx = torch.bucketize(normed, mid).to(torch.uint8)
    if n % 2:
        idx = torch.cat([idx, idx.new_zeros(1)])
    packed = ((idx[0::2] << 4) | idx[1::2]).reshape(-1, 1)
    state2 = offset = None
    qabsmax: torch.Tensor = absmax
    if compress_statistics:
        offset = absmax.mean()
        centred = absmax - offset
        nb2 = triton.cdiv(n_blocks, blocksize2)
        c_pad = torch.nn.functional.pad(centred, (0, nb2 * blocksize2 - n_blocks)).view(nb2, blocksize2)
        absmax2 = c_pad.abs().amax(1).clamp_min(1e-12)
        code2 = torch.linspace(-1.0, 1.0, 256, device=w.device)
        q = torch.round((c_pad / absmax2[:, None] + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
        qabsmax = q.reshape(-1)[:n_blocks]
        state2 = NF4QuantState(absmax=absmax2, shape=torch.Size([n_blocks]), code=code2, blocksize=blocksize2,
                               dtype=torch.float32, quant_type="dynamic")
    return packed, NF4QuantState(absmax=qabsmax, shape=w.shape, code=table.clone(), blocksize=blocksize,
                                 dtype=w.dtype, offset=offset, state2=state2)
