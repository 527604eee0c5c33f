"""`Detector`: an Ultralytics detection model behind a small, fast, thread-safe API.

    det = Detector("models/tiny/detector.pt", device="cuda")
    det.set_vocabulary(["red cup", "person"])      # milliseconds for phrases seen before
    result = det.detect(bgr_image)                  # DetectionResult: boxes in image pixels + stage timings

Why it is faster than `YOLO.predict` at batch 1 (where the GPU mostly waits on Python): Conv+BN fused, fp16 and
NHWC on CUDA, letterboxing on the device, the vocabulary folded into the head once per change
(`fast_model.FastDetectNet`), preprocessing and network replayed as CUDA graphs, one NMS call, one
device-to-host copy per frame, and no `Results` objects. Boxes match `predict`'s (same letterbox geometry,
same NMS rule: best class per anchor, class-aware, score > conf).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookout.perception.embedding_cache import EmbeddingCache
from lookout.perception.errors import ImageConversionError, PerceptionError, TextEncoderError, VocabularyError
from lookout.perception.fast_model import FastDetectNet
from lookout.perception.model_files import check_text_encoder, load_model_file
from lookout.perception.preprocess import (
    Letterbox,
    boxes_to_source,
    letterbox_geometry,
    letterbox_numpy,
    letterbox_tensor,
    round_imgsz,
)
from lookout.perception.text_encoders import TextEncoder, make_text_encoder
from lookout.perception.tracking import ByteTrack
from lookout.perception.types import Detection, DetectionResult
from lookout.perception.vocabulary import DEFAULT_MAX_PHRASE_CHARS, DEFAULT_MAX_PHRASES, normalize_vocabulary

log = logging.getLogger(__name__)

MAX_NMS_CANDIDATES = 30000  # as Ultralytics: bounds NMS time on a degenerate frame
MIN_GRAPH_CAPACITY = 8


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available; a clear error when CUDA is asked for and absent."""
    name = str(device).strip().lower()
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PerceptionError(
            f"device {name!r} requested but CUDA is not available here: use device cpu or auto"
        )
    return dev


