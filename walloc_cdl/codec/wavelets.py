"""Wavelet packet transform (bior4.4 = CDF 9/7, periodization), 1D and 2D, for any channel count and depth.

WaLLoC exposes redundancy with a J-level wavelet *packet* transform: every level splits every channel
into [LL, LH, HL, HH] (2D) or [L, H] (1D), channel-major, so C channels become C·4^J (C·2^J) bands at
1/2^J the resolution.  This module reproduces walloc 1.2.1's transform (built on pytorch-wavelets'
``DWTForward``/``DWTInverse`` with ``mode='periodization'``) to float precision without importing
pytorch-wavelets, whose 1.3.0 release imports ``pkg_resources`` and so fails on setuptools >= 82.
The filter buffers keep pytorch-wavelets' names and layout (``h0_col`` ... ``g1_row``; ``h0`` ... ``g1``)
so official checkpoints, which store them, load with ``strict=True``.

Usage::

    wpt = WPT2D()                       # one level, bior4.4
    X = wpt.analysis(x, J=3)            # (B, C, H, W) -> (B, C*64, H/8, W/8)
    x = wpt.synthesis(X, J=3)           # perfect reconstruction
"""
from __future__ import annotations

import numpy as np
import pywt
import torch
import torch.nn as nn
import torch.nn.functional as F

WAVELET = "bior4.4"


def _filters(wave: str = WAVELET) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(h0, h1, g0, g1): analysis filters time-reversed (for correlation), synthesis filters as is."""
    w = pywt.Wavelet(wave)
    h0 = np.array(w.dec_lo[::-1], dtype=np.float64)
    h1 = np.array(w.dec_hi[::-1], dtype=np.float64)
    g0 = np.array(w.rec_lo, dtype=np.float64)
    g1 = np.array(w.rec_hi, dtype=np.float64)
    return h0, h1, g0, g1


def _register_filters(module: nn.Module, filters: dict[str, np.ndarray]) -> None:
    """Buffers shaped as pytorch-wavelets stores them: (1,1,L,1) for *_col, (1,1,1,L) for *_row, else (1,1,L)."""
    for name, f in filters.items():
        shape = (1, 1, -1, 1) if name.endswith("_col") else (1, 1, 1, -1) if name.endswith("_row") else (1, 1, -1)
        module.register_buffer(name, torch.tensor(f.copy(), dtype=torch.get_default_dtype()).reshape(shape))


def _wrap(x: torch.Tensor, left: int, right: int, dim: int) -> torch.Tensor:
    """Periodic extension along ``dim`` by any amount (also more than the length itself)."""
    n = x.shape[dim]
    if left <= n and right <= n:
        parts = [x.narrow(dim, n - left, left), x, x.narrow(dim, 0, right)]
        return torch.cat([p for p in parts if p.shape[dim] > 0], dim=dim)
    idx = torch.arange(-left, n + right, device=x.device) % n
    return x.index_select(dim, idx)


def _even(x: torch.Tensor, dim: int) -> torch.Tensor:
    """pytorch-wavelets' periodization rule for odd lengths: repeat the last sample."""
    if x.shape[dim] % 2 == 1:
        x = torch.cat([x, x.narrow(dim, x.shape[dim] - 1, 1)], dim=dim)
    return x


