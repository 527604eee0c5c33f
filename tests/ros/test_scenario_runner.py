"""Scenarios through the ROS 2 nodes of launch/sim.launch.yaml over real Fast DDS, scored on ground truth."""

from __future__ import annotations

import pytest

from lookout.sim.scenario import Scenario

pytestmark = [pytest.mark.ros, pytest.mark.xdist_group("tiny_models")]


def _scenario(sid: str, category: str, turns: list[dict], limit: float = 20.0) -> Scenario:
    return Scenario.model_validate({"id": sid, "category": category, "seed": 121, "time_limit_s": limit,
                                    "turns": turns})


def test_scenarios_run_through_the_ros_nodes_and_are_scored(ros_context):
    from lookout_ros.scenario_runner import run_suite_over_ros

    scenarios = [
        _scenario("turn", "turn", [{"say": "turn left 90 degrees", "expect": [{"turned": 90}]}]),
        # a wrong expectation must fail: the runner reports what happened, not what was asked for
        _scenario("wrong", "turn", [{"say": "turn left 90 degrees", "expect": [{"turned": -90}]}]),
        _scenario("interrupted", "stop", [
            {"say": "spin around", "expect": [{"moved_at_least": {"degrees": 30}}]},
            {"say": "stop", "after_s": 6.0, "expect": ["stopped"]}]),  # planning runs in real time
        _scenario("decline", "decline", [{"say": "fly up to the ceiling", "expect": ["declined"]}]),
    ]
    results = run_suite_over_ros(scenarios, {"seed": "121"}, context=ros_context)
    got = {r.scenario_id: r for r, _ in results}
    assert got["turn"].success, got["turn"].reason
    assert not got["wrong"].success and "turned" in got["wrong"].reason
    assert got["interrupted"].success, got["interrupted"].reason
    assert got["decline"].success, got["decline"].reason
    for _, timing in results:
        assert timing["sim_s"] > 0 and timing["wall_s"] > 0
