"""The command lifecycle around the planner and the executor, without ROS.

A command arrives (topic or action) -> stop words stop at once without the model; anything else
cancels the running plan (zero velocity first) and is planned on a worker thread (the model is
loaded there too, so callers never block on it) -> the detector is told the plan's phrases and
must confirm before anything moves -> the executor runs the plan, ticked by the caller's control
loop. A newer command, a stop or the e-stop makes older work moot: its result is dropped, never
executed. The ROS node only wires topics, services and the action to this class.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lookout.agent.capabilities import Capabilities
from lookout.agent.commands import STOP_REPLY, is_stop_command, sanitize_command, stop_plan
from lookout.agent.config import AgentConfig
from lookout.agent.dialogue import Dialogue
from lookout.agent.executor import EXECUTING, IDLE, Executor, ExecutorOutput
from lookout.agent.motion import STOP, Odometry, Velocity
from lookout.agent.plan import PlanBase
from lookout.perception.types import DetectionResult

log = logging.getLogger(__name__)

PLANNING, WAITING_FOR_DETECTOR = "planning", "waiting_for_detector"


@dataclass(frozen=True)
class CommandOutcome:
    """How one command ended: success only on perception/odometry evidence."""

    command_id: int
    command: str
    success: bool
    reply: str
    plan_json: str = ""
    state: str = ""


@dataclass(frozen=True)
class AgentStatus:
    state: str
    command: str = ""
    step_index: int = 0
    step_count: int = 0
    step: str = ""
    message: str = ""


@dataclass(frozen=True)
class AgentTick:
    cmd: Velocity
    status: AgentStatus
    executor: ExecutorOutput | None = None


@dataclass
class _Command:
    cid: int
    text: str
    plan: PlanBase | None = None
    result: Any = None
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


SetClasses = Callable[[list[str]], tuple[bool, str]]


class Agent:
    """Commands in; plans, velocities, status and outcomes out. Thread-safe."""

    def __init__(self, cfg: AgentConfig, caps: Capabilities, planner_factory: Callable[[], Any],
                 set_classes: SetClasses, clock: Callable[[], float], *,
                 on_plan: Callable[[int, str, PlanBase, Any], None] | None = None,
                 on_outcome: Callable[[CommandOutcome], None] | None = None,
                 on_phase: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.caps = caps
        self.executor = Executor(cfg, caps)
        self.dialogue = Dialogue(max_turns=max(1, cfg.model.history_turns))
        self._planner_factory = planner_factory
        self._set_classes = set_classes
        self._clock = clock
        self._on_plan = on_plan
        self._on_outcome = on_outcome
        self._on_phase = on_phase  # planning / waiting_for_detector / idle changes (short: status may miss them)
        self._lock = threading.RLock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookout-planner")
        self.planner: Any = None
        self.model_error = ""
        self._model_ready = threading.Event()
        self._next_id = 0
        self._current: _Command | None = None
        self._phase = IDLE  # planning / waiting_for_detector while those run, else the executor's state
        self._executing: _Command | None = None  # the command whose plan the executor runs
        self._outcomes: OrderedDict[int, CommandOutcome] = OrderedDict()
        self._outcome_cv = threading.Condition(self._lock)

    def _set_phase(self, phase: str) -> None:
        if phase != self._phase:
            self._phase = phase
            if self._on_phase is not None:
                self._on_phase(phase)

    # --- model -------------------------------------------------------------------------------
    def load_model_async(self) -> None:
        """Load the planner on the worker thread (commands queue behind it)."""
        self._worker.submit(self._ensure_planner)

    def _ensure_planner(self) -> bool:
        if self.planner is not None:
            return True
        if self.model_error:
            return False
        try:
            self.planner = self._planner_factory()
        except Exception as exc:  # noqa: BLE001 - reported to the user, the robot stays still
            log.exception("planner failed to load")
            self.model_error = f"{type(exc).__name__}: {exc}"
            return False
        finally:
            self._model_ready.set()
        return True

    def wait_model(self, timeout: float | None = None) -> bool:
        return self._model_ready.wait(timeout) and self.planner is not None

    # --- commands ------------------------------------------------------------------------------
    def submit(self, text: str) -> int:
        """Take a command (untrusted text); returns its id. Never blocks on the model."""
        clean = sanitize_command(text, self.cfg.model.max_command_chars)
        now = self._clock()
        with self._lock:
            self._next_id += 1
            cmd = _Command(self._next_id, clean.text)
            self._supersede(now, "Cancelled by a new command.")
            self._current = cmd
            if is_stop_command(clean.text):
                plan = stop_plan(self.caps)
                self.dialogue.add(clean.text, plan.to_json())
                if self._on_plan:
                    self._on_plan(cmd.cid, clean.text, plan, None)
                self._set_phase(IDLE)
                self._outcome(cmd, True, STOP_REPLY, plan.to_json(), "succeeded")
                return cmd.cid
            if not clean.text:
                self._set_phase(IDLE)
                self._outcome(cmd, False, "I did not get a command.", "", "failed")
                return cmd.cid
            self._set_phase(PLANNING)
        self._worker.submit(self._plan_job, cmd)
        return cmd.cid

    def cancel(self, reason: str = "Cancelled.") -> None:
        """Drop whatever runs or is being planned (zero velocity at once)."""
        with self._lock:
            self._supersede(self._clock(), reason)
            self._current = None
            self._set_phase(IDLE)

    def reset_conversation(self) -> None:
        """Start over: cancel what runs, forget the dialogue, and let the next pose be come_back's home."""
        with self._lock:
            self._supersede(self._clock(), "Cancelled: a new conversation starts.")
            self._current = None
            self._set_phase(IDLE)
            self.dialogue.clear()
            self.executor.reset_home()

    def _supersede(self, now: float, reason: str) -> None:
        """End the current command, if any (called with the lock held)."""
        self.executor.cancel(now, reason)
        old = self._current
        if old is not None and not old.done:
            plan_json = old.plan.to_json() if old.plan is not None else ""
            self._outcome(old, False, reason, plan_json, "cancelled")
        self._executing = None

    def _is_current(self, cmd: _Command) -> bool:
        return self._current is cmd and not cmd.done

    def _plan_job(self, cmd: _Command) -> None:
        with self._lock:
            if not self._is_current(cmd):
                return
        if not self._ensure_planner():
            with self._lock:
                if self._is_current(cmd):
                    self._set_phase(IDLE)
                    self._outcome(cmd, False, f"My language model is not available ({self.model_error}).", "", "failed")
            return
        history = self.dialogue.last(self.cfg.model.history_turns)
        try:
            result = self.planner.plan(cmd.text, history, should_abort=lambda: not self._is_current(cmd))
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: report it, keep the node alive
            log.exception("planning failed")
            with self._lock:
                if self._is_current(cmd):
                    self._set_phase(IDLE)
                    self._outcome(cmd, False, f"Planning failed ({type(exc).__name__}), so I am not moving.", "",
                                  "failed")
            return
        with self._lock:
            if not self._is_current(cmd):
                return
            if result.plan is None:
                self._set_phase(IDLE)
                self._outcome(cmd, False, result.reply, "", "failed")
                return
            plan = result.plan
            cmd.plan, cmd.result = plan, result
            self.dialogue.add(cmd.text, plan.to_json())
            if self._on_plan:
                self._on_plan(cmd.cid, cmd.text, plan, result)
            if plan.steps and plan.phrases:
                self._set_phase(WAITING_FOR_DETECTOR)
        if plan.steps and plan.phrases:
            try:
                ok, message = self._set_classes(list(plan.phrases))
            except Exception as exc:  # noqa: BLE001 - a broken link to the detector means no motion
                ok, message = False, f"{type(exc).__name__}: {exc}"
            with self._lock:
                if not self._is_current(cmd):
                    return
                if not ok:
                    self._set_phase(IDLE)
                    self._outcome(cmd, False, f"I could not tell the detector to look for {', '.join(plan.phrases)} "
                                  f"({message}), so I am not moving.", plan.to_json(), "failed")
                    return
        with self._lock:
            if not self._is_current(cmd):
                return
            self._set_phase(IDLE)
            self._executing = cmd
            out = self.executor.start(plan, self._clock())
            self._maybe_finish(out)

    # --- inputs and the control loop ------------------------------------------------------------------
    def observe_detections(self, result: DetectionResult, now: float) -> None:
        self.executor.observe_detections(result, now)

    def observe_odometry(self, odom: Odometry, now: float) -> None:
        self.executor.observe_odometry(odom, now)

    def set_estop(self, engaged: bool) -> Velocity:
        """E-stop: zero velocity now and drop the command in progress (planning included)."""
        with self._lock:
            now = self._clock()
            if engaged:
                cur = self._current
                out = self.executor.set_estop(True, now)
                self._maybe_finish(out)
                if cur is not None and not cur.done:
                    self._outcome(cur, False, "Emergency stop: I stopped and dropped the command.", "", "estopped")
                self._set_phase(IDLE)
            else:
                self.executor.set_estop(False, now)
            return STOP

    def tick(self, now: float) -> AgentTick:
        # One lock around both: an output computed before a new plan started (its state still the old
        # plan's 'succeeded') must not finish the new command, which would end it without moving.
        with self._lock:
            out = self.executor.tick(now)
            self._maybe_finish(out)
            return AgentTick(cmd=out.cmd, status=self._status(out), executor=out)

    def status(self) -> AgentStatus:
        with self._lock:
            return self._status(None)

    def _status(self, out: ExecutorOutput | None) -> AgentStatus:
        cur = self._current
        text = cur.text if cur is not None else ""
        if self._phase in (PLANNING, WAITING_FOR_DETECTOR):
            msg = "loading the language model" if self.planner is None and self._phase == PLANNING else ""
            if self._phase == WAITING_FOR_DETECTOR:
                msg = "waiting for the detector to switch vocabulary"
            return AgentStatus(state=self._phase, command=text, message=msg)
        ex = self.executor
        fb = out.feedback if out is not None else ex._output(ex.last_cmd).feedback
        return AgentStatus(state=ex.state, command=text, step_index=fb.step_index, step_count=fb.step_count,
                           step=fb.step, message=fb.message)

    def _maybe_finish(self, out: ExecutorOutput) -> None:
        cmd = self._executing
        if cmd is None or not out.done or cmd.done or out.state == EXECUTING:
            return
        self._executing = None
        plan_json = cmd.plan.to_json() if cmd.plan is not None else ""
        self._outcome(cmd, out.success, out.reply, plan_json, out.state)

    # --- outcomes ------------------------------------------------------------------------------
    def _outcome(self, cmd: _Command, success: bool, reply: str, plan_json: str, state: str) -> None:
        cmd.done = True
        outcome = CommandOutcome(cmd.cid, cmd.text, success, reply, plan_json, state)
        self._outcomes[cmd.cid] = outcome
        while len(self._outcomes) > 256:
            self._outcomes.popitem(last=False)
        self._outcome_cv.notify_all()
        if self._on_outcome:
            self._on_outcome(outcome)

    def wait_outcome(self, cid: int, timeout: float | None = None) -> CommandOutcome | None:
        with self._outcome_cv:
            self._outcome_cv.wait_for(lambda: cid in self._outcomes, timeout=timeout)
            return self._outcomes.get(cid)

    def outcome(self, cid: int) -> CommandOutcome | None:
        with self._lock:
            return self._outcomes.get(cid)

    def shutdown(self) -> None:
        self.cancel("Shutting down.")
        self._worker.shutdown(wait=False, cancel_futures=True)
