"""``walloc-cdl evaluate RUN DATA --split S``: score a trained run on a split; one JSON line."""
from __future__ import annotations

import argparse
import json

HELP = "score a trained run on a split of an encoded dataset (top-1, top-5, samples) as one JSON line"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by walloc-cdl train")
    p.add_argument("data", help="dataset folder (or URL) with _info.json, encoded with the run's codec")
    p.add_argument("--split", default="test", help="split to score")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")


def run(args: argparse.Namespace) -> int:
    from ..data.shards import same_latents
    from ..training.train import DataError, dataset_info, evaluate, load_latent_model, run_config, setup_device

    device = setup_device(args.device)
    cfg = run_config(args.run)
    info = dataset_info(args.data)
    if args.split not in info["splits"]:
        raise DataError(f"{args.data}: no split {args.split!r} (splits: {', '.join(sorted(info['splits']))})")
    block, mine = info.get("codec") or {}, cfg["codec"]
    if not same_latents(mine, block):
        raise DataError(f"{args.data} was encoded with {block.get('name')!r}, the run {args.run} with "
                        f"{mine.get('name')!r}: evaluate on data encoded with the run's codec")
    if list(info.get("classes") or []) != list(cfg.get("classes") or []):
        raise DataError(f"{args.data}'s class table differs from the run's ({len(info.get('classes') or [])} vs "
                        f"{len(cfg.get('classes') or [])} classes): re-encode with the run's classes")
    model = load_latent_model(args.run, device)
    r = evaluate(model, args.data, args.split, device, args.batch_size, cfg.get("crop"))
    print(json.dumps({"top1": r["top1"], "top5": r["top5"], "num_samples": r["num_samples"], "loss": r["loss"],
                      "skipped": r["skipped"], "split": args.split}))
    return 0
