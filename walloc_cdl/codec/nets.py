"""Encoder/decoder networks of WaLLoC, re-implemented without diffusers.

walloc 1.2.1 builds its non-linear encoders and decoders from diffusers: the 2D codec uses
``diffusers.models.autoencoders.vae.Encoder`` / ``Decoder`` (AutoencoderKL style) and the 1D codec uses
``autoencoder_oobleck.OobleckEncoder`` / ``OobleckDecoder`` (Stable Audio style). The modules here mirror
them submodule for submodule, so that

* the ``state_dict`` keys and shapes are identical and an official walloc checkpoint loads with
  ``load_state_dict(..., strict=True)``;
* the arithmetic is the same op sequence, so outputs match diffusers (checked in ``tests/test_nets.py``).

Usage::

    dec = KLDecoder(in_channels=12, out_channels=192, block_out_channels=(256,))  # walloc Codec2D decoder
    dec.load_state_dict(diffusers_decoder.state_dict(), strict=True)
    enc = OobleckEncoder(encoder_hidden_size=27, audio_channels=16, downsampling_ratios=[1, 1],
                         channel_multiples=[4, 4])

Only the configurations diffusers builds for ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` with group
norm are supported (no spatial norm, no time embedding): that is everything walloc and AutoencoderKL use.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "KLEncoder",
    "KLDecoder",
    "OobleckEncoder",
    "OobleckDecoder",
    "ResnetBlock2D",
    "Attention2D",
    "Downsample2D",
    "Upsample2D",
    "UNetMidBlock2D",
    "DownEncoderBlock2D",
    "UpDecoderBlock2D",
    "Snake1d",
    "WNConv1d",
    "WNConvTranspose1d",
    "OobleckResidualUnit",
    "OobleckEncoderBlock",
    "OobleckDecoderBlock",
]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
}


def get_activation(act_fn: str) -> nn.Module:
    """Activation module by name, with the names diffusers accepts (``swish`` == ``silu``)."""
    try:
        return _ACTIVATIONS[act_fn.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {act_fn!r}; expected one of {sorted(_ACTIVATIONS)}") from None


# --------------------------------------------------------------------------------------------------
# 2D: AutoencoderKL-style encoder / decoder
# --------------------------------------------------------------------------------------------------


class ResnetBlock2D(nn.Module):
    """Pre-norm residual block (GroupNorm, act, conv3x3) x 2 with a 1x1 shortcut when widths differ.

    Mirrors ``diffusers.models.resnet.ResnetBlock2D`` without time embedding (``temb_channels=None``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        groups: int = 32,
        eps: float = 1e-6,
        act_fn: str = "silu",
        dropout: float = 0.0,
        output_scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(num_groups=groups, num_channels=in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = nn.GroupNorm(num_groups=groups, num_channels=out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = get_activation(act_fn)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            if self.training:  # as diffusers (DDP stride warning); it can change the conv's rounding
                x = x.contiguous()
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


class Attention2D(nn.Module):
    """Single-block spatial self-attention with GroupNorm, residual connection and output rescaling.

    Mirrors ``diffusers.models.attention_processor.Attention(..., residual_connection=True,
    _from_deprecated_attn_block=True)`` run by ``AttnProcessor2_0`` (scaled_dot_product_attention), the
    attention of the VAE mid block. Keys: ``group_norm``, ``to_q``, ``to_k``, ``to_v``, ``to_out.0``.
    """

    def __init__(
        self,
        channels: int,
        head_dim: int | None = None,
        norm_num_groups: int | None = 32,
        eps: float = 1e-6,
        rescale_output_factor: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        head_dim = channels if head_dim is None else head_dim
        if channels % head_dim:
            raise ValueError(f"channels ({channels}) must be a multiple of head_dim ({head_dim})")
        self.heads = channels // head_dim
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = (
            nn.GroupNorm(num_channels=channels, num_groups=norm_num_groups, eps=eps, affine=True)
            if norm_num_groups is not None
            else None
        )
        self.to_q = nn.Linear(channels, channels, bias=True)
        self.to_k = nn.Linear(channels, channels, bias=True)
        self.to_v = nn.Linear(channels, channels, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels, bias=True), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        b, c, h, w = x.shape
        tokens = x.view(b, c, h * w).transpose(1, 2)
        if self.group_norm is not None:
            tokens = self.group_norm(tokens.transpose(1, 2)).transpose(1, 2)
        q = self.to_q(tokens)
        k = self.to_k(tokens)
        v = self.to_v(tokens)
        head_dim = k.shape[-1] // self.heads
        q = q.view(b, -1, self.heads, head_dim).transpose(1, 2)
        k = k.view(b, -1, self.heads, head_dim).transpose(1, 2)
        v = v.view(b, -1, self.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(b, -1, self.heads * head_dim).to(q.dtype)
        out = self.to_out[1](self.to_out[0](out))
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return (out + residual) / self.rescale_output_factor


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv; with ``padding=0`` pads right/bottom by one first (the VAE encoder's choice).

    Mirrors ``diffusers.models.downsampling.Downsample2D(use_conv=True, name="op")``: key ``conv``.
    """

    def __init__(self, channels: int, out_channels: int | None = None, padding: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.padding = padding
        self.conv = nn.Conv2d(channels, out_channels or channels, kernel_size=3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0)
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 conv.

    Mirrors ``diffusers.models.upsampling.Upsample2D(use_conv=True)``: key ``conv``.
    """

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, out_channels or channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] >= 64:  # upsample_nearest_nhwc fails with large batches (diffusers issue 984)
            x = x.contiguous()
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetMidBlock2D(nn.Module):
    """``resnets.0`` then ``num_layers`` x (optional ``attentions.i``, ``resnets.i+1``).

    Mirrors ``diffusers.models.unets.unet_2d_blocks.UNetMidBlock2D`` with group norm and no time embedding.
    """

    def __init__(
        self,
        in_channels: int,
        num_layers: int = 1,
        resnet_eps: float = 1e-6,
        resnet_act_fn: str = "silu",
        resnet_groups: int = 32,
        add_attention: bool = True,
        attention_head_dim: int | None = None,
        output_scale_factor: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.add_attention = add_attention

        def resnet() -> ResnetBlock2D:
            return ResnetBlock2D(
                in_channels, in_channels, groups=resnet_groups, eps=resnet_eps, act_fn=resnet_act_fn,
                dropout=dropout, output_scale_factor=output_scale_factor,
            )

        attentions: list[nn.Module | None] = []
        resnets = [resnet()]
        for _ in range(num_layers):
            attentions.append(
                Attention2D(
                    in_channels, head_dim=attention_head_dim or in_channels, norm_num_groups=resnet_groups,
                    eps=resnet_eps, rescale_output_factor=output_scale_factor,
                )
                if add_attention
                else None
            )
            resnets.append(resnet())
        self.attentions = nn.ModuleList(attentions)
        self.resnets = nn.ModuleList(resnets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            if attn is not None:
                x = attn(x)
            x = resnet(x)
        return x


def _resnet_stack(
    in_channels: int, out_channels: int, num_layers: int, eps: float, act_fn: str, groups: int, dropout: float
) -> nn.ModuleList:
    """The ``resnets`` of a down/up block: the first changes the width, the others keep it."""
    return nn.ModuleList(
        ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups=groups, eps=eps,
                      act_fn=act_fn, dropout=dropout)
        for i in range(num_layers)
    )


def _run(layers: nn.ModuleList | None, x: torch.Tensor) -> torch.Tensor:
    for layer in layers or ():
        x = layer(x)
    return x


class DownEncoderBlock2D(nn.Module):
    """``num_layers`` resnets then an optional stride-2 downsampler (``downsamplers.0``).

    Mirrors ``diffusers.models.unets.unet_2d_blocks.DownEncoderBlock2D``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int = 1,
        resnet_eps: float = 1e-6,
        resnet_act_fn: str = "silu",
        resnet_groups: int = 32,
        add_downsample: bool = True,
        downsample_padding: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.resnets = _resnet_stack(
            in_channels, out_channels, num_layers, resnet_eps, resnet_act_fn, resnet_groups, dropout
        )
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, out_channels, padding=downsample_padding)])
            if add_downsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.downsamplers, _run(self.resnets, x))


class UpDecoderBlock2D(nn.Module):
    """``num_layers`` resnets then an optional x2 upsampler (``upsamplers.0``).

    Mirrors ``diffusers.models.unets.unet_2d_blocks.UpDecoderBlock2D`` with group norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int = 1,
        resnet_eps: float = 1e-6,
        resnet_act_fn: str = "silu",
        resnet_groups: int = 32,
        add_upsample: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.resnets = _resnet_stack(
            in_channels, out_channels, num_layers, resnet_eps, resnet_act_fn, resnet_groups, dropout
        )
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, out_channels)]) if add_upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.upsamplers, _run(self.resnets, x))


def _block_types(types: Sequence[str] | None, expected: str, n: int, arg: str) -> None:
    if types is None:
        return
    if len(types) != n or any(t != expected for t in types):
        raise ValueError(
            f"{arg} must be {n} x {expected!r} (one per entry of block_out_channels); got {tuple(types)}"
        )


class KLEncoder(nn.Module):
    """AutoencoderKL-style encoder: conv_in, down blocks, mid block (resnet, attention, resnet), norm, conv_out.

    Mirrors ``diffusers.models.autoencoders.vae.Encoder`` (what walloc's ``Codec2D`` uses when
    ``lightweight_encode=False``), with the same arguments and defaults, so official checkpoints load.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: Sequence[str] | None = None,
        block_out_channels: Sequence[int] = (64,),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        double_z: bool = True,
        mid_block_add_attention: bool = True,
    ) -> None:
        super().__init__()
        block_out_channels = tuple(block_out_channels)
        _block_types(down_block_types, "DownEncoderBlock2D", len(block_out_channels), "down_block_types")
        self.layers_per_block = layers_per_block
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, stride=1, padding=1)
        blocks = []
        output_channel = block_out_channels[0]
        for i, ch in enumerate(block_out_channels):
            input_channel, output_channel = output_channel, ch
            blocks.append(
                DownEncoderBlock2D(
                    input_channel, output_channel, num_layers=layers_per_block, resnet_eps=1e-6,
                    resnet_act_fn=act_fn, resnet_groups=norm_num_groups,
                    add_downsample=i < len(block_out_channels) - 1, downsample_padding=0,
                )
            )
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = UNetMidBlock2D(
            block_out_channels[-1], resnet_eps=1e-6, resnet_act_fn=act_fn, resnet_groups=norm_num_groups,
            add_attention=mid_block_add_attention, attention_head_dim=block_out_channels[-1],
        )
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[-1], num_groups=norm_num_groups, eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[-1], 2 * out_channels if double_z else out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class KLDecoder(nn.Module):
    """AutoencoderKL-style decoder: conv_in, mid block, up blocks (layers_per_block + 1 resnets), norm, conv_out.

    Mirrors ``diffusers.models.autoencoders.vae.Decoder`` with ``norm_type="group"`` (walloc's ``Codec2D``
    decoder), with the same arguments and defaults, so official checkpoints load.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        up_block_types: Sequence[str] | None = None,
        block_out_channels: Sequence[int] = (64,),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        norm_type: str = "group",
        mid_block_add_attention: bool = True,
    ) -> None:
        super().__init__()
        if norm_type != "group":
            raise ValueError(f"only norm_type='group' is supported, got {norm_type!r}")
        block_out_channels = tuple(block_out_channels)
        _block_types(up_block_types, "UpDecoderBlock2D", len(block_out_channels), "up_block_types")
        self.layers_per_block = layers_per_block
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[-1], kernel_size=3, stride=1, padding=1)
        self.mid_block = UNetMidBlock2D(
            block_out_channels[-1], resnet_eps=1e-6, resnet_act_fn=act_fn, resnet_groups=norm_num_groups,
            add_attention=mid_block_add_attention, attention_head_dim=block_out_channels[-1],
        )
        reversed_channels = list(reversed(block_out_channels))
        blocks = []
        output_channel = reversed_channels[0]
        for i, ch in enumerate(reversed_channels):
            prev_output_channel, output_channel = output_channel, ch
            blocks.append(
                UpDecoderBlock2D(
                    prev_output_channel, output_channel, num_layers=layers_per_block + 1, resnet_eps=1e-6,
                    resnet_act_fn=act_fn, resnet_groups=norm_num_groups,
                    add_upsample=i < len(block_out_channels) - 1,
                )
            )
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


