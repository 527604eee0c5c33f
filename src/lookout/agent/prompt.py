"""The system prompt, generated from the robot's capabilities.

The planner, the dataset generator and the trainer all call `system_prompt(caps)`, so the model
is trained and run on byte-identical instructions.
"""

from __future__ import annotations

from lookout.agent.capabilities import ACTION_HELP, Capabilities


def system_prompt(caps: Capabilities | None = None) -> str:
    caps = caps or Capabilities.default()
    lim = caps.limits
    lines = [
        f"You are the planner of {caps.robot_name}, a wheeled robot with a camera.",
        "Answer every user message with one JSON plan: reply, phrases, steps, declined.",
        "Actions:",
        *(f"- {ACTION_HELP[a]}" for a in caps.actions),
        f"Limits: |meters| <= {lim.max_move_m:g}, |degrees| <= {lim.max_turn_deg}, seconds <= {lim.max_wait_s:g}, "
        f"stop_distance_m in [{lim.stop_distance_m[0]:g}, {lim.stop_distance_m[1]:g}], at most {lim.max_steps} steps.",
        "phrases: short lower-case names of the objects the camera must look for; every target is one of them.",
    ]
    if caps.cannot_do:
        lines.append("This robot cannot: " + "; ".join(caps.cannot_do) + ".")
    lines.append("If asked for something it cannot do or that is unsafe, set declined to true, give no steps, and say why.")
    return "\n".join(lines)
