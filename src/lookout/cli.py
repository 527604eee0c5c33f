"""The `lookout` command line. Subcommands live next to the code they drive and register here."""

from __future__ import annotations

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
def demo() -> None:
    """Run the main demo (the best end-to-end run the installed stack offers)."""
    from lookout.doctor import print_report, run_checks

    typer.echo("The simulated closed-loop demo lands with the simulation issue; checking the stack end to end:")
    results = run_checks(skip_ros=False)
    print_report(results)
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


# Sub-command groups register below, one line each (e.g. `app.add_typer(data_app, name="data")`).
# --- sub-commands ---
app.add_typer(__import__("lookout.eval.cli", fromlist=["eval_app"]).eval_app, name="eval")
app.add_typer(__import__("lookout.models.cli", fromlist=["models_app"]).models_app, name="models")
app.add_typer(__import__("lookout.train.data_cli", fromlist=["data_app"]).data_app, name="data")
app.add_typer(__import__("lookout.sim.cli", fromlist=["app"]).app, name="sim")
app.command(name="train")(__import__("lookout.train.cli", fromlist=["train"]).train)


if __name__ == "__main__":
    app()
