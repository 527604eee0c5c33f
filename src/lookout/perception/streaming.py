"""Running a detector on a live stream: newest-frame handoff and the counters behind diagnostics.

A camera publishes faster than a detector may run. Queuing frames only adds latency (yolo_ros users see
seconds of lag), so the receiver puts each frame into a one-slot mailbox that replaces what is waiting
(counted as dropped) and a worker always takes the newest. Pure Python: the ROS node only wires it up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class LatestFrame(Generic[T]):
    """One-slot mailbox: `put` overwrites a waiting item, `take` blocks until an item or `close`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._closed = False

    def put(self, item: T) -> bool:
        """Offer a frame; returns True when it replaced one that was never processed (a drop). Ignored once closed."""
        with self._cond:
            if self._closed:
                return False
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

    @property
    def waiting(self) -> bool:
        """Whether an item waits to be taken."""
        return self._has_item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item, self._has_item = None, False
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class FramePipeline(Generic[T, R]):
    """Newest-frame detection on one worker thread, results published in order.

    `offer` puts a frame in a one-slot mailbox (replacing one that waits: a drop). The worker takes the newest
    and runs `process(frame, overlap)` on it (decode and detect; None means nothing to publish). Each result is
    published while the next frame is processed: `process` calls `overlap()` where it waits for the GPU, and
    the previous result goes out there; when no frame waits, it goes out at once. On the H200 this beat a
    second publishing thread: one thread does all the Python, so it never waits for the GIL between kernels.
    An exception in either callable is logged and the stream goes on.

    `pump(timeout)`, when given, receives on the worker thread itself: it should wait up to `timeout` seconds
    for input and hand what arrived to `offer`. Then no other thread touches frames: while the worker detects,
    the middleware keeps the newest frame (keep-last history), and frames it replaced never cost any Python.
    """

    def __init__(self, process: Callable[[T, Callable[[], None]], R | None], publish: Callable[[R], None],
                 stats: StreamStats, *, pump: Callable[[float], None] | None = None,
                 name: str = "detector") -> None:  # fmt: skip
        self._process, self._publish, self._stats, self._pump = process, publish, stats, pump
        self._name = name
        self._frames: LatestFrame[T] = LatestFrame()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, args=(self._frames,), name=f"{self._name}_worker",
                                        daemon=True)
        self._thread.start()

    def offer(self, frame: T, missed: int = 0) -> None:
        """Hand over a received frame (never blocks); counted in, and as dropped when it replaced one. `missed`:
        frames known to be lost before this one arrived (see `SequenceGaps`)."""
        self._stats.frame_in(dropped=int(self._frames.put(frame)) + missed)

    def stop(self, timeout: float = 10.0) -> None:
        """Take no more frames; the worker finishes the frame it has (and one already waiting), publishes them
        and ends. Joins it (`timeout` 0: only tell it to stop)."""
        if self._thread is None:
            return
        self._frames.close()
        self._thread.join(timeout)
        self._thread = None
        # A fresh mailbox for the next `start`: a worker that outlived this (its join timed out, e.g. `timeout`
        # 0) keeps the old, closed one and ends after its frame instead of running on beside the next worker.
        self._frames = LatestFrame()

    def _work(self, frames: LatestFrame[T]) -> None:
        unsent: list[R] = []  # the last result, until the next frame's `overlap` or an idle moment sends it

        def send() -> None:
            while unsent:
                try:
                    self._publish(unsent.pop())
                except Exception:
                    log.exception("%s: publishing a result failed", self._name)

        while True:
            if not frames.waiting:
                send()
                if self._pump is not None and not frames.closed:
                    try:
                        self._pump(0.1)
                    except Exception:
                        log.exception("%s: receiving failed", self._name)
                        time.sleep(0.1)
            frame = frames.take(timeout=0.0 if self._pump is not None else 0.5)
            if frame is None:
                if frames.closed:
                    send()
                    return
                continue
            try:
                result = self._process(frame, send)
            except Exception:  # `process` reports its own errors; this only keeps the stream alive
                log.exception("%s: processing a frame failed", self._name)
                result = None
            send()  # if `process` did not call `overlap`
            if result is not None:
                unsent.append(result)


class SequenceGaps:
    """Frames a publisher sent that never reached us, from gaps in its publication sequence numbers.

    With keep-last-1 history the middleware replaces a frame that waits while the detector is busy, so the
    node never sees it; this still counts it as dropped. Publishers are told apart by their id; a middleware
    that does not number samples (None, or the all-ones "unsupported" value) counts nothing.
    """

    UNSUPPORTED = 2**64 - 1

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}

    def missed(self, publisher: bytes, seq: int | None) -> int:
        if seq is None or seq <= 0 or seq >= self.UNSUPPORTED:
            return 0
        last = self._last.get(publisher)
        self._last[publisher] = seq
        return seq - last - 1 if last is not None and seq > last + 1 else 0


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

    def frame_in(self, dropped: int = 0) -> None:
        """One frame received; `dropped`: frames lost or replaced unprocessed since the last one."""
        with self._lock:
            self.frames_in += 1
            self.frames_dropped += dropped

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
