"""The executor on scripted worlds: success only on evidence, honest failures, safety always on."""

from __future__ import annotations

import math

import pytest

from lookout.agent.capabilities import Capabilities
from lookout.agent.config import AgentConfig
from lookout.agent.executor import CANCELLED, ESTOPPED, EXECUTING, FAILED, IDLE, SUCCEEDED, Executor
from lookout.agent.motion import Odometry, Velocity
from lookout.agent.plan import make_plan
from lookout.agent.safety import SafetyGuard

from .world import Thing, World, run

CAPS = Capabilities()


def plan(*steps, phrases=(), reply="ok", declined=False):
    return make_plan(CAPS, reply=reply, phrases=list(phrases), steps=list(steps), declined=declined)


def executor(**overrides) -> Executor:
    cfg = AgentConfig.model_validate(overrides)
    return Executor(cfg, CAPS)


def within_limits(outputs) -> bool:
    lim = CAPS.limits
    return all(abs(o.cmd.linear_x) <= lim.max_linear_speed + 1e-9 and abs(o.cmd.angular_z) <= lim.max_angular_speed + 1e-9
               for o in outputs)


SEARCH_CUP = {"action": "search", "target": "red cup"}
APPROACH_CUP = {"action": "approach", "target": "red cup", "stop_distance_m": 0.5}


def test_search_turns_until_the_target_is_confirmed():
    world = World([Thing("red cup", -2.0, 0.5)])  # behind the robot
    ex = executor()
    ex.start(plan(SEARCH_CUP, phrases=["red cup"]), 0.0)
    outs, _ = run(ex, world)
    assert outs[-1].state == SUCCEEDED and outs[-1].success
    assert "found the red cup" in outs[-1].reply
    assert outs[0].cmd.angular_z > 0 and outs[0].cmd.linear_x == 0  # rotating in place to look
    assert outs[-1].cmd == Velocity()
    assert within_limits(outs)
    # it really is looking at the cup now
    assert world.detections().detections and world.detections().detections[0].phrase == "red cup"


def test_a_target_that_never_appears_fails_honestly_after_a_full_turn():
    world = World([Thing("blue box", 2.0, 0.0)])
    ex = executor()
    ex.start(plan(SEARCH_CUP, phrases=["red cup"]), 0.0)
    outs, now = run(ex, world)
    last = outs[-1]
    assert last.state == FAILED and not last.success
    assert "did not see a red cup" in last.reply
    assert last.cmd == Velocity()
    assert 2 * math.pi < now * CAPS.limits.max_angular_speed * 1.5  # it did turn a full circle first


def test_without_odometry_search_gives_up_on_its_timeout():
    world = World([])
    ex = executor(timeouts={"search_s": 6.0})
    ex.start(plan(SEARCH_CUP, phrases=["red cup"]), 0.0)
    outs, now = run(ex, world, odometry=False)
    assert outs[-1].state == FAILED and "did not find a red cup within 6 s" in outs[-1].reply
    assert 6.0 <= now < 6.5


def test_approach_stops_at_the_stop_distance_from_box_size():
    world = World([Thing("red cup", 3.0, 0.6, height=0.1)])
    ex = executor()
    ex.start(plan(SEARCH_CUP, APPROACH_CUP, phrases=["red cup"]), 0.0)
    outs, _ = run(ex, world)
    assert outs[-1].state == SUCCEEDED, outs[-1].reply
    assert abs(world.distance_to("red cup") - 0.5) < 0.12
    assert max(o.cmd.linear_x for o in outs) > 0.1
    assert within_limits(outs)


def test_approach_ends_facing_the_target():
    """Already at the stop distance but 18 degrees off: it turns to face the cup before it says it arrived."""
    angle = math.radians(18.0)
    world = World([Thing("red cup", 0.52 * math.cos(angle), 0.52 * math.sin(angle), height=0.1)])
    ex = executor(perception={"object_heights_m": {"cup": 0.1}})
    ex.start(plan(APPROACH_CUP, phrases=["red cup"]), 0.0)
    outs, _ = run(ex, world)
    assert outs[-1].state == SUCCEEDED, outs[-1].reply
    cup = world.things[0]
    bearing = math.degrees(math.atan2(cup.y - world.y, cup.x - world.x) - world.yaw)
    assert abs(bearing) <= ex.cfg.control.arrive_facing_deg + 1.0, bearing
    assert any("turning to face it" in o.feedback.message for o in outs)
    assert abs(world.distance_to("red cup") - 0.5) < 0.1 and within_limits(outs)


