"""The detector's configuration: one typed model for the core `Detector`, the ROS node and the CLI.

`config/detector.yaml` is a ROS 2 parameter file (`/**: ros__parameters: {...}`), so the node takes it with
`--ros-args --params-file config/detector.yaml`, and `load_detector_config` reads the same file into a
`DetectorConfig`. The node declares its ROS parameters from this model's fields (names, defaults,
descriptions, ranges), so the two can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lookout.paths import config_dir
from lookout.perception.vocabulary import DEFAULT_MAX_PHRASE_CHARS, DEFAULT_MAX_PHRASES

# Fields the ROS node reads; the core Detector ignores them.
NODE_ONLY_FIELDS = (
    "autostart",
    "image_qos",
    "subscribe_compressed",
    "publish_annotated",
    "diagnostics_period",
)


class DetectorConfig(BaseModel):
    """Settings of the open-vocabulary detector (and of its ROS node, see NODE_ONLY_FIELDS)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field(
        "models/tiny/detector.pt",
        description="Ultralytics .pt detection model (YOLO-World or closed-set YOLO11/YOLOv8); relative paths "
        "resolve against the working directory, then the repository root",
    )
    text_encoder: str = Field(
        "auto",
        description="text encoder for YOLO-World vocabularies: auto (what the model file records), clip, "
        "offline, or a full encoder id",
    )
    embedding_cache_dir: str = Field(
        "",
        description="folder of the on-disk phrase-embedding cache, one file per encoder ('' = memory only)",
    )
    classes: list[str] = Field(
        default_factory=list, description="initial vocabulary; empty = the classes stored in the model file"
    )
    device: str = Field("auto", description="cpu, cuda, cuda:N, or auto (cuda when available)")
    half: bool = Field(True, description="fp16 inference on CUDA (ignored on CPU)")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="minimum score of a reported box")
    iou: float = Field(
        0.7, ge=0.0, le=1.0, description="IoU above which non-maximum suppression merges boxes"
    )
    imgsz: int = Field(
        0, ge=0, le=4096, multiple_of=32,
        description="network input size (longer side); 0 = the size the model was trained at, as Ultralytics' "
        "predict does (640 when the file does not say)",
    )
    max_det: int = Field(300, ge=1, le=10000, description="maximum boxes per frame")
    max_phrases: int = Field(DEFAULT_MAX_PHRASES, ge=1, le=4096, description="largest accepted vocabulary")
    max_phrase_chars: int = Field(
        DEFAULT_MAX_PHRASE_CHARS, ge=1, le=1000, description="longest accepted phrase"
    )
    contrast_classes: bool = Field(
        False,
        description="also score the model file's own class names, never reported, so that a lookalike is "
        "labelled as what it is rather than as the nearest requested phrase",
    )
    contrast_phrases: list[str] = Field(
        default_factory=list, description="more phrases scored for contrast and never reported"
    )
    tracker: bool = Field(False, description="assign ByteTrack ids across frames")
    cuda_graphs: bool = Field(
        True, description="replay preprocessing and the network as CUDA graphs (CUDA only)"
    )
    compile: bool = Field(False, description="torch.compile the network (slow first frame)")
    channels_last: bool = Field(
        True, description="NHWC memory format (faster convolutions on CUDA fp16 and CPU)"
    )
    # --- ROS node only ---
    autostart: bool = Field(True, description="configure and activate at start (no lifecycle manager needed)")
    image_qos: Literal["sensor_data", "reliable"] = Field(
        "sensor_data", description="QoS of the image subscriptions: sensor_data (best effort) or reliable"
    )
    subscribe_compressed: bool = Field(False, description="also subscribe to image/compressed")
    publish_annotated: bool = Field(
        True, description="publish boxes drawn on the image while someone listens"
    )
    diagnostics_period: float = Field(
        1.0, ge=0.1, le=60.0, description="seconds between /diagnostics messages"
    )

    @field_validator("model", "text_encoder", "device")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


def default_config_path() -> Path:
    return config_dir() / "detector.yaml"


def parameters_from_yaml(data: Any) -> dict[str, Any]:
    """The parameter dict of a plain mapping or of a ROS 2 parameter file (`<node>: ros__parameters: {...}`)."""
    if not isinstance(data, dict):
        raise ValueError("a detector config must be a YAML mapping")
    for value in data.values():
        if isinstance(value, dict) and "ros__parameters" in value:
            return dict(value["ros__parameters"] or {})
    return dict(data)


def load_detector_config(path: str | Path | None = None, **overrides: Any) -> DetectorConfig:
    """Read a YAML file (plain or ROS parameter file) into a validated `DetectorConfig`."""
    p = Path(path) if path is not None else default_config_path()
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise FileNotFoundError(f"detector config {p} cannot be read: {exc}") from exc
    return DetectorConfig(**{**parameters_from_yaml(data), **overrides})


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """A config field as a ROS parameter: name, kind, default, description and allowed range or choices."""

    name: str
    kind: Literal["bool", "int", "float", "str", "str_list"]
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()


def parameter_specs() -> list[ParameterSpec]:
    """One spec per `DetectorConfig` field, derived from its type, default and constraints."""
    kinds = {bool: "bool", int: "int", float: "float", str: "str"}
    specs = []
    for name, field in DetectorConfig.model_fields.items():
        ann = field.annotation
        choices: tuple[str, ...] = ()
        if get_origin(ann) is Literal:
            kind, choices = "str", tuple(get_args(ann))
        elif get_origin(ann) is list:
            kind = "str_list"
        else:
            kind = kinds[ann]
        bounds: dict[str, float] = {}
        for meta in field.metadata:
            for attr, key in (("ge", "minimum"), ("le", "maximum"), ("multiple_of", "step")):
                if getattr(meta, attr, None) is not None:
                    bounds[key] = getattr(meta, attr)
        default = field.get_default(call_default_factory=True)
        specs.append(ParameterSpec(name, kind, default, field.description or "", choices=choices, **bounds))
    return specs
