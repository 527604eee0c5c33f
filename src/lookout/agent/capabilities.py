"""The robot's declared capabilities: which actions exist and their bounds (from config/robot.yaml).

Everything downstream is generated from this: the plan schema, the decoding grammar, the system
prompt and the executor's safety limits. A robot without a base simply lists fewer actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

ActionName = Literal["search", "approach", "turn", "move", "wait", "report", "come_back", "stop"]
ALL_ACTIONS: tuple[str, ...] = ("search", "approach", "turn", "move", "wait", "report", "come_back", "stop")
# Actions that drive or rotate the base; the others (wait, report, stop) leave it where it is.
MOTION_ACTIONS: frozenset[str] = frozenset({"search", "approach", "turn", "move", "come_back"})

ACTION_HELP: dict[str, str] = {
    "search": "search(target): rotate in place until the target is seen",
    "approach": "approach(target, stop_distance_m): drive to the target and stop at that distance",
    "turn": "turn(degrees): rotate in place, positive is left (counter-clockwise)",
    "move": "move(meters): drive straight, negative is backwards",
    "wait": "wait(seconds): stay still",
    "report": "report(target): answer whether the target is in view",
    "come_back": "come_back(): drive back to where the current command started",
    "stop": "stop(): stop moving and end the plan",
}


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_linear_speed: float = Field(0.4, gt=0, le=3.0)
    max_angular_speed: float = Field(1.0, gt=0, le=6.0)
    max_move_m: float = Field(5.0, gt=0)
    max_turn_deg: int = Field(360, gt=0, le=1080)
    max_wait_s: float = Field(30.0, gt=0)
    stop_distance_m: tuple[float, float] = (0.3, 2.0)
    default_stop_distance_m: float = 0.5
    max_steps: int = Field(6, ge=1, le=32)
    max_phrases: int = Field(4, ge=1, le=32)
    max_phrase_chars: int = Field(40, ge=4, le=200)

    @model_validator(mode="after")
    def _check(self) -> Limits:
        lo, hi = self.stop_distance_m
        if not 0 < lo < hi:
            raise ValueError(f"stop_distance_m must be (low, high) with 0 < low < high, got {self.stop_distance_m}")
        if not lo <= self.default_stop_distance_m <= hi:
            raise ValueError("default_stop_distance_m must lie inside stop_distance_m")
        return self


class Capabilities(BaseModel):
    model_config = ConfigDict(extra="forbid")

    robot_name: str = "lookout rover"
    actions: list[ActionName] = Field(default_factory=lambda: list(ALL_ACTIONS))
    limits: Limits = Field(default_factory=Limits)
    cannot_do: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Capabilities:
        if "stop" not in self.actions:
            raise ValueError("every robot must offer the 'stop' action")
        if len(set(self.actions)) != len(self.actions):
            raise ValueError(f"duplicate actions in {self.actions}")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> Capabilities:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"capabilities file {path} not found")
        return cls.model_validate(yaml.safe_load(path.read_text()) or {})

    @classmethod
    def default(cls) -> Capabilities:
        from lookout.paths import config_dir

        path = config_dir() / "robot.yaml"
        return cls.from_yaml(path) if path.is_file() else cls()
