"""Newest-frame handoff and stream statistics (the logic behind the node's worker and diagnostics)."""

from __future__ import annotations

import threading
import time

import pytest

from lookout.perception.streaming import LatestFrame, StreamStats


def test_only_the_newest_frame_is_taken_and_replaced_ones_count_as_drops():
    slot: LatestFrame[int] = LatestFrame()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert slot.take(timeout=0.01) is None


def test_take_blocks_until_a_frame_and_close_wakes_it():
    slot: LatestFrame[str] = LatestFrame()
    got: list[str | None] = []
    reader = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    reader.start()
    time.sleep(0.05)
    slot.put("frame")
    reader.join(timeout=5)
    assert got == ["frame"]
    reader = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    reader.start()
    start = time.monotonic()
    slot.close()
    reader.join(timeout=5)
    assert got[-1] is None and time.monotonic() - start < 1 and slot.closed
    slot.reopen()
    slot.put("again")
    assert slot.take(timeout=0) == "again"


def test_stats_summarise_counts_rates_and_percentiles():
    stats = StreamStats()
    for dropped in (False, True, False):
        stats.frame_in(dropped)
    stats.frame_rejected("unsupported image encoding 'yuv422'")
    for i in range(20):
        stats.frame_out(model_ms=10.0 + i, latency_ms=20.0 + i, work_ms=12.0 + i)
        time.sleep(0.002)
    s = stats.summary()
    assert (s["frames_in"], s["frames_dropped"], s["frames_rejected"], s["frames_out"]) == (3, 1, 1, 20)
    assert "yuv422" in s["last_error"] and 0 <= s["last_error_age_s"] < 5
    assert 19.0 <= s["model_ms_p50"] <= 20.0 and s["latency_ms_p95"] > s["latency_ms_p50"]
    assert s["work_ms_mean"] == pytest.approx(s["model_ms_mean"] + 2.0)
    assert s["fps_out"] > 0


def _pipeline(process, publish):
    from lookout.perception.streaming import FramePipeline

    stats = StreamStats()
    return FramePipeline(process, publish, stats, name="t"), stats


def test_pipeline_publishes_every_processed_frame_in_order_on_its_worker():
    processed, published, threads = [], [], set()

    def process(frame: int, overlap) -> int:
        threads.add(("process", threading.current_thread().name))
        processed.append(frame)
        time.sleep(0.002)
        return frame * 10

    def publish(result: int) -> None:
        threads.add(("publish", threading.current_thread().name))
        published.append(result)

    pipe, stats = _pipeline(process, publish)
    pipe.start()
    for i in range(50):
        pipe.offer(i)
        time.sleep(0.001)
    time.sleep(0.1)
    pipe.stop()
    assert published == [f * 10 for f in processed]  # all of them, in order
    assert processed == sorted(processed) and processed[-1] == 49  # the newest frame is always processed
    assert stats.frames_in == 50 and stats.frames_dropped == 50 - len(processed)
    assert {name for _, name in threads} == {"t_worker"}  # one thread: no lock to share on the hot path
    assert not pipe.running


def test_a_result_goes_out_during_the_next_frames_overlap_or_at_once_when_idle():
    """`overlap` (where the detector waits for the GPU) sends the previous result; with no next frame it
    goes out before the worker waits for input, so an idle stream adds no latency."""
    events: list[str] = []
    pipe, _ = _pipeline(lambda f, overlap: (events.append(f"start {f}"), overlap(), events.append(f"end {f}"))
                        and f, lambda r: events.append(f"publish {r}"))  # fmt: skip
    pipe.offer(0)
    pipe.offer(1)  # replaces 0: only 1 is processed
    pipe.start()
    deadline = time.monotonic() + 5
    while "publish 1" not in events and time.monotonic() < deadline:
        time.sleep(0.005)
    pipe.stop()
    assert events == ["start 1", "end 1", "publish 1"]  # idle afterwards: published at once


def test_while_a_frame_waits_the_previous_result_is_published_inside_its_processing():
    events: list[str] = []
    holder: dict = {}

    def process(frame: int, overlap) -> int:
        events.append(f"start {frame}")
        overlap()
        if frame == 0:
            holder["pipe"].offer(1)  # the next frame arrives while this one is on the GPU
        events.append(f"end {frame}")
        return frame

    pipe, _ = _pipeline(process, lambda r: events.append(f"publish {r}"))
    holder["pipe"] = pipe
    pipe.offer(0)
    pipe.start()
    deadline = time.monotonic() + 5
    while "publish 1" not in events and time.monotonic() < deadline:
        time.sleep(0.005)
    pipe.stop()
    assert events == ["start 0", "end 0", "start 1", "publish 0", "end 1", "publish 1"]


