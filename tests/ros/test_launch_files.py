"""The launch files name only real things: executables, parameters and topic names the nodes have.

`ros2 launch` and `lookout run` read the same files; these checks run everywhere (they instantiate
the real node classes with the launch file's `--ros-args`). Where the `launch` package is importable
the last test also starts a launch file with it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lookout.launch_file import load_launch_file
from lookout.paths import repo_root

rclpy = pytest.importorskip("rclpy", reason="ROS tests run inside the sourced workspace (make test)")

from lookout_ros.bringup import NODE_CLASSES, STACKS, launch_path, node_class  # noqa: E402

LAUNCH_FILES = sorted((repo_root() / "launch").glob("*.launch.yaml"))
NO_AUTOSTART = {"detector_node": ["-p", "autostart:=false"]}  # configure loads the model: not needed here


def _console_scripts() -> set[str]:
    text = (repo_root() / "ros2_ws/src/lookout_ros/setup.py").read_text()
    return set(re.findall(r"[\"']\s*(\w+)\s*=\s*lookout_ros\.\w+:main", text))


def _leaves(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        out += _leaves(value, name + ".") if isinstance(value, dict) else [name]
    return out


def _plain_yaml_keys_declared(node, data: dict, prefix: str = "") -> list[str]:
    """Keys of a plain config YAML (read through a node's `config_file`) that the node lacks as parameters."""
    missing = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if node.has_parameter(name):
            continue
        if isinstance(value, dict):
            missing += _plain_yaml_keys_declared(node, value, name + ".")
        else:
            missing.append(name)
    return missing


def test_every_stack_has_a_launch_file_and_they_parse():
    assert {p.name for p in LAUNCH_FILES} >= {f"{s}.launch.yaml" for s in STACKS}
    for stack in STACKS:
        desc = load_launch_file(launch_path(stack))
        assert desc.nodes, stack
    stack = load_launch_file(launch_path("stack"), {"image": "/robot/camera/color/image_raw"})
    det = next(n for n in stack.nodes if n.executable == "detector_node")
    assert ("image", "/robot/camera/color/image_raw") in det.remaps  # the camera topic is remappable


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_executables_are_console_scripts_and_known_to_the_bringup(path: Path):
    scripts = _console_scripts()
    for spec in load_launch_file(path).nodes:
        assert spec.package == "lookout_ros"
        assert spec.executable in scripts, f"{spec.executable} is not a console_script of lookout_ros"
        assert spec.executable in NODE_CLASSES
        assert isinstance(node_class(spec), type)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_parameter_given_is_declared_by_its_node(path: Path, ros_context):
    for spec in load_launch_file(path).nodes:
        for f in spec.param_files:
            assert f.is_file(), f"{path.name}: parameter file {f} does not exist"
        node = node_class(spec)(cli_args=spec.ros_args() + NO_AUTOSTART.get(spec.executable, []),
                                context=ros_context)
        try:
            for f in spec.param_files:
                data = yaml.safe_load(f.read_text())
                assert set(data) == {"/**"} and "ros__parameters" in data["/**"], f"{f} is not a ROS parameter file"
                undeclared = [n for n in _leaves(data["/**"]["ros__parameters"]) if not node.has_parameter(n)]
                assert not undeclared, f"{spec.executable} does not declare {undeclared} (from {f.name})"
            for name, value in spec.params.items():
                assert node.has_parameter(name), f"{spec.executable} does not declare {name}"
                assert node.get_parameter(name).value == value
                if name == "config_file":
                    missing = _plain_yaml_keys_declared(node, yaml.safe_load(Path(value).read_text()))
                    assert not missing, f"{spec.executable} does not declare {missing} (from {value})"
        finally:
            _close(node)


def _close(node) -> None:
    if hasattr(node, "agent"):  # its planner loads on a thread: importing transformers there while a later
        node.agent.wait_model(60)  # test imports it raised "partially initialized module" errors
    if hasattr(node, "shutdown"):
        node.shutdown()
    node.destroy_node()


def _names_used(node) -> set[str]:
    subscriptions = [*node.subscriptions, *getattr(node, "input_subscriptions", [])]  # detector: a hidden input node
    names = {p.topic_name for p in node.publishers} | {s.topic_name for s in subscriptions}
    names |= {s.srv_name for s in node.services} | {c.srv_name for c in node.clients}
    return names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_remap_source_is_a_name_the_node_uses(path: Path, ros_context):
    """Started without the remaps (detector fully activated with its model), each source name must exist."""
    for spec in load_launch_file(path).nodes:
        if not spec.remaps:
            continue
        node = node_class(spec)(cli_args=replace(spec, remaps=[]).ros_args(), context=ros_context)
        try:
            used = _names_used(node)
            for src, _ in spec.remaps:
                assert node.resolve_topic_name(src) in used, (
                    f"{path.name}: {spec.executable} has no topic or service {src!r}; it uses {sorted(used)}")
        finally:
            _close(node)


def test_launch_files_start_with_ros2_launch(ros_context, monkeypatch):
    """Only where the `launch` package exists (a full ROS install): the detector file starts its node."""
    # `launch_ros` and `launch_yaml` (not installable from PyPI) pull in the real `launch`; a bare
    # `import launch` would find the repository's launch/ folder as a namespace package.
    pytest.importorskip("launch_ros", reason="the ROS launch packages are not installed here")
    pytest.importorskip("launch_yaml", reason="the ROS launch packages are not installed here")
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    import launch

    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_context.get_domain_id()))
    service = launch.LaunchService()
    service.include_launch_description(launch.LaunchDescription([
        launch.actions.IncludeLaunchDescription(AnyLaunchDescriptionSource(str(launch_path("detector"))))]))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    probe = rclpy.create_node("launch_probe", context=ros_context)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "detector" not in probe.get_node_names():
            time.sleep(0.2)
        assert "detector" in probe.get_node_names()
    finally:
        probe.destroy_node()
        service.shutdown()
        thread.join(timeout=30)


def test_sim_launch_gives_the_agent_the_simulated_camera():
    """The ROS sim stack and the in-process harness must see the same camera model."""
    from lookout.agent.config import AgentConfig
    from lookout.sim.config import SimConfig
    from lookout.sim.harness import agent_config_for_sim

    desc = load_launch_file(launch_path("sim"), {})
    agent = next(n for n in desc.nodes if n.executable == "agent_node")
    given = {k: float(v) for k, v in agent.params.items() if k.startswith("camera.")}
    want = agent_config_for_sim(AgentConfig.default(), SimConfig.default()).camera
    assert set(given) == {f"camera.{k}" for k in ("hfov_deg", "vfov_deg", "height_m", "pitch_deg")}
    for key, value in given.items():
        assert value == pytest.approx(getattr(want, key.split(".")[1]), abs=0.01), key
