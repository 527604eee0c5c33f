"""Letterboxing on the tensor (on the GPU when the model is there) and mapping boxes back to the image.

Same geometry as Ultralytics' `LetterBox(auto=True)` used by `predict`: keep the aspect ratio, pad each side
with grey (114) to a multiple of the stride, so boxes agree with `predict`'s. On CUDA it is done with torch ops
on the device (only the raw uint8 frame crosses PCIe, and it can be captured in a CUDA graph); on the CPU with
OpenCV, whose uint8 resize is several times faster than a float interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PAD_VALUE = 114 / 255.0


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where a source image of `src_h` x `src_w` lands in the network input of `dst_h` x `dst_w`."""

    src_h: int
    src_w: int
    new_h: int  # resized image, before padding
    new_w: int
    top: int
    bottom: int
    left: int
    right: int

    @property
    def dst_h(self) -> int:
        return self.new_h + self.top + self.bottom

    @property
    def dst_w(self) -> int:
        return self.new_w + self.left + self.right


def round_imgsz(imgsz: int, stride: int = 32) -> int:
    """Network input side: the next multiple of the model stride (what Ultralytics' check_imgsz does)."""
    return max(stride, math.ceil(int(imgsz) / stride) * stride)


def letterbox_geometry(src_h: int, src_w: int, imgsz: int, stride: int = 32, auto: bool = True) -> Letterbox:
    """Ultralytics' LetterBox arithmetic (scale up allowed, centred, minimal padding when `auto`)."""
    r = min(imgsz / src_h, imgsz / src_w)
    new_w, new_h = max(round(src_w * r), 1), max(round(src_h * r), 1)
    dw, dh = imgsz - new_w, imgsz - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    return Letterbox(
        src_h=src_h,
        src_w=src_w,
        new_h=new_h,
        new_w=new_w,
        top=round(dh - 0.1),
        bottom=round(dh + 0.1),
        left=round(dw - 0.1),
        right=round(dw + 0.1),
    )


def letterbox_tensor(bgr: torch.Tensor, geom: Letterbox, dtype: torch.dtype) -> torch.Tensor:
    """(H, W, 3) uint8 BGR on any device -> (1, 3, dst_h, dst_w) RGB in [0, 1] of `dtype`."""
    x = bgr.permute(2, 0, 1).flip(0).unsqueeze(0).to(dtype).mul_(1.0 / 255.0)
    if (geom.new_h, geom.new_w) != (geom.src_h, geom.src_w):
        x = F.interpolate(x, size=(geom.new_h, geom.new_w), mode="bilinear", align_corners=False)
    if geom.top or geom.bottom or geom.left or geom.right:
        x = F.pad(x, (geom.left, geom.right, geom.top, geom.bottom), value=PAD_VALUE)
    return x.contiguous()


def letterbox_numpy(bgr: np.ndarray, geom: Letterbox, dtype: torch.dtype) -> torch.Tensor:
    """CPU twin of `letterbox_tensor` with OpenCV (SIMD uint8 resize, exactly what `predict` does).

    Returns a (1, 3, dst_h, dst_w) tensor whose memory is NHWC (channels_last), as the conv layers prefer.
    """
    img = bgr
    if (geom.new_h, geom.new_w) != (geom.src_h, geom.src_w):
        img = cv2.resize(img, (geom.new_w, geom.new_h), interpolation=cv2.INTER_LINEAR)
    if geom.top or geom.bottom or geom.left or geom.right:
        img = cv2.copyMakeBorder(
            img, geom.top, geom.bottom, geom.left, geom.right, cv2.BORDER_CONSTANT, value=(114, 114, 114)
        )
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).to(dtype).mul_(1.0 / 255.0)


def boxes_to_source(boxes: torch.Tensor, geom: Letterbox) -> torch.Tensor:
    """(N, 4) xyxy boxes in network-input pixels -> source-image pixels, clipped to the image (in place)."""
    gain_x, gain_y = geom.new_w / geom.src_w, geom.new_h / geom.src_h
    boxes[:, 0::2] = ((boxes[:, 0::2] - geom.left) / gain_x).clamp_(0, geom.src_w)
    boxes[:, 1::2] = ((boxes[:, 1::2] - geom.top) / gain_y).clamp_(0, geom.src_h)
    return boxes
