"""Offline QLoRA training of the agent's adapter: 4-bit Llama + LoRA patched with `lookout_kernels`.

Import-light on purpose (the CLI imports this package): torch, transformers and peft load only
when a name below is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FastLlama": "lookout.train.fast_llama",
    "TrainConfig": "lookout.train.config",
    "train": "lookout.train.loop",
    "TrainResult": "lookout.train.loop",
    "TrainingInterrupted": "lookout.train.loop",
    "load_conversations": "lookout.train.chat_data",
    "tokenize_conversation": "lookout.train.chat_data",
    "pack_rows": "lookout.train.chat_data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lookout.train' has no attribute {name!r}")
    return getattr(import_module(module), name)
