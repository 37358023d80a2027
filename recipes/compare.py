"""Recipe: does a model trained on WaLLoC latents beat one trained on equally small downsampled input?

Copy and edit.  It does what ``walloc-cdl compare`` does, in a dozen lines of the Python API:
the same model family is trained on latents of a shipped codec, on images resized to the same number of
values, and on full resolution, with the same budget and seeds; a table and a plot come out.

    python recipes/compare.py                                   # Fashion-MNIST, gray-4x and gray-16x
    python recipes/compare.py --benchmark words --model resnet18 --device cuda
    python recipes/compare.py --data ./my_photos --codec 16=rgb-16x --size 256
    torchrun --nproc_per_node 4 recipes/compare.py --benchmark words --device cuda   # DDP
"""
import argparse
import json
from pathlib import Path

import torch

from walloc_cdl.benchdata import load_benchmark
from walloc_cdl.compare import (CompareConfig, format_table, load_user_data, plot, run_comparison,
                                setup_distributed, dist_env)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--benchmark", default="fashion-mnist", help="fashion-mnist | words | instruments")
ap.add_argument("--data", help="your own image folder (class subfolders) instead of a benchmark")
ap.add_argument("--codec", action="append", default=[], help="R=NAME, e.g. 16=rgb-16x (needed with --data)")
ap.add_argument("--size", type=int, default=128, help="--data: image side after resize + centre crop")
ap.add_argument("--model", default="resnet10t", help="any supported timm model, or resnet1d for audio")
ap.add_argument("--reductions", type=float, nargs="+", default=[4, 16])
ap.add_argument("--seeds", type=int, nargs="+", default=[0])
ap.add_argument("--epochs", type=int, default=4)
ap.add_argument("--decoded", action="store_true", help="also train on latents decoded back (the codec's bound)")
ap.add_argument("--device", default="auto")
ap.add_argument("--out", default="runs/compare-recipe")
args = ap.parse_args()

device = setup_distributed(args.device)               # one device, or one per torchrun rank
codecs = {float(r): n for r, _, n in (c.partition("=") for c in args.codec)}
if args.data:                                         # your images: resized, centre-cropped, 20 % held out
    bench = load_user_data(args.data, args.size, None, 0.2, seed=0)
else:                                                 # a built-in real-data benchmark (offline)
    bench = load_benchmark(args.benchmark, **({"n_train": 6000, "n_test": 2000}
                                              if args.benchmark == "fashion-mnist" else {}))
    if bench.modality == "audio" and args.reductions == [4, 16]:
        args.reductions, args.model = [5, 20], "resnet1d"

result = run_comparison(bench, args.model, args.reductions, args.seeds, CompareConfig(epochs=args.epochs),
                        device, codecs, include_decoded=args.decoded)

if dist_env()[0] == 0:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "plot.png")
    print(format_table(result))
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
