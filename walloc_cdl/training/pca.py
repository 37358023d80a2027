"""Closed-form start for WaLLoC training: PCA (KLT) of the wavelet-packet coefficients.

Each spatial position (time step) of the packet transform is a vector of ``C·4^J`` (``C·2^J``) band
coefficients.  The KLT keeps the ``latent_dim`` directions of largest variance, which is the optimal
*linear* encoder for MSE, and its transpose is the matching linear decoder.  The gain ``g`` in front of
the projection sets the quantisation step: near zero ``ToUniform`` has slope
``2·latent_max·φ(0)/scale``, so rounding the latent is a uniform quantiser of step
``Δ = 1 / (g · slope)`` in transform units.  By default ``Δ`` is chosen so that the quantisation noise
on the kept components totals ``rho`` times the truncation error (the variance of the dropped ones):
``rho`` trades rate for distortion with the same meaning at every dimension.

Usage::

    pca = wavelet_pca(codec, batches)                # batches of x in [-0.5, 0.5]
    init_linear_encoder(codec, pca, step=pca.step_for(rho=0.1))
    x_hat = linear_reconstruction(codec, pca, x)     # what the closed form alone gives
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from ..codec.bottleneck import companding_scale
from ..codec.model import Codec1D, Codec2D


@dataclass
class WaveletPCA:
    """Mean ``(K,)``, components ``(K, K)`` (columns, by decreasing variance) and variances ``(K,)``."""

    mean: torch.Tensor
    components: torch.Tensor
    variances: torch.Tensor
    n_samples: int
    latent_dim: int

    def step_for(self, rho: float = 0.1) -> float:
        """Quantisation step Δ whose noise on the kept components is ``rho`` x the truncation error.

        latent_dim · Δ²/12 = rho · (sum of the dropped variances): the closed form then loses
        10·log10(1 + rho) dB to quantisation (before companding), whatever the dimensions.
        """
        dropped = float(self.variances[self.latent_dim:].sum().clamp_min(1e-12))
        return math.sqrt(12.0 * rho * dropped / self.latent_dim)

    def truncation_mse(self) -> float:
        """Per-coefficient MSE of dropping the weaker components (no quantisation), transform domain."""
        return float(self.variances[self.latent_dim:].sum() / self.variances.numel())


def _flatten(X: torch.Tensor) -> torch.Tensor:
    """(B, K, *spatial) -> (N, K) samples."""
    return X.transpose(0, 1).reshape(X.shape[1], -1).T


@torch.no_grad()
def wavelet_pca(codec: Codec1D | Codec2D, batches: Iterable[torch.Tensor]) -> WaveletPCA:
    """KLT of the codec's packet coefficients over all positions of ``batches`` (float64 accumulation)."""
    K = codec.channels * codec.freq_bands
    s1 = torch.zeros(K, dtype=torch.float64)
    s2 = torch.zeros(K, K, dtype=torch.float64)
    n = 0
    for x in batches:
        X = codec.wavelet_analysis(x.float(), J=codec.J)
        if X.shape[1] != K:
            raise ValueError(f"batch gives {X.shape[1]} bands, codec expects {K} (channels {codec.channels})")
        f = _flatten(X).double().cpu()
        s1 += f.sum(0)
        s2 += f.T @ f
        n += f.shape[0]
    if n <= K:
        raise ValueError(f"PCA of {K} bands needs more than {K} positions; got {n} (give more or larger crops)")
    mean = s1 / n
    cov = s2 / n - torch.outer(mean, mean)
    var, vec = torch.linalg.eigh(cov)
    order = torch.argsort(var, descending=True)
    return WaveletPCA(mean.float(), vec[:, order].float(), var[order].clamp_min(0).float(), n, codec.latent_dim)


def companding_slope(latent_bits: int) -> float:
    """d ToUniform / dx at 0: latents per transform unit for a unit gain."""
    scale = companding_scale(latent_bits)
    latent_max = 2 ** (latent_bits - 1) - 1 + 0.5 - 1e-3
    return 2 * latent_max / (scale * math.sqrt(2 * math.pi))


def _encoder_conv(codec: Codec1D | Codec2D) -> torch.nn.Module:
    conv = codec.encoder[0]
    if not isinstance(conv, (torch.nn.Conv1d, torch.nn.Conv2d)) or any(k != 1 for k in conv.kernel_size):
        raise ValueError("the closed-form start and gain changes need the lightweight (1×1 conv) encoder: "
                         "lightweight_encode=True")
    return conv


