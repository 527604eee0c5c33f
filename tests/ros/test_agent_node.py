"""agent_node over real Fast DDS with a scripted robot: detector service, detections that follow the
commanded motion, odometry, the ExecuteCommand action, and e-stop latency measured end to end."""

from __future__ import annotations

import threading
import time

import pytest

from tests.agent.tiny_models import SCRIPT, build_models
from tests.agent.world import Thing, World

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.getbasetemp() / "agent-models")


class ScriptedRobot:
    """A test node: a kinematic robot that drives on cmd_vel, a camera that 'detects' the world's
    objects (only the phrases set through set_classes), odometry, and e-stop/command publishers."""

    def __init__(self, context, world: World, rate_hz: float = 20.0) -> None:
        import rclpy
        from geometry_msgs.msg import Twist
        from lookout_interfaces.msg import AgentStatus, DetectionArray, Plan
        from lookout_interfaces.srv import SetClasses
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Bool, Header, String

        from lookout.agent.motion import Velocity

        self.node = rclpy.create_node("scripted_robot", context=context)
        self.world, self.dt = world, 1.0 / rate_hz
        self.lock = threading.Lock()
        self.cmd = Velocity()
        self.cmds: list[tuple[float, float, float]] = []  # (perf_counter, linear x, angular z)
        self.set_classes_calls: list[tuple[float, list[str]]] = []
        self.replies: list[tuple[float, str]] = []
        self.plans: list = []
        self.states: list[str] = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._Header, self._String, self._Bool = Header, String, Bool
        self.det_pub = self.node.create_publisher(DetectionArray, "detections", 10)
        self.odom_pub = self.node.create_publisher(Odometry, "odom", 10)
        self.estop_pub = self.node.create_publisher(Bool, "estop", 10)
        self.command_pub = self.node.create_publisher(String, "command", reliable)
        self.node.create_subscription(Twist, "cmd_vel", self._on_cmd, reliable)
        self.node.create_subscription(String, "reply", lambda m: self.replies.append((time.perf_counter(), m.data)),
                                      reliable)
        self.node.create_subscription(Plan, "plan", self.plans.append, reliable)
        self.node.create_subscription(AgentStatus, "status", lambda m: self.states.append(m.state), reliable)
        self.node.create_service(SetClasses, "detector/set_classes", self._on_set_classes)
        self.node.create_timer(self.dt, self._on_timer)
        self._Odometry = Odometry

    def _on_cmd(self, msg) -> None:
        from lookout.agent.motion import Velocity

        with self.lock:
            self.cmd = Velocity(msg.linear.x, msg.angular.z)
            self.cmds.append((time.perf_counter(), msg.linear.x, msg.angular.z))

    def _on_set_classes(self, request, response):
        phrases = [p.strip() for p in request.phrases if p.strip()]
        self.set_classes_calls.append((time.perf_counter(), phrases))
        with self.lock:
            self.world.vocabulary = phrases
        response.success, response.message, response.active_classes = True, f"{len(phrases)} classes", phrases
        return response

    def _on_timer(self) -> None:
        from lookout_ros.conversions import result_to_msg

        with self.lock:
            self.world.step(self.cmd, self.dt)
            result = self.world.detections() if self.world.vocabulary else None
            x, y, yaw = self.world.x, self.world.y, self.world.yaw
        stamp = self.node.get_clock().now().to_msg()
        if result is not None:
            self.det_pub.publish(result_to_msg(result, self._Header(stamp=stamp, frame_id="camera"), latency_ms=1.0))
        else:  # before any set_classes the detector still publishes (empty) frames
            from lookout.perception.types import DetectionResult

            empty = DetectionResult([], [], self.world.width, self.world.height)
            self.det_pub.publish(result_to_msg(empty, self._Header(stamp=stamp, frame_id="camera")))
        odom = self._Odometry()
        odom.header.stamp = stamp
        odom.pose.pose.position.x, odom.pose.pose.position.y = x, y
        import math

        odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        self.odom_pub.publish(odom)

    def moving_since(self, t: float) -> bool:
        with self.lock:
            return any(ts > t and (lin != 0.0 or ang != 0.0) for ts, lin, ang in self.cmds)

    def first_zero_after(self, t: float) -> float | None:
        with self.lock:
            return next((ts for ts, lin, ang in self.cmds if ts > t and lin == 0.0 and ang == 0.0), None)


def wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


@pytest.fixture
def stack(ros_context):
    """Start nodes in a MultiThreadedExecutor spinning in the background; tear everything down after."""
    from rclpy.executors import MultiThreadedExecutor

    ex = MultiThreadedExecutor(num_threads=4, context=ros_context)
    nodes: list = []
    thread = threading.Thread(target=ex.spin, daemon=True)

    def add(node):
        nodes.append(node)
        ex.add_node(node)
        if not thread.is_alive():
            thread.start()
        return node

    yield add
    for node in nodes:
        if hasattr(node, "shutdown"):
            node.shutdown()
    ex.shutdown(timeout_sec=5)
    thread.join(timeout=5)
    for node in nodes:
        node.destroy_node()


