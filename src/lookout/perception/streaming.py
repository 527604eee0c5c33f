"""Running a detector on a live stream: newest-frame handoff and the counters behind diagnostics.

A camera publishes faster than a detector may run. Queuing frames only adds latency (yolo_ros users see
seconds of lag), so the receiver puts each frame into a one-slot mailbox that replaces what is waiting
(counted as dropped) and a worker always takes the newest. Pure Python: the ROS node only wires it up.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class LatestFrame(Generic[T]):
    """One-slot mailbox: `put` overwrites a waiting item, `take` blocks until an item or `close`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._closed = False

    def put(self, item: T) -> bool:
        """Offer a frame; returns True when it replaced one that was never processed (a drop)."""
        with self._cond:
            replaced = self._has_item
            self._item, self._has_item = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, or None on timeout or after `close`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item, self._has_item = None, False
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class StreamStats:
    """Thread-safe counters and recent timings of a detection stream, summarised for diagnostics."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self.frames_rejected = 0
        self.last_error = ""
        self._last_error_at = float("-inf")
        self._model_ms: deque[float] = deque(maxlen=window)
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._work_ms: deque[float] = deque(maxlen=window)
        self._out_times: deque[float] = deque(maxlen=window)

    def frame_in(self, dropped_one: bool) -> None:
        with self._lock:
            self.frames_in += 1
            self.frames_dropped += int(dropped_one)

    def frame_rejected(self, error: str) -> None:
        with self._lock:
            self.frames_rejected += 1
            self.set_error(error)

    def set_error(self, error: str) -> None:
        """Remember the latest problem (a rejected frame, a failed configure); '' clears it."""
        self.last_error = error
        self._last_error_at = time.monotonic() if error else float("-inf")

    def frame_out(self, model_ms: float, latency_ms: float | None, work_ms: float | None = None) -> None:
        """`work_ms`: the worker's whole time on the frame (conversion, detection, publishing): against the
        detector's own time it tells whether a slow stream loses its time in the worker or around it."""
        with self._lock:
            self.frames_out += 1
            self._model_ms.append(model_ms)
            if latency_ms is not None:
                self._latency_ms.append(latency_ms)
            if work_ms is not None:
                self._work_ms.append(work_ms)
            self._out_times.append(time.monotonic())

    def summary(self) -> dict[str, float | int | str]:
        """Counters, output rate over the recent window, model, worker and end-to-end latency percentiles."""
        with self._lock:
            model = np.asarray(self._model_ms, dtype=np.float64)
            lat = np.asarray(self._latency_ms, dtype=np.float64)
            work = np.asarray(self._work_ms, dtype=np.float64)
            times = list(self._out_times)
            out: dict[str, float | int | str] = {
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "frames_dropped": self.frames_dropped,
                "frames_rejected": self.frames_rejected,
                "last_error": self.last_error,
                "last_error_age_s": time.monotonic() - self._last_error_at if self.last_error else -1.0,
            }
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        out["fps_out"] = (len(times) - 1) / span if span > 0 else 0.0
        for name, values in (("model_ms", model), ("latency_ms", lat), ("work_ms", work)):
            out[f"{name}_mean"] = float(values.mean()) if values.size else 0.0
            out[f"{name}_p50"] = float(np.percentile(values, 50)) if values.size else 0.0
            out[f"{name}_p95"] = float(np.percentile(values, 95)) if values.size else 0.0
        return out
