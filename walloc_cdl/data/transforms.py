"""Input transforms the encode job can write instead of a codec's latents: the equal-dimension baselines.

``PixelTransform`` has the part of a codec's interface the encode job and ``codec_block`` use (``channels``,
``ndim``, ``multiple``, ``encode``, ``config``), so a comparison's baselines go through the same job,
shards and loader as its latents:

* images: the whole image resized by 1/√r per side (antialiased bicubic; never a crop), stored uint8;
* audio: decimated by the integer r (windowed-sinc low-pass), stored as 16-bit PCM;
* ``decode_with`` a codec: its round trip (encode, decode) at full resolution, what a pixel model learns
  from the reconstruction;
* ``restore=True``: reduced, then resized back to full resolution (what a resize keeps, at full size).

Usage::

    down16 = PixelTransform(channels=3, reduction=16)              # 256² RGB -> 64² RGB uint8
    encode_dataset(source, "shards/down-16x", down16, "down-16x")
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import torch
import torch.nn as nn

from ..baselines import downsample_images, resample_audio, upsample_audio, upsample_images


class PixelTransform(nn.Module):
    """Pixels (or samples) reduced by resolution, with the interface the encode job expects of a codec."""

    stores_pixels = True

    def __init__(self, channels: int, reduction: float = 1, ndim: int = 2, decode_with: nn.Module | None = None,
                 restore: bool = False):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        if ndim == 2 and reduction != 1:
            side = math.sqrt(reduction)
            if side != int(side):
                raise ValueError(f"image reduction {reduction:g} is not a square (4, 16, 64, ...)")
        self.channels, self.reduction, self.ndim = int(channels), float(reduction), int(ndim)
        self.codec = decode_with.eval() if decode_with is not None else None
        self.restore = bool(restore)
        if decode_with is not None and (reduction != 1 or restore):
            raise ValueError("decode_with gives the codec's round trip at full resolution: leave reduction at 1")

    @property
    def factor(self) -> int:
        """Input size divisor per axis: √r for images, r for audio."""
        return int(math.sqrt(self.reduction)) if self.ndim == 2 else int(self.reduction)

    @property
    def stride(self) -> int:
        """How much smaller than the input the stored values are per axis."""
        return 1 if self.restore else self.factor

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this (the codec's round trip needs 2^J)."""
        return 2 ** self.codec.J if self.codec is not None else self.factor

    @property
    def latent_bits(self) -> int:
        return 8 if self.ndim == 2 else 16

    @property
    def config(self) -> dict[str, Any]:
        cfg = {"kind": "pixels", "channels": self.channels, "reduction": self.reduction, "ndim": self.ndim,
               "stride": self.stride, **({"restore": True} if self.restore else {})}
        if self.codec is not None:
            from ..checkpoints import state_dict_sha256

            cfg["decoded_by"] = {"config": dict(self.codec.config), "weights_sha256": state_dict_sha256(self.codec)}
        return cfg

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels or [-0.5, 0.5] floats (audio: [-0.5, 0.5]) -> stored values: uint8 images, int16 PCM."""
        if self.ndim == 2:
            if self.codec is not None:
                y = self.codec.decode(self.codec.encode(x)).clamp(-0.5, 0.5)
                return ((y + 0.5) * 255).round().to(torch.uint8)
            u = x if x.dtype == torch.uint8 else ((x.float() + 0.5) * 255).round().clamp(0, 255).to(torch.uint8)
            small = downsample_images(u, self.reduction)
            return upsample_images(small, u.shape[-2:]) if self.restore else small
        a = x.float() * 2                                                   # codec range -> [-1, 1]
        if self.codec is not None:
            a = self.codec.decode(self.codec.encode(x)).float() * 2
        r = int(self.reduction)
        y = resample_audio(a, r) if r != 1 else a
        if self.restore:
            y = upsample_audio(y, r, a.shape[-1])
        return (y.clamp(-1, 1) * 32767).round().to(torch.int16)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction:g}, ndim={self.ndim}, restore={self.restore}"