def test_pipeline_survives_failing_frames_and_restarts_after_stop():
    published = []

    def process(frame: int, overlap) -> int | None:
        if frame == 1:
            raise RuntimeError("bad frame")
        return None if frame == 2 else frame

    def publish(result: int) -> None:
        if result == 3:
            raise ValueError("cannot publish")
        published.append(result)

    pipe, _ = _pipeline(process, publish)
    for round_ in range(2):  # stop then start again, as deactivate/activate do
        pipe.start()
        for i in range(5):
            pipe.offer(i)
            deadline = time.monotonic() + 5
            while pipe._frames.waiting and time.monotonic() < deadline:
                time.sleep(0.001)
        time.sleep(0.05)
        pipe.stop()
        assert published == [0, 4] * (round_ + 1)


def test_a_worker_that_outlives_stop_ends_after_its_frame_and_never_runs_beside_the_next():
    """stop(timeout=0) (rclpy's context shutdown) or a join that times out leaves the worker running its frame;
    a start after that must not give the old worker new frames."""
    release, busy = threading.Event(), threading.Event()
    seen: list[tuple[str, int]] = []

    def process(frame: int, overlap) -> int:
        seen.append((threading.current_thread().ident, frame))
        if frame == 0:
            busy.set()
            release.wait(5)
        return frame

    pipe, _ = _pipeline(process, lambda r: None)
    pipe.start()
    old = pipe._thread
    pipe.offer(0)
    assert busy.wait(5)
    pipe.stop(timeout=0.0)  # the old worker is still inside frame 0
    pipe.start()
    for i in range(1, 4):
        pipe.offer(i)
        time.sleep(0.02)
    release.set()
    old.join(5)
    assert not old.is_alive()
    time.sleep(0.05)
    pipe.stop()
    assert [f for t, f in seen if t == old.ident] == [0]
    assert [f for t, f in seen if t != old.ident][-1] == 3


def test_stopping_an_idle_pipeline_returns_promptly():
    pipe, _ = _pipeline(lambda f, overlap: f, lambda r: None)
    pipe.start()
    start = time.monotonic()
    pipe.stop()
    assert time.monotonic() - start < 2 and not pipe.running
    pipe.stop()  # stopping twice is harmless


def test_a_pumped_pipeline_receives_on_its_worker_and_never_waits_while_a_frame_is_ready():
    """With `pump`, the worker itself receives (the ROS node spins its image input there)."""
    from lookout.perception.streaming import FramePipeline

    incoming = list(range(20))
    pumps: list[tuple[float, bool]] = []
    published: list[int] = []
    holder: dict = {}

    def pump(timeout: float) -> None:
        pumps.append((timeout, holder["pipe"]._frames.waiting))
        if incoming:
            holder["pipe"].offer(incoming.pop(0))
        else:
            time.sleep(timeout)

    def process(frame: int, overlap) -> int:
        if frame % 2 == 0 and incoming:  # a frame arrives during detection, as with `detect(overlap=...)`
            holder["pipe"].offer(incoming.pop(0))
        return frame

    stats = StreamStats()
    pipe = holder["pipe"] = FramePipeline(process, published.append, stats, pump=pump, name="p")
    pipe.start()
    deadline = time.monotonic() + 5
    while (incoming or len(published) < 20) and time.monotonic() < deadline:
        time.sleep(0.01)
    pipe.stop()
    assert published == list(range(20)) and stats.frames_in == 20 and stats.frames_dropped == 0
    assert not any(waiting for _, waiting in pumps), "the worker blocked on input with a frame ready"


def test_sequence_gaps_count_frames_a_publisher_sent_that_never_arrived():
    from lookout.perception.streaming import SequenceGaps

    gaps = SequenceGaps()
    assert gaps.missed(b"cam", 1) == 0  # the first sample we see: nothing known about before
    assert gaps.missed(b"cam", 2) == 0
    assert gaps.missed(b"cam", 6) == 3  # 3, 4, 5 were replaced in the middleware's keep-last history
    assert gaps.missed(b"other", 40) == 0 and gaps.missed(b"other", 42) == 1  # per publisher
    assert gaps.missed(b"cam", 6) == 0 and gaps.missed(b"cam", 4) == 0  # repeats or reordering: no gap
    assert gaps.missed(b"cam", None) == 0 and gaps.missed(b"cam", SequenceGaps.UNSUPPORTED) == 0
