"""Open-vocabulary detection (YOLO-World) and closed-set detection (YOLO11/YOLOv8) without ROS.

`Detection`/`DetectionResult` import cheaply (ROS message conversions need only them); `Detector` and
`DetectorConfig` load torch, Ultralytics and pydantic on first access.
"""

from typing import Any

from lookout.perception.types import Detection, DetectionResult

__all__ = ["Detection", "DetectionResult", "Detector", "DetectorConfig"]


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from lookout.perception.detector import Detector

        return Detector
    if name == "DetectorConfig":
        from lookout.perception.config import DetectorConfig

        return DetectorConfig
    raise AttributeError(f"module 'lookout.perception' has no attribute {name!r}")
