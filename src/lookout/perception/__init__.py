"""Open-vocabulary detection (YOLO-World) and closed-set detection (YOLO11/YOLOv8) without ROS."""

from lookout.perception.types import Detection, DetectionResult

__all__ = ["Detection", "DetectionResult"]
