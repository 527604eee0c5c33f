"""Perception benchmark: raw Ultralytics `predict` vs the core `Detector` vs `detector_node` over DDS.

One run measures all three on the same model file, image size and frames, and prints a table with ratios
to the `predict` baseline measured in the same run:

    scripts/run.sh python bench/perception.py --device cpu --frames 30 --out results.json
    PYTHONPATH=src python bench/perception.py --device cuda --frames 500 --no-node --variants   # no ROS there

Without `--model`, a YOLO-World v2 architecture (`--arch`, default yolov8s-worldv2.yaml) is built with random
weights and calibrated on the frames so that it reports about `--boxes` boxes per frame (an untrained head
reports none, which would make NMS free). The node part starts `detector_node` in a second process. Its
throughput: a camera process publishes the frames over Fast DDS faster than the core Detector can run
(`--camera-rate`), and this process counts the answers per second; the node keeps only the newest frame, so
the rest are superseded by design. Its latency (detections' arrival minus the image stamp): one frame in
flight at a time, so without queueing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import lookout  # noqa: F401
except ImportError:  # a bare checkout (e.g. the GPU machine): use the sources directly
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lookout.perception.detector import Detector  # noqa: E402
from lookout.perception.synthetic import make_world_model, synthetic_frames  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def predict_runner(model_path: Path, args):
    """Ultralytics' own predict, as users call it (one frame per call, results copied to the CPU)."""
    from ultralytics import YOLO

    yolo = YOLO(str(model_path))
    kw = dict(imgsz=args.imgsz, conf=args.conf, device=args.device, half=args.half, verbose=False)

    def run(frame: np.ndarray) -> tuple[np.ndarray, dict]:
        return yolo.predict(frame, **kw)[0].boxes.data.cpu().numpy()[:, :6], {}  # x1 y1 x2 y2 score class

    return run, lambda: None


def detector_runner(model_path: Path, args, **kw):
    options = dict(imgsz=args.imgsz, conf=args.conf, device=args.device, half=args.half)
    options.update(kw)
    det = Detector(model_path, **options)

    def run(frame: np.ndarray) -> tuple[np.ndarray, dict]:
        result = det.detect(frame)
        rows = [[*d.xyxy, d.score, d.class_index] for d in result.detections]
        return np.asarray(rows, dtype=np.float32).reshape(-1, 6), result.timings_ms

    return run, det.close


def bench_interleaved(runners: list[tuple[str, object]], frames: list[np.ndarray], args) -> list[dict]:
    """Time every runner on every frame, alternating their order frame by frame, so that load changes on a
    shared machine hit all of them alike (ratios stay fair even when absolute numbers wander)."""
    for f in frames[: args.warmup]:
        for _, run in runners:
            run(f)
    times: dict[str, list[float]] = {name: [] for name, _ in runners}
    boxes: dict[str, list[int]] = {name: [] for name, _ in runners}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name, _ in runners}
    agreement: dict[str, list[float]] = {name: [] for name, _ in runners}
    for i, f in enumerate(frames):
        found = {}
        for name, run in runners if i % 2 == 0 else runners[::-1]:
            t = time.perf_counter()
            rows, timings = run(f)
            sync(args.device)
            times[name].append((time.perf_counter() - t) * 1e3)
            boxes[name].append(len(rows))
            found[name] = rows
            for k in ("preprocess", "inference", "postprocess"):
                if k in timings:
                    stages[name].setdefault(k, []).append(timings[k])
        for name, _ in runners:
            agreement[name].append(matched_fraction(found[runners[0][0]], found[name]))
    rows = []
    for name, _ in runners:
        row = summarize(name, times[name], boxes[name])
        row["same_boxes_as_predict"] = statistics.fmean(agreement[name])
        if stages[name]:
            row["stages_ms"] = {k: statistics.fmean(v) for k, v in stages[name].items()}
        rows.append(row)
    return rows


