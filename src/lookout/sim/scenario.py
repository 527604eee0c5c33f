"""Scenario definitions: what the user says, in which scene, and how success is judged.

A scenario is a scene (seed + overrides), one or more user turns, and for each turn a list of checks
on the true world state at the end of that turn. Suites are YAML files in `scenarios/`:

    scenarios:
      - id: approach-red-ball
        category: approach
        seed: 11
        scene: {require: [red ball]}
        time_limit_s: 60
        turns:
          - say: go to the red ball
            expect:
              - near_object: {phrase: red ball}

A check is written as `{name: {args}}`, `{name: first-argument}` or just `name` when it has no
arguments. A turn with `after_s` is spoken that many seconds after the previous one began,
interrupting it (how "stop" is tested); otherwise it is spoken when the previous turn has finished.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lookout.sim.world import SceneOverrides, split_phrase

CATEGORIES: tuple[str, ...] = (
    "search", "approach", "turn", "move", "wait", "report", "come_back", "stop",
    "multi_turn", "absent", "distractor", "decline",
)
Category = Literal[
    "search", "approach", "turn", "move", "wait", "report", "come_back", "stop",
    "multi_turn", "absent", "distractor", "decline",
]


class ScenarioError(ValueError):
    """A scenario or suite file is malformed; the message names the file and the scenario."""


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    positional: ClassVar[str | None] = None  # the argument a scalar shorthand fills
    actions: ClassVar[tuple[str, ...]] = ()  # agent actions this check exercises (for suite coverage)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.model_dump().items() if k != "check")
        return f"{self.check}({args})"  # type: ignore[attr-defined]


def _phrase(v: str) -> str:
    color, shape = split_phrase(v)
    return f"{color} {shape}"


class _PhraseCheck(_Check):
    positional: ClassVar[str | None] = "phrase"
    phrase: str

    @field_validator("phrase")
    @classmethod
    def _normalise(cls, v: str) -> str:
        return _phrase(v)


class NearObject(_PhraseCheck):
    """The turn ends with the robot's edge within `max_distance_m` of the object's, facing it."""

    actions: ClassVar[tuple[str, ...]] = ("approach",)
    check: Literal["near_object"] = "near_object"
    max_distance_m: float = Field(0.6, gt=0)
    min_distance_m: float = Field(0.0, ge=0)
    facing_deg: float = Field(30.0, gt=0, le=180)

    @model_validator(mode="after")
    def _range(self) -> NearObject:
        if self.min_distance_m >= self.max_distance_m:
            raise ValueError("near_object needs min_distance_m < max_distance_m")
        return self


class InView(_PhraseCheck):
    """The turn ends with the object's centre inside the camera's horizontal field of view."""

    actions: ClassVar[tuple[str, ...]] = ("search",)
    check: Literal["in_view"] = "in_view"
    margin_deg: float = Field(5.0, ge=0, le=60)


class Visited(_PhraseCheck):
    """At some moment of the turn the robot came within `max_distance_m` of the object (edge to edge)."""

    actions: ClassVar[tuple[str, ...]] = ("approach",)
    check: Literal["visited"] = "visited"
    max_distance_m: float = Field(0.8, gt=0)


class Reported(_PhraseCheck):
    """The agent's answer about the object is `expected` (yes/no)."""

    actions: ClassVar[tuple[str, ...]] = ("report",)
    check: Literal["reported"] = "reported"
    expected: bool


class NotFound(_PhraseCheck):
    """Honest failure: the agent does not claim success and says it did not find the object."""

    actions: ClassVar[tuple[str, ...]] = ("search",)
    check: Literal["not_found"] = "not_found"


class Turned(_Check):
    """Net rotation over the turn is `degrees` (left positive) within `tol_deg`, without driving off."""

    positional: ClassVar[str | None] = "degrees"
    actions: ClassVar[tuple[str, ...]] = ("turn",)
    check: Literal["turned"] = "turned"
    degrees: float
    tol_deg: float = Field(15.0, gt=0)
    either_direction: bool = False  # "turn around": left or right both count
    max_translation_m: float = Field(0.3, gt=0)


class Moved(_Check):
    """Displacement along the starting heading is `meters` (negative = backwards) within `tol_m`."""

    positional: ClassVar[str | None] = "meters"
    actions: ClassVar[tuple[str, ...]] = ("move",)
    check: Literal["moved"] = "moved"
    meters: float
    tol_m: float = Field(0.2, gt=0)
    max_lateral_m: float = Field(0.3, gt=0)


class Went(_Check):
    """At some moment of the turn the robot was `meters` ahead of its start (along the start heading)."""

    positional: ClassVar[str | None] = "meters"
    actions: ClassVar[tuple[str, ...]] = ("move",)
    check: Literal["went"] = "went"
    meters: float
    tol_m: float = Field(0.25, gt=0)


class MovedAtLeast(_Check):
    """The robot was busy: it drove at least `meters` (path length) and turned at least `degrees`."""

    actions: ClassVar[tuple[str, ...]] = ()
    check: Literal["moved_at_least"] = "moved_at_least"
    meters: float = Field(0.0, ge=0)
    degrees: float = Field(0.0, ge=0)


