"""WaLLoC codecs: wavelet packet transform -> linear (or small CNN) encoder -> entropy bottleneck.

Jacobellis & Yadwadkar, "Learned Compression for Compressed Learning", DCC 2025.  ``Codec2D`` (images:
grayscale, RGB, multispectral) and ``Codec1D`` (audio: mono, stereo, multichannel) keep the constructor
arguments, submodule layout and state_dict keys of the published ``walloc`` 1.2.1 package, so official
checkpoints load with ``strict=True`` and give the same outputs.  On top of the seed-style access
(``wavelet_analysis``, ``encoder[0:2]``, ``encoder[2]``, ``decoder``, ``wavelet_synthesis``, ``forward``)
they add ``encode`` / ``decode``.

Usage::

    codec = Codec2D(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True)
    z = codec.encode(x)            # x in [-0.5, 0.5], (B, 3, H, W) -> integer-valued (B, 12, H/8, W/8)
    x_hat = codec.decode(z)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bottleneck import Round, ToNormal, ToUniform, companding_scale, latent_max
from .fast import fast_encode
from .nets import KLDecoder, KLEncoder, OobleckDecoder, OobleckEncoder
from .wavelets import DWT1DForward, DWT1DInverse, DWT2DForward, DWT2DInverse


def to_codec_range(x: torch.Tensor) -> torch.Tensor:
    """The codecs' input convention, in one place: uint8 pixels p -> p/255 - 0.5 (float in [-0.5, 0.5]);
    float input is taken to be in that range already."""
    return x.float() / 255 - 0.5 if x.dtype == torch.uint8 else x


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_codec_range` for images: [-0.5, 0.5] -> uint8 pixels (rounded, clamped)."""
    return ((x.float() + 0.5) * 255).round().clamp(0, 255).to(torch.uint8)


