"""The WaLLoC audio walkthrough: encode a stereo clip, store the latents losslessly, decode, listen.

    python recipes/walkthrough_audio.py                        # stereo-5x on a held-out FluidR3 phrase
    python recipes/walkthrough_audio.py --codec stereo_5x.pth --audio song.flac   # official checkpoint

The default clip is rendered offline with the FluidR3 soundfont (apt-get install fluid-soundfont-gm;
pip install --no-deps tinysoundfont) from instruments no shipped codec trained on.  Prints a JSON summary
(dimensionality reduction, PSNR, lossless container sizes and compression ratios, bit-exact round trips)
and writes the original and the reconstruction as WAV files to --out.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from walloc_cdl import load_codec
from walloc_cdl.codec.containers import crop_back, decode_latent, encode_latent, pad_to_multiple
from walloc_cdl.data import corpora


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default="stereo-5x", help="shipped name, official .pth (+.json) or .safetensors")
    p.add_argument("--audio", help="an audio file (any rate; resampled to 44.1 kHz, channels matched)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of the rendered or cut clip")
    p.add_argument("--out", default="walkthrough_audio_out", help="folder for the WAV files")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    codec = load_codec(args.codec)
    n = int(args.seconds * corpora.SAMPLE_RATE)
    if args.audio:
        clip = corpora.load_audio(args.audio, channels=codec.channels)[:, :n]
    else:
        clip = corpora.render_phrase(corpora.FLUIDR3, seed=1, seconds=args.seconds,
                                     program_pool=corpora.programs("test"))[: codec.channels]
    # As in the paper's walkthrough: zero mean, peak at 0.5, so samples live in [-0.5, 0.5].
    x = torch.from_numpy(clip).float()
    x = (x - x.mean()) / (2 * x.abs().max() + 1e-8)
    x, pad = pad_to_multiple(x[None], codec.downsampling)
    with torch.no_grad():
        z = codec.encode(x)
        x_hat = crop_back(codec.decode(z), pad)
    x = crop_back(x, pad)
    mse = torch.mean((x - x_hat) ** 2).item()
    summary: dict = {
        "codec": args.codec, "audio": args.audio or "FluidR3 phrase, held-out programs", "samples": list(x.shape),
        "latent_shape": list(z.shape), "dimensionality_reduction": x.numel() / z.numel(),
        "psnr_db": 10 * math.log10(1 / mse),  # peak-to-peak range 1, as the paper reports audio PSNR
        "containers": {},
    }
    for fmt in ("webp", "png", "tiff", "npy"):
        data = encode_latent(z[0], codec.latent_bits, fmt)
        assert decode_latent(data).equal(z[0]), f"{fmt} round trip is not bit-exact"
        summary["containers"][fmt] = {"bytes": len(data), "compression_ratio": 2 * x.numel() / len(data),
                                      "bit_exact": True}
    sf.write(out / "original.wav", (2 * x[0]).T.numpy().astype(np.float32), corpora.SAMPLE_RATE)
    sf.write(out / "reconstruction.wav", (2 * x_hat[0]).T.numpy().astype(np.float32), corpora.SAMPLE_RATE)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
