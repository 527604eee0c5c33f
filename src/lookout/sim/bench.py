"""How fast the simulator runs here: rendering FPS per resolution and the real-time factor of a loop
that steps physics every 20 ms and renders the camera at its configured rate (the sim_node's work)."""

from __future__ import annotations

import math
import time

from lookout.sim.config import SimConfig


def _fps(sim, frames: int, fn) -> str:
    """Frames per wall second, and CPU milliseconds per frame (less sensitive to a busy machine)."""
    fn()  # the first frame pays for GL warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for k in range(frames):
        sim.step(0.0, 0.3 if k % 2 else -0.3, 0.05)  # a changing view, as in a run
        fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return f"{frames / wall:.0f} /s (CPU {1e3 * cpu / frames:.1f} ms each)"


def measure(config: SimConfig | None = None, frames: int = 60, seed: int = 3) -> list[tuple[str, str]]:
    from lookout.mujoco_loader import default_gl_backend
    from lookout.sim.sim import Sim

    cfg = config or SimConfig.default()
    rows: list[tuple[str, str]] = [("GL backend", default_gl_backend())]
    for w, h in ((320, 240), (640, 480)):
        c = cfg.model_copy(update={"camera": cfg.camera.model_copy(update={"width": w, "height": h})})
        with Sim(c, seed=seed) as sim:
            rows.append((f"RGB frames at {w}x{h}", _fps(sim, frames, sim.render)))
            rows.append((f"segmentation frames at {w}x{h}", _fps(sim, frames, sim.segmentation)))
            rows.append((f"labelled frames (boxes + visibility) at {w}x{h}",
                         _fps(sim, max(5, frames // 4), sim.object_boxes)))
    with Sim(cfg, seed=seed) as sim:
        sim_seconds, tick, period = 10.0, 0.02, 1.0 / cfg.camera.rate_hz
        next_frame, n_frames = 0.0, 0
        t, cpu = time.perf_counter(), time.process_time()
        while sim.time_s < sim_seconds:
            sim.step(0.2, 0.3 * math.sin(sim.time_s), tick)
            sim.odometry()
            if sim.time_s >= next_frame:
                sim.render()
                n_frames += 1
                next_frame += period
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        rows.append((f"sim loop {cfg.camera.width}x{cfg.camera.height}, camera {cfg.camera.rate_hz:g} Hz, "
                     f"physics {1 / tick:g} Hz", f"{sim_seconds / wall:.1f}x real time (baseline 1.0x)"))
        rows.append(("CPU the simulator needs to run at real time", f"{100 * cpu / sim_seconds:.0f}% of a core"))
    return rows
