"""Where a detected object is, from its box: bearing from the horizontal offset and distance from
the box height (pinhole model with a calibrated real-height prior), or from depth when given."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lookout.agent.config import CameraConfig, PerceptionConfig
from lookout.perception.types import Detection


@dataclass(frozen=True)
class CameraModel:
    hfov_rad: float
    vfov_rad: float = 0.0  # 0: square pixels, derived from hfov and the image size
    height_m: float = 0.0  # > 0: distance from where the box meets the floor
    pitch_rad: float = 0.0  # downward tilt

    @classmethod
    def from_config(cls, cfg: CameraConfig) -> CameraModel:
        return cls(math.radians(cfg.hfov_deg), math.radians(cfg.vfov_deg), cfg.height_m, math.radians(cfg.pitch_deg))

    def distance_from_floor(self, det: Detection, width: int, height: int) -> float | None:
        """Distance to where the box's bottom edge meets the floor; None if unknown (no camera height, the
        bottom cut off by the image edge, or a ray that never reaches the floor).

        Unlike the height prior this does not depend on the object's size, only on the camera's mounting.
        """
        if self.height_m <= 0 or det.y_max >= height - 1.0:
            return None
        fx, fy = self.focal_px(width, height)
        below = self.pitch_rad + math.atan2(det.y_max - height / 2.0, fy)
        if below <= math.radians(1.0):
            return None
        cx, _ = det.center
        return self.height_m / math.tan(below) / max(math.cos(math.atan2(cx - width / 2.0, fx)), 1e-3)

    def nearest_floor_m(self, width: int, height: int) -> float | None:
        """Closest floor distance the camera sees (the bottom image edge), if the camera height is known."""
        if self.height_m <= 0:
            return None
        _, fy = self.focal_px(width, height)
        below = self.pitch_rad + math.atan2(height / 2.0, fy)
        return self.height_m / math.tan(below) if below > 0 else None

    def focal_px(self, width: int, height: int) -> tuple[float, float]:
        fx = (width / 2.0) / math.tan(self.hfov_rad / 2.0)
        fy = (height / 2.0) / math.tan(self.vfov_rad / 2.0) if self.vfov_rad > 0 else fx
        return fx, fy

    def bearing(self, det: Detection, width: int, height: int) -> float:
        """Angle to the box centre in rad; positive is to the left (counter-clockwise)."""
        fx, _ = self.focal_px(width, height)
        cx, _ = det.center
        return math.atan2(-(cx - width / 2.0), fx)

    def distance_from_height(self, det: Detection, width: int, height: int, real_height_m: float) -> float:
        """Pinhole distance; a box spanning the whole image height means 'closer than it can measure'."""
        _, fy = self.focal_px(width, height)
        box_h = max(det.height, 1e-6)
        if det.y_min <= 1.0 and det.y_max >= height - 1.0:
            return min(fy * real_height_m / float(height), fy * real_height_m / box_h)
        return fy * real_height_m / box_h


def object_height_prior(phrase: str, cfg: PerceptionConfig) -> float:
    """Real height of the object named by `phrase`: by its last word ("red cup" -> cup), else the default."""
    words = phrase.lower().split()
    for w in reversed(words):
        for key in (w, w.rstrip("s")):
            if key in cfg.object_heights_m:
                return cfg.object_heights_m[key]
    return cfg.default_object_height_m
