"""The simulator: deterministic from a seed, exact kinematics, walls stop the robot, boxes match geometry."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from lookout.sim.config import SimConfig
from lookout.sim.world import Pose2D, Scene, SceneObject


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def _drive(sim, commands):
    for v, w, dt in commands:
        sim.step(v, w, dt)


COMMANDS = [(0.3, 0.0, 0.5), (0.2, 0.8, 0.7), (0.0, -1.0, 0.4), (0.4, 0.1, 1.0)]


def test_same_seed_renders_the_same_pixels_and_other_seeds_differ(make_sim):
    a, b = make_sim(5), make_sim(5)
    assert a.scene == b.scene
    first = a.render()
    assert first.shape == (120, 160, 3) and first.dtype == np.uint8
    assert _digest(first) == _digest(b.render())
    _drive(a, COMMANDS)
    _drive(b, COMMANDS)
    assert a.pose == b.pose and a.odometry() == b.odometry()
    assert _digest(a.render()) == _digest(b.render())
    assert _digest(np.asarray(a.segmentation())) == _digest(np.asarray(b.segmentation()))
    other = make_sim(6)
    assert other.scene != a.scene and _digest(other.render()) != _digest(first)


def test_reset_restores_the_start_exactly(make_sim):
    sim = make_sim(9)
    start_image, start_pose = _digest(sim.render()), sim.pose
    _drive(sim, COMMANDS)
    assert sim.pose != start_pose and sim.time_s > 0
    sim.reset(9)
    assert sim.pose == start_pose and sim.time_s == 0.0 and sim.odometry().x == 0.0
    assert _digest(sim.render()) == start_image


def _empty_room(config: SimConfig, x: float = 0.0, y: float = 0.0, yaw: float = 0.0,
                objects: list[SceneObject] | None = None) -> Scene:
    return Scene(seed=0, room_size_m=config.room.size_m, robot_start=Pose2D(x=x, y=y, yaw=yaw), objects=objects or [])


def test_unicycle_kinematics_are_exact_and_commands_are_clamped(make_sim, small_config):
    sim = make_sim(scene=_empty_room(small_config, -2.0, 0.0, 0.0))
    sim.step(0.5, 0.0, 2.0)
    assert (sim.pose.x, sim.pose.y) == pytest.approx((-1.0, 0.0), abs=1e-9)
    sim.step(0.0, math.pi / 4, 2.0)
    assert sim.pose.yaw == pytest.approx(math.pi / 2, abs=1e-9)
    # quarter circle of radius v/w = 0.5 m: from heading +y, turning left, ends 0.5 m left and 0.5 m ahead
    sim.step(0.25, 0.5, math.pi)
    assert (sim.pose.x, sim.pose.y) == pytest.approx((-1.5, 0.5), abs=1e-6)
    before = sim.pose
    sim.step(100.0, 0.0, 1.0)  # clamped to the robot's top speed
    assert before.distance_to(sim.pose.x, sim.pose.y) == pytest.approx(small_config.robot.max_linear_speed)
    before = sim.pose
    sim.step(float("nan"), 1.0, 1.0)  # never move on a NaN command
    assert sim.pose == before
    with pytest.raises(ValueError, match="dt"):
        sim.step(0.1, 0.0, -1.0)


def test_walls_and_objects_stop_the_robot_but_it_can_still_turn(make_sim, small_config):
    half = small_config.room.size_m / 2
    sim = make_sim(scene=_empty_room(small_config, half - 1.0, 0.0, 0.0))
    blocked = any(sim.step(0.5, 0.0, 0.1) for _ in range(40))  # 2 m towards a wall 1 m away
    assert blocked and sim.collisions > 0
    assert sim.pose.x + small_config.robot.radius_m <= half + 1e-6
    assert sim.pose.x > half - small_config.robot.radius_m - 0.02  # it got there, it just did not pass
    sim.step(0.0, 1.0, 1.0)
    assert sim.pose.yaw == pytest.approx(1.0, abs=1e-9)

    ball = SceneObject(phrase="red ball", color="red", shape="ball", x=1.0, y=0.0, size={"radius": 0.15})
    sim.reset(scene=_empty_room(small_config, 0.0, 0.0, 0.0, [ball]))
    for _ in range(40):
        sim.step(0.4, 0.0, 0.1)
    gap = ball.floor_distance(sim.pose.x, sim.pose.y) - small_config.robot.radius_m
    assert -1e-6 <= gap < 0.01


def test_odometry_starts_at_zero_and_follows_the_robot(make_sim, small_config):
    sim = make_sim(scene=_empty_room(small_config, 1.0, 1.0, math.pi / 2))
    assert sim.odometry() == sim.odometry().__class__(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    sim.step(0.4, 0.0, 1.0)
    odo = sim.odometry()
    # odom frame = start pose: driving "up" in the room is +x in odom
    assert (odo.x, odo.y, odo.yaw) == pytest.approx((0.4, 0.0, 0.0), abs=1e-9)
    assert (odo.linear, odo.angular) == pytest.approx((0.4, 0.0))
    assert (sim.pose.x, sim.pose.y) == pytest.approx((1.0, 1.4), abs=1e-9)


def test_odometry_noise_drifts_reproducibly_without_touching_the_truth(make_sim, small_config):
    noisy = small_config.model_copy(update={"odometry": small_config.odometry.model_copy(
        update={"linear_noise": 0.05, "angular_noise": 0.05})})
    scene = _empty_room(small_config, -1.0, 0.0, 0.0)
    a, b, exact = make_sim(scene=scene, config=noisy), make_sim(scene=scene, config=noisy), make_sim(scene=scene)
    for sim in (a, b, exact):
        _drive(sim, COMMANDS)
    assert a.odometry() == b.odometry()
    assert a.pose == exact.pose
    err = math.hypot(a.odometry().x - exact.odometry().x, a.odometry().y - exact.odometry().y)
    assert 1e-4 < err < 0.3


def _sample_surface(obj: SceneObject, n: int = 4000) -> np.ndarray:
    """Points on the object's surface in the room frame (its silhouette's extremes are among them)."""
    rng = np.random.default_rng(0)
    s = obj.size
    if obj.shape == "ball":
        u = rng.normal(size=(n, 3))
        return np.array([obj.x, obj.y, s["radius"]]) + s["radius"] * u / np.linalg.norm(u, axis=1, keepdims=True)
    if obj.shape == "box":
        corners = np.array([[sx * s["hx"], sy * s["hy"], (1 + sz) * s["hz"]]
                            for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        c, si = math.cos(obj.yaw), math.sin(obj.yaw)
        rot = np.array([[c, -si, 0], [si, c, 0], [0, 0, 1]])
        return corners @ rot.T + np.array([obj.x, obj.y, 0.0])
    # cylinder: two rims
    t = np.linspace(0, 2 * math.pi, n // 2)
    rim = np.stack([s["radius"] * np.cos(t), s["radius"] * np.sin(t)], axis=1)
    z = 2 * s["half_height"]
    return np.concatenate([np.c_[rim + [obj.x, obj.y], np.zeros(len(t))], np.c_[rim + [obj.x, obj.y], np.full(len(t), z)]])


@pytest.mark.parametrize("shape", ["ball", "box", "cylinder"])
def test_segmentation_boxes_match_projected_ground_truth(make_sim, small_config, shape):
    sizes = {"ball": {"radius": 0.14}, "box": {"hx": 0.15, "hy": 0.1, "hz": 0.12},
             "cylinder": {"radius": 0.1, "half_height": 0.18}}
    obj = SceneObject(phrase=f"blue {shape}", color="blue", shape=shape, x=1.2, y=0.25, yaw=0.6, size=sizes[shape])
    sim = make_sim(scene=_empty_room(small_config, -0.3, 0.1, 0.15, [obj]))
    (box,) = sim.object_boxes()
    uv, depth = sim.project(_sample_surface(obj))
    assert (depth > 0).all()
    # projected pixel centres -> pixel-edge box, as the segmentation box is
    want = (uv[:, 0].min() + 0.5, uv[:, 1].min() + 0.5, uv[:, 0].max() + 0.5, uv[:, 1].max() + 0.5)
    assert box.phrase == f"blue {shape}" and box.visible_fraction == pytest.approx(1.0)
    assert box.xyxy == pytest.approx(want, abs=1.6)


def test_occluded_objects_report_their_visible_fraction_and_can_be_filtered(make_sim, small_config):
    front = SceneObject(phrase="red box", color="red", shape="box", x=1.0, y=0.0, size={"hx": 0.1, "hy": 0.2, "hz": 0.2})
    behind = SceneObject(phrase="green ball", color="green", shape="ball", x=2.0, y=0.4, size={"radius": 0.15})
    sim = make_sim(scene=_empty_room(small_config, 0.0, 0.0, 0.0, [front, behind]))
    boxes = {b.phrase: b for b in sim.object_boxes(min_visible_fraction=0.0, min_pixels=1)}
    assert boxes["red box"].visible_fraction == pytest.approx(1.0)
    assert boxes["green ball"].visible_fraction < 0.7
    assert [b.phrase for b in sim.object_boxes(min_visible_fraction=0.9, min_pixels=1)] == ["red box"]
    seg = sim.segmentation()
    assert set(np.unique(seg)) == {-1, 0, 1}


def test_intrinsics_follow_the_vertical_field_of_view(small_config):
    from lookout.sim.camera import CameraIntrinsics, optical_rotation_in_base

    k = CameraIntrinsics.from_config(small_config.camera)
    assert k.fy == pytest.approx(60 / math.tan(math.radians(small_config.camera.fovy_deg / 2)))
    # horizontal field of view from fx agrees with the config's
    assert math.degrees(2 * math.atan(80 / k.fx)) == pytest.approx(small_config.camera.hfov_deg)
    assert k.fx == k.fy and (k.cx, k.cy) == (79.5, 59.5)
    assert k.k[0] == k.fx and k.p[2] == k.cx and len(k.p) == 12
    rot = optical_rotation_in_base(0.0)
    assert rot @ np.array([0, 0, 1.0]) == pytest.approx([1, 0, 0])  # optical z = forward
    assert rot @ np.array([1.0, 0, 0]) == pytest.approx([0, -1, 0])  # optical x = right


def test_closed_sim_refuses_to_render(small_config):
    from lookout.sim.sim import Sim

    sim = Sim(small_config, seed=1)
    sim.render()
    sim.close()
    with pytest.raises(RuntimeError, match="closed"):
        sim.render()


def test_ground_truth_boxes_become_perfect_detections_for_a_vocabulary(make_sim, small_config):
    from lookout.sim.labels import boxes_to_detections

    red = SceneObject(phrase="red ball", color="red", shape="ball", x=1.5, y=0.3, size={"radius": 0.12})
    blue = SceneObject(phrase="blue box", color="blue", shape="box", x=1.6, y=-0.4, size={"hx": 0.1, "hy": 0.1, "hz": 0.1})
    sim = make_sim(scene=_empty_room(small_config, 0.0, 0.0, 0.0, [red, blue]))
    boxes = sim.object_boxes()
    assert {b.phrase for b in boxes} == {"red ball", "blue box"}
    result = boxes_to_detections(boxes, ["green cone", "red ball"], 160, 120)
    assert [(d.phrase, d.class_index, d.score) for d in result.detections] == [("red ball", 1, 1.0)]
    assert result.vocabulary == ["green cone", "red ball"] and (result.image_width, result.image_height) == (160, 120)
    (red_box,) = [b for b in boxes if b.phrase == "red ball"]
    assert result.detections[0].xyxy == red_box.xyxy
    # red ball is to the left (positive y), so its box is in the left half of the image
    assert result.detections[0].center[0] < 80


@pytest.mark.parametrize("pitch", [0.0, 10.0, 35.0])
def test_optical_quaternion_rotates_like_the_matrix(pitch):
    from lookout.sim.camera import optical_quaternion_in_base, optical_rotation_in_base

    x, y, z, w = optical_quaternion_in_base(pitch)
    assert x * x + y * y + z * z + w * w == pytest.approx(1.0)
    q = np.array([x, y, z])
    v = np.array([0.0, 0.0, 1.0])  # the optical axis
    rotated = v + 2 * np.cross(q, np.cross(q, v) + w * v)  # quaternion rotation of v
    assert rotated == pytest.approx(optical_rotation_in_base(pitch) @ v, abs=1e-9)
    assert rotated == pytest.approx([math.cos(math.radians(pitch)), 0.0, -math.sin(math.radians(pitch))], abs=1e-9)


def test_a_failed_reset_keeps_the_previous_scene(make_sim, small_config):
    from lookout.sim.world import SceneError, SceneOverrides

    sim = make_sim(7)
    before, image = sim.scene, _digest(sim.render())
    with pytest.raises(SceneError):
        sim.reset(8, SceneOverrides(require=["red ball"], exclude=["ball"]))
    inside = SceneObject(phrase="red box", color="red", shape="box", x=0.0, y=0.0, size={"hx": 0.2, "hy": 0.2, "hz": 0.2})
    with pytest.raises(RuntimeError, match="inside an obstacle"):
        sim.reset(scene=_empty_room(small_config, 0.0, 0.0, 0.0, [inside]))
    assert sim.scene == before and _digest(sim.render()) == image


def test_render_and_reset_from_other_threads_use_one_gl_thread(make_sim):
    """A ROS executor renders and resets on whichever thread it likes; GL contexts must not follow."""
    import threading

    sim = make_sim(3)
    first = sim.render()
    out: dict[str, object] = {}

    def reset_then_render() -> None:
        sim.reset(4)
        out["reset"] = sim.render()

    def render() -> None:
        out["other"] = sim.render()
        out["segmentation"] = sim.segmentation()

    for target in (reset_then_render, render):
        t = threading.Thread(target=target)
        t.start()
        t.join(timeout=60)
    assert out["reset"].shape == first.shape and not np.array_equal(out["reset"], first)  # seed 4's scene
    np.testing.assert_array_equal(out["other"], out["reset"])
    assert out["segmentation"].shape == first.shape[:2]
    sim.close()
    with pytest.raises(RuntimeError, match="closed"):
        sim.render()