def test_approach_uses_depth_when_given():
    # The height prior is wrong (0.3 m for a 0.1 m cup): with depth the robot still stops right.
    world = World([Thing("red cup", 2.5, 0.0, height=0.1)])
    ex = executor(perception={"object_heights_m": {"cup": 0.3}})
    ex.start(plan(APPROACH_CUP, phrases=["red cup"]), 0.0)
    now, cmd = 0.0, Velocity()
    for _ in range(2000):
        world.step(cmd, 1 / 15)
        now += 1 / 15
        dets = world.detections()
        depths = [world.distance_to(d.phrase) for d in dets.detections]
        ex.observe_detections(dets, now, depths=depths)
        out = ex.tick(now)
        cmd = out.cmd
        if out.done:
            break
    assert out.state == SUCCEEDED
    assert abs(world.distance_to("red cup") - 0.5) < 0.1


def test_a_target_that_disappears_is_looked_for_by_turning_then_fails_honestly():
    world = World([Thing("red cup", 3.0, 0.0)])
    ex = executor(timeouts={"lost_target_s": 1.5})
    ex.start(plan(APPROACH_CUP, phrases=["red cup"]), 0.0)
    vanished_at = []

    def hide(now, out):
        if now > 2.0 and world.things[0].visible:
            world.things[0].visible = False
            vanished_at.append(now)

    outs, now = run(ex, world, on_tick=hide)
    after = outs[int(2.0 * 15) + 2:]
    assert all(o.cmd.linear_x == 0 for o in after)  # no driving blind
    assert all(o.cmd == Velocity() for o in after[: int(1.4 * 15)])  # first it waits for the target
    assert any(o.cmd.angular_z > 0 for o in after)  # then turns in place to find it again
    assert outs[-1].state == FAILED and not outs[-1].success
    assert "lost sight of the red cup and did not find it again" in outs[-1].reply
    full_turn_s = 2 * math.pi / AgentConfig().control.search_angular_speed
    assert 1.5 + full_turn_s <= now - vanished_at[0] <= 1.5 + 1.5 * full_turn_s
    assert world.distance_to("red cup") > 1.0


def test_a_target_lost_for_a_moment_is_found_again_and_reached():
    world = World([Thing("red cup", 3.0, 0.0, height=0.1)])
    ex = executor(timeouts={"lost_target_s": 1.0})
    ex.start(plan(APPROACH_CUP, phrases=["red cup"]), 0.0)
    turned_away = []

    def occlude(now, out):
        if 2.0 < now < 5.0:
            world.things[0].visible = False
        elif now >= 5.0:
            world.things[0].visible = True
        if out.cmd.angular_z > 0 and out.cmd.linear_x == 0 and now > 3.0:
            turned_away.append(now)

    outs, _ = run(ex, world, on_tick=occlude)
    assert turned_away  # it turned to look for the cup
    assert outs[-1].state == SUCCEEDED, outs[-1].reply
    assert abs(world.distance_to("red cup") - 0.5) < 0.12


def test_approach_keeps_a_target_whose_score_fades_as_it_fills_the_view():
    # Scores fall from 0.9 to 0.15 on the way in (min_score 0.35): the overlapping low-score boxes keep it.
    world = World([Thing("red cup", 3.0, 0.0, height=0.1)])
    ex = executor(timeouts={"lost_target_s": 1.0})
    ex.start(plan(APPROACH_CUP, phrases=["red cup"]), 0.0)

    def fade(now, out):
        world.things[0].score = 0.15 if world.distance_to("red cup") < 2.0 else 0.9

    outs, _ = run(ex, world, on_tick=fade)
    assert outs[-1].state == SUCCEEDED, outs[-1].reply
    assert abs(world.distance_to("red cup") - 0.5) < 0.12


