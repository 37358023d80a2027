"""walloc_cdl.codec.nets mirrors the diffusers modules walloc 1.2.1 builds: same keys, same outputs."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from walloc_cdl.codec import nets

# Configurations as walloc builds them (in_channels = C * 4**J = 192 for RGB, J=3; audio 2 * 2**J) plus
# general ones (several blocks, other group counts, attention off, strided Oobleck).
CONFIGS_2D = {
    "walloc-enc-32": ("Encoder", dict(in_channels=192, out_channels=12, block_out_channels=(32,), double_z=False),
                      (2, 192, 8, 8)),
    "walloc-enc-64": ("Encoder", dict(in_channels=192, out_channels=12, block_out_channels=(64,), double_z=False),
                      (1, 192, 6, 10)),
    "walloc-dec-64": ("Decoder", dict(in_channels=12, out_channels=192, block_out_channels=(64,)), (2, 12, 8, 8)),
    "walloc-dec-32": ("Decoder", dict(in_channels=12, out_channels=192, block_out_channels=(32,)), (1, 12, 7, 5)),
    "enc-2blocks-noattn": ("Encoder", dict(in_channels=3, out_channels=4, block_out_channels=(32, 64),
                                           layers_per_block=1, mid_block_add_attention=False), (2, 3, 9, 9)),
    "dec-2blocks-g16": ("Decoder", dict(in_channels=4, out_channels=3, block_out_channels=(32, 64),
                                        layers_per_block=1, norm_num_groups=16), (2, 4, 5, 5)),
}
CONFIGS_1D = {
    # walloc Codec1D: latent_dim 27, Ne = 2 * 27, Nd = 3 * 27, stereo with J = 3
    "walloc-enc-27": ("OobleckEncoder", dict(encoder_hidden_size=27, audio_channels=16, downsampling_ratios=[1, 1],
                                             channel_multiples=[2, 2]), (2, 16, 50)),
    "walloc-dec-27": ("OobleckDecoder", dict(channels=27, input_channels=27, audio_channels=16,
                                             upsampling_ratios=[1, 1], channel_multiples=[3, 3]), (2, 27, 52)),
    "enc-strided": ("OobleckEncoder", dict(encoder_hidden_size=8, audio_channels=2, downsampling_ratios=[2, 4],
                                           channel_multiples=[1, 2]), (2, 2, 64)),
    "dec-strided": ("OobleckDecoder", dict(channels=8, input_channels=5, audio_channels=2, upsampling_ratios=[4, 2],
                                           channel_multiples=[1, 2]), (2, 5, 8)),
}
OURS = {"Encoder": nets.KLEncoder, "Decoder": nets.KLDecoder,
        "OobleckEncoder": nets.OobleckEncoder, "OobleckDecoder": nets.OobleckDecoder}


def _diffusers_module(kind: str, kwargs: dict) -> nn.Module:
    pytest.importorskip("diffusers", reason="diffusers (extra 'compat') is needed to compare with the reference")
    from diffusers.models.autoencoders import autoencoder_kl, autoencoder_oobleck

    if kind == "Encoder":
        n = len(kwargs["block_out_channels"])
        return autoencoder_kl.Encoder(down_block_types=("DownEncoderBlock2D",) * n, **kwargs)
    if kind == "Decoder":
        n = len(kwargs["block_out_channels"])
        return autoencoder_kl.Decoder(up_block_types=("UpDecoderBlock2D",) * n, **kwargs)
    with warnings.catch_warnings():  # diffusers uses the deprecated torch.nn.utils.weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(autoencoder_oobleck, kind)(**kwargs)


def _perturb(module: nn.Module, seed: int) -> None:
    """Move every parameter off its init (Snake alpha/beta start at 0, norms at 1) so all of them matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name", [*CONFIGS_2D, *CONFIGS_1D])
def test_matches_diffusers(name: str) -> None:
    kind, kwargs, shape = {**CONFIGS_2D, **CONFIGS_1D}[name]
    torch.manual_seed(0)
    ref = _diffusers_module(kind, kwargs)
    _perturb(ref, 1)
    ours = OURS[kind](**kwargs)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert set(ref_sd) == set(our_sd)
    assert {k: v.shape for k, v in ref_sd.items()} == {k: v.shape for k, v in our_sd.items()}
    ours.load_state_dict(ref_sd, strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)  # and back

    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    for train in (True, False):
        ref.train(train)
        ours.train(train)
        with torch.no_grad():
            want, got = ref(x), ours(x)
        assert got.shape == want.shape
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize("name", ["walloc-dec-64", "walloc-enc-32", "walloc-dec-27", "walloc-enc-27"])
def test_matches_diffusers_low_precision(name: str) -> None:
    kind, kwargs, shape = {**CONFIGS_2D, **CONFIGS_1D}[name]
    torch.manual_seed(0)
    ref = _diffusers_module(kind, kwargs).eval()
    _perturb(ref, 1)
    ours = OURS[kind](**kwargs).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = ref(x), ours(x)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got, want)

    ref.half()
    ours.half()
    with torch.no_grad():
        want, got = ref(x.half()), ours(x.half())
    assert got.dtype == torch.float16
    torch.testing.assert_close(got, want)


