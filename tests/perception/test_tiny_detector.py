"""The committed tiny detector finds simulator objects; its recipe runs end to end; the detector eval scores it.

The committed model (models/tiny/detector.pt) is loaded through the same `Detector` that real weights use and
run on scenes rendered fresh from seeds the build never used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lookout.eval.detector import (
    LabelledImage,
    evaluate_detector,
    render_eval_scenes,
    score_vocabulary,
    synonym_phrase,
)
from lookout.paths import repo_root
from lookout.perception.detector import Detector
from lookout.perception.types import Detection, DetectionResult

COMMITTED = repo_root() / "models" / "tiny" / "detector.pt"
HELD_OUT_SEED = 4242  # not a build seed
# Bars at conf 0.01 on 6 images (the committed model: mAP50 0.92 on 192 held-out images; here it boxes every
# object and names 8 of 10 right): a box of any phrase with IoU >= 0.5 for 80% of the ground-truth objects,
# one of the right phrase for half. Random weights score ~0 on both.
CONF = 0.01
MIN_LOCALISED = 0.8
MIN_SAME_PHRASE = 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="session")
def held_out(tmp_path_factory) -> tuple[list[LabelledImage], list[str]]:
    images, names, _ = render_eval_scenes(tmp_path_factory.mktemp("tiny_det_scenes") / "s", 6, HELD_OUT_SEED,
                                          images_per_scene=3)
    return images, names


@pytest.fixture(scope="session")
def committed_detector() -> Detector:
    assert COMMITTED.is_file(), f"{COMMITTED} is missing: build it with `make models`"
    build = json.loads(COMMITTED.with_name("detector_build.json").read_text())
    return Detector(COMMITTED, device="cpu", conf=CONF, imgsz=build["imgsz"])


def test_committed_detector_finds_the_named_objects(committed_detector, held_out):
    images, names = held_out
    det = committed_detector
    assert det.open_vocabulary and det.text_encoder_id.startswith("offline:")
    det.set_vocabulary(names)
    localised = found = total = 0
    for item in images:
        result = det.detect(item.bgr)
        for cls, box in zip(item.classes, item.xyxy, strict=True):
            total += 1
            hits = [d for d in result.detections if _iou(np.array(d.xyxy), box) >= 0.5]
            localised += bool(hits)
            found += any(d.phrase == names[cls] for d in hits)
    assert total >= 5, "the held-out scenes should show several objects"
    assert localised / total >= MIN_LOCALISED, f"boxed {localised} of {total} objects"
    assert found / total >= MIN_SAME_PHRASE, f"named {found} of {total} objects correctly"


def test_vocabulary_switches_with_the_offline_encoder(committed_detector, held_out):
    images, names = held_out
    det = committed_detector
    target = names[int(images[0].classes[0])]
    assert det.set_vocabulary([target]) == [target]
    result = det.detect(images[0].bgr)
    assert {d.phrase for d in result.detections} <= {target}
    assert all(d.class_index == 0 for d in result.detections)
    det.set_vocabulary(["crimson sphere", "navy cube"])  # never-seen phrases go through the encoder
    calls = det.encoder_calls
    det.set_vocabulary(names)  # all stored in the file or cached: no encoder call
    assert det.encoder_calls == calls
    assert det.vocabulary == names


def test_build_recipe_runs_end_to_end(tmp_path):
    from lookout.perception.tiny_detector import build_tiny_detector

    out = tmp_path / "det.pt"
    build = build_tiny_detector(out, seed=3, n_train=8, n_val=4, epochs=1, imgsz=64, batch=4,
                                workdir=tmp_path / "work")
    assert out.is_file() and out.stat().st_size < 10 * 2**20
    assert build.images["train"] >= 1 and build.images["val"] >= 1
    assert not list((tmp_path / "work").rglob("text_embeddings_clip_ViT-B_32.pt"))
    record = json.loads((tmp_path / "det_build.json").read_text())
    assert record["seed"] == 3 and record["epochs"] == 1 and record["text_encoder"] == build.text_encoder
    det = Detector(out, device="cpu", imgsz=64)
    assert det.text_encoder_id == build.text_encoder
    assert det.model_classes == build.classes
    assert isinstance(det.detect(np.zeros((48, 64, 3), np.uint8)), DetectionResult)


def test_staged_recipe_continues_each_stage_on_new_scenes(tmp_path):
    from lookout.perception.tiny_detector import Stage, build_tiny_detector_staged

    out = tmp_path / "det.pt"
    builds = build_tiny_detector_staged(out, seed=5, stages=(Stage(8, 4, 1, 0.002), Stage(8, 4, 1, 0.001)),
                                        imgsz=64, batch=4)
    assert [b.seed for b in builds] == [5, 6] and out.is_file()
    record = json.loads((tmp_path / "det_build.json").read_text())
    assert [s["seed"] for s in record["stages"]] == [5, 6] and "init_weights" in record["stages"][1]["command"]
    assert "build_tiny_detector_staged" in record["command"]
    det = Detector(out, device="cpu", imgsz=64)
    assert isinstance(det.detect(np.zeros((48, 64, 3), np.uint8)), DetectionResult)
    from lookout.perception.errors import ModelFileError
    from lookout.perception.tiny_detector import _continue_from

    with pytest.raises(ModelFileError, match="not found"):  # a stage needs the previous one's file
        _continue_from(tmp_path / "missing.pt", None, [])


def test_build_from_datasets_rendered_elsewhere_with_precomputed_embeddings(tmp_path, monkeypatch):
    """The GPU route: render here, embed the classes here, train where neither MuJoCo nor MiniLM is installed."""
    import yaml
    from typer.testing import CliRunner

    from lookout.cli import app
    from lookout.perception.text_encoders import OfflineTextEncoder, PrecomputedTextEncoder
    from lookout.perception.tiny_detector import combine_datasets
    from lookout.sim.config import SimConfig
    from lookout.sim.dataset import class_names, render_dataset

    parts = [render_dataset(tmp_path / f"d{s}", 6, seed=s, images_per_scene=3, val_fraction=0.5, max_side=64)
             for s in (1, 2)]
    emb = tmp_path / "emb.pt"
    res = CliRunner().invoke(app, ["models", "embed-classes", str(emb)])
    assert res.exit_code == 0, res.output
    table = PrecomputedTextEncoder.load(emb)
    assert table.id == OfflineTextEncoder(dim=512, seed=0).id
    # where sentence-transformers is missing, the offline encoder would fail: training must not call it
    monkeypatch.setattr(OfflineTextEncoder, "encode", lambda *_a: pytest.fail("the offline encoder was called"))
    out = tmp_path / "det.pt"
    res = CliRunner().invoke(app, ["models", "build", "detector", "--out", str(out), "--data", str(tmp_path / "d1"),
                                   "--data", str(tmp_path / "d2"), "--epochs", "1", "--imgsz", "64", "--batch", "4",
                                   "--embeddings", str(emb)])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "det_build.json").read_text())
    assert record["images"]["train"] == sum(p.images["train"] for p in parts)
    assert record["boxes"]["val"] == sum(p.boxes["val"] for p in parts)
    assert "datasets=" in record["command"] and record["classes"] == class_names(SimConfig.default())
    det = Detector(out, device="cpu", imgsz=64)
    assert det.text_encoder_id == table.id and det.model_classes == record["classes"]
    # datasets that do not share class indices, or a folder that is not a dataset, are refused
    other = tmp_path / "other"
    (other / "images" / "train").mkdir(parents=True)
    data = yaml.safe_load((tmp_path / "d1" / "data.yaml").read_text())
    (other / "data.yaml").write_text(yaml.safe_dump({**data, "names": {0: "cat"}}))
    with pytest.raises(ValueError, match="share class indices"):
        combine_datasets([tmp_path / "d1", other], tmp_path / "combined")
    with pytest.raises(FileNotFoundError, match="render-dataset"):
        combine_datasets([tmp_path / "emb.pt"], tmp_path / "combined2")
    for bad in (["--data", str(tmp_path / "nowhere")], ["--data", str(tmp_path / "d1"), "--embeddings", str(out)]):
        res = CliRunner().invoke(app, ["models", "build", "detector", "--out", str(tmp_path / "x.pt"), *bad])
        assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output, res.output


def test_gpu_recipe_renders_then_trains(tmp_path):
    """The committed detector's recipe end to end, on tiny sizes and the CPU."""
    from lookout.perception.tiny_detector import GpuRecipe, build_tiny_detector_gpu

    recipe = GpuRecipe(dataset_seeds=(1, 2), images_per_dataset=16, val_fraction=0.5, max_side=64, epochs=1,
                       time_min=None, batch=4)
    out = tmp_path / "det.pt"
    build = build_tiny_detector_gpu(out, seed=7, recipe=recipe, device="cpu", workers=0, workdir=tmp_path / "w")
    assert build.images["train"] + build.images["val"] == 32 and build.imgsz == 64 and build.epochs == 1
    assert sorted(p.name for p in (tmp_path / "w").glob("render-*")) == ["render-s8", "render-s9"]
    assert Detector(out, device="cpu", imgsz=64).model_classes == build.classes


