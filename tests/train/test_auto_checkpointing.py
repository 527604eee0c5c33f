"""gradient_checkpointing="auto": checkpoint only as many layers as the activation budget needs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lookout.train.chat_data import collate, tokenize_conversation
from lookout.train.checkpointing import AutoCheckpointPolicy, layer_activation_bytes_per_token

LLAMA_32_1B = SimpleNamespace(hidden_size=2048, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                              intermediate_size=8192)


def test_per_layer_estimate_matches_the_llama_block_and_bounds_the_h200_measurement():
    per_token = layer_activation_bytes_per_token(LLAMA_32_1B)
    assert per_token == 2 * (5 * 2048 + 2 * 512 + 2 * 8192)
    assert layer_activation_bytes_per_token(LLAMA_32_1B, norm_outputs_kept=True) == per_token + 2 * 2 * 2048
    # measured on the H200 (bench/train.py, 8 x 2048, 2026-11-29): peak 14.189 GiB with no layer checkpointed,
    # 12.648 GiB with two (offloaded): two layers' activations over 16384 tokens
    measured = (14.189 - 12.648) / 2 * 2**30 / 16384
    assert measured <= per_token <= 1.5 * measured  # an upper bound, not a wild one


@pytest.mark.parametrize(("budget_layers", "expected"), [(16, 0), (20, 0), (10, 6), (1, 15), (0, 16), (0.5, 16)])
def test_policy_checkpoints_the_fewest_layers_that_fit_the_budget(budget_layers, expected):
    tokens = 8 * 2048
    per_layer = layer_activation_bytes_per_token(LLAMA_32_1B) * tokens
    policy = AutoCheckpointPolicy(LLAMA_32_1B, 16, budget_layers * per_layer)
    assert policy.layers_to_checkpoint(tokens) == expected
    assert policy.layers_to_checkpoint(tokens // 4) == max(0, 16 - int(4 * budget_layers))  # smaller batch


def test_no_budget_on_the_cpu_checkpoints_every_layer():
    assert AutoCheckpointPolicy(LLAMA_32_1B, 16, None).layers_to_checkpoint(10) == 16


def _grads(model, batch):
    model.train()
    model(**batch).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("budget_layers", "checkpointed"), [(0.0, 2), (1.0, 1), (100.0, 0)])
def test_auto_runs_the_chosen_layers_checkpointed_with_unchanged_gradients(
        make_model, conversations, budget_layers, checkpointed, monkeypatch):
    from lookout.train import checkpointing

    plain, tok = make_model(gradient_checkpointing=False)
    batch = collate([tokenize_conversation(tok, m) for m in conversations[:2]], tok.pad_token_id)
    tokens = batch["input_ids"].numel()
    per_layer = layer_activation_bytes_per_token(plain.config, dtype_bytes=4, norm_outputs_kept=True) * tokens
    auto, _ = make_model(gradient_checkpointing="auto", memory_budget_gib=budget_layers * per_layer / 2**30)
    calls = []
    real = checkpointing.offloaded_checkpoint
    monkeypatch.setattr(checkpointing, "offloaded_checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    g_plain, g_auto = _grads(plain, batch), _grads(auto, batch)
    assert auto.lookout_checkpoint_policy.last == {"tokens": tokens, "checkpointed_layers": checkpointed, "layers": 2}
    assert len(calls) == checkpointed
    for k in g_plain:
        torch.testing.assert_close(g_auto[k], g_plain[k], rtol=1e-5, atol=1e-7, msg=k)


def test_budget_only_with_auto_and_not_negative(make_model):
    with pytest.raises(ValueError, match="only applies"):
        make_model(gradient_checkpointing="offload", memory_budget_gib=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        make_model(gradient_checkpointing="auto", memory_budget_gib=-1.0)
    with pytest.raises(ValueError, match="'auto'"):
        make_model(gradient_checkpointing="sometimes")
