"""What every fast-encode path shares: the composite filters of the packet transform, folded with the
linear encoder into per-codec plans (cached with the codec, rebuilt when its weights change), periodic
padding, and the bottleneck's companding folded into a path's last linear step."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def composite_filters(h0: np.ndarray, h1: np.ndarray, J: int) -> tuple[np.ndarray, int]:
    """Composite analysis filters of a J-level periodized packet transform along one dimension.

    ``h0``/``h1`` are the correlation (time-reversed) analysis filters, applied per level as
    ``y[k] = sum_t h[t] x[2k + t - (L/2 - 1)]`` (pytorch-wavelets' periodization phase).  Returns
    ``(M, lo)`` with ``M`` of shape (2^J, K) in packet band order (first level most significant)
    such that band ``b`` at position ``k`` is ``sum_n M[b, n] x[2^J k + lo + n]`` (indices mod length).
    """
    L = len(h0)
    s = L // 2 - 1
    bank: list[tuple[np.ndarray, int]] = [(np.ones(1), 0)]
    for j in range(J):
        up = 2 ** j
        nxt = []
        for f, o in bank:
            for h in (h0, h1):
                lo = o - up * s
                g = np.zeros(len(f) + up * (L - 1))
                for t in np.nonzero(h)[0]:
                    g[up * t: up * t + len(f)] += h[t] * f
                nxt.append((g, lo))
        bank = nxt
    lo = min(o for _, o in bank)
    hi = max(o + len(g) for g, o in bank)
    M = np.zeros((len(bank), hi - lo))
    for b, (g, o) in enumerate(bank):
        M[b, o - lo: o - lo + len(g)] = g
    used = np.nonzero(np.abs(M).sum(0))[0]
    return M[:, used[0]: used[-1] + 1], lo + int(used[0])


@lru_cache(maxsize=None)
def _band_order_2d(J: int) -> torch.Tensor:
    """(2^J, 2^J) packet band index of the (W path, H path) pair: level j adds digit 2·w_j + h_j."""
    S = 2 ** J
    idx = torch.zeros(S, S, dtype=torch.long)
    for pw in range(S):
        for ph in range(S):
            b = 0
            for j in range(J):
                b = 4 * b + 2 * ((pw >> (J - 1 - j)) & 1) + ((ph >> (J - 1 - j)) & 1)
            idx[pw, ph] = b
    return idx


def _filter_pair(codec: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The codec's own analysis filters (its buffers, as the reference path uses them)."""
    wt = codec.wt
    if codec.ndim == 2:
        h0, h1 = wt.h0_row, wt.h1_row
    else:
        h0, h1 = wt.h0, wt.h1
    return h0.detach().double().cpu().flatten().numpy(), h1.detach().double().cpu().flatten().numpy()


def periodic_pad(x: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
    """Wrap-pad the last len(pads) dims by (left, right) each, any amount (more than the size too)."""
    nd = len(pads)
    if x.ndim == nd + 2 and nd <= 3 and all(0 <= a <= n and 0 <= b <= n for (a, b), n in zip(pads, x.shape[2:])):
        # one copy for all dims (measured faster than padding in one cat per dim)
        return F.pad(x, [p for lr in reversed(pads) for p in lr], mode="circular")
    for i, (left, right) in enumerate(pads):
        dim = x.ndim - nd + i
        n = x.shape[dim]
        if left == 0 and right == 0:
            continue
        if 0 <= left <= n and 0 <= right <= n:
            parts = [x.narrow(dim, n - left, left), x, x.narrow(dim, 0, right)]
            x = torch.cat([p for p in parts if p.shape[dim]], dim)
        else:
            x = x.index_select(dim, torch.arange(-left, n + right, device=x.device) % n)
    return x


def _pads(n: int, n_out: int, S: int, K: int, lo: int) -> tuple[int, int]:
    """(left, right) wrap so that a valid stride-S conv with K taps gives the n_out outputs."""
    left = -lo
    return left, S * (n_out - 1) + K - n - left


@dataclass
class _Plan2D:
    MW: torch.Tensor          # (S, K) composite bank along W (float64)
    MH: torch.Tensor          # (S, K) along H
    lo: int
    proj: torch.Tensor | None   # (latent, C·S, K) pass-H kernel with the 1×1 folded in, or None (heavy)
    bias: torch.Tensor | None   # (latent,)
    proj_sum: torch.Tensor | None  # (latent, C·S): sum over taps of proj (for the uint8 offset)


def _linear_1x1(codec: nn.Module) -> nn.Conv1d | nn.Conv2d | None:
    first = codec.encoder[0]
    if isinstance(first, (nn.Conv1d, nn.Conv2d)) and all(k == 1 for k in first.kernel_size) \
            and all(s == 1 for s in first.stride) and first.groups == 1 and first.dilation[0] == 1:
        return first
    return None


def _plan_2d(codec: nn.Module) -> _Plan2D:
    h0, h1 = _filter_pair(codec)
    M, lo = composite_filters(h0, h1, codec.J)
    M = torch.from_numpy(M)
    conv = _linear_1x1(codec)
    if conv is None:
        return _Plan2D(M, M, lo, None, None, None)
    S, C = 2 ** codec.J, codec.channels
    w = conv.weight.reshape(conv.out_channels, C, S * S).double().cpu()
    w = w[:, :, _band_order_2d(codec.J)]                                   # (o, c, pw, ph)
    proj = torch.einsum("ocwh,ht->ocwt", w, M).reshape(conv.out_channels, C * S, -1)
    bias = conv.bias.double().cpu() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    return _Plan2D(M, M, lo, proj, bias, proj.sum(-1))


def _cached_plan(codec: nn.Module, build):
    """Folded weights, rebuilt when a parameter changes (in-place updates bump ``_version``).

    When autograd needs the encoder's gradients the weights are folded afresh, differentiably.
    """
    if torch.is_grad_enabled() and any(p.requires_grad for p in codec.encoder[0].parameters()):
        return build(codec)
    key = tuple((p.data_ptr(), p._version) for p in codec.encoder[0].parameters()) + (codec.J,)
    cache = codec.__dict__.setdefault("_fast_plan_cache", {})
    if key not in cache:
        cache.clear()
        with torch.inference_mode(False), torch.no_grad():  # cached weights must not be inference tensors
            cache[key] = build(codec)
    return cache[key]


def _on_device(plan, key, make, device: torch.device, dtype: torch.dtype):
    """Device copies of folded weights, made once per (key, device, dtype) and kept with the plan.

    A host-to-device copy from pageable memory synchronises the stream, so copying per call would
    stall the GPU between kernels.
    """
    memo = plan.__dict__.setdefault("_device_memo", {})
    k = (key, str(device), dtype)
    if k not in memo:
        with torch.inference_mode(False):  # normal tensors, so later autograd use works
            t = make()
            memo[k] = tuple(a.to(device, dtype) for a in t) if isinstance(t, tuple) else t.to(device, dtype)
    return memo[k]


def _result(t: torch.Tensor) -> torch.Tensor:
    """float32 results (float64 stays float64), whatever the compute precision."""
    return t if t.dtype == torch.float64 else t.float()


def banded_matrix(M: torch.Tensor, S: int, m: int, span: int) -> torch.Tensor:
    """(F, span, G, m) matrix of stride-S filtering for a block of m output positions.

    ``M`` is (G, F, K): G outputs from F inputs with K taps.  Output position ``pos`` reads inputs
    [S pos, S pos + K) of the block's input span; indexed (input f, span offset, output g, pos).
    """
    G, Fn, K = M.shape
    T = torch.zeros(Fn, span, G, m, dtype=M.dtype, device=M.device)
    for pos in range(m):
        T[:, S * pos: S * pos + K, :, pos] = M.permute(1, 2, 0)
    return T


def _compand_gain(compand: tuple[float, float] | None) -> float:
    """1/(scale·√2): folded into the last linear step, ToUniform's 2·lm·(Φ(z/scale) - 1/2) is lm·erf(z')."""
    return 1.0 / (compand[0] * math.sqrt(2.0)) if compand else 1.0


def _compand_scaled(z: torch.Tensor, compand: tuple[float, float] | None) -> torch.Tensor:
    """``latent_max·erf(z)`` of latents already multiplied by :func:`_compand_gain` (in place unless
    autograd needs ``z``); ``z`` unchanged without ``compand``."""
    if not compand:
        return z
    return torch.erf(z) * compand[1] if torch.is_grad_enabled() and z.requires_grad else z.erf_().mul_(compand[1])


@dataclass
class _Plan1D:
    MA: torch.Tensor    # (S1, KA) first J1 levels
    loA: int
    MB: torch.Tensor    # (S2, KB) remaining levels (bank at the coarser rate)
    loB: int
    S1: int
    proj: torch.Tensor | None    # (latent, C·S1, KB) or None (heavy)
    bias: torch.Tensor | None
    pad: int                     # the 1×1 conv's zero padding (walloc's 1D quirk: 1)
    weight: torch.Tensor | None = None   # (latent, C·2^J) the 1×1 conv itself, packet band order


def _plan_1d(codec: nn.Module) -> _Plan1D:
    h0, h1 = _filter_pair(codec)
    J = codec.J
    J1 = J // 2
    MA, loA = composite_filters(h0, h1, J1)
    MB, loB = composite_filters(h0, h1, J - J1)
    MA, MB = torch.from_numpy(MA), torch.from_numpy(MB)
    S1, S2 = 2 ** J1, 2 ** (J - J1)
    conv = _linear_1x1(codec)
    if conv is None:
        return _Plan1D(MA, loA, MB, loB, S1, None, None, 0)
    C = codec.channels
    w = conv.weight.reshape(conv.out_channels, C, S1, S2).double().cpu()
    proj = torch.einsum("ocab,bt->ocat", w, MB).reshape(conv.out_channels, C * S1, -1)
    bias = conv.bias.double().cpu() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    return _Plan1D(MA, loA, MB, loB, S1, proj, bias, int(conv.padding[0]),
                   conv.weight.reshape(conv.out_channels, C * S1 * S2).double().cpu())
