"""Boxes from segmentation masks: the ground truth a detector is trained and scored against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookout.perception.types import Detection, DetectionResult


@dataclass(frozen=True)
class ObjectBox:
    """An object's visible pixels as a box in pixel-edge coordinates (x_max is exclusive)."""

    index: int
    phrase: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    pixels: int
    visible_fraction: float  # visible pixels / pixels it would cover with nothing in front of it

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x_min, self.y_min, self.x_max, self.y_max)

    def yolo(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Normalised (x_center, y_center, width, height), Ultralytics' label format."""
        return (
            (self.x_min + self.x_max) / 2 / width,
            (self.y_min + self.y_max) / 2 / height,
            (self.x_max - self.x_min) / width,
            (self.y_max - self.y_min) / height,
        )


def mask_boxes(object_map: np.ndarray) -> dict[int, tuple[int, int, int, int, int]]:
    """Per object index >= 0 in an (H, W) map: (x_min, y_min, x_max, y_max, pixel count), edges exclusive."""
    out: dict[int, tuple[int, int, int, int, int]] = {}
    ids = np.unique(object_map)
    for idx in ids[ids >= 0].tolist():
        ys, xs = np.nonzero(object_map == idx)
        out[int(idx)] = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, int(xs.size))
    return out


def boxes_to_detections(boxes: list[ObjectBox], vocabulary: list[str], width: int, height: int) -> DetectionResult:
    """Ground-truth boxes as a perfect detector's output for `vocabulary` (score 1; other phrases dropped).

    Lets the agent be tested in closed loop without a trained detector, and gives detector
    evaluations their reference.
    """
    index = {p: i for i, p in enumerate(vocabulary)}
    dets = [Detection(b.x_min, b.y_min, b.x_max, b.y_max, 1.0, b.phrase, index[b.phrase])
            for b in boxes if b.phrase in index]
    return DetectionResult(detections=dets, vocabulary=list(vocabulary), image_width=width, image_height=height)