def matched_fraction(ref: np.ndarray, ours: np.ndarray, min_iou: float = 0.9) -> float:
    """Share of reference boxes that `ours` also reports (same class, IoU >= min_iou): a correctness check
    on the device (fp16, CUDA graphs) next to the speed numbers."""
    if len(ref) == 0:
        return 1.0 if len(ours) == 0 else 0.0
    if len(ours) == 0:
        return 0.0
    lt = np.maximum(ref[:, None, :2], ours[None, :, :2])
    rb = np.minimum(ref[:, None, 2:4], ours[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda b: np.prod(b[:, 2:4] - b[:, :2], axis=1)  # noqa: E731
    iou = inter / (area(ref)[:, None] + area(ours)[None, :] - inter + 1e-9)
    same_class = ref[:, None, 5] == ours[None, :, 5]
    return float(((iou >= min_iou) & same_class).any(axis=1).mean())


def summarize(name: str, times_ms: list[float], boxes: list[int]) -> dict:
    total_s = sum(times_ms) / 1e3
    return {
        "name": name,
        "frames": len(times_ms),
        "fps": len(times_ms) / total_s,
        "ms_mean": statistics.fmean(times_ms),
        "latency_p50_ms": percentile(times_ms, 50),
        "latency_p95_ms": percentile(times_ms, 95),
        "boxes_per_frame": statistics.fmean(boxes) if boxes else 0.0,
    }


def serialized_frames(frames: list[np.ndarray]) -> list[bytes]:
    """Each frame as a serialized bgr8 `sensor_msgs/Image` (little-endian CDR), to be sent with `stamped`.

    Publishing bytes spares the camera rclpy's Python conversion of every frame, which would otherwise limit
    the rate this process can send at (a C++ camera driver has no such cost)."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from lookout.perception.cdr import CDR_LE
    from lookout.perception.images import array_to_image

    out = []
    for f in frames:
        fields = array_to_image(f, "bgr8")
        m = Image(height=fields.height, width=fields.width, encoding="bgr8", step=fields.step, data=bytes(fields.data))
        m.header.frame_id = "bench"
        raw = serialize_message(m)
        assert int.from_bytes(raw[:2], "big") == CDR_LE, "expected little-endian CDR"
        out.append(raw)
    return out


def stamped(raw: bytes, ns: int) -> bytes:
    """`raw` (from `serialized_frames`) with header.stamp = `ns`: sec and nanosec are its first 8 bytes."""
    return raw[:4] + struct.pack("<iI", ns // 10**9, ns % 10**9) + raw[12:]


def bench_image_qos(kind: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE) if kind == "reliable" else qos_profile_sensor_data


def camera_process(domain: int, args, rate: float, sent, stop) -> None:
    """A camera in its own process: `args.frames` synthetic frames published at `rate` per second, each with
    a fresh stamp, until `stop`."""
    import rclpy
    from sensor_msgs.msg import Image

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("bench_camera_stream", context=ctx, start_parameter_services=False)
    pub = node.create_publisher(Image, "image", bench_image_qos(args.image_qos))
    templates = serialized_frames(synthetic_frames(args.frames, args.width, args.height, seed=0))
    period, due, i = 1.0 / rate, time.perf_counter(), 0
    while not stop.is_set():
        now = time.perf_counter()
        if now < due:
            time.sleep(min(due - now, 0.01))
            continue
        pub.publish(stamped(templates[i % len(templates)], node.get_clock().now().nanoseconds))
        i += 1
        sent.value = i
        due = max(due + period, now - period)
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def bench_node(model_path: Path, frames: list[np.ndarray], args, core_fps: float) -> dict:
    """detector_node in its own process; this process (and a camera process) play camera and consumer over
    Fast DDS. Frames go out pre-serialized (`serialized_frames`), and the consumer reads only the stamp of each
    answer until the timing ends, so that these processes' Python is not the bottleneck.
    """
    import rclpy
    import rclpy.executors
    from diagnostic_msgs.msg import DiagnosticArray
    from lookout_interfaces.msg import DetectionArray
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from lookout.perception.cdr import read_header

    domain = int(os.environ.get("ROS_DOMAIN_ID", random.randint(100, 200)))
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    params = {
        "model": str(model_path),
        "device": args.device,
        "imgsz": args.imgsz,
        "conf": args.conf,
        "half": args.half,
        "publish_annotated": False,
        "image_qos": args.image_qos,
    }
    cmd = [sys.executable, "-m", "lookout_ros.detector_node", "--ros-args", "-r", "__node:=bench_detector"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("bench_camera", context=ctx)
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        ready: list = []
        got: list[tuple[float, bytes]] = []
        node.create_subscription(
            String, "/bench_detector/classes", ready.append,
            rclpy.qos.QoSProfile(depth=1, durability=rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL),
        )  # fmt: skip
        node.create_subscription(DetectionArray, "detections", lambda m: got.append((time.time(), m)), 50, raw=True)
        diagnostics: list = []
        node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        pub = node.create_publisher(Image, "image", bench_image_qos(args.image_qos))
        templates = serialized_frames(frames)

        def msg(i: int) -> tuple[bytes, int]:
            now = node.get_clock().now().nanoseconds
            return stamped(templates[i % len(templates)], now), now

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (ready and pub.get_subscription_count()):
            if proc.poll() is not None:
                raise RuntimeError(f"detector_node exited: {proc.stderr.read()[-2000:]}")
            executor.spin_once(timeout_sec=0.05)
        if not ready:
            raise RuntimeError("detector_node did not become active within 120 s")

        def stamp_of(raw: bytes) -> int:
            h = read_header(raw)
            return h.sec * 10**9 + h.nanosec

        def stream(count: int, inflight: int = 1) -> tuple[list, list[float], float, int]:
            """Run until `count` answers, keeping `inflight` frames pending (1: latency without queueing)."""
            got.clear()
            pending: list[int] = []
            answered: list[tuple[float, bytes]] = []
            sent = dropped = seen = 0
            start = time.perf_counter()
            last_progress = time.monotonic()
            while len(answered) < count:
                while len(pending) < inflight:
                    raw, stamp = msg(sent)
                    pub.publish(raw)
                    pending.append(stamp)
                    sent += 1
                executor.spin_once(timeout_sec=0.01)
                for t, m in got[seen:]:
                    s = stamp_of(m)
                    if s not in pending:  # a late answer from an earlier round
                        continue
                    while pending[0] != s:  # older frames were superseded by this one in the node
                        pending.pop(0)
                        dropped += 1
                    pending.pop(0)
                    answered.append((t, m))
                    last_progress = time.monotonic()
                seen = len(got)
                if (
                    time.monotonic() - last_progress > 2.0
                ):  # a frame was lost in transport: stop waiting for it
                    dropped += len(pending)
                    pending.clear()
                    last_progress = time.monotonic()
            elapsed = time.perf_counter() - start
            lat = [(t - stamp_of(m) * 1e-9) * 1e3 for t, m in answered]
            return answered, lat, elapsed, dropped

        def camera_stream(count: int, rate: float) -> tuple[list, list[float], float, int, float]:
            """Answers to a camera process at `rate`: count them over `count` answers after the first."""
            import multiprocessing as mp

            spawn = mp.get_context("spawn")
            sent, stop = spawn.Value("q", 0), spawn.Event()
            cam = spawn.Process(target=camera_process, args=(domain, args, rate, sent, stop), daemon=True)
            cam.start()
            try:
                got.clear()
                deadline = time.monotonic() + 60
                while not got and time.monotonic() < deadline:
                    executor.spin_once(timeout_sec=0.05)
                if not got:
                    raise RuntimeError("no detections from the camera process's frames within 60 s")
                first, sent0 = len(got), sent.value
                start = time.perf_counter()
                while len(got) - first < count and time.monotonic() < deadline + 120:
                    executor.spin_once(timeout_sec=0.05)
                elapsed, n_sent = time.perf_counter() - start, sent.value - sent0
                answered = got[first:first + count]
            finally:
                stop.set()
                cam.join(timeout=10)
                if cam.is_alive():
                    cam.kill()
            lat = [(t - stamp_of(m) * 1e-9) * 1e3 for t, m in answered]
            return answered, lat, elapsed, max(0, n_sent - len(answered)), n_sent / elapsed

        core_fps = core_fps or 30.0
        by_rate = {}
        for k in args.camera_rate:  # the fastest camera gives the node's FPS
            got_n, lat_n, elapsed_n, dropped_n, cam_fps = camera_stream(len(frames), k * core_fps)
            by_rate[k] = {"camera_fps": cam_fps, "fps": len(got_n) / elapsed_n, "superseded_or_lost": dropped_n,
                          "latency_p50_ms": percentile(lat_n, 50), "latency_p95_ms": percentile(lat_n, 95)}  # fmt: skip
            if k == max(args.camera_rate):
                answered, pipelined_lat, elapsed, dropped = got_n, lat_n, elapsed_n, dropped_n
        stream(max(args.warmup, 3))
        _, lat, _, _ = stream(max(len(frames) // 2, 5))
        end = time.monotonic() + 1.5 * args.diag_wait
        while time.monotonic() < end:  # one more diagnostics message with the final counters
            executor.spin_once(timeout_sec=0.05)
        node_stats = {kv.key: kv.value for kv in diagnostics[-1].status[0].values} if diagnostics else {}
        answers = [deserialize_message(raw, DetectionArray) for _, raw in answered]
        boxes = [len(m.detections) for m in answers]
        inference = [m.inference_ms for m in answers]
        out = {
            "name": "detector_node (DDS e2e)",
            "frames": len(answered),
            "fps": len(answered) / elapsed,
            "ms_mean": elapsed * 1e3 / len(answered),
            "latency_p50_ms": percentile(lat, 50),
            "latency_p95_ms": percentile(lat, 95),
            "pipelined_latency_p50_ms": percentile(pipelined_lat, 50),
            "pipelined_latency_p95_ms": percentile(pipelined_lat, 95),
            "boxes_per_frame": statistics.fmean(boxes) if boxes else 0.0,
            "node_inference_ms": statistics.fmean(inference) if inference else 0.0,
            "frames_superseded_or_lost": dropped,
            "by_camera_rate": by_rate,
            "node_diagnostics": node_stats,
        }
        return out
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def variant_configs(args) -> list[tuple[str, dict]]:
    """The fast path's parts switched off one by one (which of them buys what)."""
    if args.device.startswith("cuda"):
        return [
            ("Detector fp32, eager", dict(half=False, cuda_graphs=False, channels_last=False)),
            ("Detector fp16, eager", dict(half=True, cuda_graphs=False, channels_last=False)),
            ("Detector fp16 NHWC, eager", dict(half=True, cuda_graphs=False, channels_last=True)),
            ("Detector fp16, CUDA graphs", dict(half=True, cuda_graphs=True, channels_last=False)),
        ]
    return [("Detector NCHW", dict(channels_last=False))]


def print_table(rows: list[dict], baseline: dict, core: dict | None) -> None:
    head = f"{'':34} {'FPS':>8} {'ms/frame':>9} {'p50 ms':>8} {'p95 ms':>8} {'boxes':>6} {'same':>5} {'x predict':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        same = f"{100 * r['same_boxes_as_predict']:.0f}%" if "same_boxes_as_predict" in r else "-"
        print(
            f"{r['name']:34} {r['fps']:8.1f} {r['ms_mean']:9.2f} {r['latency_p50_ms']:8.2f} "
            f"{r['latency_p95_ms']:8.2f} {r['boxes_per_frame']:6.1f} {same:>5} {r['fps'] / baseline['fps']:9.2f}"
        )
    node = next((r for r in rows if r["name"].startswith("detector_node")), None)
    if node and core:
        print(
            f"\nnode / core Detector throughput: {node['fps'] / core['fps']:.2f} (node FPS under the fastest camera "
            f"below; its p50/p95 with one frame in flight, so without queueing)"
        )
        for k, r in node["by_camera_rate"].items():  # a waiting frame that a newer one replaced counts as superseded
            print(f"  camera at {k:g}x core FPS ({r['camera_fps']:.0f}/s): node {r['fps']:.1f} FPS "
                  f"({r['fps'] / core['fps']:.2f} of core), {r['superseded_or_lost']} superseded or lost, "
                  f"p50/p95 {r['latency_p50_ms']:.1f} / {r['latency_p95_ms']:.1f} ms")
            if r["superseded_or_lost"] < 0.05 * r["fps"]:  # nothing waited for the node: the camera set the pace
                print("    (the camera sent no faster than the node answered: a lower bound of the node's FPS)")
        diag = node.get("node_diagnostics", {})
        if "work_ms_p50" in diag:  # the node's worker per frame (convert, detect, publish) vs the core's whole frame
            print(f"node worker per frame: p50 {float(diag['work_ms_p50']):.2f} ms, model {float(diag['model_ms_p50']):.2f} "
                  f"ms (core Detector p50 {core['latency_p50_ms']:.2f} ms per frame)")
    if core and "stages_ms" in core:
        s = core["stages_ms"]
        print(f"core stages (ms): preprocess {s['preprocess']:.2f}, inference {s['inference']:.2f}, "
              f"postprocess {s['postprocess']:.2f}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--frames", type=int, default=50, help="measured frames per method")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--model", type=Path, help="an Ultralytics .pt file (default: build --arch)")
    p.add_argument(
        "--arch", default="yolov8s-worldv2.yaml", help="architecture to build when --model is absent"
    )
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--boxes", type=int, default=20, help="boxes per frame the random model is calibrated to")
    p.add_argument(
        "--half", action=argparse.BooleanOptionalAction, default=None, help="fp16 (default: on CUDA)"
    )
    p.add_argument("--no-node", action="store_true", help="skip the ROS part (machines without ROS)")
    p.add_argument(
        "--image-qos", choices=("reliable", "sensor_data"), default="reliable",
        help="QoS of the image stream to the node; best effort loses large frames over UDP without socket tuning",
    )  # fmt: skip
    p.add_argument(
        "--camera-rate", type=lambda v: sorted({float(x) for x in v.split(",")}), default=[1.1],
        help="camera rates for the node's throughput, as multiples of the core Detector's FPS, comma-separated; "
        "the fastest gives the node's FPS. Faster than the node, so a frame always waits for it; the node "
        "keeps only the newest and the rest count as superseded (by design). On the H200 (2026-11-29) a second "
        "camera process in the same run published far below its rate with reliable QoS: give one rate per run",
    )  # fmt: skip
    p.add_argument("--variants", action="store_true", help="also time the fast path's parts separately")
    p.add_argument("--out", type=Path, help="write all numbers as JSON")
    p.add_argument("--diag-wait", type=float, default=1.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.half is None:
        args.half = args.device.startswith("cuda")

    frames = synthetic_frames(args.frames, args.width, args.height, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model
        if model_path is None:
            print(f"building {args.arch} with random weights, calibrated on the frames ...", file=sys.stderr)
            model_path = make_world_model(
                Path(tmp) / "bench_world.pt", args.arch, classes=("red cup", "person", "blue box", "chair"),
                frames=frames[:4], imgsz=args.imgsz, conf=args.conf, boxes=args.boxes,
            )  # fmt: skip
        runners, closers = [], []
        for name, (run, close) in [
            ("ultralytics predict", predict_runner(model_path, args)),
            ("lookout Detector", detector_runner(model_path, args)),
            *[
                (n, detector_runner(model_path, args, **kw))
                for n, kw in (variant_configs(args) if args.variants else [])
            ],
        ]:
            runners.append((name, run))
            closers.append(close)
        rows = bench_interleaved(runners, frames, args)
        for close in closers:
            close()
        baseline, core = rows[0], rows[1]
        if not args.no_node:
            rows.append(bench_node(model_path, frames, args, core["fps"]))

    env = {
        "device": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ultralytics": __import__("ultralytics").__version__,
        "model": str(args.model or args.arch),
        "imgsz": args.imgsz,
        "frame": f"{args.width}x{args.height}",
        "half": args.half,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"\n{env['model']}, {env['frame']} frames, imgsz {args.imgsz}, {args.device} ({env['device']}), "
          f"{'fp16' if args.half else 'fp32'}, torch {env['torch']}, ultralytics {env['ultralytics']}\n")  # fmt: skip
    print_table(rows, baseline, core)
    if args.out:
        args.out.write_text(json.dumps({"env": env, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
