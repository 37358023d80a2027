"""Fast-encode formulations measured in ``encode_throughput.py`` but not used by ``codec.encode``.

``sep_mm`` GEMMs along W then a conv along H; ``mm`` GEMMs for both passes (block-Toeplitz); ``s2d``
space-to-depth then one stride-1 conv (C·4^J -> latent_dim); ``dense`` one strided 2D conv with the full
composite kernel; ``triton`` the untiled Triton pass W (the library uses the tiled one).  They share the
library's plans (``walloc_cdl.codec.fast.plan``), so they compute the same latents.

    z = encode_variant(codec, x, "mm")          # (B, latent_dim, H/2^J, W/2^J) before rounding
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))     # triton_untiled, beside this file

from walloc_cdl.codec.fast import fast_encode  # noqa: E402
from walloc_cdl.codec.fast.plan import (_cached_plan, _pads, _Plan2D, _plan_2d, _result,  # noqa: E402
                                        banded_matrix, periodic_pad)

VARIANTS = ("sep_mm", "mm", "s2d", "dense", "triton")


def _pass_w_mm(xp: torch.Tensor, MW: torch.Tensor, lo_pad: int, S: int, n_out: int,
               bias: torch.Tensor | None) -> torch.Tensor:
    """Composite bank along W as two GEMMs: (N, Hp, Wp) -> (N, S, Hp, n_out)."""
    N, Hp, Wp = xp.shape
    K = MW.shape[1]
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


def _encode_2d_sep_mm(plan: _Plan2D, x: torch.Tensor, dtype: torch.dtype, S: int, scale: float) -> torch.Tensor:
    B, C, H, W = x.shape
    h, w = H // S, W // S
    dev = x.device
    M = plan.MW
    K = M.shape[1]
    xp = periodic_pad(x, [_pads(H, h, S, K, plan.lo), _pads(W, w, S, K, plan.lo)]).to(dtype)
    Hp, Wp = xp.shape[-2:]
    bias_w = (-0.5 * M.sum(1)).to(dev, dtype) if scale != 1.0 else None
    y = _pass_w_mm(xp.reshape(B * C, Hp, Wp), (M * scale).to(dev, dtype), plan.lo, S, w, bias_w)
    y = y.reshape(B, C * S, Hp, w)
    z = F.conv2d(y, plan.proj.unsqueeze(-1).to(dev, dtype), plan.bias.to(dev, dtype), stride=(S, 1))
    return _result(z)


@torch.no_grad()
def encode_variant(codec: torch.nn.Module, x: torch.Tensor, method: str, quantize: bool = False,
                   dtype: torch.dtype | None = None) -> torch.Tensor:
    """``codec.encode(x, quantize)`` by one of ``VARIANTS`` (or any library method, passed through)."""
    if method not in VARIANTS:
        return fast_encode(codec, x, quantize=quantize, dtype=dtype, method=method)
    plan = _cached_plan(codec, _plan_2d)
    if plan.proj is None:
        raise ValueError(f"method {method!r} needs a lightweight (1x1 conv) encoder")
    dtype = dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
    S = 2 ** codec.J
    scale = 1 / 255 if x.dtype == torch.uint8 else 1.0
    if method == "triton":
        from triton_untiled import encode_2d_triton_untiled

        y = encode_2d_triton_untiled(plan, x, S, scale, dtype)
    else:
        fn = {"sep_mm": _encode_2d_sep_mm, "mm": _encode_2d_mm, "s2d": _encode_2d_s2d}.get(method)
        y = fn(plan, x, dtype, S, scale) if fn else _encode_2d_dense(codec, plan, x, dtype, scale)
    z = codec.encoder[1](y)
    return torch.round(z) if quantize else z
