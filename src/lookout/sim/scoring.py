"""Judge a rollout against its scenario's checks, on the true world state.

Distances between the robot and an object are edge to edge on the floor: the distance from the base
centre to the object's footprint minus the base radius (what a front bumper would measure).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re

from pydantic import BaseModel

from lookout.sim.rollout import Rollout, TurnRecord
from lookout.sim.scenario import (
    Declined,
    InView,
    Moved,
    MovedAtLeast,
    NearObject,
    NotFound,
    Reported,
    ReturnedToStart,
    Scenario,
    Stopped,
    Turned,
    Visited,
    Waited,
    Went,
)
from lookout.sim.world import wrap_angle

_NEGATIVE = re.compile(
    r"\b(no|not|nope|never|nothing|none|nowhere|unable|cannot|can't|couldn't|didn't|don't|doesn't|isn't|"
    r"aren't|wasn't|haven't|fail(?:ed)?)\b|n't\b"
)
_POSITIVE = re.compile(r"\b(yes|yep|yeah|found|see|seeing|spotted|there is|there's|visible|i can see|reached)\b")


def reply_polarity(text: str) -> bool | None:
    """True for an affirmative reply ("Yes, I see it"), False for a negative one, None if it says neither."""
    t = text.lower().replace("\u2019", "'")
    if _NEGATIVE.search(t):
        return False
    if _POSITIVE.search(t):
        return True
    return None


class CheckResult(BaseModel):
    turn: int
    check: str
    ok: bool
    detail: str


class ScenarioResult(BaseModel):
    scenario_id: str
    category: str
    success: bool
    reason: str
    time_s: float  # when the last turn ended (or the time limit)
    collisions: int
    checks: list[CheckResult]


class _Track:
    """Time-indexed view of a rollout's samples."""

    def __init__(self, rollout: Rollout) -> None:
        self.samples = rollout.samples
        self.times = [s[0] for s in rollout.samples]

    def at(self, t: float) -> tuple[float, float, float, float, float, float]:
        """The last sample at or before t."""
        i = max(0, bisect.bisect_right(self.times, t + 1e-9) - 1)
        return self.samples[i]

    def between(self, t0: float, t1: float) -> list[tuple[float, float, float, float, float, float]]:
        i0 = bisect.bisect_left(self.times, t0 - 1e-9)
        i1 = bisect.bisect_right(self.times, t1 + 1e-9)
        return self.samples[i0:i1] or [self.at(t1)]


def _answer(rec: TurnRecord) -> bool | None:
    return rec.answer if rec.answer is not None else reply_polarity(rec.reply)


