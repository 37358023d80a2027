"""Companding, quantisation proxy and their inverse."""
import torch

from walloc_cdl.codec.bottleneck import Round, ToNormal, ToUniform, companding_scale, latent_max


def test_round_trip_is_identity_within_range():
    bits = 8
    tu, tn = ToUniform(companding_scale(bits), latent_max(bits)), ToNormal(companding_scale(bits), latent_max(bits))
    x = torch.linspace(-100, 100, 1001)
    torch.testing.assert_close(tn(tu(x)), x, atol=1e-2, rtol=1e-3)


def test_companded_range_rounds_into_signed_bits():
    for bits in (4, 6, 8):
        tu = ToUniform(companding_scale(bits), latent_max(bits))
        z = torch.round(tu(torch.tensor([-1e9, 1e9, 0.0])))
        assert z.tolist() == [-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1, 0]


def test_round_noise_in_training_rounding_in_eval():
    r = Round()
    x = torch.full((10000,), 0.3)
    r.train()
    y = r(x)
    assert (y - x).abs().max() <= 0.5 and (y - x).std() > 0.2
    r.eval()
    assert torch.equal(r(x), torch.zeros_like(x))


def test_matches_reference(walloc_ref):
    bits = 8
    s, m = companding_scale(bits), latent_max(bits)
    x = torch.randn(1000) * 50
    torch.testing.assert_close(ToUniform(s, m)(x), walloc_ref.ToUniform(s, m)(x))
    u = torch.linspace(-200, 200, 999)
    torch.testing.assert_close(ToNormal(s, m)(u), walloc_ref.ToNormal(s, m)(u))
