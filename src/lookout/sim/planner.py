"""Shortest collision-free paths on the floor of a known room (used by the oracle controller).

The floor becomes a grid; a cell is free when a robot centred there keeps `inflation_m` between its
edge and every object and wall. Dijkstra (scipy's csgraph) from the robot's cell gives the distance to
every reachable cell at once, so "the nearest spot within 0.4 m of the red ball" is one query.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from lookout.sim.state import WorldState
from lookout.sim.world import SceneObject


def _object_clearance(obj: SceneObject, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Vectorised SceneObject.floor_distance over a grid."""
    dx, dy = xs - obj.x, ys - obj.y
    if obj.shape != "box":
        return np.maximum(np.hypot(dx, dy) - obj.size["radius"], 0.0)
    c, s = math.cos(-obj.yaw), math.sin(-obj.yaw)
    lx, ly = c * dx - s * dy, s * dx + c * dy
    return np.hypot(np.maximum(np.abs(lx) - obj.size["hx"], 0.0), np.maximum(np.abs(ly) - obj.size["hy"], 0.0))


class GridPlanner:
    def __init__(self, world: WorldState, resolution_m: float = 0.05, inflation_m: float = 0.08) -> None:
        self.world = world
        self.res = resolution_m
        self.half = world.room_size_m / 2
        self.n = int(math.ceil(world.room_size_m / resolution_m))
        centres = -self.half + (np.arange(self.n) + 0.5) * resolution_m
        self.xs, self.ys = np.meshgrid(centres, centres, indexing="ij")  # [i, j] -> (x_i, y_j)
        r = world.robot_radius_m
        clearance = self.half - np.maximum(np.abs(self.xs), np.abs(self.ys)) - r
        self.object_gap: dict[str, np.ndarray] = {}
        for obj in world.objects:
            gap = _object_clearance(obj, self.xs, self.ys) - r
            self.object_gap[obj.phrase] = gap
            clearance = np.minimum(clearance, gap)
        self.free = clearance >= inflation_m

    def cell(self, x: float, y: float) -> tuple[int, int]:
        i = int(np.clip((x + self.half) / self.res, 0, self.n - 1))
        j = int(np.clip((y + self.half) / self.res, 0, self.n - 1))
        return i, j

    def _graph(self, free: np.ndarray) -> coo_matrix:
        idx = np.arange(self.n * self.n).reshape(self.n, self.n)
        rows, cols, weights = [], [], []
        for di, dj in ((1, 0), (0, 1), (1, 1), (1, -1)):
            # pair every cell (i, j) with (i + di, j + dj) where both lie on the grid
            i0, i1 = max(0, -di), self.n - max(0, di)
            j0, j1 = max(0, -dj), self.n - max(0, dj)
            a, b = free[i0:i1, j0:j1], free[i0 + di:i1 + di, j0 + dj:j1 + dj]
            ia, ib = idx[i0:i1, j0:j1], idx[i0 + di:i1 + di, j0 + dj:j1 + dj]
            ok = a & b
            rows.append(ia[ok])
            cols.append(ib[ok])
            weights.append(np.full(int(ok.sum()), math.hypot(di, dj) * self.res))
        size = self.n * self.n
        return coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size))

    def plan(self, start: tuple[float, float], goal: Callable[[np.ndarray, np.ndarray], np.ndarray]
             ) -> list[tuple[float, float]] | None:
        """Shortest path from `start` to the nearest cell where goal(xs, ys) is true; None if unreachable."""
        free = self.free.copy()
        si, sj = self.cell(*start)
        free[si, sj] = True  # the robot may start closer to something than the inflation allows
        dist, pred = dijkstra(self._graph(free), directed=False, indices=si * self.n + sj, return_predecessors=True)
        dist = dist.reshape(self.n, self.n)
        target = goal(self.xs, self.ys) & free & np.isfinite(dist)
        if not target.any():
            return None
        flat = int(np.argmin(np.where(target, dist, np.inf)))
        path = []
        while flat >= 0:
            i, j = divmod(flat, self.n)
            path.append((float(self.xs[i, j]), float(self.ys[i, j])))
            flat = int(pred[flat]) if flat != si * self.n + sj else -1
        path.reverse()
        return path

    def path_to_object(self, start: tuple[float, float], phrase: str, min_gap: float, max_gap: float
                       ) -> list[tuple[float, float]] | None:
        gap = self.object_gap[phrase]
        return self.plan(start, lambda xs, ys: (gap >= min_gap) & (gap <= max_gap))

    def path_to_point(self, start: tuple[float, float], x: float, y: float, tol: float
                      ) -> list[tuple[float, float]] | None:
        return self.plan(start, lambda xs, ys: np.hypot(xs - x, ys - y) <= tol)
