"""`lookout sim show` and `lookout sim suite` work from the command line."""

from __future__ import annotations

import imageio.v3 as iio
from typer.testing import CliRunner

from lookout.cli import app


def test_show_writes_the_start_view_and_lists_the_objects(tmp_path):
    from lookout.sim.config import SimConfig
    from lookout.sim.world import generate_scene

    out = tmp_path / "view.png"
    result = CliRunner().invoke(app, ["sim", "show", "--seed", "12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    cfg = SimConfig.default()
    assert iio.imread(out).shape == (cfg.camera.height, cfg.camera.width, 3)
    for phrase in generate_scene(12, cfg).phrases:
        assert phrase in result.output


def test_suite_lists_every_public_scenario():
    from lookout.sim.scenario import load_suite

    result = CliRunner().invoke(app, ["sim", "suite", "public"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    suite = load_suite("public")
    assert f"{len(suite.scenarios)} scenarios" in result.output
    for scenario in suite.scenarios:
        assert scenario.id in result.output
