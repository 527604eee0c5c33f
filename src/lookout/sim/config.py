"""Typed simulator settings, loaded from config/sim.yaml.

The same keys reach `Sim` (Python), `sim_node` (as ROS parameters with dotted names such as
`camera.width`) and the dataset renderer, so a scene looks the same from every entry point.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.10, 0.65, 0.15),
    "blue": (0.10, 0.25, 0.85),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "purple": (0.50, 0.15, 0.65),
    "white": (0.95, 0.95, 0.95),
    "black": (0.06, 0.06, 0.06),
}
SHAPES: tuple[str, ...] = ("ball", "box", "cylinder", "bottle", "cone")
NODE_ONLY_PARAMETERS = ("config_file", "scene_overrides", "use_sim_time")  # sim_node parameters outside SimConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoomConfig(_Section):
    size_m: float = Field(6.0, ge=2.0, le=30.0, description="side of the square room (m)")
    wall_height_m: float = Field(2.5, gt=0.0, le=5.0, description="height of the walls and ceiling (m)")


class ObjectsConfig(_Section):
    min_count: int = Field(4, ge=0, le=40, description="fewest objects in a generated scene")
    max_count: int = Field(8, ge=0, le=40, description="most objects in a generated scene")
    colors: list[str] = Field(default_factory=lambda: list(COLORS), description="colour words objects may have")
    shapes: list[str] = Field(default_factory=lambda: list(SHAPES), description="shape words objects may have")
    min_gap_m: float = Field(0.4, ge=0.0, description="free floor between two objects (m), room for the robot")
    wall_margin_m: float = Field(0.35, ge=0.0, description="free floor between an object and a wall (m)")
    robot_clearance_m: float = Field(0.6, ge=0.0, description="free floor between the robot's start and any object (m)")
    size_scale: float = Field(1.0, gt=0.1, le=5.0, description="multiplies every object size")

    @model_validator(mode="after")
    def _check(self) -> ObjectsConfig:
        if self.min_count > self.max_count:
            raise ValueError(f"objects.min_count ({self.min_count}) > objects.max_count ({self.max_count})")
        bad = [c for c in self.colors if c not in COLORS]
        if bad or not self.colors:
            raise ValueError(f"unknown colours {bad}; choose from {sorted(COLORS)}")
        bad = [s for s in self.shapes if s not in SHAPES]
        if bad or not self.shapes:
            raise ValueError(f"unknown shapes {bad}; choose from {list(SHAPES)}")
        return self


class RobotConfig(_Section):
    radius_m: float = Field(0.17, gt=0.05, le=1.0, description="radius of the round base (m)")
    max_linear_speed: float = Field(0.6, gt=0.0, le=5.0, description="hardware limit on |cmd_vel.linear.x| (m/s)")
    max_angular_speed: float = Field(2.0, gt=0.0, le=10.0, description="hardware limit on |cmd_vel.angular.z| (rad/s)")


class CameraConfig(_Section):
    width: int = Field(320, ge=16, le=4096, description="image width (px)")
    height: int = Field(240, ge=16, le=4096, description="image height (px)")
    fovy_deg: float = Field(46.83, gt=5.0, lt=170.0,
                            description="vertical field of view (degrees); 46.83 at 4:3 is 60 horizontally")
    pitch_deg: float = Field(10.0, ge=-45.0, le=60.0, description="downward tilt of the camera (degrees)")
    height_m: float = Field(0.25, gt=0.05, le=2.0, description="camera height above the floor (m)")
    forward_m: float = Field(0.15, ge=0.0, le=1.0, description="camera offset ahead of the base centre (m)")
    rate_hz: float = Field(15.0, gt=0.0, le=120.0, description="frames per simulated second")

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view implied by fovy and the aspect ratio (square pixels)."""
        half = math.atan(math.tan(math.radians(self.fovy_deg) / 2) * self.width / self.height)
        return math.degrees(2 * half)


