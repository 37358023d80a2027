"""Triton kernels for the 2D fast encode (method ``"triton_tile"`` of :mod:`walloc_cdl.codec.fast`).

Pass W reads the raw batch (uint8 or float) with the periodic wrap done by index arithmetic, so
nothing is padded or cast in memory; pass H reads pass W's float32 bands and applies the composite
H filters and the 1×1 projection at once.  Both are small GEMM tiles on tensor cores with
``input_precision`` "tf32x3" (about float32 accuracy), "tf32" or "ieee".

Pass W is tiled: a block of rows per program, one contiguous input span per block of outputs, multiplied
by a fixed banded matrix (coalesced loads, about twice the multiply-adds, which tensor cores have to spare;
it beat one-row-per-program gathering, now ``benchmarks/triton_untiled.py``, on an H200).  Both kernels
pick their block size and warps with ``triton.autotune`` at the first call of each size class.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .plan import _compand_gain, banded_matrix

_INDEX_LIMIT = 2 ** 31   # flat indices must stay below this (int32 arithmetic in the kernels)
# Block sizes and warps are tuned on the GPU at the first call per (size class, shape constants, dtype): the
# H200 run timed only the hand-picked first entries. Triton's CPU interpreter cannot time, so it runs those.
_TUNE = os.environ.get("TRITON_INTERPRET", "0") != "1"


# (rows BR, warps) of pass W and (positions BM, warps) of pass H; the first of each is what the H200 timed.
# Few options: each costs a compile and ~0.1 s of timing at the first call of every new size class.
PASS_W_OPTIONS = [(64, 4), (128, 4), (128, 8), (256, 8)]
PASS_H_OPTIONS = [(64, 4), (128, 4), (128, 8)]


def _tuned(key: list[str], block: str, options: list[tuple[int, int]]):
    """``triton.autotune`` over (block size, warps) options; the first option alone when not tuning."""
    configs = [triton.Config({block: b}, num_warps=w) for b, w in (options if _TUNE else options[:1])]
    return triton.autotune(configs=configs, key=key)


def _size_class(n: int) -> int:
    """Tuning bucket of a problem size (powers of two), so varied image sizes share a few tunings."""
    return int(n).bit_length()


@_tuned(["size_class", "S", "BK", "NIN", "PREC"], "BR", PASS_W_OPTIONS)
@triton.jit
def _pass_w_tile(x_ptr, a_ptr, b_ptr, y_ptr, R, H, W, Hp, n_out, lo, size_class,
                 S: tl.constexpr, BK: tl.constexpr, NIN: tl.constexpr, CH: tl.constexpr, BR: tl.constexpr,
                 PREC: tl.constexpr):
    NC: tl.constexpr = S * BK
    r = tl.program_id(0) * BR + tl.arange(0, BR)   # rows (image·channel, padded row)
    img = r // Hp
    hp = r % Hp
    h = ((hp + lo) % H + H) % H
    k0 = tl.program_id(1) * BK                     # first output position of the block
    c = tl.arange(0, NC)                           # (band, position) as band * BK + position
    acc = tl.zeros((BR, NC), dtype=tl.float32)
    for n0 in tl.static_range(0, NIN, CH):         # input span [S k0 + lo, S k0 + lo + NIN), wrapped
        n = n0 + tl.arange(0, CH)
        col = ((S * k0 + lo + n) % W + W) % W
        a = tl.load(x_ptr + (img * H + h)[:, None] * W + col[None, :], mask=(r < R)[:, None], other=0)
        wt = tl.load(a_ptr + n[:, None] * NC + c[None, :])
        acc += tl.dot(a.to(tl.float32), wt, input_precision=PREC)
    acc += tl.load(b_ptr + c)[None, :]
    k = k0 + c % BK
    out = y_ptr + ((img[:, None] * S + (c // BK)[None, :]) * Hp + hp[:, None]) * n_out + k[None, :]
    tl.store(out, acc, mask=(r < R)[:, None] & (k < n_out)[None, :])


@_tuned(["size_class", "S", "KP", "LP", "PREC", "COMPAND"], "BM", PASS_H_OPTIONS)
@triton.jit
def _pass_h(y_ptr, p_ptr, b_ptr, z_ptr, CS, Hp, h, w, L, inv, lm, size_class,
            S: tl.constexpr, KP: tl.constexpr, LP: tl.constexpr, BM: tl.constexpr, PREC: tl.constexpr,
            COMPAND: tl.constexpr):
    b = tl.program_id(0)
    pos = tl.program_id(1) * BM + tl.arange(0, BM)          # (i, j) output positions, j fastest
    i = pos // w
    j = pos % w
    t = tl.arange(0, KP)
    valid = pos < h * w
    acc = tl.zeros((BM, LP), dtype=tl.float32)
    for cs in range(CS):
        ptr = y_ptr + ((b * CS + cs) * Hp + S * i[:, None] + t[None, :]) * w + j[:, None]
        a = tl.load(ptr, mask=valid[:, None] & (S * i[:, None] + t[None, :] < Hp), other=0.0)
        p = tl.load(p_ptr + (cs * KP + t[:, None]) * LP + tl.arange(0, LP)[None, :])
        acc += tl.dot(a, p, input_precision=PREC)
    o = tl.arange(0, LP)
    acc += tl.load(b_ptr + o)[None, :]
    if COMPAND:                                 # ToUniform: 2·lm·(Φ(z/scale) - 1/2) = lm·erf(z/(scale·√2))
        acc = lm * tl.math.erf(acc * inv)
    out = z_ptr + ((b * L + o[None, :]) * h + i[:, None]) * w + j[:, None]
    tl.store(out, acc, mask=valid[:, None] & (o[None, :] < L))


def _pow2(n: int, least: int = 16) -> int:
    return max(least, 1 << (n - 1).bit_length())


def triton_weights(MW: torch.Tensor, proj: torch.Tensor, bias: torch.Tensor, S: int, scale: float) -> tuple:
    """Zero-padded float32 operands of both kernels (on the host; the caller keeps device copies)."""
    K, L, CS = MW.shape[1], proj.shape[0], proj.shape[1]
    KP, NB, LP = _pow2(K), _pow2(S), _pow2(L)
    wt = torch.zeros(KP, NB, dtype=torch.float64)
    wt[:K, :S] = (MW * scale).T
    bw = torch.zeros(NB, dtype=torch.float64)
    if scale != 1.0:
        bw[:S] = -0.5 * MW.sum(1)
    p = torch.zeros(CS, KP, LP, dtype=torch.float64)
    p[:, :K, :L] = proj.permute(1, 2, 0)
    bp = torch.zeros(LP, dtype=torch.float64)
    bp[:L] = bias
    return wt, bw, p, bp


def tile_shape(S: int, K: int) -> tuple[int, int]:
    """(BK, NIN) of ``_pass_w_tile``: BK outputs per block (S·BK >= 16 columns), NIN inputs they span."""
    BK = max(1, 64 // S, -(-16 // S))
    return BK, _pow2(S * (BK - 1) + K)


def tile_weights(MW: torch.Tensor, S: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Banded (NIN, S·BK) matrix and (S·BK,) bias of ``_pass_w_tile``: column (band s, position k)
    holds band s's taps at rows S·k .. S·k + K - 1 of the block's input span."""
    BK, NIN = tile_shape(S, MW.shape[1])
    A = banded_matrix((MW * scale).double().unsqueeze(1), S, BK, NIN)       # (1, NIN, S, BK)
    b = (-0.5 * MW.sum(1) if scale != 1.0 else torch.zeros(S, dtype=torch.float64)).repeat_interleave(BK)
    return A.reshape(NIN, S * BK), b


