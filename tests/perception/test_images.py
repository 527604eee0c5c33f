"""ROS image encodings <-> numpy, without ROS: round trips, channel orders, padding, endianness, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookout.perception.errors import ImageConversionError
from lookout.perception.images import (
    ENCODINGS,
    ImageFields,
    array_to_image,
    decode_compressed,
    encode_compressed,
    image_msg_to_bgr8,
    image_to_array,
    to_bgr8,
)


@st.composite
def images(draw):
    enc = draw(st.sampled_from(sorted(ENCODINGS)))
    dtype, channels = ENCODINGS[enc]
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    shape = (h, w) if channels == 1 else (h, w, channels)
    hi = np.iinfo(dtype).max
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, hi, shape, dtype=dtype, endpoint=True)
    padding = draw(st.integers(0, 7))
    big = draw(st.booleans())
    return enc, pixels, padding, big


def _fields(fields: ImageFields) -> dict:
    return {k: getattr(fields, k) for k in ("height", "width", "encoding", "is_bigendian", "step", "data")}


@settings(max_examples=150, deadline=None)
@given(images())
def test_every_encoding_round_trips_with_padding_and_either_byte_order(case):
    enc, pixels, padding, big = case
    row = pixels.shape[1] * pixels.itemsize * (1 if pixels.ndim == 2 else pixels.shape[2])
    fields = array_to_image(pixels, enc, step=row + padding, is_bigendian=big)
    assert fields.step == row + padding and len(fields.data) == fields.step * fields.height
    back = image_to_array(**_fields(fields))
    assert back.dtype == pixels.dtype and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)
    bgr = to_bgr8(back, enc)
    assert bgr.shape == (*pixels.shape[:2], 3) and bgr.dtype == np.uint8 and bgr.flags.writeable


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 24), st.integers(1, 24), st.integers(0, 2**32 - 1))
def test_png_round_trip_is_lossless(h, w, seed):
    bgr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_compressed(encode_compressed(bgr, "png"), "png"), bgr)


def test_channel_orders_and_alpha_become_bgr():
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8)
    np.testing.assert_array_equal(to_bgr8(rgb, "rgb8"), rgb[..., ::-1])
    rgba = np.concatenate([rgb, np.full((1, 2, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_bgr8(rgba, "rgba8"), rgb[..., ::-1])
    bgra = np.concatenate([rgb[..., ::-1], np.full((1, 2, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_bgr8(bgra, "bgra8"), rgb[..., ::-1])
    mono = np.array([[0, 200]], dtype=np.uint8)
    np.testing.assert_array_equal(to_bgr8(mono, "mono8"), np.repeat(mono[..., None], 3, axis=2))
    mono16 = np.array([[0x1234, 0xFF00]], dtype=np.uint16)
    np.testing.assert_array_equal(to_bgr8(mono16, "mono16")[..., 0], [[0x12, 0xFF]])


def test_big_endian_mono16_bytes_are_read_most_significant_first():
    data = bytes([0x12, 0x34, 0xAB, 0xCD, 0, 0])  # 2 pixels + 2 bytes row padding
    big = image_to_array(height=1, width=2, encoding="mono16", is_bigendian=1, step=6, data=data)
    little = image_to_array(height=1, width=2, encoding="mono16", is_bigendian=0, step=6, data=data)
    assert big.tolist() == [[0x1234, 0xABCD]] and little.tolist() == [[0x3412, 0xCDAB]]


def test_message_like_objects_and_opencv_aliases_convert():
    class Msg:  # anything with sensor_msgs/Image's fields
        height, width, encoding, is_bigendian, step = 1, 2, "8UC3", 0, 6
        data = bytearray([1, 2, 3, 4, 5, 6])

    np.testing.assert_array_equal(image_msg_to_bgr8(Msg()), [[[1, 2, 3], [4, 5, 6]]])


def test_jpeg_and_grey_png_decode_to_bgr():
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))
    assert decode_compressed(encode_compressed(grey, "png"), "png").shape == (8, 16, 3)
    bgr = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    out = decode_compressed(encode_compressed(bgr, "jpeg", quality=95), "jpeg")
    assert out.shape == bgr.shape and np.abs(out.astype(int) - bgr).max() <= 3


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (
            dict(height=2, width=2, encoding="yuv422", is_bigendian=0, step=4, data=bytes(8)),
            "unsupported image encoding",
        ),
        (dict(height=0, width=4, encoding="rgb8", is_bigendian=0, step=12, data=b""), "zero-size"),
        (dict(height=2, width=0, encoding="mono8", is_bigendian=0, step=0, data=b""), "zero-size"),
        (
            dict(height=2, width=4, encoding="rgb8", is_bigendian=0, step=8, data=bytes(16)),
            "step 8 is smaller",
        ),
        (dict(height=2, width=4, encoding="rgb8", is_bigendian=0, step=12, data=bytes(23)), "23 bytes"),
        (dict(height=2, width=2, encoding="mono16", is_bigendian=0, step=4, data=bytes(9)), "step x height"),
    ],
)
def test_bad_images_raise_a_clear_error(fields, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_array(**fields)


def test_bad_compressed_payloads_raise_a_clear_error():
    with pytest.raises(ImageConversionError, match="no data"):
        decode_compressed(b"", "jpeg")
    with pytest.raises(ImageConversionError, match="cannot decode"):
        decode_compressed(b"definitely not a jpeg", "jpeg")
    with pytest.raises(ImageConversionError, match="unsupported compressed format"):
        encode_compressed(np.zeros((2, 2, 3), np.uint8), "webm")


def test_array_to_image_checks_shape_and_dtype():
    with pytest.raises(ImageConversionError, match="needs dtype"):
        array_to_image(np.zeros((2, 2), np.uint8), "mono16")
    with pytest.raises(ImageConversionError, match="needs shape"):
        array_to_image(np.zeros((2, 2, 3), np.uint8), "rgba8")
