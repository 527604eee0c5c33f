"""Test-wide settings: offline hubs, CPU rendering, and ROS isolation between parallel workers."""

from __future__ import annotations

import os

# Nothing can be downloaded here: make every hub client fail fast instead of hanging.
for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "YOLO_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
}.items():
    os.environ.setdefault(_k, _v)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def worker_index() -> int:
    """0 for the main process or xdist worker gw0, 1 for gw1, ..."""
    wid = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(wid.removeprefix("gw") or 0)
