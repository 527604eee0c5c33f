"""Turn a `Scene` into MuJoCo MJCF text: room, objects and the camera robot.

Conventions the rest of `lookout.sim` relies on:
- the robot is body `robot` with joints x (slide), y (slide), yaw (hinge): qpos[0:3] is its pose;
- every geom of object i is named `obj{i}` or `obj{i}_<part>`, so segmentation ids map to objects;
- objects and walls collide only with the robot's base (contype/conaffinity), never with each other
  or the floor, so a collision query answers exactly "would the robot touch something here?".
"""

from __future__ import annotations

import math
from xml.sax.saxutils import quoteattr

from lookout.sim.config import COLORS, SimConfig
from lookout.sim.world import Scene, SceneObject

CAMERA_NAME = "front_camera"
ROBOT_BODY = "robot"
ROBOT_BASE_GEOM = "robot_base"
# contype/conaffinity: the robot's base (1, 0) touches obstacles (0, 1); nothing else touches anything.
_OBSTACLE = 'contype="0" conaffinity="1"'
_ROBOT = 'contype="1" conaffinity="0"'
_GHOST = 'contype="0" conaffinity="0"'


def _f(*values: float) -> str:
    return " ".join(f"{v:.5g}" for v in values)


def _rgba(color: str) -> str:
    return _f(*COLORS[color], 1.0)


def _cone_vertices(radius: float, height: float, segments: int = 32) -> str:
    pts = [(0.0, 0.0, height)]
    pts += [(radius * math.cos(2 * math.pi * k / segments), radius * math.sin(2 * math.pi * k / segments), 0.0)
            for k in range(segments)]
    return " ".join(_f(*p) for p in pts)


def _object_xml(i: int, obj: SceneObject) -> tuple[str, str]:
    """(asset xml, body xml) for one object standing on the floor."""
    s, rgba, name = obj.size, _rgba(obj.color), f"obj{i}"
    common = f'{_OBSTACLE} rgba="{rgba}"'
    asset = ""
    if obj.shape == "ball":
        geoms = f'<geom name="{name}" type="sphere" size="{_f(s["radius"])}" pos="0 0 {_f(s["radius"])}" {common}/>'
    elif obj.shape == "box":
        geoms = (f'<geom name="{name}" type="box" size="{_f(s["hx"], s["hy"], s["hz"])}" '
                 f'pos="0 0 {_f(s["hz"])}" {common}/>')
    elif obj.shape == "cylinder":
        geoms = (f'<geom name="{name}" type="cylinder" size="{_f(s["radius"], s["half_height"])}" '
                 f'pos="0 0 {_f(s["half_height"])}" {common}/>')
    elif obj.shape == "bottle":
        r, h = s["radius"], s["half_height"]
        neck_r, neck_h = 0.4 * r, 0.5 * h  # body 0..2h, shoulder to 2.3h, neck 2.2h..3.2h (SceneObject.height)
        geoms = (
            f'<geom name="{name}" type="cylinder" size="{_f(r, h)}" pos="0 0 {_f(h)}" {common}/>'
            f'<geom name="{name}_shoulder" type="ellipsoid" size="{_f(r, r, 0.3 * h)}" pos="0 0 {_f(2 * h)}" {common}/>'
            f'<geom name="{name}_neck" type="cylinder" size="{_f(neck_r, neck_h)}" '
            f'pos="0 0 {_f(2.7 * h)}" {common}/>'
        )
    else:  # cone
        asset = f'<mesh name="{name}_mesh" vertex="{_cone_vertices(s["radius"], s["height"])}"/>'
        geoms = f'<geom name="{name}" type="mesh" mesh="{name}_mesh" {common}/>'
    body = (f'<body name={quoteattr(name + "_body")} pos="{_f(obj.x, obj.y, 0.0)}" euler="0 0 {_f(obj.yaw)}">'
            f"{geoms}</body>")
    return asset, body


