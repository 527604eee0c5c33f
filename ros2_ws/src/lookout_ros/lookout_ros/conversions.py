"""Conversions between `lookout` core types and `lookout_interfaces` messages (no logic here)."""

from __future__ import annotations

from lookout_interfaces.msg import Detection as DetectionMsg
from lookout_interfaces.msg import DetectionArray

from lookout.perception.types import Detection, DetectionResult


def detection_to_msg(det: Detection) -> DetectionMsg:
    msg = DetectionMsg()
    msg.x_min, msg.y_min, msg.x_max, msg.y_max = (float(v) for v in det.xyxy)
    msg.score = float(det.score)
    msg.phrase = det.phrase
    msg.class_index = int(det.class_index)
    msg.track_id = -1 if det.track_id is None else int(det.track_id)
    return msg


def detection_from_msg(msg: DetectionMsg) -> Detection:
    return Detection(
        x_min=msg.x_min,
        y_min=msg.y_min,
        x_max=msg.x_max,
        y_max=msg.y_max,
        score=msg.score,
        phrase=msg.phrase,
        class_index=msg.class_index,
        track_id=None if msg.track_id < 0 else msg.track_id,
    )


def result_to_msg(result: DetectionResult, header, latency_ms: float = 0.0) -> DetectionArray:
    """Build a DetectionArray; `header` is the source image's header (stamp and frame_id kept)."""
    msg = DetectionArray()
    msg.header = header
    msg.image_width = int(result.image_width)
    msg.image_height = int(result.image_height)
    msg.detections = [detection_to_msg(d) for d in result.detections]
    msg.vocabulary = list(result.vocabulary)
    msg.preprocess_ms = float(result.timings_ms.get("preprocess", 0.0))
    msg.inference_ms = float(result.timings_ms.get("inference", 0.0))
    msg.postprocess_ms = float(result.timings_ms.get("postprocess", 0.0))
    msg.latency_ms = float(latency_ms)
    return msg


def result_from_msg(msg: DetectionArray) -> DetectionResult:
    return DetectionResult(
        detections=[detection_from_msg(d) for d in msg.detections],
        vocabulary=list(msg.vocabulary),
        image_width=msg.image_width,
        image_height=msg.image_height,
        timings_ms={
            "preprocess": msg.preprocess_ms,
            "inference": msg.inference_ms,
            "postprocess": msg.postprocess_ms,
        },
    )
