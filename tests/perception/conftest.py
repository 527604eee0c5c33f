"""Tiny detectors built once per test session (random weights, calibrated so they report boxes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookout.perception.synthetic import make_closed_set_model, make_world_model, synthetic_frames
from lookout.perception.text_encoders import OfflineTextEncoder

IMGSZ = 160
STORED_CLASSES = ("red cup", "person", "blue box")


class CountingEncoder:
    """The real offline encoder, counting how often (and with what) it is called."""

    def __init__(self, inner: OfflineTextEncoder) -> None:
        self.inner, self.id, self.dim = inner, inner.id, inner.dim
        self.calls: list[list[str]] = []

    def encode(self, phrases):
        self.calls.append(list(phrases))
        return self.inner.encode(phrases)


@pytest.fixture(scope="session")
def offline_encoder() -> OfflineTextEncoder:
    return OfflineTextEncoder(dim=512)


@pytest.fixture
def counting_encoder(offline_encoder) -> CountingEncoder:
    return CountingEncoder(offline_encoder)


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    return synthetic_frames(3, width=160, height=128, seed=1)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("perception_models")


@pytest.fixture(scope="session")
def world_model(model_dir, offline_encoder, frames) -> Path:
    """YOLO-World v2 (n scale) trained with nothing, recording the offline encoder and 3 stored phrases."""
    return make_world_model(
        model_dir / "world.pt",
        encoder=offline_encoder,
        classes=STORED_CLASSES,
        frames=frames,
        imgsz=IMGSZ,
        boxes=10,
    )


@pytest.fixture(scope="session")
def clip_world_model(model_dir, frames) -> Path:
    """A YOLO-World file with no encoder record: like official weights, it needs CLIP ViT-B/32."""
    return make_world_model(
        model_dir / "clip_world.pt", classes=STORED_CLASSES, frames=frames, imgsz=IMGSZ, boxes=10
    )


@pytest.fixture(scope="session")
def closed_model(model_dir, frames) -> Path:
    """YOLO11n from yolo11n.yaml with COCO class names."""
    return make_closed_set_model(model_dir / "yolo11n.pt", frames=frames, imgsz=IMGSZ, boxes=10)


def pytest_configure(config) -> None:
    # Tests sharing the session-built models carry this group so `--dist loadgroup` builds them in one worker.
    config.addinivalue_line("markers", "xdist_group(name): run in one xdist worker under --dist loadgroup")