def afb1d(x: torch.Tensor, h: torch.Tensor, dim: int) -> torch.Tensor:
    """One analysis level along ``dim`` of a (M, 1, A, B) tensor: returns (M, 2, ...) [lo, hi], halved.

    ``h`` is the (2, 1, L) stack of time-reversed analysis filters.  Circular correlation with
    the same phase as pytorch-wavelets' periodization (roll by -L/2, then wrap the tail).
    """
    L = h.shape[-1]
    x = _even(x, dim)
    x = _wrap(x, L // 2 - 1, L - L // 2 - 1, dim)
    if dim == 3:
        return F.conv2d(x, h.reshape(2, 1, 1, L), stride=(1, 2))
    return F.conv2d(x, h.reshape(2, 1, L, 1), stride=(2, 1))


def sfb1d(y: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`afb1d`: (M, 2, A, B) [lo, hi] -> (M, 1, ...) doubled along ``dim``.

    ``g`` is the (2, 1, L) stack of synthesis filters.  Equivalent to pytorch-wavelets'
    transposed convolution + wrap + roll(1 - L/2), written as a circularly padded transposed conv
    so that autograd needs no custom backward.
    """
    L = g.shape[-1]
    n = 2 * y.shape[dim]
    p = L // 4 + 1
    y = _wrap(y, p, p, dim)
    if dim == 3:
        z = F.conv_transpose2d(y, g.reshape(2, 1, 1, L), stride=(1, 2))
    else:
        z = F.conv_transpose2d(y, g.reshape(2, 1, L, 1), stride=(2, 1))
    return z.narrow(dim, L // 2 - 1 + 2 * p, n)


class DWT2DForward(nn.Module):
    """One 2D analysis level; buffers named and shaped like pytorch-wavelets' ``DWTForward``."""

    def __init__(self, wave: str = WAVELET):
        super().__init__()
        h0, h1, _, _ = _filters(wave)
        _register_filters(self, {"h0_col": h0, "h1_col": h1, "h0_row": h0, "h1_row": h1})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C·4, H/2, W/2), bands [LL, LH, HL, HH] per channel."""
        B, C, H, W = x.shape
        hr = torch.cat([self.h0_row, self.h1_row]).reshape(2, 1, -1).to(x.dtype)
        hc = torch.cat([self.h0_col, self.h1_col]).reshape(2, 1, -1).to(x.dtype)
        y = afb1d(x.reshape(B * C, 1, H, W), hr, dim=3)            # along width
        y = y.reshape(B * C * 2, 1, H, y.shape[-1])
        y = afb1d(y, hc, dim=2)                                     # along height
        return y.reshape(B, C * 4, y.shape[-2], y.shape[-1])


class DWT2DInverse(nn.Module):
    """One 2D synthesis level; buffers named and shaped like pytorch-wavelets' ``DWTInverse``."""

    def __init__(self, wave: str = WAVELET):
        super().__init__()
        _, _, g0, g1 = _filters(wave)
        _register_filters(self, {"g0_col": g0, "g1_col": g1, "g0_row": g0, "g1_row": g1})

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """(B, C·4, h, w) -> (B, C, 2h, 2w)."""
        B, C4, h, w = X.shape
        if C4 % 4:
            raise ValueError(f"2D synthesis needs a multiple of 4 bands, got {C4} channels")
        gr = torch.cat([self.g0_row, self.g1_row]).reshape(2, 1, -1).to(X.dtype)
        gc = torch.cat([self.g0_col, self.g1_col]).reshape(2, 1, -1).to(X.dtype)
        y = sfb1d(X.reshape(B * C4 // 2, 2, h, w), gc, dim=2)       # along height
        y = y.reshape(B * C4 // 4, 2, 2 * h, w)
        y = sfb1d(y, gr, dim=3)                                     # along width
        return y.reshape(B, C4 // 4, 2 * h, 2 * w)


class DWT1DForward(nn.Module):
    """One 1D analysis level; buffers named and shaped like pytorch-wavelets' ``DWT1DForward``."""

    def __init__(self, wave: str = WAVELET):
        super().__init__()
        h0, h1, _, _ = _filters(wave)
        _register_filters(self, {"h0": h0, "h1": h1})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C·2, T/2), bands [L, H] per channel."""
        B, C, T = x.shape
        h = torch.cat([self.h0, self.h1]).to(x.dtype)
        y = afb1d(x.reshape(B * C, 1, 1, T), h, dim=3)
        return y.reshape(B, C * 2, y.shape[-1])


class DWT1DInverse(nn.Module):
    """One 1D synthesis level; buffers named and shaped like pytorch-wavelets' ``DWT1DInverse``."""

    def __init__(self, wave: str = WAVELET):
        super().__init__()
        _, _, g0, g1 = _filters(wave)
        _register_filters(self, {"g0": g0, "g1": g1})

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """(B, C·2, t) -> (B, C, 2t)."""
        B, C2, t = X.shape
        if C2 % 2:
            raise ValueError(f"1D synthesis needs an even number of bands, got {C2} channels")
        g = torch.cat([self.g0, self.g1]).to(X.dtype)
        y = sfb1d(X.reshape(B * C2 // 2, 2, 1, t), g, dim=3)
        return y.reshape(B, C2 // 2, 2 * t)


def packet_analysis(x: torch.Tensor, dwt: nn.Module, J: int) -> torch.Tensor:
    """J-level packet analysis: apply one level to every band, J times (channel-major band order)."""
    for _ in range(J):
        x = dwt(x)
    return x


def packet_synthesis(X: torch.Tensor, idwt: nn.Module, J: int) -> torch.Tensor:
    """Inverse of :func:`packet_analysis`."""
    for _ in range(J):
        X = idwt(X)
    return X
