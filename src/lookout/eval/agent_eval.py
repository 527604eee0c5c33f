"""Agent evaluation: how often the planner produces exactly the gold plan on the held-out test split.

Every assistant turn of every test row is one case: the planner gets the user message and the
gold history before it (teacher forcing, as in the dataset), and its output is compared with the
gold plan as parsed objects. Metrics: exact match of the whole plan, per field (actions,
targets, arguments, reply, declined), valid-plan rate, and multi-turn accuracy (follow-up turns,
and rows whose every turn is exact); broken down by what the case holds out (colour-object pair,
phrasing, both, neither) and by category. Decoding goes through the agent's `Planner`
(grammar-constrained greedy) unless told otherwise.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lookout.agent.capabilities import MOTION_ACTIONS, Capabilities
from lookout.agent.plan import PlanBase, PlanError, parse_plan

# (command, [(user, assistant), ...]) -> (raw text, error or "")
PlanFn = Callable[[str, list[tuple[str, str]]], tuple[str, str]]
FIELDS = ("exact", "valid", "actions", "targets", "arguments", "reply", "declined")


@dataclass
class CaseResult:
    row_id: str
    turn: int  # 1-based turn within the row
    category: str
    kind: str
    slice: str  # iid, combo, phrasing, combo+phrasing
    command: str
    expected: str
    predicted: str
    error: str
    ms: float
    valid: bool = False
    exact: bool = False
    actions: bool = False
    targets: bool = False
    arguments: bool = False
    reply: bool = False
    # How the agent answered: "model" (its plan as decoded), "regrounded" (the model's plan named an object
    # nobody said; decoded again under grounded phrases, lookout.agent.grounding), "asked" (that failed too:
    # a question), "stop" (a stop command, answered without the model as Agent.submit does).
    how: str = "model"
    model_exact: bool = False  # the model's own first plan was right
    declined: bool = False
    confidence: float = 1.0  # the planner's confidence in its plan (PlanResult.confidence)
    model_moves: bool = False  # the model's own first plan would drive or rotate the robot


def _arguments(plan: PlanBase) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.model_dump().items() if k not in ("action", "target")} for s in plan.steps]


def compare(expected: PlanBase, predicted: PlanBase | None) -> dict[str, bool]:
    """Field-by-field agreement of a predicted plan with the gold one (all False when invalid)."""
    if predicted is None:
        return dict.fromkeys(FIELDS, False)
    return {
        "valid": True,
        "exact": predicted == expected,
        "actions": predicted.actions == expected.actions,
        "targets": predicted.phrases == expected.phrases
        and [s.target_phrase() for s in predicted.steps] == [s.target_phrase() for s in expected.steps],
        "arguments": _arguments(predicted) == _arguments(expected),
        "reply": predicted.reply == expected.reply,
        "declined": predicted.declined == expected.declined,
    }


def _slice(meta: dict[str, Any]) -> str:
    combo, phrasing = meta.get("heldout_combo", False), meta.get("heldout_phrasing", False)
    return {(False, False): "iid", (True, False): "combo", (False, True): "phrasing"}.get((combo, phrasing),
                                                                                          "combo+phrasing")


def cases(rows: Iterable[dict[str, Any]]) -> Iterable[tuple[dict[str, Any], int, str, list[tuple[str, str]], str]]:
    """(row, turn index, command, gold history, gold plan) for every assistant turn."""
    for row in rows:
        msgs = row["messages"]
        history: list[tuple[str, str]] = []
        for turn, i in enumerate(range(1, len(msgs) - 1, 2), start=1):
            user, gold = msgs[i], msgs[i + 1]
            if user["role"] != "user" or gold["role"] != "assistant":
                raise ValueError(f"row {row.get('meta', {}).get('id')}: expected user/assistant pairs after the system")
            yield row, turn, user["content"], list(history), gold["content"]
            history.append((user["content"], gold["content"]))


@dataclass
class AgentEvalReport:
    profile: str
    decoding: str
    n_rows: int
    n_cases: int
    metrics: dict[str, float]
    multi_turn: dict[str, float]
    by_slice: dict[str, dict[str, float]]
    by_category: dict[str, dict[str, float]]
    ms_per_plan: float
    seconds: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    # Scored: what the agent answers (planner_fn): stop commands without the model, plans that name an object
    # nobody said decoded again under grounded phrases or turned into a question. How often each, and the model alone.
    grounding: dict[str, int] = field(default_factory=dict)
    # What asking again below each confidence threshold (ModelConfig.min_plan_confidence) would do to the
    # model's plans that move the robot: right ones withheld, wrong ones caught.
    confidence: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _rates(results: list[CaseResult]) -> dict[str, float]:
    n = len(results)
    out = {f: sum(getattr(r, f) for r in results) / n if n else 0.0 for f in FIELDS}
    out["n"] = n
    return out


def evaluate(plan_fn: PlanFn, rows: list[dict[str, Any]], caps: Capabilities, *, profile: str = "",
             decoding: str = "", show_progress: bool = True, max_failures: int = 50) -> AgentEvalReport:
    """Run `plan_fn` on every assistant turn of `rows` and score it against the gold plans."""
    from tqdm import tqdm

    all_cases = list(cases(rows))
    results: list[CaseResult] = []
    start = time.perf_counter()
    for row, turn, command, history, gold in tqdm(all_cases, desc="evaluating agent", unit="plan",
                                                   disable=not show_progress):
        meta = row.get("meta", {})
        kinds = meta.get("turn_kinds", [])
        t0 = time.perf_counter()
        raw, error = plan_fn(command, history)
        ms = (time.perf_counter() - t0) * 1000
        predicted: PlanBase | None = None
        if not error:
            try:
                predicted = parse_plan(raw, caps)
            except PlanError as exc:
                error = str(exc)
        result = CaseResult(meta.get("id", ""), turn, meta.get("category", ""),
                            kinds[turn - 1] if len(kinds) >= turn else "", _slice(meta), command, gold, raw, error, ms)
        for name, ok in compare(parse_plan(gold, caps), predicted).items():
            setattr(result, name, ok)
        result.how = getattr(plan_fn, "last_how", "model")
        result.confidence = getattr(plan_fn, "last_confidence", 1.0)
        model_raw = getattr(plan_fn, "last_model_raw", None)
        model_plan = predicted
        if model_raw is None or model_raw == raw:
            result.model_exact = result.exact
        else:
            try:
                model_plan = parse_plan(model_raw, caps)
                result.model_exact = compare(parse_plan(gold, caps), model_plan)["exact"]
            except PlanError:
                model_plan, result.model_exact = None, False
        result.model_moves = model_plan is not None and bool(MOTION_ACTIONS.intersection(model_plan.actions))
        results.append(result)
    seconds = time.perf_counter() - start
    followups = [r for r in results if r.turn > 1]
    by_row: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        by_row[r.row_id].append(r)
    multi_rows = [rs for rs in by_row.values() if len(rs) > 1]
    multi_turn = {"followup_exact": sum(r.exact for r in followups) / len(followups) if followups else 0.0,
                  "n_followups": len(followups),
                  "row_all_exact": sum(all(r.exact for r in rs) for rs in multi_rows) / len(multi_rows)
                  if multi_rows else 0.0,
                  "n_multi_turn_rows": len(multi_rows)}
    groups_slice: dict[str, list[CaseResult]] = defaultdict(list)
    groups_cat: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        groups_slice[r.slice].append(r)
        groups_cat[r.kind or r.category].append(r)
    failures = [{"row": r.row_id, "turn": r.turn, "slice": r.slice, "command": r.command, "expected": r.expected,
                 "predicted": r.predicted, "error": r.error} for r in results if not r.exact][:max_failures]
    return AgentEvalReport(
        profile=profile, decoding=decoding, n_rows=len(rows), n_cases=len(results), metrics=_rates(results),
        multi_turn=multi_turn, by_slice={k: _rates(v) for k, v in sorted(groups_slice.items())},
        by_category={k: _rates(v) for k, v in sorted(groups_cat.items())},
        ms_per_plan=sum(r.ms for r in results) / len(results) if results else 0.0, seconds=seconds,
        failures=failures,
        grounding={**{f"{how}_{n}": sum(r.how == how and (r.exact if n == "right" else True) for r in results)
                      for how in ("regrounded", "asked", "stop", "unsure") for n in ("cases", "right")},
                   "ungrounded_model_plans_that_were_right": sum(r.how in ("regrounded", "asked") and r.model_exact
                                                                 for r in results),
                   "model_alone_exact": sum(r.model_exact for r in results)},
        confidence=confidence_table(results))


CONFIDENCE_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def confidence_table(results: list[CaseResult]) -> list[dict[str, float]]:
    """Per threshold, among the model's plans that move the robot: right ones a gate would withhold and
    wrong ones it would catch (turned into a question). Stop commands never reach the model; after a grounded
    re-decode the confidence is the re-decode's (the plan the gate would judge)."""
    moving = [r for r in results if r.model_moves and r.how != "stop"]
    right = [r.confidence for r in moving if r.model_exact]
    wrong = [r.confidence for r in moving if not r.model_exact]
    return [{"threshold": t, "right_withheld": sum(c < t for c in right), "moving_right": len(right),
             "wrong_caught": sum(c < t for c in wrong), "moving_wrong": len(wrong)} for t in CONFIDENCE_THRESHOLDS]


