"""``walloc-cdl preview``: see what a codec keeps of one image or sound, and what its latents look like.

Numbers say a codec reaches 30 dB; a picture says *where* it loses (text, texture, edges) and what a
model trained on the latents is fed.  For each input this writes ``OUT/<name>.png``:

* images: the input, the reconstruction from the rounded latents (with PSNR), and every latent channel
  as a map (the low-pass-like first channels, then the detail channels);
* audio: spectrograms of the input and the reconstruction (first channel) and the latent channels as
  rows over time;
* latent files written by ``save_latent`` or taken from shards (``.webp``/``.png``/``.tif`` with the
  walloc-cdl header): the latent maps and their decoding (no PSNR: there is no original).

and prints one JSON line per input: shapes, dimensionality reduction, PSNR, lossless-webp size, bits
per pixel (or sample) and compression ratio against 8-bit pixels (16-bit PCM for audio).  A file that
cannot be read is reported with its name and skipped; the exit status is then 1.

    walloc-cdl preview photo.jpg --codec rgb-16x
    walloc-cdl preview song.flac --codec stereo-5x --seconds 5
    walloc-cdl preview shards_item.webp --codec rgb-16x       # a stored latent
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .codec import Codec1D, Codec2D
from .containers import crop_back, decode_latent, encode_latent, pad_to_multiple

AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


def latent_mosaic(z: torch.Tensor, gap: int = 2) -> np.ndarray:
    """(N, h, w) latent -> one float array in [-1, 1]: the channels tiled in a near-square grid, each
    scaled by its own :func:`channel_scale` (channels differ in spread by 10×; one scale would show only
    the first)."""
    n, h, w = z.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, np.float32)
    zf = z.float().cpu().numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = \
            np.clip(zf[i] / channel_scale(zf[i]), -1, 1)
    return out


def channel_scale(zc: np.ndarray) -> float:
    """99th percentile of |z| (at least 1 latent unit): a few edge or boundary values would otherwise
    set the scale and leave the rest of a detail channel blank."""
    return max(float(np.percentile(np.abs(zc), 99)), 1.0)


def _is_latent(data: bytes) -> bool:
    from .containers import latent_info

    try:
        latent_info(data)
        return True
    except Exception:  # any other image: not ours
        return False


def _show_image(ax: Any, x: np.ndarray, title: str) -> None:
    """(H, W, C) float in [0, 1]; more than 3 channels shows bands 1-3 as RGB."""
    shown = x[..., 0] if x.shape[-1] in (1, 2) else x[..., :3]
    ax.imshow(np.clip(shown, 0, 1), cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def spectrogram_db(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Log-magnitude STFT of one channel in dB, clamped to [-100, 0] (frequency along axis 0, low first)."""
    x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x.float().cpu()
    s = torch.stft(x, n_fft=1024, hop_length=256, window=torch.hann_window(1024), return_complex=True)
    return (20 * torch.log10(s.abs() + 1e-5)).clamp(-100, 0).numpy()


