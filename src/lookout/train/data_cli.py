"""`lookout data generate`: write the robot-command dataset (train/val/test JSONL and its card)."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="The robot-command dataset.", no_args_is_help=True)


@data_app.command("generate")
def generate(
    out: Path = typer.Option(..., "--out", help="Folder for train.jsonl, val.jsonl, test.jsonl and README.md."),
    seed: int = typer.Option(0, help="Everything (rows, held-out pairs) is a pure function of the seed."),
    n_train: int = typer.Option(12000, "--n-train", min=1),
    n_val: int = typer.Option(400, "--n-val", min=1),
    n_test: int = typer.Option(500, "--n-test", min=1),
    capabilities: Path | None = typer.Option(None, help="Robot capabilities YAML (default: config/robot.yaml)."),
) -> None:
    """Generate conversations (commands -> plans) with held-out pairs and phrasings in test."""
    from lookout.agent.capabilities import Capabilities
    from lookout.train.data_gen import generate_dataset

    caps = Capabilities.from_yaml(capabilities) if capabilities else Capabilities.default()
    info = generate_dataset(out, seed=seed, sizes={"train": n_train, "val": n_val, "test": n_test}, caps=caps)
    counts = ", ".join(f"{k} {v}" for k, v in info.counts.items())
    typer.echo(f"wrote {counts} rows to {info.out_dir} (card: {info.out_dir / 'README.md'})")