def planner_fn(profile: str = "tiny", *, constrained: bool = True, load_in_4bit: bool | None = None,
               cpu_threads: int = 0, caps: Capabilities | None = None, base: str | None = None,
               adapter: str | None = None, min_plan_confidence: float = 0.0) -> tuple[PlanFn, str]:
    """A PlanFn over the agent's Planner loaded from a registry profile (`base`/`adapter` override its
    folders: evaluate a fresh training run without editing the registry), and a label of how it decodes."""
    from lookout.agent.commands import is_stop_command, stop_plan
    from lookout.agent.config import ModelConfig
    from lookout.agent.dialogue import Turn
    from lookout.agent.planner import Planner
    from lookout.models.registry import load_profile

    files = load_profile(profile, parts=("agent",)).agent
    assert files is not None
    four_bit = files.load_in_4bit if load_in_4bit is None else load_in_4bit
    base = base or files.base
    explicit = adapter is not None  # an adapter named on the command line must exist
    adapter = adapter if explicit else str(files.adapter or "")
    cfg = ModelConfig(base=base, adapter=adapter, adapter_required=explicit and bool(adapter),
                      load_in_4bit=four_bit, device="cpu", cpu_threads=cpu_threads,
                      min_plan_confidence=min_plan_confidence)
    planner = Planner(cfg, caps or Capabilities.default(), constrained=constrained)

    def fn(command: str, history: list[tuple[str, str]]) -> tuple[str, str]:
        """What the agent answers: a stop command without the model, else the planner's plan (a question
        when grounding failed twice). The model's own first plan is kept for the model-alone score."""
        result = planner.plan(command, [Turn(u, a) for u, a in history])
        fn.last_model_raw = result.first_raw_text or result.raw_text  # type: ignore[attr-defined]
        fn.last_confidence = result.confidence  # type: ignore[attr-defined]
        if is_stop_command(result.command):
            fn.last_how = "stop"  # type: ignore[attr-defined]
            return stop_plan(planner.caps).to_json(), ""
        if result.unsure:
            how = "unsure"
        elif result.ungrounded:
            how = "regrounded" if result.regrounded else "asked"
        else:
            how = "model"
        fn.last_how = how  # type: ignore[attr-defined]
        return (result.plan_json if result.plan is not None else result.raw_text), result.error

    label = (f"Planner, {'grammar-constrained' if constrained else 'unconstrained'} greedy, "
             f"{'4-bit NF4' if four_bit else 'fp32'} base {base}{', adapter ' + adapter if adapter else ''}")
    return fn, label


