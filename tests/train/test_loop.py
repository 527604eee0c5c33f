"""The training loop: accumulation normalisation, exact resume, NaN guard, logs and plot."""

from __future__ import annotations

import json

import pytest
import torch

from lookout.train.chat_data import build_rows
from lookout.train.config import TrainConfig
from lookout.train.loop import (
    NonFiniteLossError,
    ResumeError,
    TrainingInterrupted,
    micro_batch_indices,
    train,
)


def _lora(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _rows(tok, conversations, pack=False):
    rows, _ = build_rows(tok, conversations * 2, max_seq_length=256, pack=pack)
    return rows


def _cfg(**kw):
    base = dict(max_seq_length=256, micro_batch_size=2, grad_accum_steps=2, max_steps=6, learning_rate=5e-3,
                warmup_steps=1, save_every=3, progress_bar=False, seed=11)
    return TrainConfig(**{**base, **kw})


def test_accumulated_gradient_is_the_token_mean_however_the_batch_is_split(make_model, conversations, tmp_path):
    """One step over the same 4 rows of different lengths: 1 x 4, 2 x 2 and 4 x 1 micro-batches give the
    same loss and gradient norm only if every micro-batch divides by the whole step's target tokens."""
    seen = []
    for micro, accum in ((4, 1), (2, 2), (1, 4)):
        model, tok = make_model()
        rows = _rows(tok, conversations)[:4]
        cfg = _cfg(micro_batch_size=micro, grad_accum_steps=accum, max_steps=1, max_grad_norm=None,
                   optimizer="adamw")
        # the same rows in every split (order inside a step does not change the sum)
        assert sorted(sum(micro_batch_indices(0, len(rows), cfg), [])) == [0, 1, 2, 3]
        result = train(model, rows, cfg, tmp_path / f"run{micro}", pad_token_id=tok.pad_token_id)
        seen.append((result.history[0]["loss"], result.history[0]["grad_norm"]))
    for loss, norm in seen[1:]:
        assert loss == pytest.approx(seen[0][0], rel=1e-5)
        assert norm == pytest.approx(seen[0][1], rel=1e-4)
    lengths = sorted(len(r["input_ids"]) for r in rows)
    assert lengths[0] != lengths[-1]  # the split really changes padding and per-micro-batch token counts


def test_interrupted_run_resumes_to_the_same_weights_as_an_uninterrupted_one(make_model, conversations, tmp_path):
    """With LoRA dropout (RNG), bnb's 8-bit AdamW state and a cosine schedule all in play."""
    cfg = _cfg(lora_dropout=0.1, optimizer="adamw_8bit", lr_schedule="cosine", keep_checkpoints=2)
    model, tok = make_model(lora_dropout=0.1)
    rows = _rows(tok, conversations, pack=False)
    full = train(model, rows, cfg, tmp_path / "full", pad_token_id=tok.pad_token_id)
    expected = _lora(model)
    initial = _lora(make_model(lora_dropout=0.1)[0])
    assert all(not torch.equal(expected[k], initial[k]) for k in expected if "lora_B" in k)  # it trained

    def stop_at_4(record):
        if record["step"] == 4:
            raise KeyboardInterrupt

    model, tok = make_model(lora_dropout=0.1)
    with pytest.raises(TrainingInterrupted) as info:
        train(model, rows, cfg, tmp_path / "cut", pad_token_id=tok.pad_token_id, on_step_end=stop_at_4)
    assert info.value.step == 4 and info.value.checkpoint.name == "step-000004"
    kept = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert kept == ["step-000003", "step-000004"]  # periodic at 3, interrupt at 4

    model, tok = make_model(lora_dropout=0.1)  # a fresh process would start like this
    resumed = train(model, rows, cfg, tmp_path / "cut", pad_token_id=tok.pad_token_id, resume=True)
    assert resumed.steps == full.steps == 6
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    got = _lora(model)
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    log_lines = (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log_lines] == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_other_data_or_settings(make_model, conversations, tmp_path):
    model, tok = make_model()
    rows = _rows(tok, conversations)

    def stop_at_2(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(model, rows, _cfg(), tmp_path, pad_token_id=tok.pad_token_id, on_step_end=stop_at_2)
    with pytest.raises(ResumeError, match="rows differ"):
        train(model, rows[:-1], _cfg(), tmp_path, pad_token_id=tok.pad_token_id, resume=True)
    with pytest.raises(ResumeError, match="learning_rate"):
        train(model, rows, _cfg(learning_rate=1e-2), tmp_path, pad_token_id=tok.pad_token_id, resume=True)


class _PoisonEmbeddings:
    """Forward hook that turns the embeddings into NaN on chosen optimizer steps."""

    def __init__(self, model, bad_steps, micro_per_step):
        self.calls, self.bad, self.micro = 0, set(bad_steps), micro_per_step
        model.get_input_embeddings().register_forward_hook(self)

    def __call__(self, module, args, output):
        step = self.calls // self.micro + 1
        self.calls += 1
        return output * float("nan") if step in self.bad else output


def test_non_finite_steps_are_skipped_and_logged(make_model, conversations, tmp_path):
    model, tok = make_model()
    rows = _rows(tok, conversations)
    cfg = _cfg(max_steps=4, grad_accum_steps=1)
    _PoisonEmbeddings(model, bad_steps={2}, micro_per_step=1)
    before = {}

    def snapshot(record):
        before[record["step"]] = _lora(model)

    result = train(model, rows, cfg, tmp_path, pad_token_id=tok.pad_token_id, on_step_end=snapshot)
    assert [r["skipped"] for r in result.history] == [False, True, False, False]
    assert result.skipped_steps == 1 and result.steps == 4
    for k, v in before[1].items():  # the poisoned step changed nothing
        assert torch.equal(before[2][k], v)
    assert all(torch.isfinite(v).all() for v in before[4].values())
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_training_stops_after_too_many_consecutive_non_finite_steps(make_model, conversations, tmp_path):
    model, tok = make_model()
    _PoisonEmbeddings(model, bad_steps=range(1, 100), micro_per_step=1)
    with pytest.raises(NonFiniteLossError, match="3 consecutive"):
        train(model, _rows(tok, conversations), _cfg(max_steps=10, grad_accum_steps=1, max_bad_steps=3), tmp_path,
              pad_token_id=tok.pad_token_id)


def test_loss_falls_and_logs_are_written(make_model, conversations, tmp_path):
    model, tok = make_model(gradient_checkpointing="offload")
    rows = _rows(tok, conversations, pack=True)
    result = train(model, rows, _cfg(max_steps=12, learning_rate=1e-2, save_every=100), tmp_path,
                   pad_token_id=tok.pad_token_id)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0] - 0.5
    records = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert len(records) == 12 and {"loss", "lr", "grad_norm", "tokens_per_s", "memory_gb"} <= records[0].keys()
    assert records[0]["lr"] < records[1]["lr"] and records[-1]["lr"] < records[1]["lr"]  # warm-up, then cosine
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.tokens == sum(len(rows[i]["input_ids"]) for s in range(12)
                                for idx in micro_batch_indices(s, len(rows), _cfg()) for i in idx)


def test_config_loads_from_yaml_and_rejects_typos(tmp_path):
    from lookout.paths import config_dir

    assert TrainConfig.from_yaml(config_dir() / "train.yaml") == TrainConfig()
    (tmp_path / "c.yaml").write_text("train:\n  micro_batch_size: 4\n  lerning_rate: 1.0e-4\n")
    with pytest.raises(ValueError, match="lerning_rate"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("micro_batch_size: 4\ngradient_checkpointing: true\n")
    cfg = TrainConfig.from_yaml(tmp_path / "d.yaml", max_steps=7)
    assert cfg.micro_batch_size == 4 and cfg.gradient_checkpointing is True and cfg.max_steps == 7
