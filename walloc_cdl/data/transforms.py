"""Resolution reduction, and the transforms the encode job can write instead of a codec's latents.

At dimensionality reduction ``r`` an image (C, H, W) becomes (C, H/√r, W/√r) by antialiased bicubic
resizing, and audio (C, T) becomes (C, T/r) by windowed-sinc low-pass filtering and decimation
(:func:`downsample_images`, :func:`resample_audio`; back up: :func:`upsample_images`, :func:`upsample_audio`).
Both run batched on the tensor's device.

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
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..codec.model import to_pixels


# -- resolution reduction ---------------------------------------------------------------------------
def downsampled_size(size: tuple[int, int], r: float) -> tuple[int, int]:
    """(H/√r, W/√r) rounded: the size with r times fewer pixels per channel."""
    s = math.sqrt(r)
    return max(1, round(size[0] / s)), max(1, round(size[1] / s))


def downsample_images(x: torch.Tensor, r: float) -> torch.Tensor:
    """Antialiased bicubic resize of a (B, C, H, W) batch to H/√r × W/√r (r = 1 returns ``x``)."""
    if x.ndim != 4:
        raise ValueError(f"downsample_images expects (B, C, H, W), got shape {tuple(x.shape)}")
    if r == 1:
        return x
    if r < 1:
        raise ValueError(f"reduction r must be >= 1, got {r}")
    dtype = x.dtype
    y = F.interpolate(x.float(), size=downsampled_size(x.shape[-2:], r), mode="bicubic", antialias=True,
                      align_corners=False)
    return y.to(dtype) if dtype.is_floating_point else y.round().clamp(0, 255).to(dtype)


@lru_cache(maxsize=16)
def _lowpass(r: int, taps_per_side: int = 16, beta: float = 8.0) -> torch.Tensor:
    """Kaiser-windowed sinc with cutoff at the new Nyquist (0.5/r cycles per input sample)."""
    n = taps_per_side * r
    t = torch.arange(-n, n + 1, dtype=torch.float64)
    h = torch.sinc(t / r) / r * torch.kaiser_window(2 * n + 1, periodic=False, beta=beta, dtype=torch.float64)
    return (h / h.sum()).float()


def _audio_ratio(x: torch.Tensor, r: float, fn: str) -> int:
    """``r`` as an int, after checking that ``x`` is (B, C, T) and ``r`` a positive integer."""
    if x.ndim != 3:
        raise ValueError(f"{fn} expects (B, C, T), got shape {tuple(x.shape)}")
    if int(r) != r or r < 1:
        raise ValueError(f"audio reduction r must be a positive integer, got {r}")
    return int(r)


def resample_audio(x: torch.Tensor, r: int) -> torch.Tensor:
    """Decimate a (B, C, T) batch by the integer ``r``: anti-alias low-pass, then keep every r-th sample."""
    r = _audio_ratio(x, r, "resample_audio")
    if r == 1:
        return x
    B, C, T = x.shape
    h = _lowpass(r).to(x.device)
    pad = h.numel() // 2
    y = F.conv1d(F.pad(x.reshape(B * C, 1, T).float(), (pad, pad), mode="reflect" if T > pad else "constant"),
                 h.view(1, 1, -1), stride=r)
    return y.view(B, C, -1)[..., : T // r].to(x.dtype)


def upsample_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a (B, C, h, w) batch back to ``size`` (uint8 in, uint8 out, rounded and clamped)."""
    if x.ndim != 4:
        raise ValueError(f"upsample_images expects (B, C, H, W), got shape {tuple(x.shape)}")
    dtype = x.dtype
    y = F.interpolate(x.float(), size=tuple(size), mode="bicubic", align_corners=False)
    return y.to(dtype) if dtype.is_floating_point else y.round().clamp(0, 255).to(dtype)


def upsample_audio(x: torch.Tensor, r: int, length: int) -> torch.Tensor:
    """Interpolate a (B, C, T) batch decimated by ``resample_audio(.., r)`` back to ``length`` samples.

    Band-limited: zero-stuff by r, then the same low-pass with gain r, so what comes back is exactly the
    band below the decimated rate's Nyquist (no imaging), aligned with the original samples.
    """
    r = _audio_ratio(x, r, "upsample_audio")
    if r == 1:
        return x[..., :length]
    B, C, T = x.shape
    up = x.new_zeros((B * C, 1, T * r), dtype=torch.float32)
    up[..., ::r] = x.reshape(B * C, 1, T).float()
    h = _lowpass(r).to(x.device) * r
    pad = h.numel() // 2
    y = F.conv1d(F.pad(up, (pad, pad)), h.view(1, 1, -1))
    y = F.pad(y, (0, max(0, length - y.shape[-1])))[..., :length]
    return y.reshape(B, C, length).to(x.dtype)


# -- views ----------------------------------------------------------------------------------------
def spectrogram_db(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Log-magnitude STFT of one channel in dB, clamped to [-100, 0] (frequency along axis 0, low first)."""
    x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x.float().cpu()
    s = torch.stft(x, n_fft=1024, hop_length=256, window=torch.hann_window(1024), return_complex=True)
    return (20 * torch.log10(s.abs() + 1e-5)).clamp(-100, 0).numpy()


# -- transforms for the encode job ------------------------------------------------------------------


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
            from ..codec.checkpoints import state_dict_sha256

            cfg["decoded_by"] = {"config": dict(self.codec.config), "weights_sha256": state_dict_sha256(self.codec)}
        return cfg

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels or [-0.5, 0.5] floats (audio: [-0.5, 0.5]) -> stored values: uint8 images, int16 PCM."""
        if self.ndim == 2:
            if self.codec is not None:
                return to_pixels(self.codec.decode(self.codec.encode(x)))
            u = x if x.dtype == torch.uint8 else to_pixels(x)
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
