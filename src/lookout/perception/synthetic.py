"""Random-weight detectors that still report boxes, and synthetic frames: for plumbing tests and benchmarks.

Nothing can be downloaded here, so tests and benchmarks build the real architectures (e.g. YOLO-World v2)
with random weights. An untrained head scores every anchor near sigmoid(-10) and reports nothing, which would
leave NMS, box scaling and tracking untested and make benchmarks unrealistically cheap. `calibrate_head`
re-estimates BatchNorm statistics on a few frames and shifts the final class bias so that a chosen number of
anchors clear the confidence threshold; the architecture is untouched, so its cost is the real one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lookout.perception.fast_model import FastDetectNet
from lookout.perception.model_files import build_world_model, save_model, set_world_classes
from lookout.perception.preprocess import letterbox_geometry, letterbox_tensor, round_imgsz
from lookout.perception.text_encoders import TextEncoder


def synthetic_frames(n: int, width: int = 640, height: int = 480, seed: int = 0) -> list[np.ndarray]:
    """`n` BGR uint8 frames: smooth noise with a few solid rectangles moving a little from frame to frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    background = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    boxes = [
        (rng.integers(0, width // 2), rng.integers(0, height // 2), rng.integers(width // 8, width // 3),
         rng.integers(height // 8, height // 3), tuple(int(c) for c in rng.integers(0, 256, 3)))
        for _ in range(4)
    ]  # fmt: skip
    frames = []
    for i in range(n):
        img = background.copy()
        for x, y, w, h, color in boxes:
            dx = int(8 * math.sin(i / 5))
            img[y : y + h, max(0, x + dx) : x + dx + w] = color
        frames.append(img)
    return frames


def _class_biases(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that shift every class logit of a Detect / WorldDetect head."""
    head = model.model[-1]
    if hasattr(head, "cv4"):  # WorldDetect: contrastive heads add one scalar bias
        return [ch.bias for ch in head.cv4]
    return [seq[-1].bias for seq in head.cv3]


@torch.no_grad()
def calibrate_head(
    model: nn.Module, frames: Sequence[np.ndarray], imgsz: int, conf: float, boxes: int = 20
) -> float:
    """Make a random-weight model score anchors like a trained one would, roughly: varied, a few above `conf`.

    1. BatchNorm statistics are re-estimated on `frames` (random-init running stats make every feature map
       collapse to a constant, so all anchors of a level would tie).
    2. The class biases are shifted so that on a typical frame about `boxes` anchors clear `conf` (before
       NMS). Returns the shift.
    """
    stride = int(max(model.stride.tolist()))
    size = round_imgsz(imgsz, stride)

    def tensor(frame: np.ndarray) -> torch.Tensor:
        geom = letterbox_geometry(*frame.shape[:2], size, stride)
        return letterbox_tensor(torch.from_numpy(frame), geom, torch.float32)

    batch = torch.cat([tensor(f) for f in frames if f.shape == frames[0].shape])
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the calibration batch
    model.train()
    model(batch)
    model.eval()
    net = FastDetectNet(model)
    if net.world:
        net.set_text(model.txt_feats[0].float())
    else:
        net.set_class_subset(list(range(len(model.names))))
    _, best, _ = net(batch)
    # Per frame, the logit of its `boxes`-th best anchor; the median over frames sets the threshold.
    logits = torch.logit(best.double().clamp(1e-12, 1 - 1e-12)).sort(dim=1, descending=True).values
    kth = logits[:, min(boxes, logits.shape[1]) - 1]
    middle = float(kth.median())
    target = min(max(conf, 1e-6), 1 - 1e-6)
    shift = math.log(target / (1 - target)) - middle
    for bias in _class_biases(model):
        bias.add_(shift)
    return shift


def make_world_model(
    path: str | Path,
    cfg: str = "yolov8n-worldv2.yaml",
    *,
    encoder: TextEncoder | None = None,
    classes: Sequence[str] = ("red cup", "person", "blue box"),
    embeddings: torch.Tensor | None = None,
    frames: Sequence[np.ndarray] | None = None,
    imgsz: int = 320,
    conf: float = 0.25,
    boxes: int = 20,
    seed: int = 0,
) -> Path:
    """Save a random-weight YOLO-World model whose stored vocabulary is `classes`, calibrated on `frames`.

    The text encoder is recorded when given (embeddings come from it); otherwise `embeddings` (or seeded random
    unit vectors) are stored and the file records nothing, like an official CLIP-trained file.
    """
    yolo = build_world_model(cfg, text_encoder=encoder, classes=list(classes) if encoder else None, seed=seed)
    if encoder is None:
        dim = yolo.model.model[-1].cv3[0][-1].out_channels
        if embeddings is None:
            gen = torch.Generator().manual_seed(seed)
            embeddings = torch.nn.functional.normalize(torch.randn(len(classes), dim, generator=gen), dim=-1)
        set_world_classes(yolo.model, list(classes), embeddings)
    if frames:
        calibrate_head(yolo.model, frames, imgsz, conf, boxes)
    return save_model(yolo, path)


def make_closed_set_model(
    path: str | Path,
    cfg: str = "yolo11n.yaml",
    *,
    frames: Sequence[np.ndarray] | None = None,
    imgsz: int = 320,
    conf: float = 0.25,
    boxes: int = 20,
    seed: int = 0,
) -> Path:
    """Save a random-weight closed-set model (COCO class names), calibrated on `frames` when given."""
    from ultralytics import YOLO

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yolo = YOLO(cfg)
    if not isinstance(getattr(yolo.model, "names", None), dict) or str(yolo.model.names.get(0)) == "0":
        from ultralytics.utils import ROOT, YAML

        yolo.model.names = YAML.load(ROOT / "cfg/datasets/coco8.yaml")["names"]
    if frames:
        calibrate_head(yolo.model, frames, imgsz, conf, boxes)
    return save_model(yolo, path)
