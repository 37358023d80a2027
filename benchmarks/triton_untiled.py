"""The untiled Triton pass W (one padded row per program, each output's K taps gathered), measured against
the library's tiled kernel in ``encode_throughput.py``; pass H is the library's.

    y = encode_2d_triton_untiled(plan, x, S, scale, dtype)   # via fastencode_variants.encode_variant(..., "triton")
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from walloc_cdl.codec.fast.plan import _on_device
from walloc_cdl.codec.fast.triton import _pass_h, _size_class, triton_weights


@triton.jit
def _pass_w(x_ptr, w_ptr, b_ptr, y_ptr, H, W, Hp, n_out, lo, K,
            S: tl.constexpr, KP: tl.constexpr, NB: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr):
    row = tl.program_id(0)                     # (image·channel, padded row)
    img = row // Hp
    hp = row % Hp
    h = ((hp + lo) % H + H) % H                # wrapped source row
    k = tl.program_id(1) * BK + tl.arange(0, BK)
    t = tl.arange(0, KP)
    col = ((S * k[:, None] + lo + t[None, :]) % W + W) % W
    m = (k[:, None] < n_out) & (t[None, :] < K)
    a = tl.load(x_ptr + (img * H + h) * W + col, mask=m, other=0).to(tl.float32)
    wt = tl.load(w_ptr + t[:, None] * NB + tl.arange(0, NB)[None, :])
    acc = tl.dot(a, wt, input_precision=PREC) + tl.load(b_ptr + tl.arange(0, NB))[None, :]
    band = tl.arange(0, NB)
    out = y_ptr + ((img * S + band[None, :]) * Hp + hp) * n_out + k[:, None]
    tl.store(out, acc, mask=(k[:, None] < n_out) & (band[None, :] < S))



def encode_2d_triton_untiled(plan, x: torch.Tensor, S: int, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """Latents before the bottleneck (B, L, H/S, W/S), float32 (no batch splitting: benchmark sizes only)."""
    prec = "tf32x3" if dtype == torch.float32 else "ieee" if dtype == torch.float64 else "tf32"
    wt, bw, p, bp = _on_device(plan, ("triton", scale), lambda: triton_weights(plan.MW, plan.proj, plan.bias, S, scale),
                               x.device, torch.float32)
    B, C, H, W = x.shape
    K, L, lo = plan.MW.shape[1], plan.proj.shape[0], plan.lo
    h, w = H // S, W // S
    Hp = S * (h - 1) + K
    KP, NB = wt.shape
    x = x.contiguous()
    y = torch.empty(B * C, S, Hp, w, dtype=torch.float32, device=x.device)
    BK = 32
    _pass_w[(B * C * Hp, triton.cdiv(w, BK))](x, wt, bw, y, H, W, Hp, w, lo, K, S=S, KP=KP, NB=NB, BK=BK, PREC=prec)
    z = torch.empty(B, L, h, w, dtype=torch.float32, device=x.device)
    _pass_h[lambda meta: (B, triton.cdiv(h * w, meta["BM"]))](
        y, p, bp, z, C * S, Hp, h, w, L, 1.0, 1.0, _size_class(B * h * w), S=S, KP=KP, LP=bp.shape[0], PREC=prec,
        COMPAND=False)
    return z
