"""Pre-encode throughput vs decode+resize alone, on real photos and on Fashion-MNIST; prints JSON.

    python benchmarks/pre_encode.py --workers 1 --repeats 3

Reference ("decode+resize alone"): the same source, the same DataLoader workers and the same
decode -> channel conversion -> resize -> crop -> pad steps as `walloc-cdl encode`, with the results
dropped. Job: `encode_dataset` end to end (that pipeline + codec.encode + containers + tar shards +
progress). Runs are interleaved (ref, job, ref, job, ...) and the median ratio is reported, because
the CPUs are shared. The codec is the first shipped one with the right channel count, else a
random-initialised one of the same shape (encode cost does not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from walloc_cdl import Codec2D, codec_card, list_codecs, load_codec  # noqa: E402
from walloc_cdl.data.encode import EncodeOptions, Preparer, _identity, _Items, encode_dataset  # noqa: E402
from walloc_cdl.data.sources import FASHION_MNIST_DIR, IdxSource, ImageFolder  # noqa: E402


def pick_codec(channels: int, J: int, latent_dim: int) -> tuple[torch.nn.Module, str]:
    for name in list_codecs():
        if codec_card(name)["config"].get("channels") == channels and "post_filter" not in codec_card(name)["config"]:
            return load_codec(name), name
    torch.manual_seed(0)
    c = Codec2D(channels=channels, J=J, Ne=None, Nd=32, latent_dim=latent_dim, latent_bits=8, lightweight_encode=True)
    return c.eval(), f"random-init Codec2D(channels={channels}, J={J}, latent_dim={latent_dim})"


def decode_only(source, codec, opts: EncodeOptions) -> tuple[float, int]:
    prep = Preparer(codec.channels, codec.J, source.kind, opts)
    loader = torch.utils.data.DataLoader(_Items(source, prep, range(len(source))), batch_size=None,
                                         num_workers=opts.workers, collate_fn=_identity,
                                         prefetch_factor=4 if opts.workers else None)
    t = time.perf_counter()
    n, skipped = 0, []
    for _, r, _ in loader:
        if isinstance(r, list):
            n += len(r)
        else:
            skipped.append(r.reason)
    if not n:
        raise RuntimeError(f"every item was skipped, e.g. {skipped[:3]}")
    return time.perf_counter() - t, n


def job(source, codec, name, opts: EncodeOptions, out: Path) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    report = encode_dataset(source, out, codec, name, opts)
    return time.perf_counter() - t, report


def compare(label, source, codec, name, opts, repeats, tmp) -> dict:
    refs, jobs, report = [], [], {}
    for _ in range(repeats):
        s, n = decode_only(source, codec, opts)
        refs.append(n / s)
        s, report = job(source, codec, name, opts, tmp / f"out-{label}")
        jobs.append(report["samples"] / s)
    ratios = [j / r for j, r in zip(jobs, refs)]
    return {"corpus": label, "codec": name, "items": len(source), "samples": report["samples"],
            "decode_resize_samples_per_s": [round(x, 1) for x in refs],
            "pre_encode_samples_per_s": [round(x, 1) for x in jobs],
            "ratio_median": round(statistics.median(ratios), 3), "ratios": [round(r, 3) for r in ratios],
            "source_bytes": report["source_bytes"], "output_bytes": report["output_bytes"],
            "size_ratio_vs_source": report["size_ratio"], "container": opts.container}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--photo-copies", type=int, default=2, help="list each photo this many times (more items)")
    p.add_argument("--fmnist-items", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from walloc_cdl.data import corpora

    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        photos = corpora.photos("train") + corpora.photos("test")
        folder = tmp / "photos" / "all"
        folder.mkdir(parents=True)
        for k in range(args.photo_copies):
            for ph in photos:
                os.symlink(ph.path, folder / f"{ph.name}_{k}{ph.path.suffix.lower()}")
        src = ImageFolder(tmp / "photos")
        src.draft = (args.resize, args.resize)  # as `walloc-cdl encode --resize` does
        codec, name = pick_codec(3, 3, 12)
        opts = EncodeOptions(resize=args.resize, crop="center", batch_size=32, workers=args.workers,
                             shard_size=100, progress=False)
        results.append(compare("photos", src, codec, name, opts, args.repeats, tmp))
        if FASHION_MNIST_DIR.exists():
            fm = IdxSource.fashion_mnist(split="train")
            gray, gname = pick_codec(1, 2, 4)
            fopts = EncodeOptions(batch_size=256, workers=args.workers, shard_size=5000, limit=args.fmnist_items,
                                  progress=False)
            fm.items = fm.items[: args.fmnist_items]
            results.append(compare("fashion-mnist", fm, gray, gname, fopts, args.repeats, tmp))
    print(json.dumps({"benchmark": "pre_encode", "machine": f"{platform.node()} ({os.cpu_count()} CPUs, shared)",
                      "date": time.strftime("%Y-%m-%d"), "workers": args.workers, "torch_threads": args.threads,
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
