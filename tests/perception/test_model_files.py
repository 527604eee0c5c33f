"""Model files: one loading path, clear errors, and the text-encoder record that guards YOLO-World heads."""

from __future__ import annotations

import json

import pytest
import torch

from lookout.perception.errors import ModelFileError, TextEncoderError
from lookout.perception.model_files import (
    TEXT_ENCODER_KEY,
    build_world_model,
    check_text_encoder,
    load_model_file,
    save_model,
    sidecar_path,
    world_text_encoder,
)
from lookout.perception.synthetic import make_closed_set_model

pytestmark = pytest.mark.xdist_group("perception_models")  # share the session-built models


def test_missing_and_corrupt_files_are_named_with_what_to_do(tmp_path):
    with pytest.raises(ModelFileError, match=r"detector\.pt not found: run `make models`"):
        load_model_file(tmp_path / "detector.pt")
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match=r"cannot read model file .*broken\.pt"):
        load_model_file(bad)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="not an Ultralytics .pt"):
        load_model_file(onnx)


def test_non_detection_models_are_refused(tmp_path):
    path = make_closed_set_model(tmp_path / "cls.pt", cfg="yolo11n-cls.yaml")
    with pytest.raises(ModelFileError, match="Classify head"):
        load_model_file(path)


def test_world_model_records_its_encoder_and_stored_vocabulary(world_model):
    loaded = load_model_file(world_model)
    assert loaded.open_vocabulary and loaded.text_width == 512
    assert loaded.text_encoder == "offline:all-minilm-l6-v2:d512:s0"
    assert loaded.class_names == ["red cup", "person", "blue box"]
    assert loaded.text_features is not None and loaded.text_features.shape == (3, 512)
    assert check_text_encoder("auto", loaded) == loaded.text_encoder
    assert check_text_encoder("offline", loaded) == loaded.text_encoder
    with pytest.raises(TextEncoderError, match="trained with text encoder 'offline:.*but 'clip:ViT-B/32'"):
        check_text_encoder("clip", loaded)


def test_unrecorded_world_files_need_clip_and_a_sidecar_can_say_otherwise(clip_world_model, tmp_path):
    assert load_model_file(clip_world_model).text_encoder == "clip:ViT-B/32"
    copy = tmp_path / "third_party.pt"
    copy.write_bytes(clip_world_model.read_bytes())
    sidecar_path(copy).write_text(json.dumps({"text_encoder": "offline"}))
    assert load_model_file(copy).text_encoder == "offline:all-minilm-l6-v2:d512:s0"
    sidecar_path(copy).write_text("{not json")
    with pytest.raises(ModelFileError, match="must be JSON"):
        load_model_file(copy)


def test_a_sidecar_contradicting_the_model_record_is_an_error(world_model, tmp_path):
    copy = tmp_path / "w.pt"
    copy.write_bytes(world_model.read_bytes())
    sidecar_path(copy).write_text(json.dumps({"text_encoder": "clip"}))
    with pytest.raises(ModelFileError, match="fix or remove the sidecar"):
        load_model_file(copy)


def test_closed_set_files_have_their_fixed_class_list(closed_model):
    loaded = load_model_file(closed_model)
    assert not loaded.open_vocabulary and loaded.text_encoder is None
    assert len(loaded.class_names) == 80 and loaded.class_names[0] == "person"


def test_training_helper_makes_ultralytics_embed_with_the_offline_encoder(counting_encoder, tmp_path):
    """What the tiny-detector training needs: set_classes/train() go through our encoder, and it is recorded."""
    from ultralytics.nn.tasks import WorldModel

    original = WorldModel.get_text_pe
    yolo = build_world_model("yolov8n-worldv2.yaml", text_encoder=counting_encoder)
    assert yolo.model.yaml[TEXT_ENCODER_KEY] == counting_encoder.id
    with world_text_encoder(counting_encoder):
        yolo.model.set_classes(["green ball", "chair"])
    assert counting_encoder.calls == [["green ball", "chair"]]
    torch.testing.assert_close(
        yolo.model.txt_feats[0], counting_encoder.inner.encode(["green ball", "chair"])
    )
    assert WorldModel.get_text_pe is original  # the patch is undone after the block
    yolo.model.names = {0: "green ball", 1: "chair"}
    path = save_model(yolo, tmp_path / "trained.pt", sidecar=True)
    assert json.loads(sidecar_path(path).read_text()) == {"text_encoder": counting_encoder.id}
    loaded = load_model_file(path)
    assert loaded.text_encoder == counting_encoder.id and loaded.class_names == ["green ball", "chair"]


def test_input_size_defaults_to_the_one_the_model_was_trained_at():
    """Like Ultralytics' predict: the committed tiny detector was trained at 256 and runs at 256 by default."""
    from lookout.paths import repo_root
    from lookout.perception.detector import Detector
    from lookout.perception.model_files import load_model_file

    path = repo_root() / "models" / "tiny" / "detector.pt"
    assert load_model_file(path).train_imgsz == 256
    assert Detector(path, device="cpu").imgsz == 256
    assert Detector(path, device="cpu", imgsz=320).imgsz == 320
