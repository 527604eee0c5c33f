"""Build the tiny YOLO-World detector: render a labelled dataset in the simulator, train, save.

The recipe uses the same code paths as real weights: the architecture is Ultralytics' `yolov8n-worldv2.yaml`,
training is Ultralytics' own `train()` (its WorldTrainer) with the offline text encoder patched in through
`world_text_encoder`, and the result is written with `save_model` so `Detector` loads it like any other file.
Everything is seeded and runs on the CPU without downloads.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ARCHITECTURE = "yolov8n-worldv2.yaml"
# One stage from scratch (the first of STAGES): 320 images, 32 epochs, 17 min on 2 cores (12 epochs: mAP50 0.31).
DEFAULT_N_TRAIN = 320
DEFAULT_N_VAL = 64
DEFAULT_EPOCHS = 32
DEFAULT_IMGSZ = 256
DEFAULT_BATCH = 16
STALE_TEXT_CACHES = ("text_embeddings_clip_ViT-B_32.pt",)


@dataclass(frozen=True)
class Stage:
    """One training stage on freshly rendered scenes (stage i draws its scenes from seed + i)."""

    n_train: int
    n_val: int
    epochs: int
    lr0: float


# The committed models/tiny/detector.pt: stage 2 continues stage 1 on three times as many new scenes. On 192
# held-out images (seed 1000003, `lookout eval detector`): stage 1 alone mAP50 0.51, after stage 2 0.70. A third
# stage like the second (seed 2, 22 epochs, lr0 0.0007) fell back to 0.62, so the recipe stops at two.
STAGES = (Stage(320, 64, 32, 0.002), Stage(960, 128, 18, 0.001))


@dataclass(frozen=True)
class GpuRecipe:
    """The committed models/tiny/detector.pt: many small renders, one run on a GPU.

    On 192 held-out images (`lookout eval detector`): mAP50 0.92, against 0.70 for the CPU stages above,
    after 200 s on one H200 (24 epochs fitted to `time_min`). Images are stored at the training size.
    """

    dataset_seeds: tuple[int, ...] = (101, 102)
    images_per_dataset: int = 4000
    val_fraction: float = 0.05
    max_side: int = 256  # = imgsz
    quality: int = 90
    epochs: int = 60
    time_min: float | None = 3.0
    batch: int = 64
    lr0: float = 0.002


GPU_RECIPE = GpuRecipe()


@dataclass
class TinyDetectorBuild:
    """What a build did: written next to the model as `detector_build.json`."""

    command: str
    out_path: str
    seed: int
    architecture: str
    text_encoder: str
    imgsz: int
    epochs: int
    batch: int
    images_per_scene: int = 8
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    file_mb: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    machine: str = ""


def _offline_ultralytics() -> None:
    """No downloads, no telemetry, no plots (plots fetch a font), no AMP check (it fetches a model)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})


