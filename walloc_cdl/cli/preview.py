"""``walloc-cdl preview FILE... --codec NAME``: one picture per input of what the codec does to it."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "picture an input, its reconstruction (PSNR, bpp) and its latent channels; images, audio or stored latents"


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
    from ..preview import preview_files

    failed = 0
    for r in preview_files(args.codec, args.inputs, args.out, args.max_side, args.seconds, args.sample_rate):
        if "error" in r:
            failed += 1
            print(f"{r['input']}: skipped ({r['error']})", file=sys.stderr)
        else:
            print(json.dumps(r))
    return 1 if failed else 0
