"""detector_node over real Fast DDS: images in, detections out, vocabulary service, QoS warnings, bad input."""

from __future__ import annotations

import array
import json
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from lookout.perception.images import array_to_image, encode_compressed
from lookout.perception.synthetic import make_world_model, synthetic_frames

from .conftest import spin_until

pytestmark = pytest.mark.ros

IMGSZ = 160
CLASSES = ("red cup", "person", "blue box")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return synthetic_frames(3, width=160, height=128, seed=1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, frames):
    """A random-weight YOLO-World v2 file storing 3 phrases; it records no encoder, so new phrases need CLIP."""
    return make_world_model(
        tmp_path_factory.mktemp("node_models") / "world.pt",
        classes=CLASSES,
        frames=frames,
        imgsz=IMGSZ,
        boxes=10,
    )


def make_node(ctx, model_path, **params):
    from lookout_ros.detector_node import DetectorNode

    values = {
        "model": str(model_path),
        "device": "cpu",
        "imgsz": IMGSZ,
        "conf": 0.25,
        "diagnostics_period": 0.2,
    }
    values.update(params)
    return DetectorNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def image_msg(node, frame: np.ndarray, frame_id: str = "camera_optical", **overrides):
    """A bgr8 sensor_msgs/Image of `frame` stamped now; `overrides` replace fields (to make bad images)."""
    from sensor_msgs.msg import Image

    f = array_to_image(frame, "bgr8")
    values = dict(
        height=f.height, width=f.width, encoding=f.encoding, step=f.step, data=array.array("B", f.data)
    )
    values.update(overrides)
    msg = Image(**values)
    msg.header.frame_id = frame_id
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


