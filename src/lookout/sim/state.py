"""Plain records of the simulated world (no MuJoCo needed to read or score them)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from lookout.sim.world import Pose2D, SceneObject


@dataclass(frozen=True)
class Odometry:
    """Pose in the odom frame (origin = pose at reset) and body-frame velocities."""

    time_s: float
    x: float
    y: float
    yaw: float
    linear: float
    angular: float


class WorldState(BaseModel):
    """Everything a scorer may look at, JSON-serialisable (published on sim/ground_truth)."""

    model_config = ConfigDict(frozen=True)
    time_s: float
    seed: int
    room_size_m: float
    robot_radius_m: float
    camera_hfov_deg: float
    robot: Pose2D
    robot_start: Pose2D
    linear: float
    angular: float
    collisions: int
    objects: list[SceneObject]

    def find(self, phrase: str) -> SceneObject | None:
        key = " ".join(phrase.lower().split())
        return next((o for o in self.objects if o.phrase == key), None)
