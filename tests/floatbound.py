"""Tolerances that follow from floating-point arithmetic, not from what one CPU happened to produce.

A float sum of n terms computed in any order is off by at most ``γ`` times the size of its partial sums.
The worst case is ``γ = n·u`` (u the unit roundoff); for rounding errors that behave like independent
zero-mean variables (Higham & Mary, "A new approach to probabilistic rounding error analysis", SIAM J.
Sci. Comput. 2019) ``γ = λ·√n·u`` holds with probability at least ``1 - 2·exp(-λ²/2)`` per entry: with
λ = 8, about one in 10^13.  Different CPUs (vector widths, blockings, Triton block sizes) only reorder
the sums, so a tolerance built this way holds on all of them; one that is a few ulps wide does not.
"""
from __future__ import annotations

import copy
import math

import torch

LAMBDA = 8.0


def gamma(n: int, dtype: torch.dtype = torch.float32, lam: float = LAMBDA) -> float:
    """Relative error bound of a length-n sum in ``dtype``: min(λ√n·u, n·u)."""
    u = torch.finfo(dtype).eps / 2
    worst = n * u / (1 - n * u) if n * u < 1 else math.inf
    return min(lam * math.sqrt(n) * u, worst)


def sum_bound(magnitude: float, n: int, dtype: torch.dtype = torch.float32) -> float:
    """Bound on the error of a sum of n terms whose partial sums stay below ``magnitude``."""
    return gamma(n, dtype) * magnitude


@torch.no_grad()
def _magnitude(codec: torch.nn.Module, x: torch.Tensor, fn) -> float:
    """The size of the values ``fn(codec64, x)`` adds up: its largest output magnitude.

    Partial sums of a near-orthogonal transform stay of the size of its outputs.  uint8 input: folded
    paths compute ``M·u/255 - 0.5·ΣM``, whose partial sums also carry the response to the constant 0.5
    that the bias removes afterwards, so that response is added.
    """
    c = copy.deepcopy(codec).double().eval()
    xf = x.double() / 255 - 0.5 if x.dtype == torch.uint8 else x.double()
    m = fn(c, xf).abs().max().item()
    if x.dtype == torch.uint8:
        m += (fn(c, torch.full_like(xf, 0.5)) - fn(c, torch.zeros_like(xf))).abs().max().item()
    return m


def _analysis(c: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return c.wavelet_analysis(x, J=c.J)


def _linear(c: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return c.encoder[0](c.wavelet_analysis(x, J=c.J))


def _composite_taps(codec: torch.nn.Module) -> int:
    """Length of the J-level composite analysis filter along one axis."""
    return 1 + ((codec.wt.h0_col if codec.ndim == 2 else codec.wt.h0).numel() - 1) * (2 ** codec.J - 1)


def analysis_bound(codec: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float32,
                   computations: int = 1) -> float:
    """Bound on |wavelet_analysis(x) in ``dtype`` - exact| for any formulation (per level or composite)."""
    n = _composite_taps(codec) ** codec.ndim + 2 * codec.J * 16
    return computations * sum_bound(_magnitude(codec, x, _analysis), n, dtype)


def sum_length(codec: torch.nn.Module) -> int:
    """Longest chain of accumulations any formulation of the linear encode uses: the dense composite
    kernel's support (C·K^ndim, K = the J-level composite filter length) plus the transform's levels."""
    return codec.channels * _composite_taps(codec) ** codec.ndim + 2 * codec.J * 16


def encode_bound(codec: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float32,
                 computations: int = 1) -> float:
    """Per-latent bound on |encode(x) in ``dtype`` - exact encode(x)| for a lightweight codec (before
    rounding): the linear part's sum bound times the companding's steepest slope, plus a few units in the
    last place of the companded range for erf.  ``computations``: how many float computations are
    compared against each other (2 for fast vs float32 reference)."""
    bn = codec.encoder[1]
    slope = 2 * bn.latent_max / (bn.scale * math.sqrt(2 * math.pi))
    lin = sum_bound(_magnitude(codec, x, _linear), sum_length(codec), dtype)
    return computations * (slope * lin + 8 * torch.finfo(dtype).eps * bn.latent_max)


def assert_within(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor | float, what: str = "") -> None:
    """|actual - expected| <= bound elementwise, with the worst offender in the message."""
    diff = (actual.double() - expected.double()).abs()
    bound = torch.as_tensor(bound, dtype=torch.float64).expand_as(diff)
    bad = diff > bound
    if bad.any():
        i = int((diff - bound).flatten().argmax())
        raise AssertionError(f"{what}: {int(bad.sum())} of {diff.numel()} entries beyond the float bound; worst "
                             f"|diff| {diff.flatten()[i]:.3g} > bound {bound.flatten()[i]:.3g}")


def assert_rounded_agree(z: torch.Tensor, z_exact: torch.Tensor, bound: float, min_agree: float = 0.999) -> None:
    """Rounded latents equal the exact ones' except where the exact value lies within ``bound`` of a .5 tie
    (there float rounding may go either way, and then by one step), and on at least ``min_agree`` of entries."""
    zr, rr = torch.round(z.double()), torch.round(z_exact.double())
    off = zr != rr
    agree = 1 - off.double().mean().item()
    assert agree >= min_agree, f"rounded latents agree on {agree:.5f} < {min_agree}"
    if off.any():
        frac = z_exact.double()[off] - torch.floor(z_exact.double()[off])
        assert ((frac - 0.5).abs() <= bound).all(), f"a rounded latent differs away from a tie: {frac.tolist()[:5]}"
        assert ((zr - rr)[off].abs() == 1).all()


def companding_inverse_error(dtype: torch.dtype = torch.float32) -> float:
    """Relative error (to the Normal's scale) of ToNormal(ToUniform(y)) in ``dtype``: Φ⁻¹ is ill-conditioned
    in the tails, where ToNormal clips at p = 1e-4; one ulp of p there moves Φ⁻¹ by eps/φ(Φ⁻¹(1e-4))."""
    t = math.sqrt(2) * torch.erfinv(torch.tensor(1 - 2e-4, dtype=torch.float64)).item()
    return torch.finfo(dtype).eps / (math.exp(-t * t / 2) / math.sqrt(2 * math.pi))