def test_a_low_score_box_never_starts_a_target_and_far_below_the_floor_ends_it():
    weak = World([Thing("red cup", 2.0, 0.0, score=0.15)])
    ex = executor(timeouts={"search_s": 4.0})
    ex.start(plan(SEARCH_CUP, phrases=["red cup"]), 0.0)
    outs, _ = run(ex, weak, odometry=False)
    assert outs[-1].state == FAILED  # search needs min_score: a weak box is not "found"

    world = World([Thing("red cup", 3.0, 0.0)])
    ex = executor(timeouts={"lost_target_s": 1.0}, control={"reacquire_turns": 0})
    ex.start(plan(APPROACH_CUP, phrases=["red cup"]), 0.0)

    def vanish(now, out):
        if world.distance_to("red cup") < 2.0:
            world.things[0].score = 0.05  # below 0.35 x 0.25

    outs, _ = run(ex, world, on_tick=vanish)
    assert outs[-1].state == FAILED and "lost sight of the red cup." in outs[-1].reply
    assert world.distance_to("red cup") > 1.5


@pytest.mark.parametrize("steps", [[{"action": "move", "meters": 1.5}], [APPROACH_CUP]])
def test_a_blocked_robot_stops_and_says_so_instead_of_pushing_until_the_timeout(steps):
    world = World([Thing("red cup", 3.0, 0.0, height=0.1)])
    ex = executor(control={"detours": 0})  # a move never detours; approach here is told not to
    ex.start(plan(*steps, phrases=["red cup"] if steps[0]["action"] == "approach" else []), 0.0)
    blocked_at = []

    def wall(now, out):  # an obstacle the camera does not report, 0.4 m ahead
        if world.x > 0.4:
            world.x = 0.4
            blocked_at.append(now)

    outs, now = run(ex, world, on_tick=wall)
    assert outs[-1].state == FAILED and not outs[-1].success
    assert "blocked" in outs[-1].reply and outs[-1].cmd == Velocity()
    stall_s = AgentConfig().timeouts.stall_s
    assert stall_s - 0.2 <= now - blocked_at[0] <= stall_s + 0.5  # the window starts at the last 3 cm of motion


def test_turn_and_move_close_the_loop_on_odometry():
    world = World([])
    ex = executor()
    ex.start(plan({"action": "turn", "degrees": 90}, {"action": "move", "meters": 1.0},
                  {"action": "turn", "degrees": -270}), 0.0)
    outs, _ = run(ex, world)
    assert outs[-1].state == SUCCEEDED, outs[-1].reply
    assert abs(world.x) < 0.1 and abs(world.y - 1.0) < 0.08
    assert abs(abs(math.degrees(world.yaw)) - 180) < 5  # 90 then -270: facing -x
    assert "turned 90 degrees" in outs[-1].reply and "moved 1 m" in outs[-1].reply
    assert within_limits(outs)


def test_a_turn_after_a_new_conversation_does_not_measure_from_the_old_pose():
    """After a sim reset the last odometry is another scene's pose (here facing -x): a turn that started from it
    counted the jump to the new start as 180 degrees of rotation and ended without moving."""
    world = World([])
    ex = executor()
    ex.observe_odometry(Odometry(0.0, 0.0, math.pi, 0.0), 0.0)
    ex.reset_home()
    ex.start(plan({"action": "turn", "degrees": 180}), 0.1)
    ex.tick(0.1)  # before the new scene's first odometry arrives
    outs, _ = run(ex, world, t0=0.1)
    assert outs[-1].state == SUCCEEDED, outs[-1].reply
    assert abs(abs(math.degrees(world.yaw)) - 180) < 5  # it really turned


@pytest.mark.parametrize("step", [{"action": "turn", "degrees": 90}, {"action": "move", "meters": 1.0},
                                  {"action": "come_back"}])
def test_motion_without_odometry_fails_honestly_without_moving(step):
    world = World([])
    ex = executor()
    ex.start(plan(step), 0.0)
    outs, _ = run(ex, world, odometry=False, limit_s=10)
    assert outs[-1].state == FAILED and not outs[-1].success
    assert "odometry" in outs[-1].reply
    assert all(o.cmd == Velocity() for o in outs)