class _WaLLoC(nn.Module):
    """Shared behaviour of the 1D and 2D codecs; subclasses set the transform and the networks."""

    ndim: int
    bands_per_level: int

    def _bottleneck(self) -> list[nn.Module]:
        return [ToUniform(companding_scale(self.latent_bits), self.latent_max), Round()]

    def _to_normal(self) -> ToNormal:
        return ToNormal(companding_scale(self.latent_bits), self.latent_max)

    # -- seed-compatible API ---------------------------------------------------------------------
    def analysis_one_level(self, x: torch.Tensor) -> torch.Tensor:
        return self.wt(x)

    def synthesis_one_level(self, X: torch.Tensor) -> torch.Tensor:
        return self.iwt(X)

    def wavelet_analysis(self, x: torch.Tensor, J: int = 3) -> torch.Tensor:
        for _ in range(J):
            x = self.wt(x)
        return x

    def wavelet_synthesis(self, X: torch.Tensor, J: int = 3) -> torch.Tensor:
        for _ in range(J):
            X = self.iwt(X)
        return X

    def _post(self, x_hat: torch.Tensor) -> torch.Tensor:
        return x_hat

    def synthesize(self, X_hat: torch.Tensor) -> torch.Tensor:
        """Signal from wavelet packet coefficients (the decoder's output): ``wavelet_synthesis`` over J
        levels, then the 1D codec's post filter.  Unclamped, unlike :meth:`decode`, so a training loss
        sees what the decoder really produced."""
        return self._post(self.wavelet_synthesis(X_hat, J=self.J))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(clamped reconstruction, pixel/sample MSE, transform-domain MSE), as walloc returns."""
        X = self.wavelet_analysis(x, J=self.J)
        Y = self.encoder(X)
        X_hat = self.decoder(Y)
        x_hat = self._post(self.wavelet_synthesis(X_hat, J=self.J))
        tf_loss = F.mse_loss(X, X_hat)
        return self.clamp(x_hat), F.mse_loss(x, x_hat), tf_loss

    # -- friendlier API --------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, as stored in official ``.json`` files."""
        return dict(self._config)

    @property
    def downsampling(self) -> int:
        """Spatial (temporal) reduction per side: 2^J."""
        return 2 ** self.J

    @property
    def dimensionality_reduction(self) -> float:
        """Input entries per latent entry (ignores the 1D lightweight encoder's two pad steps)."""
        return self.channels * self.freq_bands / self.latent_dim

    def encode(self, x: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """Latents of ``x`` (values in [-0.5, 0.5]): integers if ``quantize`` else the companded reals.

        Unlike ``encoder[2]`` this rounds in training mode too, so it is what a dataset stores.
        Spatial sizes must be multiples of 2^J (see :func:`walloc_cdl.codec.containers.pad_to_multiple`).
        uint8 input means ``x/255 - 0.5``.  Runs the folded fast path (:mod:`walloc_cdl.codec.fast`);
        ``encoder[0:2](wavelet_analysis(x))`` stays the reference it is tested against.
        """
        self._check_input(x)
        return fast_encode(self, x, quantize)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [-0.5, 0.5] from (rounded or noisy) latents."""
        x_hat = self._post(self.wavelet_synthesis(self.decoder(z), J=self.J))
        return self.clamp(x_hat)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.ndim + 2:
            raise ValueError(
                f"{type(self).__name__} expects a batch of shape (B, C{', H, W' if self.ndim == 2 else ', T'}),"
                f" got {tuple(x.shape)}"
            )
        if x.shape[1] != self.channels:
            raise ValueError(f"codec has {self.channels} input channels, the batch has {x.shape[1]}")
        m = 2 ** self.J
        bad = [s for s in x.shape[2:] if s % m]
        if bad:
            raise ValueError(
                f"spatial size {tuple(x.shape[2:])} is not a multiple of 2^J = {m}; pad it first "
                "(walloc_cdl.codec.containers.pad_to_multiple) and crop the reconstruction back"
            )


class Codec2D(_WaLLoC):
    """WaLLoC for images: ``channels`` in, ``latent_dim`` latent channels at 1/2^J resolution."""

    ndim = 2

    def __init__(self, channels: int, J: int, Ne: int | None, Nd: int, latent_dim: int, latent_bits: int,
                 lightweight_encode: bool):
        super().__init__()
        self._config = dict(channels=channels, J=J, Ne=Ne, Nd=Nd, latent_dim=latent_dim,
                            latent_bits=latent_bits, lightweight_encode=lightweight_encode)
        self.channels = channels
        self.J = J
        self.freq_bands = 4 ** J
        self.Ne = Ne
        self.Nd = Nd
        self.latent_dim = latent_dim
        self.latent_bits = latent_bits
        self.lightweight_encode = lightweight_encode
        self.latent_max = latent_max(latent_bits)
        self.wt = DWT2DForward()
        self.iwt = DWT2DInverse()
        self.clamp = nn.Hardtanh(min_val=-0.5, max_val=0.5)
        bands = channels * self.freq_bands
        if lightweight_encode:
            first: nn.Module = nn.Conv2d(bands, latent_dim, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0))
        else:
            first = KLEncoder(in_channels=bands, out_channels=latent_dim, block_out_channels=(Ne,),
                              layers_per_block=2, norm_num_groups=32, double_z=False,
                              mid_block_add_attention=True)
        self.encoder = nn.Sequential(first, *self._bottleneck())
        self.decoder = nn.Sequential(
            self._to_normal(),
            KLDecoder(in_channels=latent_dim, out_channels=bands, block_out_channels=(Nd,),
                      layers_per_block=2, norm_num_groups=32, mid_block_add_attention=True),
        )


class Codec1D(_WaLLoC):
    """WaLLoC for audio: ``channels`` in, ``latent_dim`` latent channels at 1/2^J the sample rate.

    Quirk kept from walloc: the lightweight encoder's 1×1 conv has ``padding=1``, so latents carry
    one extra step at each end (T/2^J + 2 steps, as the Oobleck encoder also gives); the Oobleck
    decoder's two stride-1 transposed convs each drop a step, giving back T/2^J bands.
    """

    ndim = 1

    def __init__(self, channels: int, J: int, Ne: int | None, Nd: int, latent_dim: int, latent_bits: int,
                 lightweight_encode: bool, post_filter: bool):
        super().__init__()
        self._config = dict(channels=channels, J=J, Ne=Ne, Nd=Nd, latent_dim=latent_dim,
                            latent_bits=latent_bits, lightweight_encode=lightweight_encode,
                            post_filter=post_filter)
        self.channels = channels
        self.J = J
        self.freq_bands = 2 ** J
        self.Ne = Ne
        self.Nd = Nd
        self.lightweight_encode = lightweight_encode
        self.post_filter = post_filter
        self.latent_dim = latent_dim
        self.latent_bits = latent_bits
        self.latent_max = latent_max(latent_bits)
        self.wt = DWT1DForward()
        self.iwt = DWT1DInverse()
        self.clamp = nn.Hardtanh(min_val=-0.5, max_val=0.5)
        bands = channels * self.freq_bands
        if lightweight_encode:
            first: nn.Module = nn.Conv1d(bands, latent_dim, kernel_size=1, stride=1, padding=1)
        else:
            first = OobleckEncoder(encoder_hidden_size=latent_dim, audio_channels=bands,
                                   downsampling_ratios=2 * [1], channel_multiples=2 * [Ne // latent_dim])
        self.encoder = nn.Sequential(first, *self._bottleneck())
        self.decoder = nn.Sequential(
            self._to_normal(),
            OobleckDecoder(channels=latent_dim, input_channels=latent_dim, audio_channels=bands,
                           upsampling_ratios=2 * [1], channel_multiples=2 * [Nd // latent_dim]),
        )
        if post_filter:
            self.post = nn.Conv1d(channels, channels, kernel_size=129, stride=1, padding=64)

    def _post(self, x_hat: torch.Tensor) -> torch.Tensor:
        return self.post(x_hat) if self.post_filter else x_hat


def build_codec(config: dict[str, Any]) -> Codec1D | Codec2D:
    """Codec from an official-style config dict; 1D when it has ``post_filter`` or ``ndim == 1``."""
    cfg = dict(config)
    ndim = cfg.pop("ndim", 1 if "post_filter" in cfg else 2)
    keys2d = ["channels", "J", "Ne", "Nd", "latent_dim", "latent_bits", "lightweight_encode"]
    missing = [k for k in keys2d if k not in cfg]
    if missing:
        raise ValueError(f"codec config lacks {missing}; it has {sorted(cfg)}")
    args = {k: cfg[k] for k in keys2d}
    if ndim == 1:
        return Codec1D(**args, post_filter=bool(cfg.get("post_filter", False)))
    return Codec2D(**args)