def _robot_xml(cfg: SimConfig, scene: Scene) -> str:
    r = cfg.robot.radius_m
    cam = cfg.camera
    p = math.radians(cam.pitch_deg)
    start = scene.robot_start
    # Camera axes: x right (-y of the robot), y up tilted back by the pitch; it looks along -z = forward-down.
    xyaxes = _f(0, -1, 0, math.sin(p), 0, math.cos(p))
    wheel_r = 0.04
    return f"""
    <body name="{ROBOT_BODY}" pos="0 0 0">
      <joint name="x" type="slide" axis="1 0 0"/>
      <joint name="y" type="slide" axis="0 1 0"/>
      <joint name="yaw" type="hinge" axis="0 0 1"/>
      <geom name="{ROBOT_BASE_GEOM}" type="cylinder" size="{_f(r, 0.045)}" pos="0 0 {_f(wheel_r + 0.045)}"
            rgba="0.2 0.2 0.22 1" {_ROBOT} mass="5"/>
      <geom name="robot_wheel_l" type="cylinder" size="{_f(wheel_r, 0.015)}" pos="0 {_f(r - 0.02)} {_f(wheel_r)}"
            euler="1.5708 0 0" rgba="0.05 0.05 0.05 1" {_GHOST} mass="0.2"/>
      <geom name="robot_wheel_r" type="cylinder" size="{_f(wheel_r, 0.015)}" pos="0 {_f(-(r - 0.02))} {_f(wheel_r)}"
            euler="1.5708 0 0" rgba="0.05 0.05 0.05 1" {_GHOST} mass="0.2"/>
      <geom name="robot_mast" type="box" size="0.015 0.015 {_f(cam.height_m / 2)}"
            pos="{_f(cam.forward_m - 0.04, 0, cam.height_m / 2)}" rgba="0.3 0.3 0.3 1" {_GHOST} mass="0.1"/>
      <camera name="{CAMERA_NAME}" pos="{_f(cam.forward_m, 0, cam.height_m)}" xyaxes="{xyaxes}"
              fovy="{_f(cam.fovy_deg)}"/>
    </body>
    <!-- start pose {_f(start.x, start.y, start.yaw)} is written to qpos by Sim.reset -->"""


def scene_to_mjcf(scene: Scene, config: SimConfig | None = None) -> str:
    """MJCF text for the scene; the robot sits at the origin until `Sim.reset` sets qpos."""
    cfg = config or SimConfig()
    half = scene.room_size_m / 2
    wh, wt = cfg.room.wall_height_m, 0.05
    assets, bodies = [], []
    for i, obj in enumerate(scene.objects):
        asset, body = _object_xml(i, obj)
        assets.append(asset)
        bodies.append(body)
    walls = "\n".join(
        f'<geom name="wall_{n}" type="box" size="{_f(sx, sy, wh / 2)}" pos="{_f(px, py, wh / 2)}" '
        f'rgba="0.78 0.76 0.70 1" {_OBSTACLE}/>'
        for n, (sx, sy, px, py) in enumerate([
            (half + wt, wt, 0.0, half + wt), (half + wt, wt, 0.0, -half - wt),
            (wt, half + wt, half + wt, 0.0), (wt, half + wt, -half - wt, 0.0),
        ])
    )
    shadow = 2048 if cfg.shadows else 0
    return f"""<mujoco model="lookout_scene_{scene.seed}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{_f(cfg.physics_dt)}" gravity="0 0 0"/>
  <statistic extent="{_f(scene.room_size_m)}" center="0 0 0.5"/>
  <visual>
    <global offwidth="{cfg.camera.width}" offheight="{cfg.camera.height}"/>
    <quality shadowsize="{shadow}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.35 0.35 0.35" specular="0.05 0.05 0.05"/>
    <map znear="0.003" zfar="10"/>
  </visual>
  <asset>
    <texture name="floor_tex" type="2d" builtin="checker" rgb1="0.52 0.52 0.50" rgb2="0.44 0.44 0.42"
             width="64" height="64"/>
    <material name="floor_mat" texture="floor_tex" texrepeat="{_f(scene.room_size_m, scene.room_size_m)}"
              reflectance="0"/>
    {"".join(assets)}
  </asset>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 4" dir="0.3 0.2 -1" diffuse="0.55 0.55 0.55"
           castshadow="{"true" if cfg.shadows else "false"}"/>
    <geom name="floor" type="plane" size="{_f(half, half, 0.1)}" material="floor_mat" {_GHOST}/>
    {walls}
    <geom name="ceiling" type="box" size="{_f(half + wt, half + wt, wt)}" pos="0 0 {_f(wh + wt)}"
          rgba="0.9 0.9 0.88 1" {_GHOST}/>
    {"".join(bodies)}
    {_robot_xml(cfg, scene)}
  </worldbody>
</mujoco>
"""
