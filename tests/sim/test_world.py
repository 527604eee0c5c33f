"""Scene generation: seeded, non-overlapping, and honouring the overrides scenarios ask for."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookout.sim.config import SimConfig
from lookout.sim.world import SceneError, SceneOverrides, generate_scene

CFG = SimConfig()


def test_same_seed_gives_the_same_scene_and_different_seeds_differ():
    a, b = generate_scene(42, CFG), generate_scene(42, CFG)
    assert a == b and a.model_dump_json() == b.model_dump_json()
    others = {generate_scene(s, CFG).model_dump_json() for s in range(43, 53)}
    assert a.model_dump_json() not in others and len(others) == 10


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_objects_never_overlap_and_stay_clear_of_walls_and_robot(seed):
    scene = generate_scene(seed, CFG)
    half = CFG.room.size_m / 2
    assert CFG.objects.min_count <= len(scene.objects) <= CFG.objects.max_count
    assert len(set(scene.phrases)) == len(scene.phrases), "a phrase must name exactly one object"
    for o in scene.objects:
        assert max(abs(o.x), abs(o.y)) + o.footprint_radius <= half - CFG.objects.wall_margin_m + 1e-3
        robot_gap = o.floor_distance(scene.robot_start.x, scene.robot_start.y) - CFG.robot.radius_m
        assert robot_gap >= CFG.objects.robot_clearance_m - 1e-3
    for a, b in itertools.combinations(scene.objects, 2):
        # footprints are inside these circles, so circle separation bounds the real gap from below
        assert math.hypot(a.x - b.x, a.y - b.y) - a.footprint_radius - b.footprint_radius >= CFG.objects.min_gap_m - 1e-3


def test_overrides_require_exclude_and_count():
    ov = SceneOverrides(require=["red ball", "Blue  Box"], exclude=["green", "cone"], n_objects=7)
    for seed in range(20):
        scene = generate_scene(seed, CFG, ov)
        assert len(scene.objects) == 7
        assert scene.find("red ball") and scene.find("blue box")
        assert not any(o.color == "green" or o.shape == "cone" for o in scene.objects)


def test_in_view_objects_start_in_the_camera_view_and_out_of_view_ones_do_not():
    half_fov = CFG.camera.hfov_deg / 2
    ov = SceneOverrides(in_view=["yellow cone"], out_of_view=["white bottle"])
    for seed in range(30):
        scene = generate_scene(seed, CFG, ov)
        start = scene.robot_start
        seen, hidden = scene.find("yellow cone"), scene.find("white bottle")
        assert abs(math.degrees(start.bearing_to(seen.x, seen.y))) < half_fov - 5
        assert abs(math.degrees(start.bearing_to(hidden.x, hidden.y))) > half_fov + 5


def test_free_corridor_ahead_is_kept_clear():
    ov = SceneOverrides(free_ahead_m=2.0, n_objects=12)
    for seed in range(30):
        scene = generate_scene(seed, CFG, ov)
        s = scene.robot_start
        for d in (0.5, 1.0, 1.5, 2.0):
            x, y = s.x + d * math.cos(s.yaw), s.y + d * math.sin(s.yaw)
            assert max(abs(x), abs(y)) < CFG.room.size_m / 2 - CFG.robot.radius_m
            assert all(o.floor_distance(x, y) > CFG.robot.radius_m for o in scene.objects)


def test_robot_pose_override_is_used_exactly():
    scene = generate_scene(3, CFG, SceneOverrides(robot=(1.0, -0.5, 90.0)))
    assert (scene.robot_start.x, scene.robot_start.y) == (1.0, -0.5)
    assert scene.robot_start.yaw == pytest.approx(math.pi / 2, abs=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"require": ["red spaceship"]}, "must be '<colour> <shape>'"),
        ({"require": ["teal ball"]}, "must be '<colour> <shape>'"),
        ({"exclude": ["fuzzy"]}, "must be '<colour> <shape>'"),
    ],
)
def test_bad_override_phrases_are_rejected_with_the_allowed_words(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SceneOverrides(**kwargs)


def test_impossible_scenes_raise_scene_errors():
    with pytest.raises(SceneError, match="both required and excluded"):
        generate_scene(0, CFG, SceneOverrides(require=["red ball"], exclude=["red"]))
    with pytest.raises(SceneError, match="distinct phrases"):
        generate_scene(0, CFG, SceneOverrides(n_objects=40, exclude=["red"]))
    with pytest.raises(SceneError, match="outside"):
        generate_scene(0, CFG, SceneOverrides(robot=(10.0, 0.0, 0.0)))


def test_config_rejects_unknown_words_and_inverted_ranges(tmp_path):
    with pytest.raises(ValueError, match="unknown colours"):
        SimConfig.model_validate({"objects": {"colors": ["red", "teal"]}})
    with pytest.raises(ValueError, match="min_count"):
        SimConfig.model_validate({"objects": {"min_count": 5, "max_count": 2}})
    bad = tmp_path / "sim.yaml"
    bad.write_text("camera: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        SimConfig.from_yaml(bad)
    with pytest.raises(FileNotFoundError, match="not found"):
        SimConfig.from_yaml(tmp_path / "missing.yaml")


def test_repository_config_loads_and_round_trips_through_flat_parameters():
    cfg = SimConfig.default()
    assert cfg.camera.width >= 16
    flat = cfg.flat()
    assert "camera.width" in flat and "node.rate_factor" in flat
    assert SimConfig.from_flat(flat) == cfg
    assert SimConfig.describe("camera.width")


def test_config_also_reads_a_ros_parameter_file(tmp_path):
    path = tmp_path / "sim_params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    config_file: ''\n    scene_overrides: ''\n"
        "    camera.width: 640\n    camera:\n      height: 480\n    node:\n      rate_factor: 3.0\n"
    )
    cfg = SimConfig.from_yaml(path)
    assert (cfg.camera.width, cfg.camera.height, cfg.node.rate_factor) == (640, 480, 3.0)
    assert cfg.room == SimConfig().room
