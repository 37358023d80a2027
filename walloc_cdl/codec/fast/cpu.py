"""The torch-conv paths of the fast encode: ``sep`` (two strided convs; also the transform alone and the
CUDA fallback without Triton), ``poly`` (the CPU default, channels-last) and the 1D (audio) paths."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .plan import (_band_order_2d, _cached_plan, _compand_gain, _compand_scaled, _linear_1x1, _on_device, _pads,
                   _Plan1D, _plan_1d, _Plan2D, _result, periodic_pad)


# -- 2D --------------------------------------------------------------------------------------------
def _pass_w(xp: torch.Tensor, MW: torch.Tensor, lo_pad: int, S: int, n_out: int, bias: torch.Tensor | None) -> torch.Tensor:
    """Composite bank along W: (N, Hp, Wp) -> (N, S, Hp, n_out)."""
    N, Hp, Wp = xp.shape
    K = MW.shape[1]
    y = F.conv2d(xp.reshape(N, 1, Hp, Wp), MW.reshape(S, 1, 1, K), bias, stride=(1, S))
    return y[..., :n_out]


def _encode_2d_sep(plan: _Plan2D, x: torch.Tensor, dtype: torch.dtype, J: int, transform_only: bool = False
                   ) -> torch.Tensor:
    """Two strided convs (pass W, then pass H with the projection folded in); or the transform alone."""
    B, C, H, W = x.shape
    S = 2 ** J
    h, w = H // S, W // S
    dev = x.device
    M = plan.MW
    K = M.shape[1]
    uint8 = x.dtype == torch.uint8
    scale = 1 / 255 if uint8 else 1.0
    xp = periodic_pad(x, [_pads(H, h, S, K, plan.lo), _pads(W, w, S, K, plan.lo)]).to(dtype)
    Hp, Wp = xp.shape[-2:]
    bias_w = None
    if uint8:   # (u/255 - 0.5) * M = u * M/255 - 0.5 sum(M)
        bias_w = _on_device(plan, "bias_w", lambda: -0.5 * M.sum(1), dev, dtype)
    MWs = _on_device(plan, ("MW", scale), lambda: M * scale, dev, dtype)
    y = _pass_w(xp.reshape(B * C, Hp, Wp), MWs, plan.lo, S, w, bias_w)
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

    Why (benchmarks/RESULTS.md, encode throughput): oneDNN runs the strided NCHW pass H well below the
    speed of the same conv channels-last, and the strided K-tap pass W below a stride-1 conv of K/2^J taps
    over the 2^J phases; the reorder that makes the phases channels also does the wrap-pad and
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


# -- 1D --------------------------------------------------------------------------------------------
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