def encode_2d_triton(x: torch.Tensor, weights: tuple, lo: int, K: int, L: int, S: int,
                     precision: str = "tf32x3", tile: tuple | None = None,
                     compand: tuple[float, float] | None = None) -> torch.Tensor:
    """Latents before the bottleneck, (B, L, H/S, W/S) float32; ``weights`` from :func:`triton_weights`
    (pass H's), ``tile`` from :func:`tile_weights` (pass W's); ``compand`` = (scale, latent_max) applies
    the bottleneck's companding in pass H's epilogue (saves the separate elementwise kernels)."""
    wt, bw, p, bp = weights
    B, C, H, W = x.shape
    h, w = H // S, W // S
    Hp = S * (h - 1) + K
    per_image = C * max(H * W, S * Hp * w)         # largest flat index per image (input or pass-W bands)
    if B * per_image >= _INDEX_LIMIT:              # the kernels index in int32: split the batch
        if per_image >= _INDEX_LIMIT:
            raise ValueError(f"one {C}×{H}×{W} image is too large for the Triton encode (int32 indexing); "
                             "use method='sep'")
        n = (_INDEX_LIMIT - 1) // per_image
        return torch.cat([encode_2d_triton(x[i:i + n], weights, lo, K, L, S, precision, tile, compand)
                          for i in range(0, B, n)])
    KP = wt.shape[0]
    LP = bp.shape[0]
    dev = x.device
    x = x.contiguous()
    y = torch.empty(B * C, S, Hp, w, dtype=torch.float32, device=dev)
    A, bA = tile
    BK, NIN = tile_shape(S, K)
    R = B * C * Hp
    _pass_w_tile[lambda meta: (triton.cdiv(R, meta["BR"]), triton.cdiv(w, BK))](
        x, A, bA, y, R, H, W, Hp, w, lo, _size_class(R * w), S=S, BK=BK, NIN=NIN, CH=min(NIN, 64), PREC=precision)
    z = torch.empty(B, L, h, w, dtype=torch.float32, device=dev)
    inv, lm = (_compand_gain(compand), compand[1]) if compand else (1.0, 1.0)
    _pass_h[lambda meta: (B, triton.cdiv(h * w, meta["BM"]))](
        y, p, bp, z, C * S, Hp, h, w, L, inv, lm, _size_class(B * h * w), S=S, KP=KP, LP=LP, PREC=precision,
        COMPAND=compand is not None)
    return z
