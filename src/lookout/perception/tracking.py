"""Track ids across frames with Ultralytics' ByteTrack, fed from the detector's arrays (no Results objects).

The tracker keeps its state (tracks, Kalman filters, id counter) between calls; `reset()` starts over, e.g.
when the vocabulary changes and class indices change meaning.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _Boxes:
    """The slice of Ultralytics' `Boxes` API that BYTETracker reads: conf, cls, xywh, xyxy, len, indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls

    @property
    def xywh(self) -> np.ndarray:
        wh = self.xyxy[:, 2:4] - self.xyxy[:, 0:2]
        return np.concatenate([self.xyxy[:, 0:2] + wh / 2, wh], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _Boxes:
        return _Boxes(self.xyxy[index], self.conf[index], self.cls[index])


class ByteTrack:
    """Ultralytics' BYTETracker with its default settings (cfg/trackers/bytetrack.yaml) unless overridden."""

    def __init__(self, **overrides: Any) -> None:
        from ultralytics.utils import ROOT, YAML, IterableSimpleNamespace

        settings = YAML.load(ROOT / "cfg" / "trackers" / "bytetrack.yaml")
        settings.update(overrides)
        self._args = IterableSimpleNamespace(**settings)
        self.reset()

    def reset(self) -> None:
        from ultralytics.trackers.byte_tracker import BYTETracker

        self._tracker = BYTETracker(args=self._args)

    def update(self, xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> list[int | None]:
        """Track ids for the N detections of this frame, None where no confirmed track matched."""
        ids: list[int | None] = [None] * len(scores)
        boxes = _Boxes(
            np.asarray(xyxy, np.float32).reshape(-1, 4),
            np.asarray(scores, np.float32).reshape(-1),
            np.asarray(classes, np.float32).reshape(-1),
        )
        tracks = self._tracker.update(boxes)
        for row in np.asarray(tracks).reshape(-1, 8):  # x1, y1, x2, y2, track_id, score, cls, idx
            ids[int(row[7])] = int(row[4])
        return ids
