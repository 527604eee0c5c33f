"""`lookout sim ...`: render datasets, look at scenes, list suites, measure rendering speed.

Heavy imports (MuJoCo) happen inside the commands so that `lookout --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

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
    config: Path = _CONFIG,
) -> None:
    """Render a labelled detection dataset (Ultralytics YOLO format) from random scenes."""
    from tqdm import tqdm

    from lookout.sim.dataset import render_dataset

    cfg = _config(config, width, height)
    try:
        summary = render_dataset(out, n, seed, cfg, val_fraction=val_fraction, images_per_scene=images_per_scene,
                                 image_format=image_format,
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
