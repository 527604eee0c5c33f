"""Boxes and labels drawn on a frame, for the node's `annotated` topic and for demos."""

from __future__ import annotations

import cv2
import numpy as np

from lookout.perception.types import DetectionResult

# Distinct BGR colours (Ultralytics' palette order), indexed by class.
_PALETTE = [
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
]  # fmt: skip


def draw_detections(bgr: np.ndarray, result: DetectionResult) -> np.ndarray:
    """A copy of `bgr` with each detection's box and `phrase score [#track]` label."""
    out = bgr.copy()
    scale = max(1.0, min(out.shape[:2]) / 480)  # keep labels readable but small from VGA up
    thickness = max(1, round(scale))
    for det in result.detections:
        color = _PALETTE[det.class_index % len(_PALETTE)]
        p1 = (int(det.x_min), int(det.y_min))
        p2 = (int(det.x_max), int(det.y_max))
        cv2.rectangle(out, p1, p2, color, thickness, cv2.LINE_AA)
        label = f"{det.phrase} {det.score:.2f}" + (f" #{det.track_id}" if det.track_id is not None else "")
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, thickness)
        y = p1[1] - 2 if p1[1] - th - base - 2 >= 0 else p1[1] + th + 2
        cv2.rectangle(out, (p1[0], y - th - base), (p1[0] + tw, y + base), color, -1)
        cv2.putText(out, label, (p1[0], y), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)  # fmt: skip
    return out
