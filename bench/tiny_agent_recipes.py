"""Compare tiny-agent training recipes side by side (shape, steps, batch, learning rate).

Each recipe trains in its own process (on a GPU they run concurrently; the tiny model is
launch-bound, not compute-bound) and reports teacher-forced exact match on the validation rows
during training and on the held-out test split at the end, by slice. Teacher-forced exact is the
share of assistant turns greedy decoding reproduces word for word: a fast proxy for
`lookout eval agent`. This is how the `make models` recipe was chosen; see docs/benchmarks.md.

    python bench/tiny_agent_recipes.py --device cuda --out runs/recipes.json \\
        --recipe h96:hidden_size=96,steps=8000 --recipe h192:hidden_size=192,intermediate_size=512,steps=3000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from dataclasses import fields
from pathlib import Path
from typing import Any


def parse_recipe(text: str) -> tuple[str, dict[str, Any]]:
    """'name:key=value,key=value' with TinyAgentConfig field names."""
    from lookout.models.tiny_agent import TinyAgentConfig

    name, _, rest = text.partition(":")
    types = {f.name: f.type for f in fields(TinyAgentConfig)}
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"unknown setting {key!r} in recipe {name!r}; settings: {', '.join(types)}")
        overrides[key] = {"int": int, "float": float, "str": str}[str(types[key])](value)
    return name, overrides


def prepare(work: Path, seed: int) -> None:
    from lookout.agent.capabilities import Capabilities
    from lookout.models.tiny_build import DATASET_SIZES
    from lookout.train.data_gen import generate_dataset

    if not (work / "data" / "train.jsonl").is_file():
        generate_dataset(work / "data", seed=seed, sizes=DATASET_SIZES, caps=Capabilities.default(),
                         show_progress=False)


def run_recipe(name: str, overrides: dict[str, Any], work: Path, seed: int, device: str, queue: Any,
               save: Path | None = None) -> None:
    import torch

    from lookout.models.tiny_agent import (
        TinyAgentConfig,
        encode_rows,
        save_agent_base,
        teacher_forced_exact,
        train_tiny_agent,
    )
    from lookout.models.tiny_build import TOKENIZER_ROWS, VAL_ROWS_DURING_TRAINING
    from lookout.models.tiny_tokenizer import conversation_texts, train_tokenizer
    from lookout.train.data_gen import load_rows

    try:
        torch.set_num_threads(2)
        cfg = TinyAgentConfig(seed=seed, device=device, **overrides)
        train = load_rows(work / "data" / "train.jsonl")
        val = load_rows(work / "data" / "val.jsonl")[:VAL_ROWS_DURING_TRAINING]
        test = load_rows(work / "data" / "test.jsonl")
        tokenizer = train_tokenizer(conversation_texts(train[:TOKENIZER_ROWS]), vocab_size=cfg.vocab_size)
        t0 = time.perf_counter()
        model, stats = train_tiny_agent(train, tokenizer, cfg, show_progress=False, val_rows=val,
                                        eval_every=max(1, cfg.steps // 6))
        seconds = time.perf_counter() - t0
        if save is not None:
            save_agent_base(model, tokenizer, save / name)
        model.to(device)
        slices = {"all": test,
                  "heldout_combo": [r for r in test if r["meta"]["heldout_combo"]],
                  "heldout_phrasing": [r for r in test if r["meta"]["heldout_phrasing"]],
                  "in_distribution": [r for r in test if not (r["meta"]["heldout_combo"]
                                                              or r["meta"]["heldout_phrasing"])]}
        test_exact = {k: round(teacher_forced_exact(model, encode_rows(tokenizer, v), tokenizer.pad_token_id), 4)
                      for k, v in slices.items() if v}
        queue.put({"name": name, "overrides": overrides, "n_params": stats.n_params, "steps": cfg.steps,
                   "rows_seen": cfg.steps * cfg.batch_size, "train_seconds": round(seconds, 1),
                   "final_loss": round(stats.final_loss, 4), "val_exact": stats.val_exact, "test_exact": test_exact})
    except Exception as exc:  # report it; the other recipes go on
        queue.put({"name": name, "overrides": overrides, "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", action="append", required=True, help="name:key=value,... (TinyAgentConfig fields)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/tiny-recipes"))
    ap.add_argument("--out", type=Path, default=Path("runs/tiny-recipes/results.json"))
    ap.add_argument("--save", type=Path, help="save each recipe's model (save_pretrained) into SAVE/<name>")
    args = ap.parse_args()
    recipes = [parse_recipe(r) for r in args.recipe]
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.seed)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=run_recipe, args=(n, o, args.work, args.seed, args.device, queue, args.save))
             for n, o in recipes]
    for p in procs:
        p.start()
    results = []
    for _ in procs:
        results.append(queue.get())
        print(json.dumps(results[-1]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    for p in procs:
        p.join()
    print(f"\n{'recipe':<14} {'params':>7} {'steps':>6} {'rows':>7} {'s':>6} {'val exact':>9} "
          f"{'test':>6} {'combo':>6} {'phrase':>6}")
    for r in results:
        if "error" in r:
            print(f"{r['name']:<14} {r['error']}")
            continue
        t = r["test_exact"]
        print(f"{r['name']:<14} {r['n_params'] / 1e6:>6.2f}M {r['steps']:>6} {r['rows_seen']:>7} "
              f"{r['train_seconds']:>6.0f} {r['val_exact'][-1][1]:>9.3f} {t['all']:>6.3f} "
              f"{t.get('heldout_combo', 0):>6.3f} {t.get('heldout_phrasing', 0):>6.3f}")


if __name__ == "__main__":
    main()
