"""The closed loop without ROS: simulator camera -> detector -> agent -> cmd_vel -> simulator.

The first test is the CI gate of the main job: "find the red ball" from the public suite succeeds
within its time limit with the real tiny models (detector and 4-bit planner from the registry). The
others pin the loop's mechanics (dialogue turns, interruption by stop, come_back across commands,
the demo's outputs) with a scripted planner and boxes from segmentation, so that they do not depend
on how good the tiny models are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from lookout.agent.capabilities import Capabilities
from lookout.agent.plan import PlanBase, make_plan
from lookout.sim.harness import TINY_MIN_SCORE, HarnessOptions, SimStack, agent_config_for_sim, shape_heights
from lookout.sim.scenario import Scenario, load_suite


@pytest.fixture(scope="session")
def tiny_stack():
    with SimStack(HarnessOptions(profile="tiny", min_score=TINY_MIN_SCORE)) as stack:
        yield stack


def test_find_the_red_ball_succeeds_with_the_tiny_models(tiny_stack):
    scenario = load_suite("public").get("search-red-ball")
    assert scenario.turns[0].say == "find the red ball"
    ep = tiny_stack.run(scenario)
    assert ep.result.success, f"{ep.result.reason}; replies {[o.reply for o in ep.outcomes]}"
    assert ep.rollout.turns[0].success is True
    assert ep.result.time_s <= scenario.time_limit_s
    assert ep.timings.frames >= 10 * ep.timings.sim_s * 0.9  # the camera ran at 10 Hz of sim time


# --- the loop's mechanics, with a scripted planner ---------------------------------------------------

@dataclass
class _Result:
    plan: PlanBase | None
    reply: str = ""


class ScriptedPlanner:
    """Plans by keyword, so the tests below check the loop, not the language model."""

    def __init__(self) -> None:
        self.caps = Capabilities.default()
        self.commands: list[str] = []

    def plan(self, text: str, history=(), should_abort=None) -> _Result:
        self.commands.append(text)
        obj = re.search(r"(red|green|blue|yellow|orange|purple|white|black) (ball|box|cylinder|bottle|cone)", text)
        move = re.search(r"forward ([\d.]+)", text)
        if "come back" in text:
            steps, phrases = [{"action": "come_back"}], []
        elif move:
            steps, phrases = [{"action": "move", "meters": float(move.group(1))}], []
        elif obj:
            steps = [{"action": "search", "target": obj.group(0)}, {"action": "approach", "target": obj.group(0)}]
            phrases = [obj.group(0)]
        else:
            return _Result(make_plan(self.caps, reply="I can't do that.", phrases=[], steps=[], declined=True))
        return _Result(make_plan(self.caps, reply="On it.", phrases=phrases, steps=steps))


@pytest.fixture(scope="module")
def scripted_stack():
    planner = ScriptedPlanner()
    with SimStack(HarnessOptions(perception="ground_truth"), planner=planner) as stack:
        yield stack, planner


def _scenario(turns: list[dict], seed: int = 171, **scene) -> Scenario:
    return Scenario.model_validate({"id": "t", "category": "multi_turn", "seed": seed, "scene": scene,
                                    "time_limit_s": 40, "turns": turns})


def test_come_back_returns_to_where_the_conversation_started(scripted_stack):
    stack, _ = scripted_stack
    sc = _scenario([{"say": "move forward 1.0 meters", "expect": [{"moved": 1.0}]},
                    {"say": "move forward 0.5 meters", "expect": [{"moved": 0.5}]},
                    {"say": "come back", "expect": [{"returned_to_start": {"reference": "episode", "tol_m": 0.3}}]}],
                   free_ahead_m=2.5)
    ep = stack.run(sc)
    assert ep.result.success, ep.result.reason
    x0, y0 = ep.rollout.samples[0][1:3]
    xe, ye = ep.rollout.samples[-1][1:3]
    assert ((xe - x0) ** 2 + (ye - y0) ** 2) ** 0.5 < 0.3  # home, not where the last command began (1 m ahead)
    assert [t.success for t in ep.rollout.turns] == [True, True, True]


def test_stop_interrupts_a_running_command_and_the_robot_stays_still(scripted_stack):
    stack, planner = scripted_stack
    sc = _scenario([{"say": "move forward 2.0 meters", "expect": [{"moved_at_least": {"meters": 0.3}}]},
                    {"say": "stop", "after_s": 2.0, "expect": ["stopped"]}], free_ahead_m=2.5)
    ep = stack.run(sc)
    assert ep.result.success, ep.result.reason
    first, second = ep.rollout.turns
    assert first.interrupted and second.reply == "Stopping." and second.success
    assert "stop" not in planner.commands  # stop words never wait for the model


def test_declined_request_reaches_the_scorer_and_nothing_moves(scripted_stack):
    stack, _ = scripted_stack
    ep = stack.run(_scenario([{"say": "please fly to the ceiling", "expect": ["declined"]}]))
    assert ep.result.success, ep.result.reason
    assert ep.rollout.turns[0].declined is True and ep.rollout.turns[0].success is False


def test_agent_is_configured_for_the_simulated_camera_and_objects():
    from lookout.agent.config import AgentConfig
    from lookout.sim.config import SimConfig

    sim_cfg = SimConfig.default()
    cfg = agent_config_for_sim(AgentConfig.default(), sim_cfg)
    assert cfg.camera.hfov_deg == pytest.approx(sim_cfg.camera.hfov_deg)
    heights = shape_heights(sim_cfg)
    assert set(heights) >= {"ball", "box", "cylinder", "bottle", "cone"}
    assert cfg.perception.object_heights_m["ball"] == heights["ball"] and 0.15 < heights["ball"] < 0.35


def test_demo_writes_a_video_a_plot_and_a_summary(tmp_path, scripted_stack, monkeypatch):
    import imageio.v2 as imageio

    import lookout.sim.harness as harness
    from lookout.demo import run_demo

    stack, planner = scripted_stack
    monkeypatch.setattr(harness, "load_planner", lambda *a, **k: planner)
    summary = run_demo(tmp_path, seed=5, perception="ground_truth", targets=("red ball", "blue box"))
    assert [t["say"] for t in summary["turns"]][:2] == ["find the red ball", "now go to the blue box"]
    assert summary["turns"][-1]["say"] == "stop" and summary["turns"][-1]["check_ok"]
    assert summary["all_checks_passed"], summary["reason"]
    reader = imageio.get_reader(tmp_path / "demo.mp4")
    assert reader.count_frames() >= 10 * summary["timings"]["sim_s"] * 0.9
    assert (tmp_path / "trajectory.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["outputs"]["video"].endswith("demo.mp4")
