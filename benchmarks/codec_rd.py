"""Rate-distortion of the shipped codecs on held-out photos and sounds, against JPEG, WebP and resizing.

For every image codec and every held-out photo (``walloc_cdl.data.corpora``, long side <= 1024 px):
WaLLoC PSNR / MS-SSIM, bpp and compression ratio of the lossless webp / png / tiff latent containers,
encode and decode MP/s; JPEG and lossy WebP at the quality whose bpp is closest to the codec's webp
bpp; equal-dimension downsampling (antialiased bicubic down by sqrt(r) per side, bicubic up; its small
image stored as lossless webp for a bpp).  Gray codecs also run on Fashion-MNIST t10k (first 1000).
Audio codecs: held-out phrases (held-out programs, the TimGM6mb bank) and real recordings, against
equal-dimension resampling (windowed-sinc decimation by round(r), ideal band-limited upsampling).
Prints JSON; draws an RD plot (PSNR vs bpp, JPEG/WebP curves over quality) to ``--plot``.

    python benchmarks/codec_rd.py > rd.json                       # every shipped codec
    python benchmarks/codec_rd.py --codecs rgb-16x --plot rd.png
    python benchmarks/codec_rd.py --codecs rgb-16x --gain-sweep 0.5 1 2 4 --plot rd.png   # + its RD curve
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from datetime import date

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from walloc_cdl import list_codecs, load_codec
from walloc_cdl.data.transforms import downsample_images, resample_audio
from walloc_cdl.codec import Codec1D
from walloc_cdl.codec.containers import crop_back, pad_to_multiple
from walloc_cdl.training.evaluate import (evaluate_audio, evaluate_images, fashion_mnist_test, heldout_images,
                                          image_tensor, ms_ssim_uint8, psnr_uint8, to_uint8)

QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)


def lossy(img: np.ndarray, fmt: str, quality: int) -> tuple[np.ndarray, int]:
    """(decoded uint8 (H, W, C), bytes) of a JPEG or lossy WebP at ``quality``."""
    buf = io.BytesIO()
    _pil(img).save(buf, format=fmt, quality=quality)
    dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L" if img.shape[-1] == 1 else "RGB"))
    return (dec[..., None] if dec.ndim == 2 else dec), buf.tell()


def matched(img: np.ndarray, fmt: str, target_bytes: int) -> dict:
    """The quality in 1..100 whose size is closest to ``target_bytes`` (sizes grow with quality)."""
    lo, hi, best = 1, 100, None
    while lo <= hi:
        q = (lo + hi) // 2
        dec, n = lossy(img, fmt, q)
        if best is None or abs(n - target_bytes) < abs(best[2] - target_bytes):
            best = (q, dec, n)
        lo, hi = (q + 1, hi) if n < target_bytes else (lo, q - 1)
    q, dec, n = best
    return {"quality": q, "bpp": 8 * n / (img.shape[0] * img.shape[1]), "psnr": psnr_uint8(img, dec),
            "ms_ssim": ms_ssim_uint8(img, dec)}


def bicubic(img: np.ndarray, r: float) -> dict:
    """Equal-dimension baseline: antialiased bicubic down (r times fewer pixels), bicubic up."""
    x = image_tensor(img)
    small = downsample_images(x, r)
    up = F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False)
    rec = to_uint8(up)
    buf = io.BytesIO()
    _pil(to_uint8(small)).save(buf, format="WEBP", lossless=True, exact=True)
    return {"psnr": psnr_uint8(img, rec), "ms_ssim": ms_ssim_uint8(img, rec),
            "bpp_webp": 8 * buf.tell() / (img.shape[0] * img.shape[1]), "size": list(small.shape[-2:])}


@torch.no_grad()
def throughput(codec, images: list[np.ndarray], repeats: int = 1) -> dict:
    """Encode / decode megapixels per second over the images (after one warm-up image)."""
    xs = [pad_to_multiple(image_tensor(im), codec.downsampling) for im in images]
    codec.decode(codec.encode(xs[0][0]))
    mp = sum(im.shape[0] * im.shape[1] for im in images) / 1e6 * repeats
    t0 = time.perf_counter()
    zs = [codec.encode(x) for _ in range(repeats) for x, _ in xs]
    t1 = time.perf_counter()
    for z, (_, info) in zip(zs, xs * repeats):
        crop_back(codec.decode(z), info)
    t2 = time.perf_counter()
    return {"encode_mp_per_s": mp / (t1 - t0), "decode_mp_per_s": mp / (t2 - t1)}


def image_report(name: str, codec, images: list[tuple[str, np.ndarray]], formats=("webp", "png", "tiff"),
                 baselines: bool = True) -> dict:
    r = codec.dimensionality_reduction
    res = evaluate_images(codec, images, formats)
    rows = res.pop("per_image")
    out = {"codec": name, "reduction": r, **res}
    if baselines:
        for (img_name, img), row in zip(images, rows):
            target = round(row["bpp_webp"] * img.shape[0] * img.shape[1] / 8)
            row["jpeg"] = matched(img, "JPEG", target)
            row["webp_lossy"] = matched(img, "WEBP", target)
            row["bicubic"] = bicubic(img, r)
        for key in ("jpeg", "webp_lossy", "bicubic"):
            out[key] = {m: float(np.mean([row[key][m] for row in rows if row[key][m] is not None]))
                        for m in ("psnr", "ms_ssim", "bpp" if key != "bicubic" else "bpp_webp")
                        if any(row[key][m] is not None for row in rows)}
        out["psnr_gain_over_bicubic_db"] = out["psnr"] - out["bicubic"]["psnr"]
    out["per_image"] = rows
    return out


def gain_sweep(codec, images: list[tuple[str, np.ndarray]], factors: list[float]) -> list[dict]:
    """The codec moved along its RD curve without retraining: encoder gain x K, decoder input / K
    (``training.pca.scale_latent_gain``).  K > 1 is a finer quantisation step: more bits, less noise."""
    import copy

    from walloc_cdl.training.pca import scale_latent_gain

    out = []
    for k in factors:
        c = copy.deepcopy(codec)
        scale_latent_gain(c, k)
        res = evaluate_images(c, images, ("webp",))
        out.append({"gain_factor": k, **{m: res[m] for m in ("psnr", "ms_ssim", "bpp_webp", "cr_webp")}})
    return out


def curves(images: list[np.ndarray]) -> dict:
    """Mean bpp and PSNR of JPEG and lossy WebP over QUALITIES."""
    out = {}
    for fmt in ("JPEG", "WEBP"):
        pts = []
        for q in QUALITIES:
            res = [lossy(im, fmt, q) for im in images]
            pts.append({"quality": q,
                        "bpp": float(np.mean([8 * n / (im.shape[0] * im.shape[1]) for im, (_, n) in zip(images, res)])),
                        "psnr": float(np.mean([psnr_uint8(im, d) for im, (d, _) in zip(images, res)]))})
        out[fmt.lower()] = pts
    return out


def audio_report(name: str, codec: Codec1D, sets: dict) -> dict:
    out = {"codec": name, "reduction": codec.dimensionality_reduction, **evaluate_audio(codec, sets)}
    r = max(1, round(codec.dimensionality_reduction))
    for set_name, clips in sets.items():
        se = n = 0.0
        for clip in clips:
            x = torch.from_numpy(np.array(clip, copy=True))[None]
            small = resample_audio(x, r)
            spec = torch.fft.rfft(small.double(), dim=-1)
            T = x.shape[-1]
            up = torch.fft.irfft(spec, n=T, dim=-1) * (T / small.shape[-1])  # ideal band-limited upsampling
            se += float(((up.float().clamp(-1, 1) - x) / 2).pow(2).sum())
            n += x.numel()
        out[set_name]["resample_psnr"] = 10 * np.log10(1 / max(se / n, 1e-12))
        out[set_name]["resample_factor"] = r
    return out


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("rgb", "gray") if report.get(f"curves_{k}")]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, kind in zip(axes[0], panels):
        for fmt, pts in report[f"curves_{kind}"].items():
            ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "-o", ms=3, label=f"{fmt.upper()} (quality sweep)")
        for res in report["images"]:
            if (res["codec"].startswith("gray")) != (kind == "gray") or "bicubic" not in res:
                continue
            ax.plot(res["bpp_webp"], res["psnr"], "*", ms=14, label=f"WaLLoC {res['codec']} (webp latents)")
            if res.get("gain_sweep"):
                sw = res["gain_sweep"]
                ax.plot([p["bpp_webp"] for p in sw], [p["psnr"] for p in sw], "--.", ms=5,
                        label=f"{res['codec']}, encoder gain x{sw[0]['gain_factor']:g}..x{sw[-1]['gain_factor']:g} "
                              "(no retraining)")
            ax.plot(res["bicubic"]["bpp_webp"], res["bicubic"]["psnr"], "s", ms=8,
                    label=f"bicubic 1/{res['reduction'] ** 0.5:g} per side (webp)")
        ax.set_xscale("log")
        ticks = [t for t in (0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5) if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())   # log-axis minor labels overlap
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"held-out {'RGB' if kind == 'rgb' else 'grayscale'} photos")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codecs", nargs="+", default=None, help="shipped names or paths (default: all shipped)")
    p.add_argument("--max-side", type=int, default=1024, help="held-out photos are shrunk to this long side")
    p.add_argument("--fashion-mnist", type=int, default=1000, help="t10k images for gray codecs")
    p.add_argument("--plot", default="benchmarks/codec_rd.png", help="RD plot path ('' for none)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--gain-sweep", type=float, nargs="+", metavar="K",
                   help="also score each image codec with its encoder gain x K and decoder input / K, no retraining "
                        "(its RD curve around the shipped point; `train-codec` with `gain_factor: K` in --config then fine-tunes one)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.codecs or list_codecs()
    report: dict = {"benchmark": "codec_rd", "date": date.today().isoformat(), "machine": platform.node(),
                    "cpu_threads": args.threads, "device": "cpu", "torch": torch.__version__,
                    "images": [], "audio": []}
    rgb = gray = sounds = None
    for name in names:
        codec = load_codec(name)
        print(f"{name} ...", file=sys.stderr, flush=True)
        if isinstance(codec, Codec1D):
            if sounds is None:
                from walloc_cdl.data import corpora
                sounds = corpora.heldout_audio()
            report["audio"].append(audio_report(name, codec, sounds))
            continue
        if codec.channels == 3:
            rgb = rgb or heldout_images(gray=False, max_side=args.max_side)
            res = image_report(name, codec, rgb)
            res.update(throughput(codec, [im for _, im in rgb]))
            if args.gain_sweep:
                res["gain_sweep"] = gain_sweep(codec, rgb, args.gain_sweep)
            report["images"].append(res)
        elif codec.channels == 1:
            gray = gray or heldout_images(gray=True, max_side=args.max_side)
            res = image_report(name, codec, gray)
            res.update(throughput(codec, [im for _, im in gray]))
            if args.gain_sweep:
                res["gain_sweep"] = gain_sweep(codec, gray, args.gain_sweep)
            fm = fashion_mnist_test(args.fashion_mnist)
            fmr = image_report(name, codec, fm, formats=("webp",), baselines=False)
            fmr["bicubic"] = {"psnr": float(np.mean([bicubic(im, codec.dimensionality_reduction)["psnr"] for _, im in fm]))}
            fmr.pop("per_image")
            res["fashion_mnist"] = fmr
            report["images"].append(res)
    if rgb:
        report["curves_rgb"] = curves([im for _, im in rgb])
    if gray:
        report["curves_gray"] = curves([im for _, im in gray])
    if args.plot:
        plot(report, args.plot)
        report["plot"] = args.plot
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