def _evaluate(check, rec: TurnRecord, end: float, rollout: Rollout, track: _Track) -> tuple[bool, str]:
    world = rollout.world
    s0, s1 = track.at(rec.start_s), track.at(end)
    _, x, y, yaw, _, _ = s1
    moved = math.hypot(x - s0[1], y - s0[2])
    rotated = math.degrees(abs(s1[3] - s0[3]))
    phrase = getattr(check, "phrase", None)
    obj = world.find(phrase) if phrase else None

    def gap(px: float, py: float) -> float:
        assert obj is not None
        return obj.floor_distance(px, py) - world.robot_radius_m

    def bearing_deg() -> float:
        assert obj is not None
        return math.degrees(wrap_angle(math.atan2(obj.y - y, obj.x - x) - yaw))

    if isinstance(check, NearObject | InView | Visited) and obj is None:
        return False, f"scenario error: no {phrase!r} in the scene"
    if isinstance(check, NearObject):
        g, b = gap(x, y), bearing_deg()
        ok = check.min_distance_m <= g <= check.max_distance_m and abs(b) <= check.facing_deg
        return ok, (f"{phrase}: {g:.2f} m away (want {check.min_distance_m:g}..{check.max_distance_m:g}), "
                    f"bearing {b:+.0f} deg (max {check.facing_deg:g})")
    if isinstance(check, InView):
        b, half = bearing_deg(), world.camera_hfov_deg / 2 - check.margin_deg
        return abs(b) <= half, f"{phrase}: bearing {b:+.0f} deg (in view within {half:.0f})"
    if isinstance(check, Visited):
        g = min(gap(s[1], s[2]) for s in track.between(rec.start_s, end))
        return g <= check.max_distance_m, f"{phrase}: closest {g:.2f} m (max {check.max_distance_m})"
    if isinstance(check, Turned):
        turned = math.degrees(s1[3] - s0[3])
        err = abs(abs(turned) - abs(check.degrees)) if check.either_direction else abs(turned - check.degrees)
        ok = err <= check.tol_deg and moved <= check.max_translation_m
        return ok, f"turned {turned:+.0f} deg (want {check.degrees:+g} +- {check.tol_deg:g}), drifted {moved:.2f} m"
    if isinstance(check, Moved):
        dx, dy = x - s0[1], y - s0[2]
        along = dx * math.cos(s0[3]) + dy * math.sin(s0[3])
        lateral = -dx * math.sin(s0[3]) + dy * math.cos(s0[3])
        ok = abs(along - check.meters) <= check.tol_m and abs(lateral) <= check.max_lateral_m
        return ok, f"moved {along:+.2f} m (want {check.meters:+g} +- {check.tol_m:g}), sideways {lateral:+.2f} m"
    if isinstance(check, Went):
        c, s = math.cos(s0[3]), math.sin(s0[3])
        reach = [(p[1] - s0[1]) * c + (p[2] - s0[2]) * s for p in track.between(rec.start_s, end)]
        far = max(reach) if check.meters >= 0 else min(reach)
        ok = abs(far - check.meters) <= check.tol_m
        return ok, f"went {far:+.2f} m along the start heading (want {check.meters:+g} +- {check.tol_m:g})"
    if isinstance(check, MovedAtLeast):
        path = track.between(rec.start_s, end)
        length = sum(math.hypot(b[1] - a[1], b[2] - a[2]) for a, b in itertools.pairwise(path))
        turn = sum(abs(b[3] - a[3]) for a, b in itertools.pairwise(path))
        ok = length >= check.meters and math.degrees(turn) >= check.degrees
        return ok, f"drove {length:.2f} m (min {check.meters:g}), turned {math.degrees(turn):.0f} deg (min {check.degrees:g})"
    if isinstance(check, Waited):
        duration = end - rec.start_s
        ok = duration >= check.seconds - check.tol_s and moved <= 0.05 and rotated <= 5.0
        return ok, f"waited {duration:.1f} s (want {check.seconds:g}), moved {moved:.2f} m, turned {rotated:.0f} deg"
    if isinstance(check, Reported):
        ans = _answer(rec)
        want = "yes" if check.expected else "no"
        got = {True: "yes", False: "no", None: "no clear answer"}[ans]
        return ans is check.expected, f"{phrase}: answered {got} (want {want}); reply {rec.reply!r}"
    if isinstance(check, NotFound):
        ans = _answer(rec)
        ok = rec.success is not True and ans is False
        return ok, f"{phrase}: claimed success={rec.success}, reply {rec.reply!r} (want an honest 'not found')"
    if isinstance(check, Stopped):
        # Until the next turn begins (or the recording ends): saying "stopped" and then moving is a failure.
        later = [t.start_s for t in rollout.turns if t.index > rec.index]
        window_end = later[0] if later else track.times[-1]
        window = track.between(rec.start_s + check.within_s, window_end)
        fastest = max(max(abs(s[4]), abs(s[5]) * world.robot_radius_m) for s in window)
        return fastest <= check.max_speed, f"fastest {fastest:.2f} m/s after {check.within_s:g} s (max {check.max_speed:g})"
    if isinstance(check, ReturnedToStart):
        ref = world.robot_start if check.reference == "episode" else None
        rx, ry = (ref.x, ref.y) if ref is not None else (s0[1], s0[2])
        d = math.hypot(x - rx, y - ry)
        return d <= check.tol_m, f"{d:.2f} m from the {check.reference} start (max {check.tol_m:g})"
    if isinstance(check, Declined):
        ok = rec.declined is True and moved <= 0.1 and rotated <= 10.0
        return ok, f"declined={rec.declined}, moved {moved:.2f} m, turned {rotated:.0f} deg"
    raise TypeError(f"no scorer for check {check!r}")


def score(scenario: Scenario, rollout: Rollout) -> ScenarioResult:
    """Success if every turn happened, ended (or was interrupted) in time, and all its checks pass."""
    track = _Track(rollout)
    results: list[CheckResult] = []
    reason = ""
    for i, turn in enumerate(scenario.turns):
        if i >= len(rollout.turns):
            reason = reason or f"turn {i} ({turn.say!r}) never started: time ran out"
            continue
        rec = rollout.turns[i]
        if rec.end_s is None:
            reason = reason or f"turn {i} ({turn.say!r}) did not finish within {scenario.time_limit_s:g} s"
        end = rec.end_s if rec.end_s is not None else rollout.end_s
        for check in turn.expect:
            ok, detail = _evaluate(check, rec, end, rollout, track)
            results.append(CheckResult(turn=i, check=check.describe(), ok=ok, detail=detail))
            if not ok and not reason:
                said = f" (the agent said {rec.reply!r})" if rec.reply else ""
                reason = f"turn {i} ({turn.say!r}): {check.check} failed: {detail}{said}"
    success = not reason
    return ScenarioResult(
        scenario_id=scenario.id,
        category=scenario.category,
        success=success,
        reason="all checks passed" if success else reason,
        time_s=round(rollout.end_s, 3),
        collisions=rollout.collisions,
        checks=results,
    )
