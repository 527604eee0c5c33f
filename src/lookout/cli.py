"""The `lookout` command line. Subcommands live next to the code they drive and register here."""

from __future__ import annotations

from pathlib import Path

import typer

from lookout import __version__

app = typer.Typer(
    name="lookout",
    help="Lookout: open-vocabulary perception and a language agent for ROS 2, with a fast QLoRA trainer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lookout {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Lookout command line."""


@app.command()
def doctor(
    skip_ros: bool = typer.Option(False, help="Skip the DDS round trip (e.g. outside the sourced workspace)."),
) -> None:
    """Check that every part of the stack works on this machine and print a table."""
    from lookout.doctor import print_report, run_checks

    results = run_checks(skip_ros=skip_ros)
    print_report(results)
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for demo.mp4, trajectory.png, summary.json."),
    seed: int = typer.Option(111, help="Scene seed."),
    profile: str = typer.Option("tiny", help="Model profile from models/registry.yaml."),
    target: list[str] = typer.Option(["red ball", "blue box"], "--target",
                                     help="The two objects to visit (placed in the scene); repeat twice."),
    camera_hz: float = typer.Option(10.0, min=1.0, help="Camera frames per simulated second."),
    ros: bool = typer.Option(False, "--ros", help="Through the ROS 2 nodes of launch/sim.launch.yaml over DDS, "
                             "in real time, instead of the in-process closed loop."),
) -> None:
    """Simulated closed loop with the tiny models: a short dialogue, a video, a trajectory plot."""
    from lookout.demo import run_demo
    from lookout.models.registry import ModelFileError, RegistryError

    try:
        summary = run_demo(out, seed=seed, profile=profile, camera_hz=camera_hz, targets=tuple(target), ros=ros)
    except (ModelFileError, RegistryError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    if not summary["all_checks_passed"]:
        typer.echo(f"not every command did what was asked: {summary['reason']}")


# Sub-command groups register below, one line each (e.g. `app.add_typer(data_app, name="data")`).
# --- sub-commands ---
app.command("run")(__import__("lookout.run_cli", fromlist=["run"]).run)
app.add_typer(__import__("lookout.eval.cli", fromlist=["eval_app"]).eval_app, name="eval")
app.add_typer(__import__("lookout.models.cli", fromlist=["models_app"]).models_app, name="models")
app.add_typer(__import__("lookout.train.data_cli", fromlist=["data_app"]).data_app, name="data")
app.add_typer(__import__("lookout.sim.cli", fromlist=["app"]).app, name="sim")
app.command(name="train")(__import__("lookout.train.cli", fromlist=["train"]).train)


if __name__ == "__main__":
    app()
