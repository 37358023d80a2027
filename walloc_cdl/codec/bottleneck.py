"""Entropy bottleneck of WaLLoC: Normal-CDF companding to a bounded uniform range, then rounding.

Latents leave the linear encoder roughly Gaussian.  ``ToUniform`` maps them through the Normal CDF to
(-latent_max, latent_max), so that rounding to integers (eval) or adding U(-1/2, 1/2) noise (training)
is a uniform scalar quantiser with ``latent_bits`` bits per entry; ``ToNormal`` inverts the companding
before decoding.  Same classes, attributes and arithmetic as walloc 1.2.1 (none has parameters).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

_SQRT2 = math.sqrt(2.0)


def companding_scale(latent_bits: int) -> float:
    """walloc's choice: the Normal's std in latent units, so ±1.85 σ spans the integer range."""
    return (2 ** (latent_bits - 1) - 1) / 1.85


def latent_max(latent_bits: int) -> float:
    """Half-width of the companded range; just under the last integer's rounding cell."""
    return 2 ** (latent_bits - 1) - 1 + 0.5 - 1e-3


class ToUniform(nn.Module):
    """x -> 2·latent_max·(Φ(x/scale) - 1/2)."""

    def __init__(self, scale: float, latent_max: float):
        super().__init__()
        self.scale = scale
        self.latent_max = latent_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / self.scale
        x = 0.5 * (1 + torch.erf(x / _SQRT2))
        return 2 * self.latent_max * (x - 0.5)


class Round(nn.Module):
    """Quantisation proxy: additive uniform noise while training, rounding in eval."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x + (torch.rand_like(x) - 0.5)
        return torch.round(x)


class ToNormal(nn.Module):
    """Inverse of :class:`ToUniform`, clipped to (1e-4, 1 - 1e-4) before Φ⁻¹ as in walloc."""

    def __init__(self, scale: float, latent_max: float):
        super().__init__()
        self.scale = scale
        self.latent_max = latent_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / (2 * self.latent_max) + 0.5
        x = x.clamp(0.0001, 0.9999)
        x = _SQRT2 * torch.erfinv(2 * x - 1)
        return self.scale * x
