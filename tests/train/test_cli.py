"""`lookout train`: adapter + model card on success, and advice instead of tracebacks on failure."""

from __future__ import annotations

import functools
import json
import os
import signal

import pytest
from typer.testing import CliRunner

from lookout.cli import app
from lookout.train import pipeline
from lookout.train.chat_data import file_sha256


@pytest.fixture()
def small_config(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("train:\n  max_seq_length: 256\n  micro_batch_size: 2\n  grad_accum_steps: 1\n"
                    "  learning_rate: 5.0e-3\n  save_every: 2\n  progress_bar: false\n  lora_r: 8\n")
    return path


def _invoke(*args):
    return CliRunner().invoke(app, ["train", *map(str, args)])


def test_train_writes_a_loadable_adapter_and_a_model_card(tiny_base, data_file, small_config, tmp_path):
    out = tmp_path / "adapter"
    result = _invoke("--base", tiny_base, "--data", data_file, "--out", out, "--config", small_config,
                     "--max-steps", 3)
    assert result.exit_code == 0, result.output
    assert "adapter written to" in result.output
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "train_log.jsonl", "loss.png",
                 "training_summary.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    summary = json.loads((out / "training_summary.json").read_text())
    assert file_sha256(data_file) in card and str(tiny_base) in card
    assert summary["metrics"]["steps"] == 3 and f"{summary['metrics']['final_loss']:.4f}" in card
    assert summary["settings"]["lora_r"] == 8 and json.loads((out / "adapter_config.json").read_text())["r"] == 8

    again = _invoke("--base", tiny_base, "--data", data_file, "--out", out)  # never overwrite a run
    assert again.exit_code == 2 and "--resume" in again.output


def test_bad_inputs_exit_with_a_clear_message(tiny_base, data_file, tmp_path):
    missing = _invoke("--base", tmp_path / "nope", "--data", data_file, "--out", tmp_path / "o1")
    assert missing.exit_code == 2 and "base model folder" in missing.output and "not found" in missing.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text(data_file.read_text().splitlines()[0] + "\n" + '{"messages": [{"role": "user"}]}\n')
    wrong = _invoke("--base", tiny_base, "--data", bad, "--out", tmp_path / "o2")
    assert wrong.exit_code == 2 and f"{bad}:2:" in wrong.output and "message 0" in wrong.output
    assert not (tmp_path / "o2").exists()  # failed before anything was written

    typo = tmp_path / "typo.yaml"
    typo.write_text("micro_batch_sise: 2\n")
    cfg = _invoke("--base", tiny_base, "--data", data_file, "--out", tmp_path / "o3", "--config", typo)
    assert cfg.exit_code == 2 and "micro_batch_sise" in cfg.output

    nothing = _invoke("--base", tiny_base, "--data", data_file, "--out", tmp_path / "o4", "--resume")
    assert nothing.exit_code == 2 and "nothing to resume" in nothing.output


def test_out_of_memory_suggests_a_smaller_batch(tiny_base, data_file, small_config, tmp_path, monkeypatch):
    import torch

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(pipeline, "run", oom)
    result = _invoke("--base", tiny_base, "--data", data_file, "--out", tmp_path / "o", "--config", small_config)
    assert result.exit_code == 3
    assert "micro_batch_size: 1" in result.output and "grad_accum_steps: 2" in result.output
    assert "max_seq_length" in result.output


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run(tiny_base, data_file, small_config, tmp_path,
                                                               monkeypatch):
    out = tmp_path / "run"

    def press_ctrl_c(record):
        if record["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # handled by the loop: stop at the step boundary

    monkeypatch.setattr(pipeline, "run", functools.partial(pipeline.run, on_step_end=press_ctrl_c))
    args = ["--base", tiny_base, "--data", data_file, "--out", out, "--config", small_config, "--max-steps", 4]
    first = _invoke(*args)
    assert first.exit_code == 130, first.output
    assert "checkpoint saved" in first.output and "--resume" in first.output
    assert (out / "checkpoints" / "step-000002").is_dir() and not (out / "adapter_config.json").exists()
    monkeypatch.undo()

    second = _invoke(*args, "--resume")
    assert second.exit_code == 0, second.output
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["metrics"]["steps"] == 4
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