def agent_node(ros_context, model_dir, **params):
    from lookout_ros.agent_node import AgentNode
    from rclpy.parameter import Parameter

    overrides = {"model.base": str(model_dir), "model.adapter": "", "model.cpu_threads": 1, "model.device": "cpu",
                 **params}
    return AgentNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_agent_node_runs_a_command_over_dds_and_estops(ros_context, stack, models):
    import rclpy
    from lookout_interfaces.action import ExecuteCommand
    from rclpy.action import ActionClient

    world = World([Thing("red cup", 2.0, -1.0), Thing("blue box", 1.5, 1.5)])
    robot = ScriptedRobot(ros_context, world)
    stack(robot.node)
    # Control at 5 Hz: a zero within 50 ms of the e-stop can only come from the e-stop path itself (printed).
    # No dialogue history: the scripted model only knows its commands without earlier turns.
    node = stack(agent_node(ros_context, models["scripted"], **{"control.rate_hz": 5.0, "model.history_turns": 0}))
    assert node.get_parameter("control.rate_hz").value == 5.0
    assert node.describe_parameter("watchdog.detections_s").description.startswith("Detections older")
    assert wait_for(lambda: node.agent.planner is not None, 60), node.agent.model_error

    client_node = stack(rclpy.create_node("commander", context=ros_context))
    client = ActionClient(client_node, ExecuteCommand, "execute_command")
    assert client.wait_for_server(timeout_sec=10)
    feedback: list = []
    t_goal = time.perf_counter()
    send = client.send_goal_async(ExecuteCommand.Goal(command="find the red cup"),
                                  feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert wait_for(send.done, 10) and send.result().accepted
    result_future = send.result().get_result_async()
    assert wait_for(result_future.done, 90), f"no result; states {robot.states[-5:]}"
    result = result_future.result().result
    assert result.success, result.reply
    assert result.plan_json == SCRIPT[0][2]
    assert "found the red cup" in result.reply and "reached the red cup" in result.reply
    assert abs(world.distance_to("red cup") - 0.5) < 0.2
    # the detector was told the phrases before the robot moved at all
    assert [p for _, p in robot.set_classes_calls] == [["red cup"]]
    first_motion = next(ts for ts, lin, ang in robot.cmds if ts > t_goal and (lin or ang))
    assert robot.set_classes_calls[0][0] < first_motion
    assert robot.plans and list(robot.plans[-1].step_actions) == ["search", "approach"]
    assert {"planning", "executing", "succeeded"} <= set(robot.states)
    assert {f.state for f in feedback} & {"planning", "executing"}
    assert any(text == "Looking for the red cup." for _, text in robot.replies)
    limits = node.caps.limits
    assert all(abs(lin) <= limits.max_linear_speed and abs(ang) <= limits.max_angular_speed
               for _, lin, ang in robot.cmds)

    latencies = []
    for _ in range(3):
        t_cmd = time.perf_counter()
        robot.command_pub.publish(robot._String(data="turn left 90 degrees"))
        assert wait_for(lambda t=t_cmd: robot.moving_since(t), 20), robot.replies[-3:]
        time.sleep(0.15)
        t0 = time.perf_counter()
        robot.estop_pub.publish(robot._Bool(data=True))
        assert wait_for(lambda t=t0: robot.first_zero_after(t) is not None, 2)
        latencies.append(robot.first_zero_after(t0) - t0)
        time.sleep(0.4)
        assert not robot.moving_since(robot.first_zero_after(t0)), "moved while the e-stop was engaged"
        assert wait_for(lambda: "estopped" in robot.states[-3:], 2)
        robot.estop_pub.publish(robot._Bool(data=False))
        assert wait_for(lambda: robot.states[-1] == "idle", 2)
    print(f"e-stop -> zero cmd_vel latencies: {[round(1000 * x, 1) for x in latencies]} ms")
    # Usually 5-75 ms; under CI load one of three has taken up to 0.7 s (Python threads on 2 cores), so
    # the test bounds it loosely and the 50 ms goal stays a measurement, not a timed assertion.
    assert max(latencies) < 1.0, latencies


def test_stop_and_estop_are_answered_while_the_model_generates(ros_context, stack, models):
    world = World([Thing("red cup", 2.0, 0.0)])
    robot = ScriptedRobot(ros_context, world)
    stack(robot.node)
    node = stack(agent_node(ros_context, models["random"], **{"model.max_new_tokens": 1200}))
    assert wait_for(lambda: node.agent.planner is not None, 60), node.agent.model_error
    planner = node.agent.planner

    def generating() -> bool:  # the planner holds its lock while it decodes
        free = planner._lock.acquire(blocking=False)
        if free:
            planner._lock.release()
        return not free

    assert wait_for(lambda: robot.node.count_subscribers("command") > 0, 10)
    robot.command_pub.publish(robot._String(data="find the red cup and come back"))
    assert wait_for(generating, 20)
    t0 = time.perf_counter()
    robot.command_pub.publish(robot._String(data="stop"))
    assert wait_for(lambda: any(ts > t0 and text == "Stopping." for ts, text in robot.replies), 2)
    stop_latency = next(ts for ts, text in robot.replies if ts > t0 and text == "Stopping.") - t0
    print(f"'stop' while generating -> reply: {1000 * stop_latency:.1f} ms")
    # "at once", not after the generation (seconds here); the figure itself is printed, not asserted tightly
    assert stop_latency < 0.5, stop_latency

    assert wait_for(lambda: not generating(), 30)
    robot.command_pub.publish(robot._String(data="find the red cup and come back"))
    assert wait_for(generating, 20)
    t1 = time.perf_counter()
    robot.estop_pub.publish(robot._Bool(data=True))
    assert wait_for(lambda: robot.first_zero_after(t1) is not None, 2)
    print(f"e-stop while generating -> zero cmd_vel: {1000 * (robot.first_zero_after(t1) - t1):.1f} ms")
    # While a generation thread competes for the GIL on a loaded 2-core CI machine, 89 ms was seen once:
    # the bar here is "well before the plan could finish", not a real-time figure (that one is printed).
    assert robot.first_zero_after(t1) - t1 < 1.0
    assert wait_for(lambda: "estopped" in robot.states, 2)
    time.sleep(0.5)
    assert not robot.moving_since(robot.first_zero_after(t1))
