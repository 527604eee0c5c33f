"""Fixtures for tests that run real rclpy nodes over Fast DDS.

Each test gets its own rclpy Context on its own DDS domain, so tests (and xdist workers) never
hear each other, and no global rclpy state leaks between tests.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests run inside the sourced workspace (make test)")

_domain_counter = itertools.count()


@pytest.fixture
def ros_context(worker_index: int) -> Iterator[rclpy.Context]:
    # Fast DDS maps a domain to UDP ports 7400 + 250 * id: ids up to 232 fit. Give each worker
    # its own band of 40 ids so concurrent tests never share a domain.
    domain_id = 10 + worker_index * 40 + next(_domain_counter) % 40
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


@pytest.fixture
def executor(ros_context):
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=ros_context)
    yield ex
    ex.shutdown()
    for node in list(ex.get_nodes()):
        node.destroy_node()


def spin_until(executor, predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    """Spin until `predicate()` is true or `timeout` seconds pass; returns the predicate's last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return predicate()
