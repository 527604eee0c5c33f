"""Score the detector on held-out simulator scenes: mAP50 and mAP50-95 overall, per phrase, and on unseen phrasings.

Scenes are rendered fresh by the simulator's dataset renderer from a seed the tiny build never used; images go
through the project's `Detector` (the same class the ROS node runs). Matching and AP come from Ultralytics'
own validator code (`DetectionValidator.match_predictions`, `DetMetrics`/`ap_per_class`), so the numbers
mean what Ultralytics' `val` numbers mean.

Open vocabulary: the same images are scored again with the vocabulary replaced by phrasings the model never
saw in training (colour synonyms such as "crimson ball", shape synonyms such as "red sphere"); the ground-truth
object keeps its identity, only its name changes.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import typer

# Words the tiny detector never saw in training, for the simulator's colours and shapes.
COLOR_SYNONYMS: dict[str, str] = {
    "red": "crimson", "green": "emerald", "blue": "navy", "yellow": "golden", "orange": "tangerine",
    "purple": "violet", "white": "ivory", "black": "ebony",
}
SHAPE_SYNONYMS: dict[str, str] = {
    "ball": "sphere", "box": "cube", "cylinder": "tube", "bottle": "flask", "cone": "pylon",
}
DEFAULT_EVAL_SEED = 1_000_003  # far from the build seeds (0, 1, ...): other scenes, other poses


@dataclass
class VocabularyScore:
    """mAP of one vocabulary (the trained phrases or a renamed set) over the same images."""

    name: str
    map50: float
    map50_95: float
    precision: float
    recall: float
    per_phrase: dict[str, dict[str, float]] = field(default_factory=dict)  # phrase -> ap50, ap50_95, n_gt


@dataclass
class DetectorEvalReport:
    model: str
    profile: str | None
    images: int
    boxes: int
    scenes: list[int]
    scenes_shared_with_training: int | None
    imgsz: int
    conf: float
    seconds: float
    ms_per_image: float  # median Detector.detect time (its own timings)
    vocabularies: list[VocabularyScore] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass
class LabelledImage:
    bgr: np.ndarray
    classes: np.ndarray  # (M,) int class indices into the dataset names
    xyxy: np.ndarray  # (M, 4) pixels


def synonym_phrase(phrase: str, colors: bool = True, shapes: bool = False) -> str:
    """'red ball' -> 'crimson ball' (colors) or 'red sphere' (shapes); unknown words stay as they are."""
    words = phrase.split()
    if colors:
        words = [COLOR_SYNONYMS.get(w, w) for w in words[:1]] + words[1:]
    if shapes:
        words = words[:-1] + [SHAPE_SYNONYMS.get(w, w) for w in words[-1:]]
    return " ".join(words)


def render_eval_scenes(out: Path, n_images: int, seed: int, images_per_scene: int = 4
                       ) -> tuple[list[LabelledImage], list[str], list[int]]:
    """Render labelled images from fresh scenes (the simulator's renderer) and read them back."""
    import cv2

    from lookout.sim.config import SimConfig
    from lookout.sim.dataset import render_dataset

    summary = render_dataset(out, n_images, seed=seed, config=SimConfig.default(), val_fraction=0.0,
                             images_per_scene=images_per_scene)
    images: list[LabelledImage] = []
    for img_path in sorted((summary.root / "images" / "train").iterdir()):
        bgr = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        text = (summary.root / "labels" / "train" / f"{img_path.stem}.txt").read_text().split()
        rows = np.asarray(text, dtype=np.float64).reshape(-1, 5)  # an image may show no object
        xc, yc, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        xyxy = np.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], 1)
        images.append(LabelledImage(bgr, rows[:, 0].astype(int), xyxy))
    return images, list(summary.names), summary.scenes["train"]


