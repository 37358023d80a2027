"""Latent loader vs a JPEG pixel loader feeding the same model, and disk size vs the JPEG source; prints JSON.

    python benchmarks/latent_loader.py --crops 384 --seconds 20

Data: random 256x256 crops of the real photos (walloc_cdl.data.corpora, shorter side resized to 384),
written as a pixel WebDataset (KEY.jpg quality 90 + KEY.cls), then pre-encoded from those JPEG shards with
`encode_dataset` (npy and webp containers).
Pixel loader: webdataset -> PIL JPEG decode -> RandomCrop(224) + horizontal flip -> tensor (3, 224, 224).
Latent loader: LatentDataset(training=True, crop=(28, 28), dequantize=True) -> (12, 28, 28).
Model: timm resnet18 with in_chans 3 (pixels) or 12 (latents), one SGD training step per batch.
Both: DataLoader with `--workers` processes, main process with `--threads` torch threads (default 1 + 1 =
2 cores), batch 32, samples/s over `--seconds` after a warm-up batch. Also loader-only samples/s.
Codec: the first shipped RGB codec, else a random Codec2D(3, J=3, latent_dim=12) given the closed-form
PCA encoder (walloc_cdl.training.pca) fitted on these crops, so latent statistics (and webp sizes) are
realistic for a linear encoder; its cost is that of any lightweight codec.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from walloc_cdl import Codec2D, codec_card, list_codecs, load_codec  # noqa: E402
from walloc_cdl.data.encode import EncodeOptions, encode_dataset  # noqa: E402
from walloc_cdl.data.loader import LatentDataset, make_loader  # noqa: E402
from walloc_cdl.data.sources import WdsSource  # noqa: E402


def make_crops(n: int, size: int = 256, short: int = 384, seed: int = 0) -> list[np.ndarray]:
    from PIL import Image

    from walloc_cdl.data import corpora

    rng = np.random.default_rng(seed)
    photos = corpora.photos("train")
    out = []
    per = -(-n // len(photos))
    for ph in photos:
        img = Image.open(ph.path).convert("RGB")
        s = short / min(img.size)
        img = img.resize((round(img.size[0] * s), round(img.size[1] * s)), Image.BICUBIC)
        a = np.asarray(img)
        for _ in range(per):
            t, l = rng.integers(0, a.shape[0] - size + 1), rng.integers(0, a.shape[1] - size + 1)
            out.append(a[t:t + size, l:l + size])
    return out[:n]


def write_jpeg_shards(crops: list[np.ndarray], root: Path, quality: int) -> tuple[list[str], int]:
    import webdataset as wds
    from PIL import Image

    root.mkdir(parents=True)
    paths = []
    for k in range(0, len(crops), 128):
        p = root / f"pixels-{k // 128:06d}.tar"
        with wds.TarWriter(str(p), encoder=False, mtime=0) as w:
            for i in range(k, min(k + 128, len(crops))):
                buf = io.BytesIO()
                Image.fromarray(crops[i]).save(buf, format="JPEG", quality=quality)
                w.write({"__key__": f"{i:06d}", "jpg": buf.getvalue(), "cls": str(i % 10).encode()})
        paths.append(str(p))
    return paths, sum(os.path.getsize(p) for p in paths)


def pick_codec(crops: list[np.ndarray]) -> tuple[torch.nn.Module, str]:
    for name in list_codecs():
        cfg = codec_card(name)["config"]
        if cfg.get("channels") == 3 and "post_filter" not in cfg:
            return load_codec(name), name
    from walloc_cdl.training.pca import init_linear_encoder, wavelet_pca

    torch.manual_seed(0)
    codec = Codec2D(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True)
    x = torch.from_numpy(np.stack(crops[:64])).permute(0, 3, 1, 2).float() / 255 - 0.5
    pca = wavelet_pca(codec, [x[i:i + 16] for i in range(0, len(x), 16)])
    init_linear_encoder(codec, pca, step=pca.step_for(rho=0.1))
    return codec.eval(), "PCA-initialised Codec2D(3, J=3, latent_dim=12) (no shipped codec)"


class PixelDataset(torch.utils.data.IterableDataset):
    """The usual pixel path: JPEG WebDataset, decode, random crop + flip, to tensor; resampled shards."""

    def __init__(self, urls: list[str], size: int = 224):
        import webdataset as wds

        def to_xy(s):
            from PIL import Image

            img = Image.open(io.BytesIO(s["jpg"])).convert("RGB")
            a = torch.from_numpy(np.array(img)).permute(2, 0, 1)
            t, l = np.random.randint(0, a.shape[1] - size + 1), np.random.randint(0, a.shape[2] - size + 1)
            a = a[:, t:t + size, l:l + size]
            if np.random.rand() < 0.5:
                a = a.flip(-1)
            return a.float().div_(255).sub_(0.5), int(s["cls"])

        self.pipe = wds.DataPipeline(wds.ResampledShards(urls), wds.tarfile_to_samples(), wds.shuffle(256),
                                     wds.map(to_xy), wds.batched(32, partial=False))

    def __iter__(self):
        return iter(self.pipe)


def measure(loader, model, seconds: float) -> dict:
    it = iter(loader)
    opt = torch.optim.SGD(model.parameters(), lr=0.01) if model is not None else None

    def step(batch):
        x, y = batch
        if model is not None:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return len(y)

    step(next(it))  # warm-up: workers started, first batch
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        n += step(next(it))
    return {"samples": n, "seconds": round(time.perf_counter() - t, 2),
            "samples_per_s": round(n / (time.perf_counter() - t), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crops", type=int, default=384)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import timm

    crops = make_crops(args.crops)
    codec, name = pick_codec(crops)
    out: dict = {"benchmark": "latent_loader", "machine": f"{platform.node()} ({os.cpu_count()} CPUs, shared)",
                 "date": time.strftime("%Y-%m-%d"), "codec": name, "crops": len(crops), "workers": args.workers,
                 "torch_threads": args.threads, "model": "timm resnet18, SGD step, batch 32"}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        urls, jpeg90 = write_jpeg_shards(crops, tmp / "jpeg90", 90)
        _, jpeg75 = write_jpeg_shards(crops, tmp / "jpeg75", 75)
        sizes = {"jpeg_q90_shards": jpeg90, "jpeg_q75_shards": jpeg75,
                 "raw_uint8_pixels": int(sum(c.nbytes for c in crops))}
        for container in ("npy", "webp"):
            rep = encode_dataset(WdsSource(urls), tmp / f"lat-{container}", codec, name,
                                 EncodeOptions(container=container, shard_size=128, batch_size=64, progress=False))
            sizes[f"latent_{container}_shards"] = rep["output_bytes"]
        sizes["latent_npy_vs_jpeg_q90"] = round(sizes["latent_npy_shards"] / jpeg90, 3)
        sizes["latent_webp_vs_jpeg_q90"] = round(sizes["latent_webp_shards"] / jpeg90, 3)
        out["disk_bytes"] = sizes

        lat = LatentDataset(tmp / "lat-npy", "train", training=True, epoch_length=10 ** 9, batch_size=32,
                            shuffle=256, crop=(28, 28), dequantize=True)
        pix = PixelDataset(urls)
        mk = lambda ds: make_loader(ds, num_workers=args.workers, persistent_workers=False)  # noqa: E731
        torch.manual_seed(0)
        pix_model = timm.create_model("resnet18", num_classes=10, in_chans=3)
        lat_model = timm.create_model("resnet18", num_classes=10, in_chans=12)
        res = {
            "pixel_loader_only": measure(mk(pix), None, args.seconds / 2),
            "latent_loader_only": measure(mk(lat), None, args.seconds / 2),
            "pixel_train": measure(mk(pix), pix_model, args.seconds),
            "latent_train": measure(mk(lat), lat_model, args.seconds),
        }
        res["loader_only_ratio"] = round(res["latent_loader_only"]["samples_per_s"]
                                         / res["pixel_loader_only"]["samples_per_s"], 2)
        res["train_ratio"] = round(res["latent_train"]["samples_per_s"] / res["pixel_train"]["samples_per_s"], 2)
        out["throughput"] = res
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
