"""Stand-in Llama models and tokenizers, built locally because nothing can be downloaded.

Tests use a tiny Llama (hidden 64, 2 layers) with a byte-level BPE tokenizer that carries the
Llama 3 special tokens and a Llama-3.2-style chat template. Benchmarks use Llama-3.2-1B's exact
shape with random weights and a WordLevel tokenizer of the same vocabulary size and special-token
ids (the `anchors` measurement's stand-in). Needs only torch, transformers and tokenizers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LLAMA32_1B: dict[str, Any] = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, head_dim=64, hidden_act="silu",
    max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
    attention_bias=False, mlp_bias=False, attention_dropout=0.0, initializer_range=0.02,
    bos_token_id=128000, eos_token_id=128001,
    rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, high_freq_factor=4.0,
                         low_freq_factor=1.0, original_max_position_embeddings=8192),
)

TINY_LLAMA: dict[str, Any] = dict(
    vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, hidden_act="silu",
    max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=True,
    initializer_range=0.02,
    rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, high_freq_factor=4.0,
                         low_freq_factor=1.0, original_max_position_embeddings=256),
)

SHAPES = {"tiny": TINY_LLAMA, "llama-3.2-1b": LLAMA32_1B}

LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>", "<|finetune_right_pad_id|>",
]

# Llama 3.2's chat template without the tool-calling branches: the same system header
# (knowledge cutoff and date), turn headers, trimmed contents and <|eot_id|> terminators.
LLAMA32_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = \"\" %}{%- endif %}"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}"
    "{{- system_message }}{{- \"<|eot_id|>\" }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

_CORPUS = (
    "find the red cup then come back. go to the kitchen and look for a blue chair. "
    "turn left ninety degrees, move forward two meters, stop. search for the green bottle near the door. "
    "I can not pick up objects because I have no arm. report what you see. wait five seconds. "
    "approach the person, keep half a meter away. system user assistant you are a helpful robot. "
    '{"reply": "ok", "phrases": ["red cup"], "steps": [{"action": "search", "target": "red cup"}]} '
    "0 1 2 3 4 5 6 7 8 9 Cutting Knowledge Date: December 2023 Today Date: 26 Jul 2024\n\n"
)


def build_chat_tokenizer(vocab_size: int = 384, corpus: str = _CORPUS) -> Any:
    """A small byte-level BPE tokenizer with Llama 3's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=LLAMA3_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([corpus] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>", model_max_length=1024,
    )
    fast.chat_template = LLAMA32_CHAT_TEMPLATE
    return fast


def build_wordlevel_tokenizer(vocab_size: int) -> Any:
    """Stand-in for the Llama 3 tokenizer: same vocab size and the same special-token ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>",
                128004: "<|finetune_right_pad_id|>", 128009: "<|eot_id|>"}
    vocab = {}
    for i in range(vocab_size):
        vocab[specials.get(i, f"<|reserved_special_token_{i}|>" if i >= 128000 else f"t{i}")] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
        pad_token="<|finetune_right_pad_id|>", unk_token="t0", model_max_length=131072,
    )
    fast.add_special_tokens({"additional_special_tokens": [specials[128009]]})
    return fast


def save_random_llama(
    path: str | Path, shape: str | dict[str, Any] = "tiny", seed: int = 1234, dtype: Any = None,
    tokenizer: Any = None, device: str = "cpu",
) -> Path:
    """Save a randomly initialised Llama of `shape` (and a tokenizer) with `save_pretrained`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    fields = SHAPES[shape] if isinstance(shape, str) else shape
    config = LlamaConfig(architectures=["LlamaForCausalLM"], **fields)
    dtype = dtype or torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    path = Path(path)
    model.save_pretrained(path)
    if tokenizer is None:
        tokenizer = build_chat_tokenizer() if config.vocab_size < 128000 else build_wordlevel_tokenizer(
            config.vocab_size)
    tokenizer.save_pretrained(path)
    return path
