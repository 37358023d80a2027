"""Adapter stems: latent models keep timm's API and match the pixel model's strides from the entry on."""
import pytest
import torch
import torch.nn as nn

from walloc_cdl import Codec2D
from walloc_cdl.models import LatentSpec, create_latent_model, create_strided_model, latent_spec

# one small model per required family; img_size is the pixel size where the family needs one
FAMILIES = [
    ("resnet10t", {}),
    ("convnext_atto", {}),
    ("efficientnet_b0", {}),
    ("maxvit_nano_rw_256", {"img_size": 128}),
    ("vit_tiny_patch16_224", {"img_size": 128}),
    ("deit_tiny_patch16_224", {"img_size": 128}),
]
PIX = 128


def _features(model, x):
    f = model.forward_features(x)
    return f


@pytest.mark.parametrize("name,kw", FAMILIES)
@pytest.mark.parametrize("J,stem", [(2, "keep"), (3, "keep"), (3, "shuffle")])
def test_latent_model_matches_pixel_model(name, kw, J, stem):
    spec = {"latent_dim": 12, "J": J}
    pix = create_strided_model(name, 3, 1, 7, **kw).eval()
    lat = create_latent_model(name, spec, 7, stem=stem, **kw).eval()
    x = torch.randn(2, 3, PIX, PIX)
    z = torch.randn(2, 12, PIX >> J, PIX >> J)
    with torch.no_grad():
        fp, fl = _features(pix, x), _features(lat, z)
        assert fl.shape == fp.shape  # same final grid (or token count) and width as the pixel model
        assert lat(z).shape == (2, 7)
        lat.reset_classifier(3)
        assert lat(z).shape == (2, 3)
        assert lat.forward_head(fl, pre_logits=True).shape[0] == 2
    with pytest.raises(RuntimeError):
        lat(torch.randn(2, 3, PIX >> J, PIX >> J))  # it really takes latent_dim channels


@pytest.mark.parametrize("name,kw", [f for f in FAMILIES if not f[0].startswith(("vit", "deit"))])
def test_features_only_reductions_are_honest(name, kw):
    J = 3
    z = torch.randn(1, 12, PIX >> J, PIX >> J)
    for stem in ("keep", "enter", "shuffle", "synth"):
        feats = create_latent_model(name, {"latent_dim": 12, "J": J}, 0, stem=stem, features_only=True, **kw).eval()
        with torch.no_grad():
            outs = feats(z)
        assert len(outs) == len(feats.feature_info.reduction())
        for o, r in zip(outs, feats.feature_info.reduction()):
            assert o.shape[-1] == (PIX >> J) // r, (stem, o.shape, r)