def _results_csv_without_polars() -> None:
    """Ultralytics reads its results.csv with polars when saving a checkpoint; where polars is not installed
    (a GPU machine with only the image's packages), read it with the csv module instead."""
    import importlib.util

    if importlib.util.find_spec("polars") is not None:
        return
    import csv

    from ultralytics.engine.trainer import BaseTrainer

    def read_results_csv(self: Any) -> dict[str, list[Any]]:
        try:
            with open(self.csv, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            return {}
        return {k.strip(): [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}

    BaseTrainer.read_results_csv = read_results_csv


def _remove_stale_text_caches(root: Path) -> None:
    """Ultralytics caches text embeddings under a CLIP name whatever the encoder: never reuse one."""
    for name in STALE_TEXT_CACHES:
        for path in root.rglob(name):
            path.unlink()


def build_tiny_detector(
    out_path: str | Path,
    seed: int = 0,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    epochs: int = DEFAULT_EPOCHS,
    imgsz: int = DEFAULT_IMGSZ,
    workdir: str | Path | None = None,
    *,
    batch: int = DEFAULT_BATCH,
    architecture: str = ARCHITECTURE,
    images_per_scene: int = 8,
    threads: int | None = None,
    time_limit_min: float | None = None,
    init_weights: str | Path | None = None,
    lr0: float = 0.002,
    record: bool = True,
    verbose: bool = False,
    datasets: Sequence[str | Path] | None = None,
    device: str = "cpu",
    workers: int = 0,
    text_encoder: Any = None,
) -> TinyDetectorBuild:
    """Render `n_train + n_val` images (val from held-out scenes), train, save fp16 weights at `out_path`.

    Writes `<out_path stem>_build.json` beside the model when `record` is true. `workdir` keeps the dataset
    and Ultralytics' run folder (default: a temporary folder, deleted afterwards). `time_limit_min` hands
    Ultralytics a wall-clock budget: it then fits the epoch count (and its learning-rate schedule) to the
    measured speed, so `epochs` is replaced by what fits and the record says how many ran.
    `init_weights` continues training a tiny detector already built (a second stage on new scenes: more
    images for the same compute than one long run); its classes must be the rendered dataset's.
    `datasets`: folders rendered before (`lookout sim render-dataset`), trained on together instead of
    rendering here (`seed`, `n_train`, `n_val` then only name the build): render on one machine, train on
    a GPU machine without MuJoCo. `text_encoder` replaces the offline encoder with one of the same id
    (`PrecomputedTextEncoder` where sentence-transformers is missing). `device`/`workers` go to Ultralytics.
    """
    import torch

    from lookout.perception.model_files import (
        TEXT_ENCODER_KEY,
        build_world_model,
        save_model,
        set_world_classes,
        world_text_encoder,
    )
    from lookout.perception.text_encoders import OfflineTextEncoder
    from lookout.sim.config import SimConfig
    from lookout.sim.dataset import render_dataset

    if n_train < 1 or n_val < 1:
        raise ValueError(f"need at least one train and one val image, got n_train={n_train}, n_val={n_val}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if imgsz < 32 or imgsz % 32:
        raise ValueError(f"imgsz must be a multiple of 32 (at least 32), got {imgsz}")
    out_path = Path(out_path)
    _offline_ultralytics()
    _results_csv_without_polars()
    # Ultralytics leaves torch at cpu_count - 1 threads (1 on a 2-core machine): use every core.
    torch.set_num_threads(threads or os.cpu_count() or 1)
    t_start = time.perf_counter()
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="lookout-tiny-det-")) if own_tmp else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if datasets:
            combined = work / "dataset-combined"
            if combined.exists():
                shutil.rmtree(combined)
            summary = combine_datasets([Path(d) for d in datasets], combined)
            roots = [combined]
        else:
            n = n_train + n_val
            data_root = work / f"dataset-s{seed}-n{n}"
            if data_root.exists():
                shutil.rmtree(data_root)
            summary = render_dataset(data_root, n, seed=seed, config=SimConfig.default(),
                                     val_fraction=n_val / n, images_per_scene=images_per_scene)
            roots = [data_root]
        for root in roots:
            _remove_stale_text_caches(root)
        t_rendered = time.perf_counter()

        offline = OfflineTextEncoder(dim=512, seed=0)  # loads MiniLM only when it encodes
        encoder = text_encoder if text_encoder is not None else offline
        if encoder.id != offline.id:
            raise ValueError(f"the tiny detector is trained with the offline encoder's embeddings, not {encoder.id}")
        if init_weights is not None:
            yolo = _continue_from(Path(init_weights), encoder, summary.names)
        else:
            yolo = build_world_model(architecture, text_encoder=encoder, classes=summary.names, seed=seed)
        run_dir = work / "runs"
        with world_text_encoder(encoder):
            yolo.train(
                data=str(summary.data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=workers,
                seed=seed, deterministic=True, plots=False, amp=False, project=str(run_dir), name="train",
                exist_ok=True, verbose=verbose, pretrained=False, optimizer="AdamW", lr0=lr0, warmup_epochs=1,
                close_mosaic=max(1, epochs // 4), hsv_h=0.0, cache=True, val=False,
                **({"time": time_limit_min / 60} if time_limit_min else {}),
            )
            epochs_run = int(getattr(yolo.trainer, "epoch", epochs - 1)) + 1
            metrics = _validation_metrics(yolo)
        for root in roots:
            _remove_stale_text_caches(root)
        # The trained file must say which encoder its head reads and carry the embeddings of its classes.
        yolo.model.yaml[TEXT_ENCODER_KEY] = encoder.id
        set_world_classes(yolo.model, summary.names, encoder.encode(summary.names))
        save_model(yolo, out_path)
        t_done = time.perf_counter()
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)

    build = TinyDetectorBuild(
        command=(f"python -c \"from lookout.perception.tiny_detector import build_tiny_detector; "
                 f"build_tiny_detector('{out_path}', seed={seed}, n_train={n_train}, n_val={n_val}, "
                 f"epochs={epochs}, imgsz={imgsz}, threads={threads}, time_limit_min={time_limit_min}"
                 + (f", init_weights='{init_weights}', lr0={lr0}" if init_weights is not None else "")
                 + (f", datasets={[str(d) for d in datasets]}, batch={batch}, device='{device}', workers={workers}"
                    if datasets else "") + ")\""),
        out_path=str(out_path), seed=seed, architecture=architecture, text_encoder=encoder.id, imgsz=imgsz,
        epochs=epochs_run, batch=batch, images_per_scene=images_per_scene, images=dict(summary.images), boxes=dict(summary.boxes),
        classes=list(summary.names), metrics=metrics, file_mb=round(out_path.stat().st_size / 2**20, 2),
        seconds={"render": round(t_rendered - t_start, 1), "train": round(t_done - t_rendered, 1),
                 "total": round(t_done - t_start, 1)},
        machine=f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}"
                + (f", {torch.cuda.get_device_name()}" if device != "cpu" and torch.cuda.is_available() else ""),
    )
    if record:
        out_path.with_name(out_path.stem + "_build.json").write_text(json.dumps(asdict(build), indent=2) + "\n")
    return build


def build_tiny_detector_gpu(out_path: str | Path, seed: int = 0, *, recipe: GpuRecipe = GPU_RECIPE,
                            device: str = "0", workers: int | None = None, workdir: str | Path | None = None,
                            verbose: bool = False) -> TinyDetectorBuild:
    """`recipe` end to end on one machine with a GPU and MuJoCo: render its datasets, then train on them.

    Rendering and training can also run on different machines (see models/tiny/detector_build.json's
    `recipe`): `lookout sim render-dataset`, `lookout models embed-classes`, `lookout models build detector`.
    """
    from lookout.sim.config import SimConfig
    from lookout.sim.dataset import render_dataset

    with tempfile.TemporaryDirectory(prefix="lookout-tiny-det-gpu-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        folders = []
        for ds_seed in recipe.dataset_seeds:
            folder = root / f"render-s{seed + ds_seed}"
            if folder.exists():
                shutil.rmtree(folder)
            render_dataset(folder, recipe.images_per_dataset, seed=seed + ds_seed, config=SimConfig.default(),
                           val_fraction=recipe.val_fraction, max_side=recipe.max_side, quality=recipe.quality)
            folders.append(folder)
        return build_tiny_detector(out_path, seed=seed, epochs=recipe.epochs, imgsz=recipe.max_side,
                                   batch=recipe.batch, lr0=recipe.lr0, time_limit_min=recipe.time_min,
                                   datasets=folders, device=device, workdir=root / "train",
                                   workers=workers if workers is not None else min(12, os.cpu_count() or 1),
                                   verbose=verbose)


def combine_datasets(roots: Sequence[Path], out: Path) -> Any:
    """One dataset of links to several rendered ones (Ultralytics' world trainer reads one train folder)."""
    from lookout.sim.dataset import DatasetSummary, read_class_names, write_data_yaml

    if not roots:
        raise ValueError("no dataset folders given")
    summary = DatasetSummary(root=out, data_yaml=out / "data.yaml", images={"train": 0, "val": 0},
                             boxes={"train": 0, "val": 0}, scenes={"train": [], "val": []})
    for k, root in enumerate(roots):
        root = root.resolve()
        names = read_class_names(root)
        if summary.names and names != summary.names:
            raise ValueError(f"{root} has other classes than {roots[0]}: datasets must share class indices")
        summary.names = names
        for split in ("train", "val"):
            for kind in ("images", "labels"):
                (out / kind / split).mkdir(parents=True, exist_ok=True)
            for image in sorted((root / "images" / split).glob("*")):
                label = root / "labels" / split / f"{image.stem}.txt"
                (out / "images" / split / f"{k}_{image.name}").symlink_to(image)
                (out / "labels" / split / f"{k}_{label.name}").symlink_to(label)
                summary.images[split] += 1
                summary.boxes[split] += len(label.read_text().splitlines())
    if not summary.images["train"] or not summary.images["val"]:
        raise ValueError(f"the datasets need train and val images, got {summary.images}")
    write_data_yaml(out, summary.names)
    return summary


def _continue_from(path: Path, encoder: Any, names: list[str]) -> Any:
    """A built tiny detector, ready for another training stage with the same encoder and classes."""
    from ultralytics import YOLOWorld

    from lookout.perception.model_files import check_text_encoder, load_model_file

    loaded = load_model_file(path)  # clear errors for a missing or corrupt file
    check_text_encoder(encoder.id, loaded)
    if loaded.class_names != list(names):
        raise ValueError(f"{path} was trained on other classes ({len(loaded.class_names)}) than the rendered "
                         f"set's {len(names)}")
    return YOLOWorld(str(path))


def _validation_metrics(yolo: Any) -> dict[str, float]:
    """Ultralytics' own validation numbers for the final weights (held-out scenes of the rendered set)."""
    metrics = getattr(getattr(yolo, "trainer", None), "metrics", None) or {}
    keys = {"metrics/mAP50(B)": "val_mAP50", "metrics/mAP50-95(B)": "val_mAP50_95",
            "metrics/precision(B)": "val_precision", "metrics/recall(B)": "val_recall"}
    return {short: round(float(metrics[k]), 4) for k, short in keys.items() if k in metrics}


def build_tiny_detector_staged(out_path: str | Path, seed: int = 0, *, stages: tuple[Stage, ...] = STAGES,
                               imgsz: int = DEFAULT_IMGSZ, batch: int = DEFAULT_BATCH, threads: int | None = None,
                               verbose: bool = False) -> list[TinyDetectorBuild]:
    """The tiny detector as `make models` builds it: `stages` in turn, each on new scenes, one record."""
    out_path = Path(out_path)
    builds: list[TinyDetectorBuild] = []
    with tempfile.TemporaryDirectory(prefix="lookout-tiny-det-stages-") as tmp:
        previous: Path | None = None
        for i, st in enumerate(stages):
            target = out_path if i == len(stages) - 1 else Path(tmp) / f"stage{i + 1}.pt"
            builds.append(build_tiny_detector(
                target, seed=seed + i, n_train=st.n_train, n_val=st.n_val, epochs=st.epochs, imgsz=imgsz, batch=batch,
                threads=threads, init_weights=previous, lr0=st.lr0, record=False, verbose=verbose))
            previous = target
    record = {**asdict(builds[-1]),
              "command": f"python -c \"from lookout.perception.tiny_detector import build_tiny_detector_staged; "
                         f"build_tiny_detector_staged('{out_path}', seed={seed})\"",
              "stages": [asdict(b) for b in builds]}
    out_path.with_name(out_path.stem + "_build.json").write_text(json.dumps(record, indent=2) + "\n")
    return builds
