"""Scenarios over ROS: drive a running simulated stack through its topics and score what happened.

The same `Scenario`s and scorer as the in-process harness (`lookout.sim.harness`), but every message
crosses DDS between the real nodes: the scene is set through sim_node's parameters and `~/reset`,
the conversation is cleared with the agent's `~/reset_conversation`, each user turn is an
`execute_command` action goal, and the trajectory is read from `sim/ground_truth`. Simulated time
runs on while the agent plans, as it would on a robot. An interrupting turn (`after_s`, e.g. "stop"
two seconds into a turn) is timed from when the agent starts acting on the turn before it (the goal's
feedback leaves planning): in-process planning takes no simulated time, so both runs test the same
moment of the motion.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from lookout_interfaces.action import ExecuteCommand
from lookout_interfaces.msg import DetectionArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from lookout.perception.images import image_msg_to_array
from lookout.perception.types import DetectionResult
from lookout.sim.rollout import Rollout, RolloutRecorder
from lookout.sim.scenario import Scenario
from lookout.sim.scoring import ScenarioResult
from lookout.sim.state import WorldState
from lookout_ros.conversions import result_from_msg


class RosScenarioError(RuntimeError):
    """The stack did not answer (a node missing, a reset refused, a service timing out)."""


def _param(name: str, value: Any) -> ParameterMsg:
    if isinstance(value, bool):
        pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    elif isinstance(value, int):
        pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    elif isinstance(value, float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
    return ParameterMsg(name=name, value=pv)


class _Turn:
    """One action goal in flight: its feedback and result arrive on an executor thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.acting = threading.Event()  # feedback showed the agent executing the plan
        self.result: Any = None
        self.goal_handle: Any = None


