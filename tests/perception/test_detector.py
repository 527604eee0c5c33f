"""The core Detector: same boxes as Ultralytics' predict, vocabulary switching without reloads, tracking, errors."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch

from lookout.perception.config import DetectorConfig
from lookout.perception.detector import Detector
from lookout.perception.errors import ImageConversionError, ModelFileError, TextEncoderError, VocabularyError
from lookout.perception.preprocess import letterbox_geometry

from .conftest import IMGSZ, STORED_CLASSES

pytestmark = pytest.mark.xdist_group("perception_models")  # share the session-built models


def _rows(result) -> np.ndarray:
    rows = np.array([[*d.xyxy, d.score, d.class_index] for d in result.detections], dtype=np.float64).reshape(
        -1, 6
    )
    return rows[np.argsort(-rows[:, 4], kind="stable")]


@functools.cache
def _ultralytics_model(model_path):
    from ultralytics import YOLO

    return YOLO(str(model_path))


def _predict_rows(model_path, frame, conf, classes=None) -> np.ndarray:
    threads = torch.get_num_threads()
    try:
        res = _ultralytics_model(model_path).predict(
            frame, imgsz=IMGSZ, conf=conf, classes=classes, verbose=False
        )[0]
    finally:
        torch.set_num_threads(threads)  # predict sets torch to cpu_count - 1 threads for the whole process
    b = res.boxes
    rows = torch.cat([b.xyxy, b.conf[:, None], b.cls[:, None]], 1).double().numpy()
    return rows[np.argsort(-rows[:, 4], kind="stable")]


def test_world_detections_match_ultralytics_predict(world_model, frames):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", conf=0.25)
    total = 0
    for frame in frames:
        ours, ref = _rows(det.detect(frame)), _predict_rows(world_model, frame, 0.25)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours[:, :4], ref[:, :4], atol=0.05)  # pixels of the original frame
        np.testing.assert_allclose(ours[:, 4], ref[:, 4], atol=1e-4)
        np.testing.assert_array_equal(ours[:, 5], ref[:, 5])
        total += len(ours)
    assert total >= 3, "the calibrated test model should report boxes"


def test_result_has_typed_boxes_inside_the_image_and_stage_timings(world_model, frames):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", conf=0.25)
    frame = frames[0]
    result = det.detect(frame)
    assert (result.image_width, result.image_height) == (frame.shape[1], frame.shape[0])
    assert result.vocabulary == list(STORED_CLASSES)
    assert result.detections
    for d in result.detections:
        assert 0 <= d.x_min <= d.x_max <= frame.shape[1] and 0 <= d.y_min <= d.y_max <= frame.shape[0]
        assert 0.25 < d.score <= 1 and d.phrase == STORED_CLASSES[d.class_index] and d.track_id is None
    t = result.timings_ms
    assert set(t) >= {"preprocess", "inference", "postprocess", "total"}
    assert all(v >= 0 for v in t.values()) and t["inference"] > 0
    assert t["total"] >= t["preprocess"] + t["inference"] + t["postprocess"] - 1e-3


def test_overlap_work_runs_once_per_frame_and_changes_nothing(world_model, frames):
    """`detect(overlap=...)` is where a stream receives its next frame; it must not alter the result or timings."""
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", conf=0.25)
    calls = []
    plain = det.detect(frames[0])
    with_overlap = det.detect(frames[0], overlap=lambda: calls.append(1) or time.sleep(0.3))
    assert calls == [1]
    np.testing.assert_array_equal(_rows(with_overlap), _rows(plain))
    t = with_overlap.timings_ms
    stages = t["preprocess"] + t["inference"] + t["postprocess"]
    assert t["total"] < stages + 150, "the 300 ms of overlap work must not count as detection time"


def test_read_only_frames_are_detected_without_a_copy_error(world_model, frames):
    """The ROS node passes a read-only view over the received bytes."""
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", conf=0.25)
    view = np.frombuffer(frames[0].tobytes(), np.uint8).reshape(frames[0].shape)
    assert not view.flags.writeable
    np.testing.assert_array_equal(_rows(det.detect(view)), _rows(det.detect(frames[0])))


def test_grey_and_non_contiguous_frames_work_and_bad_ones_raise(world_model, frames):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu")
    grey = np.ascontiguousarray(frames[0][:, :, 1])
    assert det.detect(grey).image_width == grey.shape[1]
    flipped = frames[0][:, ::-1]  # a view with negative strides
    assert det.detect(flipped).image_height == frames[0].shape[0]
    for bad, match in [
        (np.zeros((0, 10, 3), np.uint8), "zero-size"),
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 4), np.uint8), "HxWx3"),
        ([[1, 2, 3]], "numpy array"),
    ]:
        with pytest.raises(ImageConversionError, match=match):
            det.detect(bad)


def test_vocabulary_switch_encodes_only_new_phrases_and_never_reloads(world_model, frames, counting_encoder):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", text_encoder=counting_encoder)
    net = det._net
    assert counting_encoder.calls == []  # stored class embeddings come from the file
    assert det.set_vocabulary(["  green ball", "person", "green ball"]) == ["green ball", "person"]
    assert counting_encoder.calls == [["green ball"]]
    result = det.detect(frames[0])
    assert result.vocabulary == ["green ball", "person"]
    assert {d.phrase for d in result.detections} <= {"green ball", "person"}
    det.set_vocabulary(["red cup"])
    start = time.perf_counter()
    det.set_vocabulary(["person", "green ball", "red cup"])  # all known now
    switch_ms = (time.perf_counter() - start) * 1e3
    assert counting_encoder.calls == [["green ball"]], "a switch to known phrases must not call the encoder"
    assert det._net is net and det.encoder_calls == 1
    assert switch_ms < 500, f"switching to cached phrases took {switch_ms:.0f} ms"


def test_refused_vocabulary_keeps_the_old_one(world_model):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu")
    for bad in ([], ["  "], ["x" * 500]):
        with pytest.raises(VocabularyError):
            det.set_vocabulary(bad)
    assert det.vocabulary == list(STORED_CLASSES)


def test_disk_cache_lets_a_new_detector_switch_without_the_encoder(world_model, counting_encoder, tmp_path):
    first = Detector(
        world_model, device="cpu", imgsz=IMGSZ, text_encoder=counting_encoder, embedding_cache_dir=tmp_path
    )
    first.set_vocabulary(["yellow duck", "chair"])
    assert counting_encoder.calls == [["yellow duck", "chair"]]
    fresh = type(counting_encoder)(counting_encoder.inner)
    second = Detector(
        world_model, device="cpu", imgsz=IMGSZ, text_encoder=fresh, embedding_cache_dir=tmp_path
    )
    assert second.set_vocabulary(["chair", "yellow duck"]) == ["chair", "yellow duck"]
    assert fresh.calls == []


def test_encoder_mismatch_and_missing_clip_are_clear_errors(world_model, clip_world_model):
    with pytest.raises(TextEncoderError, match="trained with text encoder"):
        Detector(world_model, device="cpu", text_encoder="clip")
    # An official-style file needs CLIP: it still starts offline on its stored classes...
    det = Detector(clip_world_model, device="cpu", imgsz=IMGSZ)
    assert det.vocabulary == list(STORED_CLASSES) and det.text_encoder_id == "clip:ViT-B/32"
    assert det.set_vocabulary(["person"]) == ["person"]
    # ...and a new phrase says exactly why CLIP cannot be used here, keeping the vocabulary.
    with pytest.raises(TextEncoderError, match=r"clip-anytorch|weights not found"):
        det.set_vocabulary(["dog"])
    assert det.vocabulary == ["person"]


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        Detector(tmp_path / "nope.pt", device="cpu")


def test_closed_set_model_detects_only_its_classes(closed_model, frames):
    det = Detector(closed_model, imgsz=IMGSZ, device="cpu", conf=0.25)
    assert len(det.vocabulary) == 80 and det.text_encoder_id is None
    full = [_rows(det.detect(f)) for f in frames]
    assert sum(len(r) for r in full) >= 3
    for ours, frame in zip(full, frames, strict=True):
        ref = _predict_rows(closed_model, frame, 0.25)
        assert abs(len(ours) - len(ref)) <= max(1, len(ref) // 10)
        matched = sum(np.abs(ours[:, :4] - r[:4]).max(1).min() < 0.05 for r in ref) if len(ours) else 0
        assert matched >= 0.9 * len(ref)
    with pytest.raises(VocabularyError, match=r"closed-set model and cannot detect \['red cup'\]"):
        det.set_vocabulary(["person", "red cup"])
    wanted = sorted({int(c) for r in full for c in r[:, 5]})[:2]
    names = [det.model_classes[i] for i in wanted]
    det.set_vocabulary(names)
    for frame in frames:
        result = det.detect(frame)
        assert {d.phrase for d in result.detections} <= set(names)
        assert all(names[d.class_index] == d.phrase for d in result.detections)


def test_tracker_keeps_ids_across_frames_and_resets_on_vocabulary_change(world_model, frames):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", conf=0.25, tracker=True)
    frame = frames[0]
    first = det.detect(frame).detections
    assert first and all(d.track_id is not None for d in first)
    ids = {d.xyxy: d.track_id for d in first}
    again = det.detect(frame).detections
    assert {d.xyxy: d.track_id for d in again} == ids  # same objects, same ids: state persisted
    det.set_vocabulary(list(STORED_CLASSES))
    after = det.detect(frame).detections
    assert min(d.track_id for d in after) >= 1 and max(d.track_id for d in after) <= len(after)


def test_confidence_iou_and_max_det_apply_on_the_next_frame(world_model, frames):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", conf=0.25)
    n = len(det.detect(frames[0]).detections)
    det.conf = 0.01
    assert len(det.detect(frames[0]).detections) > n
    det.max_det = 2
    assert len(det.detect(frames[0]).detections) == 2
    with pytest.raises(ValueError, match="conf"):
        det.conf = 1.5
    with pytest.raises(ValueError, match="iou"):
        det.iou = -0.1


def test_from_config_builds_the_same_detector(world_model):
    cfg = DetectorConfig(model=str(world_model), device="cpu", imgsz=IMGSZ, conf=0.4, classes=["person"])
    det = Detector.from_config(cfg)
    assert det.vocabulary == ["person"] and det.conf == 0.4 and det.imgsz == IMGSZ and not det.half


def test_close_releases_the_network(world_model):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu")
    det.close()
    assert not hasattr(det, "_net")


@pytest.mark.parametrize("shape", [(128, 160), (480, 640), (300, 200), (37, 400)])
def test_letterbox_geometry_matches_ultralytics(shape):
    from ultralytics.data.augment import LetterBox

    img = np.zeros((*shape, 3), np.uint8)
    ref = LetterBox(IMGSZ, auto=True, stride=32).get_params({"img": img})
    geom = letterbox_geometry(*shape, IMGSZ, 32)
    assert (geom.new_w, geom.new_h) == ref["new_unpad"]
    assert (geom.top, geom.bottom, geom.left, geom.right) == (
        ref["top"],
        ref["bottom"],
        ref["left"],
        ref["right"],
    )
    assert geom.dst_h % 32 == 0 and geom.dst_w % 32 == 0


def test_contrast_rule_keeps_out_phrases_that_name_the_same_objects():
    from lookout.perception.detector import contrast_for

    contrast = ["red ball", "blue ball", "red cone", "cup", "chair"]
    assert contrast_for(["ball"], contrast) == ["red cone", "cup", "chair"]  # "red ball" would claim balls
    assert contrast_for(["red cup"], contrast) == ["red ball", "blue ball", "red cone", "chair"]  # so would "cup"
    assert contrast_for(["red ball"], contrast) == ["blue ball", "red cone", "cup", "chair"]
    assert contrast_for([], contrast) == contrast


def test_contrast_phrases_are_scored_but_never_reported(world_model, frames):
    """The result equals: detect the asked + contrast phrases, keep the asked boxes no contrast box beats."""
    from torchvision.ops import box_iou

    asked, others = [STORED_CLASSES[0]], list(STORED_CLASSES[1:])
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", conf=0.01, contrast_phrases=others, classes=asked)
    full = Detector(world_model, imgsz=IMGSZ, device="cpu", conf=0.01, classes=asked + others)
    assert det.vocabulary == asked and det.contrast == others
    hidden = 0
    for frame in frames:
        got = det.detect(frame)
        assert got.vocabulary == asked
        assert all(d.phrase == asked[0] and d.class_index == 0 for d in got.detections)
        ref = full.detect(frame).detections
        mine = [d for d in ref if d.phrase == asked[0]]
        other = [d for d in ref if d.phrase != asked[0]]
        if mine and other:
            iou = box_iou(torch.tensor([d.xyxy for d in mine]), torch.tensor([d.xyxy for d in other]))
            kept = [d for i, d in enumerate(mine)
                    if not any(iou[i, j] >= det.iou and o.score > d.score for j, o in enumerate(other))]
        else:
            kept = mine
        hidden += len(mine) - len(kept)
        np.testing.assert_allclose(_rows(got), _rows(type(got)(detections=kept, vocabulary=asked,
                                                                 image_width=got.image_width,
                                                                 image_height=got.image_height,
                                                                 timings_ms={})), atol=1e-4)
    assert hidden > 0, "some asked-for boxes should lose to a contrast phrase on these frames"


def test_contrast_classes_come_from_the_model_file(world_model, closed_model, frames):
    det = Detector(world_model, imgsz=IMGSZ, device="cpu", contrast_classes=True, classes=["red cup"])
    assert det.contrast == list(STORED_CLASSES) and det.vocabulary == ["red cup"]
    closed = Detector(closed_model, imgsz=IMGSZ, device="cpu", conf=0.05, contrast_classes=True, classes=["person"])
    for frame in frames:
        assert all(d.phrase == "person" and d.class_index == 0 for d in closed.detect(frame).detections)
    with pytest.raises(VocabularyError, match="contrast phrases"):
        Detector(closed_model, imgsz=IMGSZ, device="cpu", contrast_phrases=["red cup"])
