"""Training throughput of ``walloc-cdl train`` on 16x latent shards vs equal-dimension and full-resolution
pixel shards (same model, loader and settings), and its peak memory at N and 8N samples.

The images are seeded noise at 128² RGB: throughput does not depend on what the pixels show, and no data
package is needed.  Every variant is written by the encode job (``compare.write_variant``) and trained by
``train_model`` for one epoch of ``--samples`` samples; the figure is the run's ``samples_per_s`` (loader
and model together, the epoch's wall clock), reported as a ratio to full resolution.  Peak RSS is that of a
fresh ``walloc-cdl train`` process (``wait4``'s ru_maxrss), on the latent set at N and at 8N samples with
the same number of steps (loader in the main process): the loader streams, so memory should not grow with
the dataset.

    python benchmarks/train_throughput.py                       # 2 CPU cores: a few minutes
    python benchmarks/train_throughput.py --device cuda --samples 8192 --model resnet50
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from walloc_cdl.data.builtin import Benchmark  # noqa: E402
from walloc_cdl.compare import Variant, compare_config, write_variant  # noqa: E402
from walloc_cdl.training.train import train_model  # noqa: E402


def noise_bench(n: int, size: int = 128, classes: int = 10, seed: int = 0) -> Benchmark:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % classes
    return Benchmark(f"noise{n}", "image", x, y, {}, [str(c) for c in range(classes)], {16: "rgb-16x"},
                     "seeded noise, 128² RGB")


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak resident memory of a child process in MB: its VmHWM, polled until it exits (``wait4``'s ru_maxrss
    would count the pre-exec copy of this process that ``fork`` makes)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.05)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd}: failed: {p.stderr.read().decode()[-2000:]}")
    return peak / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1024, help="samples per timed epoch (and the N of the RSS check)")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tmp", help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="train_throughput_"))
    shutil.rmtree(tmp / "runs", ignore_errors=True)      # shards are reused (cached by content), runs are not
    for old in tmp.glob("rss-*"):
        shutil.rmtree(old)
    n = args.samples
    bench = noise_bench(n)
    cfg = compare_config(1, args.batch_size, 1e-3, device=args.device, workers=args.workers, model=args.model)
    report = {"model": args.model, "batch_size": args.batch_size, "samples": n, "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "workers": args.workers, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "variants": {}}
    roots = {}
    for v in (Variant("latent-16x", "latent", 16, "rgb-16x"), Variant("down-16x", "down", 16),
              Variant("full", "full", 1)):
        roots[v.name] = root = write_variant(bench, v, tmp / "shards", args.device, splits=["train"], shard_size=256)
        res = train_model(root, out=tmp / "runs" / v.name, config=cfg, progress=False)
        report["variants"][v.name] = {"input_shape": res["input_shape"], "samples_per_s": res["samples_per_s"],
                                      "train_seconds": res["train_seconds"]}
        print(f"{v.name}: {res['samples_per_s']:.1f} samples/s", file=sys.stderr)
    full = report["variants"]["full"]["samples_per_s"]
    for v in report["variants"].values():
        v["speed_vs_full"] = v["samples_per_s"] / full
    # peak RSS of a fresh train process at N and 8N samples, the same number of steps
    big = write_variant(noise_bench(8 * n, seed=1), Variant("latent-16x", "latent", 16, "rgb-16x"), tmp / "shards",
                        args.device, splits=["train"], shard_size=256)
    (tmp / "rss.json").write_text(json.dumps({"epochs": 1, "batch_size": args.batch_size, "epoch_length": n,
                                              "workers": 0, "model": args.model}))   # one process to measure
    rss = {}
    for label, root in (("N", roots["latent-16x"]), ("8N", big)):
        cmd = [sys.executable, "-m", "walloc_cdl.cli", "train", str(root), "--out", str(tmp / f"rss-{label}"),
               "--config", str(tmp / "rss.json"), "--device", args.device, "--quiet"]
        rss[label] = peak_rss_mb(cmd)
    report["peak_rss_mb"] = {**rss, "ratio_8N_to_N": rss["8N"] / rss["N"]}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
