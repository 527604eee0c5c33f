"""Running a detector on a live stream: newest-frame handoff and the counters behind diagnostics.

A camera publishes faster than a detector may run. Queuing frames only adds latency (yolo_ros users see
seconds of lag), so the receiver puts each frame into a one-slot mailbox that replaces what is waiting
(counted as dropped) and a worker always takes the newest. Pure Python: the ROS node only wires it up.
"""

from __future__ import annotations

import contextlib
import logging
import queue
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
    """Newest-frame detection in two stages on two threads, results published in order.

    `offer` puts a frame in a one-slot mailbox (replacing one that waits: a drop). The worker thread takes the
    newest and runs `process` on it (decode and detect; None means nothing to publish); a second thread runs
    `publish` on each result in order. Why two: on a GPU the worker spends much of a frame waiting for its
    kernels with the GIL released, and building and sending the previous frame's messages fits in that wait
    instead of adding to every frame. The handoff holds at most `backlog` results, so a slow publisher slows
    the worker rather than growing a queue. An exception in either callable is logged and the stream goes on.

    `pump(timeout)`, when given, receives on the worker thread itself: it should wait up to `timeout` seconds
    for input and hand what arrived to `offer`. Then no other thread touches frames: while the worker detects,
    the middleware keeps the newest frame (keep-last history), and frames it replaced never cost any Python.
    """

    def __init__(self, process: Callable[[T], R | None], publish: Callable[[R], None], stats: StreamStats,
                 *, pump: Callable[[float], None] | None = None, name: str = "detector",
                 backlog: int = 2) -> None:  # fmt: skip
        self._process, self._publish, self._stats, self._pump = process, publish, stats, pump
        self._name = name
        self._frames: LatestFrame[T] = LatestFrame()
        self._results: queue.Queue[tuple[R] | None] = queue.Queue(maxsize=backlog)
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def start(self) -> None:
        if self._threads:
            return
        self._frames.reopen()
        self._results = queue.Queue(maxsize=self._results.maxsize)
        self._threads = [
            threading.Thread(target=self._work, name=f"{self._name}_worker", daemon=True),
            threading.Thread(target=self._send, name=f"{self._name}_publisher", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def offer(self, frame: T, missed: int = 0) -> None:
        """Hand over a received frame (never blocks); counted in, and as dropped when it replaced one. `missed`:
        frames known to be lost before this one arrived (see `SequenceGaps`)."""
        self._stats.frame_in(dropped=int(self._frames.put(frame)) + missed)

    def stop(self, timeout: float = 10.0) -> None:
        """Drop the waiting frame, finish the one being processed, publish what is done, join both threads
        (`timeout` 0: only tell them to stop)."""
        if not self._threads:
            return
        self._frames.close()
        worker, sender = self._threads
        worker.join(timeout)
        with contextlib.suppress(queue.Full):  # not waiting (timeout 0): the daemon threads end when they can
            self._results.put(None, timeout=timeout if timeout > 0 else None, block=timeout > 0)
        sender.join(timeout)
        self._threads = []

    def _work(self) -> None:
        while True:
            if self._pump is not None and not self._frames.closed and not self._frames.waiting:  # wait only if idle
                try:
                    self._pump(0.1)
                except Exception:
                    log.exception("%s: receiving failed", self._name)
                    time.sleep(0.1)
            frame = self._frames.take(timeout=0.0 if self._pump is not None else 0.5)
            if frame is None:
                if self._frames.closed:
                    return
                continue
            try:
                result = self._process(frame)
            except Exception:  # `process` reports its own errors; this only keeps the stream alive
                log.exception("%s: processing a frame failed", self._name)
                continue
            if result is not None:
                self._results.put((result,))

    def _send(self) -> None:
        while (item := self._results.get()) is not None:
            try:
                self._publish(item[0])
            except Exception:
                log.exception("%s: publishing a result failed", self._name)


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
