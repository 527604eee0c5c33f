"""`FastLlama`: load a Llama in 4-bit, add LoRA, patch it with `lookout_kernels` (Unsloth-style API).

    model, tokenizer = FastLlama.from_pretrained("path/to/Llama-3.2-1B-Instruct", max_seq_length=2048)
    model = FastLlama.get_peft_model(model, r=16, lora_alpha=16)  # checkpointing "auto"

The result is a plain `peft.PeftModel`: `save_pretrained` writes a standard adapter, and it
trains under TRL's `SFTTrainer` as well as under `lookout.train.loop`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from lookout.hf_loading import HF_LOAD_LOCK, check_causal_lm

log = logging.getLogger(__name__)

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LLAMA3_PAD_TOKEN = "<|finetune_right_pad_id|>"
GradientCheckpointing = bool | Literal["offload", "auto"]


class BaseModelNotFoundError(FileNotFoundError):
    """The base model folder (or cached hub id) does not exist or is incomplete."""


class UnsupportedModelError(ValueError):
    """The base model is not a Llama; FastLlama's patches are written for Llama's blocks."""


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else that does not exist is a missing folder."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1


def resolve_base(path_or_name: str | os.PathLike[str]) -> str:
    """A local folder with config.json, or a hub id to load from the local cache; else a clear error."""
    name = os.fspath(path_or_name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelNotFoundError(
                f"base model folder {path} has no config.json: give the folder that "
                "`save_pretrained` wrote (config.json, *.safetensors, tokenizer files)"
            )
        return str(path)
    if path.exists():
        raise BaseModelNotFoundError(f"base model {path} is a file; give the model's folder")
    if _looks_like_path(name):
        raise BaseModelNotFoundError(
            f"base model folder {path} not found: give a folder with config.json and weights "
            "(e.g. a `save_pretrained` output) or a model id in the local Hugging Face cache"
        )
    return name  # a hub id such as meta-llama/Llama-3.2-1B-Instruct


def default_dtype() -> Any:
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class FastLlama:
    """Namespace for the loading and adapter helpers (mirrors Unsloth's FastLanguageModel)."""

    @staticmethod
    def from_pretrained(
        path_or_name: str | os.PathLike[str],
        max_seq_length: int = 2048,
        load_in_4bit: bool = True,
        dtype: Any = None,
        attn_implementation: str = "sdpa",
        device_map: Any = None,
    ) -> tuple[Any, Any]:
        """Load a Llama (3.x included) in NF4 with double quantization, and its tokenizer.

        `dtype` is the compute dtype: bf16 on a GPU by default, fp32 on the CPU.
        """
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        name = resolve_base(path_or_name)
        local_only = Path(name).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
        try:
            config = AutoConfig.from_pretrained(name, local_files_only=local_only)
        except OSError as exc:
            raise BaseModelNotFoundError(
                f"base model {name!r} not found locally ({exc.__class__.__name__}): give a model folder, "
                "or download the model into the Hugging Face cache first"
            ) from exc
        if config.model_type != "llama":
            raise UnsupportedModelError(
                f"{name} is a {config.model_type!r} model; FastLlama supports Llama (model_type 'llama')"
            )
        if max_seq_length > config.max_position_embeddings:
            raise ValueError(
                f"max_seq_length {max_seq_length} exceeds the model's max_position_embeddings "
                f"{config.max_position_embeddings}"
            )
        dtype = dtype or default_dtype()
        on_gpu = torch.cuda.is_available()
        if device_map is None:
            device_map = {"": torch.cuda.current_device()} if on_gpu else {"": "cpu"}
        quant = None
        if load_in_4bit:
            quant = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
            )
        with HF_LOAD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(
                name, quantization_config=quant, dtype=dtype, device_map=device_map,
                attn_implementation=attn_implementation, local_files_only=local_only,
            )
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
        check_causal_lm(model, str(name))
        tokenizer.model_max_length = max_seq_length
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:
            vocab = tokenizer.get_vocab()
            tokenizer.pad_token = LLAMA3_PAD_TOKEN if LLAMA3_PAD_TOKEN in vocab else tokenizer.eos_token
        model.max_seq_length = max_seq_length
        model.config.use_cache = False
        return model, tokenizer

    @staticmethod
    def get_peft_model(
        model: Any,
        r: int = 16,
        lora_alpha: int = 16,
        target_modules: tuple[str, ...] | list[str] = ALL_PROJECTIONS,
        lora_dropout: float = 0.0,
        bias: str = "none",
        gradient_checkpointing: GradientCheckpointing = "auto",
        random_state: int = 3407,
        use_kernels: bool = True,
        memory_budget_gib: float | None = None,
    ) -> Any:
        """Add LoRA adapters (PEFT), then patch the model with the kernels and set checkpointing.

        `gradient_checkpointing`: "auto" (default) checkpoints, with inputs offloaded to host memory,
        only as many decoder layers as an activation budget needs (`memory_budget_gib`, else half the
        GPU; every layer on the CPU): see `checkpointing.AutoCheckpointPolicy`. "offload" checkpoints
        every layer that way, True every layer on the GPU, False none.

        `random_state` seeds the LoRA initialisation, so two calls give the same adapters.
        """
        import torch
        from peft import LoraConfig, get_peft_model

        from lookout.train.checkpointing import set_gradient_checkpointing
        from lookout.train.patch import patch_llama

        config = LoraConfig(
            r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias=bias,
            target_modules=list(target_modules), task_type="CAUSAL_LM",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            peft_model = get_peft_model(model, config)
        peft_model.config.use_cache = False
        peft_model.train()  # from_pretrained returns eval mode; checkpointing only acts in training mode
        if use_kernels:
            counts = patch_llama(peft_model)
            log.info("patched with lookout_kernels: %s", counts)
        set_gradient_checkpointing(peft_model, gradient_checkpointing, preserve_rng=_has_dropout(peft_model),
                                   memory_budget_gib=memory_budget_gib)
        peft_model.lookout_settings = {
            "r": r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
            "target_modules": list(target_modules), "gradient_checkpointing": gradient_checkpointing,
            "use_kernels": use_kernels, "random_state": random_state, "memory_budget_gib": memory_budget_gib,
        }
        return peft_model

    @staticmethod
    def for_inference(model: Any) -> Any:
        """Eval mode with the KV cache on (the patched blocks also serve generation)."""
        model.eval()
        model.config.use_cache = True
        return model

    @staticmethod
    def for_training(model: Any) -> Any:
        model.train()
        model.config.use_cache = False
        return model


def _has_dropout(model: Any) -> bool:
    """Whether recomputation must replay the RNG (LoRA or attention dropout is on)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p > 0:
            return True
    return float(getattr(model.config, "attention_dropout", 0.0) or 0.0) > 0
