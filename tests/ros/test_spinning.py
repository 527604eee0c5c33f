"""Composed nodes: a node that works on its own thread is spun by its own single-threaded executor."""

from __future__ import annotations

import time

from lookout_ros.spinning import NodeSpinner, single_node_executor


def _nodes(ctx):
    import rclpy.node

    class Worker(rclpy.node.Node):
        SINGLE_THREADED_EXECUTOR = True

    ticks = {"worker": 0, "other": 0}
    worker = Worker("worker", context=ctx)
    other = rclpy.node.Node("other", context=ctx)
    worker.create_timer(0.01, lambda: ticks.__setitem__("worker", ticks["worker"] + 1))
    other.create_timer(0.01, lambda: ticks.__setitem__("other", ticks["other"] + 1))
    return worker, other, ticks


def test_spinner_gives_single_threaded_nodes_their_own_executor_and_spins_all(ros_context):
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    worker, other, ticks = _nodes(ros_context)
    spinner = NodeSpinner([worker, other], ros_context)
    try:
        assert [type(e) for e in spinner.own] == [SingleThreadedExecutor]
        assert spinner.own[0].get_nodes() == [worker]
        assert isinstance(spinner.shared, MultiThreadedExecutor) and spinner.shared.get_nodes() == [other]
        spinner.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and min(ticks.values()) < 5:
            time.sleep(0.02)
        assert min(ticks.values()) >= 5, ticks
    finally:
        spinner.shutdown()
        worker.destroy_node()
        other.destroy_node()


def test_standalone_executor_follows_the_node_class(ros_context):
    from lookout_ros.detector_node import DetectorNode
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    assert DetectorNode.SINGLE_THREADED_EXECUTOR
    worker, other, _ = _nodes(ros_context)
    try:
        assert isinstance(single_node_executor(worker, ros_context), SingleThreadedExecutor)
        assert isinstance(single_node_executor(other, ros_context), MultiThreadedExecutor)
    finally:
        worker.destroy_node()
        other.destroy_node()
