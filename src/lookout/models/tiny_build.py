"""`lookout models build tiny` (= `make models`): rebuild models/tiny from a seed, step by step.

Steps: generate the dataset, train the tokenizer, train the agent base model (CPU, minutes), then
the optional steps whose code lives elsewhere: the QLoRA adapter (runs when the project's trainer,
`lookout.train.pipeline`, is importable) and the tiny detector (runs when its builder,
`lookout.perception.tiny_detector.build_tiny_detector`, exists). Last, the checksum manifest, a
README with the exact command, and build.json with what was measured.
"""

from __future__ import annotations

import importlib
import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lookout.models.registry import MANIFEST_NAME, write_manifest
from lookout.paths import models_dir, repo_root

BUILD_INFO = "build.json"
SIZE_LIMIT_BYTES = 20 * 1024 * 1024  # everything under models/tiny, committed to git
DATASET_SIZES = {"train": 96000, "val": 400, "test": 500}
VAL_ROWS_DURING_TRAINING = 200
TOKENIZER_ROWS = 12000  # enough text for every merge; the rest would only slow the BPE trainer down


def tiny_dir() -> Path:
    return models_dir() / "tiny"


def read_build_info(folder: Path | None = None) -> dict[str, Any] | None:
    path = (folder or tiny_dir()) / BUILD_INFO
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class StepResult:
    name: str
    status: str  # done, skipped
    seconds: float
    detail: str = ""


@dataclass
class BuildResult:
    out_dir: Path
    steps: list[StepResult] = field(default_factory=list)
    total_bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def _optional(module: str, attr: str) -> Callable[..., Any] | None:
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def detector_recipe(out: Path, *, cuda: bool, force_cpu: bool = False, keep: bool = False) -> str:
    """'gpu' where CUDA is available; without it 'keep' a GPU-built detector that still matches `out`'s manifest
    (rebuilding it on the CPU would replace it with a weaker one), else 'cpu'. `force_cpu` always trains here;
    `keep` always keeps (e.g. to rebuild only the agent), and fails when there is nothing valid to keep."""
    if force_cpu:
        return "cpu"
    if cuda and not keep:
        return "gpu"
    problem = _why_not_keepable(out)
    if not problem:
        return "keep"
    if keep:
        raise ValueError(f"--keep-detector: no GPU-built detector to keep in {out} ({problem})")
    return "cpu"


