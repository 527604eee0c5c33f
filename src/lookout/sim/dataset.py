"""Render labelled detection datasets in Ultralytics' YOLO format from random scenes.

Layout (what `YOLO(...).train(data=".../data.yaml")` reads):

    OUT/data.yaml                      path, train/val folders, names: {0: "red ball", ...}
    OUT/images/{train,val}/NNNNNN.jpg
    OUT/labels/{train,val}/NNNNNN.txt  one "class x_center y_center width height" line per box (0..1)
    OUT/scenes.json                    which scene seeds went to which split, and each image's scene and pose

Boxes come from segmentation (pixel-exact, occluded objects dropped below `labels.min_visible_fraction`).
Validation images come from scenes never used for training, so a detector is scored on new rooms.
Class names are every colour x shape phrase the config allows, in a fixed order, so datasets
rendered with different seeds share class indices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lookout.sim.config import SimConfig


@dataclass
class DatasetSummary:
    root: Path
    data_yaml: Path
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    scenes: dict[str, list[int]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)  # per image: file, scene seed, robot pose


def class_names(config: SimConfig) -> list[str]:
    return [f"{c} {s}" for c in config.objects.colors for s in config.objects.shapes]


def write_data_yaml(root: Path, names: list[str]) -> Path:
    """ROOT/data.yaml as Ultralytics reads it: the folder, its train/val image folders, the class names."""
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump({"path": str(root.resolve()), "train": "images/train", "val": "images/val",
                                    "names": dict(enumerate(names))}, sort_keys=False))
    return path


def read_class_names(root: Path) -> list[str]:
    """The class names of a dataset folder, in index order (FileNotFoundError when it is not one)."""
    path = root / "data.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{root} has no data.yaml: render it with `lookout sim render-dataset`")
    return [str(v) for _, v in sorted(yaml.safe_load(path.read_text())["names"].items())]


def split_scenes(n_images: int, images_per_scene: int, val_fraction: float, seed: int
                 ) -> tuple[list[int], list[int]]:
    """Distinct scene seeds for train and val (val scenes never appear in train)."""
    n_scenes = max(1, math.ceil(n_images / images_per_scene))
    n_val = 0 if val_fraction <= 0 or n_scenes < 2 else min(n_scenes - 1, max(1, round(n_scenes * val_fraction)))
    rng = np.random.default_rng([seed, 7])
    seeds = [int(s) for s in rng.choice(2**31 - 1, size=n_scenes, replace=False)]
    return seeds[: n_scenes - n_val], seeds[n_scenes - n_val:]


def _random_view(sim, rng: np.random.Generator, aim_probability: float) -> bool:
    """Put the robot at a random free spot, usually looking roughly at some object. False if none found."""
    half = sim.scene.room_size_m / 2 - sim.config.robot.radius_m - 0.05
    hfov = math.radians(sim.config.camera.hfov_deg)
    objects = sim.scene.objects
    for _ in range(50):
        x, y = rng.uniform(-half, half, size=2)
        if objects and rng.random() < aim_probability:
            o = objects[int(rng.integers(len(objects)))]
            yaw = math.atan2(o.y - y, o.x - x) + rng.uniform(-0.45, 0.45) * hfov
        else:
            yaw = rng.uniform(-math.pi, math.pi)
        if sim.teleport(float(x), float(y), float(yaw)):
            return True
    return False


def render_dataset(out: str | Path, n: int, seed: int = 0, config: SimConfig | None = None, *,
                   val_fraction: float = 0.2, images_per_scene: int = 8, aim_probability: float = 0.8,
                   image_format: str = "jpg", quality: int = 92, max_side: int | None = None,
                   progress: Callable[[int], Any] | None = None) -> DatasetSummary:
    """Render `n` labelled images (train + val) under `out`.

    `max_side` shrinks each image (area interpolation) so its longer side is at most that many pixels:
    a detector trained at `imgsz` sees nothing more, and the dataset is smaller to store or carry. Labels
    are relative, so they do not change. `quality` is the JPEG quality.
    `progress(total)` may return a bar with `update(k)` and `close()` (e.g. `lambda t: tqdm(total=t)`).
    """
    import cv2
    import imageio.v3 as iio

    from lookout.sim.sim import Sim

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if images_per_scene < 1:
        raise ValueError(f"images_per_scene must be at least 1, got {images_per_scene}")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if max_side is not None and max_side < 16:
        raise ValueError(f"max_side must be at least 16 pixels, got {max_side}")
    cfg = config or SimConfig.default()
    root = Path(out).resolve()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty: choose a new folder (nothing was written)")
    names = class_names(cfg)
    index = {name: i for i, name in enumerate(names)}
    train_seeds, val_seeds = split_scenes(n, images_per_scene, val_fraction, seed)
    n_val = 0 if not val_seeds else max(1, round(n * len(val_seeds) / (len(train_seeds) + len(val_seeds))))
    plan = [("train", s) for s in train_seeds] + [("val", s) for s in val_seeds]
    quota = {"train": n - n_val, "val": n_val}
    for split in quota:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)

    summary = DatasetSummary(root=root, data_yaml=root / "data.yaml", names=names,
                             images={"train": 0, "val": 0}, boxes={"train": 0, "val": 0},
                             scenes={"train": [], "val": []})
    rng = np.random.default_rng([seed, 11])
    bar = progress(n) if progress is not None else None
    sim = None
    try:
        counter = 0
        for split, scene_seed in plan:
            todo = min(images_per_scene, quota[split] - summary.images[split])
            if todo <= 0:
                continue
            if sim is None:
                sim = Sim(cfg, seed=scene_seed)
            else:
                sim.reset(scene_seed)
            summary.scenes[split].append(scene_seed)
            for _ in range(todo):
                if not _random_view(sim, rng, aim_probability):
                    continue
                image = sim.render()
                boxes = sim.object_boxes()
                stem = f"{counter:06d}"
                counter += 1
                scale = 1.0 if max_side is None else min(1.0, max_side / max(image.shape[:2]))
                if scale < 1.0:
                    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                iio.imwrite(root / "images" / split / f"{stem}.{image_format}", image,
                            **({"quality": quality} if image_format == "jpg" else {}))
                lines = []
                for b in boxes:
                    xc, yc, w, h = b.yolo(cfg.camera.width, cfg.camera.height)
                    lines.append(f"{index[b.phrase]} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}")
                (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
                pose = sim.pose
                summary.views.append({"image": f"images/{split}/{stem}.{image_format}", "scene": scene_seed,
                                      "pose": [pose.x, pose.y, pose.yaw]})
                summary.images[split] += 1
                summary.boxes[split] += len(lines)
                if bar is not None:
                    bar.update(1)
    finally:
        if sim is not None:
            sim.close()
        if bar is not None and hasattr(bar, "close"):
            bar.close()

    write_data_yaml(root, names)
    (root / "scenes.json").write_text(json.dumps(
        {"seed": seed, "images_per_scene": images_per_scene, "scenes": summary.scenes,
         "images": summary.images, "boxes": summary.boxes,
         "camera": {"width": cfg.camera.width, "height": cfg.camera.height, "fovy_deg": cfg.camera.fovy_deg},
         "views": summary.views},
        indent=2))
    return summary
