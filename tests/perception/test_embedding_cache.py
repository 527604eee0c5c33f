"""Embedding cache: the encoder only sees new phrases; disk files are per encoder and survive restarts."""

from __future__ import annotations

import logging

import pytest
import torch

from lookout.perception.embedding_cache import EmbeddingCache, cache_file


class Encoder:
    """A deterministic stand-in for a text model (seeded vectors per phrase), recording calls."""

    def __init__(self, dim: int = 8) -> None:
        self.dim, self.calls = dim, []

    def __call__(self, phrases: list[str]) -> torch.Tensor:
        self.calls.append(list(phrases))
        rows = [
            torch.randn(self.dim, generator=torch.Generator().manual_seed(sum(map(ord, p)))) for p in phrases
        ]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def test_encoder_is_called_once_with_only_the_missing_phrases():
    enc, cache = Encoder(), EmbeddingCache("enc-a", 8)
    first = cache.get(["cup", "box"], enc)
    second = cache.get(["box", "cup", "ball"], enc)
    third = cache.get(["ball", "cup"], enc)
    assert enc.calls == [["cup", "box"], ["ball"]]
    torch.testing.assert_close(second[1], first[0])
    torch.testing.assert_close(third[0], second[2])


def test_disk_cache_survives_a_restart_and_is_keyed_by_encoder(tmp_path):
    enc = Encoder()
    EmbeddingCache("enc-a", 8, tmp_path).get(["cup", "box"], enc)
    again = Encoder()
    restarted = EmbeddingCache("enc-a", 8, tmp_path)
    restarted.get(["box", "cup"], again)
    assert again.calls == []
    other = Encoder()
    EmbeddingCache("enc-b", 8, tmp_path).get(["cup"], other)
    assert other.calls == [["cup"]]  # another encoder's file is never read
    assert cache_file(tmp_path, "enc-a").is_file() and cache_file(tmp_path, "enc-b").is_file()


def test_a_corrupt_cache_file_is_ignored_with_a_warning_and_rewritten(tmp_path, caplog):
    cache_file(tmp_path, "enc-a").write_bytes(b"not a torch file")
    enc = Encoder()
    with caplog.at_level(logging.WARNING):
        cache = EmbeddingCache("enc-a", 8, tmp_path)
    assert "unreadable embedding cache" in caplog.text
    cache.get(["cup"], enc)
    assert len(EmbeddingCache("enc-a", 8, tmp_path)) == 1


def test_wrong_embedding_shapes_are_refused():
    cache = EmbeddingCache("enc-a", 8)
    with pytest.raises(ValueError, match="expected \\(1, 8\\)"):
        cache.get(["cup"], lambda phrases: torch.zeros(1, 4))
