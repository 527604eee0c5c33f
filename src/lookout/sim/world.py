"""Scenes as plain data: which objects stand where, generated from a seed.

A scene is a square room, a robot start pose and a few coloured objects, each named by a phrase
("red ball", "blue box"). Generation is a pure function of (seed, config, overrides), so a scenario
can name its scene by seed and a test can rebuild it exactly. No two objects share a phrase, so a
phrase names one object; distractors share a colour or a shape with the target, never both.
Nothing here imports MuJoCo: `mjcf.py` turns a `Scene` into a model.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lookout.sim.config import COLORS, SHAPES, SimConfig


class SceneError(ValueError):
    """A scene cannot be built as asked (e.g. an override names an unknown colour, or nothing fits)."""


def wrap_angle(a: float) -> float:
    """Angle in (-pi, pi]."""
    return math.atan2(math.sin(a), math.cos(a))


def split_phrase(phrase: str) -> tuple[str, str]:
    """'red ball' -> ('red', 'ball'); raises SceneError naming the words that are allowed."""
    words = phrase.strip().lower().split()
    if len(words) != 2 or words[0] not in COLORS or words[1] not in SHAPES:
        raise SceneError(
            f"object phrase {phrase!r} must be '<colour> <shape>' with colour in {sorted(COLORS)} "
            f"and shape in {list(SHAPES)}"
        )
    return words[0], words[1]


class Pose2D(BaseModel):
    model_config = ConfigDict(frozen=True)
    x: float
    y: float
    yaw: float  # radians, counter-clockwise from +x

    def distance_to(self, x: float, y: float) -> float:
        return math.hypot(x - self.x, y - self.y)

    def bearing_to(self, x: float, y: float) -> float:
        """Angle of (x, y) seen from this pose, relative to its heading (radians, left positive)."""
        return wrap_angle(math.atan2(y - self.y, x - self.x) - self.yaw)


class SceneObject(BaseModel):
    """One object. Sizes are in metres; `size` holds the shape's own parameters."""

    model_config = ConfigDict(frozen=True)
    phrase: str
    color: str
    shape: Literal["ball", "box", "cylinder", "bottle", "cone"]
    x: float
    y: float
    yaw: float = 0.0
    size: dict[str, float]

    @property
    def height(self) -> float:
        s = self.size
        return {
            "ball": 2 * s.get("radius", 0.0),
            "box": 2 * s.get("hz", 0.0),
            "cylinder": 2 * s.get("half_height", 0.0),
            "bottle": 2 * s.get("half_height", 0.0) * 1.6,
            "cone": s.get("height", 0.0),
        }[self.shape]

    @property
    def footprint_radius(self) -> float:
        """Radius of the smallest floor circle around the object (for spacing)."""
        s = self.size
        if self.shape == "box":
            return math.hypot(s["hx"], s["hy"])
        return s["radius"]

    def floor_distance(self, x: float, y: float) -> float:
        """Distance on the floor from (x, y) to the object's footprint (0 inside it)."""
        dx, dy = x - self.x, y - self.y
        if self.shape != "box":
            return max(0.0, math.hypot(dx, dy) - self.size["radius"])
        c, s = math.cos(-self.yaw), math.sin(-self.yaw)
        lx, ly = c * dx - s * dy, s * dx + c * dy  # into the box's own frame
        ex = max(abs(lx) - self.size["hx"], 0.0)
        ey = max(abs(ly) - self.size["hy"], 0.0)
        return math.hypot(ex, ey)


class Scene(BaseModel):
    model_config = ConfigDict(frozen=True)
    seed: int
    room_size_m: float
    robot_start: Pose2D
    objects: list[SceneObject]

    def find(self, phrase: str) -> SceneObject | None:
        key = " ".join(phrase.lower().split())
        return next((o for o in self.objects if o.phrase == key), None)

    @property
    def phrases(self) -> list[str]:
        return [o.phrase for o in self.objects]


