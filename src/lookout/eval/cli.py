"""`lookout eval ...`: score models on held-out data; prints tables and writes a JSON report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

eval_app = typer.Typer(help="Evaluate models on held-out data.", no_args_is_help=True)


@eval_app.command("agent")
def agent(
    profile: str = typer.Option("tiny", help="Model profile from models/registry.yaml."),
    data: Path | None = typer.Option(None, help="Test JSONL (default: regenerate the test split of the profile's "
                                     "dataset from its seed)."),
    seed: int | None = typer.Option(None, help="Dataset seed when regenerating (default: the tiny build's seed)."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N test rows."),
    json_out: Path = typer.Option(Path("runs/eval/agent.json"), "--json", help="Where to write the JSON report."),
    grammar: bool = typer.Option(True, help="Grammar-constrained decoding (--no-grammar: plain greedy)."),
    four_bit: bool | None = typer.Option(None, "--4bit/--no-4bit", help="Override the profile's 4-bit loading."),
    threads: int = typer.Option(1, help="CPU threads while planning (0: torch default; 1 is fastest for tiny models)."),
    base: Path | None = typer.Option(None, help="Base model folder instead of the profile's."),
    adapter: Path | None = typer.Option(None, help="LoRA adapter folder instead of the profile's."),
    no_adapter: bool = typer.Option(False, "--no-adapter", help="Plan with the bare base (ignore the profile's adapter)."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                                help="Ask again below this plan confidence (default: "
                                                "config/agent.yaml's model.min_plan_confidence; 0: off)."),
) -> None:
    """Exact-match, per-field and multi-turn accuracy of the planner on the held-out test split."""
    from lookout.agent.capabilities import Capabilities
    from lookout.agent.config import AgentConfig
    from lookout.agent.planner import ModelNotFoundError
    from lookout.eval.agent_eval import evaluate, planner_fn, print_report, write_report
    from lookout.models.registry import ModelFileError, RegistryError
    from lookout.train.data_gen import load_rows

    caps = Capabilities.default()
    if data is None:
        rows = _regenerated_test_split(seed, caps)
    else:
        if not data.is_file():
            raise typer.BadParameter(f"{data} not found", param_hint="--data")
        rows = load_rows(data)
    if limit:
        rows = rows[:limit]
    try:
        fn, label = planner_fn(profile, constrained=grammar, load_in_4bit=four_bit, cpu_threads=threads, caps=caps,
                               base=str(base) if base else None,
                               adapter="" if no_adapter else (str(adapter) if adapter else None),
                               min_plan_confidence=AgentConfig.default().model.min_plan_confidence
                               if min_confidence is None else min_confidence)
    except (ModelFileError, RegistryError, ModelNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    report = evaluate(fn, rows, caps, profile=profile, decoding=label)
    report.settings = {"data": str(data) if data else "regenerated test split", "limit": limit, "grammar": grammar}
    print_report(report)
    write_report(report, json_out)
    typer.echo(f"report: {json_out}")


def _regenerated_test_split(seed: int | None, caps):  # noqa: ANN001, ANN202
    from lookout.models.tiny_build import read_build_info
    from lookout.train.data_gen import generate_dataset, load_rows

    info = read_build_info()
    sizes = info.get("dataset_sizes") if info else None
    seed = seed if seed is not None else (info.get("seed", 0) if info else 0)
    with tempfile.TemporaryDirectory() as tmp:
        out = generate_dataset(tmp, seed=seed, sizes=sizes, caps=caps, show_progress=False)
        return load_rows(out.files["test"])


eval_app.command("sim")(__import__("lookout.sim.cli", fromlist=["eval_sim"]).eval_sim)
eval_app.command("detector")(__import__("lookout.eval.detector", fromlist=["detector_command"]).detector_command)