# ---- without diffusers ---------------------------------------------------------------------------


def _walloc_modules() -> dict[str, nn.Module]:
    return {
        "enc2d": nets.KLEncoder(192, 12, ("DownEncoderBlock2D",), (32,), 2, 32, "silu", False, True),
        "dec2d": nets.KLDecoder(12, 192, ("UpDecoderBlock2D",), (64,), 2, 32, "silu", mid_block_add_attention=True),
        "enc1d": nets.OobleckEncoder(27, 16, [1, 1], [2, 2]),
        "dec1d": nets.OobleckDecoder(27, 27, 16, [1, 1], [3, 3]),
    }


def test_state_dict_snapshot() -> None:
    """Key count, parameter count and a few keys/shapes, as diffusers 0.42.1 gives for these configs."""
    expected = {
        "enc2d": (48, 137644, {"mid_block.attentions.0.to_q.weight": (32, 32),
                               "mid_block.attentions.0.group_norm.bias": (32,),
                               "mid_block.attentions.0.to_out.0.weight": (32, 32),
                               "down_blocks.0.resnets.1.conv2.weight": (32, 32, 3, 3),
                               "conv_norm_out.weight": (32,), "conv_out.weight": (12, 32, 3, 3)}),
        "dec2d": (56, 505216, {"conv_in.weight": (64, 12, 3, 3), "mid_block.resnets.1.norm2.weight": (64,),
                               "up_blocks.0.resnets.2.conv1.weight": (64, 64, 3, 3),
                               "mid_block.attentions.0.to_v.bias": (64,), "conv_out.weight": (192, 64, 3, 3)}),
        "enc1d": (78, 106164, {"conv1.weight_g": (27, 1, 1), "conv1.weight_v": (27, 16, 7),
                               "block.0.conv1.weight_v": (54, 27, 2),
                               "block.1.res_unit3.snake1.alpha": (1, 54, 1), "conv2.weight_v": (27, 54, 3)}),
        "dec1d": (77, 214207, {"block.0.conv_t1.weight_g": (81, 1, 1), "block.0.conv_t1.weight_v": (81, 81, 2),
                               "block.1.res_unit3.snake2.beta": (1, 27, 1), "conv2.weight_g": (16, 1, 1)}),
    }
    for name, module in _walloc_modules().items():
        n_keys, n_params, some = expected[name]
        sd = module.state_dict()
        assert len(sd) == n_keys, name
        assert sum(v.numel() for v in sd.values()) == n_params, name
        for key, shape in some.items():
            assert tuple(sd[key].shape) == shape, (name, key)
        if name.endswith("1d"):  # old-style weight norm: no plain conv weights anywhere
            assert {k.rsplit(".", 1)[1] for k in sd} == {"weight_g", "weight_v", "bias", "alpha", "beta"}, name
    sd = _walloc_modules()["dec1d"].state_dict()
    assert "conv2.bias" not in sd and "block.0.conv_t1.bias" in sd
    assert not any("downsamplers" in k or "upsamplers" in k or "conv_shortcut" in k
                   for k in _walloc_modules()["enc2d"].state_dict())


def test_general_layout_keys() -> None:
    enc = nets.KLEncoder(3, 4, block_out_channels=(32, 64), layers_per_block=1, mid_block_add_attention=False)
    keys = set(enc.state_dict())
    assert "down_blocks.0.downsamplers.0.conv.weight" in keys
    assert "down_blocks.1.resnets.0.conv_shortcut.weight" in keys
    assert not any("attentions" in k for k in keys)
    dec = nets.KLDecoder(4, 3, block_out_channels=(32, 64), layers_per_block=1)
    keys = set(dec.state_dict())
    assert "up_blocks.0.upsamplers.0.conv.weight" in keys and "up_blocks.1.resnets.1.conv2.weight" in keys
    assert "up_blocks.1.resnets.0.conv_shortcut.weight" in keys and "up_blocks.1.upsamplers.0.conv.weight" not in keys


