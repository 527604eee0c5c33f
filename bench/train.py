#!/usr/bin/env python3
"""QLoRA training throughput and memory: HF transformers+peft+bitsandbytes vs Lookout vs Unsloth.

One command on a GPU machine (see docs/benchmarks.md for the device command that carries wheels):

    python bench/train.py                      # throughput at 8x2048 and 2x2048, then longest sequence
    python bench/train.py --part throughput    # only the throughput table
    python bench/train.py --part maxseq        # only the longest sequence at batch 1 within 40 GB
    python bench/train.py profile --stack lookout-offload --batch 2 --steps 3   # host-time profile

It builds a model with Llama-3.2-1B's exact shape (random weights; nothing can be downloaded) and a
stand-in tokenizer, saves them once, then runs each (stack, batch) in its own Python process so
memory peaks and global patches stay separate. Every stack loads the model in 4-bit NF4 (double
quant, bf16 compute), adds LoRA r=16/alpha=16 on all seven projections, and runs the same loop as
the anchors (`/work/shared/anchors`): torch AdamW lr 2e-4, bf16 autocast, one fixed random batch,
labels = inputs, 3 warm-up steps then `--repeats` windows of 10 timed steps.

Stacks: `hf` (gradient checkpointing, non-reentrant), `lookout` (FastLlama's default,
`gradient_checkpointing="auto"`: offloaded checkpointing of only as many layers as its activation
budget needs, by default half the GPU), `lookout-budget` (the same with `--budget-gib` of activations),
`lookout-offload` (every layer offloaded), `lookout-gpu-ckpt` (every layer, checkpoints
kept on the GPU), `lookout-no-ckpt` (no recomputation: faster, more memory), `unsloth` (when its
wheels are importable; skipped otherwise). The table ends with ratios against `hf` and `unsloth`
measured in the same run. Every stack is put in training mode (`model.train()`): transformers 5
applies gradient checkpointing only in training mode. Each row records how many decoder layers
actually ran checkpointed in the last step (`ckpt_layers`), counted by a forward hook.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "kernels")]

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
STACKS = ("hf", "lookout", "lookout-budget", "lookout-offload", "lookout-gpu-ckpt", "lookout-no-ckpt", "unsloth")
LOOKOUT_CHECKPOINTING = {"lookout": "auto", "lookout-budget": "auto", "lookout-offload": "offload",
                         "lookout-gpu-ckpt": True, "lookout-no-ckpt": False}
GIB = 2**30


# ------------------------------------------------------------------------------------------ setup


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gib(reserved: bool = False) -> float:
    import torch

    if not torch.cuda.is_available():
        return 0.0
    return round((torch.cuda.max_memory_reserved() if reserved else torch.cuda.max_memory_allocated()) / GIB, 3)


def prep(model_dir: Path, shape: str) -> None:
    """Save the random model once; `--shape tiny` makes a CPU smoke run of this script possible."""
    import torch

    from lookout.train.standins import save_random_llama

    t0 = time.time()
    dtype = torch.bfloat16 if _device() == "cuda" else torch.float32
    save_random_llama(model_dir, shape=shape, seed=1234, dtype=dtype, device=_device())
    print(f"prep: saved {shape}-shaped random Llama to {model_dir} in {time.time() - t0:.1f} s", flush=True)


def load(stack: str, model_dir: Path, max_seq: int, budget_gib: float | None = None):
    import torch

    dtype = torch.bfloat16 if _device() == "cuda" else torch.float32
    device_map = {"": 0} if _device() == "cuda" else {"": "cpu"}

    if stack == "hf":
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, dtype=dtype,
                                                     device_map=device_map, local_files_only=True)
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        config = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none", target_modules=TARGETS,
                            task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
        model.train()  # from_pretrained returns eval mode, where transformers 5 skips checkpointing
        return model, {"gradient_checkpointing": "non-reentrant"}
    if stack.startswith("lookout"):
        from lookout.train.fast_llama import FastLlama
        from lookout.train.ops import available_kernels

        model, _ = FastLlama.from_pretrained(model_dir, max_seq_length=max_seq, dtype=dtype)
        gc_mode = LOOKOUT_CHECKPOINTING[stack]
        budget = budget_gib if stack == "lookout-budget" else None
        model = FastLlama.get_peft_model(model, r=16, lora_alpha=16, target_modules=TARGETS,
                                         gradient_checkpointing=gc_mode, random_state=3407, memory_budget_gib=budget)
        return model, {"kernels": available_kernels(), "gradient_checkpointing": gc_mode, "memory_budget_gib": budget}
    if stack == "unsloth":
        import unsloth  # noqa: F401  (must come before transformers and peft)
        from unsloth import FastLanguageModel

        model, _ = FastLanguageModel.from_pretrained(
            model_name=str(model_dir), max_seq_length=max_seq, dtype=torch.bfloat16, load_in_4bit=True,
            use_exact_model_name=True, local_files_only=True, offload_embedding=False, fix_tokenizer=False,
        )
        model = FastLanguageModel.get_peft_model(
            model, r=16, lora_alpha=16, lora_dropout=0.0, bias="none", target_modules=TARGETS,
            use_gradient_checkpointing="unsloth", random_state=3407, max_seq_length=max_seq,
        )
        FastLanguageModel.for_training(model)
        model.train()
        return model, {"unsloth_version": getattr(unsloth, "__version__", None)}
    raise ValueError(stack)


def checkpoint_counter(model):
    """Counts the decoder layers that run checkpointed in a forward (flag set and training mode).

    HF layers (and Unsloth's, which keep HF's layer class) checkpoint exactly when
    `gradient_checkpointing and training`; Lookout's "auto" policy may still run some of those layers
    plainly, so its own `last` decision is used where it exists."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]

    def count() -> dict:
        flagged = sum(bool(m.gradient_checkpointing and m.training) for m in layers)
        policy = getattr(model, "lookout_checkpoint_policy", None)
        if policy is not None and policy.last:
            flagged = policy.last["checkpointed_layers"]
        return {"ckpt_layers": flagged, "layers": len(layers), "training": model.training}

    return count


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    try:
        import bitsandbytes

        out["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        pass
    return out


# ------------------------------------------------------------------------------------- one process


def throughput(args) -> dict:
    import torch

    t0 = time.time()
    model, info = load(args.stack, args.model_dir, args.seq, args.budget_gib)
    model.train()
    count_ckpt = checkpoint_counter(model)
    load_s = time.time() - t0
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=2e-4)
    vocab = min(128000, model.config.vocab_size)
    x = torch.randint(0, vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(_device())
    on_gpu = _device() == "cuda"
    mem_after_load = torch.cuda.memory_allocated() if on_gpu else 0
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(_device(), dtype=torch.bfloat16, enabled=on_gpu):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    losses = [step() for _ in range(args.warmup)]
    _sync()
    windows = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        losses += [step() for _ in range(args.steps)]
        _sync()
        windows.append(time.perf_counter() - t)
    tokens = args.batch * args.seq * args.steps
    dt = statistics.median(windows)
    losses = [round(float(v), 4) for v in losses]
    return dict(
        mode="throughput", stack=args.stack, batch=args.batch, seq=args.seq, steps=args.steps, warmup=args.warmup,
        tokens_per_s=round(tokens / dt, 1), tokens_per_s_windows=[round(tokens / w, 1) for w in windows],
        step_ms=round(1000 * dt / args.steps, 1),
        peak_alloc_gib=_peak_gib(), peak_reserved_gib=_peak_gib(reserved=True),
        alloc_after_load_gib=round(mem_after_load / GIB, 3), **count_ckpt(), loss_first=losses[0], loss_last=losses[-1],
        losses=losses, trainable_params=sum(p.numel() for p in trainable), load_s=round(load_s, 1),
        **info, **_versions(),
    )


def profile(args) -> dict:
    """Where a step's host time goes: torch.profiler over `--steps` steps after warm-up; prints the ops
    with the most self CPU time and counts the host-blocking CUDA calls (syncs, pageable copies)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model, info = load(args.stack, args.model_dir, args.seq, args.budget_gib)
    model.train()
    count_ckpt = checkpoint_counter(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    x = torch.randint(0, min(128000, model.config.vocab_size), (args.batch, args.seq),
                      generator=torch.Generator().manual_seed(0)).to(_device())

    def step():
        with torch.autocast(_device(), dtype=torch.bfloat16, enabled=_device() == "cuda"):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    _sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if _device() == "cuda" else [])
    t = time.perf_counter()
    with torch_profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        _sync()
    wall_ms = 1000 * (time.perf_counter() - t) / args.steps
    events = prof.key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60)
    print("\n".join("  " + line for line in table.splitlines()), flush=True)
    blocking = {e.key: e.count // args.steps for e in events
                if any(w in e.key for w in ("Synchronize", "cudaMemcpy", "HostAlloc", "FreeHost", "item",
                                            "_local_scalar_dense"))}
    gpu_ms = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1000 / args.steps
    return dict(mode="profile", stack=args.stack, batch=args.batch, seq=args.seq, wall_ms_per_step=round(wall_ms, 1),
                gpu_busy_ms_per_step=round(gpu_ms, 1), blocking_calls_per_step=blocking, **count_ckpt(), **info)


def max_seq(args) -> dict:
    """Longest sequence (multiple of 1024) whose training step fits in `--limit-gib` at batch 1."""
    import torch

    torch.cuda.set_per_process_memory_fraction(args.limit_gib * GIB / torch.cuda.get_device_properties(0).total_memory)
    model, info = load(args.stack, args.model_dir, args.max_len, args.budget_gib)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=2e-4)
    tried: dict[int, float | None] = {}

    def fits(n: int) -> bool:
        x = None
        try:
            torch.cuda.reset_peak_memory_stats()
            x = torch.randint(0, 128000, (1, n), device="cuda")
            for _ in range(2):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(input_ids=x, labels=x).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            tried[n] = round(torch.cuda.max_memory_allocated() / GIB, 2)
            ok = True
        except torch.cuda.OutOfMemoryError:
            tried[n] = None
            ok = False
        del x
        opt.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        verdict = f"fits, peak {tried[n]:.2f} GiB" if ok else "out of memory"
        print(f"  {args.stack}: seq {n}: {verdict}", flush=True)
        return ok

    good, bad, n = 0, None, 2048
    while n <= args.max_len and fits(n):  # double, then bisect between the last fit and the first miss
        good, n = n, n * 2
    bad = n if n <= args.max_len else None
    while bad is not None and bad - good > 1024:
        mid = (good + bad) // 2 // 1024 * 1024
        if fits(mid):
            good = mid
        else:
            bad = mid
    return dict(mode="maxseq", stack=args.stack, limit_gib=args.limit_gib, max_seq=good,
                capped_at_model_max=bad is None, peak_alloc_gib_at_max=tried.get(good), tried=tried, **info,
                **_versions())


# ------------------------------------------------------------------------------------------ driver


def _child(argv: list[str], timeout: int) -> dict | None:
    cmd = [sys.executable, __file__, *argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout} s: {' '.join(argv)}", flush=True)
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("  "):
            print(line, flush=True)
    rows = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not rows:
        print(f"  failed (rc={proc.returncode}): {' '.join(argv)}\n" + "\n".join(
            (proc.stdout + proc.stderr).splitlines()[-25:]), flush=True)
        return None
    return rows[-1]


def _have_unsloth() -> bool:
    import importlib.util

    return importlib.util.find_spec("unsloth") is not None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def report_throughput(rows: list[dict]) -> None:
    print("\n| config | stack | ckpt layers | tokens/s | windows tok/s | step ms | peak alloc GiB | peak reserved GiB "
          "| loss first | loss last |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in sorted({r["batch"] for r in rows}, reverse=True):
        by = {r["stack"]: r for r in rows if r["batch"] == b}
        for s in STACKS:
            if s in by:
                r = by[s]
                print(f"| {b}x{r['seq']} | {s} | {r.get('ckpt_layers', '?')}/{r.get('layers', '?')} | "
                      f"{r['tokens_per_s']:,.0f} | "
                      f"{' / '.join(f'{w:,.0f}' for w in r['tokens_per_s_windows'])} | {r['step_ms']} | "
                      f"{r['peak_alloc_gib']} | {r['peak_reserved_gib']} | {r['loss_first']} | {r['loss_last']} |")
        for s in LOOKOUT_CHECKPOINTING:
            if s not in by:
                continue
            for base in ("hf", "unsloth"):
                if base in by:
                    print(f"| {b}x{by[s]['seq']} | **{s} / {base}** | | "
                          f"**{_ratio(by[s]['tokens_per_s'], by[base]['tokens_per_s'])}** | | | "
                          f"**{_ratio(by[s]['peak_alloc_gib'], by[base]['peak_alloc_gib'])}** | | | |")
    print("\nTargets (issue 5): Lookout >= 2x HF tokens/s with <= 0.5x its peak memory, and ahead of Unsloth on both.")
    for b in sorted({r["batch"] for r in rows}, reverse=True):
        by = {r["stack"]: r for r in rows if r["batch"] == b}
        hf, us = by.get("hf"), by.get("unsloth")
        for name in LOOKOUT_CHECKPOINTING:
            lk = by.get(name)
            if not lk:
                continue
            verdicts = []
            if hf and hf["peak_alloc_gib"]:
                speed, mem = lk["tokens_per_s"] / hf["tokens_per_s"], lk["peak_alloc_gib"] / hf["peak_alloc_gib"]
                verdicts.append(f"vs HF {speed:.2f}x speed ({'met' if speed >= 2 else 'MISSED'}), "
                                f"{mem:.2f}x memory ({'met' if mem <= 0.5 else 'MISSED'})")
            if us:
                faster, leaner = lk["tokens_per_s"] > us["tokens_per_s"], lk["peak_alloc_gib"] < us["peak_alloc_gib"]
                verdicts.append(f"vs Unsloth faster: {'met' if faster else 'MISSED'}, "
                                f"leaner: {'met' if leaner else 'MISSED'}")
            if verdicts:
                print(f"  batch {b}, {name}: " + "; ".join(verdicts))


def report_maxseq(rows: list[dict]) -> None:
    print("\n| stack | longest seq at batch 1 within limit | peak alloc GiB there | limit GiB |")
    print("|---|---|---|---|")
    for r in rows:
        cap = " (model max)" if r["capped_at_model_max"] else ""
        print(f"| {r['stack']} | {r['max_seq']:,}{cap} | {r['peak_alloc_gib_at_max']} | {r['limit_gib']} |")


def drive(args) -> int:
    import torch

    if not torch.cuda.is_available() and args.shape != "tiny":
        print("bench/train.py needs a CUDA GPU (run it through the device tool); `--shape tiny` smoke-tests "
              "it on the CPU", file=sys.stderr)
        return 2
    if not (args.model_dir / "config.json").is_file():
        prep(args.model_dir, args.shape)
    stacks = [s for s in args.stacks.split(",") if s]
    if "unsloth" in stacks and not _have_unsloth():
        print("unsloth is not importable (carry its wheels, see bench/anchor_wheels.sh): skipping it", flush=True)
        stacks.remove("unsloth")
    common = ["--model-dir", str(args.model_dir), "--steps", str(args.steps), "--warmup", str(args.warmup),
              "--budget-gib", str(args.budget_gib)]
    results: dict[str, list[dict]] = {"throughput": [], "maxseq": []}
    out = Path(os.environ.get("OUT", "/tmp")) / "bench_train.json"
    if args.part in ("all", "throughput"):
        for b in [int(v) for v in args.batches.split(",")]:
            for s in stacks:
                print(f"=== throughput {s} batch {b} x {args.seq} ===", flush=True)
                r = _child(["one", "--stack", s, "--batch", str(b), "--seq", str(args.seq), "--repeats",
                            str(args.repeats), *common], timeout=args.timeout)
                if r:
                    print(f"  {r['tokens_per_s']:,.0f} tokens/s, peak {r['peak_alloc_gib']} GiB, "
                          f"{r.get('ckpt_layers')}/{r.get('layers')} layers checkpointed", flush=True)
                    results["throughput"].append(r)
                    out.write_text(json.dumps(results, indent=1))  # kept when a time limit ends the run early
        report_throughput(results["throughput"])
    if args.part in ("all", "maxseq") and not torch.cuda.is_available():
        print("the longest-sequence search needs a GPU (it caps GPU memory): skipped", flush=True)
    elif args.part in ("all", "maxseq"):
        for s in [s for s in args.maxseq_stacks.split(",") if s in stacks]:
            print(f"=== longest sequence {s} batch 1 within {args.limit_gib} GiB ===", flush=True)
            r = _child(["maxseq", "--stack", s, "--limit-gib", str(args.limit_gib), "--max-len", str(args.max_len),
                        *common], timeout=args.timeout * 2)
            if r:
                results["maxseq"].append(r)
        report_maxseq(results["maxseq"])
    out.write_text(json.dumps(results, indent=1))
    print(f"\nraw results: {out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", nargs="?", default="drive", choices=["drive", "prep", "one", "maxseq", "profile"])
    ap.add_argument("--part", default="all", choices=["all", "throughput", "maxseq"])
    ap.add_argument("--stacks", default=",".join(STACKS))
    ap.add_argument("--maxseq-stacks", default="hf,lookout,unsloth")
    ap.add_argument("--shape", default="llama-3.2-1b", choices=["llama-3.2-1b", "tiny"])
    ap.add_argument("--stack", choices=STACKS)
    ap.add_argument("--batches", default="8,2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit-gib", type=float, default=40.0)
    ap.add_argument("--max-len", type=int, default=131072, help="upper bound of the sequence search (model max)")
    ap.add_argument("--timeout", type=int, default=150, help="seconds per throughput process")
    ap.add_argument("--model-dir", type=Path, default=Path("/tmp/llama32_1b_rand"))
    ap.add_argument("--budget-gib", type=float, default=12.0,
                    help="activation budget of the lookout-budget stack (`gradient_checkpointing='auto'`)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    if args.cmd == "prep":
        prep(args.model_dir, args.shape)
    elif args.cmd == "one":
        print("RESULT " + json.dumps(throughput(args)), flush=True)
    elif args.cmd == "profile":
        if not (args.model_dir / "config.json").is_file():
            prep(args.model_dir, args.shape)
        print("RESULT " + json.dumps(profile(args)), flush=True)
    elif args.cmd == "maxseq":
        print("RESULT " + json.dumps(max_seq(args)), flush=True)
    else:
        return drive(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