def _why_not_keepable(out: Path) -> str:
    """'' when `out` holds a GPU-built detector that matches its manifest, else why not."""
    from lookout.models.registry import verify_against_manifest

    try:
        if "recipe" not in json.loads((out / "detector_build.json").read_text()):
            return "no GPU recipe in detector_build.json: built by the CPU stages"
        verify_against_manifest(out / "detector.pt", out / MANIFEST_NAME, "make models", out)
    except (OSError, ValueError) as err:  # missing or changed (ModelFileError is an OSError), or unreadable
        return str(err)
    return ""


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build_tiny(out_dir: str | Path | None = None, *, seed: int = 0, work_dir: str | Path | None = None,
               steps: int | None = None, dataset_sizes: dict[str, int] | None = None, adapter: bool = True,
               detector: bool = True, show_progress: bool = True, log: Callable[[str], None] = print,
               config: Any = None, detector_cpu: bool = False, device: str = "auto",
               keep_detector: bool = False) -> BuildResult:
    """Rebuild the tiny models into `out_dir` (default models/tiny) from `seed` (`config`: a TinyAgentConfig).

    `device` trains the agent base there; "auto" is CUDA when available, else the CPU.
    """
    import torch

    from lookout.agent.capabilities import Capabilities
    from lookout.models.tiny_agent import TinyAgentConfig, save_agent_base, train_tiny_agent
    from lookout.models.tiny_tokenizer import conversation_texts, train_tokenizer
    from lookout.train.data_gen import generate_dataset, load_rows

    out = Path(out_dir) if out_dir else tiny_dir()
    work = Path(work_dir) if work_dir else repo_root() / "runs" / "tiny-build"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    sizes = {**DATASET_SIZES, **(dataset_sizes or {})}
    cfg = config or TinyAgentConfig()
    cfg.seed = seed
    cfg.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if steps:
        cfg.steps = steps
    caps = Capabilities.default()
    result = BuildResult(out)
    t_all = time.perf_counter()

    def step(name: str, t0: float, detail: str = "", status: str = "done") -> None:
        result.steps.append(StepResult(name, status, time.perf_counter() - t0, detail))
        log(f"[{name}] {status} in {time.perf_counter() - t0:.1f} s{': ' + detail if detail else ''}")

    t0 = time.perf_counter()
    info = generate_dataset(work / "data", seed=seed, sizes=sizes, caps=caps, show_progress=show_progress)
    train_rows = load_rows(info.files["train"])
    shutil.copyfile(work / "data" / "README.md", out / "dataset_card.md")  # what the committed models saw
    step("dataset", t0, ", ".join(f"{k} {v}" for k, v in info.counts.items()) + f" rows in {work / 'data'}")

    t0 = time.perf_counter()
    tokenizer = train_tokenizer(conversation_texts(train_rows[:TOKENIZER_ROWS]), vocab_size=cfg.vocab_size)
    step("tokenizer", t0, f"byte-level BPE, {len(tokenizer)} tokens")

    t0 = time.perf_counter()
    val_rows = load_rows(info.files["val"])[:VAL_ROWS_DURING_TRAINING]
    model, stats = train_tiny_agent(train_rows, tokenizer, cfg, show_progress=show_progress, val_rows=val_rows,
                                    eval_every=max(1, cfg.steps // 6), log=log)
    base_dir = out / "agent-base"
    if base_dir.exists():
        shutil.rmtree(base_dir)
    save_agent_base(model, tokenizer, base_dir)
    step("agent-base", t0, f"{stats.n_params / 1e6:.2f} M parameters, {stats.steps} steps, final loss "
         f"{stats.final_loss:.4f}, val teacher-forced exact {stats.val_exact[-1][1]:.3f}, "
         f"{stats.tokens_per_s:.0f} tokens/s on {cfg.device}"
         + (f", torch threads {cfg.threads}" if cfg.device == "cpu" else ""))

    adapter_info: dict[str, Any] = {"status": "skipped"}
    t0 = time.perf_counter()
    run_adapter = _optional("lookout.train.pipeline", "run") if adapter else None
    if run_adapter is None:
        step("agent-adapter", t0, "the QLoRA trainer (lookout.train.pipeline) is not available" if adapter
             else "--no-adapter", status="skipped")
    else:
        adapter_info = build_adapter(run_adapter, base_dir, info.files["train"], out / "agent-adapter", work, seed,
                                     show_progress=show_progress)
        step("agent-adapter", t0, adapter_info.get("detail", ""), status=adapter_info["status"])

    t0 = time.perf_counter()
    build_detector = _optional("lookout.perception.tiny_detector", "build_tiny_detector_staged") if detector else None
    if build_detector is None:
        step("detector", t0, "no tiny detector builder (lookout.perception.tiny_detector) yet" if detector
             else "--no-detector", status="skipped")
    else:
        recipe = detector_recipe(out, cuda=torch.cuda.is_available(), force_cpu=detector_cpu, keep=keep_detector)
        if recipe == "gpu":  # the committed detector's recipe; minutes on a GPU
            from lookout.perception.tiny_detector import build_tiny_detector_gpu

            build_tiny_detector_gpu(out / "detector.pt", seed=seed)
            step("detector", t0, f"{out / 'detector.pt'} (GPU recipe)")
        elif recipe == "keep":
            step("detector", t0, f"kept {out / 'detector.pt'}: built by the GPU recipe (detector_build.json)"
                 + ("" if keep_detector else ", which needs CUDA; --detector-cpu trains the weaker CPU recipe here "
                    "instead"), status="kept")
        else:  # without a GPU, the CPU stages: an hour on 2 cores, mAP50 0.70 instead of 0.92
            build_detector(out / "detector.pt", seed=seed)
            step("detector", t0, f"{out / 'detector.pt'} (CPU recipe: mAP50 about 0.70, the GPU recipe's 0.92)")

    build = {
        "command": build_command(seed, steps, sizes, device=device, keep_detector=keep_detector),
        "seed": seed,
        "dataset_sizes": sizes,
        "dataset_sha256": {s: _sha(info.files[s]) for s in ("train", "val", "test")},
        "tokenizer_tokens": len(tokenizer),
        "agent_base": {"config": asdict(cfg), "n_params": stats.n_params, "final_loss": round(stats.final_loss, 5),
                       "train_seconds": round(stats.seconds, 1), "tokens_per_s": round(stats.tokens_per_s),
                       "loss_every_50_steps": [round(x, 4) for x in stats.losses[::50]],
                       "val_teacher_forced_exact": [[s, round(v, 4)] for s, v in stats.val_exact]},
        "agent_adapter": {k: v for k, v in adapter_info.items() if k != "detail"},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()
                    or platform.machine(), "torch_threads": cfg.threads, "agent_base_device": _device_name(cfg.device)},
        "steps": [asdict(s) for s in result.steps],
        "total_seconds": round(time.perf_counter() - t_all, 1),
    }
    (out / BUILD_INFO).write_text(json.dumps(build, indent=2) + "\n")
    (out / "README.md").write_text(readme(build))
    write_manifest(out)
    result.total_bytes = folder_bytes(out)
    result.info = build
    log(f"models/tiny: {result.total_bytes / 1e6:.1f} MB in {build['total_seconds']} s "
        f"(limit {SIZE_LIMIT_BYTES / 1e6:.0f} MB); manifest {out / MANIFEST_NAME}")
    if result.total_bytes > SIZE_LIMIT_BYTES:
        raise RuntimeError(f"{out} holds {result.total_bytes / 1e6:.1f} MB, over the {SIZE_LIMIT_BYTES / 1e6:.0f} MB "
                           "limit for committed models: shrink the model")
    return result


ADAPTER_STEPS = 60
# 60 steps x 8 packed rows use about 1,300 conversations: tokenizing and packing all 96,000 for the
# trainer took minutes (most of this step) for rows it never reached.
ADAPTER_CONVERSATIONS = 2000


def build_adapter(run: Callable[..., Any], base_dir: Path, train_file: Path, adapter_dir: Path, work: Path,
                  seed: int, steps: int = ADAPTER_STEPS, show_progress: bool = True,
                  conversations: int = ADAPTER_CONVERSATIONS) -> dict[str, Any]:
    """QLoRA adapter on the 4-bit tiny base with the project's trainer (`lookout train`), a short CPU run.

    The base already plans; the adapter is trained on the same data (its first
    ADAPTER_CONVERSATIONS rows) on top of the NF4-quantised weights, so it learns back what 4-bit
    rounding costs, through the same path real adapters take.
    """
    from lookout.train.config import TrainConfig

    cfg = TrainConfig(seed=seed, max_steps=steps, max_seq_length=1024, micro_batch_size=8, grad_accum_steps=1,
                      learning_rate=1e-3, gradient_checkpointing=False, optimizer="adamw", save_every=10 * steps,
                      progress_bar=show_progress)
    run_dir = work / "adapter-run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    work.mkdir(parents=True, exist_ok=True)
    subset = work / "adapter-train.jsonl"
    with train_file.open(encoding="utf-8") as src, subset.open("w", encoding="utf-8") as dst:
        for _, line in zip(range(conversations), src, strict=False):
            dst.write(line)
    summary = run(base_dir, subset, run_dir, cfg)
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    adapter_dir.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"the trainer wrote no {name} into {run_dir}")
        shutil.copy2(run_dir / name, adapter_dir / name)
    _point_adapter_at(adapter_dir, base_dir)
    final = summary.get("metrics", {}).get("final_loss") if isinstance(summary, dict) else None
    return {"status": "done", "detail": f"{steps} steps on {conversations} conversations, final loss {final}",
            "max_steps": steps, "conversations": conversations, "final_loss": final}


