"""Probes for the latent audio model gap (issue 6): which model changes move latent-20x on the instruments set.

The instruments table (RESULTS.md) shows the codec keeps what the task needs (decoded-20x is 9.5 points
above down-20x) while the latent model does not use it.  This script trains single variants of the 1D
model with the CPU suite's former budget (1 500 notes x 12 epochs; ``--n-train``/``--epochs`` change it)
and prints one JSON record per probe, with train accuracy (on the first 500 training clips) to show
over-fitting.

    python benchmarks/latent_audio_probes.py                       # every probe, seed 0, CPU
    python benchmarks/latent_audio_probes.py --probes base magnitude --seeds 0 1

Probes: ``base`` (z only), ``magnitude`` (z and |z|, the default), ``wide`` (stages 64/64/128/128),
``stem128`` (stem 128 channels, k=3), ``dropout`` (stem128 + dropout 0.3), ``views4_equal`` /
``views4_more`` (4 random circular shifts of every training clip encoded as extra views, at the same number
of steps / 4× the steps), ``up8`` / ``up16`` (a learned ×8 / ×16 transposed-conv upsampling stem, then the
network from stride 256/up; ``*_magnitude``: z and |z| into that stem), ``down`` (the down-20x
baseline) and ``down_views4_equal`` (it with the same shift views).
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
from walloc_cdl.compare import CompareConfig, Variant, prepare, train_and_evaluate  # noqa: E402
from walloc_cdl.models.audio import create_audio_model  # noqa: E402

PROBES = {
    # name: (variant kind, model kwargs, views, epochs multiplier, upsampling factor)
    "base": ("latent", dict(magnitude=False), 1, 1, 0),
    "magnitude": ("latent", dict(magnitude=True), 1, 1, 0),
    "wide": ("latent", dict(magnitude=False, widths=(64, 64, 128, 128)), 1, 1, 0),
    "stem128": ("latent", dict(magnitude=False, width=128, kernel=3), 1, 1, 0),
    "dropout": ("latent", dict(magnitude=False, width=128, kernel=3, drop_rate=0.3), 1, 1, 0),
    "views4_equal": ("latent", dict(magnitude=False), 4, 0.25, 0),
    "views4_more": ("latent", dict(magnitude=False), 4, 1, 0),
    "up8": ("latent", dict(), 1, 1, 8),
    "up16": ("latent", dict(), 1, 1, 16),
    "up2_magnitude": ("latent", dict(magnitude=True), 1, 1, 2),
    "up4_magnitude": ("latent", dict(magnitude=True), 1, 1, 4),
    "up8_magnitude": ("latent", dict(magnitude=True), 1, 1, 8),
    "up16_magnitude": ("latent", dict(magnitude=True), 1, 1, 16),
    "down": ("down", dict(), 1, 1, 0),
    "down_views4_equal": ("down", dict(), 4, 0.25, 0),
}


def shifted_views(x: torch.Tensor, views: int, seed: int = 0) -> torch.Tensor:
    """``views`` copies of every clip, each rolled by a random number of samples (the first copy unshifted)."""
    g = torch.Generator().manual_seed(seed)
    out = [x]
    for _ in range(views - 1):
        shifts = torch.randint(0, x.shape[-1], (len(x),), generator=g)
        out.append(torch.stack([torch.roll(a, int(s), -1) for a, s in zip(x, shifts)]))
    return torch.cat(out)


class _WithMagnitude(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.abs()], dim=1)


def build(kind: str, in_chans: int, kw: dict, up: int) -> nn.Module:
    stride = 256 if kind == "latent" else 16
    if not up:
        return create_audio_model("resnet1d_small", in_chans, 10, input_stride=stride, **kw)
    magnitude = kw.pop("magnitude", False)
    body = create_audio_model("resnet1d_small", 64, 10, input_stride=stride // up, **kw)
    cin = 2 * in_chans if magnitude else in_chans
    return nn.Sequential(_WithMagnitude() if magnitude else nn.Identity(),
                         nn.ConvTranspose1d(cin, 64, 2 * up, stride=up, padding=up // 2, bias=False),
                         nn.BatchNorm1d(64), nn.ReLU(inplace=True), body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probes", nargs="+", choices=sorted(PROBES), default=list(PROBES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=12, help="the cpu suite's budget for 1 view")
    ap.add_argument("--out", help="also write the JSON records here")
    args = ap.parse_args()

    bench = load_benchmark("instruments", n_train=args.n_train, n_test=args.n_test)
    codec = load_codec("stereo-20x").eval()
    variants = {"latent": Variant("latent-20x", "latent", 20, "stereo-20x"), "down": Variant("down-20x", "down", 20)}
    cpu = torch.device("cpu")
    cache: dict[tuple[str, int], tuple] = {}
    records = []
    for name in args.probes:
        kind, kw, views, ep_mult, up = PROBES[name]
        if (kind, views) not in cache:
            v = variants[kind]
            x = prepare(v, shifted_views(bench.x_train, views), "audio", codec, cpu)
            tests = {k: (prepare(v, xt, "audio", codec, cpu), yt) for k, (xt, yt) in bench.tests.items()}
            cache[(kind, views)] = (x, bench.y_train.repeat(views), tests)
        x, y, tests = cache[(kind, views)]
        tests = {**tests, "train": (x[:500], y[:500])}
        cfg = CompareConfig(epochs=max(1, round(args.epochs * ep_mult)), batch_size=32, lr=2e-3)
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = build(kind, x.shape[1], dict(kw), up)
            t0 = time.perf_counter()
            res = train_and_evaluate(model, x, y, tests, cfg, seed, cpu, progress=False)
            rec = {"probe": name, "seed": seed, "kind": kind, "views": views, "epochs": cfg.epochs,
                   "steps": res["steps"], "acc": res["acc"], "params": res["params"],
                   "samples_per_s": round(res["samples_per_s"]), "wall_s": round(time.perf_counter() - t0, 1)}
            records.append(rec)
            print(json.dumps(rec), file=sys.stderr, flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(records, indent=1))
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