def score_vocabulary(detect: Callable[[np.ndarray], Any], images: Sequence[LabelledImage],
                     phrases: Sequence[str], name: str) -> VocabularyScore:
    """mAP of `detect` (returns a DetectionResult whose class_index indexes `phrases`) over `images`."""
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import DetMetrics, box_iou

    validator = DetectionValidator()  # only for its matching at IoU 0.50:0.05:0.95
    metrics = DetMetrics(names=dict(enumerate(phrases)))
    for i, item in enumerate(images):
        result = detect(item.bgr)
        dets = sorted(result.detections, key=lambda d: -d.score)
        pred_cls = torch.tensor([d.class_index for d in dets], dtype=torch.long)
        conf = np.array([d.score for d in dets], dtype=np.float32)
        target_cls = torch.from_numpy(item.classes)
        if dets and len(item.classes):
            pred_xyxy = torch.tensor([list(d.xyxy) for d in dets], dtype=torch.float32)
            iou = box_iou(torch.from_numpy(item.xyxy).float(), pred_xyxy)
            tp = validator.match_predictions(pred_cls, target_cls, iou).numpy()
        else:
            tp = np.zeros((len(dets), 10), dtype=bool)
        metrics.update_stats({"tp": tp, "conf": conf, "pred_cls": pred_cls.numpy(),
                              "target_cls": item.classes, "target_img": np.unique(item.classes),
                              "im_name": f"{i:06d}"})
    metrics.process()
    box = metrics.box
    counts = np.bincount(np.concatenate([it.classes for it in images]) if images else np.zeros(0, int),
                         minlength=len(phrases))
    per_phrase: dict[str, dict[str, float]] = {}
    for j, cls in enumerate(box.ap_class_index):
        per_phrase[phrases[int(cls)]] = {"ap50": round(float(box.ap50[j]), 4), "ap50_95": round(float(box.ap[j]), 4),
                                         "n_gt": int(counts[int(cls)])}
    return VocabularyScore(name, round(float(box.map50), 4), round(float(box.map), 4), round(float(box.mp), 4),
                           round(float(box.mr), 4), per_phrase)


def _build_info(weights: Path) -> dict[str, Any]:
    info = weights.with_name(weights.stem + "_build.json")
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return {}


def _shared_scenes(eval_scenes: list[int], info: dict[str, Any]) -> int | None:
    """How many eval scenes the build also rendered (recomputed from its recorded seed and sizes)."""
    from lookout.sim.dataset import split_scenes

    images = info.get("images") or {}
    if "seed" not in info or not images:
        return None
    n = int(images.get("train", 0)) + int(images.get("val", 0))
    val_fraction = int(images.get("val", 0)) / max(n, 1)
    train, val = split_scenes(n, int(info.get("images_per_scene", 8)), val_fraction, int(info["seed"]))
    return len(set(eval_scenes) & set(train + val))


def evaluate_detector(weights: str | Path, *, n_images: int = 96, seed: int = DEFAULT_EVAL_SEED,
                      imgsz: int | None = None, conf: float = 0.001, synonyms: bool = True,
                      images_per_scene: int = 4, profile: str | None = None) -> DetectorEvalReport:
    """Render `n_images` held-out images and score the detector on the trained phrases and unseen phrasings."""
    from lookout.perception.detector import Detector

    weights = Path(weights)
    info = _build_info(weights)
    imgsz = int(imgsz or info.get("imgsz") or 320)
    with tempfile.TemporaryDirectory(prefix="lookout-det-eval-") as tmp:
        images, names, scenes = render_eval_scenes(Path(tmp) / "scenes", n_images, seed, images_per_scene)
    t0 = time.perf_counter()
    detector = Detector(weights, conf=conf, iou=0.7, imgsz=imgsz, max_det=300, device="cpu")
    vocabularies = [("trained phrases", names)]
    if synonyms:
        vocabularies += [("colour synonyms", [synonym_phrase(p, colors=True) for p in names]),
                         ("shape synonyms", [synonym_phrase(p, colors=False, shapes=True) for p in names]),
                         ("both synonyms", [synonym_phrase(p, colors=True, shapes=True) for p in names])]
    scores = []
    detect_ms: list[float] = []

    def timed_detect(bgr: np.ndarray) -> Any:
        result = detector.detect(bgr)
        detect_ms.append(result.timings_ms.get("total", 0.0))
        return result

    with detector:
        for label, phrases in vocabularies:
            detector.set_vocabulary(phrases)
            scores.append(score_vocabulary(timed_detect, images, phrases, label))
    seconds = time.perf_counter() - t0
    return DetectorEvalReport(
        model=str(weights), profile=profile, images=len(images), boxes=int(sum(len(i.classes) for i in images)),
        scenes=scenes, scenes_shared_with_training=_shared_scenes(scenes, info), imgsz=imgsz, conf=conf,
        seconds=round(seconds, 2), ms_per_image=round(float(np.median(detect_ms)) if detect_ms else 0.0, 1), vocabularies=scores,
        settings={"seed": seed, "images_per_scene": images_per_scene, "iou_nms": 0.7, "max_det": 300},
    )


