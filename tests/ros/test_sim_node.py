"""sim_node over real Fast DDS: camera and odometry arrive, cmd_vel moves the robot, ~/reset rebuilds the scene."""

from __future__ import annotations

import json
import math
import time

import pytest
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from lookout.sim.config import SimConfig
from lookout.sim.state import WorldState
from lookout.sim.world import SceneOverrides, generate_scene

from .conftest import spin_until

pytestmark = pytest.mark.ros

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _sim_node(ros_context, **params):
    from lookout_ros.sim_node import SimNode

    overrides = {"camera.width": 96, "camera.height": 72, "node.seed": 4, **params}
    return SimNode(context=ros_context,
                   parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


class Listener:
    def __init__(self, ros_context, executor):
        import rclpy
        from geometry_msgs.msg import TransformStamped, Twist
        from nav_msgs.msg import Odometry
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        self.node = rclpy.create_node("sim_test_client", context=ros_context)
        executor.add_node(self.node)
        self.images, self.infos, self.odoms, self.truths, self.statics, self.clocks = [], [], [], [], [], []
        self.node.create_subscription(Image, "camera/image_raw", self.images.append, qos_profile_sensor_data)
        self.node.create_subscription(CameraInfo, "camera/camera_info", self.infos.append, qos_profile_sensor_data)
        self.node.create_subscription(Odometry, "odom", self.odoms.append, 10)
        self.node.create_subscription(String, "sim/ground_truth", lambda m: self.truths.append(json.loads(m.data)),
                                      LATCHED)
        self.node.create_subscription(TransformStamped, "tf_static_pose", self.statics.append, LATCHED)
        self.node.create_subscription(Clock, "/clock", self.clocks.append, 10)
        self.cmd = self.node.create_publisher(Twist, "cmd_vel", 10)

    def twist(self, v: float, w: float):
        from geometry_msgs.msg import Twist

        msg = Twist()
        msg.linear.x, msg.angular.z = v, w
        return msg


def test_camera_odometry_and_ground_truth_arrive_and_cmd_vel_drives(ros_context, executor):
    node = _sim_node(ros_context, **{"scene_overrides": json.dumps({"free_ahead_m": 2.0})})
    executor.add_node(node)
    client = Listener(ros_context, executor)

    assert spin_until(executor, lambda: client.images and client.infos and client.odoms and client.truths
                      and client.statics, timeout=15), "sim_node topics did not arrive over DDS"
    img, info = client.images[-1], client.infos[-1]
    assert (img.width, img.height, img.encoding, img.step) == (96, 72, "rgb8", 96 * 3)
    assert len(img.data) == 96 * 72 * 3 and max(img.data) > 0
    assert img.header.frame_id == "camera_optical_frame" and info.header.frame_id == "camera_optical_frame"
    fovy = SimConfig.default().camera.fovy_deg
    assert info.k[0] == pytest.approx(36 / math.tan(math.radians(fovy / 2))) and info.k[2] == pytest.approx(47.5)
    odom = client.odoms[-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    assert client.statics[0].child_frame_id == "camera_optical_frame"
    truth = client.truths[-1]
    assert truth["seed"] == 4
    assert WorldState.model_validate(truth).robot == node.sim.scene.robot_start  # the scorer's input, from JSON
    assert [o["phrase"] for o in truth["objects"]] == generate_scene(
        4, SimConfig(), SceneOverrides(free_ahead_m=2.0)).phrases

    # Drive forward for a while: odometry and ground truth both see it.
    start = node.sim.pose
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        client.cmd.publish(client.twist(0.3, 0.0))
        executor.spin_once(timeout_sec=0.05)
    assert spin_until(executor, lambda: client.odoms[-1].pose.pose.position.x > 0.2, timeout=5)
    assert any(abs(o.twist.twist.linear.x - 0.3) < 0.01 for o in client.odoms)
    assert start.distance_to(node.sim.pose.x, node.sim.pose.y) > 0.2

    # Stale commands time out: with no new cmd_vel the robot stops by itself.
    assert spin_until(executor, lambda: client.odoms[-1].twist.twist.linear.x == 0.0, timeout=3)
    x = client.odoms[-1].pose.pose.position.x
    spin_until(executor, lambda: False, timeout=0.5)
    assert client.odoms[-1].pose.pose.position.x == pytest.approx(x, abs=1e-9)
    # /clock runs with the simulation
    assert client.clocks and client.clocks[-1].clock.sec >= client.clocks[0].clock.sec


def test_reset_service_uses_the_seed_parameter_and_keeps_the_scene_on_bad_input(ros_context, executor):
    from rclpy.parameter_client import AsyncParameterClient
    from std_srvs.srv import Trigger

    node = _sim_node(ros_context)
    executor.add_node(node)
    client = Listener(ros_context, executor)
    reset = client.node.create_client(Trigger, "sim_node/reset")
    params = AsyncParameterClient(client.node, "sim_node")
    assert spin_until(executor, lambda: reset.service_is_ready() and params.services_are_ready(), timeout=15)

    def set_and_reset(**values):
        future = params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        assert spin_until(executor, future.done, timeout=10)
        call = reset.call_async(Trigger.Request())
        assert spin_until(executor, call.done, timeout=10)
        return call.result()

    reply = set_and_reset(**{"node.seed": 17, "scene_overrides": json.dumps({"require": ["purple cone"]})})
    assert reply.success, reply.message
    want = generate_scene(17, SimConfig(), SceneOverrides(require=["purple cone"])).phrases
    assert json.loads(reply.message) == {"seed": 17, "objects": want}
    assert spin_until(executor, lambda: client.truths and client.truths[-1]["seed"] == 17, timeout=10)
    assert "purple cone" in [o["phrase"] for o in client.truths[-1]["objects"]]

    reply = set_and_reset(**{"node.seed": 18, "scene_overrides": '{"require": ["shiny robot"]}'})
    assert not reply.success and "previous scene is kept" in reply.message and "shiny robot" in reply.message
    assert node.sim.seed == 17 and node.sim.scene.phrases == want

    # Parameters that change the camera take effect at the next reset.
    reply = set_and_reset(**{"scene_overrides": "", "camera.width": 64, "camera.height": 48})
    assert reply.success, reply.message
    count = len(client.images)
    assert spin_until(executor, lambda: len(client.images) > count and client.images[-1].width == 64, timeout=10)


def test_rate_factor_runs_the_simulation_faster_and_keeps_the_camera_rate_in_sim_time(ros_context, executor):
    import rclpy
    from sensor_msgs.msg import Image

    node = _sim_node(ros_context, **{"node.rate_factor": 4.0, "camera.rate_hz": 15.0})
    executor.add_node(node)
    client = rclpy.create_node("rate_client", context=ros_context)
    executor.add_node(client)
    stamps: list[float] = []
    deep = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)
    client.create_subscription(Image, "camera/image_raw",
                               lambda m: stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), deep)
    spin_until(executor, lambda: node.sim.time_s > 0.2 and len(stamps) > 1, timeout=5)
    t0, s0, n0 = time.monotonic(), node.sim.time_s, len(stamps)
    spin_until(executor, lambda: time.monotonic() - t0 > 1.0, timeout=2.0)
    sim_elapsed = node.sim.time_s - s0
    ratio = sim_elapsed / (time.monotonic() - t0)
    assert 2.0 < ratio <= 4.2
    # frames are 1/15 s apart in simulated time (stamps), however many one wall tick covers
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) == pytest.approx(1 / 15, abs=2e-3)
    assert len(stamps) - n0 >= 0.5 * sim_elapsed * 15
