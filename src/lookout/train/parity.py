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

from lookout.hf_loading import HF_LOAD_LOCK, check_causal_lm

LOSS_RTOL = 1e-2  # per step, relative
# "Within bf16 tolerance" for a LoRA tensor: ||patched - reference|| / ||reference|| <= bf16's relative
# tolerance in torch.testing (2**-6). Per element it is not a fair bound after AdamW: Adam normalises each
# update, so an element whose gradient is below bf16 noise moves by about lr in a random direction.
BF16_RTOL = 1.6e-2
# First-step LoRA gradients, the numerics without Adam in between. Relative Frobenius error per tensor
# (lora_B: lora_A's first gradient is exactly zero because lora_B starts at zero, checked separately).
# bf16 (GPU): the median tensor within bf16's tolerance, the worst within 4x that (the gap compounds
# through up to 16 layers of a bf16 backward whose rounding order differs: fused vs separate matmuls).
# fp32 (CPU): every tensor within 1e-4 (both sides run the same math in fp32).
GRAD_RTOL_BF16_MEDIAN, GRAD_RTOL_BF16_MAX = BF16_RTOL, 4 * BF16_RTOL
GRAD_RTOL_FP32 = 1e-4
# After 30 AdamW steps in bf16 the per-tensor weight error is reported (median, p90, max) and judged by
# the same BF16_RTOL bar, but on the GPU it does not decide `passed`: Adam divides each gradient by its
# own running RMS, so an element whose gradient sits at bf16 rounding level takes ~lr-sized steps whose
# sign the rounding picks, and a 1-ulp difference becomes an O(lr) one. The loss curves and the
# first-step gradients are the bars there. On the CPU (fp32) the weight bar still decides.
#
# The noise floor (GPU): a third model, the same HF + PEFT reference computing in fp32 without autocast,
# is the truth both bf16 paths are measured against. "No loss of accuracy" then means the patched model is
# no further from fp32 than Hugging Face's own bf16 path is: per measure (first-step gradients, weights after
# training; median and max over tensors), patched error <= NOISE_FACTOR x reference error. Where the direct
# bars above fail but this holds, the gap is bf16 rounding that HF has too, not a defect of the kernels.
NOISE_FACTOR = 1.5


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
    with HF_LOAD_LOCK:
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=dtype,
                                                     device_map=device_map, attn_implementation="sdpa",
                                                     local_files_only=True)
    check_causal_lm(model, str(path))
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
    peft_model.train()  # transformers 5 checkpoints only in training mode
    return peft_model


def _first_step_grads(model: Any, batch: dict[str, Any], device: str, n_targets: int,
                      autocast: bool = True) -> dict[str, Any]:
    """LoRA gradients of one forward/backward on `batch` (the loop's autocast and loss normalisation);
    the gradients are cleared afterwards so training starts from the same state."""
    import torch

    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast and device == "cuda"):
        loss = model(**batch, use_cache=False, num_items_in_batch=n_targets).loss
    loss.backward()
    grads = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            grads[n] = p.grad.detach().float().cpu().clone() if p.grad is not None else torch.zeros(p.shape)
            p.grad = None
    return grads


