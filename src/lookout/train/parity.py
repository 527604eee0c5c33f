"""Parity: the patched model trains like the unpatched Hugging Face + PEFT model, step for step.

Both models load the same saved random Llama in 4-bit NF4, get the same LoRA initialisation
(same seed), and train for `steps` optimizer steps with the same loop, data and optimizer
(torch AdamW: 8-bit optimizer states would add quantisation noise unrelated to the kernels).
The reference is built with transformers and peft alone, none of Lookout's loading code.

    python -m lookout.train.parity --shape llama-3.2-1b --steps 30      # on a GPU (bf16 autocast)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

LOSS_RTOL = 1e-2  # per step, relative
# "Within bf16 tolerance" for a LoRA tensor: ||patched - reference|| / ||reference|| <= bf16's relative
# tolerance in torch.testing (2**-6). Per element it is not a fair bound after AdamW: Adam normalises each
# update, so an element whose gradient is below bf16 noise moves by about lr in a random direction.
BF16_RTOL = 1.6e-2


def parity_conversations(n: int = 24) -> list[list[dict[str, str]]]:
    """Deterministic robot-command conversations (multi-turn) for the parity run."""
    colours = ["red", "blue", "green"]
    things = ["cup", "chair", "bottle", "person"]
    out = []
    for i in range(n):
        c, t = colours[i % 3], things[(i // 3) % 4]
        conv = [
            {"role": "system", "content": "you are a helpful robot"},
            {"role": "user", "content": f"find the {c} {t} then come back"},
            {"role": "assistant", "content": f'{{"reply": "ok", "phrases": ["{c} {t}"], '
                                             f'"steps": [{{"action": "search", "target": "{c} {t}"}}]}}'},
        ]
        if i % 2:
            conv += [{"role": "user", "content": f"turn left {i % 9} degrees, wait {i % 5} seconds"},
                     {"role": "assistant", "content": f"turn left {i % 9} degrees. wait {i % 5} seconds."}]
        out.append(conv)
    return out


def _lora_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().float().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _reference_model(path: Path, r: int, alpha: int, seed: int, dtype: Any) -> Any:
    """Plain transformers + peft + bitsandbytes QLoRA with HF's own gradient checkpointing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype)
    device_map = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=dtype, device_map=device_map,
                                                 attn_implementation="sdpa", local_files_only=True)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def run_parity(
    shape: str = "tiny", steps: int = 30, workdir: str | Path | None = None, max_seq_length: int = 256,
    micro_batch_size: int = 2, grad_accum_steps: int = 2, learning_rate: float | None = None,
    gradient_checkpointing: bool | str = "offload", seed: int = 0,
) -> dict[str, Any]:
    """Train both models; returns both loss curves, the worst relative gaps and per-tensor LoRA errors."""
    import torch

    from lookout.train.chat_data import build_rows
    from lookout.train.config import TrainConfig
    from lookout.train.fast_llama import FastLlama, default_dtype
    from lookout.train.loop import train
    from lookout.train.standins import build_chat_tokenizer, save_random_llama

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = default_dtype()
        base = save_random_llama(tmp / "base", shape=shape, tokenizer=build_chat_tokenizer(), device=device,
                                 dtype=dtype if device == "cuda" else torch.float32)
        cfg = TrainConfig(
            max_seq_length=max_seq_length, micro_batch_size=micro_batch_size, grad_accum_steps=grad_accum_steps,
            max_steps=steps, learning_rate=learning_rate or (1e-3 if shape == "tiny" else 2e-4),
            optimizer="adamw", lr_schedule="constant", warmup_steps=0, save_every=10**6, progress_bar=False,
            seed=seed, lora_r=8 if shape == "tiny" else 16, lora_alpha=16,
        )
        patched, tokenizer = FastLlama.from_pretrained(base, max_seq_length=max_seq_length)
        rows, _ = build_rows(tokenizer, parity_conversations(), max_seq_length, pack=True)
        patched = FastLlama.get_peft_model(patched, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, random_state=seed,
                                           gradient_checkpointing=gradient_checkpointing)
        reference = _reference_model(base, cfg.lora_r, cfg.lora_alpha, seed, dtype)
        init_gap = max((a - b).abs().max().item() for a, b in zip(
            _lora_state(patched).values(), _lora_state(reference).values(), strict=True))
        curves, weights = {}, {}
        for name, model in (("patched", patched), ("reference", reference)):
            result = train(model, rows, cfg, tmp / f"run-{name}", pad_token_id=tokenizer.pad_token_id)
            curves[name] = [r["loss"] for r in result.history]
            weights[name] = _lora_state(model)
    rel = [abs(a - b) / abs(b) for a, b in zip(curves["patched"], curves["reference"], strict=True)]
    max_err, fro_err = {}, {}
    for k, ref in weights["reference"].items():
        diff = weights["patched"][k] - ref
        max_err[k] = diff.abs().max().item() / max(ref.abs().max().item(), 1e-12)
        fro_err[k] = diff.norm().item() / max(ref.norm().item(), 1e-12)
    worst = max(fro_err, key=fro_err.get)
    return {
        "shape": shape, "steps": steps, "device": device, "rows": len(rows), "init_lora_max_abs_diff": init_gap,
        "loss_patched": curves["patched"], "loss_reference": curves["reference"],
        "loss_max_rel_diff": max(rel), "lora_tensors": len(fro_err),
        "lora_max_rel_fro_err": fro_err[worst], "lora_worst_tensor": worst,
        "lora_max_elem_err_of_scale": max(max_err.values()),
        "passed": max(rel) <= LOSS_RTOL and fro_err[worst] <= BF16_RTOL,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="tiny", choices=["tiny", "llama-3.2-1b"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--gradient-checkpointing", default="offload", choices=["offload", "true", "false"])
    args = ap.parse_args(argv)
    gc = {"true": True, "false": False}.get(args.gradient_checkpointing, args.gradient_checkpointing)
    res = run_parity(args.shape, args.steps, max_seq_length=args.max_seq_length, gradient_checkpointing=gc)
    print("PARITY " + json.dumps(res))
    print(f"{'PASS' if res['passed'] else 'FAIL'}: loss max rel diff {res['loss_max_rel_diff']:.2e} "
          f"(limit {LOSS_RTOL}); LoRA worst relative error ||a-b||/||b|| {res['lora_max_rel_fro_err']:.2e} "
          f"(limit {BF16_RTOL}, {res['lora_worst_tensor']}); largest single-element error "
          f"{res['lora_max_elem_err_of_scale']:.2e} of its tensor's max")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
