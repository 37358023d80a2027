"""``walloc-cdl predict RUN FILE...``: class names for images or sounds, encoded with the run's codec."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "classify image or sound files with a trained run (each encoded with the run's codec)"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by walloc-cdl train")
    p.add_argument("files", nargs="+", help="image or audio files")
    p.add_argument("--codec", help="the codec, where the run's is not a shipped name (its encoder is checked)")
    p.add_argument("--topk", type=int, default=3, help="classes listed per file with --json")
    p.add_argument("--json", action="store_true", help="one JSON line per file (class, prob, top-k)")


def run(args: argparse.Namespace) -> int:
    from ..training.predict import predict_files

    failed = 0
    for r in predict_files(args.run, args.files, args.codec, args.topk):
        if "error" in r:
            failed += 1
            print(f"{r['file']}: skipped: {r['error']}", file=sys.stderr)
        elif args.json:
            print(json.dumps(r))
        else:
            print(f"{r['file']}\t{r['class']}\t{r['prob']:.3f}")
    return 1 if failed == len(args.files) else 0
