"""`lookout run stack|sim|detector [arg:=value ...]`: a launch file's nodes in one process (no `ros2 launch`)."""

from __future__ import annotations

import typer


def run(
    stack: str = typer.Argument(..., help="stack (real robot: detector + agent), sim (simulator + stack) or detector."),
    args: list[str] = typer.Argument(None, help="Launch arguments name:=value, e.g. image:=/camera/image_raw."),
) -> None:
    """Start launch/STACK.launch.yaml's nodes in one MultiThreadedExecutor (same configs as ros2 launch)."""
    try:
        from lookout_ros.bringup import BringupError
        from lookout_ros.bringup import run as run_stack
    except ImportError as exc:
        typer.secho(f"error: the ROS workspace is not available ({exc}); run `. scripts/env.sh` first",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    from lookout.launch_file import LaunchFileError

    try:
        run_stack(stack, list(args or []))
    except (BringupError, LaunchFileError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