def test_output_shapes() -> None:
    m = _walloc_modules()
    with torch.no_grad():
        assert m["enc2d"](torch.randn(2, 192, 8, 12)).shape == (2, 12, 8, 12)
        assert m["dec2d"](torch.randn(2, 12, 8, 12)).shape == (2, 192, 8, 12)
        # Oobleck's stride-1 blocks: kernel 2, padding 1 adds one sample per encoder block, the
        # transposed convs remove one per decoder block.
        assert m["enc1d"](torch.randn(2, 16, 40)).shape == (2, 27, 42)
        assert m["dec1d"](torch.randn(2, 27, 42)).shape == (2, 16, 40)
        enc = nets.KLEncoder(3, 4, block_out_channels=(32, 32, 64), layers_per_block=1)
        assert enc(torch.randn(1, 3, 16, 16)).shape == (1, 8, 4, 4)  # double_z by default
        dec = nets.KLDecoder(4, 3, block_out_channels=(32, 32, 64), layers_per_block=1)
        assert dec(torch.randn(1, 4, 4, 4)).shape == (1, 3, 16, 16)
        enc = nets.OobleckEncoder(8, 2, [2, 4], [1, 2])
        assert enc(torch.randn(1, 2, 64)).shape == (1, 8, 8)


@pytest.mark.parametrize("name", ["enc2d", "dec2d", "enc1d", "dec1d"])
def test_gradients_reach_every_parameter(name: str) -> None:
    module = _walloc_modules()[name]
    _perturb(module, 3)
    shape = {"enc2d": (2, 192, 4, 4), "dec2d": (2, 12, 4, 4), "enc1d": (2, 16, 20), "dec1d": (2, 27, 20)}[name]
    x = torch.randn(shape, requires_grad=True)
    module(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for key, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
        assert p.grad.abs().sum() > 0, key


def test_low_precision_close_to_float32() -> None:
    for name, shape in (("dec2d", (1, 12, 6, 6)), ("dec1d", (1, 27, 30))):
        module = _walloc_modules()[name].eval()
        x = torch.randn(shape)
        with torch.no_grad():
            ref = module(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf = module(x)
            fp = module.half()(x.half())
        scale = ref.abs().max()
        assert bf.dtype == torch.bfloat16 and (bf.float() - ref).abs().max() < 0.05 * scale
        assert fp.dtype == torch.float16 and (fp.float() - ref).abs().max() < 0.01 * scale


def test_weight_norm_conv_matches_torch_parametrization() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our weight norm must not trigger torch's deprecation warning
        ours = nets.WNConv1d(6, 5, kernel_size=3, padding=2, dilation=2)
        ours_t = nets.WNConvTranspose1d(6, 4, kernel_size=4, stride=2, padding=1)
    assert [k for k, _ in ours.named_parameters()] == ["bias", "weight_g", "weight_v"]
    assert ours.weight_g.shape == (5, 1, 1) and ours_t.weight_g.shape == (6, 1, 1)  # dim 0, as torch's hook
    from torch.nn.utils.parametrizations import weight_norm

    for mod, ref in ((ours, nn.Conv1d(6, 5, kernel_size=3, padding=2, dilation=2)),
                     (ours_t, nn.ConvTranspose1d(6, 4, kernel_size=4, stride=2, padding=1))):
        with torch.no_grad():
            mod.weight_g.mul_(torch.rand_like(mod.weight_g) + 0.5)  # magnitude no longer ||v||
        ref = weight_norm(ref)
        with torch.no_grad():
            ref.parametrizations.weight.original0.copy_(mod.weight_g)
            ref.parametrizations.weight.original1.copy_(mod.weight_v)
            ref.bias.copy_(mod.bias)
        expected = mod.weight_g * mod.weight_v / mod.weight_v.flatten(1).norm(dim=1).view(-1, 1, 1)
        torch.testing.assert_close(mod.weight, expected)
        x = torch.randn(2, 6, 11)
        torch.testing.assert_close(mod(x), ref(x))


def test_snake_formula() -> None:
    snake = nets.Snake1d(3)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([0.0, 0.5, -1.0]).view(1, 3, 1))
        snake.beta.copy_(torch.tensor([0.2, 0.0, 1.0]).view(1, 3, 1))
    x = torch.randn(2, 3, 7)
    a, b = snake.alpha.exp(), snake.beta.exp()
    torch.testing.assert_close(snake(x), x + torch.sin(a * x) ** 2 / (b + 1e-9))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="channel_multiples"):
        nets.OobleckEncoder(8, 2, [1, 1], [2])
    with pytest.raises(ValueError, match="down_block_types"):
        nets.KLEncoder(3, 4, down_block_types=("AttnDownEncoderBlock2D",), block_out_channels=(32,))
    with pytest.raises(ValueError, match="norm_type"):
        nets.KLDecoder(4, 3, norm_type="spatial")
    with pytest.raises(ValueError, match="activation"):
        nets.KLEncoder(3, 4, act_fn="tanh")
