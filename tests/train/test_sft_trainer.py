"""The patched model is still a normal PEFT model: TRL's SFTTrainer trains it.

TRL 1.15's SFTTrainer always scores tokens with its own Triton kernel (a fused LM head), which on a
machine without a GPU runs only under Triton's CPU interpreter, and Triton reads TRITON_INTERPRET
when a kernel module is imported and again when it runs. So the trainer runs in a child process with
it set, and Lookout's kernels are told that Triton is unavailable, so they take their PyTorch reference
path as on any CPU (interpreting them too would make this test take minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys, torch
torch.set_num_threads(1)
from datasets import Dataset
from trl import SFTConfig, SFTTrainer
import lookout_kernels._common
lookout_kernels._common.available = lambda: False
from lookout.train import ops
from lookout.train.fast_llama import FastLlama

base, out, packing, conversations = sys.argv[1], sys.argv[2], sys.argv[3] == "1", json.loads(sys.argv[4])
model, tok = FastLlama.from_pretrained(base, max_seq_length=256)
model = FastLlama.get_peft_model(model, r=8, lora_alpha=16, random_state=0, gradient_checkpointing="offload")
calls = {"lora_mlp": 0, "apply_rope": 0}
for name in calls:
    def counted(*a, _name=name, _fn=getattr(ops, name), **k):
        calls[_name] += 1
        return _fn(*a, **k)
    setattr(ops, name, counted)
before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
args = SFTConfig(
    output_dir=out, max_steps=2, per_device_train_batch_size=1, learning_rate=5e-3, logging_steps=1,
    save_strategy="no", report_to="none", use_cpu=True, bf16=False, max_length=96, packing=packing,
    gradient_checkpointing=False,  # keep FastLlama's own (offloaded) checkpointing
    dataloader_num_workers=0, disable_tqdm=True,
)
dataset = Dataset.from_list([{"messages": c} for c in conversations])
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
trainer.train()
model.save_pretrained(out + "/adapter")
print("RESULT " + json.dumps({
    "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
    "calls": calls, "layers": model.config.num_hidden_layers,
    "changed": sum(not torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad),
    "trainable": len(before),
}))
"""


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_sft_trainer_trains_the_patched_model(tiny_base, conversations, tmp_path, packing):
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_base), str(tmp_path), "1" if packing else "0",
         json.dumps(conversations)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert len(res["losses"]) == 2 and all(0 < loss < 20 for loss in res["losses"])
    assert res["calls"]["lora_mlp"] >= 2 * res["layers"] and res["calls"]["apply_rope"] > 0  # patched path ran
    assert res["changed"] == res["trainable"]  # every LoRA tensor was updated
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size > 0
