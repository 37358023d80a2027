"""Codec2D/Codec1D: layout and behaviour, and exact compatibility with walloc 1.2.1 when installed."""
import json
import warnings

import pytest
import torch

from walloc_cdl import Codec1D, Codec2D, load_codec

from floatbound import analysis_bound, assert_rounded_agree, assert_within, encode_bound

CONFIGS_2D = {
    "rgb16x": dict(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True),
    "heavy": dict(channels=3, J=2, Ne=32, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=False),
    "gray": dict(channels=1, J=2, Ne=None, Nd=32, latent_dim=4, latent_bits=6, lightweight_encode=True),
}
STEREO_5X = dict(channels=2, J=8, Ne=None, Nd=216, latent_dim=108, latent_bits=8, lightweight_encode=True,
                 post_filter=True)


def _image(c, h=64, w=96):
    return torch.rand(2, c, h, w) - 0.5


def _assert_latents_close(codec, x, z, z_ref, what=""):
    """Two float32 computations of the same latents (before rounding): within twice the float32 bound for a
    linear encoder; a CNN encoder run by both on the same input, relative to the latents' magnitude."""
    if codec.lightweight_encode:
        assert_within(z, z_ref, encode_bound(codec, x, computations=2), what)
    else:
        torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5 * z_ref.abs().max().item())


@pytest.mark.parametrize("name", list(CONFIGS_2D))
def test_codec2d_shapes_and_modes(name):
    cfg = CONFIGS_2D[name]
    codec = Codec2D(**cfg).eval()
    x = _image(cfg["channels"])
    s = 2 ** cfg["J"]
    z = codec.encode(x)
    assert z.shape == (2, cfg["latent_dim"], 64 // s, 96 // s)
    assert torch.equal(z, torch.round(z))
    assert z.abs().max() <= 2 ** (cfg["latent_bits"] - 1) - 1
    x_hat = codec.decode(z)
    assert x_hat.shape == x.shape and x_hat.abs().max() <= 0.5
    y, mse, tf = codec(x)
    assert y.shape == x.shape and mse.ndim == 0 and tf.ndim == 0
    assert codec.config == cfg


def test_seed_style_access_equals_encode():
    codec = Codec2D(**CONFIGS_2D["rgb16x"]).eval()
    x = _image(3)
    X = codec.wavelet_analysis(x, J=codec.J)
    z = codec.encoder[0:2](X)
    z_hat = codec.encoder[2](z)
    # encode runs the folded fast path: the same sums in another order
    _assert_latents_close(codec, x, codec.encode(x, quantize=False), z)
    assert_rounded_agree(codec.encode(x), z, encode_bound(codec, x, computations=2))
    torch.testing.assert_close(codec.wavelet_synthesis(codec.decoder(z_hat), J=codec.J).clamp(-0.5, 0.5),
                               codec.decode(z_hat))


def test_encode_rounds_even_in_training_mode():
    codec = Codec2D(**CONFIGS_2D["rgb16x"]).train()
    z = codec.encode(_image(3))
    assert torch.equal(z, torch.round(z))


def test_codec1d_lengths_follow_walloc_quirk():
    codec = Codec1D(**STEREO_5X).eval()
    x = torch.rand(1, 2, 2 ** 12) - 0.5
    z = codec.encode(x)
    assert z.shape == (1, 108, 2 ** 12 // 2 ** 8 + 2)  # 1x1 conv with padding=1
    assert codec.decode(z).shape == x.shape


def test_bad_input_errors_are_clear():
    codec = Codec2D(**CONFIGS_2D["rgb16x"])
    with pytest.raises(ValueError, match="multiple of 2\\^J = 8"):
        codec.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        codec.encode(torch.zeros(1, 1, 32, 32))


def test_lightweight_encoder_parameter_budget():
    """The paper's claim: the linear encoder has < 100k parameters for the RGB 16x codec."""
    codec = Codec2D(**CONFIGS_2D["rgb16x"])
    assert sum(p.numel() for p in codec.encoder.parameters()) < 100_000


# -- compatibility with the published package ----------------------------------------------------------
def _official(tmp_path, ref_codec, cfg, name):
    pth = tmp_path / f"{name}.pth"
    torch.save({"model_state_dict": ref_codec.state_dict(), "epoch": 1}, pth)
    pth.with_suffix(".json").write_text(json.dumps(cfg))
    return pth


def _randomize(module):
    """Non-default values everywhere (group-norm affine params, Snake alphas) so a swapped key shows."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("name", list(CONFIGS_2D))
def test_matches_walloc_2d(walloc_ref, tmp_path, name):
    cfg = CONFIGS_2D[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = walloc_ref.Codec2D(**cfg)
    _randomize(ref)
    ref.eval()
    ours = load_codec(_official(tmp_path, ref, cfg, name))
    x = _image(cfg["channels"])
    with torch.no_grad():
        X_ref = ref.wavelet_analysis(x, J=ref.J)
        assert_within(ours.wavelet_analysis(x, J=ours.J), X_ref, analysis_bound(ours, x, computations=2), "transform")
        z_ref = ref.encoder[0:2](X_ref)
        z = ours.encoder[0:2](X_ref)
        _assert_latents_close(ours, x, z, z_ref)
        zr_ref = ref.encoder[2](z_ref)
        agree = (ours.encode(x) == zr_ref).float().mean().item()
        assert agree >= 0.999
        x_ref, mse_ref, _ = ref(x)
        torch.testing.assert_close(ours.decode(zr_ref), ref.clamp(ref.wavelet_synthesis(ref.decoder(zr_ref), J=ref.J)),
                                   atol=1e-4, rtol=0)
        if agree == 1.0:
            torch.testing.assert_close(ours(x)[0], x_ref, atol=1e-4, rtol=0)


HEAVY_1D = dict(channels=1, J=4, Ne=64, Nd=64, latent_dim=16, latent_bits=8, lightweight_encode=False,
                post_filter=False)


@pytest.mark.parametrize("cfg", [STEREO_5X, HEAVY_1D], ids=["stereo5x", "heavy1d"])
def test_matches_walloc_1d(walloc_ref, tmp_path, cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = walloc_ref.Codec1D(**cfg)
    _randomize(ref)
    ref.eval()
    ours = load_codec(_official(tmp_path, ref, cfg, "audio"))
    assert isinstance(ours, Codec1D)
    x = torch.rand(1, cfg["channels"], 2 ** 13) - 0.5
    with torch.no_grad():
        X_ref = ref.wavelet_analysis(x, J=ref.J)
        assert_within(ours.wavelet_analysis(x, J=ours.J), X_ref, analysis_bound(ours, x, computations=2), "transform")
        z_ref = ref.encoder[0:2](X_ref)
        _assert_latents_close(ours, x, ours.encoder[0:2](X_ref), z_ref)
        zr = ref.encoder[2](z_ref)
        assert (ours.encode(x) == zr).float().mean().item() >= 0.999
        x_ref = ref.wavelet_synthesis(ref.decoder(zr), J=ref.J)
        x_ref = ref.clamp(ref.post(x_ref) if cfg["post_filter"] else x_ref)
        torch.testing.assert_close(ours.decode(zr), x_ref, atol=1e-4, rtol=0)
