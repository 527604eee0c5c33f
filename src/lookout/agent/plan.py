"""The plan schema: what the language model must produce, generated from the robot's capabilities.

A plan is JSON like

    {"reply": "Looking for the red cup.",
     "phrases": ["red cup"],
     "steps": [{"action": "search", "target": "red cup"},
               {"action": "approach", "target": "red cup", "stop_distance_m": 0.5},
               {"action": "come_back"}],
     "declined": false}

`build_plan_model(caps)` returns a pydantic model for exactly the actions and bounds the robot
declares; its `model_json_schema()` is the grammar the planner decodes under, and
`model_validate_json` is the second check before anything moves. Keys are fixed in this order
(reply, phrases, steps, declined) so the grammar, the dataset and the model agree byte for byte.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from lookout.agent.capabilities import Capabilities

SCHEMA_VERSION = "1"
PHRASE_PATTERN = r"^[a-z0-9][a-z0-9 '\-]*$"  # lower-case words: what the detector's text encoder gets


class PlanError(ValueError):
    """The model's output is not a valid plan for this robot (the robot does not move)."""


class Step(BaseModel):
    """Base of every step; subclasses are generated per robot with their bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: str

    def target_phrase(self) -> str | None:
        """The phrase this step acts on (search, approach, report), else None."""
        return getattr(self, "target", None)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" if not isinstance(v, str) else v for k, v in self.model_dump().items() if k != "action")
        return f"{self.action}({args})"


class PlanBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reply: str
    phrases: list[str]
    steps: list[Step]
    declined: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> PlanBase:
        if self.declined and self.steps:
            raise ValueError("a declined plan has no steps")
        if len(set(self.phrases)) != len(self.phrases):
            raise ValueError(f"duplicate phrases {self.phrases}")
        for step in self.steps:
            target = step.target_phrase()
            if target is not None and target not in self.phrases:
                raise ValueError(f"step {step.action} targets {target!r}, which is not among phrases {self.phrases}")
        return self

    @property
    def actions(self) -> list[str]:
        return [s.action for s in self.steps]

    def to_json(self) -> str:
        return self.model_dump_json()


def _phrase(caps: Capabilities) -> Any:
    return Annotated[str, Field(min_length=1, max_length=caps.limits.max_phrase_chars, pattern=PHRASE_PATTERN)]


@lru_cache(maxsize=16)
def _build(caps_json: str) -> type[PlanBase]:
    caps = Capabilities.model_validate_json(caps_json)
    lim = caps.limits
    phrase = _phrase(caps)
    lo, hi = lim.stop_distance_m
    fields: dict[str, dict[str, Any]] = {
        "search": {"target": (phrase, ...)},
        "approach": {"target": (phrase, ...),
                     "stop_distance_m": (Annotated[float, Field(ge=lo, le=hi)], lim.default_stop_distance_m)},
        "turn": {"degrees": (Annotated[int, Field(ge=-lim.max_turn_deg, le=lim.max_turn_deg)], ...)},
        "move": {"meters": (Annotated[float, Field(ge=-lim.max_move_m, le=lim.max_move_m)], ...)},
        "wait": {"seconds": (Annotated[float, Field(ge=0, le=lim.max_wait_s)], ...)},
        "report": {"target": (phrase, ...)},
        "come_back": {},
        "stop": {},
    }
    step_models = []
    for name in caps.actions:
        model = create_model(
            f"{name.title().replace('_', '')}Step",
            __base__=Step,
            action=(Literal[name], ...),  # type: ignore[valid-type]
            **fields[name],
        )
        step_models.append(model)
    step_union = Annotated[Union[tuple(step_models)], Field(discriminator="action")]  # noqa: UP007
    return create_model(
        "Plan",
        __base__=PlanBase,
        reply=(Annotated[str, Field(min_length=1, max_length=200)], ...),
        phrases=(Annotated[list[phrase], Field(max_length=lim.max_phrases)], ...),
        steps=(Annotated[list[step_union], Field(max_length=lim.max_steps)], ...),
        declined=(bool, False),
    )


def build_plan_model(caps: Capabilities | None = None) -> type[PlanBase]:
    """The pydantic Plan model for these capabilities (cached per distinct capabilities)."""
    caps = caps or Capabilities.default()
    return _build(caps.model_dump_json())


def plan_json_schema(caps: Capabilities | None = None) -> dict[str, Any]:
    return build_plan_model(caps).model_json_schema()


def parse_plan(text: str, caps: Capabilities | None = None) -> PlanBase:
    """Validate model output; raises PlanError with a readable reason (never returns a partial plan)."""
    model = build_plan_model(caps)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise PlanError(f"invalid plan: {exc.errors(include_url=False)[:3]}") from exc
    except ValueError as exc:
        raise PlanError(f"invalid plan: {exc}") from exc


def make_plan(caps: Capabilities | None = None, **data: Any) -> PlanBase:
    """Build a validated plan from Python data (used by the dataset generator and tests)."""
    return parse_plan(json.dumps(data), caps)