def _as_bgr(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ImageConversionError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageConversionError(f"image must be uint8 (BGR), got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageConversionError(f"image must be HxWx3 BGR (or HxW mono), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageConversionError(f"zero-size image ({image.shape[1]}x{image.shape[0]})")
    if not image.flags.c_contiguous:  # read-only is fine: pixels are only read (copied, resized)
        image = np.array(image, copy=True, order="C")
    return image


class _CudaStep:
    """Preprocessing + network for one input size on CUDA, replayed from two CUDA graphs when enabled."""

    def __init__(
        self,
        net: FastDetectNet,
        forward: Any,
        geom: Letterbox,
        dtype: torch.dtype,
        channels_last: bool,
        graphs: bool,
    ) -> None:
        self.geom = geom
        self.version = net.layout_version
        dev = next(net.parameters()).device
        self.host = torch.empty((geom.src_h, geom.src_w, 3), dtype=torch.uint8).pin_memory()
        self.host_np = self.host.numpy()
        self.inp = torch.empty((geom.src_h, geom.src_w, 3), dtype=torch.uint8, device=dev)
        self._net = forward

        def pre() -> torch.Tensor:
            x = letterbox_tensor(self.inp, geom, dtype)
            return x.contiguous(memory_format=torch.channels_last) if channels_last else x

        self._pre = pre
        self.graphs = False
        if graphs:
            try:
                self._capture()
                self.graphs = True
            except Exception as exc:  # capture can fail on exotic setups; eager still works, only slower
                log.warning("CUDA graph capture failed (%s); running eagerly", exc)

    def _capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        # Warm-up: cuDNN autotuning, lazy initialisation and anchor grids must happen outside the capture.
        with torch.cuda.stream(side):
            for _ in range(3):
                self._net(self._pre())
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        self.g_pre, self.g_net = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        # thread_local: CUDA work of other threads (e.g. a text encoder) must not invalidate this capture.
        with torch.cuda.graph(self.g_pre, capture_error_mode="thread_local"):
            self.x = self._pre()
        with torch.cuda.graph(self.g_net, pool=self.g_pre.pool(), capture_error_mode="thread_local"):
            self.out = self._net(self.x)

    def run(self, bgr: np.ndarray, events: list[torch.cuda.Event]) -> tuple[torch.Tensor, ...]:
        np.copyto(self.host_np, bgr)
        events[0].record()
        self.inp.copy_(self.host, non_blocking=True)
        if self.graphs:
            self.g_pre.replay()
            events[1].record()
            self.g_net.replay()
            events[2].record()
            return self.out
        x = self._pre()
        events[1].record()
        out = self._net(x)
        events[2].record()
        return out


def contrast_for(vocabulary: Sequence[str], contrast: Sequence[str]) -> list[str]:
    """The contrast phrases that may compete with `vocabulary`.

    A phrase whose words include a requested phrase's words, or are included in them, would claim the very
    objects asked for ("red ball" when "ball" is asked, "cup" when "red cup" is): those sit out.
    """
    asked = [set(p.lower().split()) for p in vocabulary]
    out = []
    for phrase in contrast:
        words = set(phrase.lower().split())
        if not any(words <= a or a <= words for a in asked):
            out.append(phrase)
    return out


DEFAULT_IMGSZ = 640  # Ultralytics' default input size


class Detector:
    """Open-vocabulary (YOLO-World) or closed-set (YOLO11/YOLOv8) detector over an Ultralytics model file."""

    def __init__(
        self,
        model: str | Path,
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 0,
        max_det: int = 300,
        device: str | torch.device = "auto",
        half: bool = True,
        text_encoder: str | TextEncoder = "auto",
        embedding_cache_dir: str | Path | None = None,
        classes: Sequence[str] | None = None,
        tracker: bool = False,
        cuda_graphs: bool = True,
        compile: bool = False,
        channels_last: bool = True,
        max_phrases: int = DEFAULT_MAX_PHRASES,
        max_phrase_chars: int = DEFAULT_MAX_PHRASE_CHARS,
        contrast_classes: bool = False,
        contrast_phrases: Sequence[str] = (),
    ) -> None:
        self._lock = threading.RLock()
        self.device = resolve_device(device)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self._max_phrases, self._max_phrase_chars = max_phrases, max_phrase_chars
        loaded = load_model_file(model)
        self.model_path = loaded.path
        self.open_vocabulary = loaded.open_vocabulary
        self.model_classes = list(loaded.class_names)
        self._class_index = {name: i for i, name in enumerate(self.model_classes)}
        cuda = self.device.type == "cuda"
        self.half = bool(half and cuda)
        self._dtype = torch.float16 if self.half else torch.float32
        self._channels_last = bool(channels_last)
        self._use_graphs = bool(cuda_graphs and cuda)

        net_model = loaded.model.fuse(verbose=False)  # Conv+BN folded in fp32, before any cast
        self._stride = int(max(int(s) for s in net_model.stride.tolist()))
        # 0: the training size the file records, as Ultralytics' predict does; else its default 640
        self.imgsz = round_imgsz(imgsz or loaded.train_imgsz or DEFAULT_IMGSZ, self._stride)
        self._net = FastDetectNet(net_model).to(self.device, self._dtype).eval()
        if self._channels_last:
            self._net = self._net.to(memory_format=torch.channels_last)
        self._forward = torch.compile(self._net, dynamic=False) if compile else self._net
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
        self._steps: dict[tuple[int, int], _CudaStep] = {}
        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(3)] if cuda else []

        self.text_encoder_id: str | None = None
        self._encoder: TextEncoder | None = None
        self._cache: EmbeddingCache | None = None
        self.encoder_calls = 0
        if self.open_vocabulary:
            requested = text_encoder if isinstance(text_encoder, str) else text_encoder.id
            self.text_encoder_id = check_text_encoder(requested, loaded)
            if not isinstance(text_encoder, str):
                if text_encoder.dim != loaded.text_width:
                    raise TextEncoderError(
                        f"encoder {text_encoder.id} is {text_encoder.dim}-d, the model needs {loaded.text_width}-d"
                    )
                self._encoder = text_encoder
            self._text_width = int(loaded.text_width or 0)
            self._cache = EmbeddingCache(self.text_encoder_id, self._text_width, embedding_cache_dir or None)
            stored = loaded.text_features  # the file's own class embeddings: no encoder needed for them
            fresh = [i for i, n in enumerate(loaded.class_names) if n not in self._cache]
            if stored is not None and fresh:
                self._cache.put([loaded.class_names[i] for i in fresh], stored[fresh], persist=False)
        self._tracker = ByteTrack() if tracker else None
        self._vocabulary: list[str] = []
        self.contrast = self._contrast_list(contrast_classes, contrast_phrases)
        self.set_vocabulary(list(classes) if classes else self.model_classes)

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> Detector:
        """Build from a `DetectorConfig` (or anything with its attributes); keyword overrides win."""
        kwargs = {
            "conf": cfg.conf,
            "iou": cfg.iou,
            "imgsz": cfg.imgsz,
            "max_det": cfg.max_det,
            "device": cfg.device,
            "half": cfg.half,
            "text_encoder": cfg.text_encoder,
            "embedding_cache_dir": cfg.embedding_cache_dir or None,
            "classes": list(cfg.classes) or None,
            "tracker": cfg.tracker,
            "cuda_graphs": cfg.cuda_graphs,
            "compile": cfg.compile,
            "channels_last": cfg.channels_last,
            "max_phrases": cfg.max_phrases,
            "max_phrase_chars": cfg.max_phrase_chars,
            "contrast_classes": cfg.contrast_classes,
            "contrast_phrases": list(cfg.contrast_phrases),
        }
        kwargs.update(overrides)
        return cls(cfg.model, **kwargs)

    # --- settings that may change while running -------------------------------------------------------------

    @property
    def conf(self) -> float:
        return self._conf

    @conf.setter
    def conf(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"conf must be in [0, 1], got {value}")
        self._conf = float(value)

    @property
    def iou(self) -> float:
        return self._iou

    @iou.setter
    def iou(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"iou must be in [0, 1], got {value}")
        self._iou = float(value)

    @property
    def max_det(self) -> int:
        return self._max_det

    @max_det.setter
    def max_det(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"max_det must be at least 1, got {value}")
        self._max_det = int(value)

    # --- vocabulary -----------------------------------------------------------------------------------------

    @property
    def vocabulary(self) -> list[str]:
        return list(self._vocabulary)

    def _encode(self, phrases: list[str]) -> torch.Tensor:
        if self._encoder is None:
            assert self.text_encoder_id is not None
            self._encoder = make_text_encoder(self.text_encoder_id, self._text_width, self.device)
        self.encoder_calls += 1
        emb = self._encoder.encode(phrases)
        if emb.shape != (len(phrases), self._text_width):
            raise TextEncoderError(f"{self.text_encoder_id} returned shape {tuple(emb.shape)}")
        return emb

    def _capacity(self, k: int) -> int:
        """Class rows in the head: exact on CPU; on CUDA a power of two, so graphs survive most switches."""
        if not self._use_graphs:
            return k
        current = self._net.capacity
        if current >= k and current > 0:
            return current
        return max(MIN_GRAPH_CAPACITY, 1 << (k - 1).bit_length())

    def _contrast_list(self, from_model: bool, phrases: Sequence[str]) -> list[str]:
        """Phrases scored beside every vocabulary and never reported (see `set_vocabulary`)."""
        extra = list(self.model_classes) if from_model else []
        if phrases:
            extra += normalize_vocabulary(phrases, max_phrases=4096, max_phrase_chars=self._max_phrase_chars)
        if not self.open_vocabulary:
            unknown = [p for p in extra if p not in self._class_index]
            if unknown:
                raise VocabularyError(f"{self.model_path.name} is a closed-set model: contrast phrases "
                                      f"{unknown[:5]} are not among its classes")
        return list(dict.fromkeys(extra))

    def set_vocabulary(self, phrases: Sequence[str]) -> list[str]:
        """Validate and switch to `phrases`; returns the active vocabulary. No model reload, ever.

        The contrast phrases (`contrast_classes`, `contrast_phrases`) are scored too: each box takes its
        best-scoring phrase, so a yellow ball is labelled "yellow ball", not "yellow cone", when only the cone
        was asked for. Their boxes are never reported, and they hide requested boxes they beat on the same
        object (`contrast_for` says which take part). Off by default, as in Ultralytics.

        Raises `VocabularyError` (the old vocabulary stays active) or `TextEncoderError`.
        """
        vocab = normalize_vocabulary(
            phrases, max_phrases=self._max_phrases, max_phrase_chars=self._max_phrase_chars
        )
        scored = vocab + contrast_for(vocab, self.contrast)
        if self.open_vocabulary:
            assert self._cache is not None
            emb = self._cache.get(scored, self._encode)  # the encoder sees only phrases never seen before
            with self._lock, torch.no_grad():  # buffers must stay usable outside inference mode
                self._net.set_text(emb, capacity=self._capacity(len(scored)))
                self._switch(vocab)
        else:
            unknown = [p for p in vocab if p not in self._class_index]
            if unknown:
                shown = ", ".join(self.model_classes[:20]) + (" ..." if len(self.model_classes) > 20 else "")
                raise VocabularyError(
                    f"{self.model_path.name} is a closed-set model and cannot detect {unknown}: "
                    f"its classes are {shown} (use a YOLO-World model for free phrases)"
                )
            with self._lock, torch.no_grad():  # buffers must stay usable outside inference mode
                self._net.set_class_subset([self._class_index[p] for p in scored], self._capacity(len(scored)))
                self._switch(vocab)
        return list(vocab)

    def _switch(self, vocab: list[str]) -> None:
        self._vocabulary = vocab
        if self._tracker is not None:
            self._tracker.reset()  # class indices now mean other phrases

    def reset_tracker(self) -> None:
        with self._lock:
            if self._tracker is not None:
                self._tracker.reset()

    # --- detection ------------------------------------------------------------------------------------------

    def detect(self, image: np.ndarray, *, overlap: Callable[[], None] | None = None) -> DetectionResult:
        """Detect the vocabulary in one HxWx3 uint8 BGR image (OpenCV order, as Ultralytics takes it).

        `overlap`: CPU work to run while the GPU computes this frame (a stream receives its next frame there);
        on the CPU it simply runs before the network.
        """
        bgr = _as_bgr(image)
        h, w = bgr.shape[:2]
        overlap_s = 0.0
        if overlap is not None and self.device.type != "cuda":
            overlap()
            overlap = None
        with self._lock, torch.inference_mode():
            t0 = time.perf_counter()
            if self.device.type == "cuda":
                step = self._steps.get((h, w))
                if step is None or step.version != self._net.layout_version:
                    geom = letterbox_geometry(h, w, self.imgsz, self._stride)
                    step = _CudaStep(
                        self._net, self._forward, geom, self._dtype, self._channels_last, self._use_graphs
                    )
                    self._steps[(h, w)] = step
                xyxy, best, cls = step.run(bgr, self._events)
                geom = step.geom
                if overlap is not None:
                    t_overlap = time.perf_counter()
                    overlap()
                    overlap_s = time.perf_counter() - t_overlap
                self._events[2].synchronize()
                t2 = time.perf_counter()
                pre_ms = self._events[0].elapsed_time(self._events[1])
                inf_ms = self._events[1].elapsed_time(self._events[2])
            else:
                geom = letterbox_geometry(h, w, self.imgsz, self._stride)
                x = letterbox_numpy(bgr, geom, self._dtype)
                if not self._channels_last:
                    x = x.contiguous()
                t1 = time.perf_counter()
                xyxy, best, cls = self._forward(x)
                t2 = time.perf_counter()
                pre_ms, inf_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
            detections = self._postprocess(xyxy, best, cls, geom)
            t3 = time.perf_counter()
            vocab = list(self._vocabulary)
        return DetectionResult(
            detections=detections,
            vocabulary=vocab,
            image_width=w,
            image_height=h,
            timings_ms={
                "preprocess": pre_ms,
                "inference": inf_ms,
                "postprocess": (t3 - t2) * 1e3,
                "total": (t3 - t0 - overlap_s) * 1e3,
            },
        )

    def _without_contrast(self, rows: torch.Tensor) -> torch.Tensor:
        """Drop contrast rows, and requested rows that a higher-scoring contrast box overlaps (IoU >= iou).

        `rows` are (x1, y1, x2, y2, score, class) in the source image, highest score first.
        """
        if not self.contrast:
            return rows
        from torchvision.ops import box_iou

        asked = rows[:, 5] < len(self._vocabulary)
        mine, other = rows[asked], rows[~asked]
        if len(mine) and len(other):
            overlap = box_iou(mine[:, :4], other[:, :4]) >= self._iou
            beaten = (overlap & (other[None, :, 4] > mine[:, None, 4])).any(1)
            mine = mine[~beaten]
        return mine

    def _postprocess(
        self, xyxy: torch.Tensor, best: torch.Tensor, cls: torch.Tensor, geom: Letterbox
    ) -> list[Detection]:
        from torchvision.ops import batched_nms

        boxes, scores, classes = xyxy[0].T, best[0].float(), cls[0]
        keep = (scores > self._conf).nonzero().squeeze(1)
        if keep.numel() > MAX_NMS_CANDIDATES:
            keep = keep[scores[keep].topk(MAX_NMS_CANDIDATES).indices]
        if self._net.end2end:  # NMS-free heads (YOLOv10/YOLO26 style): best scores only
            keep = keep[scores[keep].argsort(descending=True)]
        else:
            keep = keep[batched_nms(boxes[keep], scores[keep], classes[keep], self._iou)]
        rows = torch.cat(
            [boxes_to_source(boxes[keep].clone(), geom), scores[keep, None], classes[keep, None].float()], 1
        )
        rows = self._without_contrast(rows)[: self._max_det].cpu().numpy()
        ids: list[int | None] = [None] * len(rows)
        if self._tracker is not None:
            ids = self._tracker.update(rows[:, :4], rows[:, 4], rows[:, 5])
        vocab = self._vocabulary
        return [
            Detection(
                float(r[0]),
                float(r[1]),
                float(r[2]),
                float(r[3]),
                float(r[4]),
                vocab[int(r[5])],
                int(r[5]),
                tid,
            )
            for r, tid in zip(rows, ids, strict=True)
        ]

    # --- lifetime -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the network and graphs; frees GPU memory (the encoder and caches go too)."""
        with self._lock:
            self._steps.clear()
            for attr in ("_net", "_forward", "_encoder"):
                if hasattr(self, attr):
                    delattr(self, attr)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.empty_cache()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
