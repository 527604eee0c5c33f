"""lookout_interfaces messages, services and actions round-trip over real Fast DDS."""

from __future__ import annotations

import math

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from lookout.perception.types import Detection, DetectionResult

from .conftest import spin_until

pytestmark = pytest.mark.ros


def _result() -> DetectionResult:
    return DetectionResult(
        detections=[
            Detection(10.5, 20.25, 110.0, 220.0, 0.875, "red cup", 0, track_id=7),
            Detection(0.0, 1.0, 5.0, 9.0, 0.25, "blue box", 1),
        ],
        vocabulary=["red cup", "blue box"],
        image_width=640,
        image_height=480,
        timings_ms={"preprocess": 1.5, "inference": 12.0, "postprocess": 0.5},
    )


def test_detection_array_published_by_one_node_arrives_at_another(ros_context, executor):
    import rclpy
    from builtin_interfaces.msg import Time
    from lookout_interfaces.msg import DetectionArray
    from lookout_ros.conversions import result_from_msg, result_to_msg
    from std_msgs.msg import Header

    talker = rclpy.create_node("talker", context=ros_context)
    listener = rclpy.create_node("listener", context=ros_context)
    executor.add_node(talker)
    executor.add_node(listener)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    received: list[DetectionArray] = []
    listener.create_subscription(DetectionArray, "detections", received.append, qos)
    pub = talker.create_publisher(DetectionArray, "detections", qos)

    header = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_optical")
    sent = _result()
    assert spin_until(executor, lambda: pub.get_subscription_count() > 0, timeout=10)
    pub.publish(result_to_msg(sent, header, latency_ms=3.0))
    assert spin_until(executor, lambda: bool(received), timeout=10), "no DetectionArray arrived over DDS"

    msg = received[0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 345, "camera_optical")
    assert (msg.image_width, msg.image_height) == (640, 480)
    assert math.isclose(msg.latency_ms, 3.0)
    back = result_from_msg(msg)
    assert back.vocabulary == sent.vocabulary
    assert [d.phrase for d in back.detections] == ["red cup", "blue box"]
    assert back.detections[0].track_id == 7 and back.detections[1].track_id is None
    for got, want in zip(back.detections, sent.detections, strict=True):
        assert got.xyxy == pytest.approx(want.xyxy, rel=1e-6)
        assert got.score == pytest.approx(want.score, rel=1e-6)
        assert got.class_index == want.class_index
    assert back.timings_ms["inference"] == pytest.approx(12.0)


def test_set_classes_service_round_trip(ros_context, executor):
    import rclpy
    from lookout_interfaces.srv import SetClasses

    server = rclpy.create_node("fake_detector", context=ros_context)
    client_node = rclpy.create_node("agent", context=ros_context)
    executor.add_node(server)
    executor.add_node(client_node)
    active: list[str] = ["person"]

    def handle(request, response):
        phrases = [p.strip() for p in request.phrases if p.strip()]
        if not phrases:
            response.success, response.message = False, "empty vocabulary"
        else:
            active[:] = list(dict.fromkeys(phrases))
            response.success, response.message = True, f"{len(active)} classes"
        response.active_classes = list(active)
        return response

    server.create_service(SetClasses, "fake_detector/set_classes", handle)
    client = client_node.create_client(SetClasses, "fake_detector/set_classes")
    assert spin_until(executor, client.service_is_ready, timeout=10)

    future = client.call_async(SetClasses.Request(phrases=[" red cup ", "blue box", "red cup"]))
    assert spin_until(executor, future.done, timeout=10)
    reply = future.result()
    assert reply.success and reply.active_classes == ["red cup", "blue box"]

    future = client.call_async(SetClasses.Request(phrases=["  "]))
    assert spin_until(executor, future.done, timeout=10)
    reply = future.result()
    assert not reply.success and reply.active_classes == ["red cup", "blue box"]


def test_generated_action_and_plan_types_have_the_designed_fields():
    from lookout_interfaces.action import ExecuteCommand
    from lookout_interfaces.msg import AgentStatus, Plan

    goal = ExecuteCommand.Goal(command="find the red cup")
    result = ExecuteCommand.Result(success=True, reply="found it", plan_json="{}")
    feedback = ExecuteCommand.Feedback(state="executing", step_index=1, step_count=3, step="approach(red cup)")
    plan = Plan(command="c", reply="r", phrases=["red cup"], step_actions=["search"], plan_json="{}", declined=False)
    status = AgentStatus(state="idle")
    assert goal.command == "find the red cup"
    assert result.success and feedback.step_count == 3
    assert plan.phrases == ["red cup"] and status.state == "idle"
