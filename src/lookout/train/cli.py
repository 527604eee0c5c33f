"""`lookout train`: a thin typer layer over `lookout.train.pipeline.run` that turns failures into advice."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

EXIT_BAD_INPUT, EXIT_OOM, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 4, 130


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=code)


def train(
    base: Path = typer.Option(..., "--base", help="Base model folder (save_pretrained output) or cached hub id."),
    data: Path = typer.Option(..., "--data", help='JSONL file, one {"messages": [...]} conversation per line.'),
    out: Path = typer.Option(..., "--out", help="Output folder for the adapter, model card, logs and checkpoints."),
    config: Path | None = typer.Option(None, "--config", help="YAML settings (see config/train.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Override the number of optimizer steps."),
) -> None:
    """Train a LoRA adapter on chat data (4-bit base model, Lookout's kernels); Ctrl-C saves a checkpoint.

    Multi-GPU: run the same command under `torchrun --nproc_per_node=N` (or `accelerate launch`).
    """
    from pydantic import ValidationError

    from lookout.train.chat_data import ChatTemplateError, DataFormatError
    from lookout.train.config import TrainConfig
    from lookout.train.distributed import WorldSizeError
    from lookout.train.fast_llama import BaseModelNotFoundError, UnsupportedModelError
    from lookout.train.loop import NonFiniteLossError, ResumeError, TrainingInterrupted
    from lookout.train.pipeline import OutputExistsError, run

    try:
        overrides = {"max_steps": max_steps} if max_steps else {}
        cfg = TrainConfig.from_yaml(config, **overrides) if config else TrainConfig(**overrides)
    except (FileNotFoundError, ValueError, ValidationError) as exc:
        raise _fail(f"bad --config: {exc}", EXIT_BAD_INPUT) from None

    import torch

    from lookout.train.distributed import env_info

    main = env_info().is_main  # under torchrun / accelerate launch only rank 0 speaks
    try:
        summary = run(base, data, out, cfg, resume=resume)
    except (BaseModelNotFoundError, UnsupportedModelError, DataFormatError, ChatTemplateError,
            OutputExistsError, ResumeError, WorldSizeError, FileNotFoundError) as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    except torch.cuda.OutOfMemoryError:
        raise _fail(
            f"out of GPU memory at micro_batch_size={cfg.micro_batch_size}, max_seq_length={cfg.max_seq_length}. "
            f"Try micro_batch_size: {max(1, cfg.micro_batch_size // 2)} with grad_accum_steps: "
            f"{cfg.grad_accum_steps * 2} (same effective batch), a smaller max_seq_length, or "
            "gradient_checkpointing: offload, in a --config YAML.",
            EXIT_OOM,
        ) from None
    except NonFiniteLossError as exc:
        raise _fail(str(exc), EXIT_DIVERGED) from None
    except TrainingInterrupted as exc:
        argv = ["lookout", "train", "--base", str(base), "--data", str(data), "--out", str(out)]
        if config:
            argv += ["--config", str(config)]
        if max_steps:
            argv += ["--max-steps", str(max_steps)]
        if main:
            typer.secho(f"{exc}", fg=typer.colors.YELLOW, err=True)
            typer.echo(f"resume with (same launcher, any number of processes dividing grad_accum_steps):\n"
                       f"  {shlex.join([*argv, '--resume'])}", err=True)
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    m = summary["metrics"]
    if not main:
        return
    typer.echo(
        f"adapter written to {out} ({m['steps']} steps, final loss {m['final_loss']:.4f}, "
        f"{m['tokens_per_s']:,.0f} tokens/s, peak memory {m['peak_memory_gb']:.2f} GiB)"
    )


app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
app.command()(train)

if __name__ == "__main__":
    sys.exit(app())
