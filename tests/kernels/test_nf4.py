"""NF4 dequantization must give bitsandbytes' dequantize_4bit bits exactly (torch.equal, not close)."""

from __future__ import annotations

import bitsandbytes as bnb
import bitsandbytes.backends.default.ops as bnb_torch_ops
import bitsandbytes.functional as bnbf
import pytest
import torch
from bitsandbytes.backends.utils import _get_4bit_code
from lookout_kernels.nf4 import NF4Launch, dequantize_nf4, dequantize_nf4_reference, launch_for, quantize_nf4

from ._util import DEVICE, DTYPES, gpu_only, randn

# Weight shapes [out, in]: odd element counts (7x9 leaves half a byte), fewer values than one absmax
# block; GPU: the Llama-3.2-1B/3B projections.
SHAPES = [(64, 32), (33, 64), (7, 9), (1, 130), (96, 40)] + gpu_only(
    (8192, 2048), (2048, 8192), (512, 2048), (3072, 3072), (1024, 3072), (8192, 3072)
)


def bnb_dequantize(packed, state) -> torch.Tensor:
    """bitsandbytes' own dequantization: `dequantize_4bit` (its CUDA kernel on the GPU).

    On the CPU, bnb 0.50.2's C++ kernel indexes absmax per row and is wrong when a row is not a whole
    number of blocks (its output then disagrees with bnb's own quantizer, see the round-trip test);
    there bnb's PyTorch implementation of the same op (its 'default' backend, which bnb also uses for
    odd shapes and which matches its CUDA kernel) is the reference."""
    # bnb's PyTorch implementation is torch.compile'd; compiling it per shape costs seconds and changes
    # nothing it computes
    with torch._dynamo.config.patch(disable=True):
        if packed.is_cuda or state.shape[-1] % state.blocksize == 0:
            return bnbf.dequantize_4bit(packed, state, quant_type="nf4")
        absmax = state.absmax
        if state.nested:
            absmax = bnbf.dequantize_blockwise(state.absmax, state.state2) + state.offset
        return bnb_torch_ops._dequantize_4bit_compute(
            packed.view(torch.uint8).reshape(-1), absmax.float(), _get_4bit_code("nf4", packed.device),
            state.blocksize, state.shape, state.dtype)


