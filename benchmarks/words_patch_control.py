"""Control for the words result (issue 6): is it the codec, or only the shape of the latent model's input?

On the CPU words suite only the latent models leave chance; the full-resolution and downsampled models do
not, although after the stem every variant runs the same network.  The latent model differs in its input:
12 channels on a stride-8 grid, made by a *fixed* linear map of each 57×57 neighbourhood (wavelet packets
+ the codec's 1×1 projection) and rounded.  This script trains the same latent-16x network behind a
*learned* linear 8×8 stride-8 patch embedding of the full-resolution pixels to the same 12 channels
(``patch-16x``): the pixel model with the latent model's input shape.  If ``patch-16x`` learns as the
latents do, the advantage is the stride-8 channel layout; if it stays at chance, the codec's fixed basis is
what lets the model start.

Same data, model, budget and seeds as ``python benchmarks/downstream.py --suite cpu --benchmarks words``.

    python benchmarks/words_patch_control.py --seeds 0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from walloc_cdl.benchdata import load_benchmark  # noqa: E402
from walloc_cdl.checkpoints import load_codec  # noqa: E402
from walloc_cdl.compare import CompareConfig, Variant, build_model, train_and_evaluate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from downstream import SUITES  # noqa: E402


def patch_model(model_name: str, codec: nn.Module, num_classes: int, img_size: int) -> nn.Module:
    """A learned (2^J)×(2^J) stride-2^J conv to latent_dim channels, then the latent-r model."""
    m = 2 ** codec.J
    latent = build_model(Variant("latent", "latent", codec.dimensionality_reduction), model_name, "image",
                         codec.channels, num_classes, codec, img_size, "keep")
    return nn.Sequential(nn.Conv2d(codec.channels, codec.latent_dim, m, stride=m), latent)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--codec", default="rgb-16x", help="the latent variant whose input shape is copied")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()

    load_kw, model_name, _, epochs, bs, lr = SUITES["cpu"]["words"]
    bench = load_benchmark("words", **load_kw)
    codec = load_codec(args.codec).eval()
    cfg = CompareConfig(epochs=epochs, batch_size=bs, lr=lr)
    runs = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = patch_model(model_name, codec, len(bench.classes), int(bench.x_train.shape[-1]))
        res = train_and_evaluate(model, bench.x_train, bench.y_train, bench.tests, cfg, seed, torch.device("cpu"))
        runs.append({"variant": f"patch-{codec.dimensionality_reduction:g}x", "seed": seed, **res})
        print(f"seed {seed}: {res['acc']}  {res['samples_per_s']:.0f} samples/s", file=sys.stderr)
    report = {"benchmark": bench.description, "model": model_name, "codec": args.codec, "config": vars(cfg),
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": runs}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
