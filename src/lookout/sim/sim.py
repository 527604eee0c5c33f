"""The simulator: a MuJoCo scene, a kinematic differential-drive robot and its camera.

The base follows (linear, angular) commands exactly (a unicycle integrated in `physics_dt` sub-steps),
which keeps runs deterministic and independent of contact tuning; MuJoCo's collision detection stops
a sub-step that would push the base into an object or a wall (the robot turns in place but does not
pass through things). Odometry starts at the identity on reset (REP 105 `odom`), optionally with
noise; ground truth is in the room frame. Rendering is offscreen (OSMesa on CPUs, EGL on GPUs) and the
renderer is created on first use and closed explicitly by `close()`. A GL context belongs to the thread
that made it: every renderer call runs on one thread of the Sim's own, so callers on any thread (a ROS
node's executor threads, say) can render and reset safely.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from lookout.mujoco_loader import load_mujoco
from lookout.sim.camera import CameraIntrinsics, optical_rotation_in_base
from lookout.sim.config import SimConfig
from lookout.sim.labels import ObjectBox, mask_boxes
from lookout.sim.mjcf import CAMERA_NAME, ROBOT_BASE_GEOM, scene_to_mjcf
from lookout.sim.state import Odometry, WorldState
from lookout.sim.world import Pose2D, Scene, SceneOverrides, generate_scene, wrap_angle

mujoco = load_mujoco()

__all__ = ["Odometry", "Sim", "WorldState"]

T = TypeVar("T")


def _clamp(v: float, limit: float) -> float:
    return max(-limit, min(limit, float(v)))


class Sim:
    """One simulated room. `reset(seed)` builds a scene, `step(v, w, dt)` moves the robot."""

    def __init__(self, config: SimConfig | None = None, *, seed: int = 0,
                 overrides: SceneOverrides | None = None, scene: Scene | None = None) -> None:
        self.config = config or SimConfig.default()
        self.intrinsics = CameraIntrinsics.from_config(self.config.camera)
        self._renderer: Any = None
        self._gl: ThreadPoolExecutor | None = None
        self._gl_thread: threading.Thread | None = None
        self._closed = False
        self._seed = seed
        self.reset(seed, overrides, scene=scene)

    # --- lifecycle -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, overrides: SceneOverrides | None = None, *,
              scene: Scene | None = None) -> Scene:
        """Build the scene for `seed` (or the given scene) and put the robot at its start pose.

        On any error (an impossible scene, a start inside an obstacle) the previous scene stays as it was.
        """
        if self._closed:
            raise RuntimeError("this Sim was closed; create a new one")
        if scene is None:
            scene = generate_scene(self._seed if seed is None else seed, self.config, overrides)
        model = mujoco.MjModel.from_xml_string(scene_to_mjcf(scene, self.config))
        data = mujoco.MjData(model)
        base_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, ROBOT_BASE_GEOM)
        start = scene.robot_start
        data.qpos[:3] = (start.x, start.y, start.yaw)
        mujoco.mj_fwdPosition(model, data)
        if any(base_geom in (c.geom1, c.geom2) and c.dist < -1e-4 for c in data.contact[: data.ncon]):
            raise RuntimeError(f"scene {scene.seed}: the robot starts inside an obstacle")

        self.scene, self._seed = scene, scene.seed
        self.model, self.data, self._base_geom = model, data, base_geom
        self._camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
        # geom id -> object index (-1 for floor, walls, robot); the extra last entry serves id -1
        self._geom_object = np.full(model.ngeom + 1, -1, dtype=np.int32)
        for g in range(model.ngeom):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
            if name.startswith("obj"):
                self._geom_object[g] = int(name[3:].split("_")[0])
        self._object_geoms = [np.nonzero(self._geom_object[:-1] == i)[0] for i in range(len(scene.objects))]
        self._close_renderer()  # a renderer is bound to its model
        self._noise = np.random.default_rng([scene.seed, 105])  # odometry noise, reproducible per scene
        self.time_s = 0.0
        self.collisions = 0
        self._linear = self._angular = 0.0
        self._odom = [0.0, 0.0, 0.0]
        return scene

    def close(self) -> None:
        """Free the GL context now (OSMesa's finaliser at interpreter exit can print tracebacks)."""
        self._close_renderer()
        self._closed = True
        if self._gl is not None:
            self._gl.shutdown(wait=True)
            self._gl = None

    def _on_gl_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the thread that owns the GL context (started on first use)."""
        if self._gl is None:
            self._gl = ThreadPoolExecutor(1, thread_name_prefix="sim-gl")
            self._gl_thread = self._gl.submit(threading.current_thread).result()
        if threading.current_thread() is self._gl_thread:
            return fn()
        return self._gl.submit(fn).result()

    def _close_renderer(self) -> None:
        if self._renderer is None:
            return

        def close() -> None:
            if self._renderer is not None:
                self._renderer.close()
                self._renderer = None

        self._on_gl_thread(close)

    def __enter__(self) -> Sim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- motion ----------------------------------------------------------------------------------
    @property
    def pose(self) -> Pose2D:
        """True pose in the room frame."""
        q = self.data.qpos
        return Pose2D(x=float(q[0]), y=float(q[1]), yaw=wrap_angle(float(q[2])))

    @property
    def seed(self) -> int:
        return self._seed

    def _set_pose(self, x: float, y: float, yaw: float) -> None:
        self.data.qpos[:3] = (x, y, yaw)
        mujoco.mj_fwdPosition(self.model, self.data)  # kinematics + collision detection

    def teleport(self, x: float, y: float, yaw: float) -> bool:
        """Put the robot at (x, y, yaw) if it fits there (True); otherwise leave it where it was (False)."""
        half = self.scene.room_size_m / 2 - self.config.robot.radius_m
        if not (abs(x) < half and abs(y) < half):
            return False
        old = [float(q) for q in self.data.qpos[:3]]
        self._set_pose(x, y, yaw)
        if self._touching():
            self._set_pose(*old)
            return False
        self._linear = self._angular = 0.0
        return True

    def _touching(self) -> bool:
        for c in self.data.contact[: self.data.ncon]:
            if self._base_geom in (c.geom1, c.geom2) and c.dist < -1e-4:
                return True
        return False

    def step(self, linear: float, angular: float, dt: float) -> bool:
        """Drive with body velocities (m/s, rad/s, clamped to the robot's limits) for `dt` seconds.

        Returns True if the robot was blocked by an obstacle at some point in this step.
        """
        if not (dt >= 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a finite number >= 0, got {dt}")
        if not (math.isfinite(linear) and math.isfinite(angular)):
            linear = angular = 0.0  # a NaN command must never move the robot
        v = _clamp(linear, self.config.robot.max_linear_speed)
        w = _clamp(angular, self.config.robot.max_angular_speed)
        n = max(1, math.ceil(dt / self.config.physics_dt - 1e-9))
        h = dt / n
        blocked = False
        moved = turned = 0.0
        for _ in range(n):
            x, y, yaw = (float(q) for q in self.data.qpos[:3])
            dyaw = w * h
            if abs(dyaw) > 1e-9:
                dx = v / w * (math.sin(yaw + dyaw) - math.sin(yaw))
                dy = -v / w * (math.cos(yaw + dyaw) - math.cos(yaw))
            else:
                dx, dy = v * h * math.cos(yaw), v * h * math.sin(yaw)
            self._set_pose(x + dx, y + dy, yaw + dyaw)
            ds = v * h
            if ds != 0.0 and self._touching():
                blocked = True
                self._set_pose(x, y, yaw + dyaw)  # a round base can always turn in place
                ds = 0.0
            moved += ds
            turned += dyaw
            self._advance_odometry(ds, dyaw)
        if dt > 0:
            self.time_s += dt
            self._linear, self._angular = moved / dt, turned / dt
        if blocked:
            self.collisions += 1
        return blocked

    def _advance_odometry(self, ds: float, dyaw: float) -> None:
        odo = self.config.odometry
        if odo.linear_noise > 0 and ds != 0.0:
            ds += self._noise.normal(0.0, odo.linear_noise * math.sqrt(abs(ds)))
        if odo.angular_noise > 0 and dyaw != 0.0:
            dyaw += self._noise.normal(0.0, odo.angular_noise * math.sqrt(abs(dyaw)))
        x, y, yaw = self._odom
        mid = yaw + dyaw / 2
        self._odom = [x + ds * math.cos(mid), y + ds * math.sin(mid), wrap_angle(yaw + dyaw)]

    def odometry(self) -> Odometry:
        x, y, yaw = self._odom
        return Odometry(self.time_s, x, y, yaw, self._linear, self._angular)

    # --- ground truth ----------------------------------------------------------------------------
    def world_state(self) -> WorldState:
        return WorldState(
            time_s=self.time_s,
            seed=self.scene.seed,
            room_size_m=self.scene.room_size_m,
            robot_radius_m=self.config.robot.radius_m,
            camera_hfov_deg=self.config.camera.hfov_deg,
            robot=self.pose,
            robot_start=self.scene.robot_start,
            linear=self._linear,
            angular=self._angular,
            collisions=self.collisions,
            objects=self.scene.objects,
        )

    def camera_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), rotation (3, 3) whose columns are the optical axes) in the room frame."""
        pos = self.data.cam_xpos[self._camera_id].copy()
        yaw = float(self.data.qpos[2])
        c, s = math.cos(yaw), math.sin(yaw)
        base = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return pos, base @ optical_rotation_in_base(self.config.camera.pitch_deg)

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Room-frame points -> pixel coordinates and depths along the optical axis."""
        pos, rot = self.camera_pose()
        optical = (np.asarray(points_world, dtype=float).reshape(-1, 3) - pos) @ rot
        return self.intrinsics.project(optical)

    # --- rendering -------------------------------------------------------------------------------
    def _ensure_renderer(self) -> Any:
        if self._closed:
            raise RuntimeError("this Sim was closed; create a new one")
        if self._renderer is None:
            cam = self.config.camera
            self._renderer = mujoco.Renderer(self.model, cam.height, cam.width)
        return self._renderer

    def render(self) -> np.ndarray:
        """The camera image, (H, W, 3) uint8 RGB, row 0 at the top."""
        return self._on_gl_thread(self._render)

    def _render(self) -> np.ndarray:
        r = self._ensure_renderer()
        r.disable_segmentation_rendering()
        r.update_scene(self.data, camera=self._camera_id)
        return r.render().copy()

    def segmentation(self) -> np.ndarray:
        """(H, W) int32 map of object indices into `scene.objects`; -1 where no object is seen."""
        return self._on_gl_thread(self._segmentation)

    def _segmentation(self) -> np.ndarray:
        r = self._ensure_renderer()
        r.enable_segmentation_rendering()
        try:
            r.update_scene(self.data, camera=self._camera_id)
            seg = r.render()
        finally:
            r.disable_segmentation_rendering()
        ids = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
        return self._geom_object[ids]  # -1 indexes the trailing "no object" entry

    def _unoccluded_pixels(self, index: int) -> int:
        """Pixels object `index` would cover if no other object stood in front of it."""
        others = np.concatenate([g for i, g in enumerate(self._object_geoms) if i != index] or [np.zeros(0, int)])
        alpha = self.model.geom_rgba[others, 3].copy()
        self.model.geom_rgba[others, 3] = 0.0  # MuJoCo skips fully transparent geoms when drawing
        try:
            return int(np.count_nonzero(self.segmentation() == index))
        finally:
            self.model.geom_rgba[others, 3] = alpha

    def object_boxes(self, min_visible_fraction: float | None = None, min_pixels: int | None = None) -> list[ObjectBox]:
        """Boxes of the objects the camera sees now, filtered by visibility (defaults from `labels`)."""
        labels = self.config.labels
        min_frac = labels.min_visible_fraction if min_visible_fraction is None else min_visible_fraction
        min_px = labels.min_box_pixels if min_pixels is None else min_pixels
        boxes = []
        for idx, (x0, y0, x1, y1, count) in mask_boxes(self.segmentation()).items():
            if count < min_px:
                continue
            frac = count / max(self._unoccluded_pixels(idx), count)
            if frac + 1e-9 < min_frac:
                continue
            boxes.append(ObjectBox(idx, self.scene.objects[idx].phrase, x0, y0, x1, y1, count, frac))
        return boxes