# --------------------------------------------------------------------------------------------------
# 1D: Oobleck (Stable Audio) encoder / decoder
# --------------------------------------------------------------------------------------------------


class Snake1d(nn.Module):
    """Snake activation ``x + 1/(beta + 1e-9) * sin(alpha * x)^2`` with per-channel log-scale alpha, beta.

    Mirrors ``diffusers.models.autoencoders.autoencoder_oobleck.Snake1d`` (params ``alpha``, ``beta``
    of shape ``(1, C, 1)``, initialised to 0, i.e. alpha = beta = 1).
    """

    def __init__(self, hidden_dim: int, logscale: bool = True) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, hidden_dim, 1))
        self.beta = nn.Parameter(torch.zeros(1, hidden_dim, 1))
        self.logscale = logscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        alpha = torch.exp(self.alpha) if self.logscale else self.alpha
        beta = torch.exp(self.beta) if self.logscale else self.beta
        x = x.reshape(shape[0], shape[1], -1)
        x = x + (beta + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
        return x.reshape(shape)


class _WeightNormMixin:
    """Stores a conv weight as magnitude ``weight_g`` and direction ``weight_v`` (weight = g * v / ||v||).

    Same parameters, keys and arithmetic (``torch._weight_norm`` over dim 0) as the old-style
    ``torch.nn.utils.weight_norm`` that diffusers' Oobleck uses, without its deprecation warning.
    ``module.weight`` stays readable, recomputed on access as with the old hook.
    """

    def _split_weight(self) -> None:
        v = self.weight.detach().clone()
        del self.weight
        self.weight_g = nn.Parameter(torch.norm_except_dim(v, 2, 0))
        self.weight_v = nn.Parameter(v)

    def _weight(self) -> torch.Tensor:
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def __getattr__(self, name: str):
        if name == "weight" and "weight_v" in self.__dict__.get("_parameters", {}):
            return self._weight()
        return super().__getattr__(name)


class WNConv1d(_WeightNormMixin, nn.Conv1d):
    """``nn.Conv1d`` with weight normalisation; state_dict keys ``weight_g``, ``weight_v``, ``bias``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError("WNConv1d supports padding_mode='zeros' only")
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self._weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class WNConvTranspose1d(_WeightNormMixin, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with weight normalisation over dim 0 (input channels), as torch's old hook."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(
            x, self._weight(), self.bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation
        )


class OobleckResidualUnit(nn.Module):
    """Snake, dilated k7 conv, Snake, 1x1 conv, plus skip. Mirrors diffusers ``OobleckResidualUnit``."""

    def __init__(self, dimension: int = 16, dilation: int = 1) -> None:
        super().__init__()
        pad = ((7 - 1) * dilation) // 2
        self.snake1 = Snake1d(dimension)
        self.conv1 = WNConv1d(dimension, dimension, kernel_size=7, dilation=dilation, padding=pad)
        self.snake2 = Snake1d(dimension)
        self.conv2 = WNConv1d(dimension, dimension, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.snake2(self.conv1(self.snake1(x))))
        padding = (x.shape[-1] - y.shape[-1]) // 2
        if padding > 0:
            x = x[..., padding:-padding]
        return x + y


class OobleckEncoderBlock(nn.Module):
    """Three residual units (dilation 1, 3, 9), Snake, strided conv. Mirrors diffusers ``OobleckEncoderBlock``.

    Note that the conv has kernel ``2*stride`` and padding ``ceil(stride/2)``: with stride 1 (walloc) each
    block lengthens the sequence by one sample, which the decoder blocks undo.
    """

    def __init__(self, input_dim: int, output_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.res_unit1 = OobleckResidualUnit(input_dim, dilation=1)
        self.res_unit2 = OobleckResidualUnit(input_dim, dilation=3)
        self.res_unit3 = OobleckResidualUnit(input_dim, dilation=9)
        self.snake1 = Snake1d(input_dim)
        self.conv1 = WNConv1d(
            input_dim, output_dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_unit3(self.res_unit2(self.res_unit1(x)))
        return self.conv1(self.snake1(x))


class OobleckDecoderBlock(nn.Module):
    """Snake, transposed conv, three residual units. Mirrors diffusers ``OobleckDecoderBlock``."""

    def __init__(self, input_dim: int, output_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.snake1 = Snake1d(input_dim)
        self.conv_t1 = WNConvTranspose1d(
            input_dim, output_dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )
        self.res_unit1 = OobleckResidualUnit(output_dim, dilation=1)
        self.res_unit2 = OobleckResidualUnit(output_dim, dilation=3)
        self.res_unit3 = OobleckResidualUnit(output_dim, dilation=9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_t1(self.snake1(x))
        return self.res_unit3(self.res_unit2(self.res_unit1(x)))


def _multiples(ratios: Sequence[int], channel_multiples: Sequence[int], arg: str) -> list[int]:
    if len(channel_multiples) != len(ratios):
        raise ValueError(
            f"channel_multiples ({list(channel_multiples)}) needs one entry per {arg} ({list(ratios)})"
        )
    return [1, *channel_multiples]


class OobleckEncoder(nn.Module):
    """Oobleck encoder: conv1, encoder blocks, Snake, conv2 to ``encoder_hidden_size`` channels.

    Mirrors ``diffusers.models.autoencoders.autoencoder_oobleck.OobleckEncoder`` (walloc ``Codec1D`` with
    ``lightweight_encode=False``), same arguments, so official checkpoints load.
    """

    def __init__(
        self,
        encoder_hidden_size: int,
        audio_channels: int,
        downsampling_ratios: Sequence[int],
        channel_multiples: Sequence[int],
    ) -> None:
        super().__init__()
        mult = _multiples(downsampling_ratios, channel_multiples, "downsampling_ratios")
        self.conv1 = WNConv1d(audio_channels, encoder_hidden_size, kernel_size=7, padding=3)
        self.block = nn.ModuleList(
            OobleckEncoderBlock(encoder_hidden_size * mult[i], encoder_hidden_size * mult[i + 1], stride=s)
            for i, s in enumerate(downsampling_ratios)
        )
        d_model = encoder_hidden_size * mult[-1]
        self.snake1 = Snake1d(d_model)
        self.conv2 = WNConv1d(d_model, encoder_hidden_size, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for block in self.block:
            x = block(x)
        return self.conv2(self.snake1(x))


class OobleckDecoder(nn.Module):
    """Oobleck decoder: conv1, decoder blocks (widths in reverse), Snake, bias-free conv2 to audio channels.

    Mirrors ``diffusers.models.autoencoders.autoencoder_oobleck.OobleckDecoder`` (walloc ``Codec1D``
    decoder), same arguments, so official checkpoints load.
    """

    def __init__(
        self,
        channels: int,
        input_channels: int,
        audio_channels: int,
        upsampling_ratios: Sequence[int],
        channel_multiples: Sequence[int],
    ) -> None:
        super().__init__()
        mult = _multiples(upsampling_ratios, channel_multiples, "upsampling_ratios")
        n = len(upsampling_ratios)
        self.conv1 = WNConv1d(input_channels, channels * mult[-1], kernel_size=7, padding=3)
        self.block = nn.ModuleList(
            OobleckDecoderBlock(channels * mult[n - i], channels * mult[n - i - 1], stride=s)
            for i, s in enumerate(upsampling_ratios)
        )
        self.snake1 = Snake1d(channels)
        self.conv2 = WNConv1d(channels, audio_channels, kernel_size=7, padding=3, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv1(z)
        for block in self.block:
            x = block(x)
        return self.conv2(self.snake1(x))
