"""1D classifiers for audio: the same network on raw waveforms, resampled waveforms and WaLLoC latents.

The networks are small 1D ResNets (and a plain ConvNet) whose stem and stages each stride by a power of
two.  As for images (see :mod:`walloc_cdl.models.stems`), an input whose first ``input_stride`` of
temporal reduction is already done (latents: 2^J; audio resampled by r: the largest power of two <= r)
gets the same network with its first strides set to 1, so every variant ends with a comparable number
of steps before global pooling.

Usage::

    raw = create_audio_model("resnet1d", in_chans=2, num_classes=10)                 # (B, 2, 32768)
    lat = create_latent_audio_model("resnet1d", "stereo-20x", num_classes=10)        # (B, 27, 130)
    low = create_audio_model("resnet1d", in_chans=2, num_classes=10, input_stride=16)  # resampled by 20
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

# name -> (stem width, stem kernel, stem stride, stage widths, blocks per stage, stage strides)
AUDIO_ARCHS: dict[str, dict[str, Any]] = {
    "resnet1d": dict(width=32, kernel=7, stem_stride=4, widths=(32, 64, 128, 256), depths=(1, 1, 1, 1),
                     strides=(4, 4, 4, 4), block="basic"),
    "resnet1d_small": dict(width=16, kernel=7, stem_stride=4, widths=(16, 32, 64, 128), depths=(1, 1, 1, 1),
                           strides=(4, 4, 4, 4), block="basic"),
    "convnet1d": dict(width=32, kernel=7, stem_stride=4, widths=(32, 64, 128, 256), depths=(1, 1, 1, 1),
                      strides=(4, 4, 4, 4), block="plain"),
}


class BasicBlock1d(nn.Module):
    """ResNet basic block in 1D (two k=3 convs; strided 1×1 projection on the shortcut when needed)."""

    def __init__(self, cin: int, cout: int, stride: int, residual: bool = True):
        super().__init__()
        k = max(3, 2 * stride - 1) | 1  # wide enough that a stride-s conv sees every input step
        self.conv1 = nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.act = nn.ReLU(inplace=True)
        self.residual = residual
        self.shortcut: nn.Module = nn.Identity()
        if residual and (stride != 1 or cin != cout):
            self.shortcut = nn.Sequential(nn.AvgPool1d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                                          nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        if self.residual:
            y = y + self.shortcut(x)
        return self.act(y)


class AudioNet1d(nn.Module):
    """Stem conv -> stages of 1D blocks -> global average pool -> linear head (timm-like methods)."""

    def __init__(self, in_chans: int, num_classes: int, width: int, kernel: int, stem_stride: int,
                 widths: tuple[int, ...], depths: tuple[int, ...], strides: tuple[int, ...], block: str,
                 drop_rate: float = 0.0, magnitude: bool = False):
        super().__init__()
        # latents: a sub-band coefficient's sign follows the phase of the sound inside the band, so a shift of
        # a few samples flips it; |z| beside z gives the stem a phase-robust energy cue from the first layer
        self.magnitude = magnitude
        in_chans = 2 * in_chans if magnitude else in_chans
        # the stem never narrows: a 108-channel latent squeezed into 16 channels would lose what it carries
        width = max(width, in_chans)
        self.stem = nn.Sequential(nn.Conv1d(in_chans, width, kernel, stride=stem_stride, padding=kernel // 2,
                                            bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True))
        stages, cin = [], width
        for w, d, s in zip(widths, depths, strides):
            blocks = [BasicBlock1d(cin if i == 0 else w, w, s if i == 0 else 1, residual=block == "basic")
                      for i in range(d)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.num_features = cin
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()
        self.stride = stem_stride * math.prod(strides)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.magnitude:
            x = torch.cat([x, x.abs()], dim=1)
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean(dim=-1))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def create_audio_model(arch: str, in_chans: int, num_classes: int, input_stride: int = 1,
                       **kwargs: Any) -> AudioNet1d:
    """``arch`` (see ``AUDIO_ARCHS``) for inputs whose first ``input_stride`` of reduction is done.

    ``input_stride`` is rounded down to a power of two and removed from the stem, then from the first
    stages, so the network's remaining stride is total / input_stride.
    """
    if arch not in AUDIO_ARCHS:
        raise ValueError(f"unknown audio arch {arch!r}; choose from {sorted(AUDIO_ARCHS)}")
    cfg = {**AUDIO_ARCHS[arch], **kwargs}
    remaining = 2 ** int(math.floor(math.log2(max(1, input_stride))))
    strides = [cfg["stem_stride"], *cfg["strides"]]
    for i, s in enumerate(strides):
        take = math.gcd(s, remaining)
        strides[i] = s // take
        remaining //= take
    if remaining != 1:
        raise ValueError(f"{arch}: input stride {input_stride} exceeds the network's total stride "
                         f"{cfg['stem_stride'] * math.prod(cfg['strides'])}")
    cfg["stem_stride"], cfg["strides"] = strides[0], tuple(strides[1:])
    return AudioNet1d(in_chans, num_classes, **cfg)


def create_latent_audio_model(arch: str, codec_or_spec: Any, num_classes: int, magnitude: bool = True,
                              **kwargs: Any) -> AudioNet1d:
    """``arch`` on WaLLoC audio latents (B, latent_dim, T/2^J + 2) of a Codec1D, shipped name or spec.

    ``magnitude``: feed |z| beside z (measured on the instrument benchmark: see benchmarks/RESULTS.md).
    """
    from .stems import latent_spec

    spec = latent_spec(codec_or_spec)
    if spec.ndim != 1:
        raise ValueError("create_latent_audio_model needs a 1D (audio) codec; use create_latent_model for images")
    return create_audio_model(arch, spec.latent_dim, num_classes, input_stride=spec.stride, magnitude=magnitude,
                              **kwargs)