@torch.no_grad()
def preview_image(codec: Codec2D, a: np.ndarray, max_side: int | None) -> tuple[dict[str, Any], Any]:
    """a: (H, W, C) array as decoded (uint8/uint16/float).  Returns (figures, matplotlib figure)."""
    import matplotlib.pyplot as plt

    from .data.sources import image_to_float, match_channels
    from .training.evaluate import psnr_uint8

    x = torch.from_numpy(image_to_float(match_channels(a, codec.channels))).permute(2, 0, 1)[None]
    if max_side and max(x.shape[-2:]) > max_side:
        s = max_side / max(x.shape[-2:])
        x = F.interpolate(x, size=(max(1, round(x.shape[-2] * s)), max(1, round(x.shape[-1] * s))), mode="bicubic",
                          antialias=True, align_corners=False).clamp(0, 1)
    xp, info = pad_to_multiple(x - 0.5, codec.downsampling)
    z = codec.encode(xp)
    x_hat = (crop_back(codec.decode(z), info) + 0.5).clamp(0, 1)
    psnr = psnr_uint8(*((t * 255).round().to(torch.uint8).numpy() for t in (x, x_hat)))
    n_bytes = len(encode_latent(z[0], codec.latent_bits, "webp"))
    H, W = x.shape[-2:]
    figs = {"kind": "image", "input_shape": list(x.shape[1:]), "latent_shape": list(z.shape[1:]),
            "reduction": x.numel() / z.numel(), "psnr_db": psnr, "webp_bytes": n_bytes,
            "bpp": 8 * n_bytes / (H * W), "compression_ratio": x.numel() / n_bytes}
    fig = plt.figure(figsize=(12, 4.2), dpi=110)
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 1, 1])
    _show_image(fig.add_subplot(gs[0]), x[0].permute(1, 2, 0).numpy(), f"input {W}×{H}×{codec.channels}")
    _show_image(fig.add_subplot(gs[1]), x_hat[0].permute(1, 2, 0).numpy(),
                f"decoded: {psnr:.2f} dB, {figs['bpp']:.3f} bpp (CR {figs['compression_ratio']:.0f})")
    _latent_axes(fig.add_subplot(gs[2]), z[0], codec)
    fig.tight_layout()
    return figs, fig


@torch.no_grad()
def preview_latent(codec: Codec1D | Codec2D, z: torch.Tensor) -> tuple[dict[str, Any], Any]:
    """A stored latent (N, h, w) or (N, t): its maps and its decoding."""
    import matplotlib.pyplot as plt

    if z.shape[0] != codec.latent_dim:
        raise ValueError(f"latent has {z.shape[0]} channels, codec {codec.latent_dim}: pass the codec that wrote it")
    x_hat = codec.decode(z[None].float())
    figs = {"kind": "latent", "latent_shape": list(z.shape), "decoded_shape": list(x_hat.shape[1:]),
            "reduction": x_hat[0].numel() / z.numel()}
    fig = plt.figure(figsize=(8.5, 4.2), dpi=110)
    gs = fig.add_gridspec(1, 2)
    if isinstance(codec, Codec2D):
        _show_image(fig.add_subplot(gs[0]), (x_hat[0] + 0.5).clamp(0, 1).permute(1, 2, 0).numpy(), "decoded")
    else:
        _spectrogram_axes(fig.add_subplot(gs[0]), (2 * x_hat[0, 0]).numpy(), codec, "decoded (channel 1)")
    _latent_axes(fig.add_subplot(gs[1]), z, codec)
    fig.tight_layout()
    return figs, fig


@torch.no_grad()
def preview_audio(codec: Codec1D, a: np.ndarray, sample_rate: int, target_rate: int,
                  seconds: float | None) -> tuple[dict[str, Any], Any]:
    """a: (C, T) float in [-1, 1] at ``sample_rate``."""
    import matplotlib.pyplot as plt

    from .data.sources import audio_to_codec

    a = audio_to_codec(a, sample_rate, codec.channels, target_rate)
    if seconds:
        a = a[:, :max(1, int(seconds * target_rate))]
    x = torch.from_numpy(np.clip(a, -1, 1))[None] / 2
    xp, info = pad_to_multiple(x, codec.downsampling)
    z = codec.encode(xp)
    x_hat = crop_back(codec.decode(z), info)
    mse = float(((x - x_hat) ** 2).mean())
    psnr = 10 * math.log10(1 / max(mse, 1e-12))
    n_bytes = len(encode_latent(z[0], codec.latent_bits, "webp"))
    figs = {"kind": "audio", "input_shape": list(x.shape[1:]), "sample_rate": target_rate,
            "latent_shape": list(z.shape[1:]), "reduction": x.numel() / z.numel(), "psnr_db": psnr,
            "webp_bytes": n_bytes, "bits_per_sample": 8 * n_bytes / x.numel(),
            "compression_ratio": 2 * x.numel() / n_bytes}
    fig = plt.figure(figsize=(12, 4.2), dpi=110)
    gs = fig.add_gridspec(1, 3)
    _spectrogram_axes(fig.add_subplot(gs[0]), 2 * x[0, 0].numpy(), codec, f"input, {x.shape[-1] / target_rate:.2f} s")
    _spectrogram_axes(fig.add_subplot(gs[1]), 2 * x_hat[0, 0].numpy(), codec,
                      f"decoded: {psnr:.2f} dB (CR {figs['compression_ratio']:.0f} vs 16-bit)")
    _latent_axes(fig.add_subplot(gs[2]), z[0], codec)
    fig.tight_layout()
    return figs, fig


