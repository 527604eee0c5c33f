"""detector_node: the open-vocabulary detector as a ROS 2 lifecycle node (thin: all logic is in lookout.perception).

Lifecycle: configure loads the model, activate subscribes and starts the worker, deactivate stops them,
cleanup frees the model (and GPU memory). With `autostart` (default) it configures and activates itself.

    image (sensor_msgs/Image), image/compressed (optional)  ->  detections (lookout_interfaces/DetectionArray)
                                                                 detections_2d (vision_msgs, when installed)
                                                                 annotated (sensor_msgs/Image, while subscribed)
    ~/set_classes (lookout_interfaces/SetClasses)               ~/classes (std_msgs/String JSON list, latched)
    /diagnostics (diagnostic_msgs/DiagnosticArray)

Images use sensor-data QoS (best effort, keep last 1) unless `image_qos: reliable`; an incompatible publisher
is reported as a warning instead of silently yielding nothing. Only the newest frame is processed.

Frames never go through the node's executor: a hidden node (`_<name>_images`) holds the image subscriptions and
the detection worker receives on it between frames, as serialized bytes, decoding only what it detects on
(`lookout.perception.cdr`). A frame's detections are published while the GPU runs the next frame
(`FramePipeline`). Measured why on the H200: a camera faster than the detector made the executor thread
convert every frame in Python, holding the GIL the worker needed.

Run: `detector_node --ros-args --params-file config/detector.yaml -r image:=/camera/image_raw`
"""

from __future__ import annotations

import array
import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lookout_interfaces.msg import DetectionArray
from lookout_interfaces.srv import SetClasses
from pydantic import ValidationError
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
)
from rclpy.serialization import deserialize_message
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from lookout.perception.annotate import draw_detections
from lookout.perception.cdr import UnsupportedCdr, read_compressed_image, read_image
from lookout.perception.config import DetectorConfig, parameter_specs
from lookout.perception.detector import Detector
from lookout.perception.errors import PerceptionError
from lookout.perception.images import bgr8_to_image, compressed_msg_to_bgr8, image_msg_to_bgr8
from lookout.perception.streaming import FramePipeline, SequenceGaps, StreamStats
from lookout_ros.conversions import result_to_msg
from lookout_ros.spinning import single_node_executor

try:  # vision_msgs: apt's package, or the 2D subset in ros2_ws/src/vision_msgs (no PyPI wheel); else no detections_2d
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:
    Detection2DArray = None

_PARAM_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "float": ParameterType.PARAMETER_DOUBLE,
    "str": ParameterType.PARAMETER_STRING,
    "str_list": ParameterType.PARAMETER_STRING_ARRAY,
}
LIVE_PARAMETERS = ("conf", "iou", "max_det", "classes")  # applied at once; the others at the next configure
RECENT_ERROR_S = 10.0  # diagnostics warn about a rejected frame for this long


def image_qos(kind: str) -> QoSProfile:
    """Keep-last-1 image QoS: sensor data (best effort, REP 2003) or reliable."""
    reliability = ReliabilityPolicy.RELIABLE if kind == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


def _descriptor(spec) -> ParameterDescriptor:
    desc = ParameterDescriptor(type=_PARAM_TYPES[spec.kind], description=spec.description)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.kind == "float" and spec.minimum is not None and spec.maximum is not None:
        desc.floating_point_range = [
            FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum))
        ]
    if spec.kind == "int" and spec.minimum is not None and spec.maximum is not None:
        desc.integer_range = [
            IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=int(spec.step or 1))
        ]
    return desc


