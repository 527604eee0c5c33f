"""The training loop: small enough to read in one screen (nanoGPT's spirit), exact to resume.

One optimizer step = `grad_accum_steps` micro-batches. Each micro-batch's loss is its summed
token cross-entropy divided by the number of target tokens in the WHOLE accumulated batch
(HF's `num_items_in_batch`), so the accumulated gradient is the gradient of the mean over all
target tokens, whatever the padding or packing of each micro-batch.

Under torchrun (N ranks) the step's global batch is the same `grad_accum_steps` micro-batches of
`micro_batch_size` rows as in one process; rank r runs micro-batches r, r+N, ... (N must divide
`grad_accum_steps`). Each rank divides by the all-reduced GLOBAL target count and scales by N to undo
DDP's gradient averaging, so the synchronized gradient, the clipping and the update equal one process
with the same global batch; checkpoints (rank 0 only) hold the position in global units (the step)
and resume on any N that divides `grad_accum_steps`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import signal
import time
import warnings
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lookout.train import checkpoint as ckpt
from lookout.train import distributed as dist_util
from lookout.train.chat_data import IGNORE_INDEX, Row, collate
from lookout.train.config import TrainConfig

log = logging.getLogger(__name__)

# Settings that change the trajectory: a resumed run must use the same ones.
_TRAJECTORY_FIELDS = (
    "micro_batch_size", "grad_accum_steps", "epochs", "max_steps", "learning_rate", "weight_decay",
    "adam_betas", "optimizer", "lr_schedule", "warmup_steps", "warmup_ratio", "max_grad_norm", "bf16", "seed",
)


class TrainingInterrupted(RuntimeError):
    """Ctrl-C during training: a checkpoint was saved, and `--resume` continues from it."""

    def __init__(self, checkpoint: Path, step: int) -> None:
        super().__init__(f"interrupted after step {step}; checkpoint saved to {checkpoint}")
        self.checkpoint, self.step = checkpoint, step


class ResumeError(ValueError):
    """The checkpoint belongs to a run with other data or other trajectory settings."""


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a NaN/inf loss or gradient norm."""


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    tokens: int
    seconds: float
    tokens_per_s: float
    peak_memory_gb: float
    skipped_steps: int
    history: list[dict[str, Any]] = field(repr=False)
    log_path: Path | None = None
    plot_path: Path | None = None


def total_steps(n_rows: int, cfg: TrainConfig) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    micro_per_epoch = math.ceil(n_rows / cfg.micro_batch_size)
    return max(1, math.ceil(cfg.epochs * micro_per_epoch / cfg.grad_accum_steps))


def micro_batch_indices(step: int, n_rows: int, cfg: TrainConfig) -> list[list[int]]:
    """Row indices of each micro-batch of optimizer step `step`: a pure function of (seed, step)."""
    per_epoch = math.ceil(n_rows / cfg.micro_batch_size)
    out, perms = [], {}
    for k in range(step * cfg.grad_accum_steps, (step + 1) * cfg.grad_accum_steps):
        epoch, j = divmod(k, per_epoch)
        if epoch not in perms:
            perms[epoch] = torch.randperm(n_rows, generator=torch.Generator().manual_seed(cfg.seed + epoch))
        out.append(perms[epoch][j * cfg.micro_batch_size : (j + 1) * cfg.micro_batch_size].tolist())
    return out


def rows_fingerprint(rows: Sequence[Row]) -> str:
    """Identifies the training rows, so a resume cannot silently continue on other data."""
    h = hashlib.sha256()
    for r in rows:
        for key in ("input_ids", "labels", "position_ids"):
            h.update(array("q", r[key]).tobytes())
        h.update(b"|")
    return h.hexdigest()


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """bitsandbytes' 8-bit AdamW (its 0.50 build also runs on the CPU), or torch AdamW."""
    kw = dict(lr=cfg.learning_rate, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw_8bit":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, **kw)
        except (ImportError, RuntimeError) as exc:  # no bnb, or a build without this device
            log.warning("bitsandbytes AdamW8bit unavailable (%s); using torch AdamW", exc)
    return torch.optim.AdamW(params, **kw)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Any:
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=cfg.warmup_for(steps), num_training_steps=steps)


def _memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (peak RSS)


