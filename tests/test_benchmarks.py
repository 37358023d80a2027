"""Benchmark scripts' own logic (the scripts live outside the package; loaded from their files)."""
import importlib.util
from pathlib import Path

import numpy as np
import torch

from walloc_cdl import load_codec
from walloc_cdl.training.evaluate import evaluate_images

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _photos(n: int = 2, size: int = 64) -> list[tuple[str, np.ndarray]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        x = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=g), size=(size, size),
                                            mode="bicubic", align_corners=False)
        x = x + 0.05 * torch.rand(1, 3, size, size, generator=g)
        out.append((f"img{i}", (x[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()))
    return out


def test_codec_rd_gain_sweep_trades_bits_for_psnr_and_leaves_the_codec_alone():
    rd = _script("codec_rd")
    codec = load_codec("rgb-16x")
    w = codec.encoder[0].weight.clone()
    images = _photos()
    sweep = rd.gain_sweep(codec, images, [0.5, 1.0, 4.0])
    assert torch.equal(codec.encoder[0].weight, w)  # rescaled copies only
    plain = evaluate_images(codec, images, ("webp",))
    assert abs(sweep[1]["psnr"] - plain["psnr"]) < 1e-9 and sweep[1]["bpp_webp"] == plain["bpp_webp"]
    bpp = [p["bpp_webp"] for p in sweep]
    assert bpp[0] < bpp[1] < bpp[2]  # a finer step costs bits...
    assert sweep[2]["psnr"] > sweep[0]["psnr"]  # ...and buys fidelity


def test_words_views_columns_are_each_path_at_the_crops_size():
    x = torch.from_numpy(np.stack([p for _, p in _photos(2, 64)])).permute(0, 3, 1, 2).contiguous()
    cols = _script("words_views").views(x)
    assert list(cols) == ["crop", "decoded rgb-4x", "down 4x and up", "decoded rgb-16x", "down 16x and up",
                          "rgb-16x latent ch 0"]
    assert cols["crop"] is x
    for name in ("decoded rgb-4x", "down 4x and up", "decoded rgb-16x", "down 16x and up"):
        assert cols[name].shape == x.shape and cols[name].dtype == torch.uint8, name
    assert cols["rgb-16x latent ch 0"].shape == (2, 1, 8, 8)
    # each path loses detail, and 16x more than 4x
    err = {k: (cols[k].float() - x.float()).abs().mean().item() for k in ("decoded rgb-4x", "decoded rgb-16x")}
    assert 0 < err["decoded rgb-4x"] < err["decoded rgb-16x"]


def test_fastencode_variants_compute_the_same_latents():
    """The formulations kept for benchmarks/encode_throughput.py agree with the exact encode (float bound)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from floatbound import assert_within, encode_bound
    from walloc_cdl import Codec2D

    variants = _script("fastencode_variants")
    torch.manual_seed(0)
    codec = Codec2D(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True).eval()
    for x in (torch.rand(2, 3, 64, 96) - 0.5, torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)):
        exact = codec.double().encoder[0:2](codec.wavelet_analysis(
            x.double() / 255 - 0.5 if x.dtype == torch.uint8 else x.double(), J=codec.J))
        codec.float()
        for m in ("sep_mm", "mm", "s2d", "dense"):
            assert_within(variants.encode_variant(codec, x, m), exact, encode_bound(codec, x), m)
