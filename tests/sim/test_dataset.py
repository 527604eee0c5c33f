"""The detection dataset renderer writes Ultralytics' YOLO format with held-out scenes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lookout.sim.dataset import class_names, render_dataset, split_scenes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, small_config):
    out = tmp_path_factory.mktemp("ds") / "sim_ds"
    summary = render_dataset(out, n=14, seed=3, config=small_config, images_per_scene=4, val_fraction=0.25)
    return out, summary


def test_layout_and_data_yaml_follow_ultralytics(dataset, small_config):
    out, summary = dataset
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert Path(data["path"]) == out.resolve()
    assert list(data["names"].values()) == class_names(small_config) and len(data["names"]) == 40
    for split in ("train", "val"):
        images = sorted((out / "images" / split).glob("*.jpg"))
        labels = sorted((out / "labels" / split).glob("*.txt"))
        assert [p.stem for p in images] == [p.stem for p in labels]
        assert len(images) == summary.images[split] > 0
    assert summary.images["train"] + summary.images["val"] == 14


def test_labels_are_class_and_normalised_boxes(dataset, small_config):
    import imageio.v3 as iio

    out, summary = dataset
    n_boxes = 0
    for label in (out / "labels").rglob("*.txt"):
        for line in label.read_text().splitlines():
            cls, *xywh = line.split()
            assert 0 <= int(cls) < 40
            xc, yc, w, h = map(float, xywh)
            assert 0 < w <= 1 and 0 < h <= 1
            assert xc - w / 2 + 1e-6 >= 0 and xc + w / 2 <= 1 + 1e-6
            assert yc - h / 2 + 1e-6 >= 0 and yc + h / 2 <= 1 + 1e-6
            n_boxes += 1
    assert n_boxes == summary.boxes["train"] + summary.boxes["val"] > 0
    image = iio.imread(next((out / "images" / "train").glob("*.jpg")))
    assert image.shape == (small_config.camera.height, small_config.camera.width, 3)


def test_validation_scenes_are_held_out(dataset):
    out, summary = dataset
    record = json.loads((out / "scenes.json").read_text())
    train, val = set(record["scenes"]["train"]), set(record["scenes"]["val"])
    assert train and val and not train & val
    a, b = split_scenes(100, 8, 0.2, seed=1)
    assert len(b) == round(13 * 0.2) and not set(a) & set(b)
    assert split_scenes(100, 8, 0.2, seed=1) == (a, b)


def test_labels_agree_with_a_fresh_render_of_the_recorded_view(dataset, small_config):
    """Rebuild one image's scene and pose from scenes.json: the label file holds the same boxes."""
    from lookout.sim.sim import Sim

    out, _ = dataset
    views = json.loads((out / "scenes.json").read_text())["views"]
    view = next(v for v in views if (out / v["image"].replace("images", "labels", 1)).with_suffix(".txt").read_text())
    label = (out / view["image"].replace("images", "labels", 1)).with_suffix(".txt")
    written = sorted(tuple(float(v) for v in line.split()) for line in label.read_text().splitlines())
    with Sim(small_config, seed=view["scene"]) as sim:
        assert sim.teleport(*view["pose"])
        names = {name: i for i, name in enumerate(class_names(small_config))}
        again = sorted((float(names[b.phrase]), *b.yolo(160, 120)) for b in sim.object_boxes())
    assert len(written) == len(again)
    for w, a in zip(written, again, strict=True):
        assert w == pytest.approx(a, abs=1e-5)


def test_ultralytics_accepts_the_dataset(dataset):
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    out, _ = dataset
    info = check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert info["nc"] == 40
    for image in (out / "images" / "val").glob("*.jpg"):
        label = out / "labels" / "val" / f"{image.stem}.txt"
        result = verify_image_label((str(image), str(label), "", False, 40, 0, 0, False))
        im_file, lb, shape, *_rest, nc, msg = result
        assert im_file is not None and nc == 0, msg


def test_existing_folders_are_never_overwritten(tmp_path, small_config):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious.txt").write_text("do not lose me")
    with pytest.raises(FileExistsError, match="not empty"):
        render_dataset(keep, n=2, config=small_config)
    assert (keep / "precious.txt").read_text() == "do not lose me"
    with pytest.raises(ValueError, match="at least 1"):
        render_dataset(tmp_path / "new", n=0, config=small_config)


def test_cli_renders_a_dataset_with_a_progress_bar(tmp_path):
    from lookout.cli import app

    out = tmp_path / "cli_ds"
    result = CliRunner().invoke(app, ["sim", "render-dataset", "--out", str(out), "--n", "3", "--seed", "1",
                                      "--width", "96", "--height", "72", "--images-per-scene", "2"])
    assert result.exit_code == 0, result.output
    assert "train:" in result.output and "data.yaml" in result.output
    assert len(list((out / "images").rglob("*.jpg"))) == 3
    again = CliRunner().invoke(app, ["sim", "render-dataset", "--out", str(out), "--n", "3"])
    assert again.exit_code == 2 and "not empty" in again.output


def test_max_side_shrinks_images_and_keeps_the_labels(tmp_path, small_config):
    import imageio.v3 as iio

    full = render_dataset(tmp_path / "full", n=4, seed=9, config=small_config, images_per_scene=2, val_fraction=0.5)
    small = render_dataset(tmp_path / "small", n=4, seed=9, config=small_config, images_per_scene=2,
                           val_fraction=0.5, max_side=64, quality=80)
    assert small.images == full.images and small.boxes == full.boxes
    for split in ("train", "val"):
        for image in (tmp_path / "small" / "images" / split).glob("*.jpg"):
            big = iio.imread(tmp_path / "full" / "images" / split / image.name)
            assert max(iio.imread(image).shape[:2]) == 64 < max(big.shape[:2])
            label = Path("labels") / split / f"{image.stem}.txt"
            assert (tmp_path / "small" / label).read_text() == (tmp_path / "full" / label).read_text()
    with pytest.raises(ValueError, match="max_side"):
        render_dataset(tmp_path / "bad", n=1, config=small_config, max_side=8)
