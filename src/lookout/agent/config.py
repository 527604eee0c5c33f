"""The agent's typed configuration (config/agent.yaml), shared by the node, the CLI and the tests.

The ROS node declares one parameter per leaf field (dotted names such as `control.rate_hz`, with
the field's description) and rebuilds an `AgentConfig` from them, so a launch file, the YAML file
and a Python caller all mean the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lookout.agent.capabilities import Capabilities


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(_Section):
    base: str = Field("models/tiny/agent-base", description="Base Llama model directory (Hugging Face format); "
                      "relative paths are under the repository root")
    adapter: str = Field("", description="PEFT LoRA adapter directory; empty for none")
    adapter_name: str = Field("default", description="Name the adapter is registered under")
    adapter_required: bool = Field(True, description="If false, a missing adapter directory only logs a "
                                   "warning and the bare base model plans")
    load_in_4bit: bool = Field(True, description="Load the base in 4-bit NF4 with double quantisation "
                               "(bitsandbytes); false loads bf16 on GPU, fp32 on CPU")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    max_new_tokens: int = Field(384, ge=8, le=4096, description="Plan length limit in tokens; a plan "
                                "that does not finish is refused, never used in part")
    max_cache_tokens: int = Field(2048, ge=64, le=131072, description="Static KV cache length (prompt "
                                  "plus plan)")
    history_turns: int = Field(4, ge=0, le=32, description="Earlier dialogue turns in the prompt")
    max_command_chars: int = Field(500, ge=16, le=20000, description="Longer commands are truncated")
    fast_decode: bool = Field(True, description="Static-cache decoder for Llama models (else HF forward)")
    cuda_graphs: bool = Field(True, description="Capture the decode step as a CUDA graph on GPU")
    cpu_threads: int = Field(0, ge=0, le=256, description="Torch threads while planning on CPU; 0 keeps "
                             "torch's default (1 is fastest for tiny models on busy machines)")
    grounded_targets: bool = Field(True, description="Refuse (and ask again) when a plan targets an object "
                                   "the conversation never named (lookout.agent.grounding)")
    min_plan_confidence: float = Field(0.0, ge=0, le=1, description="Ask again instead of moving when the "
                                       "least probable choice in the plan (among the tokens the grammar allowed) "
                                       "is below this; 0 turns it off. Model-specific: `lookout eval agent` "
                                       "prints what each threshold would cost and catch")


class CameraConfig(_Section):
    hfov_deg: float = Field(60.0, gt=1, lt=180, description="Horizontal field of view of the camera")
    vfov_deg: float = Field(0.0, ge=0, lt=180, description="Vertical field of view; 0 derives it from "
                            "hfov and the image aspect ratio (square pixels)")
    height_m: float = Field(0.0, ge=0, le=5, description="Camera height above the floor; > 0 enables distance "
                            "from where a box meets the floor (objects standing on the floor), else height priors")
    pitch_deg: float = Field(0.0, ge=-45, le=60, description="Downward tilt of the camera (with height_m)")


class PerceptionConfig(_Section):
    min_score: float = Field(0.35, ge=0, le=1, description="Detections below this score are ignored")
    keep_score_ratio: float = Field(0.25, gt=0, le=1, description="A target being approached stays tracked "
                                    "down to this fraction of min_score while its box overlaps the last one "
                                    "(ByteTrack's second threshold; the detector must publish that low)")
    keep_min_iou: float = Field(0.3, gt=0, le=1, description="Overlap with the last box that keeps a "
                                "low-score detection on the target")
    confirm_frames: int = Field(3, ge=1, le=30, description="Consecutive frames a target must be seen "
                                "before search succeeds")
    report_frames: int = Field(3, ge=1, le=30, description="Fresh frames report looks at before answering")
    default_object_height_m: float = Field(0.2, gt=0, description="Real height prior for unknown objects")
    object_heights_m: dict[str, float] = Field(
        default_factory=lambda: {"cup": 0.1, "ball": 0.1, "box": 0.2, "bottle": 0.25, "chair": 0.9,
                                 "person": 1.7, "door": 2.0},
        description="Real height priors by the phrase's last word (pinhole distance from box height)")


class ControlConfig(_Section):
    rate_hz: float = Field(15.0, gt=0, le=200, description="Control loop rate of the node")
    search_angular_speed: float = Field(0.6, gt=0, description="Rotation speed while searching (rad/s)")
    approach_linear_speed: float = Field(0.25, gt=0, description="Top speed while approaching (m/s)")
    yaw_gain: float = Field(1.5, gt=0, description="rad/s per rad of bearing error")
    align_before_drive_rad: float = Field(0.35, gt=0, description="Turn in place while the bearing "
                                          "error is larger than this")
    distance_gain: float = Field(0.8, gt=0, description="m/s per m of distance error")
    distance_tolerance_m: float = Field(0.03, gt=0, description="Approach ends within this of the stop distance")
    arrive_facing_deg: float = Field(12.0, gt=0, le=90, description="... and facing the target within this "
                                     "bearing (at the stop distance it turns in place until it does)")
    turn_gain: float = Field(1.5, gt=0, description="rad/s per rad of heading error")
    turn_tolerance_deg: float = Field(3.0, gt=0, description="Turn ends within this heading error")
    move_gain: float = Field(1.0, gt=0, description="m/s per m of remaining distance")
    move_tolerance_m: float = Field(0.05, gt=0, description="Move ends within this of the goal")
    come_back_tolerance_m: float = Field(0.15, gt=0, description="come_back ends within this of the start")
    min_linear_speed: float = Field(0.05, ge=0, description="Smallest useful forward speed (m/s)")
    min_angular_speed: float = Field(0.15, ge=0, description="Smallest useful rotation speed (rad/s)")
    reacquire_turns: float = Field(1.0, ge=0, le=3, description="A target lost during approach is looked "
                                   "for again by turning in place this many full turns before the step "
                                   "fails (0: fail at once)")
    detours: int = Field(2, ge=0, le=10, description="approach and come_back, when blocked, back off and go "
                         "around an unseen obstacle this many times before failing (0: fail at once)")
    detour_back_m: float = Field(0.25, gt=0, le=2, description="A detour (a lane change) reverses this far, ...")
    detour_turn_deg: float = Field(70.0, gt=0, le=90, description="... turns this much (alternating sides) ...")
    detour_side_m: float = Field(0.6, gt=0, le=3, description="... drives this far, turns back to the old "
                                 "heading ...")
    detour_pass_m: float = Field(0.8, ge=0, le=3, description="... and drives this far past the obstacle; then "
                                 "the step resumes")


class TimeoutsConfig(_Section):
    search_s: float = Field(40.0, gt=0, description="search gives up after this")
    approach_s: float = Field(60.0, gt=0, description="approach gives up after this")
    report_s: float = Field(3.0, gt=0, description="report answers 'cannot tell' without frames after this")
    lost_target_s: float = Field(2.0, gt=0, description="approach stops looking ahead and turns to look "
                                 "for a target unseen this long")
    stall_s: float = Field(3.0, ge=0, description="approach, move and come_back fail when odometry shows "
                           "no motion this long while they drive (blocked); 0 never")
    motion_base_s: float = Field(5.0, gt=0, description="turn/move/come_back timeout: base ...")
    motion_factor: float = Field(3.0, ge=1, description="... plus this times the nominal duration")


class WatchdogConfig(_Section):
    detections_s: float = Field(0.6, gt=0, description="Detections older than this are stale: stop")
    odometry_s: float = Field(0.6, gt=0, description="Odometry older than this is stale: stop")
    require_detections_for_motion: bool = Field(True, description="Never move while the camera is stale, "
                                                "whatever the step")


class DetectorLinkConfig(_Section):
    set_classes_service: str = Field("detector/set_classes", description="The detector's SetClasses service")
    set_classes_timeout_s: float = Field(5.0, gt=0, description="No motion if the detector does not answer in time")


class AgentConfig(_Section):
    robot: str = Field("config/robot.yaml", description="Capabilities file (actions and limits)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    perception: PerceptionConfig = Field(default_factory=PerceptionConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    detector: DetectorLinkConfig = Field(default_factory=DetectorLinkConfig)

    @model_validator(mode="after")
    def _check(self) -> AgentConfig:
        if self.model.max_new_tokens >= self.model.max_cache_tokens:
            raise ValueError("model.max_new_tokens must be smaller than model.max_cache_tokens")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> AgentConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"agent config {path} not found")
        data = yaml.safe_load(path.read_text()) or {}
        # Accept a ROS parameter file too: {node_name: {ros__parameters: {...}}}.
        if len(data) == 1:
            (inner,) = data.values()
            if isinstance(inner, dict) and "ros__parameters" in inner:
                data = unflatten(inner["ros__parameters"])
        return cls.model_validate(data)

    @classmethod
    def default(cls) -> AgentConfig:
        from lookout.paths import config_dir

        path = config_dir() / "agent.yaml"
        return cls.from_yaml(path) if path.is_file() else cls()

    def capabilities(self) -> Capabilities:
        return Capabilities.from_yaml(resolve_path(self.robot))


def resolve_path(path: str) -> Path:
    """Relative paths in the config are relative to the repository root."""
    from lookout.paths import repo_root

    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def _dict_to_strings(d: dict[str, float]) -> list[str]:
    return [f"{k}={v:g}" for k, v in d.items()]


def flatten(cfg: AgentConfig) -> dict[str, Any]:
    """Leaf fields as dotted names -> ROS-parameter-friendly values (dicts become 'key=value' lists)."""
    out: dict[str, Any] = {}

    def walk(model: BaseModel, prefix: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            key = f"{prefix}{name}"
            if isinstance(value, BaseModel):
                walk(value, key + ".")
            elif isinstance(value, dict):
                out[key] = _dict_to_strings(value)
            else:
                out[key] = value

    walk(cfg, "")
    return out


def descriptions() -> dict[str, str]:
    """Dotted field name -> its description (what the node shows for each parameter)."""
    out: dict[str, str] = {}

    def walk(model_cls: type[BaseModel], prefix: str) -> None:
        for name, field in model_cls.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                out[f"{prefix}{name}"] = field.description or ""

    walk(AgentConfig, "")
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted names -> nested dict for `AgentConfig.model_validate` ('k=v' lists back to dicts)."""
    nested: dict[str, Any] = {}
    dict_fields = {k for k, v in flatten(AgentConfig()).items() if isinstance(v, list)}
    for key, value in flat.items():
        if key in dict_fields and isinstance(value, list | tuple):
            parsed: dict[str, float] = {}
            for item in value:
                name, sep, num = str(item).partition("=")
                if not sep:
                    raise ValueError(f"{key}: expected 'name=value' items, got {item!r}")
                parsed[name.strip()] = float(num)
            value = parsed
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested

