"""Where the repository's shared folders are, so the CLI, the nodes and the tests agree."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout root (the folder holding `models/` and `config/`).

    `LOOKOUT_ROOT` overrides it, e.g. when the package is installed outside a checkout (Docker).
    """
    env = os.environ.get("LOOKOUT_ROOT")
    if env:
        return Path(env).resolve()
    return PACKAGE_DIR.parents[1]


def models_dir() -> Path:
    return repo_root() / "models"


def config_dir() -> Path:
    return repo_root() / "config"
