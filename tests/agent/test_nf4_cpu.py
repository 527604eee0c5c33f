"""4-bit layers on the CPU compute with correct NF4 weights, whatever their row length.

bitsandbytes' CPU dequantization is wrong for rows that are not a multiple of 64 (a 96-wide tiny
model planned 31% of the test split right in 4-bit against 88% in fp32); `repair_cpu_nf4` routes
such layers through the NF4 reference the trainer uses.
"""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from lookout_kernels.nf4 import dequantize_nf4_reference

from lookout.agent.nf4_cpu import repair_cpu_nf4

NF4_REL_ERROR = 0.12  # NF4 with blocks of 64 on Gaussian weights: ~0.09


def _quantized(in_features: int, out_features: int, seed: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    dense = torch.randn(out_features, in_features)
    layer = bnb.nn.Linear4bit(in_features, out_features, bias=True, compute_dtype=torch.float32,
                              quant_type="nf4", compress_statistics=True)
    layer.weight = bnb.nn.Params4bit(dense.clone(), requires_grad=False, quant_type="nf4",
                                     compress_statistics=True, blocksize=64)
    layer.bias = torch.nn.Parameter(torch.randn(out_features))
    layer = layer.to("cpu")  # bitsandbytes quantizes on the move to a device
    assert layer.weight.quant_state is not None
    return layer, dense


@pytest.mark.parametrize("in_features", [96, 48, 128, 344])
def test_every_cpu_nf4_layer_computes_with_the_reference_weights_after_repair(in_features: int) -> None:
    layer, dense = _quantized(in_features, 64, seed=in_features)
    model = torch.nn.Sequential(layer)
    rerouted = repair_cpu_nf4(model)
    assert rerouted in ([], ["0"])
    x = torch.randn(5, in_features)
    with torch.no_grad():
        y = model(x)
        ref = x @ dequantize_nf4_reference(layer.weight.data, layer.weight.quant_state).float().T + layer.bias
        exact = x @ dense.T + layer.bias
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    assert ((y - exact).norm() / exact.norm()).item() < NF4_REL_ERROR


def test_inference_mode_computes_in_the_layers_compute_dtype_on_every_cpu() -> None:
    """bitsandbytes' AVX512-BF16 path would repack the weights and multiply in bfloat16 (eval, no grad)."""
    layer, _ = _quantized(128, 64, seed=1)
    model = torch.nn.Sequential(layer)
    repair_cpu_nf4(model)
    model.eval()
    x = torch.randn(5, 128)
    with torch.no_grad():
        first, second = model(x), model(x)
        ref = x @ dequantize_nf4_reference(layer.weight.data, layer.weight.quant_state).float().T + layer.bias
    torch.testing.assert_close(first, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(first, second)
    assert not getattr(layer.weight.quant_state, "packing_format_for_cpu", False)


def test_layers_bitsandbytes_gets_right_keep_its_forward() -> None:
    layer, _ = _quantized(128, 64, seed=0)
    assert repair_cpu_nf4(torch.nn.Sequential(layer)) == []
    assert "forward" not in layer.__dict__


def test_the_tiny_planner_in_4bit_is_as_accurate_as_in_fp32() -> None:
    from lookout.agent.capabilities import Capabilities
    from lookout.agent.config import ModelConfig
    from lookout.agent.planner import load_base_model
    from lookout.agent.prompt import system_prompt
    from lookout.paths import repo_root

    base = str(repo_root() / "models" / "tiny" / "agent-base")
    messages = [{"role": "system", "content": system_prompt(Capabilities.default())},
                {"role": "user", "content": "find the green box, then come back"},
                {"role": "assistant", "content": '{"reply":"Looking for the green box.","phrases":["green box"],'
                                                 '"steps":[{"action":"search","target":"green box"}],"declined":false}'}]
    logits = {}
    for four_bit in (False, True):
        model, tokenizer = load_base_model(ModelConfig(base=base, load_in_4bit=four_bit, device="cpu"))
        ids = torch.tensor([tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)])
        with torch.no_grad():
            logits[four_bit] = torch.log_softmax(model(ids).logits.float(), -1)
    # KL(fp32 || 4-bit) per token: NF4 rounding gives ~0.02 here; bitsandbytes' CPU dequantization alone ~0.9
    kl = (logits[False].exp() * (logits[False] - logits[True])).sum(-1).mean().item()
    assert kl < 0.1, kl
