"""Text encoders: the offline encoder is deterministic everywhere; CLIP without weights fails clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookout.perception.errors import TextEncoderError
from lookout.perception.text_encoders import (
    ClipTextEncoder,
    OfflineTextEncoder,
    canonical_encoder_id,
    fixed_projection,
    make_text_encoder,
)

pytestmark = pytest.mark.xdist_group("perception_models")  # share the session-built models


def test_projection_is_orthonormal_and_fixed_by_its_seed():
    p = fixed_projection(384, 512, seed=0)
    assert p.shape == (384, 512) and p.dtype == np.float32
    np.testing.assert_allclose(p @ p.T, np.eye(384), atol=1e-5)  # rows orthonormal: cosines are preserved
    # Golden values: the matrix must be the same on every machine and NumPy version, or trained heads break.
    np.testing.assert_allclose(p[0, :4], [-0.0054069185, 0.0107508572, 0.0609169751, 0.0584571324], atol=1e-7)
    np.testing.assert_allclose(p[383, -2:], [-0.0624368824, 0.0186645798], atol=1e-7)
    assert not np.allclose(p, fixed_projection(384, 512, seed=1))
    down = fixed_projection(384, 256, seed=0)
    np.testing.assert_allclose(down.T @ down, np.eye(256), atol=1e-5)


def test_offline_encoder_gives_unit_512d_embeddings_that_are_stable_and_distinct(offline_encoder):
    emb = offline_encoder.encode(["red cup", "person", "red cup"])
    assert emb.shape == (3, 512) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(emb[0], emb[2])
    assert float(emb[0] @ emb[1]) < 0.9
    # Same numbers as a fresh process computed when this test was written (MiniLM + fixed projection).
    torch.testing.assert_close(
        emb[0, :4], torch.tensor([0.0141269, 0.0515307, 0.0578934, 0.0031049]), atol=1e-4, rtol=0
    )
    assert offline_encoder.id == "offline:all-minilm-l6-v2:d512:s0"


def test_encoder_ids_are_canonical_and_unknown_ones_are_refused():
    assert canonical_encoder_id("offline", 256) == "offline:all-minilm-l6-v2:d256:s0"
    assert canonical_encoder_id("clip", 512) == "clip:ViT-B/32"
    assert isinstance(make_text_encoder("offline", 512), OfflineTextEncoder)
    with pytest.raises(TextEncoderError, match="unknown text encoder"):
        make_text_encoder("word2vec", 512)
    with pytest.raises(TextEncoderError, match="512-d"):
        make_text_encoder("offline:all-minilm-l6-v2:d256:s0", 512)


def test_clip_without_package_or_weights_is_a_clear_error_not_a_download():
    enc = ClipTextEncoder("ViT-B/32")
    with pytest.raises(TextEncoderError, match=r"clip-anytorch|weights not found at .*ViT-B-32\.pt") as info:
        enc.encode(["person"])
    assert "offline" in str(info.value)  # and it says what to do instead


def test_precomputed_encoder_replays_another_encoders_embeddings(offline_encoder, tmp_path):
    from lookout.perception.text_encoders import PrecomputedTextEncoder

    phrases = ["red cup", "person", "blue box"]
    path = tmp_path / "emb.pt"
    PrecomputedTextEncoder.compute(offline_encoder, phrases).save(path)
    table = PrecomputedTextEncoder.load(path)
    assert table.id == offline_encoder.id and table.dim == 512
    torch.testing.assert_close(table.encode(["blue box", "red cup"]), offline_encoder.encode(["blue box", "red cup"]))
    with pytest.raises(TextEncoderError, match="no precomputed embedding for \\['green ball'\\]"):
        table.encode(["red cup", "green ball"])
    path.write_bytes(b"not a torch file")
    with pytest.raises(TextEncoderError, match="not a precomputed text-embedding file"):
        PrecomputedTextEncoder.load(path)
    with pytest.raises(TextEncoderError, match="2 phrases but embeddings of shape"):
        PrecomputedTextEncoder("x", ["a", "b"], torch.zeros(3, 4))
    with pytest.raises(TextEncoderError, match="once"):
        PrecomputedTextEncoder("x", ["a", "a"], torch.zeros(2, 4))
    torch.save({"id": "x", "phrases": ["a"], "embeddings": [[0.0]]}, str(path))  # a list, not a tensor
    with pytest.raises(TextEncoderError, match="not a precomputed text-embedding file"):
        PrecomputedTextEncoder.load(path)
