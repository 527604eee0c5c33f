"""Safety, in one place: velocity clamping, the e-stop latch and the watchdog on stale inputs.

Every velocity the executor produces goes through `SafetyGuard.filter`, and the node passes what it
publishes through `clamp` once more. Nothing here depends on the plan: it holds whatever the model
said and whatever the executor computed.
"""

from __future__ import annotations

import math
import threading

from lookout.agent.capabilities import Limits
from lookout.agent.config import WatchdogConfig
from lookout.agent.motion import STOP, Velocity


def _finite(v: float) -> float:
    return v if math.isfinite(v) else 0.0


class SafetyGuard:
    """Clamp to the robot's limits, zero everything while the e-stop is engaged or inputs are stale."""

    def __init__(self, limits: Limits, watchdog: WatchdogConfig) -> None:
        self.max_linear = float(limits.max_linear_speed)
        self.max_angular = float(limits.max_angular_speed)
        self.watchdog = watchdog
        self._estop = False
        self._lock = threading.Lock()

    # --- e-stop ----------------------------------------------------------------------------
    @property
    def estopped(self) -> bool:
        return self._estop

    def set_estop(self, engaged: bool) -> bool:
        """Engage or release; returns True if the state changed."""
        with self._lock:
            changed = self._estop != bool(engaged)
            self._estop = bool(engaged)
            return changed

    # --- limits ----------------------------------------------------------------------------
    def clamp(self, cmd: Velocity) -> Velocity:
        lin = min(max(_finite(cmd.linear_x), -self.max_linear), self.max_linear)
        ang = min(max(_finite(cmd.angular_z), -self.max_angular), self.max_angular)
        return Velocity(lin, ang)

    # --- watchdog --------------------------------------------------------------------------
    def stale_reason(self, now: float, *, last_detections: float | None, last_odometry: float | None,
                     needs_detections: bool, needs_odometry: bool) -> str:
        """Why motion must stop now ('' if it may go on)."""
        wd = self.watchdog
        if needs_detections or wd.require_detections_for_motion:
            if last_detections is None:
                return "waiting for camera detections"
            if now - last_detections > wd.detections_s:
                return f"detections are stale ({now - last_detections:.1f} s old)"
        if needs_odometry:
            if last_odometry is None:
                return "waiting for odometry"
            if now - last_odometry > wd.odometry_s:
                return f"odometry is stale ({now - last_odometry:.1f} s old)"
        return ""

    def filter(self, cmd: Velocity, now: float, *, last_detections: float | None, last_odometry: float | None,
               needs_detections: bool, needs_odometry: bool) -> tuple[Velocity, str]:
        """The command allowed now and, if it was overridden, why."""
        if self._estop:
            return STOP, "emergency stop engaged"
        cmd = self.clamp(cmd)
        if cmd.is_zero:
            return cmd, ""
        reason = self.stale_reason(now, last_detections=last_detections, last_odometry=last_odometry,
                                   needs_detections=needs_detections, needs_odometry=needs_odometry)
        return (STOP, reason) if reason else (cmd, "")
