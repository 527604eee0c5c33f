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
