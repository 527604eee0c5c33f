"""Running a scenario: the record a scorer reads, and a plain in-process loop for any controller.

The scorer only sees a `Rollout`: the world at the start, the robot's true trajectory, and per user
turn when it began and ended and what the agent answered. Anything that drives the simulator can
produce one through `RolloutRecorder` (the in-process loop below, or a harness talking to ROS nodes).

A controller for `run_episode` implements `Policy`: `begin_turn` when the user speaks, then `act`
every control tick with an `Observation` (odometry, a camera frame at the camera rate, and the true
world only for `privileged` controllers such as the oracle), returning velocities and, when the turn
is over, `done` with the reply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lookout.sim.scenario import Scenario
from lookout.sim.state import Odometry, WorldState
from lookout.sim.world import wrap_angle

if TYPE_CHECKING:
    from lookout.sim.sim import Sim


class TurnRecord(BaseModel):
    """One user turn as it happened. `end_s` is None if the agent never finished it."""

    index: int
    say: str
    start_s: float
    end_s: float | None = None
    interrupted: bool = False
    reply: str = ""
    success: bool | None = None  # what the agent claims
    declined: bool | None = None  # the plan declined the request
    answer: bool | None = None  # yes/no answer of a report step, when the agent gives one


class Rollout(BaseModel):
    """Everything the scorer needs; samples are (t, x, y, unwrapped yaw, linear, angular) in the room frame.

    `end_s` is when the dialogue ended (last turn done, or the time limit); samples may go on a little
    longer (the settling time) so that "stopped" can be judged after the last reply.
    """

    model_config = ConfigDict(frozen=True)
    scenario_id: str
    world: WorldState
    samples: list[tuple[float, float, float, float, float, float]]
    turns: list[TurnRecord]
    end_s: float
    timed_out: bool
    collisions: int = 0
    timings_ms: dict[str, float] = Field(default_factory=dict)


class RolloutRecorder:
    """Collects a Rollout while something else drives the simulator."""

    def __init__(self, scenario_id: str, world: WorldState) -> None:
        self.scenario_id = scenario_id
        self.world = world
        self.turns: list[TurnRecord] = []
        self.samples: list[tuple[float, float, float, float, float, float]] = []
        self._yaw: float | None = None
        self.add_sample(world.time_s, world.robot.x, world.robot.y, world.robot.yaw, 0.0, 0.0)

    def add_sample(self, t: float, x: float, y: float, yaw: float, linear: float, angular: float) -> None:
        # Unwrap so that two full turns read as 720 degrees, not 0.
        self._yaw = yaw if self._yaw is None else self._yaw + wrap_angle(yaw - self._yaw)
        self.samples.append((float(t), float(x), float(y), float(self._yaw), float(linear), float(angular)))

    def record(self, world: WorldState) -> None:
        self.add_sample(world.time_s, world.robot.x, world.robot.y, world.robot.yaw, world.linear, world.angular)

    @property
    def current(self) -> TurnRecord | None:
        return self.turns[-1] if self.turns and self.turns[-1].end_s is None else None

    def begin_turn(self, say: str, t: float) -> TurnRecord:
        if self.current is not None:
            raise RuntimeError("end (or interrupt) the current turn before beginning another")
        rec = TurnRecord(index=len(self.turns), say=say, start_s=t)
        self.turns.append(rec)
        return rec

    def end_turn(self, t: float, *, reply: str = "", success: bool | None = None, declined: bool | None = None,
                 answer: bool | None = None, interrupted: bool = False) -> None:
        rec = self.current
        if rec is None:
            raise RuntimeError("no turn in progress")
        rec.end_s, rec.reply, rec.success = t, reply, success
        rec.declined, rec.answer, rec.interrupted = declined, answer, interrupted

    def finish(self, end_s: float, *, timed_out: bool, collisions: int = 0,
               timings_ms: dict[str, float] | None = None) -> Rollout:
        return Rollout(scenario_id=self.scenario_id, world=self.world, samples=self.samples, turns=self.turns,
                       end_s=end_s, timed_out=timed_out, collisions=collisions, timings_ms=timings_ms or {})


@dataclass(frozen=True)
class Observation:
    time_s: float
    odometry: Odometry
    image: np.ndarray | None = None  # a new camera frame, or None between frames
    world: WorldState | None = None  # only for privileged controllers


@dataclass(frozen=True)
class Action:
    linear: float = 0.0
    angular: float = 0.0
    done: bool = False
    reply: str = ""
    success: bool | None = None
    declined: bool | None = None
    answer: bool | None = None


class Policy(Protocol):
    needs_image: bool
    privileged: bool

    def begin_turn(self, index: int, say: str, obs: Observation) -> None: ...

    def act(self, obs: Observation) -> Action: ...


def run_episode(sim: Sim, scenario: Scenario, policy: Policy, *, control_dt: float = 0.1,
                settle_s: float = 2.0) -> Rollout:
    """Reset `sim` to the scenario's scene and let `policy` act until the dialogue ends or time runs out.

    After the last turn ends the loop keeps applying the policy's commands for `settle_s` more
    seconds, so that a check such as "stopped" sees whether the robot really stays still.
    """
    sim.reset(scenario.seed, scenario.scene)
    recorder = RolloutRecorder(scenario.id, sim.world_state())
    frame_period = 1.0 / sim.config.camera.rate_hz
    next_frame = 0.0
    turns = scenario.turns
    index = 0

    def observe() -> Observation:
        nonlocal next_frame
        image = None
        if policy.needs_image and sim.time_s + 1e-9 >= next_frame:
            image = sim.render()
            next_frame += frame_period * max(1, math.floor((sim.time_s - next_frame) / frame_period) + 1)
        world = sim.world_state() if policy.privileged else None
        return Observation(sim.time_s, sim.odometry(), image, world)

    def begin(i: int) -> None:
        recorder.begin_turn(turns[i].say, sim.time_s)
        policy.begin_turn(i, turns[i].say, observe())

    begin(0)
    finished = False
    while sim.time_s < scenario.time_limit_s - 1e-9:
        current = recorder.turns[-1]
        nxt = turns[index + 1] if index + 1 < len(turns) else None
        if nxt is not None and nxt.after_s is not None and sim.time_s >= current.start_s + nxt.after_s - 1e-9:
            recorder.end_turn(sim.time_s, interrupted=True)
            index += 1
            begin(index)
            continue
        act = policy.act(observe())
        if act.done:
            recorder.end_turn(sim.time_s, reply=act.reply, success=act.success, declined=act.declined,
                              answer=act.answer)
            if nxt is None:
                finished = True
                break
            index += 1
            begin(index)
            continue
        sim.step(act.linear, act.angular, control_dt)
        recorder.record(sim.world_state())
    end_s = sim.time_s
    settle_until = end_s + settle_s
    while sim.time_s < settle_until - 1e-9:
        act = policy.act(observe())
        sim.step(act.linear, act.angular, control_dt)
        recorder.record(sim.world_state())
    return recorder.finish(end_s, timed_out=not finished, collisions=sim.collisions)
