#!/usr/bin/env python3
"""FSDP trial: does bitsandbytes 4-bit + PEFT LoRA train under PyTorch FSDP with the pinned versions?

docs/multi_gpu.md names DDP as Lookout's multi-GPU path (a 4-bit 1B-8B base fits one H200) and FSDP
as the route for bases that do not fit one GPU. This script runs the documented FSDP-QLoRA recipe
(bitsandbytes `docs/source/fsdp_qlora.md`, PEFT's FSDP guide), without Lookout's fused kernels,
on a model of Llama-3.2-1B's exact shape (random weights), and reports whether it trains:

- 4-bit NF4 base with `bnb_4bit_quant_storage=bfloat16` (FSDP flattens only float tensors);
- PEFT LoRA r=16 on the seven projections, FSDP1 FULL_SHARD, HF gradient checkpointing, wrapped
  either by `peft.utils.other.fsdp_auto_wrap_policy` (`--wrap peft`, the documented recipe: each
  decoder layer and each LoRA linear its own unit, so trainable and frozen tensors never share a flat
  parameter, `use_orig_params=False`) or one unit per decoder layer (`--wrap layers`,
  `use_orig_params=True`);
- per step: loss, time; at the end: peak memory per GPU, whether LoRA B moved off zero on every
  rank, and whether rank 0 can gather the adapter's full state dict for saving.

    python bench/train_fsdp.py --gpus 1 2 --out fsdp.json

NVLink multicast stays off in every launched process (bench/torchrun_sweep.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from torchrun_sweep import add_sweep_args, run_sweep  # also turns NVLink multicast off

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def worker(args: argparse.Namespace) -> None:
    import functools

    import torch
    import torch.distributed as dist
    from peft import LoraConfig, get_peft_model
    from peft.utils.other import fsdp_auto_wrap_policy
    from torch.distributed.fsdp import FullStateDictConfig, ShardingStrategy, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(args.base, quantization_config=bnb, dtype=torch.bfloat16,
                                                 device_map={"": local})
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # FSDP1 flattens one dtype per unit: with LoRA inside the layer's unit, keep it in bf16 like the base.
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, target_modules=PROJECTIONS, task_type="CAUSAL_LM"),
                           autocast_adapter_dtype=args.wrap == "peft")
    if args.wrap == "peft":
        policy, orig_params = fsdp_auto_wrap_policy(model), False
    else:  # one unit per decoder layer, LoRA inside it: fewer, larger collectives
        policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={LlamaDecoderLayer})
        orig_params = True  # frozen and trainable tensors share a unit
    model = FSDP(model, auto_wrap_policy=policy, use_orig_params=orig_params, device_id=local,
                 sharding_strategy=ShardingStrategy.FULL_SHARD, limit_all_gathers=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    per_rank = args.global_micro // world
    steps = []
    torch.cuda.reset_peak_memory_stats()
    for step in range(args.warmup + args.steps):
        batch = torch.randint(0, model.config.vocab_size, (args.global_micro, args.micro, args.seq), generator=gen)
        torch.cuda.synchronize()
        start = time.perf_counter()
        total = torch.zeros((), device="cuda")
        for m in range(rank * per_rank, (rank + 1) * per_rank):
            ids = batch[m].cuda()
            loss = model(input_ids=ids, labels=ids).loss / args.global_micro
            loss.backward()
            total += loss.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dist.all_reduce(total)
        torch.cuda.synchronize()
        steps.append({"step": step, "loss": total.item(), "seconds": time.perf_counter() - start})
    peak = torch.cuda.max_memory_allocated() / 2**30
    with FSDP.summon_full_params(model):
        moved = all(float(p.detach().abs().sum()) > 0 for n, p in model.named_parameters() if "lora_B" in n)
    cfg = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, cfg):
        state = model.state_dict()
    lora_keys = sum(1 for k in state if "lora_" in k)
    gathered = [None] * world
    dist.all_gather_object(gathered, {"peak_gb": peak, "lora_b_moved": moved})
    if rank == 0:
        timed = steps[args.warmup:]
        seconds = sum(s["seconds"] for s in timed)
        tokens = args.global_micro * args.micro * args.seq * len(timed)
        Path(args.result).write_text(json.dumps({
            "gpus": world, "wrap": args.wrap, "tokens_per_s": tokens / seconds, "step_s": seconds / len(timed),
            "losses": [round(s["loss"], 4) for s in steps], "peak_gb_per_gpu": max(g["peak_gb"] for g in gathered),
            "lora_b_moved_on_every_rank": all(g["lora_b_moved"] for g in gathered),
            "adapter_tensors_gathered_on_rank0": lora_keys}))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_args(ap, steps=4)
    ap.add_argument("--wrap", default="peft", choices=["peft", "layers"],
                    help="peft: PEFT's policy (each LoRA linear its own unit, use_orig_params=False); "
                         "layers: one unit per decoder layer (use_orig_params=True)")
    ap.add_argument("--out", default="bench_train_fsdp.json")
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    rows = run_sweep(args, __file__, ["--wrap", args.wrap], check=False)
    print(f"\nFSDP1 ({args.wrap} wrap) + bnb 4-bit (bf16 storage) + PEFT LoRA r=16, "
          f"global batch {args.global_micro} x {args.micro} x {args.seq} tokens, {args.shape} shape")
    for r in rows:
        print(json.dumps(r))
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
