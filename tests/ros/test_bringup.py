"""`lookout run`: a launch file's real nodes composed in one process, talking over Fast DDS."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from lookout.launch_file import load_launch_file

rclpy = pytest.importorskip("rclpy", reason="ROS tests run inside the sourced workspace (make test)")

from lookout_ros.bringup import (  # noqa: E402
    GIL_SWITCH_INTERVAL_S,
    BringupError,
    compose,
    launch_path,
    parse_overrides,
)


def test_overrides_and_unknown_stacks_get_clear_errors():
    assert parse_overrides(["image:=/cam/image_raw", "seed:=3"]) == {"image": "/cam/image_raw", "seed": "3"}
    with pytest.raises(BringupError, match="name:=value"):
        parse_overrides(["seed=3"])
    with pytest.raises(BringupError, match="unknown stack"):
        launch_path("everything")


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def test_sim_stack_runs_in_one_process_camera_to_detections_and_commands_to_replies(ros_context):
    from lookout_interfaces.msg import AgentStatus, DetectionArray
    from nav_msgs.msg import Odometry
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from std_msgs.msg import String

    desc = load_launch_file(launch_path("sim"), {"seed": "111"})
    assert [n.executable for n in desc.nodes] == ["sim_node", "detector_node", "agent_node"]
    nodes = compose(desc, ros_context)
    # one process, one GIL: the planner must not wait 5 ms behind the other nodes at every torch call
    assert sys.getswitchinterval() <= GIL_SWITCH_INTERVAL_S
    probe = rclpy.create_node("bringup_probe", context=ros_context)
    got: dict[str, list] = {"detections": [], "odom": [], "reply": [], "status": []}
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    probe.create_subscription(DetectionArray, "detections", got["detections"].append, 10)
    probe.create_subscription(Odometry, "odom", got["odom"].append, qos_profile_sensor_data)
    probe.create_subscription(String, "reply", got["reply"].append, reliable)
    probe.create_subscription(AgentStatus, "status", got["status"].append, reliable)
    command = probe.create_publisher(String, "command", reliable)
    ex = MultiThreadedExecutor(context=ros_context)
    for n in [*nodes, probe]:
        ex.add_node(n)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        assert _wait(lambda: got["detections"] and got["odom"] and got["status"], 60), \
            {k: len(v) for k, v in got.items()}  # sim camera -> detector -> detections; agent alive
        det = got["detections"][-1]
        assert (det.image_width, det.image_height) == (320, 240)
        assert _wait(lambda: command.get_subscription_count() > 0, 10)
        command.publish(String(data="stop"))
        assert _wait(lambda: any(r.data == "Stopping." for r in got["reply"]), 10), [r.data for r in got["reply"]]
    finally:
        ex.shutdown()
        spinner.join(timeout=10)
        for n in nodes:
            if hasattr(n, "shutdown"):
                n.shutdown()
            n.destroy_node()
        probe.destroy_node()