def print_report(report: AgentEvalReport) -> None:
    """Rich tables: overall, multi-turn, by held-out slice, by category."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    head = Table(title=f"agent eval: profile {report.profile} ({report.decoding})")
    for col in ("cases", *FIELDS, "ms/plan"):
        head.add_column(col, justify="right")
    m = report.metrics
    head.add_row(str(report.n_cases), *(pct(m[f]) for f in FIELDS), f"{report.ms_per_plan:.0f}")
    console.print(head)
    mt = report.multi_turn
    console.print(f"multi-turn: follow-up turns exact {pct(mt['followup_exact'])} of {mt['n_followups']}; "
                  f"rows with every turn exact {pct(mt['row_all_exact'])} of {mt['n_multi_turn_rows']}")
    g = report.grounding
    if g:
        console.print(f"how the agent answered: the model's plan named an object nobody said "
                      f"{g['regrounded_cases'] + g['asked_cases']} times ({g['ungrounded_model_plans_that_were_right']} "
                      f"of them right): re-decoded under grounded phrases {g['regrounded_cases']} "
                      f"({g['regrounded_right']} right), asked again {g['asked_cases']}; stop commands answered "
                      f"without the model {g['stop_cases']} ({g['stop_right']} right). The model's own plans alone: "
                      f"{g['model_alone_exact']} of {report.n_cases} exact")
    if g.get("unsure_cases"):
        console.print(f"plans that would have moved the robot on too little confidence, asked again instead: "
                      f"{g['unsure_cases']}")
    if report.confidence:
        table = Table(title="asking again below a confidence threshold (model plans that move the robot)")
        for col in ("threshold", "right withheld", "wrong caught"):
            table.add_column(col, justify="right")
        for row in report.confidence:
            table.add_row(f"{row['threshold']:.2f}", f"{row['right_withheld']} of {row['moving_right']}",
                          f"{row['wrong_caught']} of {row['moving_wrong']}")
        console.print(table)
    for title, groups in (("by held-out slice", report.by_slice), ("by turn kind", report.by_category)):
        table = Table(title=title)
        table.add_column("group")
        for col in ("cases", "exact", "valid", "actions", "targets", "arguments"):
            table.add_column(col, justify="right")
        for name, g in groups.items():
            table.add_row(name, str(int(g["n"])), *(pct(g[f]) for f in ("exact", "valid", "actions", "targets",
                                                                         "arguments")))
        console.print(table)


def write_report(report: AgentEvalReport, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_json() + "\n")
