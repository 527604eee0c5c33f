"""Scenarios and scoring: the public suite is complete and achievable; scripted controllers are judged right."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lookout.sim.oracle import OraclePolicy
from lookout.sim.rollout import Action, RolloutRecorder, run_episode
from lookout.sim.scenario import CATEGORIES, Scenario, ScenarioError, load_suite
from lookout.sim.scoring import reply_polarity, score
from lookout.sim.state import WorldState
from lookout.sim.world import Pose2D, SceneObject

AGENT_ACTIONS = {"search", "approach", "turn", "move", "wait", "report", "come_back", "stop"}


@pytest.fixture(scope="module")
def suite():
    return load_suite("public")


@pytest.fixture(scope="module")
def sim(small_config):
    from lookout.sim.sim import Sim

    s = Sim(small_config, seed=0)
    yield s
    s.close()


class Idle:
    """Says 'done' at once and never moves."""

    needs_image = False
    privileged = False

    def begin_turn(self, index, say, obs):
        pass

    def act(self, obs):
        return Action(done=True, reply="Done.", success=True)


def test_public_suite_has_30_scenarios_covering_every_action_and_category(suite):
    assert len(suite.scenarios) >= 30
    assert {s.category for s in suite.scenarios} == set(CATEGORIES)
    covered = set().union(*(s.actions for s in suite.scenarios))
    assert covered >= AGENT_ACTIONS, f"actions without a scenario: {AGENT_ACTIONS - covered}"
    assert any(len(s.turns) >= 2 and s.category == "multi_turn" for s in suite.scenarios)
    assert any("not_found" in s.check_names for s in suite.scenarios)
    assert any(t.after_s for s in suite.scenarios for t in s.turns), "stop must interrupt a running command"
    # distractor scenes really hold objects sharing the target's colour or shape
    for s in suite.by_category()["distractor"]:
        words = [p.split() for p in s.scene.require + s.scene.in_view]
        assert len(words) >= 2


def test_every_public_scenario_is_achieved_by_the_oracle_and_missed_by_doing_nothing(suite, sim):
    failures, idle_passes = [], []
    for scenario in suite.scenarios:
        result = score(scenario, run_episode(sim, scenario, OraclePolicy(scenario)))
        if not result.success:
            failures.append(f"{scenario.id}: {result.reason}")
        assert result.time_s <= scenario.time_limit_s
        if score(scenario, run_episode(sim, scenario, Idle())).success:
            idle_passes.append(scenario.id)
    assert not failures, "\n".join(failures)
    # Doing nothing may only pass where doing nothing is the request.
    assert idle_passes == ["stop-when-idle"]


def test_driving_to_a_distractor_fails_near_object(suite, sim):
    scenario = suite.get("distractor-red-ball-among-red")
    wrong = scenario.model_copy(update={"turns": [scenario.turns[0].model_copy(
        update={"expect": [scenario.turns[0].expect[0].model_copy(update={"phrase": "red box"})]})]})
    rollout = run_episode(sim, scenario, OraclePolicy(wrong))
    result = score(scenario, rollout)
    assert not result.success and "near_object" in result.reason and "red ball" in result.reason
    assert score(wrong, rollout).success  # the same run is a success for the scenario it aimed at


def test_running_out_of_time_fails_with_a_reason(suite, sim):
    scenario = suite.get("approach-blue-box-behind").model_copy(update={"time_limit_s": 2.0})
    result = score(scenario, run_episode(sim, scenario, OraclePolicy(scenario)))
    assert not result.success and "did not finish within 2 s" in result.reason


# --- scorer on hand-made rollouts --------------------------------------------------------------------
BALL = SceneObject(phrase="red ball", color="red", shape="ball", x=2.0, y=0.0, size={"radius": 0.1})


def _world(**kw) -> WorldState:
    base = dict(time_s=0.0, seed=0, room_size_m=6.0, robot_radius_m=0.17, camera_hfov_deg=75.0,
                robot=Pose2D(x=0, y=0, yaw=0), robot_start=Pose2D(x=0, y=0, yaw=0), linear=0.0, angular=0.0,
                collisions=0, objects=[BALL])
    base.update(kw)
    return WorldState(**base)


def _scenario(*turns) -> Scenario:
    return Scenario.model_validate({"id": "t", "category": "approach", "seed": 0, "time_limit_s": 60,
                                    "turns": [{"say": say, "expect": expect} for say, expect in turns]})


def _rollout(path, reply="", success=True, declined=None, answer=None, turn_ends=None):
    """path: (t, x, y, yaw, v, w) samples; one turn from 0 to the last sample unless turn_ends is given."""
    rec = RolloutRecorder("t", _world())
    for t, x, y, yaw, v, w in path:
        rec.add_sample(t, x, y, yaw, v, w)
    ends = turn_ends or [path[-1][0]]
    start = 0.0
    for end in ends:
        rec.begin_turn("x", start)
        rec.end_turn(end, reply=reply, success=success, declined=declined, answer=answer)
        start = end
    return rec.finish(ends[-1], timed_out=False)


def test_near_object_needs_both_distance_and_facing():
    sc = _scenario(("find the red ball", [{"near_object": "red ball"}]))
    # gap = 2.0 - 0.1 (ball) - 0.17 (robot) - x
    near = _rollout([(1.0, 1.4, 0.0, 0.0, 0, 0)])
    assert score(sc, near).success
    far = _rollout([(1.0, 0.9, 0.0, 0.0, 0, 0)])
    assert "near_object failed" in score(sc, far).reason
    looking_away = _rollout([(1.0, 1.4, 0.0, math.radians(60), 0, 0)])
    assert not score(sc, looking_away).success


def test_turned_uses_the_unwrapped_rotation():
    sc = _scenario(("spin around once", [{"turned": {"degrees": 360, "tol_deg": 20}}]))
    path = [(0.1 * k, 0.0, 0.0, math.radians(10 * k), 0, 1.0) for k in range(1, 37)]
    assert score(sc, _rollout(path)).success  # yaw is wrapped in each sample; the recorder unwraps it
    half = [(0.1 * k, 0.0, 0.0, math.radians(10 * k), 0, 1.0) for k in range(1, 19)]
    assert not score(sc, _rollout(half)).success


def test_moved_measures_along_the_starting_heading():
    sc = _scenario(("back up half a meter", [{"moved": -0.5}]))
    assert score(sc, _rollout([(1.0, -0.45, 0.02, 0.0, 0, 0)])).success
    assert not score(sc, _rollout([(1.0, 0.45, 0.0, 0.0, 0, 0)])).success
    assert not score(sc, _rollout([(1.0, 0.0, -0.5, 0.0, 0, 0)])).success  # sideways is not backwards


@pytest.mark.parametrize(
    ("reply", "answer", "expected", "ok"),
    [
        ("Yes, I can see the red ball.", None, True, True),
        ("No, I don't see a red ball.", None, False, True),
        ("I can't see any red ball.", None, True, False),
        ("Looking.", None, True, False),
        ("Looking.", True, True, True),  # an explicit answer wins over the wording
    ],
)
def test_reported_reads_the_answer(reply, answer, expected, ok):
    sc = _scenario(("do you see a red ball?", [{"reported": {"phrase": "red ball", "expected": expected}}]))
    assert score(sc, _rollout([(0.5, 0, 0, 0, 0, 0)], reply=reply, answer=answer)).success is ok


def test_not_found_requires_an_honest_reply_and_no_claim_of_success():
    sc = _scenario(("find the blue cone", [{"not_found": "blue cone"}]))
    assert score(sc, _rollout([(5, 0, 0, 0, 0, 0)], "I could not find a blue cone.", success=False)).success
    assert not score(sc, _rollout([(5, 0, 0, 0, 0, 0)], "Found it!", success=True)).success
    assert not score(sc, _rollout([(5, 0, 0, 0, 0, 0)], "I could not find it.", success=True)).success


def test_declined_requires_the_flag_and_no_motion():
    sc = _scenario(("fly", ["declined"]))
    assert score(sc, _rollout([(0.5, 0, 0, 0, 0, 0)], "I cannot fly.", success=False, declined=True)).success
    assert not score(sc, _rollout([(0.5, 0, 0, 0, 0, 0)], "Okay.", declined=False)).success
    assert not score(sc, _rollout([(0.5, 0.5, 0, 0, 0, 0)], "I cannot fly.", declined=True)).success


def test_stopped_looks_until_the_recording_ends():
    sc = _scenario(("move", []), ("stop", [{"stopped": {"within_s": 1.0}}]))
    still = [(t / 10, 0.1, 0, 0, 0.0, 0.0) for t in range(1, 40)]
    assert score(sc, _rollout(still, turn_ends=[1.0, 1.2])).success
    creeping = [(t / 10, 0.1 + 0.02 * t, 0, 0, 0.2, 0.0) for t in range(1, 40)]
    result = score(sc, _rollout(creeping, turn_ends=[1.0, 1.2]))
    assert not result.success and "stopped failed" in result.reason


def test_reply_polarity():
    assert reply_polarity("Yes, there is a red ball ahead.") is True
    assert reply_polarity("Nope, nothing like that here.") is False
    assert reply_polarity("I couldn’t find it.") is False
    assert reply_polarity("Okay.") is None


# --- malformed suites ----------------------------------------------------------------------------------
def test_bad_suites_fail_loudly_naming_the_scenario(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios:\n  - id: x\n    category: approach\n    seed: 1\n    turns:\n"
                   "      - say: go\n        expect: [{fly_to: moon}]\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: scenario x: .*unknown check 'fly_to'"):
        load_suite(bad)
    bad.write_text("scenarios:\n  - id: y\n    category: approach\n    seed: 1\n    turns:\n"
                   "      - say: go\n        expect: [{near_object: shiny robot}]\n")
    with pytest.raises(ScenarioError, match="scenario y"):
        load_suite(bad)
    bad.write_text("scenarios: [oops\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_suite(bad)
    dup = {"id": "a", "category": "turn", "seed": 1, "turns": [{"say": "turn", "expect": [{"turned": 90}]}]}
    import yaml

    bad.write_text(yaml.safe_dump({"scenarios": [dup, dup]}))
    with pytest.raises(ScenarioError, match="duplicate scenario ids"):
        load_suite(bad)
    with pytest.raises(FileNotFoundError, match="known suites"):
        load_suite("no-such-suite")
