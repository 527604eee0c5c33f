"""agent_node: the language agent as a ROS 2 node. Thin: parameters, topics, conversions.

The logic is `lookout.agent.agent.Agent` (planner on a worker thread, executor, safety).

Topics, services and actions (relative names, so namespaces and remapping work):
  in   command          std_msgs/String          a command in words (reliable)
  in   execute_command  ExecuteCommand action    the same, with feedback and a result
  in   detections       DetectionArray           best effort subscriber: matches any publisher QoS
  in   odom             nav_msgs/Odometry        optional; turn/move/come_back need it (best effort)
  in   estop            std_msgs/Bool            true stops at once and drops the plan (best effort,
                                                 so a publisher of any reliability is heard)
  out  cmd_vel          geometry_msgs/Twist      clamped to config/robot.yaml limits, every control tick
  out  reply            std_msgs/String          what the robot says
  out  plan             Plan                     each validated plan
  out  status           AgentStatus              on every change and once a second
  srv  ~/reset_conversation  std_srvs/Trigger   cancel, forget the dialogue; come_back's home is the next pose
  call detector.set_classes_service (SetClasses) with the plan's phrases, before any motion

Callback groups: the e-stop has its own group, commands/sensors/timer share a reentrant one, and
the action's execute callbacks another, so under a MultiThreadedExecutor nothing waits for the
model (which runs on the Agent's worker thread) and `stop`/e-stop act at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import rclpy
from geometry_msgs.msg import Twist
from lookout_interfaces.action import ExecuteCommand
from lookout_interfaces.msg import AgentStatus as AgentStatusMsg
from lookout_interfaces.msg import DetectionArray
from lookout_interfaces.msg import Plan as PlanMsg
from lookout_interfaces.srv import SetClasses
from nav_msgs.msg import Odometry as OdometryMsg
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from lookout.agent.agent import Agent, AgentStatus, CommandOutcome
from lookout.agent.config import AgentConfig, descriptions, flatten, resolve_path, unflatten
from lookout.agent.motion import Odometry, Velocity, yaw_from_quaternion
from lookout.agent.plan import SCHEMA_VERSION, PlanBase
from lookout_ros.conversions import result_from_msg

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
          list: ParameterType.PARAMETER_STRING_ARRAY}


def twist(v: Velocity) -> Twist:
    msg = Twist()
    msg.linear.x = float(v.linear_x)
    msg.angular.z = float(v.angular_z)
    return msg


class AgentNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("agent", **node_kwargs)
        self.cfg = self._declare_config()
        self.caps = self.cfg.capabilities()
        self._safety_group = MutuallyExclusiveCallbackGroup()
        self._io_group = ReentrantCallbackGroup()
        self._action_group = ReentrantCallbackGroup()
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", reliable)
        self.reply_pub = self.create_publisher(String, "reply", reliable)
        self.plan_pub = self.create_publisher(PlanMsg, "plan", reliable)
        self.status_pub = self.create_publisher(AgentStatusMsg, "status", reliable)
        self.set_classes_client = self.create_client(SetClasses, self.cfg.detector.set_classes_service,
                                                     callback_group=self._io_group)

        self._last_status: AgentStatus | None = None
        self._last_status_time = 0.0
        # cmd_vel is published from the control timer and the e-stop callback (different threads): one
        # lock orders them, so a velocity computed before an e-stop is never published after its zero.
        self._cmd_lock = threading.Lock()
        self.agent = Agent(self.cfg, self.caps, self._make_planner, self._set_classes, self._now,
                           on_plan=self._publish_plan, on_outcome=self._publish_outcome,
                           on_phase=lambda _phase: self._publish_status(self.agent.status(), force=True))
        self._last_reply: tuple[int, str] | None = None

        self.create_subscription(Bool, "estop", self._on_estop, qos_profile_sensor_data,
                                 callback_group=self._safety_group)
        self.create_subscription(String, "command", self._on_command, reliable, callback_group=self._io_group)
        self.create_subscription(DetectionArray, "detections", self._on_detections, qos_profile_sensor_data,
                                 callback_group=self._io_group)
        self.create_subscription(OdometryMsg, "odom", self._on_odom, qos_profile_sensor_data,
                                 callback_group=self._io_group)
        self.action_server = ActionServer(
            self, ExecuteCommand, "execute_command", self._execute, callback_group=self._action_group,
            goal_callback=lambda _goal: GoalResponse.ACCEPT, cancel_callback=lambda _g: CancelResponse.ACCEPT)
        self.create_service(Trigger, "~/reset_conversation", self._on_reset_conversation,
                            callback_group=self._io_group)
        self.timer = self.create_timer(1.0 / self.cfg.control.rate_hz, self._on_timer, callback_group=self._io_group)
        self.agent.load_model_async()  # on the agent's worker thread: the node is responsive at once
        self.get_logger().info(f"agent ready; loading {self.cfg.model.base} in the background")

    # --- parameters ----------------------------------------------------------------------------
    def _declare_config(self) -> AgentConfig:
        path = self.declare_parameter(
            "config_file", str(resolve_path("config/agent.yaml")),
            ParameterDescriptor(description="Agent YAML (AgentConfig); every key is also a parameter")).value
        base = AgentConfig.from_yaml(path) if path else AgentConfig()
        about = descriptions()
        values: dict[str, Any] = {}
        for name, default in flatten(base).items():
            kind = _TYPES[type(default)]
            desc = ParameterDescriptor(description=about.get(name, ""), type=kind,
                                       dynamic_typing=kind in (ParameterType.PARAMETER_DOUBLE,
                                                               ParameterType.PARAMETER_INTEGER))
            value = self.declare_parameter(name, default, desc).value
            values[name] = list(value) if isinstance(default, list) else value
        return AgentConfig.model_validate(unflatten(values))

    # --- ports for the Agent -----------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _make_planner(self) -> Any:
        from lookout.agent.planner import Planner

        planner = Planner(self.cfg.model, self.caps)
        self.get_logger().info(f"planner loaded on {planner.decoder.device} ({planner.decoder.mode})")
        return planner

    def _set_classes(self, phrases: list[str]) -> tuple[bool, str]:
        """Called on the agent's worker thread: block on the service while executor threads spin."""
        timeout = self.cfg.detector.set_classes_timeout_s
        name = self.cfg.detector.set_classes_service
        if not self.set_classes_client.wait_for_service(timeout_sec=timeout):
            return False, f"service {name} is not available"
        done = threading.Event()
        future = self.set_classes_client.call_async(SetClasses.Request(phrases=phrases))
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            future.cancel()
            return False, f"service {name} did not answer within {timeout:g} s"
        response = future.result()
        return bool(response.success), str(response.message)

    def _publish_plan(self, cid: int, command: str, plan: PlanBase, result: Any) -> None:
        msg = PlanMsg(command=command, reply=plan.reply, declined=plan.declined, phrases=list(plan.phrases),
                      step_actions=list(plan.actions), plan_json=plan.to_json(), schema_version=SCHEMA_VERSION)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.plan_pub.publish(msg)
        self._say(cid, plan.reply)
        if result is not None:
            t = result.timings
            self.get_logger().info(f"plan for {command[:60]!r}: {plan.actions} ({t.new_tokens} tokens, "
                                   f"{t.total_ms:.0f} ms)")

    def _publish_outcome(self, outcome: CommandOutcome) -> None:
        self._say(outcome.command_id, outcome.reply)

    def _say(self, cid: int, text: str) -> None:
        if text and self._last_reply != (cid, text):
            self._last_reply = (cid, text)
            self.reply_pub.publish(String(data=text))

    # --- callbacks -----------------------------------------------------------------------------
    def _on_estop(self, msg: Bool) -> None:
        with self._cmd_lock:
            cmd = self.agent.set_estop(bool(msg.data))
            if msg.data:
                self.cmd_pub.publish(twist(cmd))  # zero at once, not at the next control tick
        self._publish_status(self.agent.status(), force=True)

    def _on_command(self, msg: String) -> None:
        with self._cmd_lock:
            self.agent.submit(msg.data)
            self.cmd_pub.publish(twist(Velocity()))  # whatever ran is cancelled: stop first
        self._publish_status(self.agent.status(), force=True)

    def _on_reset_conversation(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._cmd_lock:
            self.agent.reset_conversation()
            self.cmd_pub.publish(twist(Velocity()))
        self._publish_status(self.agent.status(), force=True)
        response.success, response.message = True, "conversation cleared; come back returns to the next pose"
        return response

    def _on_detections(self, msg: DetectionArray) -> None:
        self.agent.observe_detections(result_from_msg(msg), self._now())

    def _on_odom(self, msg: OdometryMsg) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.agent.observe_odometry(Odometry(p.x, p.y, yaw_from_quaternion(q.x, q.y, q.z, q.w), stamp), self._now())

    def _on_timer(self) -> None:
        with self._cmd_lock:
            tick = self.agent.tick(self._now())
            self.cmd_pub.publish(twist(self.agent.executor.guard.clamp(tick.cmd)))
        self._publish_status(tick.status)

    def _publish_status(self, status: AgentStatus, force: bool = False) -> None:
        now = time.monotonic()
        if not force and status == self._last_status and now - self._last_status_time < 1.0:
            return
        self._last_status, self._last_status_time = status, now
        msg = AgentStatusMsg(state=status.state, command=status.command, step_index=status.step_index,
                             step_count=status.step_count, step=status.step, message=status.message)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    def _execute(self, goal_handle: Any) -> ExecuteCommand.Result:
        """Action goal: run the command, stream feedback, return how it ended."""
        with self._cmd_lock:
            cid = self.agent.submit(goal_handle.request.command)
            self.cmd_pub.publish(twist(Velocity()))
        last = None
        outcome = None
        while rclpy.ok(context=self.context):
            outcome = self.agent.wait_outcome(cid, timeout=0.1)
            if outcome is not None:
                break
            if goal_handle.is_cancel_requested:
                self.agent.cancel("Cancelled by the action client.")
                outcome = self.agent.wait_outcome(cid, timeout=1.0)
                break
            status = self.agent.status()
            if status != last:
                last = status
                goal_handle.publish_feedback(ExecuteCommand.Feedback(
                    state=status.state, step_index=status.step_index, step_count=status.step_count,
                    step=status.step, message=status.message))
        result = ExecuteCommand.Result(success=bool(outcome and outcome.success),
                                       reply=outcome.reply if outcome else "Shutting down.",
                                       plan_json=outcome.plan_json if outcome else "")
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def shutdown(self) -> None:
        self.agent.shutdown()
        self.cmd_pub.publish(twist(Velocity()))


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = AgentNode()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
