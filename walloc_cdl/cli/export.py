"""``walloc-cdl export ROOT OUT``: a latent dataset as parquet (tile column + class labels), for the hub."""
from __future__ import annotations

import argparse
import json

HELP = "write a latent dataset as parquet tiles + labels (load_dataset, hub)"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="latent dataset: folder, s3://..., hf://datasets/ORG/NAME or https:// root")
    p.add_argument("out", help="folder for data/SPLIT-*.parquet, README.md and codec.json")
    p.add_argument("--split", action="append", help="split to export (repeatable; default: all)")
    p.add_argument("--rows-per-file", type=int, default=10000, help="samples per parquet file")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the folder to this HF dataset repo")


def run(args: argparse.Namespace) -> int:
    from ..data.export import export_parquet

    counts = export_parquet(args.root, args.out, args.split, args.rows_per_file, push_to_hub=args.push_to_hub)
    print(json.dumps({"out": str(args.out), "rows": counts, "pushed_to": args.push_to_hub}))
    return 0