def _spectrogram_axes(ax: Any, x: np.ndarray, codec: Codec1D, title: str) -> None:
    ax.imshow(spectrogram_db(x), origin="lower", aspect="auto", cmap="magma", vmin=-100, vmax=0)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("frame")
    ax.set_ylabel("frequency bin")


def _latent_axes(ax: Any, z: torch.Tensor, codec: Codec1D | Codec2D) -> None:
    if z.ndim == 3:
        ax.imshow(latent_mosaic(z), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.axis("off")
    else:  # (N, t): one row per channel, each scaled by its own peak
        zf = z.float().numpy()
        scale = np.array([channel_scale(c) for c in zf])[:, None]
        ax.imshow(np.clip(zf / scale, -1, 1), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_xlabel("latent step")
        ax.set_ylabel("channel")
    ax.set_title(f"latent {'×'.join(map(str, z.shape))} (each channel to its 99th pct |z|)", fontsize=9)


# -- CLI --------------------------------------------------------------------------------------------
def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("Write a picture of what a codec does to each input: input, reconstruction (PSNR, bpp, "
                     "compression ratio) and the latent channels. Inputs: images (any channel count the codec "
                     "takes), audio files, or stored latents (save_latent / shard members).")
    p.add_argument("inputs", nargs="+", help="image, audio or latent files")
    p.add_argument("--codec", required=True, help="shipped name, .safetensors, official .pth (+ .json), "
                                                  "or hub name hf://ORG/REPO[@REV]/NAME")
    p.add_argument("--out", default="runs/preview", help="folder for the PNGs")
    p.add_argument("--max-side", type=int, default=1024, help="images: shrink the longer side to this first (0: never)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio: preview the first N seconds (0: all)")
    p.add_argument("--sample-rate", type=int, default=44100, help="audio: resample to the codec's rate")


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .checkpoints import load_codec
    from .data.sources import decode_audio, decode_image

    codec = load_codec(args.codec).eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed, taken = 0, set()
    for name in args.inputs:
        path = Path(name)
        try:
            if not path.is_file():
                raise FileNotFoundError("no such file")
            data = path.read_bytes()  # once: latent sniffing and decoding share it
            if _is_latent(data):
                figs, fig = preview_latent(codec, decode_latent(data))
            elif isinstance(codec, Codec1D):
                if path.suffix.lower() not in AUDIO_EXT:
                    raise ValueError(f"{args.codec} is an audio codec; give audio ({', '.join(AUDIO_EXT)})")
                a, meta = decode_audio(data)
                figs, fig = preview_audio(codec, a, meta["sample_rate"], args.sample_rate, args.seconds or None)
            else:
                a, _ = decode_image(data, name=path.name)
                figs, fig = preview_image(codec, a, args.max_side or None)
        except Exception as e:  # one bad file does not stop the others
            failed += 1
            print(f"{path}: skipped ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        stem, k = path.stem, 1
        while stem in taken:  # a/x.jpg and b/x.png: both pictures kept
            k += 1
            stem = f"{path.stem}-{k}"
        taken.add(stem)
        target = out / f"{stem}.png"
        fig.savefig(target)
        plt.close(fig)
        print(json.dumps({"input": str(path), "codec": args.codec, **figs, "preview": str(target)}))
    return 1 if failed else 0
