"""Loading, building and saving detector model files: the one code path for real and tiny weights.

A YOLO-World model file records the text encoder its head was trained with, because embeddings from another
encoder are meaningless to it. The record lives in the model's own config dict (`model.yaml`, which
Ultralytics pickles with the model and carries through `train()`), and may also be given in a sidecar
`<model>.lookout.json` (`{"text_encoder": "..."}`) for files one cannot rewrite. A YOLO-World file with no
record is taken to be an official one, trained with CLIP ViT-B/32.

`build_world_model` and `world_text_encoder` are for the code that trains the tiny detector with Ultralytics'
own `train()` and the offline encoder; training itself lives elsewhere.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lookout.paths import repo_root
from lookout.perception.errors import ModelFileError, TextEncoderError
from lookout.perception.text_encoders import CLIP_DEFAULT, TextEncoder, canonical_encoder_id

TEXT_ENCODER_KEY = "lookout_text_encoder"
SIDECAR_SUFFIX = ".lookout.json"
MISSING_HINT = "run `make models` for the tiny profile, or copy real Ultralytics weights there"


@dataclass
class LoadedModel:
    """An Ultralytics detection model read from disk (fp32, eval mode, not fused) and what it records."""

    path: Path
    model: nn.Module
    open_vocabulary: bool
    class_names: list[str]
    text_width: int | None  # embedding width of a YOLO-World head
    text_encoder: str | None  # encoder id the head was trained with (YOLO-World only)
    text_features: torch.Tensor | None  # (K, text_width) embeddings of class_names stored in the file
    train_imgsz: int | None = None  # the input size it was trained at (Ultralytics' train_args), if recorded


def sidecar_path(model_path: str | Path) -> Path:
    """`models/tiny/detector.pt` -> `models/tiny/detector.lookout.json`."""
    p = Path(model_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def resolve_model_path(path: str | Path) -> Path:
    """An absolute path as given; a relative one against the working directory, then the repository root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    in_repo = repo_root() / p
    return in_repo if in_repo.exists() else p


def text_width(model: nn.Module) -> int:
    """Width of the text embeddings a YOLO-World head compares with (512 for the official models)."""
    return int(model.model[-1].cv3[0][-1].out_channels)


def _names_list(names: Any) -> list[str]:
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def _read_sidecar(path: Path) -> str | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        value = json.loads(side.read_text())["text_encoder"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f'{side} must be JSON like {{"text_encoder": "offline"}}: {exc}') from exc
    if not isinstance(value, str) or not value.strip():
        raise ModelFileError(f"{side}: text_encoder must be a non-empty string")
    return value


def recorded_text_encoder(model: nn.Module, path: Path) -> str:
    """The encoder id a YOLO-World model needs (config record, sidecar, or CLIP for official weights)."""
    dim = text_width(model)
    in_model = (getattr(model, "yaml", None) or {}).get(TEXT_ENCODER_KEY)
    in_sidecar = _read_sidecar(path)
    ids = {canonical_encoder_id(v, dim) for v in (in_model, in_sidecar) if v}
    if len(ids) > 1:
        raise ModelFileError(
            f"{path} records text encoder {in_model!r} but {sidecar_path(path).name} says {in_sidecar!r}: "
            "fix or remove the sidecar"
        )
    return ids.pop() if ids else CLIP_DEFAULT


def load_model_file(path: str | Path) -> LoadedModel:
    """Read an Ultralytics `.pt` detection model (YOLO-World, YOLO11, YOLOv8, ...) with clear errors."""
    from lookout.perception.fast_model import is_supported_head

    p = resolve_model_path(path)
    if not p.is_file():
        raise ModelFileError(f"model file {p} not found: {MISSING_HINT}")
    if p.suffix != ".pt":
        raise ModelFileError(f"model file {p} is not an Ultralytics .pt file")
    from ultralytics.nn.tasks import WorldModel, load_checkpoint

    try:
        model, ckpt = load_checkpoint(str(p), device="cpu")
    except Exception as exc:  # torch/pickle raise many types for a corrupt file; name the file in one error
        raise ModelFileError(
            f"cannot read model file {p} ({type(exc).__name__}: {exc}): {MISSING_HINT}"
        ) from exc
    head = model.model[-1] if hasattr(model, "model") else None
    if head is None or not is_supported_head(head):
        kind = type(head).__name__ if head is not None else type(model).__name__
        raise ModelFileError(
            f"{p} has a {kind} head: the detector needs a detection (Detect/WorldDetect) model"
        )
    names = _names_list(getattr(model, "names", {}))
    size = ((ckpt or {}).get("train_args") or {}).get("imgsz") if isinstance(ckpt, dict) else None
    train_imgsz = int(size) if isinstance(size, int) and size > 0 else None
    if isinstance(model, WorldModel):
        dim = text_width(model)
        feats = getattr(model, "txt_feats", None)
        stored = None
        if isinstance(feats, torch.Tensor) and feats.ndim == 3 and feats.shape[1:] == (len(names), dim):
            stored = feats[0].detach().float().cpu()
        return LoadedModel(p, model, True, names, dim, recorded_text_encoder(model, p), stored, train_imgsz)
    return LoadedModel(p, model, False, names, None, None, None, train_imgsz)