class SceneOverrides(BaseModel):
    """What a scenario needs from its scene, on top of the seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    require: list[str] = Field(default_factory=list, description="phrases that must exist")
    exclude: list[str] = Field(default_factory=list,
                               description="phrases, colours or shapes that must not exist")
    in_view: list[str] = Field(default_factory=list, description="phrases placed in the start camera view")
    out_of_view: list[str] = Field(default_factory=list, description="phrases placed outside the start view")
    n_objects: int | None = Field(None, ge=0, le=40, description="exact number of objects")
    free_ahead_m: float = Field(0.0, ge=0.0, description="keep this much floor ahead of the robot clear")
    free_behind_m: float = Field(0.0, ge=0.0, description="keep this much floor behind the robot clear")
    robot: tuple[float, float, float] | None = Field(None, description="start pose (x m, y m, yaw degrees)")

    @field_validator("require", "in_view", "out_of_view")
    @classmethod
    def _phrases(cls, v: list[str]) -> list[str]:
        out = []
        for p in v:
            color, shape = split_phrase(p)
            out.append(f"{color} {shape}")
        return out

    @field_validator("exclude")
    @classmethod
    def _excludes(cls, v: list[str]) -> list[str]:
        out = []
        for p in v:
            p = " ".join(p.lower().split())
            if p not in COLORS and p not in SHAPES:
                color, shape = split_phrase(p)
                p = f"{color} {shape}"
            out.append(p)
        return out

    def excludes(self, color: str, shape: str) -> bool:
        return any(e in (color, shape, f"{color} {shape}") for e in self.exclude)

    def placement_of(self, phrase: str) -> str:
        if phrase in self.in_view:
            return "in_view"
        if phrase in self.out_of_view:
            return "out_of_view"
        return "anywhere"


def _sample_size(shape: str, rng: np.random.Generator, scale: float) -> dict[str, float]:
    u = rng.uniform
    if shape == "ball":
        size = {"radius": u(0.08, 0.16)}
    elif shape == "box":
        size = {"hx": u(0.08, 0.18), "hy": u(0.08, 0.18), "hz": u(0.08, 0.2)}
    elif shape == "cylinder":
        size = {"radius": u(0.07, 0.13), "half_height": u(0.1, 0.22)}
    elif shape == "bottle":
        size = {"radius": u(0.045, 0.07), "half_height": u(0.09, 0.14)}
    else:  # cone
        size = {"radius": u(0.09, 0.15), "height": u(0.22, 0.38)}
    return {k: round(v * scale, 4) for k, v in size.items()}


def _corridor_hits(robot: Pose2D, x: float, y: float, r: float, length: float, half_width: float,
                   backwards: bool) -> bool:
    """True if a circle (x, y, r) overlaps the strip of `length` ahead of (or behind) the robot."""
    if length <= 0:
        return False
    dx, dy = x - robot.x, y - robot.y
    c, s = math.cos(robot.yaw), math.sin(robot.yaw)
    along, across = c * dx + s * dy, -s * dx + c * dy
    if backwards:
        along = -along
    return -r < along < length + r and abs(across) < half_width + r


def _sample_robot(rng: np.random.Generator, cfg: SimConfig, ov: SceneOverrides) -> Pose2D | None:
    """A start pose with room for the requested corridors (and for objects in view), or None."""
    half, robot_r = cfg.room.size_m / 2, cfg.robot.radius_m
    ahead_m = max(ov.free_ahead_m, 1.8 if ov.in_view else 0.0) + robot_r
    for _ in range(1000):
        lim = max(half - 1.0, 0.1)
        robot = Pose2D(x=rng.uniform(-lim, lim), y=rng.uniform(-lim, lim), yaw=rng.uniform(-math.pi, math.pi))
        ends = [(ahead_m, 1.0), (ov.free_behind_m + robot_r, -1.0)]
        if all(
            max(abs(robot.x + sgn * d * math.cos(robot.yaw)), abs(robot.y + sgn * d * math.sin(robot.yaw)))
            < half - 0.1
            for d, sgn in ends
        ):
            return robot
    return None


def _place_objects(rng: np.random.Generator, cfg: SimConfig, ov: SceneOverrides, robot: Pose2D,
                   phrases: list[str], required: set[str]) -> list[SceneObject] | None:
    """Place objects one by one by rejection sampling; None if a required one does not fit."""
    half, robot_r = cfg.room.size_m / 2, cfg.robot.radius_m
    hfov = math.radians(cfg.camera.hfov_deg)
    placed: list[SceneObject] = []
    for phrase in phrases:
        color, shape = split_phrase(phrase)
        size = _sample_size(shape, rng, cfg.objects.size_scale)
        r = SceneObject(phrase=phrase, color=color, shape=shape, x=0, y=0, size=size).footprint_radius
        where = ov.placement_of(phrase)
        for _ in range(400):
            if where == "anywhere":
                lim = half - cfg.objects.wall_margin_m - r
                x, y = rng.uniform(-lim, lim), rng.uniform(-lim, lim)
            else:
                if where == "in_view":
                    bearing = rng.uniform(-0.6, 0.6) * (hfov / 2)
                    dist = rng.uniform(1.0, 2.4)
                else:
                    bearing = rng.choice([-1.0, 1.0]) * rng.uniform(hfov / 2 + 0.5, math.pi)
                    dist = rng.uniform(1.0, 2.6)
                x = robot.x + dist * math.cos(robot.yaw + bearing)
                y = robot.y + dist * math.sin(robot.yaw + bearing)
            if max(abs(x), abs(y)) > half - cfg.objects.wall_margin_m - r:
                continue
            if math.hypot(x - robot.x, y - robot.y) < robot_r + cfg.objects.robot_clearance_m + r:
                continue
            if any(math.hypot(x - o.x, y - o.y) < r + o.footprint_radius + cfg.objects.min_gap_m for o in placed):
                continue
            # the robot's whole body must fit along the corridor: its centre travels `free_*_m`
            if _corridor_hits(robot, x, y, r, ov.free_ahead_m + robot_r, robot_r + 0.05, False) or _corridor_hits(
                robot, x, y, r, ov.free_behind_m + robot_r, robot_r + 0.05, True
            ):
                continue
            if where == "in_view" and any(
                _corridor_hits(Pose2D(x=robot.x, y=robot.y, yaw=math.atan2(y - robot.y, x - robot.x)),
                               o.x, o.y, o.footprint_radius, math.hypot(x - robot.x, y - robot.y), r, False)
                for o in placed
            ):
                continue  # something already placed would hide it
            yaw = float(rng.uniform(-math.pi, math.pi)) if shape == "box" else 0.0
            placed.append(SceneObject(phrase=phrase, color=color, shape=shape, x=round(float(x), 4),
                                      y=round(float(y), 4), yaw=round(yaw, 4), size=size))
            break
        else:
            if phrase in required:
                return None
    # Nothing placed later may hide an in-view object from the start pose.
    for target in [o for o in placed if o.phrase in ov.in_view]:
        line = Pose2D(x=robot.x, y=robot.y, yaw=math.atan2(target.y - robot.y, target.x - robot.x))
        length = math.hypot(target.x - robot.x, target.y - robot.y) - target.footprint_radius
        placed = [o for o in placed if o is target or o.phrase in required
                  or not _corridor_hits(line, o.x, o.y, o.footprint_radius, length, target.footprint_radius, False)]
    return placed


def generate_scene(seed: int, config: SimConfig | None = None, overrides: SceneOverrides | None = None) -> Scene:
    """The scene for `seed`: same inputs, same scene, on every machine."""
    cfg = config or SimConfig()
    ov = overrides or SceneOverrides()
    rng = np.random.default_rng(seed)
    half = cfg.room.size_m / 2

    for phrase in ov.require + ov.in_view + ov.out_of_view:
        if ov.excludes(*split_phrase(phrase)):
            raise SceneError(f"{phrase!r} is both required and excluded")
    if set(ov.in_view) & set(ov.out_of_view):
        raise SceneError("a phrase cannot be both in_view and out_of_view")
    if ov.robot is not None and max(abs(ov.robot[0]), abs(ov.robot[1])) > half - cfg.robot.radius_m:
        raise SceneError(f"robot start {ov.robot} is outside the {cfg.room.size_m} m room")

    # Which objects: the required ones, then random (colour, shape) pairs.
    required = list(dict.fromkeys(ov.require + ov.in_view + ov.out_of_view))
    pool = [
        f"{c} {s}"
        for c in cfg.objects.colors
        for s in cfg.objects.shapes
        if not ov.excludes(c, s) and f"{c} {s}" not in required
    ]
    n = ov.n_objects if ov.n_objects is not None else int(rng.integers(cfg.objects.min_count, cfg.objects.max_count + 1))
    n_extra = max(0, n - len(required))
    if n_extra > len(pool):
        raise SceneError(f"asked for {n} objects but only {len(pool) + len(required)} distinct phrases are allowed")
    extra = [pool[i] for i in rng.choice(len(pool), size=n_extra, replace=False)] if n_extra else []

    # A crowded room or an awkward start pose can leave no room for a required object: try again.
    for _ in range(30):
        if ov.robot is not None:
            robot: Pose2D | None = Pose2D(x=ov.robot[0], y=ov.robot[1], yaw=math.radians(ov.robot[2]))
        else:
            robot = _sample_robot(rng, cfg, ov)
        if robot is None:
            break
        placed = _place_objects(rng, cfg, ov, robot, required + extra, set(required))
        if placed is not None:
            return Scene(
                seed=seed,
                room_size_m=cfg.room.size_m,
                robot_start=Pose2D(x=round(float(robot.x), 4), y=round(float(robot.y), 4),
                                   yaw=round(float(robot.yaw), 4)),
                objects=placed,
            )
    raise SceneError(f"scene {seed}: could not fit the robot and the required objects {required} "
                     f"(free_ahead_m={ov.free_ahead_m}, free_behind_m={ov.free_behind_m}) in a "
                     f"{cfg.room.size_m} m room")