class OdometryConfig(_Section):
    linear_noise: float = Field(0.0, ge=0.0, le=1.0, description="std of odometry distance error per metre driven")
    angular_noise: float = Field(0.0, ge=0.0, le=1.0, description="std of odometry heading error per radian turned")


class LabelsConfig(_Section):
    min_visible_fraction: float = Field(0.3, ge=0.0, le=1.0,
                                        description="label an object only if this share of it is not occluded")
    min_box_pixels: int = Field(40, ge=1, description="label an object only if its mask has this many pixels")


class NodeConfig(_Section):
    """Settings only `sim_node` reads (the library ignores them)."""

    seed: int = Field(0, ge=0, description="scene seed used by ~/reset")
    rate_factor: float = Field(1.0, gt=0.0, le=100.0, description="simulated seconds per wall second")
    tick_hz: float = Field(50.0, gt=1.0, le=1000.0, description="physics/odometry updates per wall second")
    cmd_timeout_s: float = Field(0.5, gt=0.0, description="cmd_vel older than this (sim seconds) counts as zero")
    ground_truth_hz: float = Field(2.0, gt=0.0, le=50.0, description="rate of sim/ground_truth (sim seconds)")
    publish_clock: bool = Field(True, description="publish /clock so other nodes can run on sim time")
    odom_frame: str = Field("odom", description="REP 105 odometry frame")
    base_frame: str = Field("base_link", description="REP 105 robot frame")
    camera_frame: str = Field("camera_optical_frame", description="optical frame of the camera (z forward, x right)")


class SimConfig(_Section):
    room: RoomConfig = Field(default_factory=RoomConfig)
    objects: ObjectsConfig = Field(default_factory=ObjectsConfig)
    robot: RobotConfig = Field(default_factory=RobotConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    odometry: OdometryConfig = Field(default_factory=OdometryConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    node: NodeConfig = Field(default_factory=NodeConfig)
    physics_dt: float = Field(0.01, gt=0.0, le=0.1, description="integration sub-step (s)")
    shadows: bool = Field(False, description="render shadows (about 10x slower on OSMesa)")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SimConfig:
        """Plain SimConfig YAML, or a ROS parameter file (`/**: ros__parameters: {...}`) with the same keys."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"simulator config {path} not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"simulator config {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"simulator config {path} must be a mapping, got {type(data).__name__}")
        wrapped = [v["ros__parameters"] for v in data.values() if isinstance(v, dict) and "ros__parameters" in v]
        if wrapped:
            data = {k: v for k, v in wrapped[0].items() if k not in NODE_ONLY_PARAMETERS}
            # dotted keys (camera.width: 320) are allowed in ROS parameter files
            nested: dict[str, Any] = {}
            for key, value in data.items():
                section, _, name = key.partition(".")
                if name:
                    nested.setdefault(section, {})[name] = value
                else:
                    nested[section] = value if not isinstance(value, dict) else {**nested.get(section, {}), **value}
            data = nested
        return cls.model_validate(data)

    @classmethod
    def default(cls) -> SimConfig:
        from lookout.paths import config_dir

        path = config_dir() / "sim.yaml"
        return cls.from_yaml(path) if path.is_file() else cls()

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values (`camera.width: 320`), the shape ROS parameters take."""
        out: dict[str, Any] = {}
        for section, value in self.model_dump().items():
            if isinstance(value, dict):
                for key, item in value.items():
                    out[f"{section}.{key}"] = item
            else:
                out[section] = value
        return out

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> SimConfig:
        nested: dict[str, Any] = {}
        for key, value in flat.items():
            section, _, name = key.partition(".")
            if name:
                nested.setdefault(section, {})[name] = value
            else:
                nested[section] = value
        return cls.model_validate(nested)

    @staticmethod
    def describe(key: str) -> str:
        """The field description for a dotted key (used as the ROS parameter description)."""
        section, _, name = key.partition(".")
        if not name:
            return SimConfig.model_fields[section].description or ""
        model = SimConfig.model_fields[section].default_factory  # type: ignore[union-attr]
        return model.model_fields[name].description or ""  # type: ignore[union-attr]
