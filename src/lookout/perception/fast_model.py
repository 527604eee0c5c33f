"""The detector's inference graph: a fused Ultralytics model with the vocabulary folded into its head.

Ultralytics' WorldModel re-derives everything that depends on the text on every frame: the guide of each
C2fAttn block (a Linear on the text features) and the normalised text of each contrastive head. Here those
are computed once per vocabulary change:

- C2fAttn: `gl(text)` reshaped per head and pre-scaled by 1/sqrt(head channels) (`_guide_*` buffers).
- BNContrastiveHead: BatchNorm (eval), the L2-normalised text, `exp(logit_scale)` and the bias are all affine,
  so together with the last 1x1 conv of `cv3` they fold into ONE 1x1 conv from the cv3 features to the class
  logits (`_cls_w*`, `_cls_b*` buffers), which also skips the 512-d embedding when the vocabulary is small.
- Closed-set Detect heads: the class conv's rows are sliced to the vocabulary's classes.

The class dimension can be padded to a fixed capacity (rows that never win: repeated guides leave the max of
MaxSigmoidAttn unchanged, padded classes get a -1e4 logit), so a CUDA graph captured once survives vocabulary
switches: new values are copied into the same buffers. The output is decoded xyxy boxes in network-input
pixels and per-anchor best score and class, the exact quantities Ultralytics' NMS starts from.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

NEG_LOGIT = -1.0e4  # sigmoid() == 0 in fp16 and fp32; finite, so no inf * 0 = NaN anywhere


@functools.cache
def _ultra() -> SimpleNamespace:
    """Ultralytics classes, imported lazily (the import costs about a second) and looked up once."""
    from ultralytics.nn.modules.block import BNContrastiveHead, C2fAttn, ImagePoolingAttn
    from ultralytics.nn.modules.head import Detect, WorldDetect
    from ultralytics.utils.tal import dist2bbox

    return SimpleNamespace(
        BNContrastiveHead=BNContrastiveHead,
        C2fAttn=C2fAttn,
        ImagePoolingAttn=ImagePoolingAttn,
        Detect=Detect,
        WorldDetect=WorldDetect,
        dist2bbox=dist2bbox,
    )


def is_supported_head(head: nn.Module) -> bool:
    u = _ultra()
    return type(head) in (u.Detect, u.WorldDetect)


class FastDetectNet(nn.Module):
    """Inference-only forward of a fused DetectionModel/WorldModel with a folded vocabulary."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        u = _ultra()
        self.layers = model.model
        self.save = set(model.save)
        head = self.layers[-1]
        if not is_supported_head(head):
            raise TypeError(f"unsupported detection head {type(head).__name__}")
        self.world = isinstance(head, u.WorldDetect)
        self.end2end = bool(getattr(head, "end2end", False))
        self.box_heads = head.one2one_cv2 if self.end2end else head.cv2
        self.cls_heads = head.one2one_cv3 if self.end2end else head.cv3
        self.nl, self.reg_max = head.nl, head.reg_max
        self.with_bn = self.world and isinstance(head.cv4[0], u.BNContrastiveHead)
        # Text flows unchanged into every C2fAttn before the first ImagePoolingAttn (v1 World models update the
        # text with image features there; v2 has none): those guides fold, later ones are computed per frame.
        pool_at = next((m.i for m in self.layers if isinstance(m, u.ImagePoolingAttn)), len(self.layers))
        self._attn_layers = [m for m in self.layers if isinstance(m, u.C2fAttn)]
        self._folded_attn = {m.i for m in self._attn_layers if m.i < pool_at}
        self.layout_version = 0
        self.capacity = 0  # classes the buffers hold (vocabulary size, or more with padding)
        self.num_classes = 0
        self._anchors: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # --- vocabulary ------------------------------------------------------------------------------------------

    def _set_buffer(self, name: str, value: torch.Tensor) -> None:
        """Copy into the existing buffer when the shape allows (keeps CUDA graphs valid), else replace it."""
        old = self._buffers.get(name)
        if (
            old is not None
            and old.shape == value.shape
            and old.dtype == value.dtype
            and old.device == value.device
        ):
            old.copy_(value)
        else:
            self.register_buffer(name, value.contiguous(), persistent=False)
            self.layout_version += 1  # captured CUDA graphs point at the old buffer: they must be recaptured

    def _ref(self) -> torch.Tensor:
        return next(self.box_heads.parameters())

    @torch.no_grad()
    def set_text(self, text: torch.Tensor, capacity: int | None = None) -> None:
        """Fold (K, D) text embeddings into the head (World models)."""
        assert self.world, "set_text is for YOLO-World models; closed-set models use set_class_subset"
        ref = self._ref()
        k = text.shape[0]
        capacity = max(capacity or k, k)
        text = text.to(device=ref.device, dtype=torch.float32)
        # Pad by repeating the first phrase: max over classes in MaxSigmoidAttn ignores duplicates.
        idx = torch.cat([torch.arange(k), torch.zeros(capacity - k, dtype=torch.long)]).to(ref.device)
        padded = text[idx]
        self._set_buffer("_text", padded[None].to(ref.dtype))
        for m in self._attn_layers:
            if m.i in self._folded_attn:
                self._set_buffer(f"_guide_{m.i}", self._guide(m.attn, padded[None]).to(ref.dtype))
        head = self.layers[-1]
        w_hat = F.normalize(text, dim=-1, p=2)  # (K, E)
        for i in range(self.nl):
            ch = head.cv4[i]
            scale = ch.logit_scale.float().exp()
            if self.with_bn:
                bn, last = ch.norm, self.cls_heads[i][-1]
                g = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
                beta = bn.bias.float() - g * bn.running_mean.float()
                m_ = scale * w_hat * g[None]  # (K, E)
                a = last.weight.float().flatten(1)  # (E, C3)
                weight = m_ @ a  # (K, C3)
                bias = m_ @ last.bias.float() + scale * (w_hat @ beta) + ch.bias.float()
            else:  # ContrastiveHead: per-pixel L2 norm of the image embedding stays in the forward
                weight = scale * w_hat
                bias = ch.bias.float().expand(k).clone()
            self._store_class_conv(i, weight, bias, capacity)
        self.num_classes, self.capacity = k, capacity

    @torch.no_grad()
    def set_class_subset(self, indices: list[int], capacity: int | None = None) -> None:
        """Keep only these classes of a closed-set head, in this order (class i of the output = indices[i])."""
        assert not self.world
        k = len(indices)
        capacity = max(capacity or k, k)
        sel = torch.tensor(indices, dtype=torch.long, device=self._ref().device)
        for i in range(self.nl):
            last = self.cls_heads[i][-1]
            self._store_class_conv(i, last.weight.float().flatten(1)[sel], last.bias.float()[sel], capacity)
        self.num_classes, self.capacity = k, capacity

    def _store_class_conv(self, level: int, weight: torch.Tensor, bias: torch.Tensor, capacity: int) -> None:
        ref = self._ref()
        k, c_in = weight.shape
        w = torch.zeros(capacity, c_in, 1, 1, device=ref.device, dtype=torch.float32)
        b = torch.full((capacity,), NEG_LOGIT, device=ref.device, dtype=torch.float32)
        w[:k, :, 0, 0] = weight
        b[:k] = bias
        self._set_buffer(f"_cls_w{level}", w.to(ref.dtype))
        self._set_buffer(f"_cls_b{level}", b.to(ref.dtype))

    @staticmethod
    def _guide(attn: nn.Module, text: torch.Tensor) -> torch.Tensor:
        """MaxSigmoidAttnBlock's per-frame text work, done once: (B, K, gc) -> (B, nh, hc, K) / sqrt(hc)."""
        g = F.linear(text, attn.gl.weight.to(text.dtype), attn.gl.bias.to(text.dtype))
        b, k = g.shape[:2]
        return (g.view(b, k, attn.nh, attn.hc).permute(0, 2, 3, 1) / attn.hc**0.5).contiguous()

    # --- forward ---------------------------------------------------------------------------------------------

    def _c2f_attn(self, m: nn.Module, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        y = list(m.cv1(x).chunk(2, 1))
        y.extend(block(y[-1]) for block in m.m)
        a = m.attn
        bs, _, h, w = y[-1].shape
        embed = a.ec(y[-1]) if a.ec is not None else y[-1]
        embed = embed.reshape(bs, a.nh, a.hc, h * w).transpose(2, 3)  # (B, nh, HW, hc)
        aw = (embed @ guide).amax(dim=-1).view(bs, a.nh, h, w)
        aw = (aw + a.bias.view(1, -1, 1, 1)).sigmoid() * a.scale
        out = a.proj_conv(y[-1]).view(bs, a.nh, -1, h, w) * aw.unsqueeze(2)
        y.append(out.view(bs, -1, h, w))
        return m.cv2(torch.cat(y, 1))

    def _anchor_grid(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor centres (2, A) in grid cells and strides (1, A), fp32, cached per input shape.

        Filled by the warm-up run, so CUDA graph capture never allocates here.
        """
        key = (tuple(tuple(f.shape[2:]) for f in feats), feats[0].device)
        if key not in self._anchors:
            dev = feats[0].device
            anchors, strides = [], []
            for f, stride in zip(feats, self.layers[-1].stride.tolist(), strict=True):
                h, w = f.shape[2:]
                sy, sx = torch.meshgrid(
                    torch.arange(h, device=dev, dtype=torch.float32) + 0.5,
                    torch.arange(w, device=dev, dtype=torch.float32) + 0.5,
                    indexing="ij",
                )
                anchors.append(torch.stack((sx, sy), 0).view(2, -1))
                strides.append(torch.full((1, h * w), float(stride), device=dev))
            self._anchors[key] = (torch.cat(anchors, 1), torch.cat(strides, 1))
        return self._anchors[key]

    def _class_logits(self, level: int, x: torch.Tensor) -> torch.Tensor:
        w, b = self._buffers[f"_cls_w{level}"], self._buffers[f"_cls_b{level}"]
        head = self.cls_heads[level]
        if self.world and not self.with_bn:
            return F.conv2d(F.normalize(head(x), dim=1, p=2), w, b)
        return F.conv2d(head[:-1](x), w, b)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> boxes (B, 4, A) xyxy input pixels, best score (B, A), best class (B, A)."""
        u = _ultra()
        if self.capacity == 0:
            raise RuntimeError("no vocabulary set")
        bs = x.shape[0]
        text = self._buffers["_text"].expand(bs, -1, -1) if self.world else None
        y: list[torch.Tensor | None] = []
        for m in self.layers[:-1]:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            if isinstance(m, u.C2fAttn):
                guide = self._buffers.get(f"_guide_{m.i}")
                x = self._c2f_attn(m, x, guide if guide is not None else self._guide(m.attn, text))
            elif isinstance(m, u.ImagePoolingAttn):
                text = m(x, text)
            else:
                x = m(x)
            y.append(x if m.i in self.save else None)
        head = self.layers[-1]
        feats = [x if j == -1 else y[j] for j in head.f]
        boxes = torch.cat(
            [self.box_heads[i](f).view(bs, 4 * self.reg_max, -1) for i, f in enumerate(feats)], 2
        )
        logits = torch.cat(
            [self._class_logits(i, f).view(bs, self.capacity, -1) for i, f in enumerate(feats)], 2
        )
        anchors, strides = self._anchor_grid(feats)
        # Decode in fp32: in fp16 a 640-pixel coordinate is only good to a quarter pixel.
        xyxy = u.dist2bbox(head.dfl(boxes).float(), anchors.unsqueeze(0), xywh=False, dim=1) * strides
        best, cls = logits.max(dim=1)
        return xyxy, best.sigmoid(), cls