class DetectorNode(LifecycleNode):
    """Lifecycle node wrapping `lookout.perception.Detector`."""

    SINGLE_THREADED_EXECUTOR = True  # detection runs on its own threads (see lookout_ros.spinning)

    def __init__(self, node_name: str = "detector", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for spec in parameter_specs():
            # rclpy types an empty list as a byte array: declare those by type (unset until given).
            default = (
                Parameter.Type.STRING_ARRAY if spec.kind == "str_list" and not spec.default else spec.default
            )
            self.declare_parameter(spec.name, default, _descriptor(spec))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.detector: Detector | None = None
        self.stats = StreamStats()
        self.qos_warnings: list[str] = []
        self._input: _ImageInput | None = None
        self._pipeline: FramePipeline[tuple[bytes, bool], _Detected] = FramePipeline(
            self._detect_frame, self._publish_result, self.stats, pump=self._pump, name="detector"
        )
        self._service = None
        self._det_pub = self._ann_pub = self._vis_pub = None
        self._applying_service_classes = False
        self._service_group = MutuallyExclusiveCallbackGroup()
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self._classes_pub = self.create_publisher(String, "~/classes", latched)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Diagnostics run in every lifecycle state: "no model: <why>" is what a user needs to see first.
        period = float(self.get_parameter("diagnostics_period").value)
        self._diag_timer = self.create_timer(period, self._publish_diagnostics)
        if (
            self.get_parameter("autostart").value
            and self.trigger_configure() == TransitionCallbackReturn.SUCCESS
        ):
            self.trigger_activate()

    # --- parameters ----------------------------------------------------------------------------------------

    def _config(self, changes: dict[str, Any] | None = None) -> DetectorConfig:
        values = {}
        for spec in parameter_specs():
            try:
                values[spec.name] = self.get_parameter(spec.name).value
            except rclpy.exceptions.ParameterUninitializedException:  # `classes` not given: the model's own
                values[spec.name] = spec.default
        values.update(changes or {})
        if values.get("classes") is None:
            values["classes"] = []
        return DetectorConfig(**values)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        try:
            cfg = self._config(changes)
        except ValidationError as exc:
            return SetParametersResult(successful=False, reason=str(exc).replace("\n", " "))
        det = self.detector
        if det is None:
            return SetParametersResult(successful=True)
        try:
            if "classes" in changes and not self._applying_service_classes:
                det.set_vocabulary(cfg.classes or det.model_classes)
                self._publish_classes()
            det.conf, det.iou, det.max_det = cfg.conf, cfg.iou, cfg.max_det
        except (PerceptionError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        later = sorted(set(changes) - set(LIVE_PARAMETERS))
        if later:
            self.get_logger().info(f"parameters {later} take effect at the next configure")
        return SetParametersResult(successful=True)

    # --- lifecycle -----------------------------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            cfg = self._config()
            self.detector = Detector.from_config(cfg)
        except (PerceptionError, ValidationError, ValueError, OSError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self.stats.set_error(str(exc))
            return TransitionCallbackReturn.FAILURE
        self.stats.set_error("")
        det = self.detector
        self.get_logger().info(
            f"loaded {det.model_path} on {det.device} ({'fp16' if det.half else 'fp32'}, imgsz {det.imgsz}), "
            f"vocabulary {det.vocabulary}"
            + (f", text encoder {det.text_encoder_id}" if det.text_encoder_id else " (closed set)")
        )
        warn = PublisherEventCallbacks(
            incompatible_qos=lambda e: self._qos_warning("detections", e, offered=True)
        )
        self._det_pub = self.create_lifecycle_publisher(
            DetectionArray, "detections", 10, event_callbacks=warn
        )
        if cfg.publish_annotated:
            self._ann_pub = self.create_lifecycle_publisher(Image, "annotated", image_qos("sensor_data"))
        if Detection2DArray is not None:
            self._vis_pub = self.create_lifecycle_publisher(Detection2DArray, "detections_2d", 10)
        self._service = self.create_service(
            SetClasses, "~/set_classes", self._on_set_classes, callback_group=self._service_group
        )
        self._publish_classes()
        return super().on_configure(state)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        cfg = self._config()
        self._input = _ImageInput(self, image_qos(cfg.image_qos), cfg.subscribe_compressed)
        self._pipeline.start()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_streaming()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_streaming()
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._stop_streaming()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_streaming(self) -> None:
        # rclpy's context shutdown (Ctrl-C) destroys the nodes while holding the context's lock, which the worker
        # needs to finish its spin of the image input: there, only tell it to stop; the context destroys the input.
        in_context_shutdown = _holds_lock(self.context._lock)
        self._pipeline.stop(timeout=0.0 if in_context_shutdown else 10.0)  # first: the worker spins the input
        if self._input is not None:
            if not in_context_shutdown:
                self._input.close()
            self._input = None

    def _release(self) -> None:
        for pub in (self._det_pub, self._ann_pub, self._vis_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._det_pub = self._ann_pub = self._vis_pub = None
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None
        if self.detector is not None:
            self.detector.close()  # frees GPU memory (torch.cuda.empty_cache) when on CUDA
            self.detector = None

    def destroy_node(self) -> None:
        self._stop_streaming()
        self._release()
        super().destroy_node()

    # --- streaming -----------------------------------------------------------------------------------------

    def _qos_warning(self, topic: str, event: Any, offered: bool) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        side = "a subscriber requests" if offered else "a publisher offers"
        text = (
            f"incompatible QoS on '{topic}': {side} an incompatible {policy} policy "
            f"({event.total_count} so far); no messages flow between them. "
            + ("Set image_qos to match the camera (sensor_data = best effort)." if not offered else "")
        )
        self.get_logger().warning(text)
        self.qos_warnings.append(text)  # after the log line: image warnings come from the worker thread

    @property
    def input_subscriptions(self) -> list[Any]:
        """The image subscriptions (on the hidden input node while active): what `subscriptions` lacks."""
        inp = self._input
        return list(inp.node.subscriptions) if inp is not None else []

    # `_stop_streaming` may clear `_input` from another thread: read it once.
    def _pump(self, timeout: float) -> None:  # the pipeline's worker, idle
        inp = self._input
        if inp is not None:
            inp.receive(timeout)

    def _poll_input(self) -> None:  # the worker, while the GPU runs a frame
        inp = self._input
        if inp is not None:
            inp.take_ready()

    def _detect_frame(self, item: tuple[bytes, bool], overlap: Callable[[], None]) -> _Detected | None:
        """Worker thread: decode the newest frame and detect; a bad frame is counted and reported, not raised.
        While the GPU runs it, the previous frame's detections go out (`overlap`) and the next frame comes in."""
        det = self.detector
        if det is None:
            return None
        raw, compressed = item
        t0 = time.perf_counter()
        try:
            header, bgr = _decode(raw, compressed)
            result = det.detect(bgr, overlap=lambda: (overlap(), self._poll_input()))
        except PerceptionError as exc:
            self.stats.frame_rejected(str(exc))
            self.get_logger().error(f"frame rejected: {exc}", throttle_duration_sec=2.0)
            return None
        except Exception as exc:  # never let one frame kill the worker; report it
            self.stats.frame_rejected(f"{type(exc).__name__}: {exc}")
            self.get_logger().error(
                f"detection failed: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0
            )
            return None
        return _Detected(header, bgr, result, (time.perf_counter() - t0) * 1e3)

    def _publish_result(self, done: _Detected) -> None:
        """Worker thread: the messages of one detected frame, in frame order."""
        header, result = done.header, done.result
        latency_ms = None
        if header.stamp.sec >= 0 and (header.stamp.sec or header.stamp.nanosec):  # rclpy's Time refuses sec < 0
            latency_ms = (self.get_clock().now() - Time.from_msg(header.stamp)).nanoseconds / 1e6
        out = result_to_msg(result, header, latency_ms or 0.0)
        if self._det_pub is not None:
            self._det_pub.publish(out)
        vis = self._vis_pub
        if vis is not None and vis.get_subscription_count() > 0:  # 0.4 ms per frame of Python: only when read
            vis.publish(_to_vision_msgs(result, header))
        ann = self._ann_pub
        if ann is not None and ann.get_subscription_count() > 0:
            ann.publish(_image_msg(draw_detections(done.bgr, result), header))
        self.stats.frame_out(result.timings_ms.get("inference", 0.0), latency_ms, done.work_ms)

    # --- vocabulary ----------------------------------------------------------------------------------------

    def _on_set_classes(
        self, request: SetClasses.Request, response: SetClasses.Response
    ) -> SetClasses.Response:
        det = self.detector
        if det is None:
            response.success, response.message = False, "detector is not configured (no model loaded)"
            response.active_classes = []
            return response
        try:
            vocab = det.set_vocabulary(list(request.phrases))
        except (PerceptionError, ValueError) as exc:
            response.success, response.message = False, str(exc)
            response.active_classes = det.vocabulary
            self.get_logger().warning(f"set_classes refused: {exc}")
            return response
        self._applying_service_classes = True
        try:
            self.set_parameters([Parameter("classes", Parameter.Type.STRING_ARRAY, vocab)])
        finally:
            self._applying_service_classes = False
        self._publish_classes()
        response.success, response.message, response.active_classes = True, f"{len(vocab)} classes", vocab
        return response

    def _publish_classes(self) -> None:
        if self.detector is not None:
            self._classes_pub.publish(String(data=json.dumps(self.detector.vocabulary)))

    # --- diagnostics ---------------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        s = self.stats.summary()
        det = self.detector
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: detector",
            hardware_id=str(det.device if det else "none"),
        )
        if det is None:
            status.level, status.message = DiagnosticStatus.ERROR, f"no model: {s['last_error']}"
        elif s["frames_out"] == 0:
            status.level, status.message = DiagnosticStatus.WARN, "no frames processed yet"
        elif s["last_error"] and 0 <= s["last_error_age_s"] < RECENT_ERROR_S:
            status.level, status.message = DiagnosticStatus.WARN, f"rejected a frame: {s['last_error']}"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"{s['fps_out']:.1f} FPS"
        values = {k: (f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in s.items()}
        if det is not None:
            values.update(
                vocabulary=json.dumps(det.vocabulary),
                model=str(det.model_path),
                encoder_calls=str(det.encoder_calls),
            )
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def _holds_lock(lock: Any) -> bool:
    """Whether this thread holds `lock` (an RLock); False where that cannot be told."""
    is_owned = getattr(lock, "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


class _ImageInput:
    """The image subscriptions, on a hidden node of their own that only the detection worker spins; each frame
    goes to the pipeline as serialized bytes, with the frames its publisher sent that never arrived.

    Topic names are resolved by the detector node, so its remappings and namespace apply as usual.
    """

    # QoS event callbacks run only when the executor spins, which `receive` does when no frame waits; with a
    # camera faster than the detector that is never, so `take_ready` also spins once this often.
    EVENTS_PERIOD_S = 1.0

    def __init__(self, owner: DetectorNode, qos: QoSProfile, compressed: bool) -> None:
        self.node = rclpy.create_node(
            f"_{owner.get_name()}_images", namespace=owner.get_namespace(), context=owner.context,
            use_global_arguments=False, enable_rosout=False, start_parameter_services=False,
        )  # fmt: skip
        self.executor = SingleThreadedExecutor(context=owner.context)
        self.executor.add_node(self.node)
        self._gaps = SequenceGaps()
        self._events_due = time.monotonic() + self.EVENTS_PERIOD_S
        offer = owner._pipeline.offer
        topics = [(Image, "image", False)] + ([(CompressedImage, "image/compressed", True)] if compressed else [])
        for msg_type, topic, is_compressed in topics:
            events = SubscriptionEventCallbacks(
                incompatible_qos=lambda e, t=topic: owner._qos_warning(t, e, offered=False)
            )
            self.node.create_subscription(
                msg_type, owner.resolve_topic_name(topic),
                lambda raw, info, c=is_compressed: offer((raw, c), missed=self._missed(info)),
                qos, event_callbacks=events, raw=True,
            )  # fmt: skip

    def _missed(self, info: dict) -> int:
        gid = info.get("publisher_gid") or {}
        return self._gaps.missed(bytes(gid.get("data", b"")), info.get("publication_sequence_number"))

    def receive(self, timeout: float) -> None:
        """Take what has arrived, else wait up to `timeout` s for it (QoS event callbacks run there too)."""
        if self.take_ready():
            return
        self._spin_once(timeout)

    def _spin_once(self, timeout: float) -> None:
        self._events_due = time.monotonic() + self.EVENTS_PERIOD_S
        try:
            self.executor.spin_once(timeout_sec=timeout)
        except (ExternalShutdownException, ShutdownException):  # the context is going: stop is on its way
            time.sleep(0.01)

    def take_ready(self) -> bool:
        """Hand every frame that is waiting in the middleware to its callback now; whether there was one.

        The same take that rclpy's executor does for a subscription (`handle.take_message`), minus the
        executor's own Python (about 0.3 ms a call).
        """
        took = False
        for sub in self.node.subscriptions:
            with sub.handle:
                taken = sub.handle.take_message(sub.msg_type, sub.raw)
            if taken is not None:
                sub.callback(*taken)
                took = True
        if took and time.monotonic() >= self._events_due:  # busy for a while: let QoS events through
            self._spin_once(0.0)
        return took

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


class _Detected(NamedTuple):
    header: Header
    bgr: Any
    result: Any
    work_ms: float  # the worker's time on the frame: decoding, conversion, detection


def _decode(raw: bytes, compressed: bool) -> tuple[Header, Any]:
    """Header and BGR pixels of a serialized Image or CompressedImage, read in place where the bytes are
    classic CDR, through rclpy's deserializer otherwise (e.g. XCDR2 from another middleware)."""
    try:
        stamped, fields = read_compressed_image(raw) if compressed else read_image(raw)
    except UnsupportedCdr:
        msg = deserialize_message(raw, CompressedImage if compressed else Image)
        return msg.header, compressed_msg_to_bgr8(msg) if compressed else image_msg_to_bgr8(msg)
    header = Header(frame_id=stamped.frame_id)
    header.stamp.sec, header.stamp.nanosec = stamped.sec, stamped.nanosec
    return header, compressed_msg_to_bgr8(fields) if compressed else image_msg_to_bgr8(fields)


def _image_msg(bgr: Any, header: Any) -> Image:
    fields = bgr8_to_image(bgr)
    return Image(
        header=header,
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=int(fields.is_bigendian),
        step=fields.step,
        data=array.array("B", fields.data),
    )


def _to_vision_msgs(result: Any, header: Any) -> Any:
    """vision_msgs/Detection2DArray with the phrase in class_id (only called when vision_msgs exists)."""
    out = Detection2DArray(header=header)
    for d in result.detections:
        det = Detection2D(header=header, id="" if d.track_id is None else str(d.track_id))
        det.bbox.center.position.x, det.bbox.center.position.y = d.center
        det.bbox.size_x, det.bbox.size_y = d.width, d.height
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = d.phrase, float(d.score)
        det.results.append(hyp)
        out.detections.append(det)
    return out


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = DetectorNode()
    executor = single_node_executor(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
