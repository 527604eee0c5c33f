"""Patch a (PEFT-wrapped) Hugging Face Llama so its hot paths run `lookout_kernels`.

Only instance `forward`s are replaced (never the classes), so an unpatched model in the same
process is untouched and `unpatch_llama` restores the originals by deleting the attributes.
The replacement forwards keep the signatures transformers 5.17/5.18 call them with:

* `LlamaRMSNorm`       -> fused RMSNorm.
* `LlamaAttention`     -> fused LoRA Q/K/V, RoPE kernel, then the model's configured attention
                          interface (SDPA by default; it receives HF's mask, so packed rows stay
                          block-diagonal), then fused LoRA O.
* `LlamaMLP`           -> fused LoRA gate/up/down with SwiGLU.
* `LlamaForCausalLM`   -> with `labels`, the loss is a fused linear cross-entropy on the final
                          hidden states and `lm_head.weight`; logits are never built (the output's
                          `logits` is None). `num_items_in_batch` and `shift_labels` mean what they
                          mean in HF's `ForCausalLMLoss`. Without labels it is HF's forward.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lookout.train import ops
from lookout.train.ops import IGNORE_INDEX

PATCHED_FLAG = "_lookout_patched"


def _rms_norm_forward(self: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    return ops.rms_norm(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ops.lora_mlp(x, self.gate_proj, self.up_proj, self.down_proj)


def _attention_forward(
    self: torch.nn.Module,
    hidden_states: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    attention_mask: torch.Tensor | None = None,
    past_key_values: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    from transformers.models.llama.modeling_llama import ALL_ATTENTION_FUNCTIONS, eager_attention_forward

    bsz, q_len = hidden_states.shape[:2]
    q, k, v = ops.lora_qkv(hidden_states, self.q_proj, self.k_proj, self.v_proj)
    q = q.view(bsz, q_len, -1, self.head_dim).transpose(1, 2)
    k = k.view(bsz, q_len, -1, self.head_dim).transpose(1, 2)
    v = v.view(bsz, q_len, -1, self.head_dim).transpose(1, 2)
    cos, sin = position_embeddings
    q, k = ops.apply_rope(q, k, cos, sin)
    if past_key_values is not None:
        k, v = past_key_values.update(k, v, self.layer_idx)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
    out, weights = attention(
        self, q, k, v, attention_mask,
        dropout=self.attention_dropout if self.training else 0.0,
        scaling=self.scaling,
        **kwargs,
    )
    out = out.reshape(bsz, q_len, -1).contiguous()
    return ops.lora_o(out, self.o_proj), weights


def _fusable_lm_head(lm_head: torch.nn.Module) -> bool:
    """A plain Linear without bias: PEFT-wrapped or quantized heads take HF's path."""
    return type(lm_head) is torch.nn.Linear and lm_head.bias is None


def _causal_lm_forward(
    self: torch.nn.Module,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    past_key_values: Any = None,
    inputs_embeds: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    use_cache: bool | None = None,
    logits_to_keep: int | torch.Tensor = 0,
    **kwargs: Any,
) -> Any:
    from transformers.modeling_outputs import CausalLMOutputWithPast

    shift_labels = kwargs.get("shift_labels")
    if (labels is None and shift_labels is None) or not _fusable_lm_head(self.lm_head):
        return type(self).forward(
            self, input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels,
            use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs,
        )
    num_items_in_batch = kwargs.pop("num_items_in_batch", None)
    kwargs.pop("shift_labels", None)
    kwargs.pop("ignore_index", None)
    outputs = self.model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
        past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs,
    )
    hidden = outputs.last_hidden_state
    if shift_labels is None:  # HF: pad then shift, so every position predicts the next token
        shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    shift_labels = shift_labels.to(hidden.device)
    loss = ops.fused_linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1]), self.lm_head.weight, shift_labels.reshape(-1),
        num_items_in_batch=num_items_in_batch,
    )
    return CausalLMOutputWithPast(
        loss=loss, logits=None, past_key_values=outputs.past_key_values,
        hidden_states=outputs.hidden_states, attentions=outputs.attentions,
    )


def _bind(module: torch.nn.Module, fn: Callable[..., Any]) -> None:
    module.forward = types.MethodType(fn, module)
    setattr(module, PATCHED_FLAG, True)


def find_causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The `LlamaForCausalLM` inside a PEFT model (or the model itself)."""
    from transformers import LlamaForCausalLM

    for module in model.modules():
        if isinstance(module, LlamaForCausalLM):
            return module
    raise TypeError(
        f"expected a Llama causal LM (LlamaForCausalLM, possibly PEFT-wrapped), got {type(model).__name__}"
    )


def patch_llama(model: torch.nn.Module) -> dict[str, int]:
    """Replace the forwards of every RMSNorm, attention and MLP block and of the LM; returns counts."""
    from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP, LlamaRMSNorm

    causal_lm = find_causal_lm(model)
    counts = {"rms_norm": 0, "attention": 0, "mlp": 0, "loss": 0}
    for module in causal_lm.modules():
        if isinstance(module, LlamaRMSNorm):
            _bind(module, _rms_norm_forward)
            counts["rms_norm"] += 1
        elif isinstance(module, LlamaAttention):
            _bind(module, _attention_forward)
            counts["attention"] += 1
        elif isinstance(module, LlamaMLP):
            if causal_lm.config.hidden_act not in ("silu", "swish"):
                raise ValueError(f"the fused MLP computes SwiGLU; this model uses {causal_lm.config.hidden_act!r}")
            _bind(module, _mlp_forward)
            counts["mlp"] += 1
    _bind(causal_lm, _causal_lm_forward)
    counts["loss"] = 1
    return counts


def unpatch_llama(model: torch.nn.Module) -> int:
    """Restore the class forwards; returns how many modules were restored."""
    restored = 0
    for module in model.modules():
        if module.__dict__.pop(PATCHED_FLAG, False):
            module.__dict__.pop("forward", None)
            restored += 1
    return restored


def is_patched(model: torch.nn.Module) -> bool:
    return any(getattr(m, PATCHED_FLAG, False) for m in model.modules())