def publish_until(executor, pub, make_msg, predicate, timeout=20.0, period=0.15) -> bool:
    """Publish a fresh message every `period` s (best effort may drop some) until `predicate()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(make_msg())
        if spin_until(executor, predicate, timeout=period):
            return True
    return predicate()


@pytest.fixture
def rig(ros_context, executor, model_path):
    """A started detector node plus a peer node that plays camera and consumer."""
    import rclpy

    node = make_node(ros_context, model_path)
    peer = rclpy.create_node("peer", context=ros_context)
    executor.add_node(node)
    executor.add_node(peer)
    return node, peer


def test_images_in_detections_out_with_the_image_header(rig, executor, frames):
    from diagnostic_msgs.msg import DiagnosticArray
    from lookout_interfaces.msg import DetectionArray
    from sensor_msgs.msg import Image

    node, peer = rig
    assert node.detector is not None and node.detector.vocabulary == list(CLASSES)
    dets: list = []
    annotated: list = []
    diags: list = []
    peer.create_subscription(DetectionArray, "detections", dets.append, 10)
    peer.create_subscription(Image, "annotated", annotated.append, qos_profile_sensor_data)
    peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    cam = peer.create_publisher(Image, "image", qos_profile_sensor_data)
    sent: dict[tuple[int, int], str] = {}

    def next_frame():
        msg = image_msg(peer, frames[len(sent) % len(frames)], frame_id=f"cam{len(sent)}")
        sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg.header.frame_id
        return msg

    assert publish_until(executor, cam, next_frame, lambda: len(dets) >= 2 and annotated), (
        "no detections over DDS"
    )
    msg = dets[-1]
    key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
    assert sent.get(key) == msg.header.frame_id, "header (stamp and frame_id) must be the image's"
    assert (msg.image_width, msg.image_height) == (160, 128)
    assert list(msg.vocabulary) == list(CLASSES)
    assert msg.latency_ms > 0 and msg.inference_ms > 0
    assert any(len(m.detections) for m in dets)
    for d in (d for m in dets for d in m.detections):
        assert d.phrase == CLASSES[d.class_index] and d.score > 0.25 and d.track_id == -1
    img = annotated[-1]
    assert (img.width, img.height, img.encoding) == (160, 128, "bgr8")
    assert spin_until(executor, lambda: any(_diag(m).get("frames_out", "0") != "0" for m in diags), timeout=5)
    values = _diag(diags[-1])
    assert {"frames_in", "frames_out", "frames_dropped", "model_ms_mean", "latency_ms_p95", "work_ms_p95"} <= set(values)
    assert float(values["work_ms_mean"]) >= float(values["model_ms_mean"]) > 0  # the worker's time holds the model's


def test_vision_msgs_detections_match_the_lookout_ones(rig, executor, frames):
    """detections_2d (vision_msgs/Detection2DArray, the phrase in class_id) says what `detections` says for
    the same image: same header, same boxes as center and size, same scores."""
    from lookout_interfaces.msg import DetectionArray
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    node, peer = rig
    ours: list = []
    theirs: list = []
    peer.create_subscription(DetectionArray, "detections", ours.append, 10)
    peer.create_subscription(Detection2DArray, "detections_2d", theirs.append, 10)
    cam = peer.create_publisher(Image, "image", qos_profile_sensor_data)

    def stamps(msgs):
        return {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in msgs}

    def paired() -> list:
        mine = stamps(ours)
        return [(mine[k], m) for k, m in stamps(theirs).items() if k in mine and m.detections]

    count = iter(range(10**6))
    assert publish_until(executor, cam, lambda: image_msg(peer, frames[next(count) % len(frames)]),
                         lambda: len(paired()) >= 2), "no vision_msgs detections over DDS"
    for a, b in paired():
        assert b.header.frame_id == a.header.frame_id == "camera_optical"
        assert len(b.detections) == len(a.detections)
        for d, v in zip(a.detections, b.detections, strict=True):
            assert v.header.stamp == a.header.stamp and v.id == ""  # no tracker: no id
            assert v.bbox.center.position.x == pytest.approx((d.x_min + d.x_max) / 2, abs=1e-3)
            assert v.bbox.center.position.y == pytest.approx((d.y_min + d.y_max) / 2, abs=1e-3)
            assert v.bbox.size_x == pytest.approx(d.x_max - d.x_min, abs=1e-3)
            assert v.bbox.size_y == pytest.approx(d.y_max - d.y_min, abs=1e-3)
            (hyp,) = v.results
            assert hyp.hypothesis.class_id == d.phrase and hyp.hypothesis.score == pytest.approx(d.score, rel=1e-6)


def _diag(msg) -> dict[str, str]:
    return {kv.key: kv.value for status in msg.status for kv in status.values}


def test_set_classes_round_trip_and_latched_classes_topic(rig, executor, frames):
    from lookout_interfaces.msg import DetectionArray
    from lookout_interfaces.srv import SetClasses
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    node, peer = rig
    client = peer.create_client(SetClasses, "/detector/set_classes")
    assert spin_until(executor, client.service_is_ready, timeout=10)

    def call(phrases):
        future = client.call_async(SetClasses.Request(phrases=phrases))
        assert spin_until(executor, future.done, timeout=15)
        return future.result()

    reply = call([" person ", "red cup", "person"])
    assert reply.success and list(reply.active_classes) == ["person", "red cup"]
    assert node.get_parameter("classes").value == ["person", "red cup"]
    latched: list = []
    late = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    peer.create_subscription(String, "/detector/classes", latched.append, late)
    assert spin_until(executor, lambda: bool(latched), timeout=10), (
        "a late subscriber must get the vocabulary"
    )
    assert json.loads(latched[-1].data) == ["person", "red cup"]

    empty = call([])
    assert not empty.success and "empty vocabulary" in empty.message
    assert list(empty.active_classes) == ["person", "red cup"]
    needs_clip = call(["dog"])  # a new phrase for a CLIP-trained file without CLIP weights here
    assert not needs_clip.success and "clip" in needs_clip.message.lower()

    dets: list = []
    peer.create_subscription(DetectionArray, "detections", dets.append, 10)
    cam = peer.create_publisher(Image, "image", qos_profile_sensor_data)
    assert publish_until(executor, cam, lambda: image_msg(peer, frames[0]), lambda: bool(dets))
    assert list(dets[-1].vocabulary) == ["person", "red cup"]


def test_incompatible_qos_publisher_is_reported(ros_context, executor, model_path, capfd):
    import rclpy
    from sensor_msgs.msg import Image

    node = make_node(ros_context, model_path, image_qos="reliable")
    peer = rclpy.create_node("camera", context=ros_context)
    executor.add_node(node)
    executor.add_node(peer)
    peer.create_publisher(
        Image, "image", qos_profile_sensor_data
    )  # best effort cannot feed a reliable reader
    assert spin_until(executor, lambda: bool(node.qos_warnings), timeout=15), "no incompatible-QoS warning"
    assert "RELIABILITY" in node.qos_warnings[0] and "image_qos" in node.qos_warnings[0]
    assert "incompatible QoS on 'image'" in capfd.readouterr().err  # and it went to the log


def test_incompatible_qos_is_reported_while_a_faster_camera_keeps_the_node_busy(ros_context, executor, model_path,
                                                                                frames):
    """The QoS event must not wait for an idle moment that a camera faster than the detector never gives."""
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    node = make_node(ros_context, model_path, image_qos="reliable", subscribe_compressed=True)
    peer = rclpy.create_node("camera", context=ros_context)
    executor.add_node(node)
    executor.add_node(peer)
    cam = peer.create_publisher(Image, "image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    msg = image_msg(peer, frames[0])
    deadline = time.monotonic() + 20
    while node.stats.frames_out < 3 and time.monotonic() < deadline:  # streaming, and busy
        cam.publish(msg)
        executor.spin_once(timeout_sec=0.001)
    peer.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)  # best effort: incompatible
    while not node.qos_warnings and time.monotonic() < deadline:
        for _ in range(20):
            cam.publish(msg)
        executor.spin_once(timeout_sec=0.001)
    assert node.qos_warnings and "image/compressed" in node.qos_warnings[0], "no warning while busy"
    assert node.stats.frames_dropped > 0, "the camera did not outrun the detector: the test did not test that"


def test_bad_frames_are_rejected_clearly_and_the_node_keeps_running(rig, executor, frames):
    from lookout_interfaces.msg import DetectionArray
    from sensor_msgs.msg import Image

    node, peer = rig
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    cam = peer.create_publisher(Image, "image", reliable)
    good = frames[0]
    cases = [
        (lambda: image_msg(peer, good, encoding="yuv422"), "unsupported image encoding"),
        (lambda: image_msg(peer, good, height=0, width=0, step=0, data=array.array("B")), "zero-size"),
        (lambda: image_msg(peer, good, step=100), "step 100 is smaller"),
        (lambda: image_msg(peer, good, data=array.array("B", bytes(10))), "10 bytes"),
    ]
    for make, expected in cases:
        before = node.stats.frames_rejected
        assert publish_until(executor, cam, make, lambda b=before: node.stats.frames_rejected > b, timeout=10)
        assert expected in node.stats.last_error
    dets: list = []
    peer.create_subscription(DetectionArray, "detections", dets.append, 10)
    assert publish_until(executor, cam, lambda: image_msg(peer, good), lambda: bool(dets)), (
        "node stopped working"
    )

    def before_1970():  # a stamp rclpy's Time refuses: the detections still go out, with that header
        msg = image_msg(peer, good)
        msg.header.stamp.sec = -5
        return msg

    assert publish_until(executor, cam, before_1970, lambda: any(d.header.stamp.sec == -5 for d in dets))


def test_compressed_images_are_detected_too(ros_context, executor, model_path, frames):
    import rclpy
    from lookout_interfaces.msg import DetectionArray
    from sensor_msgs.msg import CompressedImage

    node = make_node(ros_context, model_path, subscribe_compressed=True)
    peer = rclpy.create_node("peer", context=ros_context)
    executor.add_node(node)
    executor.add_node(peer)
    dets: list = []
    peer.create_subscription(DetectionArray, "detections", dets.append, 10)
    cam = peer.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
    payload = array.array("B", encode_compressed(frames[0], "png"))

    def make():
        msg = CompressedImage(format="png", data=payload)
        msg.header.stamp, msg.header.frame_id = peer.get_clock().now().to_msg(), "cam"
        return msg

    assert publish_until(executor, cam, make, lambda: bool(dets))
    assert dets[-1].header.frame_id == "cam" and (dets[-1].image_width, dets[-1].image_height) == (160, 128)


def test_missing_model_fails_configure_and_the_node_recovers(ros_context, executor, model_path, tmp_path):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node(ros_context, tmp_path / "missing.pt")
    peer = rclpy.create_node("peer", context=ros_context)
    executor.add_node(node)
    executor.add_node(peer)
    assert node.detector is None
    diags: list = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    assert spin_until(executor, lambda: bool(diags), timeout=10)
    status = diags[-1].status[0]
    assert status.level == DiagnosticStatus.ERROR and "missing.pt not found" in status.message
    node.set_parameters([Parameter("model", value=str(model_path))])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert node.detector is not None and node.detector.vocabulary == list(CLASSES)


def test_live_parameters_and_lifecycle_release(rig, executor, frames):
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState
    from lookout_interfaces.msg import DetectionArray
    from rclpy.lifecycle import TransitionCallbackReturn
    from sensor_msgs.msg import Image

    node, peer = rig
    assert node.set_parameters([Parameter("conf", value=0.6), Parameter("iou", value=0.5)])[0].successful
    assert (node.detector.conf, node.detector.iou) == (0.6, 0.5)
    assert not node.set_parameters([Parameter("conf", value=1.5)])[0].successful  # out of the declared range
    refused = node.set_parameters([Parameter("image_qos", value="fast")])[0]
    assert not refused.successful and "sensor_data" in refused.reason
    refused = node.set_parameters([Parameter("classes", value=["  "])])[0]
    assert not refused.successful and "blank" in refused.reason
    assert node.set_parameters([Parameter("classes", value=["blue box"])])[0].successful
    assert node.detector.vocabulary == ["blue box"]

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    dets: list = []
    peer.create_subscription(DetectionArray, "detections", dets.append, 10)
    cam = peer.create_publisher(Image, "image", qos_profile_sensor_data)
    publish_until(executor, cam, lambda: image_msg(peer, frames[0]), lambda: bool(dets), timeout=1.5)
    assert not dets, "an inactive node must not publish detections"
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.detector is None
    client = peer.create_client(GetState, "/detector/get_state")
    assert spin_until(executor, client.service_is_ready, timeout=10)
    future = client.call_async(GetState.Request())
    assert spin_until(executor, future.done, timeout=10)
    assert future.result().current_state.id == State.PRIMARY_STATE_UNCONFIGURED


def test_parameters_load_from_the_shipped_params_file(ros_context, executor, model_path, tmp_path):
    from lookout_ros.detector_node import DetectorNode

    from lookout.paths import config_dir
    from lookout.perception.config import load_detector_config

    path = config_dir() / "detector.yaml"
    overrides = {"model": model_path, "device": "cpu", "imgsz": IMGSZ, "embedding_cache_dir": tmp_path}
    cli = ["--ros-args", "--params-file", str(path)] + [
        a for k, v in overrides.items() for a in ("-p", f"{k}:={v}")
    ]
    node = DetectorNode(context=ros_context, cli_args=cli)
    executor.add_node(node)
    cfg = load_detector_config(path)
    for name in (
        "conf",
        "iou",
        "max_det",
        "half",
        "tracker",
        "image_qos",
        "text_encoder",
        "publish_annotated",
    ):
        assert node.get_parameter(name).value == getattr(cfg, name), name
    assert node.detector is not None and node.detector.imgsz == IMGSZ and node.detector.iou == cfg.iou


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "mono16"])
def test_the_node_reads_rclpy_serialized_images_exactly_as_rclpy_does(encoding):
    """detector_node decodes raw CDR itself (lookout.perception.cdr); it must agree with rclpy's own decoding."""
    import array

    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from lookout.perception.cdr import read_compressed_image, read_image
    from lookout.perception.images import image_msg_to_bgr8

    rng = np.random.default_rng(1)
    channels, itemsize = {"bgr8": (3, 1), "rgba8": (4, 1), "mono16": (1, 2)}[encoding]
    h, w, pad = 5, 7, 3
    step = w * channels * itemsize + pad
    msg = Image(height=h, width=w, encoding=encoding, step=step, is_bigendian=0,
                data=array.array("B", rng.integers(0, 255, h * step, dtype=np.uint8).tobytes()))  # fmt: skip
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 17, 999_999_999, "optical_frame"
    header, fields = read_image(serialize_message(msg))
    assert (header.sec, header.nanosec, header.frame_id) == (17, 999_999_999, "optical_frame")
    np.testing.assert_array_equal(image_msg_to_bgr8(fields), image_msg_to_bgr8(msg))
    jpeg = CompressedImage(format="jpeg", data=array.array("B", b"\xff\xd8 not really a jpeg"))
    jpeg.header.frame_id = "c"
    header, fields = read_compressed_image(serialize_message(jpeg))
    assert header.frame_id == "c" and fields.format == "jpeg" and bytes(fields.data) == bytes(jpeg.data)
