"""Training settings: one typed config with defaults that work, loadable from YAML (config/train.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lookout.train.fast_llama import ALL_PROJECTIONS


class TrainConfig(BaseModel):
    """Every knob of `lookout train` in one place. Unknown keys are an error (typos do not pass)."""

    model_config = ConfigDict(extra="forbid")

    # model and adapter
    max_seq_length: int = Field(2048, ge=16)
    load_in_4bit: bool = True
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_PROJECTIONS))
    # "auto": checkpoint (offloaded) only as many layers as the activation budget needs; see
    # lookout.train.checkpointing.AutoCheckpointPolicy. "offload": every layer, leanest.
    gradient_checkpointing: bool | Literal["offload", "auto"] = "auto"
    memory_budget_gib: float | None = Field(None, gt=0)
    use_kernels: bool = True

    # data
    pack: bool = True
    micro_batch_size: int = Field(2, ge=1)
    grad_accum_steps: int = Field(4, ge=1)

    # optimisation
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    optimizer: Literal["adamw_8bit", "adamw"] = "adamw_8bit"
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    bf16: bool | Literal["auto"] = Field("auto", description="bf16 autocast; auto = on when a GPU is used")

    # robustness and output
    seed: int = 3407
    max_bad_steps: int = Field(10, ge=1, description="stop after this many consecutive non-finite steps")
    save_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    progress_bar: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not self.target_modules:
            raise ValueError("target_modules is empty: name at least one projection")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} not found")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        data = data.get("train", data)  # accept a top-level `train:` section
        return cls(**{**data, **overrides})

    def warmup_for(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return min(self.warmup_steps, total_steps)
        return int(round(self.warmup_ratio * total_steps))