def test_come_back_returns_to_where_the_command_started():
    world = World([Thing("red cup", 2.0, 1.5)])
    ex = executor()
    ex.observe_odometry(world.odometry(0.0), 0.0)
    ex.observe_detections(world.detections(), 0.0)
    ex.start(plan(SEARCH_CUP, APPROACH_CUP, {"action": "come_back"}, phrases=["red cup"]), 0.0)
    outs, _ = run(ex, world)
    assert outs[-1].state == SUCCEEDED, outs[-1].reply
    assert max(abs(o.cmd.linear_x) for o in outs) > 0.1  # it went somewhere
    assert math.hypot(world.x, world.y) < 0.2
    assert "came back" in outs[-1].reply


def test_report_answers_from_what_the_camera_sees():
    world = World([Thing("red cup", 2.0, 0.0)])
    ex = executor()
    ex.start(plan({"action": "report", "target": "red cup"}, {"action": "report", "target": "orange ball"},
                  phrases=["red cup", "orange ball"]), 0.0)
    outs, _ = run(ex, world)
    assert outs[-1].success
    assert "Yes, I can see the red cup." in outs[-1].reply
    assert "No, I don't see an orange ball." in outs[-1].reply
    assert all(o.cmd == Velocity() for o in outs)


def test_report_without_camera_frames_says_it_cannot_tell():
    ex = executor()
    ex.start(plan({"action": "report", "target": "red cup"}, phrases=["red cup"]), 0.0)
    outs, _ = run(ex, World([]), camera=False, limit_s=20)
    assert outs[-1].state == FAILED and "can't tell" in outs[-1].reply


def test_wait_then_stop_ends_the_plan_and_skips_the_rest():
    ex = executor()
    ex.start(plan({"action": "wait", "seconds": 2.0}, {"action": "stop"}, {"action": "move", "meters": 2.0}), 0.0)
    world = World([])
    outs, now = run(ex, world)
    assert outs[-1].state == SUCCEEDED and 2.0 <= now < 2.5
    assert all(o.cmd == Velocity() for o in outs) and world.x == 0.0


def test_a_declined_plan_does_not_move_and_is_not_a_success():
    ex = executor()
    out = ex.start(plan(reply="I can't pick things up: this robot has no arm.", declined=True), 0.0)
    assert out.done and not out.success and out.state == FAILED
    assert out.reply == "I can't pick things up: this robot has no arm."


def test_watchdog_stops_motion_when_detections_go_stale():
    world = World([])
    ex = executor()
    ex.start(plan(SEARCH_CUP, phrases=["red cup"]), 0.0)
    outs, now = run(ex, world, limit_s=1.0, until_done=False)
    assert outs[-1].cmd.angular_z > 0
    # the camera stops: within the watchdog period the robot must stand still
    ex.observe_odometry(world.odometry(now + 0.7), now + 0.7)
    out = ex.tick(now + 0.7)
    assert out.cmd == Velocity() and "stale" in out.feedback.message
    assert out.state == EXECUTING  # not a failure yet: the step timeout decides that
    ex.observe_detections(world.detections(), now + 0.8)
    assert ex.tick(now + 0.8).cmd.angular_z > 0


def test_watchdog_stops_a_turn_when_odometry_goes_stale():
    world = World([])
    ex = executor()
    ex.start(plan({"action": "turn", "degrees": 180}), 0.0)
    outs, now = run(ex, world, limit_s=0.5, until_done=False)
    assert outs[-1].cmd.angular_z > 0
    ex.observe_detections(world.detections(), now + 0.7)
    out = ex.tick(now + 0.7)
    assert out.cmd == Velocity() and "odometry is stale" in out.feedback.message


def test_every_command_is_clamped_to_the_robot_limits():
    world = World([Thing("red cup", 4.0, 2.0)])
    ex = executor(control={"yaw_gain": 50.0, "distance_gain": 50.0, "approach_linear_speed": 5.0,
                           "search_angular_speed": 9.0, "turn_gain": 50.0, "move_gain": 50.0})
    ex.start(plan(SEARCH_CUP, APPROACH_CUP, {"action": "turn", "degrees": -180}, {"action": "move", "meters": -1.0},
                  phrases=["red cup"]), 0.0)
    outs, _ = run(ex, world, limit_s=60)
    assert within_limits(outs)
    assert max(abs(o.cmd.angular_z) for o in outs) == pytest.approx(CAPS.limits.max_angular_speed)
    guard = SafetyGuard(CAPS.limits, AgentConfig().watchdog)
    assert guard.clamp(Velocity(float("nan"), float("inf"))) == Velocity(0.0, 0.0)
    assert guard.clamp(Velocity(-10.0, -10.0)) == Velocity(-CAPS.limits.max_linear_speed, -CAPS.limits.max_angular_speed)


def test_estop_overrides_everything_until_released():
    world = World([Thing("red cup", 3.0, 0.0)])
    ex = executor()
    ex.start(plan(SEARCH_CUP, APPROACH_CUP, phrases=["red cup"]), 0.0)
    outs, now = run(ex, world, limit_s=3.0, until_done=False)
    assert any(o.cmd.linear_x > 0 for o in outs)
    out = ex.set_estop(True, now)
    assert out.cmd == Velocity() and out.state == ESTOPPED and not out.success
    assert "Emergency stop" in out.reply
    outs, now = run(ex, world, t0=now, limit_s=2.0, until_done=False)  # target in full view: still nothing
    assert all(o.cmd == Velocity() and o.state == ESTOPPED for o in outs)
    refused = ex.start(plan(SEARCH_CUP, phrases=["red cup"]), now)
    assert refused.state == ESTOPPED and refused.done and not refused.success
    assert ex.set_estop(False, now).state == IDLE
    assert ex.tick(now + 0.1).cmd == Velocity()  # the old plan does not resume by itself


def test_a_new_plan_cancels_the_old_one_with_zero_velocity_first():
    world = World([Thing("red cup", 3.0, 0.0)])
    ex = executor()
    ex.start(plan(APPROACH_CUP, phrases=["red cup"]), 0.0)
    outs, now = run(ex, world, limit_s=2.0, until_done=False)
    assert outs[-1].cmd.linear_x > 0
    first = ex.start(plan({"action": "turn", "degrees": 90}), now)
    assert first.cmd == Velocity() and first.state == EXECUTING and first.feedback.step.startswith("turn")
    out = ex.cancel(now, "Stopped by the user.")
    assert out.cmd == Velocity() and out.state == CANCELLED and out.reply == "Stopped by the user."


def _post_at(world, x: float, y: float, reach: float):
    """An obstacle the camera does not report: the base cannot come within `reach` of (x, y)."""
    prev = [world.x, world.y]

    def block(now, out):
        if math.hypot(world.x - x, world.y - y) < reach:
            world.x, world.y = prev
        prev[:] = [world.x, world.y]

    return block


def test_approach_and_come_back_go_around_an_obstacle_they_cannot_see():
    world = World([Thing("red cup", 3.0, 0.0, height=0.1)])
    ex = executor()
    ex.start(plan(APPROACH_CUP, {"action": "come_back"}, phrases=["red cup"]), 0.0)
    outs, _ = run(ex, world, on_tick=_post_at(world, 1.5, 0.0, 0.4), limit_s=240)
    assert outs[-1].state == SUCCEEDED, outs[-1].reply
    assert math.hypot(world.x, world.y) < 0.2  # back home, past the post twice
    assert any(o.cmd.linear_x < 0 for o in outs)  # it backed off
    assert any("going around" in o.feedback.message or "blocked" in o.feedback.message for o in outs)


def test_detours_are_bounded_then_the_step_fails_honestly():
    world = World([Thing("red cup", 3.0, 0.0, height=0.1)])
    ex = executor(control={"detours": 1})
    ex.start(plan(APPROACH_CUP, phrases=["red cup"]), 0.0)

    def wall(now, out):  # a wall across the whole room at x = 1
        world.x = min(world.x, 1.0)

    outs, _ = run(ex, world, on_tick=wall, limit_s=240)
    assert outs[-1].state == FAILED and "blocked" in outs[-1].reply and outs[-1].cmd == Velocity()
    backs = [i for i in range(1, len(outs)) if outs[i].cmd.linear_x < 0 <= outs[i - 1].cmd.linear_x]
    assert len(backs) == 1  # one detour, then it gave up
