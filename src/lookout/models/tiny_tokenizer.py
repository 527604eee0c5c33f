"""The tiny agent's tokenizer: byte-level BPE trained on the dataset, with Llama 3's specials and template.

It splits text the way Llama 3's tokenizer does (same pre-tokenizer regex, digits in groups of
at most three, byte-level fallback, so any input encodes), carries Llama 3's special tokens and
the project's Llama-3-style chat template, and is saved as a `PreTrainedTokenizerFast`: the
planner and the trainer load it exactly as they load Llama 3.2's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lookout.agent.chat_template import (
    BEGIN_OF_TEXT,
    END_OF_TURN,
    LLAMA3_CHAT_TEMPLATE,
    LLAMA3_SPECIAL_TOKENS,
)

PAD_TOKEN = "<|finetune_right_pad_id|>"
SPECIAL_TOKENS: tuple[str, ...] = (*LLAMA3_SPECIAL_TOKENS, PAD_TOKEN)
# Llama 3's pre-tokenizer split (tokenizer.json of Meta-Llama-3 / Llama-3.2).
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def conversation_texts(rows: Iterable[dict[str, Any]]) -> Iterable[str]:
    """The texts a tokenizer learns from: every message of every row, as the model will see them.

    The system prompt counts once per row (it is in every prompt), so its words become single tokens
    and the constant prefix stays short.
    """
    for row in rows:
        for m in row["messages"]:
            yield m["content"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 3072, min_frequency: int = 2) -> Any:
    """Train the BPE and wrap it as a HF fast tokenizer with the chat template installed."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BEGIN_OF_TEXT, eos_token=END_OF_TURN, pad_token=PAD_TOKEN,
        model_max_length=2048, clean_up_tokenization_spaces=False,
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def save_tokenizer(tokenizer: Any, path: str | Path) -> None:
    tokenizer.save_pretrained(str(path))
