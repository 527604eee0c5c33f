"""Model loading survives what concurrent loads in one process do to transformers, and refuses NaN weights.

A CI run once loaded the tiny planner with `lm_head` missing (a ROS test had loaded two models on
two threads earlier in the same process); the planner then refused every command. These tests pin
the repair and the lock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from lookout.agent.config import ModelConfig
from lookout.agent.planner import load_base_model
from lookout.hf_loading import HF_LOAD_LOCK, CorruptModelError, check_causal_lm
from lookout.paths import repo_root

TINY_BASE = repo_root() / "models" / "tiny" / "agent-base"


def _tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


@pytest.mark.parametrize("four_bit", [False, True])
def test_a_process_whose_tie_weights_was_left_a_no_op_still_loads_a_tied_planner(monkeypatch, four_bit) -> None:
    monkeypatch.setattr(PreTrainedModel, "tie_weights", lambda self, *a, **k: None)
    model, _ = load_base_model(ModelConfig(base=str(TINY_BASE), load_in_4bit=four_bit, device="cpu"))
    assert _tied(model)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_nan_weights_are_refused_with_the_parameter_named(tmp_path: Path) -> None:
    folder = tmp_path / "base"
    folder.mkdir()
    for f in TINY_BASE.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = load_file(folder / "model.safetensors")
    weights["model.norm.weight"][3] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CorruptModelError, match=r"NaN/Inf weights in model\.norm\.weight"):
        load_base_model(ModelConfig(base=str(folder), load_in_4bit=False, device="cpu"))


def test_check_refuses_a_tie_between_embeddings_of_different_shapes() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.lm_head = torch.nn.Linear(16, 65, bias=False)
    model.config.tie_word_embeddings = True
    with pytest.raises(CorruptModelError, match="shapes differ"):
        check_causal_lm(model, "test")


def test_concurrent_loads_leave_transformers_intact_and_every_model_tied() -> None:
    original = PreTrainedModel.tie_weights
    models, errors = [], []

    def load() -> None:
        try:
            models.append(load_base_model(ModelConfig(base=str(TINY_BASE), load_in_4bit=False, device="cpu"))[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(models) == 3
    assert PreTrainedModel.tie_weights is original
    assert all(_tied(m) for m in models)
    assert HF_LOAD_LOCK.acquire(blocking=False)  # nobody left it held
    HF_LOAD_LOCK.release()
