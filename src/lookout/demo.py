"""`lookout demo`: the simulated stack with the tiny models, a short spoken script, and what happened.

The script is written for the scene of the chosen seed (it names objects that are really there, and
one that is not): find one object, go to another, come back to where the conversation started,
look for something absent and get interrupted by "stop". It runs through the in-process closed loop
(`lookout.sim.harness`: simulator camera -> real detector -> the agent's command lifecycle -> Sim),
then writes a video of the camera with the detector's boxes and the agent's words, a top-down plot
of the trajectory, and a JSON summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from lookout.sim.config import COLORS, SHAPES
from lookout.sim.harness import TINY_MIN_SCORE, Episode, HarnessOptions, SimStack
from lookout.sim.scenario import Scenario
from lookout.sim.state import WorldState
from lookout.sim.world import SceneOverrides


def demo_script(world: WorldState, seed: int, targets: list[str] | None = None) -> Scenario:
    """Commands for this scene: two present objects (`targets`, else the scene's first two) and an absent one."""
    wanted = [world.find(p) for p in targets or []]
    objs = [o for o in wanted if o is not None] + sorted(world.objects, key=lambda o: o.phrase)
    if len(world.objects) < 2:
        raise ValueError(f"the scene of seed {seed} has fewer than two objects; pick another --seed")
    first = objs[0]
    second = next(o for o in objs[1:] if o.phrase != first.phrase)
    present = {o.phrase for o in world.objects}
    absent = next(f"{c} {s}" for s in reversed(SHAPES) for c in COLORS if f"{c} {s}" not in present)
    turns: list[dict[str, Any]] = [
        # "find X" locates X (search until seen); "go to X" drives there: the dataset's semantics.
        {"say": f"find the {first.phrase}", "expect": [{"in_view": first.phrase}]},
        {"say": f"now go to the {second.phrase}", "expect": [{"near_object": second.phrase}]},
        {"say": "come back", "expect": [{"returned_to_start": {"reference": "episode"}}]},
        {"say": f"look for the {absent}", "expect": [{"moved_at_least": {"degrees": 30}}]},
        {"say": "stop", "after_s": 6.0, "expect": ["stopped"]},
    ]
    return Scenario.model_validate({"id": f"demo-seed-{seed}", "category": "multi_turn", "seed": seed,
                                    "scene": {"require": [first.phrase, second.phrase]},
                                    "time_limit_s": 240.0, "turns": turns})


def _overlay(rgb: np.ndarray, det: Any, say: str, text: str, t: float, scale: int = 2) -> np.ndarray:
    import cv2

    from lookout.perception.annotate import draw_detections

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if det is not None:
        bgr = draw_detections(bgr, det)
    bgr = cv2.resize(bgr, (bgr.shape[1] * scale, bgr.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    h, w = bgr.shape[:2]
    band = np.zeros((64, w, 3), np.uint8)
    cv2.putText(band, f"t={t:5.1f}s  you: {say}"[:80], (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    for i, line in enumerate(_wrap(f"robot: {text}", 80)[:2]):
        cv2.putText(band, line, (6, 42 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (120, 230, 120), 1, cv2.LINE_AA)
    return np.ascontiguousarray(np.vstack([bgr, band])[..., ::-1])


def _wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    return lines + ([cur] if cur else [])




def plot_trajectory(ep: Episode, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    world = ep.rollout.world
    half = world.room_size_m / 2
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    ax.add_patch(Rectangle((-half, -half), 2 * half, 2 * half, fill=False, lw=2, color="0.3"))
    for o in world.objects:
        ax.add_patch(Circle((o.x, o.y), o.footprint_radius, facecolor=o.color, edgecolor="black", lw=1))
        ax.annotate(o.phrase, (o.x, o.y + o.footprint_radius + 0.05), ha="center", fontsize=8)
    samples = np.array(ep.rollout.samples)
    turns = ep.rollout.turns
    cmap = plt.get_cmap("tab10")
    for rec in turns:
        end = rec.end_s if rec.end_s is not None else samples[-1, 0]
        nxt = [t.start_s for t in turns if t.index > rec.index]
        end = max(end, nxt[0] if nxt else samples[-1, 0])
        sel = (samples[:, 0] >= rec.start_s - 1e-9) & (samples[:, 0] <= end + 1e-9)
        if sel.any():
            ax.plot(samples[sel, 1], samples[sel, 2], color=cmap(rec.index % 10), lw=2,
                    label=f"{rec.index + 1}. {rec.say}")
    ax.plot(samples[0, 1], samples[0, 2], "k^", ms=10, label="start")
    ax.plot(samples[-1, 1], samples[-1, 2], "ks", ms=8, label="end")
    ax.set_xlim(-half - 0.1, half + 0.1)
    ax.set_ylim(-half - 0.1, half + 0.1)
    ax.set_aspect("equal")
    ax.set_title(f"{ep.scenario.id}: robot trajectory (top view)")
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


DEFAULT_TARGETS = ("red ball", "blue box")


def _episode_over_ros(seed: int, targets: list[str], on_frame: Any, console: Any) -> Episode:
    """The demo's dialogue through the ROS sim stack; frames reach `on_frame` as the detector answers them."""
    from lookout.paths import config_dir
    from lookout.sim.config import SimConfig
    from lookout.sim.harness import EpisodeTimings
    from lookout.sim.scoring import score
    from lookout.sim.sim import Sim

    try:
        from lookout_ros.scenario_runner import sim_stack_over_ros
    except ImportError as exc:
        raise RuntimeError(f"--ros needs the ROS 2 workspace ({exc}); run through scripts/run.sh") from None
    with Sim(SimConfig.from_yaml(config_dir() / "sim.yaml"), seed=seed, overrides=SceneOverrides(require=targets)) as sim:
        world = sim.world_state()  # the script names objects of this scene; sim_node builds the same one
    scenario = demo_script(world, seed, targets)
    console.print(f"scene seed {seed}: " + ", ".join(o.phrase for o in world.objects))
    timings = EpisodeTimings()

    def frame(t: float, img: Any, det: Any, say: str, text: str) -> None:
        timings.frames += 1
        on_frame(t, img, det, say, text)

    with sim_stack_over_ros({"seed": str(seed)}, record_frames=True) as runner:
        runner.on_frame = frame
        t0 = time.perf_counter()
        rollout = runner.run(scenario)
        timings.wall_s = time.perf_counter() - t0
    timings.sim_s = rollout.samples[-1][0] - rollout.samples[0][0]
    return Episode(scenario, rollout, score(scenario, rollout), timings, [])


def run_demo(out_dir: Path, *, seed: int = 111, profile: str = "tiny", camera_hz: float = 10.0,
             perception: str = "model", targets: tuple[str, ...] = DEFAULT_TARGETS,
             ros: bool = False) -> dict[str, Any]:
    """Run the scripted dialogue; write demo.mp4, trajectory.png and summary.json under `out_dir`.

    `ros`: through the ROS 2 nodes of launch/sim.launch.yaml over DDS, in real time (the video shows the
    frames the detector node answered), instead of the in-process closed loop.
    """
    from rich.console import Console
    from rich.table import Table

    console = Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    import imageio.v2 as imageio

    video = out_dir / "demo.mp4"
    if ros:
        if profile != "tiny":
            raise ValueError("the ROS demo runs launch/sim.launch.yaml, whose configs load the tiny profile")
        console.print("starting launch/sim.launch.yaml's nodes (sim_node, detector, agent) in one process ...")
        with imageio.get_writer(video, fps=camera_hz, codec="libx264", quality=7, macro_block_size=8) as writer:
            ep = _episode_over_ros(seed, list(targets), lambda t, img, det, say, text: writer.append_data(
                _overlay(img, det, say, text, t)), console)
    else:
        console.print(f"loading the '{profile}' models (detector + planner) ...")
        opts = HarnessOptions(profile=profile, camera_hz=camera_hz, perception=perception,  # type: ignore[arg-type]
                              min_score=TINY_MIN_SCORE if profile == "tiny" else None)
        with SimStack(opts) as stack:
            stack.sim.reset(seed, SceneOverrides(require=list(targets)))
            scenario = demo_script(stack.sim.world_state(), seed, list(targets))
            console.print(f"models loaded in {stack.load_s:.1f} s; scene seed {seed}: "
                          + ", ".join(o.phrase for o in stack.sim.world_state().objects))
            with imageio.get_writer(video, fps=camera_hz, codec="libx264", quality=7, macro_block_size=8) as writer:
                ep = stack.run(scenario, on_frame=lambda t, img, det, say, text: writer.append_data(
                    _overlay(img, det, say, text, t)))
    table = Table(title=f"demo (seed {seed}, profile {profile})")
    for col in ("#", "you said", "robot replied", "claimed", "check", "start (s)", "took (s)"):
        table.add_column(col)
    checks = {c.turn: c for c in ep.result.checks}
    rows = []
    for rec in ep.rollout.turns:
        chk = checks.get(rec.index)
        took = (rec.end_s - rec.start_s) if rec.end_s is not None else None
        status = "interrupted" if rec.interrupted else ("success" if rec.success else "failed")
        table.add_row(str(rec.index + 1), rec.say, rec.reply or "-", status,
                      ("[green]pass[/]" if chk.ok else "[red]fail[/]") if chk else "-",
                      f"{rec.start_s:.1f}", f"{took:.1f}" if took is not None else "-")
        rows.append({"say": rec.say, "reply": rec.reply, "status": status, "start_s": rec.start_s,
                     "duration_s": took, "check_ok": chk.ok if chk else None, "check": chk.detail if chk else None})
    console.print(table)
    plot = plot_trajectory(ep, out_dir / "trajectory.png")
    summary = {"seed": seed, "profile": profile, "perception": perception, "transport": "ros" if ros else "in-process",
               "all_checks_passed": ep.result.success,
               "reason": ep.result.reason, "turns": rows, "timings": ep.timings.as_dict(),
               "run_wall_s": round(time.perf_counter() - t0, 1),
               "outputs": {"video": str(video), "trajectory": str(plot)}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    tim = ep.timings
    if ros:
        console.print(f"{tim.sim_s:.0f} s simulated in {tim.wall_s:.0f} s wall over ROS 2 "
                      f"({tim.frames} frames answered by the detector node); whole demo {summary['run_wall_s']:.0f} s")
    else:
        console.print(f"{tim.sim_s:.0f} s simulated, real-time factor {tim.realtime_factor:.2f} at {camera_hz:g} Hz "
                      f"camera (planning {tim.plan_s:.1f} s wall); whole demo {summary['run_wall_s']:.0f} s")
    console.print(f"outputs: {video}, {plot}, {out_dir / 'summary.json'}")
    return summary
