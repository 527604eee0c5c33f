"""Agent evaluation: the scoring is right on known answers, and the CLI runs on the tiny profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookout.agent.capabilities import Capabilities
from lookout.agent.plan import make_plan
from lookout.eval.agent_eval import compare, evaluate

CAPS = Capabilities.default()


def _plan(**data):
    return make_plan(CAPS, **data)


GO_RED = dict(reply="Going to the red ball.", phrases=["red ball"],
              steps=[{"action": "search", "target": "red ball"},
                     {"action": "approach", "target": "red ball", "stop_distance_m": 0.5}])


def test_compare_scores_each_field() -> None:
    gold = _plan(**GO_RED)
    assert all(compare(gold, _plan(**GO_RED)).values())
    other_distance = _plan(**{**GO_RED, "steps": [GO_RED["steps"][0], {**GO_RED["steps"][1], "stop_distance_m": 1.0}]})
    scores = compare(gold, other_distance)
    assert scores["actions"] and scores["targets"] and scores["reply"] and scores["valid"]
    assert not scores["arguments"] and not scores["exact"]
    blue = _plan(reply="Going to the red ball.", phrases=["blue ball"],
                 steps=[{"action": "search", "target": "blue ball"},
                        {"action": "approach", "target": "blue ball", "stop_distance_m": 0.5}])
    scores = compare(gold, blue)
    assert scores["actions"] and scores["arguments"] and not scores["targets"] and not scores["exact"]
    assert not any(compare(gold, None).values())


def _row(row_id: str, turns: list[tuple[str, str]], **meta) -> dict:
    messages = [{"role": "system", "content": "sys"}]
    for user, plan in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": plan}]
    return {"messages": messages, "meta": {"id": row_id, "category": "goto", "turns": len(turns),
                                           "turn_kinds": ["goto"] + ["followup_colour_swap"] * (len(turns) - 1),
                                           **meta}}


def test_evaluate_counts_exact_valid_and_multi_turn_on_known_answers() -> None:
    red = _plan(**GO_RED).to_json()
    blue = red.replace("red ball", "blue ball")
    stop = _plan(reply="Stopping.", phrases=[], steps=[{"action": "stop"}]).to_json()
    rows = [
        _row("a", [("go to the red ball", red)], heldout_combo=True),
        _row("b", [("go to the red ball", red), ("now the blue one", blue)], heldout_phrasing=True),
        _row("c", [("stop", stop)]),
        _row("d", [("go to the red ball", red), ("now the blue one", blue)]),
    ]
    seen_histories = []

    def fake_planner(command: str, history: list[tuple[str, str]]) -> tuple[str, str]:
        seen_histories.append(history)
        if command == "stop":
            return "{not json", ""  # an invalid plan
        if command == "now the blue one":
            return (blue if len(seen_histories) < 4 else red), ""  # row b right, row d wrong
        return red, ""

    report = evaluate(fake_planner, rows, CAPS, show_progress=False)
    assert report.n_cases == 6
    assert report.metrics["exact"] == pytest.approx(4 / 6)
    assert report.metrics["valid"] == pytest.approx(5 / 6)
    assert report.multi_turn["n_followups"] == 2 and report.multi_turn["followup_exact"] == pytest.approx(0.5)
    assert report.multi_turn["row_all_exact"] == pytest.approx(0.5)
    assert report.by_slice["combo"]["exact"] == 1.0 and report.by_slice["phrasing"]["n"] == 2
    assert seen_histories[2] == [("go to the red ball", red)], "follow-ups get the gold history"
    assert {f["command"] for f in report.failures} == {"stop", "now the blue one"}
    assert report.grounding["regrounded_cases"] == report.grounding["asked_cases"] == 0
    assert report.grounding["model_alone_exact"] == 4


def test_evaluate_scores_the_agents_answer_and_the_model_alone() -> None:
    red = _plan(**GO_RED).to_json()
    blue = red.replace("red", "blue")
    asked = _plan(reply="Which one?", phrases=[], steps=[], declined=True).to_json()
    rows = [_row("a", [("go to the red ball", red)]), _row("b", [("go to the blue ball", blue)]),
            _row("c", [("go to the blue ball", blue)])]
    answers = iter([("model", red), ("regrounded", blue), ("asked", asked)])

    def fake_agent(command: str, history: list[tuple[str, str]]) -> tuple[str, str]:
        # the model says "red ball" to everything: for "blue" that names a ball nobody asked for, then
        # row b's re-decode finds the blue ball and row c's fails and the agent asks
        fake_agent.last_model_raw = red
        fake_agent.last_how, answer = next(answers)
        return answer, ""

    report = evaluate(fake_agent, rows, CAPS, show_progress=False)
    assert report.metrics["exact"] == pytest.approx(2 / 3)
    g = report.grounding
    assert (g["regrounded_cases"], g["regrounded_right"], g["asked_cases"], g["asked_right"]) == (1, 1, 1, 0)
    assert g["model_alone_exact"] == 1 and g["ungrounded_model_plans_that_were_right"] == 0 and g["stop_cases"] == 0


def test_confidence_table_counts_what_each_threshold_withholds_and_catches() -> None:
    red = _plan(**GO_RED).to_json()
    blue = red.replace("red", "blue")
    wait = _plan(reply="Waiting 2 s.", phrases=[], steps=[{"action": "wait", "seconds": 2.0}]).to_json()
    rows = [_row("a", [("go to the red ball", red)]), _row("b", [("go to the blue ball", blue)]),
            _row("c", [("go to the red ball", red)]), _row("d", [("wait 3 s", wait.replace("2", "3"))])]
    answers = iter([(red, 0.95), (red, 0.25), (red, 0.15), (wait, 0.01)])  # right, wrong, right, wrong but still

    def fake_planner(command: str, history: list[tuple[str, str]]) -> tuple[str, str]:
        answer, fake_planner.last_confidence = next(answers)
        return answer, ""

    table = {r["threshold"]: r for r in evaluate(fake_planner, rows, CAPS, show_progress=False).confidence}
    assert table[0.1] == {"threshold": 0.1, "right_withheld": 0, "moving_right": 2, "wrong_caught": 0,
                          "moving_wrong": 1}
    assert (table[0.2]["right_withheld"], table[0.2]["wrong_caught"]) == (1, 0)
    assert (table[0.3]["right_withheld"], table[0.3]["wrong_caught"]) == (1, 1)  # the wait never counts
    assert (table[0.9]["right_withheld"], table[0.9]["wrong_caught"]) == (1, 1)


def test_cli_evaluates_the_committed_tiny_agent(tmp_path: Path) -> None:
    from lookout.cli import app

    out = tmp_path / "agent.json"
    result = CliRunner().invoke(app, ["eval", "agent", "--profile", "tiny", "--limit", "12", "--json", str(out),
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n_rows"] == 12 and report["n_cases"] >= 12
    assert report["metrics"]["valid"] == 1.0, "under the grammar every plan parses"
    assert report["metrics"]["exact"] >= 0.75, report["failures"]
    assert "grammar-constrained" in report["decoding"]
