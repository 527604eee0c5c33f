"""`lookout doctor`: prove each part of the stack works on this machine, quickly, with real parts."""

from __future__ import annotations

import importlib.metadata as md
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def check_versions() -> str:
    import torch

    cuda = f"CUDA {torch.version.cuda}, GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    names = ["torch", "ultralytics", "transformers", "peft", "bitsandbytes", "triton", "mujoco", "xgrammar"]
    return ", ".join(f"{n} {_version(n)}" for n in names) + f"; {cuda}"


def check_dds_round_trip() -> str:
    """Publish a DetectionArray from one node and receive it in another over the configured RMW."""
    import rclpy
    from lookout_interfaces.msg import DetectionArray
    from lookout_ros.conversions import result_from_msg, result_to_msg
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header

    from lookout.perception.types import Detection, DetectionResult

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ.get("LOOKOUT_DOCTOR_DOMAIN", "77")))
    try:
        pub_node = rclpy.create_node("lookout_doctor_pub", context=ctx)
        sub_node = rclpy.create_node("lookout_doctor_sub", context=ctx)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        got: list[DetectionArray] = []
        sub_node.create_subscription(DetectionArray, "doctor/detections", got.append, qos)
        pub = pub_node.create_publisher(DetectionArray, "doctor/detections", qos)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(pub_node)
        ex.add_node(sub_node)
        sent = DetectionResult([Detection(1, 2, 30, 40, 0.9, "red cup", 0)], ["red cup"], 64, 48)
        header = Header(frame_id="camera")
        deadline = time.monotonic() + 10.0
        while not got and time.monotonic() < deadline:
            pub.publish(result_to_msg(sent, header))
            ex.spin_once(timeout_sec=0.05)
        if not got:
            raise RuntimeError("no DetectionArray arrived within 10 s")
        back = result_from_msg(got[0]).detections[0]
        want = sent.detections[0]
        if back.phrase != want.phrase or max(abs(a - b) for a, b in zip(back.xyxy, want.xyxy, strict=True)) > 1e-3:
            raise RuntimeError(f"round trip changed the detections: sent {want}, got {back}")
        ex.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
        return f"DetectionArray round trip over {rclpy.utilities.get_rmw_implementation_identifier()}"
    finally:
        rclpy.shutdown(context=ctx)


def check_mujoco_render() -> str:
    import numpy as np

    from lookout.mujoco_loader import load_mujoco

    mujoco = load_mujoco()

    xml = """<mujoco><worldbody><light pos="0 0 3"/><geom type="plane" size="2 2 .1" rgba=".8 .8 .8 1"/>
    <geom type="sphere" pos="0 0 .2" size=".2" rgba="1 0 0 1"/></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, 48, 64)
    try:
        renderer.update_scene(data)
        img = renderer.render()
    finally:
        renderer.close()
    if img.shape != (48, 64, 3) or not np.any(img):
        raise RuntimeError(f"unexpected render {img.shape}")
    return f"offscreen render with MUJOCO_GL={os.environ['MUJOCO_GL']}"


def check_bnb_4bit() -> str:
    import bitsandbytes.functional as bnbf
    import torch

    w = torch.randn(64, 128)
    q, state = bnbf.quantize_4bit(w, quant_type="nf4", compress_statistics=True)
    back = bnbf.dequantize_4bit(q, state)
    err = ((back - w).norm() / w.norm()).item()
    if not err < 0.15:
        raise RuntimeError(f"NF4 round-trip error {err:.3f}")
    return f"NF4 quantize/dequantize (double-quant), relative error {err:.3f}"


def check_triton() -> str:
    import lookout_kernels
    import triton

    mode = "GPU" if lookout_kernels.available() and not lookout_kernels.interpret_mode() else "interpreter/CPU fallback"
    return f"triton {triton.__version__}, kernels path: {mode}"


def check_ultralytics() -> str:
    from ultralytics import YOLO

    model = YOLO("yolo11n.yaml", task="detect", verbose=False)
    n = sum(p.numel() for p in model.model.parameters())
    return f"built YOLO11n from its config offline ({n / 1e6:.1f} M parameters)"


CHECKS: list[tuple[str, Callable[[], str], bool]] = [
    ("versions", check_versions, False),
    ("ros2 dds", check_dds_round_trip, True),
    ("mujoco", check_mujoco_render, False),
    ("bitsandbytes", check_bnb_4bit, False),
    ("triton", check_triton, False),
    ("ultralytics", check_ultralytics, False),
]


def run_checks(skip_ros: bool = False) -> list[CheckResult]:
    results = []
    for name, fn, needs_ros in CHECKS:
        if needs_ros and skip_ros:
            continue
        t0 = time.perf_counter()
        try:
            detail, ok = fn(), True
        except Exception as exc:  # report every failure, keep checking the rest
            detail, ok = f"{type(exc).__name__}: {exc}", False
            if os.environ.get("LOOKOUT_DEBUG"):
                traceback.print_exc()
        results.append(CheckResult(name, ok, detail, time.perf_counter() - t0))
    return results


def print_report(results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lookout doctor")
    table.add_column("check")
    table.add_column("ok")
    table.add_column("detail")
    table.add_column("s", justify="right")
    for r in results:
        table.add_row(r.name, "[green]yes[/]" if r.ok else "[red]NO[/]", r.detail, f"{r.seconds:.2f}")
    Console().print(table)
