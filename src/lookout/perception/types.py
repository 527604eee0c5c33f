"""Typed detector output shared by the core library, the ROS nodes and the agent."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Detection:
    """One box in pixel coordinates of the image it came from (x right, y down)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    score: float
    phrase: str
    class_index: int
    track_id: int | None = None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x_min, self.y_min, self.x_max, self.y_max)

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x_min + self.x_max) / 2.0, (self.y_min + self.y_max) / 2.0)


@dataclass(slots=True)
class DetectionResult:
    """All detections of one frame, the vocabulary they index, and per-stage timings in ms."""

    detections: list[Detection]
    vocabulary: list[str]
    image_width: int
    image_height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
