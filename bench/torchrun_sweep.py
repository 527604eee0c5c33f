"""Shared by the multi-GPU benches: one random base, then this script's worker under torchrun per GPU count.

`bench/train_ddp.py` and `bench/train_fsdp.py` both save a model of a named shape once and launch
`torchrun --standalone --nproc_per_node=N <script> --worker ...` for each N with the same global
batch; each run's rank 0 writes a JSON result, which the sweep collects. Importing this module
turns NVLink multicast off for this process and every process it starts (the H200 hosts' rule).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "kernels")]

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
os.environ.update(NO_MULTICAST)

# The options the sweep passes on to every worker, besides --base and --result.
WORKER_OPTIONS = ("micro", "seq", "global_micro", "warmup", "steps")


def add_sweep_args(ap: argparse.ArgumentParser, steps: int) -> None:
    """GPU counts, the global batch and the hidden worker flags, the same for every multi-GPU bench."""
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--micro", type=int, default=2, help="rows per micro-batch (per GPU)")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--global-micro", type=int, default=8, help="micro-batches per optimizer step, all GPUs")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--shape", default="llama-3.2-1b")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)


def run_sweep(args: argparse.Namespace, script: str, extra: list[str], check: bool = True) -> list[dict]:
    """Each N of `args.gpus`: torchrun `script --worker`; rank 0's JSON result per N.

    With `check=False` a failed run becomes {"gpus": N, "error": ...} and the sweep goes on.
    """
    from lookout.train.standins import save_random_llama

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = save_random_llama(Path(tmp) / "base", shape=args.shape, seed=0)
        for n in args.gpus:
            if args.global_micro % n:
                raise SystemExit(f"--global-micro {args.global_micro} must be a multiple of --gpus {n}")
            result = Path(tmp) / f"result_{n}.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", script,
                   "--worker", "--base", str(base), "--result", str(result)]
            for name in WORKER_OPTIONS:
                cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
            cmd += extra
            print("$", " ".join(cmd), flush=True)
            done = subprocess.run(cmd, check=check, env={**os.environ, **NO_MULTICAST})
            rows.append(json.loads(result.read_text()) if done.returncode == 0 and result.exists()
                        else {"gpus": n, "error": f"exit status {done.returncode} (log above)"})
    return rows
