"""Which executor spins which node: nodes that do their work on their own thread get a single-threaded one.

`detector_node` runs detection on a worker thread; its callbacks only hand frames over, answer services
and publish diagnostics. Under rclpy's MultiThreadedExecutor that worker crawled: on the H200
(bench/perception.py, 100 VGA frames, YOLO-World-S, 2026-11-29) the node answered 2.9 frames/s, lost 55
frames and had a p50 latency of 41 ms; under a SingleThreadedExecutor it answered 263 frames/s, lost none,
p50 5 ms, with the same 1.2 ms of model time per frame. Such a node class sets `SINGLE_THREADED_EXECUTOR`.
Nodes whose callbacks wait on each other (the agent's action server) keep sharing a MultiThreadedExecutor.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any


def wants_own_executor(node: Any) -> bool:
    return bool(getattr(node, "SINGLE_THREADED_EXECUTOR", False))


def single_node_executor(node: Any, context: Any = None) -> Any:
    """The executor a standalone process spins `node` in (`main()` of each node module)."""
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    kind = SingleThreadedExecutor if wants_own_executor(node) else MultiThreadedExecutor
    executor = kind(context=context)
    executor.add_node(node)
    return executor


class NodeSpinner:
    """Spin composed nodes: one SingleThreadedExecutor per node that wants one, a shared MultiThreadedExecutor
    for the rest. `spin()` blocks in the shared one; `start()` runs everything on background threads."""

    def __init__(self, nodes: Iterable[Any], context: Any) -> None:
        from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

        self.shared = MultiThreadedExecutor(context=context)
        self.own: list[Any] = []
        for node in nodes:
            if wants_own_executor(node):
                executor = SingleThreadedExecutor(context=context)
                executor.add_node(node)
                self.own.append(executor)
            else:
                self.shared.add_node(node)
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def _spin(self, executor: Any) -> None:
        try:
            executor.spin()
        except RuntimeError:
            # rclpy's MultiThreadedExecutor.shutdown closes its thread pool while its spin thread may still hand
            # one last callback to it ("cannot schedule new futures after shutdown"): expected only then.
            if not self._stopping:
                raise

    def _start(self, executors: list[Any]) -> None:
        for executor in executors:
            thread = threading.Thread(target=self._spin, args=(executor,), name="node_spinner", daemon=True)
            thread.start()
            self._threads.append(thread)

    def start(self) -> None:
        self._start([*self.own, self.shared])

    def spin(self) -> None:
        self._start(self.own)
        self.shared.spin()

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping = True
        for executor in [*self.own, self.shared]:
            executor.shutdown()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()
