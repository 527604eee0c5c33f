"""Session fixtures for the agent tests: tiny Llama models (built once) and planners loaded in 4-bit."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookout.agent.capabilities import Capabilities
from lookout.agent.config import ModelConfig

from .tiny_models import build_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    return build_models(tmp_path_factory.getbasetemp() / "agent-models")


@pytest.fixture(scope="session")
def caps() -> Capabilities:
    return Capabilities.default()  # config/robot.yaml: what the scripted model was trained with


def planner_config(path: Path, **overrides) -> ModelConfig:
    # One torch thread: the tiny model is overhead-bound, and CI cores are shared.
    return ModelConfig(base=str(path), device="cpu", cpu_threads=1, **overrides)


@pytest.fixture(scope="session")
def random_planner(tiny_models, caps):
    """Random weights, loaded in 4-bit NF4 through the planner's real loading code."""
    from lookout.agent.planner import Planner

    return Planner(planner_config(tiny_models["random"], max_new_tokens=1200), caps)


@pytest.fixture(scope="session")
def scripted_planner(tiny_models, caps):
    from lookout.agent.planner import Planner

    return Planner(planner_config(tiny_models["scripted"]), caps)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models are overhead-bound; on shared CI cores one thread is much faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