def _unpad(codec: Codec1D | Codec2D, conv: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Drop the steps walloc's 1D 1×1 conv adds with ``padding=1`` (they see only the bias)."""
    p = conv.padding[0] if isinstance(codec, Codec1D) else 0
    return y[..., p: y.shape[-1] - p] if p else y


def encoder_gain(codec: Codec1D | Codec2D, step: float) -> float:
    """Gain g in front of the orthonormal projection that gives quantisation step ``step``."""
    return 1.0 / (step * companding_slope(codec.latent_bits))


@torch.no_grad()
def init_linear_encoder(codec: Codec1D | Codec2D, pca: WaveletPCA, step: float) -> float:
    """Set the 1×1 encoder to ``g · U_kᵀ (X - mean)``; returns the gain g."""
    conv = _encoder_conv(codec)
    g = encoder_gain(codec, step)
    U = pca.components[:, : codec.latent_dim]
    w = (g * U.T).to(conv.weight)
    conv.weight.copy_(w.reshape(conv.weight.shape))
    conv.bias.copy_(-(w @ pca.mean.to(w)))
    return g


@torch.no_grad()
def channel_peaks(codec: Codec1D | Codec2D, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Largest |latent| per channel before companding (the 1×1 encoder's output) over ``batches``."""
    conv = _encoder_conv(codec)
    peak = torch.zeros(conv.weight.shape[0])
    for x in batches:
        y = _unpad(codec, conv, conv(codec.wavelet_analysis(x.float(), J=codec.J)))
        peak = torch.maximum(peak, y.transpose(0, 1).reshape(y.shape[1], -1).abs().amax(1).cpu())
    return peak


@torch.no_grad()
def cap_gains(codec: Codec1D | Codec2D, batches: Iterable[torch.Tensor], headroom: float = 2.5) -> int:
    """Lower the gain of latent channels whose peaks would saturate the companding; returns how many.

    The Normal-CDF companding assumes Gaussian latents, but audio is heavy-tailed: a loud bass note sits
    ~15 standard deviations out, where ``ToUniform`` is flat and rounding destroys it (a held-out bass
    clip: 61.9 dB unquantised → 28.5 dB).  Each channel's gain is scaled down so that its largest
    value over ``batches`` lands at ``headroom`` companding scales (Φ(2.5) = 0.994); channels that
    already fit are left alone, so Gaussian-like data (photos) is unchanged.  Run after
    :func:`init_linear_encoder`; the decoder init then follows the new weights.
    """
    conv = _encoder_conv(codec)
    peak = channel_peaks(codec, batches)
    limit = headroom * companding_scale(codec.latent_bits)
    factor = torch.where(peak > limit, limit / peak.clamp_min(1e-12), torch.ones_like(peak)).to(conv.weight)
    shape = (-1, *([1] * (conv.weight.ndim - 1)))
    conv.weight.mul_(factor.reshape(shape))
    conv.bias.mul_(factor)
    return int((factor < 1).sum())


@torch.no_grad()
def scale_latent_gain(codec: Codec1D | Codec2D, factor: float) -> None:
    """Multiply a trained codec's encoder gain by ``factor`` and divide its decoder's input by it.

    The quantisation step in transform units shrinks by ``factor`` (about log2(factor) more bits per latent
    entry), while the unquantised path encode → decode stays the same function: ``ToNormal`` undoes the
    companding exactly, so the decoder's first conv sees ``factor`` × its old input and is scaled back.
    This moves a trained codec along its rate-distortion curve without retraining from scratch; a short
    decoder fine-tune then adapts the decoder to the smaller quantisation noise.  Needs the lightweight
    (1×1 conv) encoder; the companding's tails clip a little sooner (values beyond ~3.7 companding scales).
    """
    if not factor > 0:
        raise ValueError(f"gain factor must be > 0, got {factor}")
    conv = _encoder_conv(codec)
    conv.weight.mul_(factor)
    conv.bias.mul_(factor)
    first = codec.decoder[1]
    first = first.conv_in if hasattr(first, "conv_in") else first.conv1
    if hasattr(first, "weight_g"):  # weight-normed conv: weight = g · v/||v||, so scaling g scales the weight
        first.weight_g.div_(factor)
    else:
        first.weight.div_(factor)


@torch.no_grad()
def init_post_filter(codec: Codec1D) -> None:
    """The 1D post filter starts as the identity (a centred unit impulse), not a random 129-tap filter."""
    if getattr(codec, "post_filter", False):
        codec.post.weight.zero_()
        mid = codec.post.kernel_size[0] // 2
        for c in range(codec.channels):
            codec.post.weight[c, c, mid] = 1.0
        codec.post.bias.zero_()


@torch.no_grad()
def linear_reconstruction(codec: Codec1D | Codec2D, pca: WaveletPCA, x: torch.Tensor) -> torch.Tensor:
    """Closed-form codec output: encode, round, undo the companding, project back with Uᵀ, synthesise.

    Uses ``codec.encoder`` as it is (so after :func:`init_linear_encoder` this is the PCA codec).
    """
    X = codec.wavelet_analysis(x, J=codec.J)
    conv = _encoder_conv(codec)
    z = _unpad(codec, conv, torch.round(codec.encoder[1](conv(X))))
    v = codec.decoder[0](z)  # ToNormal
    w = conv.weight.reshape(conv.weight.shape[0], -1)
    # least squares: Y = mean + W⁺ (v - b - W mean); the dropped components stay at their mean
    pinv = torch.linalg.pinv(w.double()).float()
    mean = pca.mean.to(v)
    shape = (1, -1, *([1] * (v.ndim - 2)))
    r = v - conv.bias.reshape(shape) - (w @ mean).reshape(shape)
    Y = torch.einsum("kc,bc...->bk...", pinv, r) + mean.reshape(shape)
    return codec.clamp(codec.wavelet_synthesis(Y, J=codec.J))


def _set_wn(conv: torch.nn.Module, weight: torch.Tensor) -> None:
    """Set a weight-normed conv (weight = g · v / ||v||, norm over all dims but 0) to ``weight``.

    Rows that are all zero get g = 0 and a small random direction, so they stay trainable.
    """
    norms = weight.reshape(weight.shape[0], -1).norm(dim=1)
    v = weight.clone()
    dead = norms == 0
    v[dead] = 1e-3 * torch.randn_like(v[dead])
    conv.weight_v.data.copy_(v)
    conv.weight_g.data.copy_(norms.reshape(conv.weight_g.shape))


@torch.no_grad()
def init_linear_decoder(codec: Codec1D, pca: WaveletPCA, snake_beta: float = 1e3) -> None:
    """Make the Oobleck decoder start as the closed-form linear decoder (residual branches at zero).

    Main path: conv1 copies the latents into the first ``latent_dim`` channels, the two stride-1
    transposed convs pass them on (together shifting by the one step the encoder's ``padding=1`` added),
    the main-path Snakes are made near-linear (``sin²(x)/beta``, beta = ``snake_beta``), and conv2 holds
    ``W⁺`` (the pseudo-inverse of the encoder's projection).  Each residual unit's last conv starts at
    zero, so training adds non-linear corrections to a codec that already works.  The component of the
    data mean outside the kept subspace is lost (conv2 has no bias); for audio that mean is ~0.
    """
    from ..codec.nets import OobleckDecoder

    dec = codec.decoder[1]
    if not isinstance(dec, OobleckDecoder) or len(dec.block) != 2:
        raise ValueError("linear decoder init supports walloc's Codec1D decoder (two stride-1 Oobleck blocks)")
    k = codec.latent_dim
    conv = _encoder_conv(codec)
    W = conv.weight.reshape(k, -1)
    P = torch.linalg.pinv(W.double()).float()  # (bands, k)
    # conv1: latents -> first k channels (centre tap); bias -b turns v into W(X - 0) + ... (see docstring)
    w1 = torch.zeros_like(dec.conv1.weight_v)
    w1[torch.arange(k), torch.arange(k), w1.shape[-1] // 2] = 1.0
    _set_wn(dec.conv1, w1)
    dec.conv1.bias.copy_(torch.cat([-conv.bias, conv.bias.new_zeros(dec.conv1.bias.numel() - k)]))
    for i, block in enumerate(dec.block):
        wt = torch.zeros_like(block.conv_t1.weight_v)  # (in, out, 2): y[t] = w0 x[t+1] + w1 x[t]
        wt[torch.arange(k), torch.arange(k), 0 if i == 0 else 1] = 1.0
        _set_wn(block.conv_t1, wt)
        block.conv_t1.bias.zero_()
        block.snake1.beta.fill_(math.log(snake_beta))
        for unit in (block.res_unit1, block.res_unit2, block.res_unit3):
            unit.conv2.weight_g.zero_()
            unit.conv2.bias.zero_()
    dec.snake1.beta.fill_(math.log(snake_beta))
    w2 = torch.zeros_like(dec.conv2.weight_v)
    w2[:, :, w2.shape[-1] // 2] = P
    _set_wn(dec.conv2, w2)
