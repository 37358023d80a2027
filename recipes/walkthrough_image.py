"""The WaLLoC image walkthrough: encode a photo, look at the latents, store them losslessly, decode.

    python recipes/walkthrough_image.py                          # shipped rgb-16x on a bundled photo
    python recipes/walkthrough_image.py --codec RGB_16x.pth --image kodim05.png   # official checkpoint

Prints a JSON summary (dimensionality reduction, PSNR, lossless container sizes and compression ratios,
bit-exact round trips) and writes a latent histogram, a latent preview and the reconstruction to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms.functional import pil_to_tensor, to_pil_image  # noqa: E402

from walloc_cdl import latent_to_pil, list_codecs, load_codec, pil_to_latent  # noqa: E402
from walloc_cdl.codec.containers import crop_back, decode_latent, encode_latent, pad_to_multiple  # noqa: E402

BUNDLED = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


def scale_for_display(img: Image.Image, n_bits: int) -> Image.Image:
    """Stretch n-bit codes to the full 8-bit range so the latent tiles are visible."""
    lut = [round(i * 255 / (2 ** n_bits - 1)) for i in range(2 ** n_bits)] * 2 ** (8 - n_bits)
    return Image.merge(img.mode, [ch.point(lut) for ch in img.split()])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default="rgb-16x", help="shipped name, official .pth (+.json) or .safetensors")
    p.add_argument("--image", default=BUNDLED, help="any RGB image (default: matplotlib's grace_hopper.jpg)")
    p.add_argument("--out", default="walkthrough_out", help="folder for the figures")
    args = p.parse_args(argv)
    if args.codec == "rgb-16x" and "rgb-16x" not in list_codecs():
        p.error("no shipped rgb-16x in this install; pass --codec PATH to a checkpoint")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    codec = load_codec(args.codec)
    img = Image.open(args.image).convert("RGB" if codec.channels == 3 else "L")
    x = pil_to_tensor(img).float().div(255).sub(0.5).unsqueeze(0)
    x, pad = pad_to_multiple(x, codec.downsampling)
    with torch.no_grad():
        z = codec.encode(x, quantize=False)      # continuous, companded latent
        z_hat = torch.round(z)                    # what gets stored
        x_hat = crop_back(codec.decode(z_hat), pad)
    x = crop_back(x, pad)
    mse = torch.mean((x - x_hat) ** 2).item()
    summary: dict = {
        "codec": args.codec, "image": str(args.image), "input_shape": list(x.shape),
        "latent_shape": list(z_hat.shape),
        "dimensionality_reduction": x.numel() / z.numel(),
        "psnr_db": 10 * math.log10(1 / mse),
    }

    plt.figure(figsize=(5, 3), dpi=150)
    plt.hist(z.flatten().numpy(), range=(-25, 25), bins=151, density=True)
    plt.title("Histogram of latents")
    plt.tight_layout()
    plt.savefig(out / "latent_histogram.png")
    plt.close()
    to_pil_image((x_hat[0] + 0.5).clamp(0, 1)).save(out / "reconstruction.png")

    # Seed-style tiles: 12 channels as a 2x2 grid of RGB pixels; padded to 16 for L (4x4) and CMYK (2x2).
    n_bits, N = codec.latent_bits, z_hat.shape[1]
    tiles = latent_to_pil(z_hat, n_bits, 3) if N % 3 == 0 and math.isqrt(N // 3) ** 2 * 3 == N else None
    if tiles is not None:
        scale_for_display(tiles[0], n_bits).save(out / "latent_preview.png")
        tiles[0].save(out / "latent.webp", lossless=True)
        assert pil_to_latent([Image.open(out / "latent.webp")], N, n_bits, 3).equal(z_hat)

    # Self-describing containers: shape and bit depth travel with the bytes.
    summary["containers"] = {}
    for fmt in ("webp", "png", "tiff", "npy"):
        data = encode_latent(z_hat[0], n_bits, fmt)
        assert decode_latent(data).equal(z_hat[0]), f"{fmt} round trip is not bit-exact"
        summary["containers"][fmt] = {"bytes": len(data), "compression_ratio": x.numel() / len(data),
                                      "bpp": 8 * len(data) / (x.shape[-1] * x.shape[-2]), "bit_exact": True}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
