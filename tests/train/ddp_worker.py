"""One `lookout train` run (pipeline.run, what the CLI calls) for the DDP tests, launched by torchrun.

Usage: ddp_worker.py BASE DATA CONFIG_JSON JOBS_JSON, where JOBS_JSON is a list of
{"out": DIR, "stop_at": STEP or 0, "resume": bool, "cli_config": YAML or null}, run in order in one
launch, in one process group created here (saving the start-up cost of a launch per job; the runs
reuse the existing group, as they would under accelerate). With stop_at the run is
interrupted after that step (a checkpoint is saved, as on Ctrl-C) and the next job starts; with
cli_config the job is the `lookout train` command itself (typer app, same process).
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("data")
    ap.add_argument("config")
    ap.add_argument("jobs")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from lookout.train import distributed
    from lookout.train.config import TrainConfig
    from lookout.train.loop import TrainingInterrupted
    from lookout.train.pipeline import run

    info, created = distributed.init_from_env()
    assert info.world_size > 1, "launch me with torchrun"
    cfg = TrainConfig(**json.loads(args.config))
    for job in json.loads(args.jobs):
        def stop(record: dict, at: int = job["stop_at"]) -> None:
            if record["step"] == at:
                raise KeyboardInterrupt

        if job.get("cli_config"):
            from lookout.cli import app

            app(["train", "--base", args.base, "--data", args.data, "--out", job["out"],
                 "--config", job["cli_config"]], standalone_mode=False)
            continue
        with contextlib.suppress(TrainingInterrupted):
            run(args.base, args.data, job["out"], cfg, resume=job["resume"], on_step_end=stop)
    distributed.shutdown(created)


if __name__ == "__main__":
    main()
