"""Pinhole model of the simulated camera: intrinsics for CameraInfo and projection for tests and labels.

MuJoCo renders with square pixels and a vertical field of view, so fx = fy = (H / 2) / tan(fovy / 2).
Pixel coordinates follow OpenCV and ROS CameraInfo: (0, 0) is the centre of the top-left pixel, so
the principal point is ((W - 1) / 2, (H - 1) / 2). The optical frame is x right, y down, z forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lookout.sim.config import CameraConfig


@dataclass(frozen=True)
class CameraIntrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_config(cls, cam: CameraConfig) -> CameraIntrinsics:
        f = (cam.height / 2.0) / math.tan(math.radians(cam.fovy_deg) / 2.0)
        return cls(cam.width, cam.height, f, f, (cam.width - 1) / 2.0, (cam.height - 1) / 2.0)

    @property
    def k(self) -> list[float]:
        """Row-major 3x3 camera matrix (CameraInfo.k)."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    @property
    def p(self) -> list[float]:
        """Row-major 3x4 projection matrix of a monocular camera (CameraInfo.p)."""
        return [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]

    def project(self, points_optical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) points in the optical frame -> (N, 2) pixel coordinates and (N,) depths (z)."""
        pts = np.asarray(points_optical, dtype=float).reshape(-1, 3)
        z = pts[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * pts[:, 0] / z + self.cx
            v = self.fy * pts[:, 1] / z + self.cy
        return np.stack([u, v], axis=1), z


def optical_rotation_in_base(pitch_deg: float) -> np.ndarray:
    """3x3 rotation whose columns are the optical x, y, z axes written in base_link (x fwd, y left, z up)."""
    p = math.radians(pitch_deg)
    x_opt = [0.0, -1.0, 0.0]  # image right = robot's right
    y_opt = [-math.sin(p), 0.0, -math.cos(p)]  # image down
    z_opt = [math.cos(p), 0.0, -math.sin(p)]  # viewing direction: forward, tilted down by the pitch
    return np.array([x_opt, y_opt, z_opt]).T


def optical_quaternion_in_base(pitch_deg: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of the optical frame in base_link, as geometry_msgs wants it."""
    from lookout.mujoco_loader import load_mujoco

    quat = np.zeros(4)  # MuJoCo's order: w, x, y, z
    load_mujoco().mju_mat2Quat(quat, optical_rotation_in_base(pitch_deg).ravel())
    w, x, y, z = (float(v) for v in quat)
    return x, y, z, w
