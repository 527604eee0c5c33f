"""Training checkpoints that resume exactly: adapter, optimizer, scheduler, RNG states, data position.

Layout: `<out>/checkpoints/step-000120/` holds a standard PEFT adapter (`adapter_model.safetensors`,
`adapter_config.json`) and `trainer_state.pt` (optimizer and scheduler state dicts, every RNG
state (one per rank in a multi-process run), the step, the log history and the run's fingerprint).
The data position is the step, in global units (`samples` = step x global batch rows): batches are a
pure function of (seed, step), see `loop.micro_batch_indices`, whatever the number of ranks.
Only rank 0 writes; every rank reads.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"


def capture_rng() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_for_rank(saved: dict[str, Any] | list[dict[str, Any]], rank: int, world_size: int,
                 reseed: int) -> dict[str, Any]:
    """The RNG state a resuming rank restores. A checkpoint holds one state per rank of the run that
    wrote it (a single dict for one process). Same number of ranks: each gets its own back (exact).
    Another number: rank 0 restores the writer's rank 0 (so one process resumes a 2-rank run exactly
    when nothing random differs between ranks), other ranks reseed torch deterministically."""
    states = saved if isinstance(saved, list) else [saved]
    if len(states) == world_size:
        return states[rank]
    state = dict(states[0])
    if rank:
        state["torch"] = torch.Generator().manual_seed(reseed * 1009 + rank).get_state()
    return state


def checkpoints_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = sorted(p for p in checkpoints_dir(out_dir).glob("step-*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None


def save_checkpoint(
    out_dir: str | Path, model: Any, optimizer: Any, scheduler: Any, trainer_state: dict[str, Any],
    rng: dict[str, Any] | list[dict[str, Any]], keep: int = 2,
) -> Path:
    """Write atomically (to a temporary folder, then rename) and keep the `keep` newest."""
    root = checkpoints_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{trainer_state['step']:06d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "trainer": trainer_state,
        },
        tmp / STATE_FILE,
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step-*"))[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load adapter weights, optimizer and scheduler in place; returns the saved trainer state and RNG."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    path = Path(path)
    device = next(p for p in model.parameters() if p.requires_grad).device
    weights = load_peft_weights(str(path), device=str(device))
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(f"checkpoint {path} does not match this model: unexpected keys {unexpected[:3]}")
    blob = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    return {"trainer": blob["trainer"], "rng": blob["rng"]}
