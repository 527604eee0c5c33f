"""Shared fixtures for simulator tests: a small camera keeps rendering cheap on 2 CPU cores."""

from __future__ import annotations

import pytest

from lookout.sim.config import SimConfig


@pytest.fixture(scope="session")
def small_config() -> SimConfig:
    cfg = SimConfig()
    return cfg.model_copy(update={"camera": cfg.camera.model_copy(update={"width": 160, "height": 120})})


@pytest.fixture
def make_sim(small_config):
    """Factory for Sims that are always closed (OSMesa contexts are freed explicitly)."""
    from lookout.sim.sim import Sim

    sims = []

    def make(seed: int = 0, config: SimConfig | None = None, **kwargs):
        sim = Sim(config or small_config, seed=seed, **kwargs)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.close()
