"""Kernel tests: the same tests run on a GPU (full Llama shapes added) and on the CPU under Triton's
interpreter (tiny shapes only).

Without CUDA, every test here runs with TRITON_INTERPRET=1, set per test rather than for the whole
process: other tests in the same session (the trainer's) must keep the fast PyTorch fallback instead
of interpreting kernels. Triton reads the variable when a kernel is decorated, which may already have
happened; `lookout_kernels._common.launchable` re-wraps kernels for the mode in force at launch, so
import order does not matter.

Every float tensor made by `torch.empty`/`torch.empty_like` during a test is filled with NaN, so an
output element a kernel forgets to write fails the comparison instead of passing as stale zeros.
"""

from __future__ import annotations

import zlib

import pytest
import torch

from ._util import DEVICE, FLOATS, ON_GPU


@pytest.fixture(autouse=True)
def _triton_mode(monkeypatch):
    if not ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield


@pytest.fixture(autouse=True)
def _poison_new_buffers(monkeypatch):
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def poison(t):
        if t.dtype in FLOATS:
            with torch.no_grad():
                t.fill_(float("nan"))
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: poison(real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: poison(real_empty_like(*a, **k)))
    yield


@pytest.fixture
def gen(request) -> torch.Generator:
    """A generator on the test device seeded from the test's id: fresh random inputs for every test
    (never zeros), the same ones on a rerun."""
    g = torch.Generator(device=DEVICE)
    g.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    return g