class RosScenarioRunner:
    """Runs scenarios against `sim_node` and `agent` (names as in launch/sim.launch.yaml) from `node`.

    `node` must be spun by an executor on another thread; `run` blocks the calling thread.
    """

    def __init__(self, node: Node, *, sim_node: str = "sim_node", agent_node: str = "agent",
                 truth_hz: float = 10.0, timeout_s: float = 30.0, record_frames: bool = False) -> None:
        self.node = node
        self.timeout_s = timeout_s
        self.truth_hz = truth_hz
        group = ReentrantCallbackGroup()
        latched = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._lock = threading.Lock()
        self._truth: list[WorldState] = []
        self._truth_event = threading.Event()
        node.create_subscription(String, "sim/ground_truth", self._on_truth, latched, callback_group=group)
        self._set_params = node.create_client(SetParameters, f"{sim_node}/set_parameters", callback_group=group)
        self._reset_sim = node.create_client(Trigger, f"{sim_node}/reset", callback_group=group)
        self._reset_agent = node.create_client(Trigger, f"{agent_node}/reset_conversation", callback_group=group)
        self._action = ActionClient(node, ExecuteCommand, "execute_command", callback_group=group)
        # What the camera saw, as the detector saw it: (sim time, RGB, detections, user's words, robot's words).
        self.on_frame: Callable[[float, Any, DetectionResult, str, str], None] | None = None
        self._sim_now = 0.0
        self._say = self._reply = ""
        self._images: dict[tuple[int, int], Any] = {}
        if record_frames:
            node.create_subscription(Image, "camera/image_raw", self._on_image, qos_profile_sensor_data,
                                     callback_group=group)
            node.create_subscription(DetectionArray, "detections", self._on_detections, qos_profile_sensor_data,
                                     callback_group=group)
            node.create_subscription(String, "reply", self._on_reply, QoSProfile(
                depth=10, reliability=ReliabilityPolicy.RELIABLE), callback_group=group)

    # --- plumbing ----------------------------------------------------------------------------------
    def _on_truth(self, msg: String) -> None:
        data = json.loads(msg.data)
        data.pop("odometry", None)
        data.pop("stamp", None)
        state = WorldState.model_validate(data)
        with self._lock:
            self._truth.append(state)
        self._sim_now = state.time_s
        self._truth_event.set()

    def _on_image(self, msg: Image) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            self._images[stamp] = msg
            while len(self._images) > 30:  # the detector answers within a few frames or not at all
                self._images.pop(next(iter(self._images)))

    def _on_detections(self, msg: DetectionArray) -> None:
        with self._lock:
            image = self._images.pop((msg.header.stamp.sec, msg.header.stamp.nanosec), None)
        sink = self.on_frame
        if image is not None and sink is not None:
            sink(self._sim_now, image_msg_to_array(image), result_from_msg(msg), self._say, self._reply)

    def _on_reply(self, msg: String) -> None:
        self._reply = msg.data

    def _take_truth(self) -> list[WorldState]:
        with self._lock:
            out, self._truth = self._truth, []
        self._truth_event.clear()
        return out

    def _call(self, client: Any, request: Any, what: str) -> Any:
        if not client.wait_for_service(timeout_sec=self.timeout_s):
            raise RosScenarioError(f"{client.srv_name} is not available ({what})")
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(self.timeout_s):
            future.cancel()
            raise RosScenarioError(f"{client.srv_name} did not answer within {self.timeout_s:g} s ({what})")
        return future.result()

    def wait_ready(self) -> None:
        """Block until the sim, the agent and its action server answer."""
        for client in (self._set_params, self._reset_sim, self._reset_agent):
            if not client.wait_for_service(timeout_sec=self.timeout_s):
                raise RosScenarioError(f"{client.srv_name} is not available: is the sim stack running?")
        if not self._action.wait_for_server(timeout_sec=self.timeout_s):
            raise RosScenarioError("the agent's execute_command action server is not available")

    def _send(self, say: str) -> _Turn:
        turn = _Turn()
        self._say, self._reply = say, ""

        def on_result(future: Any) -> None:
            turn.result = future.result().result
            turn.done.set()

        def on_goal(future: Any) -> None:
            handle = future.result()
            turn.goal_handle = handle
            if not handle.accepted:
                turn.done.set()
                return
            handle.get_result_async().add_done_callback(on_result)

        def on_feedback(msg: Any) -> None:
            if msg.feedback.state == "executing":  # past planning and the detector's vocabulary switch
                turn.acting.set()

        self._action.send_goal_async(ExecuteCommand.Goal(command=say),
                                     feedback_callback=on_feedback).add_done_callback(on_goal)
        return turn

    def _reset(self, scenario: Scenario) -> WorldState:
        """Cancel and forget the conversation, load the scenario's scene, return its first true state."""
        self._call(self._reset_agent, Trigger.Request(), "clear the conversation")
        params = [_param("node.seed", int(scenario.seed)), _param("scene_overrides", scenario.scene.model_dump_json()),
                  _param("node.ground_truth_hz", float(self.truth_hz))]
        answer = self._call(self._set_params, SetParameters.Request(parameters=params), "set the scene")
        refused = [r.reason for r in answer.results if not r.successful]
        if refused:
            raise RosScenarioError(f"sim_node refused the scenario's parameters: {refused}")
        self._take_truth()
        reply = self._call(self._reset_sim, Trigger.Request(), "reset the sim")
        if not reply.success:
            raise RosScenarioError(f"sim_node could not build the scene of {scenario.id}: {reply.message}")
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            self._truth_event.wait(0.1)
            for state in self._take_truth():
                if state.seed == scenario.seed and state.time_s <= 0.5:
                    # again, now that the new scene runs: come_back's home is the next odometry, which
                    # must be the new scene's start, not the last pose of the scene before
                    self._call(self._reset_agent, Trigger.Request(), "clear the conversation")
                    return state
        raise RosScenarioError("no ground truth arrived after the reset")

    # --- one scenario ------------------------------------------------------------------------------
    def run(self, scenario: Scenario, *, settle_s: float = 2.0) -> Rollout:
        """Play the scenario's turns (interrupting on `after_s`) until the dialogue ends or time runs out."""
        first = last = self._reset(scenario)
        recorder = RolloutRecorder(scenario.id, first)
        now = first.time_s
        t_wall = time.perf_counter()
        turns = scenario.turns
        index = 0
        recorder.begin_turn(turns[0].say, now)
        current = self._send(turns[0].say)
        acting_since: float | None = None  # sim time at which the agent began acting on `current`
        finished = False
        while now < scenario.time_limit_s:
            self._truth_event.wait(0.05)
            for last in self._take_truth():
                recorder.record(last)
                now = last.time_s
            if acting_since is None and current.acting.is_set():
                acting_since = now
            nxt = turns[index + 1] if index + 1 < len(turns) else None
            if nxt is not None and nxt.after_s is not None and acting_since is not None \
                    and now >= acting_since + nxt.after_s:
                recorder.end_turn(now, interrupted=True)
                index += 1
                recorder.begin_turn(nxt.say, now)
                current, acting_since = self._send(nxt.say), None  # the agent cancels what runs
                continue
            if current.done.is_set():
                result = current.result
                plan = json.loads(result.plan_json) if result is not None and result.plan_json else {}
                recorder.end_turn(now, reply=result.reply if result is not None else "goal rejected",
                                  success=bool(result.success) if result is not None else False,
                                  declined=plan.get("declined") if plan else None)
                if nxt is None:
                    finished = True
                    break
                index += 1
                recorder.begin_turn(nxt.say, now)
                current, acting_since = self._send(nxt.say), None
        end_s = now
        while now < end_s + settle_s:
            self._truth_event.wait(0.05)
            for last in self._take_truth():
                recorder.record(last)
                now = last.time_s
        rollout = recorder.finish(end_s, timed_out=not finished, collisions=last.collisions - first.collisions,
                                  timings_ms={"wall": 1000 * (time.perf_counter() - t_wall)})
        self._call(self._reset_agent, Trigger.Request(), "stop after the scenario")
        return rollout


