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
from functools import lru_cache

import torch
import torch.nn as nn

from ..bottleneck import ToUniform
from .cpu import _encode_1d, _encode_2d_poly, _encode_2d_sep, _unfolded_1d
from .plan import _cached_plan, _linear_1x1, _on_device, _plan_2d, composite_filters, periodic_pad

METHODS_2D = ("poly", "sep", "triton_tile")
"""2D formulations ``codec.encode`` uses: ``poly`` channels-last, pass W as a stride-1 conv over the 2^J
polyphase components of each row (the wrap-pad fused into that reorder), then pass H (the CPU default);
``sep`` two strided convs (CUDA without Triton); ``triton_tile`` two fused Triton kernels with a tiled
pass W (the CUDA default; float32 runs them in tf32x3, about float32 accuracy).  Other formulations that
were measured live in ``benchmarks/fastencode_variants.py``."""
TRITON_METHODS = ("triton_tile",)


def _encode_2d(codec: nn.Module, x: torch.Tensor, dtype: torch.dtype, method: str,
               transform_only: bool = False, compand: tuple[float, float] | None = None) -> torch.Tensor:
    """The 2D fast encode by ``method`` (before the bottleneck unless ``compand`` folds it in)."""
    plan = _cached_plan(codec, _plan_2d)
    J, S = codec.J, 2 ** codec.J
    scale = 1 / 255 if x.dtype == torch.uint8 else 1.0     # uint8 is folded into pass W
    if method in TRITON_METHODS and plan.proj is not None and not transform_only:
        from .triton import encode_2d_triton, tile_weights, triton_weights
        prec = "tf32x3" if dtype == torch.float32 else "ieee" if dtype == torch.float64 else "tf32"
        weights = _on_device(plan, ("triton", scale), lambda: triton_weights(plan.MW, plan.proj, plan.bias, S, scale),
                             x.device, torch.float32)
        tile = _on_device(plan, ("triton_tile", scale), lambda: tile_weights(plan.MW, S, scale), x.device,
                          torch.float32)
        return encode_2d_triton(x, weights, plan.lo, plan.MW.shape[1], plan.proj.shape[0], S, prec, tile, compand)
    if method == "poly" and plan.proj is not None and not transform_only:
        return _encode_2d_poly(plan, x, dtype, S, scale, compand)
    return _encode_2d_sep(plan, x, dtype, J, transform_only)


def _conv_autotune(device: torch.device):
    """cuDNN benchmark mode for our few odd conv shapes (its heuristics pick slow kernels for them)."""
    b = torch.backends.cudnn
    if device.type != "cuda" or not b.enabled:
        return contextlib.nullcontext()
    return b.flags(enabled=True, benchmark=True, deterministic=b.deterministic, allow_tf32=b.allow_tf32)


def default_method(device: torch.device) -> str:
    """The 2D formulation measured fastest at float32 accuracy (benchmarks/RESULTS.md, encode throughput).

    CPU: ``poly`` (channels-last oneDNN convs).  CUDA: ``triton_tile`` when Triton imports (tf32x3 tensor
    cores, independent of the TF32 flags), else ``sep`` (``poly`` is untimed on GPUs).
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "triton_tile" if _triton_available() else "sep"
    return "poly"


@lru_cache(maxsize=None)
def _triton_available() -> bool:
    try:
        from . import triton  # noqa: F401
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
    if x.dtype == torch.uint8:   # the codec's range (model.to_codec_range), in the encoder's precision
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
    :func:`default_method`.  1D float32 on CUDA runs the per-level path (on a GPU walloc's per-level
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
            # measured on a GPU: the level-split convs ran slower than walloc's per-level transform in float32
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


__all__ = ["fast_encode", "fast_wavelet_analysis", "default_method", "METHODS_2D", "TRITON_METHODS",
           "composite_filters", "periodic_pad"]
