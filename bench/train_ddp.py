#!/usr/bin/env python3
"""Multi-GPU scaling of `lookout train`'s loop (torchrun DDP over NCCL): tokens/s on 1 GPU vs N GPUs.

One command on a machine with >= 2 GPUs (bitsandbytes importable, e.g. carried as in docs/benchmarks.md):

    python bench/train_ddp.py --gpus 1 2

It saves a model with Llama-3.2-1B's exact shape (random weights; nothing can be downloaded) once,
then launches `torchrun --standalone --nproc_per_node=N` of this file's worker for each N. Every run
uses the same global batch: `--global-micro` micro-batches of `--micro` x `--seq` tokens per optimizer
step (so 1 GPU accumulates all of them, N GPUs split them), 4-bit NF4 base, LoRA r=16 on all seven
projections, Lookout's kernels, bnb 8-bit AdamW, bf16. Throughput counts the timed steps after
`--warmup` steps, summed over ranks (global tokens / wall time of a step). The table ends with the
speed-up against 1 GPU measured in the same run (target >= 1.8x on 2 GPUs).

NVLink multicast stays off in every launched process: NCCL_NVLS_ENABLE=0,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1 (set by bench/torchrun_sweep.py, inherited by
torchrun's workers).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from torchrun_sweep import add_sweep_args, run_sweep  # also turns NVLink multicast off


def worker(args: argparse.Namespace) -> None:
    """One rank: load the 4-bit base + LoRA on cuda:LOCAL_RANK, train, rank 0 writes the numbers."""
    import torch

    from lookout.train import distributed
    from lookout.train.config import TrainConfig
    from lookout.train.fast_llama import FastLlama
    from lookout.train.loop import train

    info, created = distributed.init_from_env()
    model, tok = FastLlama.from_pretrained(args.base, max_seq_length=args.seq)
    model = FastLlama.get_peft_model(model, r=16, lora_alpha=16, gradient_checkpointing=args.ckpt, random_state=0)
    gen = torch.Generator().manual_seed(0)
    n_rows = args.micro * args.global_micro * (args.warmup + args.steps)
    ids = torch.randint(0, model.config.vocab_size, (n_rows, args.seq), generator=gen).tolist()
    rows = [{"input_ids": r, "labels": r, "position_ids": list(range(args.seq))} for r in ids]
    cfg = TrainConfig(max_seq_length=args.seq, micro_batch_size=args.micro, grad_accum_steps=args.global_micro,
                      max_steps=args.warmup + args.steps, warmup_steps=1, save_every=10**6, progress_bar=False,
                      gradient_checkpointing=args.ckpt, bf16=True)
    with tempfile.TemporaryDirectory() as out:
        result = train(model, rows, cfg, out, pad_token_id=tok.pad_token_id or 0)
    timed = result.history[args.warmup:]
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in timed)
    peak = max(distributed.all_gather_objects(result.peak_memory_gb))  # GPU: max allocated; CPU: peak RSS
    if info.is_main:
        Path(args.result).write_text(json.dumps({
            "gpus": info.world_size, "tokens_per_s": sum(r["tokens"] for r in timed) / seconds,
            "step_s": seconds / len(timed), "final_loss": result.final_loss, "peak_gb_per_gpu": peak}))
    distributed.shutdown(created)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_args(ap, steps=6)
    ap.add_argument("--ckpt", default="offload", choices=["offload", "true", "false"])
    ap.add_argument("--out", default="bench_train_ddp.json")
    args = ap.parse_args()
    args.ckpt = {"true": True, "false": False}.get(args.ckpt, args.ckpt)
    if args.worker:
        return worker(args)

    rows = run_sweep(args, __file__, ["--ckpt", str(args.ckpt).lower()])
    one = next((r for r in rows if r["gpus"] == 1), rows[0])
    print(f"\nLoRA r=16, global batch {args.global_micro} x {args.micro} x {args.seq} tokens, {args.shape} shape")
    print(f"{'gpus':>4} | {'tokens/s':>10} | {'s/step':>7} | {'peak GB/GPU':>11} | {'speed-up':>8} | efficiency")
    for r in rows:
        speed = r["tokens_per_s"] / one["tokens_per_s"]
        print(f"{r['gpus']:>4} | {r['tokens_per_s']:>10,.0f} | {r['step_s']:>7.3f} | {r['peak_gb_per_gpu']:>11.2f} | "
              f"{speed:>7.2f}x | {speed / r['gpus'] * one['gpus']:.0%}")
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
