"""One-process bringup: the nodes of a launch file composed in one process (executors: `lookout_ros.spinning`).

`ros2 launch` is not installable everywhere (it is not on PyPI), so `lookout run stack|sim|detector
[arg:=value ...]` reads the same `launch/*.launch.yaml` with `lookout.launch_file` and instantiates
each node class with the `--ros-args` a launch system would pass (`cli_args=spec.ros_args()`): same
executables, same parameter files, same remappings, talking over DDS as separate processes would.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from lookout.launch_file import LaunchDescription, NodeSpec, load_launch_file
from lookout.paths import repo_root

# console_script name -> "module:Class" (every executable a launch file may name)
NODE_CLASSES: dict[str, str] = {
    "detector_node": "lookout_ros.detector_node:DetectorNode",
    "sim_node": "lookout_ros.sim_node:SimNode",
    "agent_node": "lookout_ros.agent_node:AgentNode",
}
STACKS = ("stack", "sim", "detector")


class BringupError(ValueError):
    """The launch file names something this bringup cannot start."""


def launch_path(stack: str) -> Path:
    if stack not in STACKS:
        raise BringupError(f"unknown stack {stack!r}; choose one of {', '.join(STACKS)}")
    return repo_root() / "launch" / f"{stack}.launch.yaml"


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`name:=value` launch arguments, as `ros2 launch` takes them."""
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise BringupError(f"launch arguments look like name:=value, got {item!r}")
        out[name] = value
    return out


def node_class(spec: NodeSpec) -> type:
    if spec.package != "lookout_ros" or spec.executable not in NODE_CLASSES:
        raise BringupError(f"{spec.package}/{spec.executable} is not a node this bringup knows "
                           f"(known: {sorted(NODE_CLASSES)})")
    module, _, cls = NODE_CLASSES[spec.executable].partition(":")
    return getattr(importlib.import_module(module), cls)


# Nodes in one process share one GIL. At Python's default 5 ms switch interval the planner, whose decoding makes
# many short torch calls, waits behind the sim and detector threads at each of them: on 2 cores a 29-token plan
# took 30-47 s instead of 2 s. `ros2 launch` runs each node in its own process and never meets this.
GIL_SWITCH_INTERVAL_S = 2e-4


def compose(desc: LaunchDescription, context: Any, extra_ros_args: dict[str, list[str]] | None = None) -> list[Any]:
    """Instantiate every node of `desc` in `context` (extra `--ros-args` items per executable, e.g. for tests)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
    nodes = []
    try:
        for spec in desc.nodes:
            args = spec.ros_args() + (extra_ros_args or {}).get(spec.executable, [])
            nodes.append(node_class(spec)(cli_args=args, context=context))
    except Exception:
        for node in nodes:
            node.destroy_node()
        raise
    return nodes


def run(stack: str, overrides: list[str] | None = None) -> None:
    """Start the stack and spin until Ctrl-C."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from lookout_ros.spinning import NodeSpinner

    desc = load_launch_file(launch_path(stack), parse_overrides(overrides or []))
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes: list[Any] = []
    spinner: NodeSpinner | None = None
    try:
        nodes = compose(desc, context)
        for node in nodes:
            node.get_logger().info(f"started from {desc.path.name}")
        spinner = NodeSpinner(nodes, context)
        spinner.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if spinner is not None:
            spinner.shutdown()
        for node in nodes:
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown(context=context)
