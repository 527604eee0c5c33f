"""`lookout train` end to end: check inputs, load 4-bit base + LoRA, build rows, train, save adapter + card.

Inputs are checked before the model loads (a bad data line fails in a second, not after loading),
and an output folder from another run is never overwritten: continue it with `resume=True`.
Under `torchrun`/`accelerate launch` every rank runs this same function (DDP, see `distributed.py`);
only rank 0 writes the adapter, the card and the summary.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lookout.train import chat_data
from lookout.train.config import TrainConfig
from lookout.train.fast_llama import resolve_base

log = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"


class OutputExistsError(FileExistsError):
    """The output folder holds another run; resume it or choose another folder."""


def check_output_dir(out: Path, resume: bool) -> None:
    from lookout.train.checkpoint import latest_checkpoint

    if resume:
        if latest_checkpoint(out) is None:
            raise FileNotFoundError(f"nothing to resume: {out} has no checkpoints (drop --resume to start a run)")
        return
    if (out / "adapter_config.json").exists() or latest_checkpoint(out) is not None:
        raise OutputExistsError(
            f"{out} already holds a training run; pass --resume to continue it, or choose another --out"
        )


def run(
    base: str | Path, data: str | Path, out: str | Path, cfg: TrainConfig | None = None, resume: bool = False,
    on_step_end: Any = None,
) -> dict[str, Any]:
    """Train an adapter and write it with a model card to `out`; returns the summary dict."""
    from lookout.train import distributed

    info, created = distributed.init_from_env()  # single process: a no-op
    clean = False
    try:
        summary = _run(base, data, out, cfg, resume, on_step_end, info)
        clean = True
        return summary
    finally:
        distributed.shutdown(created, clean=clean)


def _run(
    base: str | Path, data: str | Path, out: str | Path, cfg: TrainConfig | None, resume: bool,
    on_step_end: Any, info: Any,
) -> dict[str, Any]:
    from lookout.train import distributed
    from lookout.train.fast_llama import FastLlama
    from lookout.train.loop import train
    from lookout.train.ops import available_kernels, triton_active

    cfg = cfg or TrainConfig()
    distributed.check_world_size(cfg.grad_accum_steps, info.world_size)  # before the model loads
    out = Path(out)
    base_name = resolve_base(base)
    conversations = chat_data.load_conversations(data)
    check_output_dir(out, resume)
    distributed.barrier()  # every rank has checked `out` before rank 0 writes into it
    data_sha = chat_data.file_sha256(data)

    dtype = None if cfg.dtype == "auto" else _torch_dtype(cfg.dtype)
    model, tokenizer = FastLlama.from_pretrained(
        base_name, max_seq_length=cfg.max_seq_length, load_in_4bit=cfg.load_in_4bit, dtype=dtype
    )
    rows, stats = chat_data.build_rows(tokenizer, conversations, cfg.max_seq_length, pack=cfg.pack)
    if not rows:
        raise chat_data.DataFormatError(f"{data}: no conversation has assistant tokens within max_seq_length")
    model = FastLlama.get_peft_model(
        model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.target_modules,
        lora_dropout=cfg.lora_dropout, gradient_checkpointing=cfg.gradient_checkpointing,
        memory_budget_gib=cfg.memory_budget_gib, random_state=cfg.seed, use_kernels=cfg.use_kernels,
    )
    out.mkdir(parents=True, exist_ok=True)
    result = train(model, rows, cfg, out, pad_token_id=tokenizer.pad_token_id, resume=resume,
                   on_step_end=on_step_end)
    summary = {
        "base_model": str(base_name),
        "data": {"file": str(data), "sha256": data_sha, **{k: v for k, v in asdict(stats).items() if k != "extra"}},
        "settings": cfg.model_dump(mode="json"),
        "metrics": {
            "steps": result.steps, "final_loss": result.final_loss, "tokens": result.tokens,
            "train_seconds": round(result.seconds, 2), "tokens_per_s": round(result.tokens_per_s, 1),
            "peak_memory_gb": result.peak_memory_gb, "skipped_steps": result.skipped_steps,
        },
        "kernels": {"patched": cfg.use_kernels, "triton": cfg.use_kernels and triton_active(),
                    "found": available_kernels()},
        "finished_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "environment": _environment(),
        "processes": info.world_size,
    }
    if info.is_main:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        (out / "README.md").write_text(model_card(summary))
    distributed.barrier()
    return summary


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _environment() -> dict[str, str]:
    import peft
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "peft": peft.__version__,
           "device": torch.cuda.get_device_name(torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"}
    try:
        import bitsandbytes

        env["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        pass
    return env


def model_card(summary: dict[str, Any]) -> str:
    """A short README.md: what the adapter is, what it was trained on, how, and how well."""
    d, m, s = summary["data"], summary["metrics"], summary["settings"]
    settings = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in s.items())
    k = summary["kernels"]
    found = ", ".join(name for name, ok in k["found"].items() if ok) or "none"
    if not k["patched"]:
        kernels = "off (Hugging Face + PEFT forward)"
    else:
        kernels = f"{'Triton' if k['triton'] else 'PyTorch reference path (no GPU)'}; lookout_kernels ops: {found}"
    return f"""---
base_model: {summary["base_model"]}
library_name: peft
tags: [lookout, lora, qlora]
---
# Lookout LoRA adapter

Trained with `lookout train` on {summary["finished_utc"]} UTC ({summary["environment"]["device"]}, \
{summary.get("processes", 1)} process(es)).

- **Base model:** `{summary["base_model"]}` (4-bit NF4, double quantization: {s["load_in_4bit"]})
- **Data:** `{Path(d["file"]).name}`, sha256 `{d["sha256"]}`; {d["conversations"]} conversations ->
  {d["rows"]} rows ({"packed" if s["pack"] else "one conversation per row"}), {d["tokens"]} tokens,
  {d["label_tokens"]} trained (assistant) tokens; {d["truncated"]} truncated to {s["max_seq_length"]} tokens,
  {d["dropped_no_labels"]} dropped for having no assistant tokens.
- **Final metrics:** {m["steps"]} steps, final loss {m["final_loss"]:.4f}, {m["tokens_per_s"]:,.0f} tokens/s,
  peak memory {m["peak_memory_gb"]:.2f} GiB, {m["skipped_steps"]} skipped (non-finite) steps,
  {m["train_seconds"]:.1f} s of training.
- **Kernels:** {kernels}.

## Load

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained("{summary["base_model"]}")
model = PeftModel.from_pretrained(base, "path/to/this/folder")
```

## Settings

| setting | value |
|---|---|
{settings}
"""