@pytest.mark.parametrize("nested", [True, False], ids=["double-quant", "fp32-absmax"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bit_exact_against_bitsandbytes(shape, dtype, nested, gen):
    w = randn(*shape, gen=gen, dtype=dtype, scale=0.05)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=nested, quant_type="nf4")
    expected = bnb_dequantize(packed, state)
    got = dequantize_nf4(packed, state)  # poisoned fresh buffer (conftest): every value must be written
    assert got.dtype == dtype and got.shape == shape
    assert torch.equal(got, expected)
    assert torch.equal(dequantize_nf4_reference(packed, state), expected)


LAUNCHES = [NF4Launch(flat=False, block_bytes=64, num_warps=1), NF4Launch(flat=True, block_bytes=128, num_warps=2),
            NF4Launch(flat=True, block_bytes=16, num_warps=1)] + gpu_only(
    NF4Launch(flat=True, block_bytes=4096, num_warps=8), NF4Launch(flat=False, block_bytes=8192, num_warps=16))


@pytest.mark.parametrize("launch", LAUNCHES, ids=lambda c: f"{'flat' if c.flat else 'rows'}{c.block_bytes}w{c.num_warps}")
@pytest.mark.parametrize("shape", [(33, 64), (7, 9), (96, 40)] + gpu_only((8192, 2048), (513, 2048)), ids=str)
def test_every_launch_setting_is_bit_exact(shape, launch, gen):
    """The size heuristic may pick any of these; each layout (1-D blocks or absmax rows, blocks smaller
    than an absmax block, ragged tails) must give bitsandbytes' bits."""
    w = randn(*shape, gen=gen, dtype=torch.bfloat16, scale=0.05)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    assert torch.equal(dequantize_nf4(packed, state, launch=launch), bnb_dequantize(packed, state))


def test_launch_heuristic_and_bad_block_size(gen):
    for n_bytes in (1, 1000, 2**22, 2**27):
        cfg = launch_for(n_bytes)
        assert cfg.block_bytes & (cfg.block_bytes - 1) == 0 and cfg.num_warps in (1, 2, 4, 8, 16)
    packed, state = bnbf.quantize_4bit(randn(8, 64, gen=gen, dtype=torch.bfloat16), quant_type="nf4")
    with pytest.raises(ValueError, match="power of two"):
        dequantize_nf4(packed, state, launch=NF4Launch(block_bytes=96))


@pytest.mark.parametrize("shape", [(64, 32), (80, 96), (33, 64)], ids=str)
def test_round_trip_error_is_nf4_sized(shape, gen):
    """Independent of any dequantizer: bnb's quantizer's data comes back within NF4's error."""
    w = randn(*shape, gen=gen, dtype=torch.bfloat16)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    back = dequantize_nf4(packed, state).float()
    assert ((back - w.float()).norm() / w.float().norm()).item() < 0.12


@pytest.mark.parametrize("blocksize", [32, 128, 256])
def test_other_blocksizes_are_bit_exact(blocksize, gen):
    w = randn(40, 96, gen=gen, dtype=torch.bfloat16)
    packed, state = bnbf.quantize_4bit(w, blocksize=blocksize, compress_statistics=True, quant_type="nf4")
    assert torch.equal(dequantize_nf4(packed, state), bnb_dequantize(packed, state))


def test_reusable_output_buffer_is_filled_in_place(gen):
    shape = (48, 64)
    out = torch.full(shape, float("nan"), dtype=torch.bfloat16, device=DEVICE)
    for _ in range(2):  # two different weights through the same buffer
        packed, state = bnbf.quantize_4bit(randn(*shape, gen=gen, dtype=torch.bfloat16), compress_statistics=True,
                                           quant_type="nf4")
        result = dequantize_nf4(packed, state, out=out)
        assert result.data_ptr() == out.data_ptr()
        assert torch.equal(out, bnb_dequantize(packed, state))


def test_wrong_output_buffer_is_rejected(gen):
    packed, state = bnbf.quantize_4bit(randn(16, 64, gen=gen, dtype=torch.bfloat16), quant_type="nf4")
    with pytest.raises(ValueError, match="out must be"):
        dequantize_nf4(packed, state, out=torch.empty(16, 64, dtype=torch.float16, device=DEVICE))
    with pytest.raises(ValueError, match="out must be"):
        dequantize_nf4(packed, state, out=torch.empty(64, 16, dtype=torch.bfloat16, device=DEVICE))


def test_fp4_and_missing_state_are_rejected(gen):
    packed, state = bnbf.quantize_4bit(randn(16, 64, gen=gen), quant_type="fp4")
    with pytest.raises(ValueError, match="only nf4"):
        dequantize_nf4(packed, state)
    with pytest.raises(ValueError, match="quant_state"):
        dequantize_nf4(packed, None)


def test_weights_of_a_real_linear4bit_layer(gen):
    """Params4bit data + quant_state exactly as a bnb Linear4bit holds them (double quant, bf16 compute)."""
    layer = bnb.nn.Linear4bit(96, 80, bias=False, compute_dtype=torch.bfloat16, compress_statistics=True,
                              quant_type="nf4")
    w = randn(80, 96, gen=gen, dtype=torch.bfloat16, scale=0.02).cpu()
    layer.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=True).to(DEVICE)
    data, state = layer.weight.data, layer.weight.quant_state
    assert state.nested
    assert torch.equal(dequantize_nf4(data, state), bnb_dequantize(data, state))


def test_bf16_storage_dtype_holds_the_same_bytes(gen):
    """FSDP setups store the packed bytes in a bf16 tensor (quant_storage); same values come out."""
    w = randn(32, 64, gen=gen, dtype=torch.bfloat16)
    packed, state = bnbf.quantize_4bit(w, compress_statistics=True, quant_type="nf4", quant_storage=torch.bfloat16)
    assert packed.dtype == torch.bfloat16
    assert torch.equal(dequantize_nf4(packed, state), bnb_dequantize(packed, state))


@pytest.mark.parametrize("nested", [True, False])
def test_own_quantizer_writes_the_bitsandbytes_layout(nested, gen):
    """quantize_nf4 (for machines without bnb) produces data bnb itself dequantizes to our values."""
    w = randn(24, 128, gen=gen, dtype=torch.bfloat16)
    packed, state = quantize_nf4(w, compress_statistics=nested)
    ours = dequantize_nf4(packed, state)
    assert torch.equal(ours, bnb_dequantize(packed, state))
    rel = ((ours.float() - w.float()).norm() / w.float().norm()).item()
    assert rel < 0.12  # NF4 keeps about 3 bits of a normal weight