def test_results_are_read_without_polars(tmp_path, monkeypatch):
    import importlib.util

    from ultralytics.engine.trainer import BaseTrainer

    from lookout.perception.tiny_detector import _results_csv_without_polars

    monkeypatch.setattr(BaseTrainer, "read_results_csv", BaseTrainer.read_results_csv)  # restored afterwards
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "polars" else real_find_spec(name, *a))
    _results_csv_without_polars()
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("epoch,  train/box_loss\n1,2.5\n2,1.25\n")
    trainer = type("T", (), {"csv": csv_path})()
    assert BaseTrainer.read_results_csv(trainer) == {"epoch": [1.0, 2.0], "train/box_loss": [2.5, 1.25]}
    trainer.csv = tmp_path / "missing.csv"
    assert BaseTrainer.read_results_csv(trainer) == {}


def test_metrics_are_exact_for_perfect_and_empty_detections(held_out):
    images, names = held_out

    def oracle(item: LabelledImage):
        dets = [Detection(*map(float, b), 0.9, names[c], int(c)) for c, b in zip(item.classes, item.xyxy,
                                                                                   strict=True)]
        return lambda _bgr: DetectionResult(dets, names, 320, 240, {})

    it = iter(images)
    perfect = score_vocabulary(lambda bgr: oracle(next(it))(bgr), images, names, "oracle")
    # Ultralytics integrates a 101-point interpolated PR curve: a perfect detector scores 0.995, as in `yolo val`.
    assert perfect.map50 == pytest.approx(0.995, abs=1e-3) and perfect.map50_95 == pytest.approx(0.995, abs=1e-3)
    assert perfect.recall == pytest.approx(1.0)
    empty = score_vocabulary(lambda _bgr: DetectionResult([], names, 320, 240, {}), images, names, "none")
    assert empty.map50 == 0.0 and empty.recall == 0.0


def test_synonym_phrases():
    assert synonym_phrase("red ball") == "crimson ball"
    assert synonym_phrase("blue box", colors=False, shapes=True) == "blue cube"
    assert synonym_phrase("purple cone", colors=True, shapes=True) == "violet pylon"


def test_eval_detector_scores_the_committed_model(tmp_path):
    report = evaluate_detector(COMMITTED, n_images=3, seed=HELD_OUT_SEED + 1, images_per_scene=3)
    assert report.images == 3 and report.boxes >= 1
    assert [v.name for v in report.vocabularies][:2] == ["trained phrases", "colour synonyms"]
    for v in report.vocabularies:
        assert 0.0 <= v.map50_95 <= v.map50 <= 1.0
    assert report.scenes_shared_with_training == 0
    assert json.loads(report.to_json())["vocabularies"][0]["per_phrase"]


def test_eval_detector_cli_writes_json(tmp_path: Path):
    from typer.testing import CliRunner

    from lookout.cli import app

    out = tmp_path / "det.json"
    res = CliRunner().invoke(app, ["eval", "detector", "--model", str(COMMITTED), "--n", "2", "--no-synonyms",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["images"] == 2 and len(data["vocabularies"]) == 1
