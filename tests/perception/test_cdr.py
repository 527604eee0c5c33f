"""Images read straight from CDR bytes (what detector_node decodes), against hand-built serializations.

The same reader is checked against rclpy's own serializer in tests/ros/test_detector_node.py.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from lookout.perception.cdr import UnsupportedCdr, read_compressed_image, read_image
from lookout.perception.errors import ImageConversionError
from lookout.perception.images import image_msg_to_bgr8


def _cdr(fields: list[tuple[str, object]], big_endian: bool = False) -> bytes:
    """Serialize (kind, value) fields as classic CDR: alignment counts from after the 4-byte header."""
    order = ">" if big_endian else "<"
    body = bytearray()

    def align(n: int) -> None:
        body.extend(b"\xee" * (-len(body) % n))  # padding bytes carry garbage on the wire too

    for kind, value in fields:
        if kind in ("i32", "u32"):
            align(4)
            body += struct.pack(order + ("i" if kind == "i32" else "I"), value)
        elif kind == "u8":
            body += bytes([value])
        elif kind == "str":
            align(4)
            raw = value.encode() + b"\0"
            body += struct.pack(order + "I", len(raw)) + raw
        elif kind == "bytes":
            align(4)
            body += struct.pack(order + "I", len(value)) + value
    return (b"\x00\x00" if big_endian else b"\x00\x01") + b"\x00\x00" + bytes(body)


def _image(pixels: np.ndarray, encoding: str, *, step: int | None = None, frame_id: str = "cam",
           big_endian: bool = False, sec: int = 12, nanosec: int = 345) -> bytes:  # fmt: skip
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1).view(np.uint8)
    step = step or row.shape[1]
    data = np.zeros((h, step), np.uint8)
    data[:, : row.shape[1]] = row
    return _cdr([("i32", sec), ("u32", nanosec), ("str", frame_id), ("u32", h), ("u32", w), ("str", encoding),
                 ("u8", 0), ("u32", step), ("bytes", data.tobytes())], big_endian)  # fmt: skip


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("frame_id", ["", "cam", "camera_optical_frame"])  # string lengths move the alignment
def test_header_and_pixels_come_back_exactly(big_endian, frame_id):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    header, fields = read_image(_image(bgr, "bgr8", frame_id=frame_id, big_endian=big_endian, sec=-3))
    assert (header.sec, header.nanosec, header.frame_id) == (-3, 345, frame_id)
    assert (fields.height, fields.width, fields.encoding, fields.step) == (5, 7, "bgr8", 21)
    np.testing.assert_array_equal(image_msg_to_bgr8(fields), bgr)


def test_padded_rows_and_other_encodings_convert_like_messages():
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    _, fields = read_image(_image(rgb, "rgb8", step=24))
    np.testing.assert_array_equal(image_msg_to_bgr8(fields), rgb[:, :, ::-1])


def test_pixels_are_a_view_over_the_bytes_not_a_copy():
    raw = _image(np.zeros((8, 8, 3), np.uint8), "bgr8")
    _, fields = read_image(raw)
    assert isinstance(fields.data, memoryview) and fields.data.obj is raw


def test_truncated_bytes_say_which_field_is_cut():
    raw = _image(np.zeros((4, 4, 3), np.uint8), "bgr8")
    with pytest.raises(ImageConversionError, match="truncated in data"):
        read_image(raw[:-5])
    with pytest.raises(ImageConversionError, match="truncated in encoding"):
        read_image(raw[:34])
    with pytest.raises(ImageConversionError, match="too short"):
        read_image(b"\x00")


def test_a_wrong_step_still_gets_the_conversion_error():
    raw = _image(np.zeros((4, 4, 3), np.uint8), "bgr8", step=12)
    _, fields = read_image(raw)
    bad = type(fields)(fields.height, fields.width, fields.encoding, False, 10, fields.data)
    with pytest.raises(ImageConversionError, match="step 10 is smaller"):
        image_msg_to_bgr8(bad)


def test_other_encapsulations_are_left_to_the_middleware_deserializer():
    raw = bytearray(_image(np.zeros((2, 2, 3), np.uint8), "bgr8"))
    raw[:2] = b"\x00\x07"  # XCDR2 little-endian
    with pytest.raises(UnsupportedCdr):
        read_image(bytes(raw))


def test_compressed_image_fields():
    raw = _cdr([("i32", 1), ("u32", 2), ("str", "xy"), ("str", "jpeg"), ("bytes", b"abc")])
    header, fields = read_compressed_image(raw)
    assert (header.sec, header.nanosec, header.frame_id, fields.format, bytes(fields.data)) == (1, 2, "xy", "jpeg", b"abc")
