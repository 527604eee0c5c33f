"""A privileged controller that reads the true world and the scenario's checks and satisfies them.

It is the upper bound of the closed loop and the proof that every scenario in a suite is achievable
within its time limit (tests run it on the whole public suite); it also shows what a run that fails
looks like when given the wrong goal. It never reads the command text: it acts on the checks, in
order, with the same speed limits the agent has.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lookout.sim.planner import GridPlanner
from lookout.sim.rollout import Action, Observation
from lookout.sim.scenario import (
    Declined,
    InView,
    Moved,
    MovedAtLeast,
    NearObject,
    NotFound,
    Reported,
    ReturnedToStart,
    Scenario,
    Stopped,
    Turned,
    Visited,
    Waited,
    Went,
)
from lookout.sim.state import WorldState
from lookout.sim.world import wrap_angle

Task = Callable[[WorldState], "tuple[float, float] | None"]  # (v, w) while busy, None when finished


def _clip(v: float, limit: float) -> float:
    return max(-limit, min(limit, v))


@dataclass
class _TurnState:
    start_s: float
    start_pose: tuple[float, float, float]
    reply: list[str] = field(default_factory=list)
    success: bool | None = True
    declined: bool | None = None
    answer: bool | None = None


class OraclePolicy:
    needs_image = False
    privileged = True

    def __init__(self, scenario: Scenario, max_linear: float = 0.4, max_angular: float = 1.0) -> None:
        self.scenario = scenario
        self.v_max, self.w_max = max_linear, max_angular
        self.queue: list = []
        self.task: Task | None = None
        self.state: _TurnState | None = None
        self._yaw: float | None = None  # unwrapped yaw, for turns of more than 180 degrees

    # --- Policy ----------------------------------------------------------------------------------
    def begin_turn(self, index: int, say: str, obs: Observation) -> None:
        assert obs.world is not None, "the oracle is privileged: it needs the true world"
        r = obs.world.robot
        self.queue = list(self.scenario.turns[index].expect)
        self.task = None
        self.state = _TurnState(obs.time_s, (r.x, r.y, r.yaw))

    def act(self, obs: Observation) -> Action:
        world = obs.world
        assert world is not None and self.state is not None
        self._track_yaw(world)
        while True:
            if self.task is None:
                if not self.queue:
                    st = self.state
                    return Action(done=True, reply=" ".join(st.reply) or "Done.", success=st.success,
                                  declined=st.declined, answer=st.answer)
                self.task = self._task_for(self.queue.pop(0), obs)
                continue
            out = self.task(world)
            if out is None:
                self.task = None
                continue
            return Action(linear=out[0], angular=out[1])

    # --- behaviours ------------------------------------------------------------------------------
    def _track_yaw(self, world: WorldState) -> None:
        yaw = world.robot.yaw
        self._yaw = yaw if self._yaw is None else self._yaw + wrap_angle(yaw - self._yaw)

    def _rotate_to(self, target: Callable[[WorldState], float], tol: float = math.radians(2)) -> Task:
        """Turn in place until the heading error (from `target`) is within tol."""

        def run(world: WorldState) -> tuple[float, float] | None:
            err = target(world)
            if abs(err) < tol:
                return None
            return 0.0, _clip(2.0 * err, self.w_max) if abs(err) > 0.05 else math.copysign(0.1, err)

        return run

    def _face(self, x: float, y: float) -> Task:
        return self._rotate_to(lambda w: w.robot.bearing_to(x, y))

    def _rotate_by(self, radians: float) -> Task:
        goal = (self._yaw or 0.0) + radians
        return self._rotate_to(lambda w: goal - (self._yaw or 0.0))

    def _follow(self, path: list[tuple[float, float]]) -> Task:
        idx = 0

        def run(world: WorldState) -> tuple[float, float] | None:
            nonlocal idx
            r = world.robot
            gx, gy = path[-1]
            if r.distance_to(gx, gy) < 0.06:
                return None
            while idx < len(path) - 1 and r.distance_to(*path[idx]) < 0.25:
                idx += 1
            err = r.bearing_to(*path[idx])
            if abs(err) > 0.5:
                return 0.0, _clip(2.0 * err, self.w_max)
            v = min(self.v_max * math.cos(err), 0.05 + r.distance_to(gx, gy))
            return v, _clip(2.5 * err, self.w_max)

        return run

    def _sequence(self, *tasks: Task) -> Task:
        pending = list(tasks)

        def run(world: WorldState) -> tuple[float, float] | None:
            while pending:
                out = pending[0](world)
                if out is not None:
                    return out
                pending.pop(0)
            return None

        return run

    def _go_near(self, world: WorldState, phrase: str, min_gap: float, max_gap: float, face: bool) -> Task:
        obj = world.find(phrase)
        assert obj is not None
        r = world.robot
        lo = max(0.12, min_gap + 0.1)
        path = GridPlanner(world).path_to_object((r.x, r.y), phrase, lo, max(lo + 0.05, max_gap - 0.2))
        if path is None:
            self.state.success = False  # type: ignore[union-attr]
            return lambda w: None
        tasks = [self._follow(path)]
        if face:
            tasks.append(self._face(obj.x, obj.y))
        return self._sequence(*tasks)

    def _task_for(self, check, obs: Observation) -> Task:
        world = obs.world
        st = self.state
        assert world is not None and st is not None
        phrase = getattr(check, "phrase", None)
        obj = world.find(phrase) if phrase else None
        if isinstance(check, NearObject):
            return self._go_near(world, check.phrase, check.min_distance_m, check.max_distance_m, face=True)
        if isinstance(check, Visited):
            return self._go_near(world, check.phrase, 0.0, check.max_distance_m, face=False)
        if isinstance(check, InView):
            assert obj is not None
            return self._face(obj.x, obj.y)
        if isinstance(check, Turned):
            return self._rotate_by(math.radians(check.degrees))
        if isinstance(check, Moved | Went):
            x0, y0, yaw0 = world.robot.x, world.robot.y, world.robot.yaw

            def drive(w: WorldState) -> tuple[float, float] | None:
                along = (w.robot.x - x0) * math.cos(yaw0) + (w.robot.y - y0) * math.sin(yaw0)
                rest = check.meters - along
                if abs(rest) < 0.02:
                    return None
                return _clip(1.5 * rest, self.v_max) if abs(rest) > 0.05 else math.copysign(0.05, rest), 0.0

            return drive
        if isinstance(check, MovedAtLeast):
            # Keep busy a little beyond the thresholds (a later turn may interrupt first).
            x0, y0, yaw0 = world.robot.x, world.robot.y, self._yaw or 0.0

            def busy(w: WorldState) -> tuple[float, float] | None:
                far = check.meters == 0 or w.robot.distance_to(x0, y0) >= check.meters + 0.1
                turned = check.degrees == 0 or abs(math.degrees((self._yaw or 0.0) - yaw0)) >= check.degrees + 10
                if far and turned:
                    return None
                return (0.0 if far else self.v_max), (0.0 if turned else self.w_max)

            return busy
        if isinstance(check, Waited):
            end = obs.time_s + check.seconds
            return lambda w: None if w.time_s >= end - 1e-9 else (0.0, 0.0)
        if isinstance(check, Reported):
            seen = obj is not None and abs(math.degrees(world.robot.bearing_to(obj.x, obj.y))) < world.camera_hfov_deg / 2
            st.answer = seen
            st.reply.append(f"Yes, I can see the {check.phrase}." if seen else f"No, I do not see a {check.phrase}.")
            return lambda w: None
        if isinstance(check, NotFound):
            if obj is not None:  # the oracle never lies: it would find it
                return self._go_near(world, check.phrase, 0.0, 0.6, face=True)

            def after() -> None:
                st.success, st.answer = False, False
                st.reply.append(f"I looked all around but could not find a {check.phrase}.")

            spin = self._rotate_by(2 * math.pi)

            def search(w: WorldState) -> tuple[float, float] | None:
                out = spin(w)
                if out is None:
                    after()
                return out

            return search
        if isinstance(check, Stopped):
            return lambda w: None
        if isinstance(check, ReturnedToStart):
            x, y = (world.robot_start.x, world.robot_start.y) if check.reference == "episode" else st.start_pose[:2]
            r = world.robot
            path = GridPlanner(world).path_to_point((r.x, r.y), x, y, max(0.05, check.tol_m - 0.25))
            return self._follow(path) if path else (lambda w: None)
        if isinstance(check, Declined):
            st.declined, st.success = True, False
            st.reply.append("Sorry, I cannot do that.")
            return lambda w: None
        raise TypeError(f"the oracle has no behaviour for {check!r}")