def print_report(report: DetectorEvalReport, per_phrase: bool = True) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"Detector on {report.images} held-out images ({report.boxes} boxes, "
                          f"{len(report.scenes)} scenes), imgsz {report.imgsz}")
    for col in ("vocabulary", "mAP50", "mAP50-95", "precision", "recall"):
        summary.add_column(col, justify="left" if col == "vocabulary" else "right")
    for v in report.vocabularies:
        summary.add_row(v.name, f"{v.map50:.3f}", f"{v.map50_95:.3f}", f"{v.precision:.3f}", f"{v.recall:.3f}")
    console.print(summary)
    if per_phrase and report.vocabularies:
        table = Table(title="Per phrase (AP50 / AP50-95)")
        table.add_column("object")
        table.add_column("n", justify="right")
        for v in report.vocabularies:
            table.add_column(v.name, justify="right")
        base = report.vocabularies[0]
        others = [list(v.per_phrase.items()) for v in report.vocabularies]
        for j, (phrase, s) in enumerate(base.per_phrase.items()):
            cells = [f"{o[j][1]['ap50']:.2f}/{o[j][1]['ap50_95']:.2f}" for o in others]
            table.add_row(phrase, str(s["n_gt"]), *cells)
        console.print(table)
    shared = report.scenes_shared_with_training
    console.print("Unseen phrasings rename every object, e.g. 'red ball' -> 'crimson ball' / 'red sphere' / "
                  "'crimson sphere'.")
    console.print(f"median {report.ms_per_image} ms per detect call on the CPU; scenes shared with training: "
                  f"{'unknown' if shared is None else shared}")


def write_report(report: DetectorEvalReport, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(report.to_json() + "\n")
    return p


def detector_command(
    profile: str = typer.Option("tiny", help="Model profile from models/registry.yaml."),
    model: Path | None = typer.Option(None, help="A detector .pt file instead of the profile's."),
    n_images: int = typer.Option(96, "--n", min=1, help="Held-out images to render."),
    seed: int = typer.Option(DEFAULT_EVAL_SEED, help="Scene seed (keep it away from the build's seeds)."),
    imgsz: int | None = typer.Option(None, help="Network input size (default: the model's build imgsz)."),
    synonyms: bool = typer.Option(True, help="Also score unseen phrasings (colour and shape synonyms)."),
    verify: bool = typer.Option(True, help="Check the profile's checksum manifest before loading."),
    json_out: Path = typer.Option(Path("runs/eval/detector.json"), "--json", help="Where to write the JSON report."),
) -> None:
    """mAP50 and mAP50-95 on held-out rendered scenes, per phrase and on unseen phrasings."""
    from lookout.models.registry import ModelFileError, RegistryError, load_profile

    if model is None:
        try:
            weights = load_profile(profile, parts=("detector",), verify=verify).detector.weights
        except (ModelFileError, RegistryError) as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None
    elif not model.is_file():
        raise typer.BadParameter(f"{model} not found", param_hint="--model")
    else:
        weights, profile = model, None
    report = evaluate_detector(weights, n_images=n_images, seed=seed, imgsz=imgsz, synonyms=synonyms,
                               profile=profile)
    print_report(report)
    write_report(report, json_out)
    typer.echo(f"report: {json_out}")
