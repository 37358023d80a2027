"""Fast WaLLoC encoding: the J-level packet transform and the linear encoder as two strided convolutions.

Up to the bottleneck the lightweight encoder is linear and shift-invariant by 2^J: the J-level
periodized packet transform followed by the 1×1 conv equals a strided correlation with the *composite*
filters of the filter bank (2^J filters of K taps per dimension, K = 57 for bior4.4 and J = 3).
The 2D transform is separable, so the fast path needs two passes instead of 2·J:

* pass W: one strided conv along W applies the 2^J composite filters to every channel
  (C -> C·2^J bands at W/2^J);
* pass H: one strided conv along H applies the 2^J composite filters *and* the 1×1 projection,
  folded into one (C·2^J -> latent_dim) kernel of K×1 taps.

Periodization is exact: the input is wrap-padded once, in both dimensions, by the composite support.
uint8 input (pixel/255 - 0.5) is folded into pass W (weights /255, offset into its bias), so the
batch is only cast, never normalised.  On the CPU (``poly``) pass W is a stride-1 conv over each row's
2^J polyphase components and both passes run channels-last.  Audio (1D) uses the same idea split in
levels: a depthwise bank for the first J//2 levels, then one conv for the remaining levels folded with
the projection, or, where folding costs more multiply-adds than it saves (many latents, e.g. stereo
J = 8), the second bank and the 1×1 conv apart.  Heavy (KLEncoder / OobleckEncoder) codecs get the fast
transform only.  The Triton paths (CUDA), ``poly`` and the unfolded 1D path also apply the bottleneck's
Normal-CDF companding themselves (folded into their last linear step), so encoding ends with one rounding.

Usage::

    z = fast_encode(codec, x)                       # == codec.encode(x), which dispatches here
    z = fast_encode(codec, x_uint8, dtype=torch.bfloat16)   # GPU on-the-fly encoding
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .bottleneck import ToUniform

METHODS_2D = ("poly", "sep", "sep_mm", "mm", "s2d", "triton", "triton_tile", "dense")
"""2D formulations: ``poly`` channels-last: pass W as a stride-1 conv over the 2^J polyphase components of
each row (the wrap-pad fused into that reorder), then pass H (the CPU default, see :func:`_encode_2d_poly`);
``sep`` two strided convs; ``sep_mm`` GEMMs along W then a conv along H;
``mm`` GEMMs for both passes (block-Toeplitz, see :func:`_encode_2d_mm`); ``s2d`` space-to-depth then one
stride-1 conv (C·4^J -> latent_dim, ceil(K/2^J)+1 blocks square); ``triton`` two fused Triton kernels
(CUDA only; float32 runs them in tf32x3, about float32 accuracy; bf16/fp16 in tf32); ``triton_tile`` the
same with a tiled pass W (coalesced loads, see :mod:`walloc_cdl._fastencode_triton`; the CUDA default since
an H200 timed it at 1.4x ``triton``); ``dense`` one strided 2D conv."""
TRITON_METHODS = ("triton", "triton_tile")


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
        # one copy for all dims (measured 0.24 vs 0.46 ms for a 4x3x256² batch padded in two cats)
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


# -- folded weights ------------------------------------------------------------------------------------
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


# -- 2D --------------------------------------------------------------------------------------------
def _pass_w(xp: torch.Tensor, MW: torch.Tensor, lo_pad: int, S: int, n_out: int, bias: torch.Tensor | None,
            method: str) -> torch.Tensor:
    """Composite bank along W: (N, Hp, Wp) -> (N, S, Hp, n_out)."""
    N, Hp, Wp = xp.shape
    K = MW.shape[1]
    if method != "sep_mm":
        y = F.conv2d(xp.reshape(N, 1, Hp, Wp), MW.reshape(S, 1, 1, K), bias, stride=(1, S))
        return y[..., :n_out]
    # Two GEMMs on 2P-wide windows: output block i (P/S positions x S bands) needs input [P i, P i + 2P).
    P = S * max(1, -(-(K - S) // S))
    nb = -(-n_out * S // P)
    need = (nb + 1) * P
    if Wp < need:
        xp = F.pad(xp, (0, need - Wp))
    else:
        xp = xp[..., :need]
    Mt = torch.zeros(2 * P, P, dtype=MW.dtype, device=MW.device)     # rows: input offset, cols: (band, pos)
    m = P // S
    for pos in range(m):
        Mt[S * pos: S * pos + K, pos::m] = MW.T
    Mt = Mt.reshape(2, P, P)
    rows = xp.reshape(N * Hp, nb + 1, P)
    y = rows[:, :nb] @ Mt[0] + rows[:, 1:] @ Mt[1]                    # (N·Hp, nb, S·m) as (band, pos)
    y = y.reshape(N, Hp, nb, S, m).permute(0, 3, 1, 2, 4).reshape(N, S, Hp, nb * m)[..., :n_out]
    if bias is not None:
        y = y + bias.reshape(1, S, 1, 1)
    return y


def _encode_2d(codec: nn.Module, x: torch.Tensor, dtype: torch.dtype, method: str,
               transform_only: bool = False, compand: tuple[float, float] | None = None) -> torch.Tensor:
    plan = _cached_plan(codec, _plan_2d)
    B, C, H, W = x.shape
    J, S = codec.J, 2 ** codec.J
    h, w = H // S, W // S
    dev = x.device
    M = plan.MW
    K = M.shape[1]
    uint8 = x.dtype == torch.uint8
    scale = 1 / 255 if uint8 else 1.0
    if method == "dense":
        return _encode_2d_dense(codec, plan, x, dtype, scale)
    if method in TRITON_METHODS and plan.proj is not None and not transform_only:
        from ._fastencode_triton import encode_2d_triton, tile_weights, triton_weights
        prec = "tf32x3" if dtype == torch.float32 else "ieee" if dtype == torch.float64 else "tf32"
        weights = _on_device(plan, ("triton", scale), lambda: triton_weights(plan.MW, plan.proj, plan.bias, S, scale),
                             x.device, torch.float32)
        tile = None
        if method == "triton_tile":
            tile = _on_device(plan, ("triton_tile", scale), lambda: tile_weights(plan.MW, S, scale), x.device,
                              torch.float32)
        return encode_2d_triton(x, weights, plan.lo, plan.MW.shape[1], plan.proj.shape[0], S, prec, tile, compand)
    if method == "poly" and plan.proj is not None and not transform_only:
        return _encode_2d_poly(plan, x, dtype, S, scale, compand)
    if method == "s2d" and plan.proj is not None and not transform_only:
        return _encode_2d_s2d(plan, x, dtype, S, scale)
    if method == "mm" and plan.proj is not None and not transform_only:
        return _encode_2d_mm(plan, x, dtype, S, scale)
    xp = periodic_pad(x, [_pads(H, h, S, K, plan.lo), _pads(W, w, S, K, plan.lo)]).to(dtype)
    Hp, Wp = xp.shape[-2:]
    bias_w = None
    if uint8:   # (u/255 - 0.5) * M = u * M/255 - 0.5 sum(M)
        bias_w = _on_device(plan, "bias_w", lambda: -0.5 * M.sum(1), dev, dtype)
    MWs = _on_device(plan, ("MW", scale), lambda: M * scale, dev, dtype)
    y = _pass_w(xp.reshape(B * C, Hp, Wp), MWs, plan.lo, S, w, bias_w, method)
    y = y.reshape(B, C * S, Hp, w)
    if transform_only or plan.proj is None:   # finish the transform, reorder bands to packet order
        X = F.conv2d(y, plan.MH.to(dev, dtype).repeat(C * S, 1).reshape(C * S * S, 1, K, 1), stride=(S, 1),
                     groups=C * S)
        perm = torch.argsort(_band_order_2d(J).flatten())             # packet band -> (pw, ph) slot
        perm = (torch.arange(C).reshape(C, 1) * S * S + perm.reshape(1, -1)).flatten().to(dev)
        return _result(X.index_select(1, perm))
    proj, bias = _on_device(plan, "proj", lambda: (plan.proj.unsqueeze(-1), plan.bias), dev, dtype)
    z = F.conv2d(y, proj, bias, stride=(S, 1))
    return _result(z)


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


def _toeplitz_blocks(M: torch.Tensor, S: int, P: int) -> torch.Tensor:
    """(2, F·P, G·m) pair of block-Toeplitz matrices for stride-S filtering in blocks of P = S·m.

    Output position ``pos`` of block i reads inputs [P i + S pos, P i + S pos + K) of the window
    [P i, P i + 2P) (:func:`banded_matrix` with span 2P); rows are (input f, window offset), columns
    (output g, pos); the two matrices multiply block i and block i + 1.
    """
    Fn, G, m = M.shape[1], M.shape[0], P // S
    T = banded_matrix(M, S, m, 2 * P)
    return T.reshape(Fn, 2, P, G * m).transpose(0, 1).reshape(2, Fn * P, G * m)


def _encode_2d_mm(plan: _Plan2D, x: torch.Tensor, dtype: torch.dtype, S: int, scale: float) -> torch.Tensor:
    """Both passes as pairs of GEMMs on non-overlapping blocks (tensor-core friendly on GPUs).

    Inputs are wrap-padded to (nb + 1)·P per dimension so that every output block of P/S positions
    reads exactly its own and the next input block.
    """
    B, C, H, W = x.shape
    dev = x.device
    K = plan.MW.shape[1]
    P = S * max(1, -(-(K - S) // S))
    m = P // S
    h, w = H // S, W // S
    nbh, nbw = -(-h // m), -(-w // m)
    pad = lambda n, nb: (-plan.lo, (nb + 1) * P - n + plan.lo)
    xp = periodic_pad(x, [pad(H, nbh), pad(W, nbw)]).to(dtype)
    Hp = (nbh + 1) * P
    # pass W: rows (b, c, row) x blocks -> (band, pos)
    A = _toeplitz_blocks((plan.MW * scale).unsqueeze(1), S, P).to(dev, dtype)
    rows = xp.reshape(B * C * Hp, nbw + 1, P)
    y = rows[:, :nbw] @ A[0] + rows[:, 1:] @ A[1]                           # (B·C·Hp, nbw, S·m)
    if scale != 1.0:
        y = y + (-0.5 * plan.MW.sum(1)).to(dev, dtype).repeat_interleave(m)
    # pass H with the projection: rows (b, w position) x H blocks -> (latent, pos)
    y = y.reshape(B, C, nbh + 1, P, nbw, S, m).permute(0, 4, 6, 2, 1, 5, 3)   # (B, nbw, m, nbh+1, C, S, P)
    y = y.reshape(B * nbw * m, nbh + 1, C * S * P)
    Hm = _toeplitz_blocks(plan.proj, S, P).to(dev, dtype)
    z = y[:, :nbh] @ Hm[0] + y[:, 1:] @ Hm[1]                                 # (B·w', nbh, latent·m)
    L = plan.proj.shape[0]
    z = z.reshape(B, nbw * m, nbh, L, m).permute(0, 3, 2, 4, 1).reshape(B, L, nbh * m, nbw * m)[:, :, :h, :w]
    return _result(z) + plan.bias.to(dev, torch.float64 if z.dtype == torch.float64 else torch.float32).reshape(1, L, 1, 1)


def _poly_weights(M: torch.Tensor, lo: int, groups: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A stride-S bank ``M`` (S, K) as a stride-1 grouped conv over S polyphase components (``poly``).

    Returns the (groups·S, S, 1, D) channels-last weight (band, phase, 1, block), the bank shifted by
    ``lo mod S`` zero taps so that its span starts on a block edge (block ``lo // S``), and the
    (groups·S,) bias of uint8 input (``scale`` = 1/255: the offset -0.5·sum(M)), zeros otherwise.
    """
    S, K = M.shape
    off = lo - S * (lo // S)
    D = -(-(off + K) // S)
    Mp = torch.zeros(S, D * S, dtype=M.dtype)
    Mp[:, off:off + K] = M * scale
    A = Mp.reshape(S, D, S).permute(0, 2, 1).reshape(S, S, 1, D)
    bias = (-0.5 * M.sum(1)).repeat(groups) if scale != 1.0 else torch.zeros(groups * S, dtype=M.dtype)
    return A.repeat(groups, 1, 1, 1).contiguous(memory_format=torch.channels_last), bias


def _compand_gain(compand: tuple[float, float] | None) -> float:
    """1/(scale·√2): folded into the last linear step, ToUniform's 2·lm·(Φ(z/scale) - 1/2) is lm·erf(z')."""
    return 1.0 / (compand[0] * math.sqrt(2.0)) if compand else 1.0


def _compand_scaled(z: torch.Tensor, compand: tuple[float, float] | None) -> torch.Tensor:
    """``latent_max·erf(z)`` of latents already multiplied by :func:`_compand_gain` (in place unless
    autograd needs ``z``); ``z`` unchanged without ``compand``."""
    if not compand:
        return z
    return torch.erf(z) * compand[1] if torch.is_grad_enabled() and z.requires_grad else z.erf_().mul_(compand[1])


def _polyphase_rows(x: torch.Tensor, S: int, rows: tuple[int, int], blocks: tuple[int, int],
                    dtype: torch.dtype) -> torch.Tensor:
    """(B, C, H, W) -> (B, Hp, Wq, C, S): row r, block q, channel c, phase p holds
    x[c, (r - top) mod H, (S·(q - left) + p) mod W]; wrap-padded, cast and reordered in one pass.

    The wrap is copied from inside the buffer (whole rows, whole blocks) when it fits; otherwise
    (tiny inputs, W not a multiple of S) the batch is wrap-padded first and then reordered.
    """
    B, C, H, W = x.shape
    (top, bottom), (left, right) = rows, blocks
    w = W // S
    Hp, Wq = H + top + bottom, w + left + right
    out = torch.empty(B, Hp, Wq, C, S, dtype=dtype, device=x.device)
    if W % S or not (0 <= top <= H and 0 <= bottom <= H and 0 <= left <= w and 0 <= right <= w):
        xp = periodic_pad(x, [(top, bottom), (S * left, S * Wq - W - S * left)])
        for c in range(C):
            out[:, :, :, c].copy_(xp[:, c].reshape(B, Hp, Wq, S))
        return out
    for c in range(C):   # one copy per channel: 2x faster than one permuted 5D copy (contiguous source rows)
        out[:, top:top + H, left:left + w, c].copy_(x[:, c].reshape(B, H, w, S))
    if left:
        out[:, top:top + H, :left].copy_(out[:, top:top + H, w:w + left])
    if right:
        out[:, top:top + H, left + w:].copy_(out[:, top:top + H, left:left + right])
    if top:
        out[:, :top].copy_(out[:, H:H + top])
    if bottom:
        out[:, top + H:].copy_(out[:, top:top + bottom])
    return out


def _encode_2d_poly(plan: _Plan2D, x: torch.Tensor, dtype: torch.dtype, S: int, scale: float,
                    compand: tuple[float, float] | None = None) -> torch.Tensor:
    """Both passes as channels-last convs; pass W reads the row's polyphase components as channels.

    Why (2 CPU threads, RGB 16x, benchmarks/RESULTS.md): the strided NCHW pass H runs at about half the
    speed of the same conv channels-last, and the strided 57-tap pass W at ~0.6x of a stride-1 conv of
    8 taps over the 8 phases; the reorder that makes the phases channels also does the wrap-pad and
    the uint8 cast, so the batch is copied once.  ``compand`` = (scale, latent_max): the bottleneck's
    companding, its 1/(scale·√2) folded into the projection, leaving ``latent_max·erf`` (in place).
    """
    B, C, H, W = x.shape
    h = H // S
    K = plan.MW.shape[1]
    dev = x.device
    cl = torch.channels_last
    A, bias_w = _on_device(plan, ("poly", C, scale), lambda: _poly_weights(plan.MW, plan.lo, C, scale), dev, dtype)
    D = A.shape[-1]
    b0 = plan.lo // S                                    # first block a latent reads, relative to its own
    rows = _pads(H, h, S, K, plan.lo)
    xs = _polyphase_rows(x, S, rows, (-b0, D - 1 + b0), dtype)   # Wq = w + D - 1 blocks
    Hp, Wq = xs.shape[1:3]
    xs = xs.view(B, Hp, Wq, C * S).permute(0, 3, 1, 2)   # (B, C·S, Hp, Wq) channels-last, no copy
    y = F.conv2d(xs, A, bias_w, groups=C)   # weights are stored channels-last
    inv = _compand_gain(compand)
    proj, bias = _on_device(plan, ("proj_cl", inv), lambda: (
        (plan.proj * inv).unsqueeze(-1).contiguous(memory_format=cl), plan.bias * inv), dev, dtype)
    z = _result(F.conv2d(y, proj, bias, stride=(S, 1)).contiguous())
    return _compand_scaled(z, compand)


def _full_kernel(plan: _Plan2D, C: int, S: int) -> torch.Tensor:
    """(latent, C, K, K) composite 2D kernel: transform and projection in one, float64."""
    K = plan.MW.shape[1]
    return torch.einsum("ocwh,wx->ochx", plan.proj.reshape(-1, C, S, K), plan.MW)


def _encode_2d_s2d(plan: _Plan2D, x: torch.Tensor, dtype: torch.dtype, S: int, scale: float) -> torch.Tensor:
    """Space-to-depth by 2^J, then one stride-1 conv of D×D blocks from C·4^J channels (tensor-core shaped)."""
    B, C, H, W = x.shape
    K = plan.MW.shape[1]
    first = -(-(-plan.lo) // S)                        # blocks before the output block
    D = -(-(S * first + plan.lo + K) // S)             # blocks spanned
    kern = _full_kernel(plan, C, S)
    k = torch.zeros(kern.shape[0], C, S * D, S * D, dtype=kern.dtype)
    o0 = S * first + plan.lo
    k[:, :, o0: o0 + K, o0: o0 + K] = kern
    w2 = k.reshape(-1, C, D, S, D, S).permute(0, 1, 3, 5, 2, 4).reshape(-1, C * S * S, D, D)
    bias = plan.bias - 0.5 * kern.sum((1, 2, 3)) if scale != 1.0 else plan.bias
    h, w = H // S, W // S
    pads = [(S * first, S * (D - 1 - first)), (S * first, S * (D - 1 - first))]
    X = F.pixel_unshuffle(periodic_pad(x, pads), S).to(dtype)
    if x.is_cuda:
        X = X.contiguous(memory_format=torch.channels_last)
    z = F.conv2d(X, (w2 * scale).to(x.device, dtype), bias.to(x.device, dtype))
    return _result(z[:, :, :h, :w])


def _encode_2d_dense(codec, plan: _Plan2D, x: torch.Tensor, dtype: torch.dtype, scale: float) -> torch.Tensor:
    """Reference-only alternative: one 2D strided conv with the full composite kernel (slow, for benchmarks)."""
    if plan.proj is None:
        raise ValueError("method='dense' needs a lightweight (1×1 conv) encoder")
    B, C, H, W = x.shape
    S = 2 ** codec.J
    K = plan.MW.shape[1]
    kern = _full_kernel(plan, C, S)                                                  # (o, c, H tap, W tap)
    bias = plan.bias - 0.5 * kern.sum((1, 2, 3)) if scale != 1.0 else plan.bias
    xp = periodic_pad(x, [_pads(H, H // S, S, K, plan.lo), _pads(W, W // S, S, K, plan.lo)]).to(dtype)
    return _result(F.conv2d(xp, (kern * scale).to(x.device, dtype), bias.to(x.device, dtype), stride=S))


# -- 1D --------------------------------------------------------------------------------------------
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


def _encode_1d(codec: nn.Module, x: torch.Tensor, dtype: torch.dtype, transform_only: bool = False,
               compand: tuple[float, float] | None = None, unfolded: bool | None = None) -> torch.Tensor:
    """Latents before the bottleneck (``compand``: after it, for the unfolded path only, see
    :func:`_unfolded_1d`; ``unfolded``: its answer when the caller has it), or the packet transform
    (``transform_only``)."""
    plan = _cached_plan(codec, _plan_1d)
    S1, S = plan.S1, 2 ** codec.J
    if not transform_only and (_unfolded_1d(codec, x) if unfolded is None else unfolded):
        return _encode_1d_unfolded(plan, x, dtype, S, compand)
    C, T = x.shape[1:]
    S2 = S // S1
    KB = plan.MB.shape[1]
    dev = x.device
    y = _bank_a(plan, x, dtype, plan.loB, S2 * (T // S - 1) + KB)   # the bank-A outputs pass B reads
    if transform_only or plan.proj is None:
        X = F.conv1d(y, plan.MB.repeat(C * S1, 1).reshape(C * S, 1, KB).to(dev, dtype), stride=S2, groups=C * S1)
        return _result(X)
    proj, bias = _on_device(plan, "proj", lambda: (plan.proj, plan.bias), dev, dtype)
    return _edge_latents(_result(F.conv1d(y, proj, bias, stride=S2)), plan.bias.to(dev), plan.pad)


def _bank_a(plan: _Plan1D, x: torch.Tensor, dtype: torch.dtype, start: int, count: int) -> torch.Tensor:
    """Bank A (the first J//2 levels, a strided grouped conv): ``count`` outputs from index ``start``."""
    C, T = x.shape[1:]
    S1, KA = plan.S1, plan.MA.shape[1]
    left = -(plan.loA + S1 * start)
    right = S1 * (count - 1) + KA - T - left
    dev = x.device
    xp = periodic_pad(x, [(left, max(right, 0))]).to(dtype)
    scale = 1 / 255 if x.dtype == torch.uint8 else 1.0
    bias_a = _on_device(plan, "bias_a", lambda: (-0.5 * plan.MA.sum(1)).repeat(C), dev, dtype) if scale != 1.0 else None
    MA = _on_device(plan, ("MA", scale), lambda: (plan.MA * scale).repeat(C, 1).reshape(C * S1, 1, KA), dev, dtype)
    return F.conv1d(xp, MA, bias_a, stride=S1, groups=C)[..., :count]


def _edge_latents(z: torch.Tensor, bias: torch.Tensor, pad: int) -> torch.Tensor:
    """walloc's padding=1 zero-pads the 1×1 conv's input: the ``pad`` edge steps of (B, latent, n) carry
    the bias alone (the bias as the path applies it, e.g. with the companding gain folded in)."""
    if not pad:
        return z
    edge = bias.to(z.dtype).reshape(1, -1, 1).expand(z.shape[0], -1, pad)
    return torch.cat([edge, z, edge], dim=-1)


def _unfolded_1d(codec: nn.Module, x: torch.Tensor) -> bool:
    """Whether the second bank and the 1×1 conv run apart (CPU, lightweight encoders).

    Folded they cost latent·C·S1·KB multiply-adds per latent step, apart C·2^J·KB + latent·C·2^J.  Apart
    pays when it needs under half the folded count (its grouped bank runs at lower efficiency than the
    dense folded conv): stereo J = 8 with 108 latents needs 0.28 of it (benchmarks/RESULTS.md).
    """
    if x.device.type != "cpu" or _linear_1x1(codec) is None:
        return False
    plan = _cached_plan(codec, _plan_1d)
    C, S = codec.channels, 2 ** codec.J
    L, KB = plan.proj.shape[0], plan.MB.shape[1]
    return C * S * KB + L * C * S < 0.5 * L * C * plan.S1 * KB


def _encode_1d_unfolded(plan: _Plan1D, x: torch.Tensor, dtype: torch.dtype, S: int,
                        compand: tuple[float, float] | None = None) -> torch.Tensor:
    """Bank A (strided grouped conv), bank B over its polyphase components (stride-1 grouped conv,
    channels-last), then the 1×1 conv as one GEMM: the packet transform in full, then the projection.
    ``compand`` = (scale, latent_max): the bottleneck's companding, folded as in :func:`_encode_2d_poly`."""
    B, C, T = x.shape
    S1 = plan.S1
    S2 = S // S1
    n = T // S
    dev = x.device
    A2, _ = _on_device(plan, "poly_b", lambda: _poly_weights(plan.MB, plan.loB, C * S1), dev, dtype)
    nq = n + A2.shape[-1] - 1                    # blocks of S2 bank-A outputs, from the first block a step reads
    y = _bank_a(plan, x, dtype, S2 * (plan.loB // S2), S2 * nq)                      # (B, C·S1, S2·nq)
    yq = y.reshape(B, C * S1, nq, S2).permute(0, 2, 1, 3).contiguous()               # (B, nq, C·S1, S2)
    X = F.conv2d(yq.view(B, 1, nq, C * S).permute(0, 3, 1, 2), A2, groups=C * S1)    # (B, C·S, 1, n) chan.-last
    inv = _compand_gain(compand)
    Wt, bias = _on_device(plan, ("unfolded", inv), lambda: ((plan.weight * inv).T.contiguous(), plan.bias * inv),
                          dev, dtype)
    z = torch.addmm(bias, X.permute(0, 2, 3, 1).reshape(B * n, C * S), Wt)           # (B·n, latent)
    z = _edge_latents(_result(z.view(B, n, -1).transpose(1, 2)), bias, plan.pad).contiguous()
    return _compand_scaled(z, compand)


def _conv_autotune(device: torch.device):
    """cuDNN benchmark mode for our few odd conv shapes (its heuristics pick slow kernels for them)."""
    b = torch.backends.cudnn
    if device.type != "cuda" or not b.enabled:
        return contextlib.nullcontext()
    return b.flags(enabled=True, benchmark=True, deterministic=b.deterministic, allow_tf32=b.allow_tf32)


# -- public ------------------------------------------------------------------------------------------
def default_method(device: torch.device) -> str:
    """The 2D formulation measured fastest at float32 accuracy (benchmarks/RESULTS.md, encode throughput).

    CPU: ``poly`` (channels-last oneDNN convs; 2 threads, RGB 16x: about 1.5x ``sep``, no slower for the
    other shapes measured).  CUDA: ``triton_tile`` when Triton imports (tf32x3 tensor cores, independent of
    the TF32 flags; on an H200, 128×3×256² uint8: 0.82 ms vs 1.14 ms for ``triton``, 1.78 ms for ``sep``),
    else ``sep`` (``poly`` is untimed on GPUs).
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "triton_tile" if _triton_available() else "sep"
    return "poly"


@lru_cache(maxsize=None)
def _triton_available() -> bool:
    try:
        from . import _fastencode_triton  # noqa: F401
        return True
    except Exception:  # no triton, or no usable backend
        return False


def _fused_companding(codec: nn.Module, method: str) -> tuple[float, float] | None:
    """(scale, latent_max) when the Triton and ``poly`` paths can apply the bottleneck's companding themselves."""
    comp = codec.encoder[1]
    if (method in TRITON_METHODS or method == "poly") and _linear_1x1(codec) is not None and type(comp) is ToUniform:
        return float(comp.scale), float(comp.latent_max)
    return None


def fast_wavelet_analysis(codec: nn.Module, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``codec.wavelet_analysis(x, J=codec.J)`` through the composite filters (float32 result)."""
    dtype = dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
    if codec.ndim == 2:
        return _encode_2d(codec, x, dtype, "sep", transform_only=True)
    return _encode_1d(codec, x, dtype, transform_only=True)


def _reference_encode(codec: nn.Module, x: torch.Tensor, quantize: bool) -> torch.Tensor:
    """The per-level path (``wavelet_analysis`` + ``encoder[0:2]``), uint8 accepted."""
    if x.dtype == torch.uint8:
        x = x.to(next(codec.encoder[0].parameters()).dtype) / 255 - 0.5
    z = codec.encoder[0:2](codec.wavelet_analysis(x, J=codec.J))
    return torch.round(z) if quantize else z


def fast_encode(codec: nn.Module, x: torch.Tensor, quantize: bool = True, dtype: torch.dtype | None = None,
                method: str | None = None) -> torch.Tensor:
    """``codec.encode(x, quantize)`` through the folded fast path.

    ``x``: float in [-0.5, 0.5], or uint8 pixels/samples meaning ``x/255 - 0.5``.  ``dtype``: compute
    precision of the convolutions (float32 default; bfloat16/float16 accumulate in float32 on CUDA; on the
    CPU they run in float32, since oneDNN's bf16 convs of 1×k kernels return wrong values on AMX CPUs);
    the bottleneck always runs in float32.  ``method``: 2D formulation, see :data:`METHODS_2D`; default
    :func:`default_method`.  1D float32 on CUDA runs the per-level path (on an H100 walloc's per-level
    transform beat the level-split convs in float32).
    """
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise TypeError(f"encode expects a float batch in [-0.5, 0.5] or uint8 pixels, got {x.dtype}")
    dtype = dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
    if x.device.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
        dtype = torch.float32
    method = method or default_method(x.device)
    if method not in METHODS_2D:
        raise ValueError(f"unknown fast-encode method {method!r}; choose from {METHODS_2D}")
    with _conv_autotune(x.device):
        if codec.ndim == 2:
            compand = _fused_companding(codec, method)
            y = _encode_2d(codec, x, dtype, method, compand=compand)
            if compand is not None:   # the Triton kernel / poly path applied encoder[1] already
                return y.round_() if quantize else y
        elif x.is_cuda and dtype == torch.float32:
            # measured: on an H100 the level-split convs ran at 0.69x walloc's per-level transform in float32
            return _reference_encode(codec, x, quantize)
        else:
            unfolded = _unfolded_1d(codec, x)
            compand = _fused_companding(codec, "poly") if unfolded else None
            y = _encode_1d(codec, x, dtype, compand=compand, unfolded=unfolded)
            if compand is not None:   # the unfolded 1D path applied encoder[1] already
                return y.round_() if quantize else y
    if _linear_1x1(codec) is None:
        y = codec.encoder[0](y.to(next(codec.encoder[0].parameters()).dtype))
    z = codec.encoder[1](y)
    return torch.round(z) if quantize else z