@contextlib.contextmanager
def _graceful_sigint() -> Iterator[dict[str, bool]]:
    """First Ctrl-C asks the loop to stop at the next step boundary; a second one interrupts now."""
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True
        log.warning("Ctrl-C: stopping after this step and saving a checkpoint (press again to abort now)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: keep the default behaviour
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def train(
    model: Any, rows: Sequence[Row], cfg: TrainConfig, out_dir: str | Path, pad_token_id: int,
    resume: bool = False, on_step_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train the trainable (LoRA) parameters of `model` on `rows`; checkpoints go under `out_dir`.

    Inside an initialised process group (see `distributed.init_from_env`) this is one rank of a DDP
    run: same arguments on every rank, logs, plot and checkpoints from rank 0 only.
    """
    from tqdm.auto import tqdm

    info = dist_util.current()
    main = info.is_main
    out_dir = Path(out_dir)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters: add LoRA with FastLlama.get_peft_model first")
    dist_util.check_world_size(cfg.grad_accum_steps, info.world_size)
    device = params[0].device
    steps = total_steps(len(rows), cfg)
    optimizer = make_optimizer(params, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps)
    use_bf16 = cfg.bf16 is True or (cfg.bf16 == "auto" and device.type == "cuda")
    fingerprint = rows_fingerprint(rows)
    state: dict[str, Any] = {"step": 0, "history": [], "bad_streak": 0, "tokens": 0, "seconds": 0.0,
                             "fingerprint": fingerprint, "config": cfg.model_dump(mode="json")}
    torch.manual_seed(cfg.seed + info.rank)  # ranks draw different dropout masks; rank 0 = one process
    if resume and (last := ckpt.latest_checkpoint(out_dir)) is not None:
        loaded = ckpt.load_checkpoint(last, model, optimizer, scheduler)
        _check_resumable(loaded["trainer"], fingerprint, cfg, last)
        state = loaded["trainer"]
        ckpt.restore_rng(ckpt.rng_for_rank(loaded["rng"], info.rank, info.world_size, cfg.seed + state["step"]))
        if main:
            log.info("resumed from %s (step %d of %d) on %d process(es)", last, state["step"], steps, info.world_size)
    log_path = out_dir / "train_log.jsonl"
    if main:
        log_path.write_text("".join(json.dumps(r) + "\n" for r in state["history"]))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    engine = dist_util.wrap_ddp(model, info) if info.enabled else model  # all-reduces LoRA grads only
    rng = ckpt.capture_rng()  # RNG as of the last completed step (what a checkpoint must hold)
    bar = tqdm(total=steps, initial=state["step"], disable=not (cfg.progress_bar and main), dynamic_ncols=True,
               unit="step")
    try:
        with _graceful_sigint() as sigint, (log_path.open("a") if main else contextlib.nullcontext()) as log_file:
            while state["step"] < steps:
                t0, lr = time.perf_counter(), scheduler.get_last_lr()[0]
                # ---- one optimizer step -------------------------------------------------------
                indices = micro_batch_indices(state["step"], len(rows), cfg)
                mine = indices[info.rank :: info.world_size]  # this rank's share of the global batch
                batches = [collate([rows[i] for i in idx], pad_token_id) for idx in mine]
                counts = torch.tensor([sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)])
                n_targets = int(dist_util.all_reduce_sum(counts).item())  # global, before any backward
                loss = torch.zeros((), device=device)
                for j, b in enumerate(batches):
                    b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
                    with dist_util.no_sync(engine, skip=j < len(batches) - 1):  # all-reduce on the last only
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                            micro_loss = engine(**b, use_cache=False, num_items_in_batch=max(n_targets, 1)).loss
                        (micro_loss * info.world_size if info.enabled else micro_loss).backward()  # DDP averages
                    loss += micro_loss.detach()
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or math.inf)  # synced grads
                stop = float(sigint["stop"])
                if info.enabled:  # the loss is a sum of per-rank parts; a Ctrl-C on any rank stops all
                    loss_val, stop = dist_util.all_reduce_sum(torch.tensor([loss.item(), stop])).tolist()
                    loss_val, norm_val = loss_val, norm.item()
                else:
                    loss_val, norm_val = torch.stack([loss.float(), norm.float()]).tolist()  # the one sync
                ok = math.isfinite(loss_val) and math.isfinite(norm_val)
                if ok:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                with warnings.catch_warnings():  # a skipped first step is not the misuse torch warns about
                    warnings.simplefilter("ignore", UserWarning)
                    scheduler.step()
                # ---- bookkeeping -----------------------------------------------------------------
                tokens = sum(len(rows[i]["input_ids"]) for idx in indices for i in idx)  # without padding
                dt = time.perf_counter() - t0
                state["step"] += 1
                state["tokens"] += tokens
                state["seconds"] += dt
                state["bad_streak"] = 0 if ok else state["bad_streak"] + 1
                record = {"step": state["step"], "loss": loss_val, "grad_norm": norm_val,
                          "lr": lr, "target_tokens": n_targets, "tokens": tokens,
                          "tokens_per_s": tokens / dt, "memory_gb": round(_memory_gb(device), 3), "skipped": not ok}
                state["history"].append(record)
                if main:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                rng = ckpt.capture_rng()
                bar.update(1)
                bar.set_postfix(loss=f"{loss_val:.4f}", tok_s=f"{tokens / dt:,.0f}", mem=f"{record['memory_gb']:.2f}G")
                if not ok:
                    log.warning("step %d: non-finite loss %s / grad norm %s; update skipped", state["step"], loss_val,
                                norm_val)
                    if state["bad_streak"] >= cfg.max_bad_steps:
                        raise NonFiniteLossError(
                            f"{state['bad_streak']} consecutive steps had a non-finite loss or gradient; stopping. "
                            "Lower learning_rate, or check the data and the base model's dtype."
                        )
                if state["step"] % cfg.save_every == 0 and state["step"] < steps:
                    _save(out_dir, model, optimizer, scheduler, state, rng, cfg)
                if on_step_end is not None:
                    on_step_end(record)
                if stop:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        optimizer.zero_grad(set_to_none=True)
        path = _save(out_dir, model, optimizer, scheduler, state, rng, cfg)
        raise TrainingInterrupted(path, state["step"]) from None
    finally:
        bar.close()
    plot_path = plot_losses(state["history"], out_dir / "loss.png") if main else None
    done = [r for r in state["history"] if not r["skipped"]]
    return TrainResult(
        steps=state["step"], final_loss=done[-1]["loss"] if done else float("nan"), tokens=state["tokens"],
        seconds=state["seconds"], tokens_per_s=state["tokens"] / max(state["seconds"], 1e-9),
        peak_memory_gb=max((r["memory_gb"] for r in state["history"]), default=0.0),
        skipped_steps=sum(r["skipped"] for r in state["history"]), history=state["history"],
        log_path=log_path, plot_path=plot_path,
    )


def _save(out_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any],
          rng: dict[str, Any], cfg: TrainConfig) -> Path:
    """Rank 0 writes the checkpoint (with every rank's RNG); the others wait until it is complete."""
    info = dist_util.current()
    rngs = dist_util.all_gather_objects(rng) if info.enabled else rng
    state["samples"] = state["step"] * cfg.grad_accum_steps * cfg.micro_batch_size  # global data position
    state["world_size"] = info.world_size
    path = ckpt.checkpoints_dir(out_dir) / f"step-{state['step']:06d}"
    if info.is_main:
        path = ckpt.save_checkpoint(out_dir, model, optimizer, scheduler, state, rngs, keep=cfg.keep_checkpoints)
    dist_util.barrier()
    return path


def _check_resumable(saved: dict[str, Any], fingerprint: str, cfg: TrainConfig, path: Path) -> None:
    if saved["fingerprint"] != fingerprint:
        raise ResumeError(f"cannot resume from {path}: the training rows differ from the interrupted run's "
                         "(other data, tokenizer, max_seq_length or packing)")
    now = cfg.model_dump(mode="json")
    changed = [k for k in _TRAJECTORY_FIELDS if saved["config"].get(k) != now.get(k)]
    if changed:
        raise ResumeError(f"cannot resume from {path}: settings changed since the run started: {', '.join(changed)}")


def plot_losses(history: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Loss per optimizer step (skipped steps marked) as a PNG; None when there is nothing to plot."""
    if not history:
        return None
    try:
        import matplotlib
    except ImportError:  # e.g. a bare GPU image: the JSONL log has the same numbers
        log.warning("matplotlib is not installed; no loss plot")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    good = [r for r in history if not r["skipped"]]
    ax.plot([r["step"] for r in good], [r["loss"] for r in good], lw=1.2, label="train loss")
    bad = [r["step"] for r in history if r["skipped"]]
    if bad:
        ax.scatter(bad, [good[-1]["loss"] if good else 0.0] * len(bad), marker="x", color="red", label="skipped")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean token cross-entropy)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
