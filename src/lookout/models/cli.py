"""`lookout models ...`: build the tiny models, verify a profile's files, rewrite a checksum manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from lookout.models.tiny_build import DATASET_SIZES

models_app = typer.Typer(help="Model files: build the tiny models, check profiles.", no_args_is_help=True)
build_app = typer.Typer(help="Build models this project trains itself.", no_args_is_help=True)
models_app.add_typer(build_app, name="build")


@build_app.command("tiny")
def build_tiny_cmd(
    seed: int = typer.Option(0, help="Dataset, tokenizer and training are all drawn from this seed."),
    out: Path | None = typer.Option(None, help="Output folder (default models/tiny)."),
    work: Path | None = typer.Option(None, help="Scratch folder for the dataset and runs (default runs/tiny-build)."),
    steps: int | None = typer.Option(None, min=1, help="Training steps of the agent base (default: the recipe's)."),
    n_train: int = typer.Option(DATASET_SIZES["train"], "--n-train", min=1),
    n_val: int = typer.Option(DATASET_SIZES["val"], "--n-val", min=1),
    n_test: int = typer.Option(DATASET_SIZES["test"], "--n-test", min=1),
    adapter: bool = typer.Option(True, help="Train the QLoRA adapter when the trainer is available."),
    detector: bool = typer.Option(True, help="Build the tiny detector when its builder is available."),
    detector_cpu: bool = typer.Option(False, "--detector-cpu", help="Train the detector's CPU recipe even where "
                                                                    "a GPU-built detector would be kept."),
    device: str = typer.Option("auto", help="Where the agent base trains: auto (CUDA when available), cpu, cuda."),
    keep_detector: bool = typer.Option(False, "--keep-detector", help="Keep the GPU-built detector (it must match "
                                       "the manifest) even where CUDA would rebuild it: rebuild only the agent."),
) -> None:
    """Rebuild models/tiny from the seed (dataset -> tokenizer -> agent base -> adapter -> manifest)."""
    from lookout.models.tiny_build import build_tiny

    result = build_tiny(out, seed=seed, work_dir=work, steps=steps, adapter=adapter, detector=detector,
                        detector_cpu=detector_cpu, device=device, keep_detector=keep_detector,
                        dataset_sizes={"train": n_train, "val": n_val, "test": n_test}, log=typer.echo)
    typer.echo(f"done: {result.out_dir} ({result.total_bytes / 1e6:.1f} MB)")


@build_app.command("detector")
def build_detector_cmd(
    out: Path = typer.Option(Path("models/tiny/detector.pt"), help="Where to write the detector."),
    data: list[Path] = typer.Option(None, "--data", help="Rendered dataset folder (repeatable); without it the "
                                                         "builder renders --n-train/--n-val images itself."),
    seed: int = typer.Option(0, help="Scene seed when rendering; training seed."),
    n_train: int = typer.Option(320, "--n-train", min=1),
    n_val: int = typer.Option(64, "--n-val", min=1),
    epochs: int = typer.Option(32, min=1),
    time_min: float = typer.Option(None, "--time-min", help="Wall-clock budget: Ultralytics fits the epochs to it."),
    batch: int = typer.Option(16, min=1),
    imgsz: int = typer.Option(256, min=32),
    lr0: float = typer.Option(0.002, help="Initial learning rate (AdamW)."),
    device: str = typer.Option("cpu", help="Ultralytics device: cpu, 0, cuda:0."),
    workers: int = typer.Option(0, min=0, help="Data-loading processes."),
    work: Path = typer.Option(None, help="Keep the linked dataset and Ultralytics' run folder here."),
    embeddings: Path = typer.Option(None, help="Precomputed class embeddings of the offline encoder (from "
                                               "`lookout models embed-classes`), where sentence-transformers is "
                                               "not installed."),
) -> None:
    """Train one tiny YOLO-World detector (the offline text encoder's embeddings), e.g. on a GPU machine."""
    from lookout.perception.errors import PerceptionError
    from lookout.perception.text_encoders import PrecomputedTextEncoder
    from lookout.perception.tiny_detector import build_tiny_detector

    try:
        encoder = PrecomputedTextEncoder.load(embeddings) if embeddings else None
        build = build_tiny_detector(out, seed=seed, n_train=n_train, n_val=n_val, epochs=epochs, imgsz=imgsz,
                                    batch=batch, lr0=lr0, time_limit_min=time_min, datasets=data or None,
                                    device=device, workers=workers, text_encoder=encoder, workdir=work, verbose=True)
    except (FileNotFoundError, ValueError, PerceptionError) as exc:  # bad input: say what, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"wrote {out} ({build.file_mb} MB, {build.epochs} epochs, {build.images}); "
               f"validation {build.metrics}")


@models_app.command("embed-classes")
def embed_classes(out: Path = typer.Argument(..., help="File to write (torch .pt).")) -> None:
    """Save the offline text encoder's embeddings of the simulator's classes, to train where it is missing."""
    from lookout.perception.text_encoders import OfflineTextEncoder, PrecomputedTextEncoder
    from lookout.sim.config import SimConfig
    from lookout.sim.dataset import class_names

    names = class_names(SimConfig.default())
    PrecomputedTextEncoder.compute(OfflineTextEncoder(dim=512, seed=0), names).save(out)
    typer.echo(f"wrote {out}: {len(names)} phrases")


@models_app.command("verify")
def verify(profile: str = typer.Argument("tiny", help="Profile name in models/registry.yaml.")) -> None:
    """Check that a profile's files exist and match their checksums; say how to get what is missing."""
    from rich.console import Console
    from rich.table import Table

    from lookout.models.registry import ModelFileError, RegistryError, load_profile

    table = Table(title=f"profile {profile}")
    for col in ("part", "status", "files"):
        table.add_column(col)
    ok = True
    for part in ("agent", "detector"):
        try:
            p = load_profile(profile, parts=(part,))
            files = p.agent if part == "agent" else p.detector
            table.add_row(part, "[green]ok[/green]", str(files))
        except (ModelFileError, RegistryError) as exc:
            ok = False
            table.add_row(part, "[red]missing or corrupt[/red]", str(exc))
    Console().print(table)
    if not ok:
        raise typer.Exit(code=1)


@models_app.command("manifest")
def manifest(folder: Path = typer.Argument(Path("models/tiny"), help="Folder to checksum.")) -> None:
    """Rewrite FOLDER/MANIFEST.sha256 after adding a model file there (e.g. a newly built detector)."""
    from lookout.models.registry import resolve, write_manifest

    path = write_manifest(resolve(str(folder)))
    typer.echo(f"wrote {path}")
