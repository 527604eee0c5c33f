"""The command lifecycle (no ROS): planning off-thread, detector first, stop and e-stop at once."""

from __future__ import annotations

import math
import time

import pytest

from lookout.agent.agent import IDLE, PLANNING, WAITING_FOR_DETECTOR, Agent
from lookout.agent.config import AgentConfig
from lookout.agent.motion import Velocity, wrap_angle

from .tiny_models import SCRIPT
from .world import Thing, World


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Detector:
    """Stands in for the detector's set_classes service: records calls, switches the world's vocabulary."""

    def __init__(self, world: World, ok: bool = True) -> None:
        self.world, self.ok, self.calls = world, ok, []

    def __call__(self, phrases: list[str]) -> tuple[bool, str]:
        self.calls.append(list(phrases))
        if not self.ok:
            return False, "closed-set model has no class 'red cup'"
        self.world.vocabulary = list(phrases)
        return True, f"{len(phrases)} classes"


def wait_for(pred, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def make_agent(planner, world, clock, detector=None, factory=None):
    agent = Agent(AgentConfig(), planner.caps if planner else None, factory or (lambda: planner),
                  detector or Detector(world), clock)
    agent.load_model_async()
    assert factory is not None or agent.wait_model(60)
    return agent


def drive(agent, world, clock, seconds: float, dt: float = 1 / 15):
    cmds = []
    end = clock.now + seconds
    cmd = Velocity()
    while clock.now < end:
        world.step(cmd, dt)
        clock.now += dt
        agent.observe_detections(world.detections(), clock.now)
        agent.observe_odometry(world.odometry(clock.now), clock.now)
        cmd = agent.tick(clock.now).cmd
        cmds.append(cmd)
    return cmds


def test_a_command_is_planned_then_the_detector_is_set_then_the_robot_moves(scripted_planner):
    world, clock = World([Thing("red cup", 2.0, -1.0), Thing("blue box", 1.0, 1.0)]), SimClock()
    detector = Detector(world)
    agent = make_agent(scripted_planner, world, clock, detector)
    moved_before_detector = []
    cid = agent.submit("find the red cup")
    while agent.outcome(cid) is None and clock.now < 60:
        cmds = drive(agent, world, clock, 0.2)
        if any(not c.is_zero for c in cmds) and not detector.calls:
            moved_before_detector.append(clock.now)
        if agent.status().state == PLANNING:
            time.sleep(0.01)
    outcome = agent.outcome(cid)
    assert outcome is not None and outcome.success, outcome
    assert detector.calls == [["red cup"]] and not moved_before_detector
    assert outcome.plan_json == SCRIPT[0][2]
    assert "found the red cup" in outcome.reply and "reached the red cup" in outcome.reply
    assert abs(world.distance_to("red cup") - 0.5) < 0.15
    agent.shutdown()


def test_every_phase_change_is_reported_however_short(scripted_planner):
    world, clock = World([Thing("red cup", 2.0, -1.0)]), SimClock()
    phases: list[str] = []
    agent = Agent(AgentConfig(), scripted_planner.caps, lambda: scripted_planner, Detector(world), clock,
                  on_phase=phases.append)
    agent.load_model_async()
    assert agent.wait_model(60)
    cid = agent.submit("find the red cup")
    assert wait_for(lambda: phases[-1:] == [IDLE], 30)  # planned, phrases set: the executor has it
    assert phases[:3] == [PLANNING, WAITING_FOR_DETECTOR, IDLE]
    assert agent.status().state == "executing" and agent.outcome(cid) is None
    agent.shutdown()


def test_follow_ups_use_the_dialogue_memory(scripted_planner):
    world, clock = World([]), SimClock()
    agent = make_agent(scripted_planner, world, clock)
    first = agent.submit("find the red cup")
    assert wait_for(lambda: agent.status().state == "executing")
    second = agent.submit("now the blue one")
    assert agent.outcome(first).state == "cancelled"
    assert wait_for(lambda: agent.status().state == "executing")
    turns = agent.dialogue.last(4)
    assert [t.user for t in turns] == ["find the red cup", "now the blue one"]
    assert '"phrases":["blue cup"]' in turns[-1].assistant
    agent.cancel()
    assert agent.outcome(second).state == "cancelled"
    agent.shutdown()


def test_a_new_conversation_cancels_forgets_and_moves_home(scripted_planner):
    world, clock = World([Thing("red cup", 2.0, -1.0)]), SimClock()
    agent = make_agent(scripted_planner, world, clock)
    drive(agent, world, clock, 0.2)
    first = agent.submit("find the red cup")
    assert wait_for(lambda: agent.status().state == "executing")
    assert agent.executor.home is not None and len(agent.dialogue) == 1
    world.x, world.y = 1.0, 0.5  # the robot is somewhere else when the next conversation starts
    agent.reset_conversation()
    assert agent.outcome(first).state == "cancelled" and agent.status().state == "cancelled"
    assert len(agent.dialogue) == 0 and agent.executor.home is None
    drive(agent, world, clock, 0.2)
    assert (agent.executor.home.x, agent.executor.home.y) == pytest.approx((1.0, 0.5))
    agent.shutdown()


def test_stop_is_answered_at_once_even_while_the_model_generates(random_planner):
    world, clock = World([]), SimClock()
    agent = make_agent(random_planner, world, clock)
    cid = agent.submit("find the red cup and then come back " * 10)
    assert wait_for(lambda: agent.status().state == PLANNING)

    def generating() -> bool:  # the planner holds its lock while it decodes
        free = random_planner._lock.acquire(blocking=False)
        if free:
            random_planner._lock.release()
        return not free

    assert wait_for(generating, 30)
    t0 = time.perf_counter()
    stop_id = agent.submit("Stop!")
    stop = agent.wait_outcome(stop_id, timeout=0)
    elapsed = time.perf_counter() - t0
    assert stop is not None and stop.success and stop.reply == "Stopping."
    assert elapsed < 0.05
    assert agent.outcome(cid).state == "cancelled"
    assert agent.tick(clock.now).cmd == Velocity()
    assert '"action":"stop"' in stop.plan_json
    # the aborted generation is dropped: nothing ever starts executing
    assert wait_for(lambda: agent.status().state != PLANNING, 30)
    assert all(c.is_zero for c in drive(agent, world, clock, 1.0))
    assert agent.executor.plan is None
    agent.shutdown()


def test_a_detector_that_refuses_the_phrases_means_no_motion(scripted_planner):
    world, clock = World([Thing("red cup", 2.0, 0.0)]), SimClock()
    detector = Detector(world, ok=False)
    agent = make_agent(scripted_planner, world, clock, detector)
    cid = agent.submit("find the red cup")
    outcome = agent.wait_outcome(cid, timeout=30)
    assert outcome is not None and not outcome.success
    assert "not moving" in outcome.reply and "closed-set model" in outcome.reply
    assert all(c.is_zero for c in drive(agent, world, clock, 2.0))
    agent.shutdown()


def test_estop_drops_a_command_that_is_still_being_planned(random_planner):
    world, clock = World([]), SimClock()
    agent = make_agent(random_planner, world, clock)
    cid = agent.submit("find the red cup")
    assert agent.set_estop(True) == Velocity()
    outcome = agent.wait_outcome(cid, timeout=5)
    assert outcome is not None and outcome.state == "estopped" and not outcome.success
    assert agent.status().state == "estopped"
    agent.set_estop(False)
    assert agent.status().state == "idle"
    agent.shutdown()


def test_bad_input_is_answered_without_crashing(scripted_planner):
    world, clock = World([]), SimClock()
    agent = make_agent(scripted_planner, world, clock)
    empty = agent.wait_outcome(agent.submit("   \x00\t "), timeout=1)
    assert empty is not None and not empty.success and empty.reply == "I did not get a command."
    declined = agent.wait_outcome(agent.submit("pick up the red cup"), timeout=30)
    assert declined is not None and not declined.success and "no arm" in declined.reply
    agent.shutdown()


def test_a_model_that_fails_to_load_is_reported(tmp_path):
    def broken():
        raise FileNotFoundError(f"model directory {tmp_path} has no config.json")

    world, clock = World([]), SimClock()
    from lookout.agent.capabilities import Capabilities

    agent = Agent(AgentConfig(), Capabilities(), broken, Detector(world), clock)
    agent.load_model_async()
    outcome = agent.wait_outcome(agent.submit("find the red cup"), timeout=5)
    assert outcome is not None and not outcome.success
    assert "not available" in outcome.reply and "config.json" in outcome.reply
    agent.shutdown()


def test_a_planner_crash_is_reported_and_the_agent_keeps_working(scripted_planner):
    class Exploding:
        caps = scripted_planner.caps

        def __init__(self):
            self.calls = 0

        def plan(self, *args, **kwargs):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("CUDA out of memory")
            return scripted_planner.plan(*args, **kwargs)

    world, clock = World([]), SimClock()
    agent = make_agent(Exploding(), world, clock)
    first = agent.wait_outcome(agent.submit("turn left 90 degrees"), timeout=10)
    assert first is not None and not first.success and "Planning failed (RuntimeError)" in first.reply
    second = agent.wait_outcome(agent.submit("pick up the red cup"), timeout=30)
    assert second is not None and "no arm" in second.reply
    agent.shutdown()


def test_a_control_tick_racing_a_new_plan_does_not_end_it(scripted_planner):
    """Seen over ROS on CI: the timer thread's tick read the finished plan's 'succeeded', the planner thread
    then started the next plan, and that stale output ended the new command at once, without motion."""
    world, clock = World([]), SimClock()
    agent = make_agent(scripted_planner, world, clock)
    first = agent.submit("turn left 90 degrees")
    assert wait_for(lambda: agent.executor.state == "executing")
    while agent.outcome(first) is None and clock.now < 30:
        drive(agent, world, clock, 0.2)
    assert agent.outcome(first).success
    agent.reset_conversation()  # as the scenario runner does between scenarios; the executor keeps 'succeeded'
    assert agent.executor.state == "succeeded"
    original, raced = agent.executor.tick, []

    def tick_then_new_plan(now: float):
        out = original(now)
        if not raced:  # the next command arrives between this tick's output and its use
            raced.append(agent.submit("turn left 90 degrees"))
            wait_for(lambda: agent.executor.state == "executing", timeout=3)
        return out

    agent.executor.tick = tick_then_new_plan
    agent.tick(clock.now)
    assert agent.outcome(raced[0]) is None, agent.outcome(raced[0])
    assert wait_for(lambda: agent.executor.state == "executing")
    yaw0 = world.yaw
    while agent.outcome(raced[0]) is None and clock.now < 60:
        drive(agent, world, clock, 0.2)
    assert agent.outcome(raced[0]).success
    assert math.degrees(wrap_angle(world.yaw - yaw0)) == pytest.approx(90, abs=10)
    agent.shutdown()
