"""The foundation: CLI, idempotent setup, the non-root message, and the stack check."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookout.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_cli_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "doctor" in result.output and "demo" in result.output


def test_cli_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("lookout ")


def test_console_script_is_installed():
    exe = shutil.which("lookout")
    assert exe, "the `lookout` console script is not on PATH inside the venv"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Usage" in out.stdout


def test_second_setup_run_changes_nothing():
    """`make setup` ran before the tests; running it again must only check its stamps."""
    out = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Python dependencies up to date" in out.stdout
    assert "ros2_ws up to date" in out.stdout
    assert "installing" not in out.stdout and "building" not in out.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_setup_as_non_root_says_what_needs_root(tmp_path):
    """Without root, a missing Debian package stops setup with one clear, actionable message."""
    out = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "env", "LOOKOUT_ASSUME_MISSING_DEBS=libosmesa6", f"HOME={tmp_path}", "bash", "scripts/setup.sh"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert "needs root" in out.stderr and "sudo apt-get install -y libosmesa6" in out.stderr


@pytest.mark.ros
def test_doctor_checks_every_part_with_real_components(monkeypatch, worker_index):
    from lookout.doctor import run_checks

    monkeypatch.setenv("LOOKOUT_DOCTOR_DOMAIN", str(200 + worker_index))
    results = run_checks()
    failed = {r.name: r.detail for r in results if not r.ok}
    assert not failed, failed
    assert {r.name for r in results} >= {"ros2 dds", "mujoco", "bitsandbytes", "ultralytics", "triton"}
