"""Recipe: does a model trained on WaLLoC latents beat one trained on equally small downsampled input?

Copy and edit.  It does what ``walloc-cdl compare`` does, with the Python API: every variant (latents of
each codec, the whole image resized to the same number of values, full resolution) is written as shards by
the encode job and trained by ``train_model`` with the same budget and seeds; a table and a plot come out.

    python recipes/compare.py                                   # the built-in default benchmark
    python recipes/compare.py --benchmark words --model resnet18 --device cuda
    python recipes/compare.py --data ./my_photos --codec 16=rgb-16x --size 256
"""
import argparse
from pathlib import Path

from walloc_cdl.data.builtin import load_benchmark
from walloc_cdl.compare import DEFAULT, compare_config, format_table, load_user_data, plot, run_comparison

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--benchmark", default=DEFAULT["benchmark"], help="a built-in benchmark (walloc_cdl.data.builtin)")
ap.add_argument("--data", help="your own image folder (class subfolders) instead of a benchmark")
ap.add_argument("--codec", action="append", default=[], help="R=NAME, e.g. 16=rgb-16x (needed with --data)")
ap.add_argument("--size", type=int, default=128, help="--data: image side after resize + centre crop")
ap.add_argument("--model", default="resnet10t", help="any timm model, or resnet1d for audio")
ap.add_argument("--seeds", type=int, nargs="+", default=[0])
ap.add_argument("--epochs", type=int, default=4)
ap.add_argument("--device", default="cpu")
ap.add_argument("--out", default="runs/compare-recipe")
args = ap.parse_args()

codecs = {float(r): n for r, _, n in (c.partition("=") for c in args.codec)}
if args.data:   # your images: resized, centre-cropped, 20 % held out
    bench = load_user_data(args.data, args.size, None, 0.2, seed=0, channels=3)
else:           # a built-in benchmark, built offline
    bench = load_benchmark(args.benchmark)
reductions = sorted(codecs or bench.codecs)

cfg = compare_config(epochs=args.epochs, batch_size=128, lr=2e-3, device=args.device)
result = run_comparison(bench, args.model, reductions, args.seeds, cfg, args.out, codecs, device=args.device)
plot(result, Path(args.out) / "plot.png")
print(format_table(result))
