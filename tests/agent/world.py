"""A tiny kinematic world for executor tests: a unicycle robot, objects, and a pinhole camera that
turns them into detections. Scripted, deterministic, and shared with the ROS test's fake detector."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lookout.agent.motion import Odometry, Velocity, wrap_angle
from lookout.perception.types import Detection, DetectionResult


@dataclass
class Thing:
    phrase: str
    x: float
    y: float
    height: float = 0.1
    score: float = 0.9
    visible: bool = True


@dataclass
class World:
    things: list[Thing] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    width: int = 640
    height: int = 480
    hfov: float = math.radians(60.0)
    vocabulary: list[str] | None = None  # None: the detector reports every phrase

    def step(self, cmd: Velocity, dt: float) -> None:
        self.yaw = wrap_angle(self.yaw + cmd.angular_z * dt)
        self.x += cmd.linear_x * math.cos(self.yaw) * dt
        self.y += cmd.linear_x * math.sin(self.yaw) * dt

    def odometry(self, stamp: float) -> Odometry:
        return Odometry(self.x, self.y, self.yaw, stamp)

    def distance_to(self, phrase: str) -> float:
        t = next(t for t in self.things if t.phrase == phrase)
        return math.hypot(t.x - self.x, t.y - self.y)

    def detections(self) -> DetectionResult:
        f = (self.width / 2) / math.tan(self.hfov / 2)
        dets = []
        vocab = self.vocabulary if self.vocabulary is not None else sorted({t.phrase for t in self.things})
        for t in self.things:
            if not t.visible or t.phrase not in vocab:
                continue
            dx, dy = t.x - self.x, t.y - self.y
            ahead = dx * math.cos(self.yaw) + dy * math.sin(self.yaw)
            left = -dx * math.sin(self.yaw) + dy * math.cos(self.yaw)
            if ahead <= 0.05:
                continue
            cx = self.width / 2 - f * left / ahead
            h = f * t.height / ahead
            w = 0.8 * h
            if cx + w / 2 < 0 or cx - w / 2 > self.width:
                continue
            box = (max(cx - w / 2, 0.0), max(self.height / 2 - h / 2, 0.0),
                   min(cx + w / 2, float(self.width)), min(self.height / 2 + h / 2, float(self.height)))
            dets.append(Detection(*box, score=t.score, phrase=t.phrase, class_index=vocab.index(t.phrase)))
        return DetectionResult(dets, list(vocab), self.width, self.height)


def run(executor, world: World, *, dt: float = 1 / 15, limit_s: float = 120.0, t0: float = 0.0,
        odometry: bool = True, camera: bool = True, until_done: bool = True, on_tick=None):
    """Drive the executor in the world until the plan ends (or `limit_s`); returns (outputs, now)."""
    outputs = []
    now = t0
    cmd = Velocity()
    while now - t0 < limit_s:
        world.step(cmd, dt)
        now += dt
        if camera:
            executor.observe_detections(world.detections(), now)
        if odometry:
            executor.observe_odometry(world.odometry(now), now)
        out = executor.tick(now)
        outputs.append(out)
        cmd = out.cmd
        if on_tick is not None:
            on_tick(now, out)
        if until_done and out.done:
            break
    return outputs, now
