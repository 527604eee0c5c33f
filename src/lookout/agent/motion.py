"""Motion types shared by the executor, the safety layer and the ROS node (no ROS here)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Odometry:
    """Planar pose in the odometry frame (REP 103: x forward, y left, yaw counter-clockwise)."""

    x: float
    y: float
    yaw: float
    stamp: float  # seconds


@dataclass(frozen=True, slots=True)
class Velocity:
    """A Twist-like command: forward speed (m/s) and turn rate (rad/s, positive is left)."""

    linear_x: float = 0.0
    angular_z: float = 0.0

    @property
    def is_zero(self) -> bool:
        return self.linear_x == 0.0 and self.angular_z == 0.0


STOP = Velocity(0.0, 0.0)


def wrap_angle(a: float) -> float:
    """Angle in (-pi, pi]."""
    return math.atan2(math.sin(a), math.cos(a))


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
