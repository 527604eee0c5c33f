"""Loading Hugging Face models safely when several threads load at once (ROS nodes in one process).

`from_pretrained` swaps class-wide attributes for the length of a load (`PreTrainedModel.tie_weights`
and `init_weights`, the `torch.nn.init` functions) and puts the originals back when it ends. Two loads
on different threads interleave those swaps: the later restore can leave `tie_weights` a no-op for the
rest of the process, and a causal LM with tied embeddings then loads with an uninitialised `lm_head`
(garbage or NaN logits: the planner refuses every command). Every load in Lookout holds `HF_LOAD_LOCK`,
and `check_causal_lm` repairs the tie and refuses non-finite weights whatever happened before.
"""

from __future__ import annotations

import threading
from typing import Any

HF_LOAD_LOCK = threading.RLock()


class CorruptModelError(ValueError):
    """The weights of a loaded model are not usable (non-finite values)."""


def tie_embeddings_if_configured(model: Any) -> bool:
    """Tie `lm_head` to the input embeddings when the config asks for it; True if a repair was needed."""
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    if not getattr(text_config, "tie_word_embeddings", False):
        return False
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if inputs is None or outputs is None or outputs.weight is inputs.weight:
        return False
    if outputs.weight.shape != inputs.weight.shape:
        raise CorruptModelError(
            f"config ties the output and input embeddings but their shapes differ "
            f"({tuple(outputs.weight.shape)} vs {tuple(inputs.weight.shape)})")
    outputs.weight = inputs.weight
    return True


def non_finite_parameters(model: Any) -> list[str]:
    """Names of floating-point parameters holding NaN or Inf (quantized uint8 storage is skipped)."""
    import torch

    bad = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.is_floating_point() and param.device.type != "meta" and not torch.isfinite(param).all():
                bad.append(name)
    return bad


def check_causal_lm(model: Any, source: str) -> Any:
    """Repair a missing embedding tie, then refuse a model with non-finite weights (clear error, no plan)."""
    tie_embeddings_if_configured(model)
    bad = non_finite_parameters(model)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CorruptModelError(f"model loaded from {source} has NaN/Inf weights in {shown}: "
                                "the files are corrupt or were saved from a diverged run")
    return model