def _point_adapter_at(adapter_dir: Path, base_dir: Path) -> None:
    """Record the base as a repository-relative path (not the build machine's absolute one)."""
    config_file = adapter_dir / "adapter_config.json"
    config = json.loads(config_file.read_text())
    base = base_dir.resolve()
    try:
        config["base_model_name_or_path"] = base.relative_to(repo_root().resolve()).as_posix()
    except ValueError:
        config["base_model_name_or_path"] = base.name
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def _sha(path: Path) -> str:
    from lookout.models.registry import sha256_file

    return sha256_file(path)


def build_command(seed: int, steps: int | None, sizes: dict[str, int], device: str = "auto",
                  keep_detector: bool = False) -> str:
    cmd = f"lookout models build tiny --seed {seed}"
    if steps:
        cmd += f" --steps {steps}"
    if sizes != DATASET_SIZES:
        cmd += f" --n-train {sizes['train']} --n-val {sizes['val']} --n-test {sizes['test']}"
    if device != "auto":
        cmd += f" --device {device}"
    if keep_detector:
        cmd += " --keep-detector"
    return cmd


def readme(build: dict[str, Any]) -> str:
    base = build["agent_base"]
    c = base["config"]
    lines = [
        "# models/tiny",
        "",
        "Small models Lookout trains itself, so tests, CI and the demo run offline. Rebuild all of it with",
        "",
        "```",
        f"make models   # = scripts/run.sh {build_command(build['seed'], None, build['dataset_sizes'])}",
        "```",
        "",
        f"(these files were made by `{build['command']}`) and check the files with `sha256sum -c MANIFEST.sha256` "
        "(from this folder) or `lookout models verify tiny`.",
        "",
        "| file | what |",
        "|---|---|",
        f"| agent-base/ | LlamaForCausalLM, {base['n_params'] / 1e6:.2f} M parameters (hidden {c['hidden_size']}, "
        f"{c['num_hidden_layers']} layers, {c['num_attention_heads']} heads, {c['num_key_value_heads']} KV heads, "
        f"intermediate {c['intermediate_size']}, tied embeddings), trained from scratch for {c['steps']} steps "
        f"(batch {c['batch_size']}, lr {c['lr']}) on the dataset's train split; byte-level BPE tokenizer "
        f"({build['tokenizer_tokens']} tokens) with Llama 3's special tokens and chat template |",
        f"| agent-adapter/ | QLoRA adapter from `lookout train` on the 4-bit base: {build['agent_adapter']['status']} |",
        "| detector.pt | tiny YOLO-World detector (yolov8n-worldv2, input 256) with the offline text encoder: the "
        "GPU recipe where CUDA is available (`tiny_detector.GPU_RECIPE`: 8000 rendered images, minutes); settings and "
        "held-out mAP in detector_build.json |",
        "| build.json | seed, dataset hashes, settings, losses, timings of the last build |",
        "| dataset_card.md | the generated dataset's card: counts per split and category, what the test split "
        "holds out |",
        "| MANIFEST.sha256 | sha256 of every file; the registry refuses files that do not match |",
        "",
        "Without a GPU, `make models` keeps a GPU-built detector.pt while it matches the manifest; `--detector-cpu`",
        "trains the CPU stages instead (mAP50 about 0.70 instead of 0.92, about an hour). How the committed one was",
        "made (rendered datasets, class embeddings, training command) is under `recipe` in detector_build.json.",
        "",
        f"Dataset: seed {build['seed']}, rows {build['dataset_sizes']} (`lookout data generate`).",
        f"Last build: {build['total_seconds']} s on {build['machine']['cpu']} with torch "
        f"{build['machine']['torch']} ({build['machine']['torch_threads']} threads; agent base trained on "
        f"{build['machine'].get('agent_base_device', 'cpu')}); final train loss "
        f"{base['final_loss']}.",
        "",
        "Weights depend on the floating-point order of the machine's kernels, so a rebuild elsewhere gives",
        "equivalent but not byte-identical weights; the dataset and the tokenizer are byte-identical for a seed.",
        "",
    ]
    return "\n".join(lines)
