"""Equal-dimension baselines: what a model sees if the input is shrunk by resolution instead of WaLLoC.

At dimensionality reduction ``r`` an image (C, H, W) becomes (C, H/√r, W/√r) by antialiased bicubic
resizing, and audio (C, T) becomes (C, T/r) by windowed-sinc low-pass filtering and decimation.  Both
run batched on the tensor's device, so they slot into the same on-the-fly pipeline as the codec.

Usage::

    x_small = downsample_images(x, 16)   # (B, 3, 256, 256) -> (B, 3, 64, 64)
    a_small = resample_audio(a, 20)      # (B, 2, 32768) -> (B, 2, 1638)
    x_back = upsample_images(x_small, (256, 256))   # bicubic back: what survives the resize
    a_back = upsample_audio(a_small, 20, 32768)      # band-limited interpolation back
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F


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


class Downsample(nn.Module):
    """The baseline as a module: images resized by √r per side, audio decimated by r."""

    def __init__(self, r: float, ndim: int = 2):
        super().__init__()
        self.r, self.ndim = r, ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample_images(x, self.r) if self.ndim == 2 else resample_audio(x, int(self.r))

    def extra_repr(self) -> str:
        return f"r={self.r}, ndim={self.ndim}"
