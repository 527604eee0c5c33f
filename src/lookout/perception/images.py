"""Pixels from ROS image messages and back, with numpy and OpenCV only (no cv_bridge, no ROS import).

Works on the plain fields of `sensor_msgs/Image` (height, width, encoding, is_bigendian, step, data) and
`sensor_msgs/CompressedImage` (format, data), so it is testable without ROS and any object with those
attributes can be passed. PyPI's cv-bridge is broken under NumPy 2; this module replaces the part we need.

Conventions: `image_to_array` returns the image in its own layout (rgb8 stays RGB, mono16 stays uint16 in
native byte order); `to_bgr8` turns any supported layout into HxWx3 uint8 BGR, what the detector and OpenCV
expect.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from lookout.perception.errors import ImageConversionError

# encoding -> (numpy dtype of one channel, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
}
# OpenCV-style names some drivers publish; they mean the same memory layout.
ALIASES = {"8UC1": "mono8", "8UC3": "bgr8", "8UC4": "bgra8", "16UC1": "mono16"}


@dataclass(frozen=True, slots=True)
class ImageFields:
    """The fields of a `sensor_msgs/Image`, without ROS."""

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data: bytes


def canonical_encoding(encoding: str) -> str:
    enc = ALIASES.get(encoding, encoding)
    if enc not in ENCODINGS:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}: supported are {', '.join(ENCODINGS)} "
            f"(and {', '.join(ALIASES)})"
        )
    return enc


def _as_uint8_buffer(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype != np.uint8 else data.reshape(-1)
    if isinstance(data, bytes | bytearray | memoryview | array.array):
        return np.frombuffer(data, dtype=np.uint8)
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ImageConversionError(f"image data of type {type(data).__name__} is not a byte buffer") from exc


def image_to_array(
    *, height: int, width: int, encoding: str, is_bigendian: bool | int, step: int, data: Any
) -> np.ndarray:
    """Pixels of an Image message in their own layout: HxW (mono) or HxWxC, native byte order.

    Rows may carry padding (`step` larger than width x bytes per pixel); it is dropped. Raises
    `ImageConversionError` naming what is wrong, never returns garbage.
    """
    enc = canonical_encoding(encoding)
    dtype, channels = ENCODINGS[enc]
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"zero-size image ({width}x{height}): nothing to detect in")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than one row of a {width}-pixel {enc} image ({row_bytes} bytes)"
        )
    buf = _as_uint8_buffer(data)
    if buf.size != step * height:
        raise ImageConversionError(
            f"data has {buf.size} bytes but step x height = {step} x {height} = {step * height}"
        )
    rows = buf.reshape(height, step)[:, :row_bytes]
    if dtype.itemsize > 1:
        wire = dtype.newbyteorder(">" if is_bigendian else "<")
        pixels = np.ascontiguousarray(rows).view(wire).astype(dtype, copy=False)
    else:
        pixels = rows
    shape = (height, width) if channels == 1 else (height, width, channels)
    return pixels.reshape(shape)


def image_msg_to_array(msg: Any) -> np.ndarray:
    """`image_to_array` on anything with the fields of sensor_msgs/Image."""
    return image_to_array(
        height=msg.height,
        width=msg.width,
        encoding=msg.encoding,
        is_bigendian=msg.is_bigendian,
        step=msg.step,
        data=msg.data,
    )


def array_to_image(
    pixels: np.ndarray, encoding: str, *, step: int | None = None, is_bigendian: bool = False
) -> ImageFields:
    """The Image fields for `pixels` laid out as `encoding`; `step` larger than a row adds zero padding."""
    enc = canonical_encoding(encoding)
    dtype, channels = ENCODINGS[enc]
    expected_ndim = 2 if channels == 1 else 3
    if pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        raise ImageConversionError(
            f"{enc} needs shape (H, W{'' if channels == 1 else f', {channels}'}), got {pixels.shape}"
        )
    if pixels.dtype != dtype:
        raise ImageConversionError(f"{enc} needs dtype {dtype}, got {pixels.dtype}")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise ImageConversionError(f"zero-size image ({width}x{height})")
    row_bytes = width * channels * dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is smaller than one row ({row_bytes} bytes)")
    wire = dtype.newbyteorder(">" if is_bigendian else "<") if dtype.itemsize > 1 else dtype
    rows = np.ascontiguousarray(pixels, dtype=wire).view(np.uint8).reshape(height, row_bytes)
    if step > row_bytes:
        rows = np.concatenate([rows, np.zeros((height, step - row_bytes), np.uint8)], axis=1)
    return ImageFields(height, width, enc, bool(is_bigendian), step, rows.tobytes())


def to_bgr8(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Any supported layout as a writable HxWx3 uint8 BGR array (mono16 keeps its top 8 bits)."""
    enc = canonical_encoding(encoding)
    if enc == "bgr8":
        return np.array(pixels, dtype=np.uint8, copy=True, order="C")
    if enc == "rgb8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
    if enc == "rgba8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2BGR)
    if enc == "bgra8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGRA2BGR)
    if enc == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2BGR)


def image_msg_to_bgr8(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (or anything with its fields) as HxWx3 uint8 BGR."""
    return to_bgr8(image_msg_to_array(msg), msg.encoding)


def bgr8_to_image(bgr: np.ndarray) -> ImageFields:
    return array_to_image(bgr, "bgr8")


def decode_compressed(data: Any, fmt: str = "") -> np.ndarray:
    """A CompressedImage payload (jpeg, png, ...) as HxWx3 uint8 BGR; `fmt` is only used in messages."""
    buf = _as_uint8_buffer(data)
    if buf.size == 0:
        raise ImageConversionError(f"compressed image ({fmt or 'unknown format'}) has no data")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageConversionError(
            f"cannot decode compressed image of format {fmt!r} ({buf.size} bytes): OpenCV reads jpeg and png"
        )
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def compressed_msg_to_bgr8(msg: Any) -> np.ndarray:
    return decode_compressed(msg.data, getattr(msg, "format", ""))


def encode_compressed(bgr: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode a BGR (or mono) image as jpeg or png bytes, the payload of a CompressedImage."""
    fmt = fmt.lower()
    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise ImageConversionError(f"unsupported compressed format {fmt!r}: use jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {bgr.shape} {bgr.dtype} image as {fmt}")
    return buf.tobytes()
