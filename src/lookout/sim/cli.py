"""`lookout sim ...`: render datasets, look at scenes, list suites, measure rendering speed.

Heavy imports (MuJoCo) happen inside the commands so that `lookout --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Simulator: datasets, scenes, scenario suites, speed.", no_args_is_help=True)

_CONFIG = typer.Option(None, "--config", help="Simulator YAML (default: config/sim.yaml).")


def _config(path: Path | None, width: int | None = None, height: int | None = None):
    from lookout.sim.config import SimConfig

    cfg = SimConfig.from_yaml(path) if path else SimConfig.default()
    if width or height:
        cam = cfg.camera.model_copy(update={k: v for k, v in (("width", width), ("height", height)) if v})
        cfg = cfg.model_copy(update={"camera": cam})
    return cfg


@app.command("render-dataset")
def render_dataset_cmd(
    out: Path = typer.Option(..., "--out", help="New (or empty) folder for the dataset."),
    n: int = typer.Option(1000, "--n", min=1, help="Number of images (train + val)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the scene sequence and the camera poses."),
    val_fraction: float = typer.Option(0.2, min=0.0, max=0.9, help="Share of scenes held out for validation."),
    images_per_scene: int = typer.Option(8, min=1, help="Camera poses rendered per scene."),
    width: int = typer.Option(None, help="Override camera.width."),
    height: int = typer.Option(None, help="Override camera.height."),
    image_format: str = typer.Option("jpg", help="jpg or png."),
    quality: int = typer.Option(92, min=1, max=100, help="JPEG quality."),
    max_side: int = typer.Option(None, help="Shrink images so the longer side is at most this (e.g. the "
                                            "detector's imgsz): smaller datasets, the same training input."),
    config: Path = _CONFIG,
) -> None:
    """Render a labelled detection dataset (Ultralytics YOLO format) from random scenes."""
    from tqdm import tqdm

    from lookout.sim.dataset import render_dataset

    cfg = _config(config, width, height)
    try:
        summary = render_dataset(out, n, seed, cfg, val_fraction=val_fraction, images_per_scene=images_per_scene,
                                 image_format=image_format, quality=quality, max_side=max_side,
                                 progress=lambda total: tqdm(total=total, desc="rendering", unit="img"))
    except (FileExistsError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    for split in ("train", "val"):
        typer.echo(f"{split}: {summary.images[split]} images, {summary.boxes[split]} boxes, "
                   f"{len(summary.scenes[split])} scenes")
    typer.echo(f"{len(summary.names)} classes; train with data={summary.data_yaml}")


@app.command()
def show(
    seed: int = typer.Option(0, help="Scene seed."),
    out: Path = typer.Option(Path("scene.png"), help="PNG to write (camera view with ground-truth boxes)."),
    config: Path = _CONFIG,
) -> None:
    """Render the start view of a scene with its ground-truth boxes and list its objects."""
    import imageio.v3 as iio
    import numpy as np

    from lookout.sim.sim import Sim

    with Sim(_config(config), seed=seed) as sim:
        image = sim.render()
        for b in sim.object_boxes():
            x0, y0, x1, y1 = (int(v) for v in b.xyxy)
            image[y0:y1, [x0, x1 - 1]] = (255, 0, 255)
            image[[y0, y1 - 1], x0:x1] = (255, 0, 255)
        iio.imwrite(out, np.ascontiguousarray(image))
        r = sim.pose
        typer.echo(f"seed {seed}: robot at ({r.x:.2f}, {r.y:.2f}) facing {np.degrees(r.yaw):.0f} deg")
        for o in sim.scene.objects:
            typer.echo(f"  {o.phrase:16s} at ({o.x:+.2f}, {o.y:+.2f}), {o.height:.2f} m tall")
    typer.echo(f"wrote {out}")


@app.command()
def suite(name: str = typer.Argument("public", help="Suite name (scenarios/NAME.yaml) or a path.")) -> None:
    """List a scenario suite: id, category, turns and checks."""
    from rich.console import Console
    from rich.table import Table

    from lookout.sim.scenario import load_suite

    s = load_suite(name)
    table = Table(title=f"suite {s.name}: {len(s.scenarios)} scenarios")
    for col in ("id", "category", "seed", "limit s", "turns and checks"):
        table.add_column(col)
    for sc in s.scenarios:
        turns = " | ".join(f"{t.say!r} -> " + ", ".join(c.describe() for c in t.expect) for t in sc.turns)
        table.add_row(sc.id, sc.category, str(sc.seed), f"{sc.time_limit_s:g}", turns)
    Console().print(table)


@app.command()
def fps(
    frames: int = typer.Option(60, min=5, help="Frames per measurement."),
    config: Path = _CONFIG,
) -> None:
    """Measure rendering speed at 320x240 and 640x480 and the closed-loop real-time factor on this machine."""
    from rich.console import Console
    from rich.table import Table

    from lookout.sim.bench import measure

    table = Table(title="simulator speed (one process, this machine)")
    for col in ("what", "value"):
        table.add_column(col)
    for what, value in measure(_config(config), frames=frames):
        table.add_row(what, value)
    Console().print(table)


def _run_over_ros(scenarios: list, profile: str, launch_args: list[str], progress: Any) -> list:
    """The suite through launch/sim.launch.yaml's nodes (the tiny profile is what that launch file loads)."""
    if profile != "tiny":
        raise typer.BadParameter("--ros runs launch/sim.launch.yaml, whose configs load the tiny profile; "
                                 "pass config files with --launch-arg for other models", param_hint="--profile")
    try:
        from lookout_ros.bringup import BringupError, parse_overrides
        from lookout_ros.scenario_runner import run_suite_over_ros
    except ImportError as exc:
        typer.secho(f"error: --ros needs the ROS 2 workspace ({exc}); run through scripts/run.sh after make setup",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    try:
        args = parse_overrides(launch_args)
    except BringupError as exc:
        raise typer.BadParameter(str(exc), param_hint="--launch-arg") from None
    return run_suite_over_ros(scenarios, args, progress=progress)


def eval_sim(
    suite: str = typer.Option("public", help="Suite name (scenarios/NAME.yaml) or a path."),
    profile: str = typer.Option("tiny", help="Model profile from models/registry.yaml."),
    out: Path = typer.Option(Path("runs/eval/sim.json"), "--out", help="Where to write the JSON report."),
    filter_: list[str] = typer.Option(None, "--filter", help="Only scenarios whose id or category contains this "
                                      "(repeatable)."),
    workers: int = typer.Option(1, min=1, help="Scenarios run in this many processes."),
    camera_hz: float = typer.Option(10.0, min=1.0, help="Camera frames (and control ticks) per simulated second."),
    perception: str = typer.Option("model", help="model (the profile's detector) or ground_truth (perfect boxes "
                                   "from segmentation: tells planner errors from detector errors)."),
    threads: int = typer.Option(0, help="Torch CPU threads per worker (0: default)."),
    min_score: float = typer.Option(None, min=0.0, max=1.0, help="Detector and agent score threshold (default: "
                                    "0.1 for the tiny profile, whose scores are low; else the configs)."),
    ros: bool = typer.Option(False, "--ros", help="Run through the ROS 2 nodes of launch/sim.launch.yaml over DDS "
                             "(real time; needs the sourced workspace) instead of the in-process loop."),
    launch_arg: list[str] = typer.Option(None, "--launch-arg", help="With --ros: name:=value for the launch file "
                                         "(repeatable), e.g. min_score:=0.35."),
) -> None:
    """Run a scenario suite headless through the closed loop; success rate, time to success, failures."""
    import json
    import statistics
    import time

    from rich.console import Console
    from rich.table import Table

    from lookout.models.registry import ModelFileError, RegistryError
    from lookout.sim.harness import TINY_MIN_SCORE, HarnessOptions, run_suite
    from lookout.sim.scenario import ScenarioError, load_suite

    if perception not in ("model", "ground_truth"):
        raise typer.BadParameter("must be model or ground_truth", param_hint="--perception")
    try:
        s = load_suite(suite)
    except (ScenarioError, FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--suite") from None
    scenarios = [sc for sc in s.scenarios if not filter_ or any(f in sc.id or f == sc.category for f in filter_)]
    if not scenarios:
        raise typer.BadParameter(f"no scenario of {s.name} matches {filter_}", param_hint="--filter")
    console = Console()
    opts = HarnessOptions(profile=profile, camera_hz=camera_hz, perception=perception,  # type: ignore[arg-type]
                          cpu_threads=threads,
                          min_score=min_score if min_score is not None else TINY_MIN_SCORE if profile == "tiny" else None)

    def progress(res, tim) -> None:  # noqa: ANN001
        mark = "[green]ok  [/]" if res.success else "[red]FAIL[/]"
        console.print(f"{mark} {res.scenario_id:<40} {res.time_s:6.1f} s sim, {tim['wall_s']:6.1f} s wall"
                      + ("" if res.success else f"  {res.reason}"), highlight=False)

    t0 = time.perf_counter()
    try:
        if ros:
            results = _run_over_ros(scenarios, profile, launch_arg or [], progress)
        else:
            results = run_suite(scenarios, opts, workers=workers, progress=progress)
    except (ModelFileError, RegistryError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    wall = time.perf_counter() - t0
    ok = [r for r, _ in results if r.success]
    sim_s = sum(t["sim_s"] for _, t in results)
    loop_s = sum(t["wall_s"] - t["plan_s"] for _, t in results)
    plan_s = sum(t["plan_s"] for _, t in results)
    by_cat: dict[str, list] = {}
    for r, _ in results:
        by_cat.setdefault(r.category, []).append(r)
    transport = "ROS 2 nodes over DDS" if ros else "in-process"
    table = Table(title=f"suite {s.name}, profile {profile}, perception {perception}, {transport}")
    for col in ("category", "scenarios", "success", "mean time to success (s)"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, rs in sorted(by_cat.items()):
        good = [r.time_s for r in rs if r.success]
        table.add_row(cat, str(len(rs)), f"{len(good)}/{len(rs)}", f"{statistics.fmean(good):.1f}" if good else "-")
    rate = len(ok) / len(results)
    mean_t = statistics.fmean(r.time_s for r in ok) if ok else None
    table.add_row("[b]all[/]", str(len(results)), f"[b]{len(ok)}/{len(results)} ({100 * rate:.1f}%)[/]",
                  f"{mean_t:.1f}" if mean_t is not None else "-")
    console.print(table)
    rtf = sim_s / loop_s if loop_s > 0 else float("inf")
    if ros:
        console.print(f"closed loop over ROS: {sim_s:.0f} s simulated in {loop_s:.0f} s wall (real-time factor "
                      f"{rtf:.2f}; the sim runs on while the planner thinks); total {wall:.0f} s")
    else:
        console.print(f"closed loop: {sim_s:.0f} s simulated in {loop_s:.0f} s wall (real-time factor {rtf:.2f}, "
                      f"camera {camera_hz:g} Hz, {workers} worker(s)); planning {plan_s:.0f} s wall (sim time "
                      f"stops while the planner thinks); total {wall:.0f} s")
    failures = [r for r, _ in results if not r.success]
    if failures:
        ft = Table(title="failures")
        ft.add_column("scenario")
        ft.add_column("category")
        ft.add_column("reason")
        for r in failures:
            ft.add_row(r.scenario_id, r.category, r.reason)
        console.print(ft)
    report = {
        "suite": s.name, "profile": profile, "perception": perception, "transport": "ros" if ros else "in-process",
        "launch_args": launch_arg or [] if ros else None, "min_score": None if ros else opts.min_score,
        "camera_hz": None if ros else camera_hz, "workers": 1 if ros else workers,
        "scenarios": len(results), "succeeded": len(ok), "success_rate": rate, "mean_time_to_success_s": mean_t,
        "realtime_factor": rtf, "sim_s": sim_s, "loop_wall_s": loop_s, "plan_wall_s": plan_s, "total_wall_s": wall,
        "by_category": {c: {"scenarios": len(rs), "succeeded": sum(r.success for r in rs)} for c, rs in by_cat.items()},
        "results": [{**r.model_dump(), "timings": t} for r, t in results],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    console.print(f"report: {out}")
