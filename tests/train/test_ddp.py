"""DDP on PyTorch's engine (torchrun, gloo on the CPU): 2 processes train the same LoRA weights as 1
process with the same global batch, and checkpoints move between 1 and 2 processes.

One torchrun launch runs all 2-process jobs (start-up is most of the cost on 2 cores): the first is
the `lookout train` command itself, the others `pipeline.run` (what it calls) with an interrupt hook;
the 1-process runs happen in this process. The base is the session's tiny 4-bit Llama (hidden 64,
2 layers); offloaded gradient checkpointing is on, torch AdamW (fp32) keeps the comparison tight.

Tolerance: LoRA weights within atol 2e-5 + rtol 1e-4 (fp32; the only difference between the runs is
the order of floating-point sums: per-rank partial gradients added by the all-reduce), losses within
rel 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lookout.train.config import TrainConfig
from lookout.train.loop import TrainingInterrupted
from lookout.train.pipeline import run

WORKER = Path(__file__).with_name("ddp_worker.py")
CONFIG = dict(max_seq_length=256, pack=False, micro_batch_size=1, grad_accum_steps=4, max_steps=4,
              learning_rate=5e-3, warmup_steps=1, lr_schedule="cosine", optimizer="adamw", lora_r=8,
              lora_alpha=16, gradient_checkpointing="offload", save_every=2, keep_checkpoints=2,
              progress_bar=False, seed=7)
ATOL, RTOL = 2e-5, 1e-4
STOP_AT = 2


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "adapter_model.safetensors")


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


def _stop_at(step: int):
    def hook(record):
        if record["step"] == step:
            raise KeyboardInterrupt
    return hook


@pytest.fixture(scope="module")
def runs(tiny_base, data_file, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    cfg = TrainConfig(**CONFIG)
    dirs = {name: root / name for name in ("one_full", "one_cut", "two_full", "two_cut")}
    run(tiny_base, data_file, dirs["one_full"], cfg)
    with pytest.raises(TrainingInterrupted):
        run(tiny_base, data_file, dirs["one_cut"], cfg, on_step_end=_stop_at(STOP_AT))
    yaml_config = root / "train.yaml"
    yaml_config.write_text(json.dumps({"train": CONFIG}))  # JSON is YAML
    jobs = [{"out": str(dirs["two_full"]), "stop_at": 0, "resume": False, "cli_config": str(yaml_config)},
            {"out": str(dirs["two_cut"]), "stop_at": STOP_AT, "resume": False},
            {"out": str(dirs["one_cut"]), "stop_at": 0, "resume": True}]  # 1-process checkpoint, 2 processes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(tiny_base), str(data_file), json.dumps(CONFIG), json.dumps(jobs)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert proc.stdout.count("adapter written to") == 1  # `lookout train` under torchrun: rank 0 reports
    dirs["two_cut_ckpt"] = sorted((dirs["two_cut"] / "checkpoints").glob("step-*"))[-1]
    run(tiny_base, data_file, dirs["two_cut"], cfg, resume=True)  # 2-process checkpoint, 1 process
    return dirs


def _assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=ATOL, rtol=RTOL, msg=lambda m, k=k: f"{k}: {m}")


def test_two_processes_train_the_same_lora_weights_as_one(runs, tiny_base):
    ref, two = _adapter(runs["one_full"]), _adapter(runs["two_full"])
    initial = _adapter(runs["two_cut_ckpt"])  # step 2: already moved away from the initial weights
    assert any(not torch.allclose(ref[k], initial[k], atol=1e-4) for k in ref)  # training changed the weights
    _assert_same_weights(two, ref)
    assert _losses(runs["two_full"]) == pytest.approx(_losses(runs["one_full"]), rel=1e-5)
    summary = json.loads((runs["two_full"] / "training_summary.json").read_text())
    assert summary["processes"] == 2 and summary["metrics"]["steps"] == CONFIG["max_steps"]
    # rank 0 alone wrote the log: one line per step, not one per rank
    assert [json.loads(x)["step"] for x in (runs["two_full"] / "train_log.jsonl").read_text().splitlines()] == [
        1, 2, 3, 4]


def test_checkpoint_of_two_processes_resumes_on_one(runs):
    blob = torch.load(runs["two_cut_ckpt"] / "trainer_state.pt", map_location="cpu", weights_only=False)
    rows_per_step = CONFIG["micro_batch_size"] * CONFIG["grad_accum_steps"]
    assert blob["trainer"]["world_size"] == 2
    assert blob["trainer"]["samples"] == STOP_AT * rows_per_step  # data position in global rows
    assert isinstance(blob["rng"], list) and len(blob["rng"]) == 2  # one RNG state per rank
    _assert_same_weights(_adapter(runs["two_cut"]), _adapter(runs["one_full"]))
    assert _losses(runs["two_cut"]) == pytest.approx(_losses(runs["one_full"]), rel=1e-5)


def test_checkpoint_of_one_process_resumes_on_two(runs):
    summary = json.loads((runs["one_cut"] / "training_summary.json").read_text())
    assert summary["processes"] == 2  # the resume really ran on 2 processes
    _assert_same_weights(_adapter(runs["one_cut"]), _adapter(runs["one_full"]))
    assert _losses(runs["one_cut"]) == pytest.approx(_losses(runs["one_full"]), rel=1e-5)


def test_launcher_env_and_world_size_checks(monkeypatch):
    from lookout.train.distributed import DistInfo, WorldSizeError, check_world_size, env_info

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert env_info() == DistInfo() and not env_info().enabled  # no launcher: one plain process
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_info() == DistInfo(rank=5, world_size=4, local_rank=1) and not env_info().is_main
    check_world_size(8, 4)
    with pytest.raises(WorldSizeError, match="multiple of 3"):
        check_world_size(4, 3)


def test_rng_states_follow_the_ranks():
    from lookout.train.checkpoint import capture_rng, rng_for_rank

    states = [capture_rng(), {**capture_rng(), "torch": torch.Generator().manual_seed(5).get_state()}]
    assert torch.equal(rng_for_rank(states, 1, 2, reseed=3)["torch"], states[1]["torch"])  # same N: own state
    assert torch.equal(rng_for_rank(states, 0, 1, reseed=3)["torch"], states[0]["torch"])  # fewer: rank 0's
    single = rng_for_rank(states[0], 1, 2, reseed=3)["torch"]  # more ranks: rank > 0 reseeds, deterministically
    assert not torch.equal(single, states[0]["torch"])
    assert torch.equal(single, rng_for_rank(states[0], 1, 2, reseed=3)["torch"])
