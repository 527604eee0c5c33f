"""The folded inference graph computes exactly what Ultralytics' own forward computes."""

from __future__ import annotations

import pytest
import torch

from lookout.perception.fast_model import FastDetectNet
from lookout.perception.model_files import load_model_file

pytestmark = pytest.mark.xdist_group("perception_models")  # share the session-built models


def _reference(model: torch.nn.Module, x: torch.Tensor, classes: list[int] | None = None):
    """Ultralytics' forward, reduced to what NMS starts from: xyxy boxes, best score and class per anchor."""
    with torch.no_grad():
        out = model(x)[0]  # (B, 4 + nc, A), boxes as xywh
    xy, wh = out[:, :2], out[:, 2:4]
    scores = out[:, 4:] if classes is None else out[:, 4:][:, classes]
    best, cls = scores.max(1)
    return torch.cat([xy - wh / 2, xy + wh / 2], 1), best, cls


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so that folding BatchNorm into the class conv is really exercised."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def _check(net: FastDetectNet, ref) -> None:
    x_ref, best_ref, cls_ref = ref
    x = torch.rand(1, 3, 128, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        xyxy, best, cls = net(x)
    torch.testing.assert_close(xyxy, x_ref(x)[0], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(best, x_ref(x)[1], atol=1e-5, rtol=1e-4)
    assert torch.equal(cls, x_ref(x)[2])


@pytest.mark.parametrize("capacity", [None, 8])
def test_yolo_world_v2_with_folded_vocabulary_matches_ultralytics(world_model, capacity):
    loaded = load_model_file(world_model)
    model = loaded.model
    _randomise_batchnorm(model)
    text = torch.nn.functional.normalize(
        torch.randn(5, 512, generator=torch.Generator().manual_seed(2)), dim=-1
    )
    model.txt_feats, model.model[-1].nc = text[None], 5
    model.fuse(verbose=False)
    net = FastDetectNet(model).eval()
    net.set_text(text, capacity=capacity)
    assert net.capacity == (capacity or 5) and net.num_classes == 5
    ref = lambda x: _reference(model, x)  # noqa: E731
    _check(net, (ref, None, None))


def test_yolo_world_v1_with_image_pooling_matches_ultralytics():
    from ultralytics import YOLOWorld

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = YOLOWorld("yolov8n-world.yaml").model.eval()
    _randomise_batchnorm(model)
    text = torch.nn.functional.normalize(
        torch.randn(3, 512, generator=torch.Generator().manual_seed(3)), dim=-1
    )
    model.txt_feats, model.model[-1].nc = text[None], 3
    model.fuse(verbose=False)
    net = FastDetectNet(model).eval()
    net.set_text(text, capacity=4)
    assert (
        len(net._folded_attn) == 2
    )  # the two C2fAttn before ImagePoolingAttn fold; the others run per frame
    _check(net, (lambda x: _reference(model, x), None, None))


def test_closed_set_class_subset_matches_the_same_rows_of_ultralytics_output(closed_model):
    model = load_model_file(closed_model).model
    _randomise_batchnorm(model)
    model.fuse(verbose=False)
    subset = [56, 0, 41]  # chair, person, cup: output class i is subset[i]
    net = FastDetectNet(model).eval()
    net.set_class_subset(subset, capacity=4)
    _check(net, (lambda x: _reference(model, x, subset), None, None))


def test_switching_text_within_capacity_reuses_buffers_and_beyond_it_replaces_them(world_model):
    model = load_model_file(world_model).model.fuse(verbose=False)
    net = FastDetectNet(model).eval()
    net.set_text(torch.nn.functional.normalize(torch.randn(3, 512), dim=-1), capacity=8)
    version, buffer = net.layout_version, net._buffers["_cls_w0"]
    net.set_text(torch.nn.functional.normalize(torch.randn(6, 512), dim=-1), capacity=8)
    assert net.layout_version == version and net._buffers["_cls_w0"] is buffer  # CUDA graphs stay valid
    net.set_text(torch.nn.functional.normalize(torch.randn(9, 512), dim=-1), capacity=16)
    assert net.layout_version > version
