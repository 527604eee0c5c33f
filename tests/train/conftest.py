"""Shared fixtures for the trainer tests: one tiny random Llama (hidden 64, 2 layers) with a Llama-3
chat tokenizer, saved once per session, and a few chat conversations.

Torch runs single-threaded here: on 2 shared cores, two intra-op threads per pytest worker make
these tiny matmuls about 50x slower (spin-waiting threads), and CI runs two workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CONVERSATIONS = [
    [
        {"role": "system", "content": "you are a helpful robot"},
        {"role": "user", "content": "find the red cup then come back"},
        {"role": "assistant", "content": "ok, searching for the red cup"},
        {"role": "user", "content": "and the blue chair?"},
        {"role": "assistant", "content": "I will look for the blue chair next"},
    ],
    [
        {"role": "user", "content": "turn left ninety degrees"},
        {"role": "assistant", "content": "turning left 90 degrees"},
    ],
    [
        {"role": "system", "content": "you are a helpful robot"},
        {"role": "user", "content": "pick up the bottle"},
        {"role": "assistant", "content": "I can not pick up objects because I have no arm"},
    ],
    [
        {"role": "user", "content": "wait five seconds, then report what you see"},
        {"role": "assistant", "content": "waiting 5 seconds. then I report."},
        {"role": "user", "content": "stop"},
        {"role": "assistant", "content": "stop"},
    ],
]


@pytest.fixture(scope="module", autouse=True)
def _single_thread_torch():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random tiny Llama (4 heads, 2 KV heads, llama3 RoPE) with a chat tokenizer."""
    from lookout.train.standins import save_random_llama

    return save_random_llama(tmp_path_factory.mktemp("tiny_llama") / "base", shape="tiny", seed=1234)


@pytest.fixture(scope="session")
def tokenizer(tiny_base: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


@pytest.fixture()
def conversations() -> list[list[dict[str, str]]]:
    return [list(map(dict, c)) for c in CONVERSATIONS]


@pytest.fixture(scope="session")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "chat.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CONVERSATIONS * 3))
    return path


@pytest.fixture()
def make_model(tiny_base: Path):
    """Factory: the tiny base in 4-bit with LoRA (r=8) on all projections, patched unless use_kernels=False."""
    from lookout.train.fast_llama import FastLlama

    def make(use_kernels: bool = True, gradient_checkpointing=False, **lora):
        model, tok = FastLlama.from_pretrained(tiny_base, max_seq_length=256)
        kw = {"r": 8, "lora_alpha": 16, "random_state": 0, **lora}
        model = FastLlama.get_peft_model(model, gradient_checkpointing=gradient_checkpointing,
                                         use_kernels=use_kernels, **kw)
        return model, tok

    return make
