"""sim_node: the MuJoCo simulator as a ROS 2 robot (camera, odometry, cmd_vel), plus ground truth.

Thin on purpose: parameters, message conversion and timing; the simulator is `lookout.sim.sim.Sim`.

Topics (relative names, so namespaces and remapping work):
  out  camera/image_raw    sensor_msgs/Image rgb8             sensor-data QoS (best effort, keep last 1)
  out  camera/camera_info  sensor_msgs/CameraInfo              sensor-data QoS, same stamp as the image
  out  odom                nav_msgs/Odometry  odom -> base_link (REP 105), twist in base_link
  out  tf_pose             geometry_msgs/TransformStamped odom -> base_link, every tick
  out  tf_static_pose      geometry_msgs/TransformStamped base_link -> camera optical frame (transient local)
  out  sim/ground_truth    std_msgs/String JSON (WorldState + odometry), reliable, transient local
  out  /clock              rosgraph_msgs/Clock (when node.publish_clock), for nodes with use_sim_time
  in   cmd_vel             geometry_msgs/Twist (linear.x, angular.z); older than node.cmd_timeout_s -> stop
  srv  ~/reset             std_srvs/Trigger: rebuild the scene from the current parameters

Why `tf_pose` and not /tf: tf2_msgs and tf2_ros are not available as PyPI wheels here, so the node
publishes the same transforms as plain geometry_msgs/TransformStamped; a relay to /tf is one line
where tf2_msgs exists. Why Trigger + parameters for reset: std_srvs has no "reset with a seed"
service, so `~/reset` reads `node.seed` and `scene_overrides` (JSON of SceneOverrides), which a caller
sets first with the standard parameter services. Every SimConfig key is a parameter (`camera.width`,
...), defaulting to `config_file`; changes to them take effect at the next reset.

Stamps and /clock use one simulated clock that starts at the wall time of node start and advances
`node.rate_factor` simulated seconds per wall second, so at rate 1 it tracks wall time and nodes
without use_sim_time still work.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped, Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from lookout.paths import config_dir
from lookout.sim.camera import optical_quaternion_in_base
from lookout.sim.config import SimConfig
from lookout.sim.sim import Sim
from lookout.sim.world import SceneError, SceneOverrides


def _stamp(seconds: float) -> Time:
    sec = math.floor(seconds)
    return Time(sec=int(sec), nanosec=min(999_999_999, int(round((seconds - sec) * 1e9))))


def _yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    return 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)


class SimNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_node", **kwargs)
        self.declare_parameter("config_file", str(config_dir() / "sim.yaml"), ParameterDescriptor(
            description="SimConfig YAML giving the defaults of every other parameter ('' = built-in defaults)"))
        path = self.get_parameter("config_file").value
        base = SimConfig.from_yaml(path) if path else SimConfig()
        for key, value in base.flat().items():
            self.declare_parameter(key, value, ParameterDescriptor(description=SimConfig.describe(key)))
        self.declare_parameter("scene_overrides", "", ParameterDescriptor(
            description="JSON of SceneOverrides used by ~/reset, e.g. {\"require\": [\"red ball\"]} ('' = none)"))

        self.config = self._config_from_parameters()
        self.sim = Sim(self.config, seed=self.config.node.seed, overrides=self._overrides())
        self._clock_s = time.time()  # simulated clock (see module docstring)
        self._cmd = (0.0, 0.0)
        self._cmd_time = -math.inf
        self._next_frame = 0.0
        self._next_truth = 0.0
        self._last_wall = time.monotonic()

        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos_profile_sensor_data)
        self.odom_pub = self.create_publisher(Odometry, "odom", 10)
        self.tf_pub = self.create_publisher(TransformStamped, "tf_pose", 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.tf_static_pub = self.create_publisher(TransformStamped, "tf_static_pose", latched)
        self.truth_pub = self.create_publisher(String, "sim/ground_truth", latched)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.config.node.publish_clock else None
        # Best effort matches both reliable and best-effort publishers; a lost Twist is replaced 0.1 s later.
        self.create_subscription(Twist, "cmd_vel", self._on_cmd_vel, qos_profile_sensor_data)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(1.0 / self.config.node.tick_hz, self._tick)
        self._publish_static()
        self._publish_truth()
        self.sim.render()  # create the GL context now, not inside the first tick
        self._last_wall = time.monotonic()
        self.get_logger().info(
            f"scene {self.sim.seed}: {', '.join(self.sim.scene.phrases)}; camera {self.config.camera.width}x"
            f"{self.config.camera.height} at {self.config.camera.rate_hz:g} Hz, rate factor {self.config.node.rate_factor:g}")

    # --- parameters ------------------------------------------------------------------------------
    def _config_from_parameters(self) -> SimConfig:
        keys = SimConfig().flat().keys()
        return SimConfig.from_flat({k: self.get_parameter(k).value for k in keys})

    def _overrides(self) -> SceneOverrides | None:
        text = (self.get_parameter("scene_overrides").value or "").strip()
        return SceneOverrides.model_validate_json(text) if text else None

    # --- callbacks -------------------------------------------------------------------------------
    def _on_cmd_vel(self, msg: Twist) -> None:
        self._cmd = (float(msg.linear.x), float(msg.angular.z))
        self._cmd_time = self.sim.time_s

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            config = self._config_from_parameters()
            overrides = self._overrides()
            # The node's own settings (seed, rates) need no new world; camera or physics changes do.
            if config.model_dump(exclude={"node"}) != self.config.model_dump(exclude={"node"}):
                new_sim = Sim(config, seed=config.node.seed, overrides=overrides)  # old sim kept until this works
                new_sim.render()
                self.sim.close()
                self.sim = new_sim
            else:
                self.sim.reset(config.node.seed, overrides)
            self.config = config
        except (ValueError, RuntimeError, SceneError) as exc:  # pydantic's ValidationError is a ValueError
            response.success = False
            response.message = f"reset failed, the previous scene is kept: {exc}"
            return response
        self._cmd, self._cmd_time = (0.0, 0.0), -math.inf
        self._next_frame = self._next_truth = 0.0
        self._publish_static()
        self._publish_truth()
        response.success = True
        response.message = json.dumps({"seed": self.sim.seed, "objects": self.sim.scene.phrases})
        return response

    def _tick(self) -> None:
        now = time.monotonic()
        cfg = self.config.node
        # Simulated time follows wall time; after a long stall (> 0.25 s) it slows down rather than jump.
        remaining = min(now - self._last_wall, max(0.25, 3.0 / cfg.tick_hz)) * cfg.rate_factor
        self._last_wall = now
        # Step up to each camera frame in turn, so the camera keeps its rate in simulated time even when
        # one tick covers several frames (rate_factor > 1).
        while remaining > 1e-9:
            dt = min(remaining, max(self._next_frame - self.sim.time_s, 1e-6))
            remaining -= dt
            fresh = self.sim.time_s - self._cmd_time <= cfg.cmd_timeout_s
            v, w = self._cmd if fresh else (0.0, 0.0)
            self.sim.step(v, w, dt)
            self._clock_s += dt
            if self.sim.time_s >= self._next_frame - 1e-9:
                self._next_frame = self.sim.time_s + 1.0 / self.config.camera.rate_hz
                self._publish_camera(_stamp(self._clock_s))
        stamp = _stamp(self._clock_s)
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=stamp))
        self._publish_odom(stamp)
        if self.sim.time_s >= self._next_truth:
            self._next_truth = self.sim.time_s + 1.0 / cfg.ground_truth_hz
            self._publish_truth()

    # --- publishing ------------------------------------------------------------------------------
    def _publish_odom(self, stamp: Time) -> None:
        odo = self.sim.odometry()
        cfg = self.config.node
        qx, qy, qz, qw = _yaw_quaternion(odo.yaw)
        msg = Odometry()
        msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, cfg.odom_frame, cfg.base_frame
        p = msg.pose.pose
        p.position.x, p.position.y = odo.x, odo.y
        p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = qx, qy, qz, qw
        msg.twist.twist.linear.x, msg.twist.twist.angular.z = odo.linear, odo.angular
        self.odom_pub.publish(msg)
        tf = TransformStamped()
        tf.header, tf.child_frame_id = msg.header, cfg.base_frame
        tf.transform.translation.x, tf.transform.translation.y = odo.x, odo.y
        r = tf.transform.rotation
        r.x, r.y, r.z, r.w = qx, qy, qz, qw
        self.tf_pub.publish(tf)

    def _publish_camera(self, stamp: Time) -> None:
        image = self.sim.render()
        cam, k = self.config.camera, self.sim.intrinsics
        img = Image()
        img.header.stamp, img.header.frame_id = stamp, self.config.node.camera_frame
        img.height, img.width, img.encoding, img.is_bigendian, img.step = cam.height, cam.width, "rgb8", 0, cam.width * 3
        img.data = image.tobytes()
        info = CameraInfo()
        info.header = img.header
        info.height, info.width, info.distortion_model = cam.height, cam.width, "plumb_bob"
        info.d = [0.0] * 5
        info.k, info.p = k.k, k.p
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        self.image_pub.publish(img)
        self.info_pub.publish(info)

    def _publish_static(self) -> None:
        cam = self.config.camera
        tf = TransformStamped()
        tf.header.stamp, tf.header.frame_id = _stamp(self._clock_s), self.config.node.base_frame
        tf.child_frame_id = self.config.node.camera_frame
        tf.transform.translation.x, tf.transform.translation.z = cam.forward_m, cam.height_m
        r = tf.transform.rotation
        r.x, r.y, r.z, r.w = optical_quaternion_in_base(cam.pitch_deg)
        self.tf_static_pub.publish(tf)

    def _publish_truth(self) -> None:
        state = json.loads(self.sim.world_state().model_dump_json())
        odo = self.sim.odometry()
        state["odometry"] = {"x": odo.x, "y": odo.y, "yaw": odo.yaw}
        state["stamp"] = self._clock_s
        self.truth_pub.publish(String(data=json.dumps(state)))

    def destroy_node(self) -> None:
        self.sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = SimNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
