"""Per-phrase text embeddings of one encoder, kept in memory and optionally on disk.

Switching the vocabulary back to phrases seen before must not call the text encoder (a CLIP load or forward
takes seconds; yolo_ros users see stalls there). The disk file is keyed by the encoder id, so embeddings of
different encoders can never mix, and survives restarts, so a robot can start offline with known phrases even
when the encoder's weights are absent.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_FORMAT = 1


def cache_file(directory: Path, encoder_id: str) -> Path:
    return directory / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', encoder_id)}.pt"


class EmbeddingCache:
    """Memory (+ disk when `directory` is given) cache of unit-norm phrase embeddings for `encoder_id`."""

    def __init__(self, encoder_id: str, dim: int, directory: str | Path | None = None) -> None:
        self.encoder_id = encoder_id
        self.dim = int(dim)
        self.path = cache_file(Path(directory).expanduser(), encoder_id) if directory else None
        self._memory: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        if self.path is not None:
            self._memory.update(self._read_disk())

    def __contains__(self, phrase: str) -> bool:
        return phrase in self._memory

    def __len__(self) -> int:
        return len(self._memory)

    def missing(self, phrases: Sequence[str]) -> list[str]:
        return [p for p in phrases if p not in self._memory]

    def put(self, phrases: Sequence[str], embeddings: torch.Tensor, *, persist: bool = True) -> None:
        """Store rows of `embeddings` (N, dim) under `phrases`; `persist=False` keeps them in memory only."""
        if embeddings.shape != (len(phrases), self.dim):
            raise ValueError(
                f"{self.encoder_id} gave embeddings of shape {tuple(embeddings.shape)}, "
                f"expected ({len(phrases)}, {self.dim})"
            )
        rows = embeddings.detach().float().cpu()
        with self._lock:
            for phrase, row in zip(phrases, rows, strict=True):
                self._memory[phrase] = row.clone()
            if persist and self.path is not None:
                self._write_disk()

    def get(self, phrases: Sequence[str], encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """(N, dim) embeddings; `encode` is called once, with only the phrases not cached yet (or not at all)."""
        todo = list(dict.fromkeys(self.missing(phrases)))
        if todo:
            self.put(todo, encode(todo))
        return torch.stack([self._memory[p] for p in phrases])

    def _read_disk(self) -> dict[str, torch.Tensor]:
        assert self.path is not None
        if not self.path.is_file():
            return {}
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
            if blob.get("format") != _FORMAT or blob.get("encoder") != self.encoder_id:
                raise ValueError("written by another encoder or format")
            emb = blob["embeddings"]
            if emb.ndim != 2 or emb.shape[1] != self.dim or emb.shape[0] != len(blob["phrases"]):
                raise ValueError(f"embeddings of shape {tuple(emb.shape)} do not fit {self.dim}-d phrases")
            return {p: e.float() for p, e in zip(blob["phrases"], emb, strict=True)}
        except Exception as exc:  # a broken cache must never stop the detector: it is only a cache
            log.warning("ignoring unreadable embedding cache %s (%s); it will be rewritten", self.path, exc)
            return {}

    def _write_disk(self) -> None:
        assert self.path is not None
        merged = {**self._read_disk(), **self._memory}  # keep what other processes added meanwhile
        phrases = list(merged)
        blob = {
            "format": _FORMAT,
            "encoder": self.encoder_id,
            "phrases": phrases,
            "embeddings": torch.stack([merged[p] for p in phrases]),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name, dir=self.path.parent)
            os.close(fd)
            torch.save(blob, tmp)
            os.replace(tmp, self.path)  # atomic: readers see the old or the new file, never half of one
        except OSError as exc:
            log.warning(
                "cannot write embedding cache %s: %s (continuing with the memory cache)", self.path, exc
            )