def _rel_errors(patched: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    return {k: (patched[k] - ref).norm().item() / max(ref.norm().item(), 1e-30) for k, ref in reference.items()}


def _distribution(errors: dict[str, float]) -> dict[str, Any]:
    import statistics

    vals = sorted(errors.values())
    worst = max(errors, key=errors.get)
    return {"n": len(vals), "median": statistics.median(vals), "p90": vals[min(len(vals) - 1, int(0.9 * len(vals)))],
            "max": vals[-1], "worst": worst}


def run_parity(
    shape: str = "tiny", steps: int = 30, workdir: str | Path | None = None, max_seq_length: int = 256,
    micro_batch_size: int = 2, grad_accum_steps: int = 2, learning_rate: float | None = None,
    gradient_checkpointing: bool | str = "offload", seed: int = 0, fp32_truth: bool | None = None,
    fp32: bool = False,
) -> dict[str, Any]:
    """Train both models; returns both loss curves, the worst relative gaps and per-tensor LoRA errors.
    `fp32_truth` (default: on a GPU) also trains the reference in fp32 and measures both against it.
    `fp32` runs both models in fp32 without autocast, also on a GPU: the kernels' math at full width,
    judged by the fp32 bars."""
    import torch

    from lookout.train.chat_data import build_rows
    from lookout.train.config import TrainConfig
    from lookout.train.fast_llama import FastLlama, default_dtype
    from lookout.train.loop import train
    from lookout.train.standins import build_chat_tokenizer, save_random_llama

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float32 if fp32 else default_dtype()
        base = save_random_llama(tmp / "base", shape=shape, tokenizer=build_chat_tokenizer(), device=device,
                                 dtype=dtype if device == "cuda" else torch.float32)
        cfg = TrainConfig(
            max_seq_length=max_seq_length, micro_batch_size=micro_batch_size, grad_accum_steps=grad_accum_steps,
            max_steps=steps, learning_rate=learning_rate or (1e-3 if shape == "tiny" else 2e-4),
            optimizer="adamw", lr_schedule="constant", warmup_steps=0, save_every=10**6, progress_bar=False,
            seed=seed, lora_r=8 if shape == "tiny" else 16, lora_alpha=16, bf16=False if fp32 else "auto",
        )
        patched, tokenizer = FastLlama.from_pretrained(base, max_seq_length=max_seq_length, dtype=dtype)
        rows, _ = build_rows(tokenizer, parity_conversations(), max_seq_length, pack=True)
        patched = FastLlama.get_peft_model(patched, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, random_state=seed,
                                           gradient_checkpointing=gradient_checkpointing)
        reference = _reference_model(base, cfg.lora_r, cfg.lora_alpha, seed, dtype)
        init_gap = max((a - b).abs().max().item() for a, b in zip(
            _lora_state(patched).values(), _lora_state(reference).values(), strict=True))
        from lookout.train.chat_data import IGNORE_INDEX, collate

        first = collate(rows[:micro_batch_size], tokenizer.pad_token_id)
        n_targets = max(1, int((first["labels"][:, 1:] != IGNORE_INDEX).sum()))
        grads = {name: _first_step_grads(model, first, device, n_targets, autocast=not fp32)
                 for name, model in (("patched", patched), ("reference", reference))}
        curves, weights = {}, {}
        for name, model in (("patched", patched), ("reference", reference)):
            result = train(model, rows, cfg, tmp / f"run-{name}", pad_token_id=tokenizer.pad_token_id)
            curves[name] = [r["loss"] for r in result.history]
            weights[name] = _lora_state(model)
        del patched, reference
        if fp32_truth is None:
            fp32_truth = device == "cuda" and not fp32
        if fp32_truth:
            truth = _reference_model(base, cfg.lora_r, cfg.lora_alpha, seed, torch.float32)
            grads["truth"] = _first_step_grads(truth, first, device, n_targets, autocast=False)
            result = train(truth, rows, cfg.model_copy(update={"bf16": False}), tmp / "run-truth",
                           pad_token_id=tokenizer.pad_token_id)
            curves["truth"] = [r["loss"] for r in result.history]
            weights["truth"] = _lora_state(truth)
            del truth
    rel = [abs(a - b) / abs(b) for a, b in zip(curves["patched"], curves["reference"], strict=True)]
    max_err = {}
    for k, ref in weights["reference"].items():
        max_err[k] = (weights["patched"][k] - ref).abs().max().item() / max(ref.abs().max().item(), 1e-12)
    fro_err = _rel_errors(weights["patched"], weights["reference"])
    weight_dist = _distribution(fro_err)
    b_keys = [k for k in grads["reference"] if "lora_B" in k]
    grad_b = _distribution(_rel_errors({k: grads["patched"][k] for k in b_keys},
                                       {k: grads["reference"][k] for k in b_keys}))
    grad_a_max_abs = max(max(g.abs().max().item() for k, g in grads[side].items() if "lora_A" in k)
                         for side in ("patched", "reference"))
    bf16 = device == "cuda" and not fp32
    loss_ok = max(rel) <= LOSS_RTOL
    if bf16:
        grad_ok = grad_b["median"] <= GRAD_RTOL_BF16_MEDIAN and grad_b["max"] <= GRAD_RTOL_BF16_MAX
        grad_bars = {"median": GRAD_RTOL_BF16_MEDIAN, "max": GRAD_RTOL_BF16_MAX}
    else:
        grad_ok = grad_b["max"] <= GRAD_RTOL_FP32
        grad_bars = {"max": GRAD_RTOL_FP32}
    weights_ok = weight_dist["max"] <= BF16_RTOL
    noise = _noise_floor(grads, weights, curves, b_keys) if "truth" in grads else None
    if noise is not None and bf16:
        grad_ok = grad_ok or noise["grad_ok"]
        weights_ok = weights_ok or noise["weights_ok"]
    return {
        "shape": shape, "steps": steps, "device": device, "precision": "bf16" if bf16 else "fp32", "rows": len(rows),
        "init_lora_max_abs_diff": init_gap,
        "loss_patched": curves["patched"], "loss_reference": curves["reference"],
        "loss_max_rel_diff": max(rel), "loss_bar": LOSS_RTOL, "loss_ok": loss_ok,
        "grad_lora_B": grad_b, "grad_bars": grad_bars, "grad_ok": grad_ok, "grad_lora_A_max_abs": grad_a_max_abs,
        "lora_tensors": len(fro_err), "weights": weight_dist, "weights_bar": BF16_RTOL, "weights_ok": weights_ok,
        "weights_decide": not bf16,
        "lora_max_rel_fro_err": weight_dist["max"], "lora_worst_tensor": weight_dist["worst"],
        "lora_max_elem_err_of_scale": max(max_err.values()),
        "noise_floor": noise,
        "passed": loss_ok and grad_ok and (weights_ok or (bf16 and noise is None)),
    }


def _noise_floor(grads: dict, weights: dict, curves: dict, b_keys: list[str]) -> dict[str, Any]:
    """Both bf16 paths against the fp32 truth (see NOISE_FACTOR)."""
    out: dict[str, Any] = {"factor": NOISE_FACTOR}
    for measure, data, keys in (("grad_lora_B", grads, b_keys), ("weights", weights, list(weights["truth"]))):
        truth = {k: data["truth"][k] for k in keys}
        for side in ("patched", "reference"):
            out[f"{measure}_{side}"] = _distribution(_rel_errors({k: data[side][k] for k in keys}, truth))
        p, r = out[f"{measure}_patched"], out[f"{measure}_reference"]
        out[f"{measure}_ok"] = all(p[q] <= NOISE_FACTOR * r[q] for q in ("median", "max"))
    for side in ("patched", "reference"):
        out[f"loss_{side}_max_rel"] = max(abs(a - b) / abs(b) for a, b in zip(curves[side], curves["truth"], strict=True))
    out["grad_ok"], out["weights_ok"] = out.pop("grad_lora_B_ok"), out.pop("weights_ok")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="tiny", choices=["tiny", "llama-3.2-1b"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--gradient-checkpointing", default="offload", choices=["offload", "auto", "true", "false"])
    ap.add_argument("--fp32-truth", choices=["auto", "on", "off"], default="auto",
                    help="also train the reference in fp32 and measure both against it (auto: on a GPU)")
    ap.add_argument("--fp32", action="store_true", help="both models in fp32 without autocast (fp32 bars)")
    args = ap.parse_args(argv)
    gc = {"true": True, "false": False}.get(args.gradient_checkpointing, args.gradient_checkpointing)
    truth = {"auto": None, "on": True, "off": False}[args.fp32_truth]
    res = run_parity(args.shape, args.steps, max_seq_length=args.max_seq_length, gradient_checkpointing=gc,
                     fp32_truth=truth, fp32=args.fp32)
    print("PARITY " + json.dumps(res))
    g, w = res["grad_lora_B"], res["weights"]
    print(f"loss curves: max rel diff {res['loss_max_rel_diff']:.2e} (bar {LOSS_RTOL}): "
          f"{'ok' if res['loss_ok'] else 'FAIL'}")
    print(f"first-step lora_B gradients, rel Fro error over {g['n']} tensors: median {g['median']:.2e}, "
          f"p90 {g['p90']:.2e}, max {g['max']:.2e} ({g['worst']}); bars {res['grad_bars']}: "
          f"{'ok' if res['grad_ok'] else 'FAIL'}; lora_A first gradients max |g| {res['grad_lora_A_max_abs']:.1e}")
    print(f"LoRA weights after {res['steps']} steps, rel Fro error over {w['n']} tensors: median {w['median']:.2e}, "
          f"p90 {w['p90']:.2e}, max {w['max']:.2e} ({w['worst']}); bar {BF16_RTOL} on the max: "
          f"{'ok' if res['weights_ok'] else 'over'}"
          f"{'' if res['weights_decide'] else ' (reported, not decisive in bf16: see parity.py)'}")
    nf = res["noise_floor"]
    if nf:
        for m in ("grad_lora_B", "weights"):
            pt, rf = nf[f"{m}_patched"], nf[f"{m}_reference"]
            print(f"against fp32 truth, {m}: patched median {pt['median']:.2e} max {pt['max']:.2e}; HF bf16 median "
                  f"{rf['median']:.2e} max {rf['max']:.2e}: patched within {NOISE_FACTOR}x of HF's own error: "
                  f"{'ok' if nf['grad_ok' if m == 'grad_lora_B' else 'weights_ok'] else 'FAIL'}")
        print(f"against fp32 truth, loss curves: patched {nf['loss_patched_max_rel']:.2e}, "
              f"HF bf16 {nf['loss_reference_max_rel']:.2e}")
    print("PASS" if res["passed"] else "FAIL")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
