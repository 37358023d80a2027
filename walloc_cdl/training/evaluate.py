"""Held-out figures of a codec: PSNR, MS-SSIM, bits per pixel and compression ratio of real containers.

Images go through the full path a user stores: pad to a multiple of 2^J (reflect), encode, round,
write the latent as a lossless webp/png/tiff (``walloc_cdl.codec.containers``), decode, crop back, round to
uint8.  bpp counts the container's bytes over the original pixels; CR = raw bytes (8 bits per channel
per pixel) / container bytes.  Audio PSNR uses the codec's range (x in [-0.5, 0.5], i.e. [-1, 1] / 2)
pooled over all clips of a set; CR is against 16-bit PCM.

Usage::

    figures = heldout_figures(load_codec("rgb-16x"))   # the card's "held_out" block
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from ..codec.model import Codec1D, Codec2D
from ..codec.containers import crop_back, encode_latent, pad_to_multiple

FORMATS = ("webp", "png", "tiff")


def image_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 -> (1, C, H, W) float in [-0.5, 0.5]."""
    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1)[None].float() / 255.0 - 0.5


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) in [-0.5, 0.5] -> (H, W, C) uint8."""
    return ((x[0] + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def image_roundtrip(codec: Codec2D, img: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """(reconstruction uint8 (H, W, C), rounded latent (latent_dim, h, w)) of one image of any size."""
    x, info = pad_to_multiple(image_tensor(img), codec.downsampling)
    z = codec.encode(x)
    return to_uint8(crop_back(codec.decode(z), info)), z[0]


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))


def ms_ssim_uint8(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (pytorch-msssim, 5 scales); None below 161 px per side, where 5 scales do not fit."""
    if min(a.shape[:2]) <= 160:
        return None
    from pytorch_msssim import ms_ssim

    ta = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)[None].float()
    tb = torch.from_numpy(np.array(b, copy=True)).permute(2, 0, 1)[None].float()
    return float(ms_ssim(ta, tb, data_range=255.0))


def evaluate_images(codec: Codec2D, images: Sequence[tuple[str, np.ndarray]],
                    formats: Sequence[str] = FORMATS) -> dict[str, Any]:
    """Mean PSNR / MS-SSIM and, per container, mean bpp and CR; ``per_image`` holds the details."""
    rows = []
    for name, img in images:
        rec, z = image_roundtrip(codec, img)
        pixels, raw = img.shape[0] * img.shape[1], img.size
        row: dict[str, Any] = {"name": name, "size": list(img.shape[:2]), "psnr": psnr_uint8(img, rec),
                               "ms_ssim": ms_ssim_uint8(img, rec)}
        for fmt in formats:
            n = len(encode_latent(z, codec.latent_bits, fmt))
            row[f"bpp_{fmt}"] = 8 * n / pixels
            row[f"cr_{fmt}"] = raw / n
        rows.append(row)
    out: dict[str, Any] = {"images": len(rows), "psnr": float(np.mean([r["psnr"] for r in rows]))}
    ms = [r["ms_ssim"] for r in rows if r["ms_ssim"] is not None]
    out["ms_ssim"] = float(np.mean(ms)) if ms else None
    for fmt in formats:
        out[f"bpp_{fmt}"] = float(np.mean([r[f"bpp_{fmt}"] for r in rows]))
        out[f"cr_{fmt}"] = float(sum(img.size for _, img in images) / sum(img.size / r[f"cr_{fmt}"]
                                                                            for (_, img), r in zip(images, rows)))
    out["per_image"] = rows
    return out


@torch.no_grad()
def audio_roundtrip(codec: Codec1D, clip: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """(reconstruction (C, T) in [-1, 1], rounded latent (latent_dim, t)) of one clip in [-1, 1]."""
    x, info = pad_to_multiple(torch.from_numpy(np.array(clip, copy=True))[None] / 2, codec.downsampling)
    z = codec.encode(x)
    return (crop_back(codec.decode(z), info)[0] * 2).numpy(), z[0]


def evaluate_audio(codec: Codec1D, sets: dict[str, list[np.ndarray]], fmt: str = "webp") -> dict[str, Any]:
    """Per set: pooled PSNR (range 1), mean per-clip PSNR, CR vs 16-bit PCM with the ``fmt`` container."""
    out: dict[str, Any] = {}
    for name, clips in sets.items():
        se, n, per, raw, stored = 0.0, 0, [], 0, 0
        for clip in clips:
            rec, z = audio_roundtrip(codec, clip)
            err = float(np.sum(((rec - clip) / 2).astype(np.float64) ** 2))
            se, n = se + err, n + clip.size
            per.append(10 * math.log10(1 / max(err / clip.size, 1e-12)))
            raw += clip.size * 2
            stored += len(encode_latent(z, codec.latent_bits, fmt))
        out[name] = {"clips": len(clips), "psnr": 10 * math.log10(1 / max(se / n, 1e-12)),
                     "psnr_mean_per_clip": float(np.mean(per)), f"cr_{fmt}": raw / stored}
    return out


def heldout_images(gray: bool = False, max_side: int = 1024) -> list[tuple[str, np.ndarray]]:
    """The held-out photos of :mod:`walloc_cdl.data.corpora`, long side <= ``max_side``."""
    from ..data import corpora

    return [(p.name, corpora.load_photo(p, max_side=max_side, gray=gray)) for p in corpora.photos("test")]


def fashion_mnist_test(n: int = 1000) -> list[tuple[str, np.ndarray]]:
    """The first ``n`` Fashion-MNIST t10k images as (28, 28, 1) uint8."""
    from ..data.sources import load_fashion_mnist

    x, _ = load_fashion_mnist(split="test")
    return [(f"t10k-{i}", x[i][..., None]) for i in range(min(n, len(x)))]


def heldout_figures(codec: Codec1D | Codec2D) -> dict[str, Any]:
    """The card's held-out block: photos (RGB or gray), Fashion-MNIST t10k for 1-channel codecs, audio sets."""
    if isinstance(codec, Codec1D):
        from ..data import corpora

        return {"audio": evaluate_audio(codec, corpora.heldout_audio())}
    if codec.channels not in (1, 3):
        raise ValueError(f"no held-out corpus for {codec.channels}-channel images")
    gray = codec.channels == 1
    figs = evaluate_images(codec, heldout_images(gray=gray))
    figs.pop("per_image")
    out: dict[str, Any] = {"photos": figs}
    if gray:
        fm = evaluate_images(codec, fashion_mnist_test(), formats=("webp",))
        fm.pop("per_image")
        out["fashion_mnist_t10k_first_1000"] = fm
    return out