@contextlib.contextmanager
def sim_stack_over_ros(launch_args: dict[str, str] | None = None, *, context: Any = None,
                       model_timeout_s: float = 300.0, record_frames: bool = False) -> Iterator[RosScenarioRunner]:
    """launch/sim.launch.yaml's nodes in this process (see `bringup`) and a runner talking to them over DDS.

    `context`: an initialised rclpy Context to run in (tests give each its own DDS domain); by default a
    new one on the environment's domain, shut down afterwards. Yields once the planner has loaded.
    """
    import rclpy

    from lookout.launch_file import load_launch_file
    from lookout_ros.bringup import compose, launch_path
    from lookout_ros.spinning import NodeSpinner

    desc = load_launch_file(launch_path("sim"), launch_args or {})
    own_context = context is None
    if own_context:
        context = rclpy.Context()
        rclpy.init(context=context)
    nodes: list[Any] = []
    spinner: NodeSpinner | None = None
    try:
        nodes = compose(desc, context)
        probe = rclpy.create_node("scenario_runner", context=context)
        nodes.append(probe)
        runner = RosScenarioRunner(probe, record_frames=record_frames)
        spinner = NodeSpinner(nodes, context)
        spinner.start()
        runner.wait_ready()
        for node in nodes:  # the first scenario must not pay for loading the planner
            agent = getattr(node, "agent", None)
            if agent is not None and not agent.wait_model(model_timeout_s):
                raise RosScenarioError(f"the agent's planner did not load within {model_timeout_s:g} s")
        yield runner
    finally:
        if spinner is not None:
            spinner.shutdown()
        for node in nodes:
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        if own_context:
            rclpy.try_shutdown(context=context)


def run_suite_over_ros(scenarios: list[Scenario], launch_args: dict[str, str] | None = None, *,
                       progress: Callable[[ScenarioResult, dict[str, float]], None] | None = None,
                       settle_s: float = 2.0, context: Any = None,
                       ) -> list[tuple[ScenarioResult, dict[str, float]]]:
    """Run and score each scenario through the ROS sim stack (see `sim_stack_over_ros`)."""
    from lookout.sim.scoring import score

    out: list[tuple[ScenarioResult, dict[str, float]]] = []
    with sim_stack_over_ros(launch_args, context=context) as runner:
        for scenario in scenarios:
            t0 = time.perf_counter()
            rollout = runner.run(scenario, settle_s=settle_s)
            wall = time.perf_counter() - t0
            sim_s = rollout.samples[-1][0] - rollout.samples[0][0]
            out.append((score(scenario, rollout), {"wall_s": wall, "sim_s": sim_s, "plan_s": 0.0,
                                                   "realtime_factor": sim_s / wall if wall > 0 else 0.0}))
            if progress:
                progress(*out[-1])
    return out
