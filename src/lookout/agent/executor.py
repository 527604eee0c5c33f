"""The executor: runs a validated plan step by step, closed-loop on detections and odometry.

Call `observe_detections` / `observe_odometry` as data arrives and `tick(now)` at the control rate;
each tick returns the velocity to send, the state, progress feedback and, at the end, whether the
plan succeeded and what to tell the user. A step succeeds only on evidence (the target seen over
several frames, the stop distance measured, the odometry showing the turn or move done); each step
has a timeout that ends in an honest failure. Every command passes the `SafetyGuard` (clamp,
e-stop, watchdog). Time is passed in, so tests drive it with scripted clocks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lookout.agent.camera import CameraModel, object_height_prior
from lookout.agent.capabilities import Capabilities
from lookout.agent.config import AgentConfig
from lookout.agent.motion import STOP, Odometry, Velocity, wrap_angle
from lookout.agent.plan import PlanBase, Step
from lookout.agent.safety import SafetyGuard
from lookout.perception.types import Detection, DetectionResult

IDLE, EXECUTING, SUCCEEDED, FAILED, CANCELLED, ESTOPPED = (
    "idle", "executing", "succeeded", "failed", "cancelled", "estopped")
_ODOMETRY_STEPS = ("turn", "move", "come_back")
_PERCEPTION_STEPS = ("search", "approach", "report")
_DRIVING_STEPS = ("approach", "move", "come_back")
_DETOUR_STEPS = ("approach", "come_back")  # goals that survive a sidestep (a move's distance would not)
STALL_DISTANCE_M = 0.03  # less than this over `timeouts.stall_s` of driving: blocked


@dataclass(frozen=True)
class Feedback:
    step_index: int = 0
    step_count: int = 0
    step: str = ""
    message: str = ""


@dataclass(frozen=True)
class ExecutorOutput:
    cmd: Velocity
    state: str
    feedback: Feedback
    done: bool = False  # the plan has ended (succeeded, failed, cancelled or e-stopped)
    success: bool = False  # only from perception or odometry evidence
    reply: str = ""  # what to tell the user when done


@dataclass
class _Frame:
    seq: int
    received: float
    result: DetectionResult
    depths: Sequence[float | None] | None


@dataclass
class _StepRun:
    """Per-step working state, reset when a step starts."""

    started: float
    deadline: float | None = None
    consecutive: int = 0
    last_frame_seq: int = -1
    lost_since: float | None = None
    reacquire_from: float | None = None  # `turned` when the turning to find a lost target began
    last_box: Detection | None = None  # the target's box in the last frame it was seen (approach)
    drive_since: float | None = None  # driving without odometry showing motion since (stall check)
    drive_pose: Odometry | None = None
    frames: list[bool] = field(default_factory=list)
    start_pose: Odometry | None = None
    prev_yaw: float | None = None
    turned: float = 0.0  # accumulated yaw change (rad)
    detour: list[tuple[str, float]] = field(default_factory=list)  # legs left: ("move", m) / ("turn", deg)
    detours: int = 0
    leg_pose: Odometry | None = None


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _step_text(step: Step) -> str:
    return step.describe()


class Executor:
    """State machine over a plan's steps; thread-safe (callbacks and the control timer share it)."""

    def __init__(self, cfg: AgentConfig, caps: Capabilities) -> None:
        self.cfg = cfg
        self.caps = caps
        self.camera = CameraModel.from_config(cfg.camera)
        self.guard = SafetyGuard(caps.limits, cfg.watchdog)
        self._lock = threading.RLock()
        self.state = IDLE
        self.plan: PlanBase | None = None
        self.index = 0
        self.run: _StepRun | None = None
        self.origin: Odometry | None = None  # pose when the current plan started
        self.home: Odometry | None = None  # pose when the conversation started: where come_back goes
        self.frames_seq = 0
        self.frame: _Frame | None = None
        self.odom: Odometry | None = None
        self.odom_received: float | None = None
        self.done_messages: list[str] = []
        self.answers: list[str] = []
        self.report_answers: list[bool] = []  # yes/no of each report step of the current plan
        self.message = ""
        self.reply = ""
        self.success = False
        self.last_cmd = STOP

    # --- inputs ------------------------------------------------------------------------------
    def observe_detections(self, result: DetectionResult, now: float,
                           depths: Sequence[float | None] | None = None) -> None:
        """A new camera frame's detections (`depths[i]` in m for detection i, if a depth camera has it)."""
        with self._lock:
            self.frames_seq += 1
            self.frame = _Frame(self.frames_seq, now, result, depths)

    def observe_odometry(self, odom: Odometry, now: float) -> None:
        with self._lock:
            self.odom = odom
            self.odom_received = now
            if self.home is None:
                self.home = odom

    def reset_home(self) -> None:
        """A new conversation starts here: the next odometry becomes the pose come_back returns to, and no
        step measures from a pose before it (after a sim reset the last pose is another scene's: a turn that
        took it as its start counted the jump to the new start as rotation and ended at once)."""
        with self._lock:
            self.home = None
            self.odom = None
            self.odom_received = None

    def set_estop(self, engaged: bool, now: float) -> ExecutorOutput:
        """Engage: stop at once and end the plan. Release: back to idle (the old plan does not resume)."""
        with self._lock:
            self.guard.set_estop(engaged)
            if engaged and self.state == EXECUTING:
                self._finish(ESTOPPED, False, "Emergency stop: I stopped and dropped the plan.")
            elif engaged:
                self.state = ESTOPPED
            elif self.state == ESTOPPED:
                self.state = IDLE
            self.last_cmd = STOP
            return self._output(STOP)

    # --- plan lifecycle ----------------------------------------------------------------------
    def start(self, plan: PlanBase, now: float) -> ExecutorOutput:
        """Begin `plan` (already validated), cancelling any plan in progress."""
        with self._lock:
            if self.state == EXECUTING:
                self._finish(CANCELLED, False, "Cancelled by a new command.")
            self.plan = plan
            self.index = 0
            self.done_messages, self.answers, self.report_answers = [], [], []
            self.success, self.reply, self.message = False, "", ""
            self.origin = self.odom if self._odom_fresh(now) else None
            if self.guard.estopped:
                self.state = EXECUTING
                self._finish(ESTOPPED, False, "The emergency stop is engaged: I am not moving.")
                return self._output(STOP)
            if not plan.steps:
                self.state = EXECUTING
                self._finish(SUCCEEDED if not plan.declined else FAILED, not plan.declined, plan.reply)
                return self._output(STOP)
            self.state = EXECUTING
            self._begin_step(now)
            return self._output(STOP)

    def cancel(self, now: float, reason: str = "Cancelled.") -> ExecutorOutput:
        """Stop now; the plan ends as cancelled (zero velocity is the returned command)."""
        with self._lock:
            if self.state == EXECUTING:
                self._finish(CANCELLED, False, reason)
            self.last_cmd = STOP
            return self._output(STOP)

    def _finish(self, state: str, success: bool, reason: str) -> None:
        self.state = state
        self.success = success
        self.message = reason
        self.run = None
        parts: list[str] = []
        if success:
            if self.done_messages:
                parts.append("Done: I " + _join(self.done_messages) + ".")
            parts.extend(self.answers)
            if not parts:
                parts.append(reason)
        else:
            parts.append(reason)
            parts.extend(self.answers)
        self.reply = " ".join(p for p in parts if p)

    # --- the control tick ----------------------------------------------------------------------
    def tick(self, now: float) -> ExecutorOutput:
        with self._lock:
            if self.guard.estopped:
                if self.state == EXECUTING:
                    self._finish(ESTOPPED, False, "Emergency stop: I stopped and dropped the plan.")
                self.last_cmd = STOP
                return self._output(STOP, message="emergency stop engaged")
            if self.state != EXECUTING or self.plan is None or self.run is None:
                self.last_cmd = STOP
                return self._output(STOP)
            step = self.plan.steps[self.index]
            if self.run.deadline is not None and now > self.run.deadline:
                self._finish(FAILED, False, self._timeout_text(step, now))
                self.last_cmd = STOP
                return self._output(STOP)
            if self.run.detour:
                cmd, status, text = self._detour_leg()
            else:
                cmd, status, text = getattr(self, f"_step_{step.action}")(step, now)
            if status == "done":
                if text and step.action != "report":
                    self.done_messages.append(text)
                if step.action == "stop":
                    self._finish(SUCCEEDED, True, "Stopped.")
                    cmd = STOP
                else:
                    self.index += 1
                    if self.index >= len(self.plan.steps):
                        self._finish(SUCCEEDED, True, "Done.")
                    else:
                        self._begin_step(now)
                    cmd = STOP
            elif status == "failed":
                self._finish(FAILED, False, text)
                cmd = STOP
            else:
                self.message = text
            needs_odom = step.action in _ODOMETRY_STEPS
            needs_det = step.action in _PERCEPTION_STEPS
            safe, why = self.guard.filter(cmd, now, last_detections=self._frame_time(),
                                          last_odometry=self.odom_received,
                                          needs_detections=needs_det, needs_odometry=needs_odom)
            if why and self.state == EXECUTING:
                self.message = why
            if self.state == EXECUTING and step.action in _DRIVING_STEPS and self._stalled(safe, now):
                if step.action in _DETOUR_STEPS and self.run.detours < self.cfg.control.detours:
                    self._start_detour()
                else:
                    self._finish(FAILED, False, f"I'm blocked: I could not {_step_text(step)} (no motion for "
                                                f"{self.cfg.timeouts.stall_s:g} s while driving), so I stopped.")
                safe = STOP
            self.last_cmd = safe
            return self._output(safe)

    def _output(self, cmd: Velocity, message: str | None = None) -> ExecutorOutput:
        steps = self.plan.steps if self.plan is not None else []
        idx = min(self.index, max(len(steps) - 1, 0))
        fb = Feedback(step_index=idx if steps else 0, step_count=len(steps),
                      step=_step_text(steps[idx]) if steps else "", message=message or self.message)
        done = self.state in (SUCCEEDED, FAILED, CANCELLED, ESTOPPED)
        return ExecutorOutput(cmd=cmd, state=self.state, feedback=fb, done=done, success=self.success and done,
                              reply=self.reply if done else "")

    # --- helpers -------------------------------------------------------------------------------
    def _frame_time(self) -> float | None:
        return self.frame.received if self.frame is not None else None

    def _odom_fresh(self, now: float) -> bool:
        return self.odom is not None and self.odom_received is not None and \
            now - self.odom_received <= self.cfg.watchdog.odometry_s

    def _begin_step(self, now: float) -> None:
        assert self.plan is not None
        step = self.plan.steps[self.index]
        run = _StepRun(started=now)
        t, lim = self.cfg.timeouts, self.caps.limits
        a = step.action
        if a == "search":
            run.deadline = now + t.search_s
        elif a == "approach":
            run.deadline = now + t.approach_s
        elif a == "report":
            run.deadline = now + 2 * t.report_s
        elif a == "turn":
            nominal = abs(math.radians(step.degrees)) / lim.max_angular_speed
            run.deadline = now + t.motion_base_s + t.motion_factor * nominal
        elif a == "move":
            nominal = abs(step.meters) / lim.max_linear_speed
            run.deadline = now + t.motion_base_s + t.motion_factor * nominal
        elif a == "wait":
            run.deadline = now + step.seconds + t.motion_base_s
        elif a == "come_back":
            dist = 0.0
            goal = self.home or self.origin
            if goal is not None and self.odom is not None:
                dist = math.hypot(goal.x - self.odom.x, goal.y - self.odom.y)
            nominal = dist / lim.max_linear_speed + 2 * math.pi / lim.max_angular_speed
            run.deadline = now + t.motion_base_s + t.motion_factor * nominal
        run.last_frame_seq = self.frame.seq if self.frame is not None else -1
        self.run = run
        self.message = f"starting {_step_text(step)}"

    def _timeout_text(self, step: Step, now: float) -> str:
        assert self.run is not None
        took = now - self.run.started
        target = step.target_phrase()
        if step.action == "search":
            return f"I did not find {_article(target)} {target} within {took:.0f} s."
        if step.action == "approach":
            return f"I could not reach the {target} within {took:.0f} s."
        return f"The step {_step_text(step)} timed out after {took:.0f} s."

    def _new_frames(self) -> _Frame | None:
        """The latest frame if it arrived since the step last looked, else None."""
        assert self.run is not None
        if self.frame is None or self.frame.seq == self.run.last_frame_seq:
            return None
        self.run.last_frame_seq = self.frame.seq
        return self.frame

    def _best(self, frame: _Frame, phrase: str) -> tuple[Detection, float | None] | None:
        best: tuple[Detection, float | None] | None = None
        for i, det in enumerate(frame.result.detections):
            if det.phrase != phrase or det.score < self.cfg.perception.min_score:
                continue
            if best is None or det.score > best[0].score:
                best = (det, _depth(frame, i))
        return best

    def _kept(self, frame: _Frame, phrase: str, last: Detection | None) -> tuple[Detection, float | None] | None:
        """A low-score box that overlaps the target's box of the previous frame most (two-threshold
        tracking, as in ByteTrack): a detector's confidence often drops as an object fills the view."""
        per = self.cfg.perception
        if last is None or self.run is None or self.run.lost_since is not None:
            return None
        floor = per.min_score * per.keep_score_ratio
        best, best_iou = None, per.keep_min_iou
        for i, det in enumerate(frame.result.detections):
            if det.phrase != phrase or det.score < floor:
                continue
            overlap = _iou(det, last)
            if overlap >= best_iou:
                best, best_iou = (det, _depth(frame, i)), overlap
        return best

    def _stalled(self, cmd: Velocity, now: float) -> bool:
        """Whether the robot has been told to drive for `stall_s` while odometry shows it not moving."""
        run, limit = self.run, self.cfg.timeouts.stall_s
        assert run is not None
        if limit <= 0 or self.odom is None or cmd.linear_x == 0.0:
            run.drive_since = None
            return False
        p = self.odom
        if run.drive_since is None or run.drive_pose is None or \
                math.hypot(p.x - run.drive_pose.x, p.y - run.drive_pose.y) >= STALL_DISTANCE_M:
            run.drive_since, run.drive_pose = now, p
            return False
        return now - run.drive_since > limit

    def _start_detour(self) -> None:
        """Blocked by something the step cannot see: a lane change around it (back off, turn away, drive,
        turn back, drive past), then the step resumes. Left first, then the other side."""
        run, ctl, lim = self.run, self.cfg.control, self.caps.limits
        assert run is not None
        side = 1.0 if run.detours % 2 == 0 else -1.0
        run.detour = [("move", -ctl.detour_back_m), ("turn", side * ctl.detour_turn_deg),
                      ("move", ctl.detour_side_m), ("turn", -side * ctl.detour_turn_deg)]
        if ctl.detour_pass_m > 0:
            run.detour.append(("move", ctl.detour_pass_m))
        run.detours += 1
        run.leg_pose = None
        run.drive_since = None
        if run.deadline is not None:  # the detour's own time does not eat the step's
            speed = max(min(ctl.approach_linear_speed, lim.max_linear_speed), 1e-3)
            run.deadline += (self.cfg.timeouts.motion_base_s
                             + (ctl.detour_back_m + ctl.detour_side_m + ctl.detour_pass_m) / speed
                             + 2 * math.radians(ctl.detour_turn_deg) / lim.max_angular_speed)
        self.message = f"blocked: going around it (detour {run.detours} of {ctl.detours})"

    def _detour_leg(self) -> tuple[Velocity, str, str]:
        """One tick of the current detour leg, measured on odometry; the step resumes when the legs are done."""
        run, ctl, lim = self.run, self.cfg.control, self.caps.limits
        assert run is not None and run.detour
        if self.odom is None:
            return STOP, "running", "going around: waiting for odometry"
        p = self.odom
        if run.leg_pose is None:
            run.leg_pose = p
        kind, amount = run.detour[0]
        if kind == "move":
            left = abs(amount) - math.hypot(p.x - run.leg_pose.x, p.y - run.leg_pose.y)
            if left > ctl.move_tolerance_m:
                top = min(ctl.approach_linear_speed, lim.max_linear_speed)
                speed = self._speed(ctl.move_gain * left, ctl.min_linear_speed, top)
                what = "backing off" if amount < 0 else "driving past it"
                return Velocity(math.copysign(speed, amount), 0.0), "running", f"blocked: {what}"
        else:
            error = math.radians(amount) - wrap_angle(p.yaw - run.leg_pose.yaw)
            if abs(error) > math.radians(ctl.turn_tolerance_deg):
                speed = self._speed(ctl.turn_gain * error, ctl.min_angular_speed, lim.max_angular_speed)
                return Velocity(0.0, speed), "running", "blocked: turning away"
        run.detour.pop(0)
        run.leg_pose = None
        if not run.detour:  # resume: look ahead first, as at the start of the step
            run.lost_since, run.consecutive, run.reacquire_from = None, 0, None
        return STOP, "running", "going around"

    def _frame_fresh(self, now: float) -> bool:
        return self.frame is not None and now - self.frame.received <= self.cfg.watchdog.detections_s

    def _rotation_progress(self) -> None:
        """Accumulate yaw change from odometry (handles turns beyond 180 degrees)."""
        assert self.run is not None
        if self.odom is None:
            return
        if self.run.prev_yaw is not None:
            self.run.turned += wrap_angle(self.odom.yaw - self.run.prev_yaw)
        self.run.prev_yaw = self.odom.yaw

    def _speed(self, value: float, lo: float, hi: float) -> float:
        mag = min(max(abs(value), lo), hi)
        return math.copysign(mag, value)

    # --- step handlers: (step, now) -> (velocity, 'running'|'done'|'failed', text) -------------
    def _step_search(self, step: Any, now: float) -> tuple[Velocity, str, str]:
        run, per, ctl = self.run, self.cfg.perception, self.cfg.control
        assert run is not None
        self._rotation_progress()
        frame = self._new_frames()
        if frame is not None:
            seen = self._best(frame, step.target)
            run.consecutive = run.consecutive + 1 if seen else 0
            if run.consecutive >= per.confirm_frames and seen is not None:
                res = frame.result
                # Done once it is well inside the view, not at the edge where it was first glimpsed.
                if abs(self.camera.bearing(seen[0], res.image_width, res.image_height)) <= ctl.align_before_drive_rad:
                    return STOP, "done", f"found the {step.target}"
        if abs(run.turned) > 2 * math.pi * 1.1:
            return STOP, "failed", (f"I turned all the way around and did not see {_article(step.target)} "
                                    f"{step.target}.")
        latest = self._best(self.frame, step.target) if self.frame is not None and run.consecutive > 0 else None
        if latest is not None:
            det, _ = latest
            res = self.frame.result
            bearing = self.camera.bearing(det, res.image_width, res.image_height)
            return Velocity(0.0, ctl.yaw_gain * bearing), "running", f"seeing the {step.target}, confirming"
        return Velocity(0.0, ctl.search_angular_speed), "running", f"looking for the {step.target}"

    def _step_approach(self, step: Any, now: float) -> tuple[Velocity, str, str]:
        run, ctl, per = self.run, self.cfg.control, self.cfg.perception
        assert run is not None
        self._rotation_progress()
        seen = None
        if self._frame_fresh(now):
            seen = self._best(self.frame, step.target) or self._kept(self.frame, step.target, run.last_box)
        run.last_box = seen[0] if seen is not None else run.last_box
        if seen is None:
            run.lost_since = run.lost_since if run.lost_since is not None else now
            run.consecutive = 0
            if now - run.lost_since <= self.cfg.timeouts.lost_target_s:
                return STOP, "running", f"the {step.target} is out of view"
            return self._reacquire(step)
        run.lost_since = None
        run.reacquire_from = None
        det, depth = seen
        res = self.frame.result
        bearing = self.camera.bearing(det, res.image_width, res.image_height)
        if depth is not None:
            distance = depth
        else:
            w, h = res.image_width, res.image_height
            distance = self.camera.distance_from_floor(det, w, h)
            if distance is None:
                distance = self.camera.distance_from_height(det, w, h, object_height_prior(step.target, per))
                nearest = self.camera.nearest_floor_m(w, h)
                if nearest is not None and det.y_max >= h - 1.0:  # its foot is below the image: closer than that
                    distance = min(distance, nearest)
        error = distance - step.stop_distance_m
        frame = self._new_frames()
        if error <= ctl.distance_tolerance_m:
            if abs(bearing) > math.radians(ctl.arrive_facing_deg):  # arrived means facing it, too
                run.consecutive = 0
                speed = self._speed(ctl.yaw_gain * bearing, ctl.min_angular_speed, self.caps.limits.max_angular_speed)
                return Velocity(0.0, speed), "running", f"at the {step.target}, turning to face it"
            if frame is not None:
                run.consecutive += 1
            if run.consecutive >= 2:
                return STOP, "done", f"reached the {step.target} ({distance:.2f} m away)"
            return Velocity(0.0, ctl.yaw_gain * bearing), "running", f"at the {step.target}, confirming"
        if frame is not None:
            run.consecutive = 0
        angular = ctl.yaw_gain * bearing
        if abs(bearing) > ctl.align_before_drive_rad:
            return Velocity(0.0, angular), "running", f"turning towards the {step.target}"
        linear = self._speed(ctl.distance_gain * error, ctl.min_linear_speed, ctl.approach_linear_speed)
        linear *= max(math.cos(bearing), 0.0)
        return Velocity(linear, angular), "running", f"approaching the {step.target}: {distance:.2f} m"

    def _reacquire(self, step: Any) -> tuple[Velocity, str, str]:
        """Turn in place to find a target lost during approach; fail honestly after `reacquire_turns`."""
        run, ctl = self.run, self.cfg.control
        assert run is not None
        if run.reacquire_from is None:
            run.reacquire_from = run.turned
        if self.odom is None or abs(run.turned - run.reacquire_from) >= 2 * math.pi * ctl.reacquire_turns:
            again = " and did not find it again" if ctl.reacquire_turns > 0 and self.odom is not None else ""
            return STOP, "failed", f"I lost sight of the {step.target}{again}."
        return Velocity(0.0, ctl.search_angular_speed), "running", f"lost the {step.target}, looking for it again"

    def _step_turn(self, step: Any, now: float) -> tuple[Velocity, str, str]:
        run, ctl = self.run, self.cfg.control
        assert run is not None
        if self.odom is None:
            if now - run.started > self.cfg.watchdog.odometry_s:
                return STOP, "failed", f"I can't turn {step.degrees} degrees: no odometry to measure it."
            return STOP, "running", "waiting for odometry"
        self._rotation_progress()
        error = math.radians(step.degrees) - run.turned
        if abs(error) <= math.radians(ctl.turn_tolerance_deg):
            return STOP, "done", f"turned {step.degrees} degrees"
        angular = self._speed(ctl.turn_gain * error, ctl.min_angular_speed, self.caps.limits.max_angular_speed)
        return Velocity(0.0, angular), "running", f"turning: {math.degrees(error):.0f} degrees to go"

    def _step_move(self, step: Any, now: float) -> tuple[Velocity, str, str]:
        run, ctl = self.run, self.cfg.control
        assert run is not None
        if self.odom is None:
            if now - run.started > self.cfg.watchdog.odometry_s:
                return STOP, "failed", f"I can't move {step.meters:g} m: no odometry to measure it."
            return STOP, "running", "waiting for odometry"
        if run.start_pose is None:
            run.start_pose = self.odom
        p0, p = run.start_pose, self.odom
        progress = (p.x - p0.x) * math.cos(p0.yaw) + (p.y - p0.y) * math.sin(p0.yaw)
        error = step.meters - progress
        if abs(error) <= ctl.move_tolerance_m:
            return STOP, "done", f"moved {step.meters:g} m"
        linear = self._speed(ctl.move_gain * error, ctl.min_linear_speed, self.caps.limits.max_linear_speed)
        angular = ctl.turn_gain * wrap_angle(p0.yaw - p.yaw)
        return Velocity(linear, angular), "running", f"moving: {error:.2f} m to go"

    def _step_wait(self, step: Any, now: float) -> tuple[Velocity, str, str]:
        assert self.run is not None
        if now - self.run.started >= step.seconds:
            return STOP, "done", f"waited {step.seconds:g} s"
        return STOP, "running", f"waiting {step.seconds - (now - self.run.started):.1f} s"

    def _step_report(self, step: Any, now: float) -> tuple[Velocity, str, str]:
        run, per = self.run, self.cfg.perception
        assert run is not None
        frame = self._new_frames()
        if frame is not None:
            run.frames.append(self._best(frame, step.target) is not None)
        n = len(run.frames)
        if n >= per.report_frames or (n > 0 and now - run.started > self.cfg.timeouts.report_s):
            seen = sum(run.frames) * 2 >= n
            answer = (f"Yes, I can see the {step.target}." if seen
                      else f"No, I don't see {_article(step.target)} {step.target}.")
            self.answers.append(answer)
            self.report_answers.append(seen)
            return STOP, "done", answer
        if n == 0 and now - run.started > self.cfg.timeouts.report_s:
            return STOP, "failed", f"I can't tell whether I see the {step.target}: no camera images arrived."
        return STOP, "running", f"looking for the {step.target}"

    def _step_come_back(self, step: Any, now: float) -> tuple[Velocity, str, str]:
        run, ctl, lim = self.run, self.cfg.control, self.caps.limits
        assert run is not None
        o = self.home or self.origin
        if o is None:
            return STOP, "failed", "I can't come back: there was no odometry when the conversation started."
        if self.odom is None:
            return STOP, "running", "waiting for odometry"
        p = self.odom
        dx, dy = o.x - p.x, o.y - p.y
        dist = math.hypot(dx, dy)
        if dist <= ctl.come_back_tolerance_m:
            yaw_err = wrap_angle(o.yaw - p.yaw)
            if abs(yaw_err) <= math.radians(ctl.turn_tolerance_deg) * 2:
                return STOP, "done", "came back"
            ang = self._speed(ctl.turn_gain * yaw_err, ctl.min_angular_speed, lim.max_angular_speed)
            return Velocity(0.0, ang), "running", "back at the start, turning to the original heading"
        heading_err = wrap_angle(math.atan2(dy, dx) - p.yaw)
        angular = ctl.turn_gain * heading_err
        if abs(heading_err) > ctl.align_before_drive_rad:
            ang = self._speed(angular, ctl.min_angular_speed, lim.max_angular_speed)
            return Velocity(0.0, ang), "running", "turning towards the start"
        linear = self._speed(ctl.move_gain * dist, ctl.min_linear_speed, lim.max_linear_speed)
        return Velocity(linear, angular), "running", f"coming back: {dist:.2f} m to go"

    def _step_stop(self, step: Any, now: float) -> tuple[Velocity, str, str]:
        return STOP, "done", "stopped"


def _depth(frame: _Frame, i: int) -> float | None:
    """The depth of detection `i` when the frame has a valid one."""
    if frame.depths is None or i >= len(frame.depths):
        return None
    d = frame.depths[i]
    return d if d is not None and math.isfinite(d) and d > 0 else None


def _iou(a: Detection, b: Detection) -> float:
    w = min(a.x_max, b.x_max) - max(a.x_min, b.x_min)
    h = min(a.y_max, b.y_max) - max(a.y_min, b.y_min)
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a.x_max - a.x_min) * (a.y_max - a.y_min) + (b.x_max - b.x_min) * (b.y_max - b.y_min) - inter
    return inter / union if union > 0 else 0.0


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