def check_text_encoder(requested: str, loaded: LoadedModel) -> str:
    """The encoder id to use: `requested` ('auto' = what the model records) if it matches the model."""
    needed = loaded.text_encoder
    if needed is None:
        raise TextEncoderError(f"{loaded.path} is a closed-set model: it has no text encoder")
    if requested.strip() in ("", "auto"):
        return needed
    wanted = canonical_encoder_id(requested, loaded.text_width or 0)
    if wanted != needed:
        raise TextEncoderError(
            f"{loaded.path.name} was trained with text encoder {needed!r}, but {wanted!r} was asked for: "
            "its head cannot read another encoder's embeddings. Use text_encoder: auto"
        )
    return needed


def set_world_classes(model: nn.Module, names: Sequence[str], embeddings: torch.Tensor) -> None:
    """What `WorldModel.set_classes` does, with embeddings from any encoder: (K, D) for K names."""
    if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
        raise ValueError(f"need ({len(names)}, D) embeddings, got {tuple(embeddings.shape)}")
    device = next(model.parameters()).device
    model.txt_feats = embeddings.detach().float()[None].to(device)
    model.model[-1].nc = len(names)
    model.names = dict(enumerate(names))


def build_world_model(
    cfg: str = "yolov8s-worldv2.yaml",
    text_encoder: TextEncoder | None = None,
    classes: Sequence[str] | None = None,
    seed: int = 0,
):
    """An untrained Ultralytics `YOLOWorld` from an architecture config, recording its text encoder.

    With `classes` and `text_encoder`, the vocabulary is set from that encoder's embeddings. The config record
    survives `save()` and Ultralytics' `train()`, so trained files load through `load_model_file` and refuse
    a different encoder. Train inside `world_text_encoder(encoder)` so Ultralytics embeds the dataset's class
    names with the same encoder (and delete a stale `text_embeddings_clip_ViT-B_32.pt` that Ultralytics may
    have cached beside the dataset: it names every cache that way whatever the encoder).
    """
    from ultralytics import YOLOWorld

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yolo = YOLOWorld(cfg)
    dim = text_width(yolo.model)
    if text_encoder is not None:
        if text_encoder.dim != dim:
            raise TextEncoderError(f"encoder {text_encoder.id} is {text_encoder.dim}-d, {cfg} needs {dim}-d")
        yolo.model.yaml[TEXT_ENCODER_KEY] = text_encoder.id
        if classes:
            set_world_classes(yolo.model, list(classes), text_encoder.encode(list(classes)))
    elif classes:
        raise ValueError("classes need a text_encoder to embed them")
    return yolo


def save_model(yolo: Any, path: str | Path, *, sidecar: bool = False) -> Path:
    """Save an Ultralytics model object the way Ultralytics does (fp16 checkpoint); optionally a sidecar too."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(str(p))
    encoder = (getattr(yolo.model, "yaml", None) or {}).get(TEXT_ENCODER_KEY)
    if sidecar and encoder:
        sidecar_path(p).write_text(json.dumps({"text_encoder": encoder}, indent=2) + "\n")
    return p


@contextlib.contextmanager
def world_text_encoder(encoder: TextEncoder) -> Iterator[None]:
    """Within the block, Ultralytics' WorldModel embeds text with `encoder` instead of CLIP.

    Patches `WorldModel.get_text_pe` on the class, because Ultralytics' trainer builds its own model
    instances (training, validation, `set_classes`).
    """
    from ultralytics.nn.tasks import WorldModel

    original = WorldModel.get_text_pe

    def get_text_pe(self, text, batch=80, cache_clip_model=False, **_ignored):
        emb = encoder.encode(list(text)).to(next(self.parameters()).device)
        return emb.reshape(1, len(text), emb.shape[-1])

    WorldModel.get_text_pe = get_text_pe
    try:
        yield
    finally:
        WorldModel.get_text_pe = original
