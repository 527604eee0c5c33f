"""How many camera frames survive the trip between two processes over this machine's DDS setup?

A second process publishes `--frames` best-effort sensor_msgs/Image frames of `--width` x `--height` bgr8
at `--hz`; this one counts what arrives and the transit time (receipt minus stamp). Run it under the
environment you deploy with, e.g. with and without `FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds.xml`, or
with `FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`:

    scripts/run.sh python bench/dds_frames.py --frames 300 --hz 200
"""

from __future__ import annotations

import argparse
import array
import os
import statistics
import subprocess
import sys
import time


def publish(args) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("dds_frames_camera")
    pub = node.create_publisher(Image, "dds_frames", qos_profile_sensor_data)
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    data = array.array("B", bytes(args.width * args.height * 3))
    for _ in range(args.frames):
        m = Image(height=args.height, width=args.width, encoding="bgr8", step=args.width * 3, data=data)
        m.header.stamp = node.get_clock().now().to_msg()
        pub.publish(m)
        time.sleep(1.0 / args.hz)
    time.sleep(1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--hz", type=float, default=200.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.publisher:
        return publish(args)

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("dds_frames_counter")
    transit: list[float] = []

    def on_image(m) -> None:
        transit.append(time.time() - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9))

    node.create_subscription(Image, "dds_frames", on_image, qos_profile_sensor_data)
    proc = subprocess.Popen([sys.executable, __file__, "--publisher", *sys.argv[1:]])
    while proc.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.05)
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    ms = sorted(t * 1e3 for t in transit) or [float("nan")]
    setup = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTDDS_BUILTIN_TRANSPORTS") or "defaults"
    print(f"{args.width}x{args.height} bgr8 at {args.hz:g} Hz, Fast DDS {setup}: {len(transit)} of {args.frames} "
          f"arrived; transit p50 {statistics.median(ms):.2f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.2f} ms")


if __name__ == "__main__":
    main()
