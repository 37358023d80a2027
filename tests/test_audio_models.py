"""1D audio models: raw, resampled and latent inputs through the same network."""
import pytest
import torch

from walloc_cdl import Codec1D
from walloc_cdl.models import AUDIO_ARCHS, create_audio_model, create_latent_audio_model

T = 32768


@pytest.mark.parametrize("arch", sorted(AUDIO_ARCHS))
def test_variants_end_on_comparable_grids(arch):
    raw = create_audio_model(arch, 2, 10).eval()
    spec = {"latent_dim": 27, "J": 8, "post_filter": True}
    lat = create_latent_audio_model(arch, spec, 10).eval()
    low = create_audio_model(arch, 2, 10, input_stride=20).eval()  # resampled by 20 -> stride 16 removed
    with torch.no_grad():
        fr = raw.forward_features(torch.randn(2, 2, T))
        fl = lat.forward_features(torch.randn(2, 27, T // 256 + 2))
        fd = low.forward_features(torch.randn(2, 2, T // 20))
    assert fr.shape[:2] == fl.shape[:2] == fd.shape[:2]
    assert fr.shape[-1] == T // raw.stride
    assert abs(fl.shape[-1] - fr.shape[-1]) <= 1 and abs(fd.shape[-1] - fr.shape[-1]) <= 8
    assert raw.stride == 1024 and lat.stride == 4 and low.stride == 64


def test_api_and_errors():
    m = create_audio_model("resnet1d_small", 2, 10)
    x = torch.randn(3, 2, 4096)
    assert m(x).shape == (3, 10)
    m.reset_classifier(4)
    assert m(x).shape == (3, 4)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (3, m.num_features)
    with pytest.raises(ValueError, match="exceeds"):
        create_audio_model("resnet1d", 2, 10, input_stride=4096)
    with pytest.raises(ValueError, match="unknown audio arch"):
        create_audio_model("wav2vec", 2, 10)
    with pytest.raises(ValueError, match="1D"):
        create_latent_audio_model("resnet1d", {"latent_dim": 12, "J": 3}, 10)


def test_latent_model_on_codec_latents():
    codec = Codec1D(channels=2, J=8, Ne=None, Nd=32, latent_dim=27, latent_bits=8, lightweight_encode=True,
                    post_filter=True)
    z = codec.encode(torch.rand(2, 2, 8192) - 0.5)
    m = create_latent_audio_model("resnet1d_small", codec, 10)
    assert m.stem[0].in_channels == 2 * 27   # z and |z|
    assert m(z.float()).shape == (2, 10)
    assert create_latent_audio_model("resnet1d_small", codec, 10, magnitude=False).stem[0].in_channels == 27


def test_magnitude_channels_are_sign_invariant():
    """With the signed half of the stem zeroed, z and -z (same energies, opposite phase) give equal outputs."""
    m = create_latent_audio_model("resnet1d_small", {"latent_dim": 27, "J": 8, "post_filter": True}, 10).eval()
    with torch.no_grad():
        m.stem[0].weight[:, :27] = 0
        z = torch.randn(2, 27, 130)
        torch.testing.assert_close(m(z), m(-z))
        m.stem[0].weight[:, :27] = 1
        assert not torch.allclose(m(z), m(-z))
