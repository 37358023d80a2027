"""``walloc-cdl encode INPUT OUTPUT --codec NAME``: pre-encode a corpus into latent WebDataset shards."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HELP = "pre-encode images/audio (folders, idx, HF datasets, tars) into latent WebDataset shards"
#: --config keys besides EncodeOptions' fields: how the input is read
SOURCE_KEYS = ("kind", "column", "label_column")


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Pre-encode a corpus into latent WebDataset shards (+ _info.json in timm's layout, one class table for "
        "every split, and _report_SPLIT.json listing skipped inputs). Exactly once: --resume after a crash ends "
        "with byte-identical shards; torchrun splits the items over ranks. Everything not below goes in --config "
        "FILE (YAML/JSON): the fields of walloc_cdl.data.EncodeOptions (crop_size, views, seed, pad_mode, hop, "
        "min_segment, mix, normalize, limit, batch_size) and the input's kind, column, label_column.")
    p.add_argument("input", help="image folder (class subfolders = labels), audio folder, idx(.gz) file, "
                                 "WebDataset .tar (or folder / brace pattern of them, also over https://, pipe:, "
                                 "s3://, hf://), saved HF dataset, local .parquet/.arrow/.json/.csv files, "
                                 "or an HF hub dataset hf://datasets/ORG/NAME (read in place, --split)")
    p.add_argument("output", help="dataset folder, s3://BUCKET/PATH or hf://datasets/ORG/NAME: shards, "
                                  "_info.json (last), _report_SPLIT.json")
    p.add_argument("--codec", required=True, help="shipped codec name, .safetensors/.pth path or hub name "
                                                  "hf://ORG/REPO[@REV]/NAME")
    p.add_argument("--split", default="train", help="split name in _info.json (encode splits one by one)")
    p.add_argument("--config", help="YAML/JSON file of further settings (see above)")
    p.add_argument("--resize", type=int, help="images: resize the shorter side to this many pixels")
    p.add_argument("--crop", default="none", choices=["none", "center", "random"],
                   help="images: crop to the --resize square (other sizes: crop_size in --config)")
    p.add_argument("--sample-rate", type=int, help="audio: resample to this rate (Hz)")
    p.add_argument("--segment", type=float, help="audio: cut clips into segments of this many seconds")
    p.add_argument("--container", default="npy", choices=["npy", "webp", "png"],
                   help="latent container: raw int8/int16 .npy, or lossless image tiles")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (torchrun: cuda -> cuda:LOCAL_RANK)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding processes")
    p.add_argument("--resume", action="store_true", help="continue a killed job from its last complete shard")
    p.add_argument("--overwrite", action="store_true", help="replace this split if the output already has it")
    p.add_argument("--new-classes", action="store_true",
                   help="let this split add class names that the dataset's class table (from earlier splits) lacks")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..codec.checkpoints import load_codec
    from ..config import read_config_file, take
    from ..data.encode import EncodeOptions, dist_env, encode_dataset
    from ..data.sources import open_source

    extra = read_config_file(args.config) if args.config else {}
    src_kwargs = {k: extra.pop(k) for k in SOURCE_KEYS if k in extra}
    if "crop_size" in extra:
        extra["crop_size"] = tuple(extra["crop_size"]) if isinstance(extra["crop_size"], (list, tuple)) \
            else (int(extra["crop_size"]),) * 2
    opts = take({**extra, "split": args.split, "container": args.container, "shard_size": args.shard_size,
                 "resize": args.resize, "crop": args.crop, "sample_rate": args.sample_rate, "segment": args.segment,
                 "device": args.device, "workers": args.workers, "resume": args.resume,
                 "overwrite": args.overwrite, "progress": not args.no_progress, "new_classes": args.new_classes},
                EncodeOptions, args.config or "settings")
    kind = src_kwargs.pop("kind", None)
    if not args.input.endswith(".tar") and (args.input.startswith("hf://datasets/") or not Path(args.input).exists()):
        src_kwargs["split"] = args.split  # an HF dataset read in place: --split names its split too
    source = open_source(args.input, kind=kind, **src_kwargs)
    if getattr(source, "streamed", False):
        opts.workers = 0  # each worker would fetch every row group
    codec = load_codec(args.codec)
    if source.kind == "image" and opts.resize:
        source.draft = (opts.resize, opts.resize)
    is_file = Path(args.codec).exists()
    name = Path(args.codec).stem if is_file else args.codec
    report = encode_dataset(source, args.output, codec, name, opts, str(Path(args.codec).resolve()) if is_file else None)
    if dist_env()[0] == 0:
        short = {k: v for k, v in report.items() if k != "skipped"}
        short["skipped"] = len(report["skipped"])
        print(json.dumps(short, indent=1))
        for s in report["skipped"][:20]:
            print(f"skipped {s['source']}: {s['reason']}", file=sys.stderr)
        if len(report["skipped"]) > 20:
            print(f"... {len(report['skipped']) - 20} more in {args.output}/_report_{args.split}.json", file=sys.stderr)
    return 0