@pytest.mark.parametrize("name", ["resnet10t", "resnet18", "convnext_atto", "efficientnet_b0"])
def test_shuffle_stem_gives_the_pixel_models_grid(name):
    """shuffle: the stem's output has the pixel stem's grid and width; every stage is the pixel model's."""
    pix = create_strided_model(name, 3, 1, 5).eval()
    lat = create_latent_model(name, {"latent_dim": 12, "J": 3}, 5, stem="shuffle").eval()
    shuffles = [m for m in lat.modules() if isinstance(m, nn.PixelShuffle)]
    assert len(shuffles) == 1 and shuffles[0].upscale_factor == 8 // (4 if "efficientnet" not in name else 2)
    with torch.no_grad():
        fp = pix.forward_intermediates(torch.randn(1, 3, PIX, PIX), intermediates_only=True)
        fl = lat.forward_intermediates(torch.randn(1, 12, PIX // 8, PIX // 8), intermediates_only=True)
    assert len(fl) == len(fp)
    assert [f.shape for f in fl[-4:]] == [f.shape for f in fp[-4:]]  # the last four stages' outputs
    # the stages' parameters are the pixel model's, one for one (only the stem's first conv differs)
    stage_shapes = lambda m: [(k, v.shape) for k, v in m.state_dict().items() if k.startswith(("layer", "stages", "blocks"))]
    assert stage_shapes(lat) == stage_shapes(pix)


@pytest.mark.parametrize("name", ["resnet10t", "resnet18", "convnext_atto", "efficientnet_b0", "maxvit_nano_rw_256"])
def test_synth_stem_feeds_the_unchanged_pixel_model(name):
    """synth: a 3×3 conv + pixel shuffle by 2^J in front of the pixel model, which is otherwise untouched.

    With 3·4^J latent channels holding the pixels' space-to-depth and the synthesis conv set to the
    identity at its centre tap, the latent model must give the pixel model's output exactly."""
    kw = {"img_size": PIX} if name.startswith("maxvit") else {}
    J, C = 3, 3
    torch.manual_seed(0)
    pix = create_strided_model(name, C, 1, 5, **kw).eval()
    lat = create_latent_model(name, {"latent_dim": C * 4 ** J, "J": J, "channels": C}, 5, stem="synth", **kw).eval()
    ((prefix, seq),) = [(n, m) for n, m in lat.named_modules()
                        if isinstance(m, nn.Sequential) and any(isinstance(c, nn.PixelShuffle) for c in m.children())]
    conv, shuffle = seq[0], seq[1]
    assert shuffle.upscale_factor == 2 ** J and lat.latent_adapter["stem"] == "synth"
    assert conv.in_channels == C * 4 ** J and conv.kernel_size == (3, 3)
    # apart from the synthesis conv, the pixel model's tensors, in order and shape (one level deeper)
    new = {f"{prefix}.0.weight", f"{prefix}.0.bias"}
    rest = [k for k in lat.state_dict() if k not in new]
    assert [lat.state_dict()[k].shape for k in rest] == [v.shape for v in pix.state_dict().values()]
    lat.load_state_dict({**dict(zip(rest, pix.state_dict().values())), **{k: lat.state_dict()[k] for k in new}})
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = torch.eye(C * 4 ** J)
        conv.bias.zero_()
        x = torch.randn(2, C, PIX, PIX)
        z = nn.functional.pixel_unshuffle(x, 2 ** J)
        torch.testing.assert_close(lat(z), pix(x), rtol=1e-4, atol=1e-4)


def test_vit_patch_embed_is_patch_over_stride():
    m = create_latent_model("vit_tiny_patch16_224", {"latent_dim": 12, "J": 3}, 5, img_size=256)
    assert m.patch_embed.patch_size == (2, 2)
    assert m.patch_embed.proj.in_channels == 12
    assert m.patch_embed.grid_size == (16, 16)  # the pixel model's 256/16 grid
    with pytest.raises(ValueError, match="patch size"):
        create_latent_model("vit_tiny_patch16_224", {"latent_dim": 12, "J": 5}, 5, img_size=256)
    with pytest.raises(ValueError, match="convolutional"):  # synth would break the grid timm derives
        create_latent_model("vit_tiny_patch16_224", {"latent_dim": 12, "J": 3}, 5, stem="synth", img_size=256)


def test_enter_drops_stages_keep_keeps_them():
    keep = create_latent_model("resnet18", {"latent_dim": 12, "J": 3}, 10, stem="keep")
    enter = create_latent_model("resnet18", {"latent_dim": 12, "J": 3}, 10, stem="enter")
    assert keep.latent_adapter["dropped"] == []
    assert enter.latent_adapter["dropped"] == ["layer1", "layer2"]
    assert isinstance(enter.layer1, nn.Identity) and not isinstance(keep.layer1, nn.Identity)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(enter) < n(keep)
    # keep: layer2 no longer strides (latent already at stride 8), layer3 still does
    z = torch.randn(1, 12, 32, 32)
    with torch.no_grad():
        h = keep.maxpool(keep.act1(keep.bn1(keep.conv1(z))))
        assert keep.layer2(keep.layer1(h)).shape[-1] == 32
        assert keep.layer3(keep.layer2(keep.layer1(h))).shape[-1] == 16


def test_downsampled_pixels_use_the_same_machinery():
    m = create_strided_model("resnet10t", in_chans=3, input_stride=4, num_classes=10)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="power of two"):
        create_strided_model("resnet10t", 3, 3, 10)


def test_latent_spec_sources():
    codec = Codec2D(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True)
    assert latent_spec(codec) == LatentSpec(12, 3, 2, 3)
    assert latent_spec({"latent_dim": 4, "J": 2}).stride == 4
    with pytest.raises(ValueError, match="lacks"):
        latent_spec({"J": 2})
    with pytest.raises(TypeError):
        latent_spec(3.5)
    m = create_latent_model("resnet10t", codec, 10)
    assert m(codec.encode(torch.rand(2, 3, 64, 64) - 0.5)).shape == (2, 10)


def test_unsupported_family_is_named():
    with pytest.raises(NotImplementedError, match="ByobNet"):
        create_latent_model("resnext26ts", {"latent_dim": 12, "J": 3}, 10)


@pytest.mark.parametrize("name,kw", FAMILIES)
@pytest.mark.parametrize("stem", ["keep", "enter", "shuffle"])
def test_magnitude_feeds_abs_beside_the_latent(name, kw, stem):
    """magnitude=True: the first layer reads [z, |z|]; the rest of the network and its API are unchanged."""
    if stem == "enter" and name.startswith(("vit", "deit")):
        pytest.skip("ViTs have one stem (patch embedding)")
    spec = {"latent_dim": 12, "J": 3}
    torch.manual_seed(0)
    lat = create_latent_model(name, spec, 5, stem=stem, magnitude=True, **kw).eval()
    ref = create_latent_model(name, spec, 5, stem=stem, **kw).eval()
    assert lat.latent_adapter["magnitude"] and lat.latent_adapter["in_chans"] == 12
    from walloc_cdl.models.stems import Magnitude

    (mag,) = [m for m in lat.modules() if isinstance(m, Magnitude)]
    z = torch.randn(2, 12, PIX >> 3, PIX >> 3)
    with torch.no_grad():
        assert _features(lat, z).shape == _features(ref, z).shape and lat(z).shape == (2, 5)
        assert torch.equal(mag(z), torch.cat([z, z.abs()], 1))
        assert not torch.allclose(lat(z), lat(-z))  # still sign-aware through the z half
    # Magnitude sits right in front of the conv that reads the input, which now takes 2 × latent_dim
    seq = next(m for m in lat.modules() if isinstance(m, nn.Sequential) and isinstance(m[0], Magnitude))
    assert isinstance(seq[1], nn.Conv2d) and seq[1].in_channels == 24
    assert sum(p.numel() for p in lat.parameters()) > sum(p.numel() for p in ref.parameters())
    if not name.startswith(("vit", "deit")):
        feats = create_latent_model(name, spec, 0, stem=stem, magnitude=True, features_only=True, **kw).eval()
        with torch.no_grad():
            outs = feats(z)
        assert [o.shape[-1] for o in outs] == [(PIX >> 3) // r for r in feats.feature_info.reduction()]
    with pytest.raises(ValueError, match="magnitude"):
        create_strided_model(name, 3, 1, 5, magnitude=True, **kw)


def test_magnitude_vit_features_only():
    feats = create_latent_model("vit_tiny_patch16_224", {"latent_dim": 12, "J": 3}, 0, magnitude=True,
                                features_only=True, img_size=128)
    with torch.no_grad():
        outs = feats(torch.randn(1, 12, 16, 16))
    assert outs[-1].shape[-1] == 8  # 16×16 latent, 2×2 patches: the pixel model's 8×8 tokens