class Waited(_Check):
    """The turn lasted at least `seconds` - `tol_s` and the robot stayed still."""

    positional: ClassVar[str | None] = "seconds"
    actions: ClassVar[tuple[str, ...]] = ("wait",)
    check: Literal["waited"] = "waited"
    seconds: float = Field(gt=0)
    tol_s: float = Field(1.0, ge=0)


class Stopped(_Check):
    """From `within_s` after the turn began until it ended, the robot stood still."""

    actions: ClassVar[tuple[str, ...]] = ("stop",)
    check: Literal["stopped"] = "stopped"
    within_s: float = Field(1.5, ge=0)
    max_speed: float = Field(0.05, gt=0)


class ReturnedToStart(_Check):
    """The turn ends within `tol_m` of where the episode (or this turn) started."""

    actions: ClassVar[tuple[str, ...]] = ("come_back",)
    check: Literal["returned_to_start"] = "returned_to_start"
    tol_m: float = Field(0.5, gt=0)
    reference: Literal["episode", "turn"] = "episode"


class Declined(_Check):
    """The agent declined (the plan says so) and the robot did not move."""

    actions: ClassVar[tuple[str, ...]] = ()
    check: Literal["declined"] = "declined"


CHECK_TYPES: tuple[type[_Check], ...] = (
    NearObject, InView, Visited, Reported, NotFound, Turned, Moved, Went, MovedAtLeast, Waited, Stopped,
    ReturnedToStart, Declined,
)
_BY_NAME: dict[str, type[_Check]] = {t.model_fields["check"].default: t for t in CHECK_TYPES}
Check = Annotated[Union[CHECK_TYPES], Field(discriminator="check")]  # type: ignore[valid-type]  # noqa: UP007


def _expand_check(value: Any) -> Any:
    """`stopped` | `{turned: 90}` | `{near_object: {phrase: red ball}}` -> {"check": ..., **args}."""
    if isinstance(value, str):
        return {"check": value}
    if isinstance(value, dict) and "check" not in value and len(value) == 1:
        (name, args), = value.items()
        if name not in _BY_NAME:
            raise ValueError(f"unknown check {name!r}; known: {sorted(_BY_NAME)}")
        if args is None:
            return {"check": name}
        if not isinstance(args, dict):
            positional = _BY_NAME[name].positional
            if positional is None:
                raise ValueError(f"check {name} takes no positional argument (got {args!r})")
            return {"check": name, positional: args}
        return {"check": name, **args}
    return value


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    say: str = Field(min_length=1, max_length=300)
    expect: list[Check] = Field(default_factory=list)
    after_s: float | None = Field(None, gt=0, description="speak this long after the previous turn began")

    @field_validator("expect", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return [_expand_check(c) for c in v] if isinstance(v, list) else v


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    category: Category
    description: str = ""
    seed: int = Field(ge=0)
    scene: SceneOverrides = Field(default_factory=SceneOverrides)
    time_limit_s: float = Field(60.0, gt=0)
    turns: list[Turn] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.turns[0].after_s is not None:
            raise ValueError("the first turn cannot have after_s")
        return self

    @property
    def actions(self) -> set[str]:
        """Agent actions the checks of this scenario exercise."""
        return {a for t in self.turns for c in t.expect for a in c.actions}

    @property
    def check_names(self) -> set[str]:
        return {c.check for t in self.turns for c in t.expect}


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    scenarios: list[Scenario]

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        dup = [k for k, n in Counter(s.id for s in self.scenarios).items() if n > 1]
        if dup:
            raise ValueError(f"duplicate scenario ids {dup}")
        return self

    def get(self, scenario_id: str) -> Scenario:
        for s in self.scenarios:
            if s.id == scenario_id:
                return s
        raise KeyError(f"no scenario {scenario_id!r} in suite {self.name!r}")

    def by_category(self) -> dict[str, list[Scenario]]:
        out: dict[str, list[Scenario]] = {}
        for s in self.scenarios:
            out.setdefault(s.category, []).append(s)
        return out


def scenarios_dir() -> Path:
    from lookout.paths import repo_root

    return repo_root() / "scenarios"


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (`public` -> scenarios/public.yaml) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = scenarios_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in scenarios_dir().glob("*.yaml")) if scenarios_dir().is_dir() else []
        raise FileNotFoundError(f"scenario suite {path} not found (known suites: {known})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise ScenarioError(f"{path}: expected a mapping with a 'scenarios' list")
    data.setdefault("name", path.stem)
    for i, raw in enumerate(data["scenarios"]):
        try:
            Scenario.model_validate(raw)
        except ValidationError as exc:
            sid = raw.get("id", f"#{i}") if isinstance(raw, dict) else f"#{i}"
            raise ScenarioError(f"{path}: scenario {sid}: {exc.errors(include_url=False)[:3]}") from exc
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{path}: {exc.errors(include_url=False)[:3]}") from exc
