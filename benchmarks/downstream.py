"""Downstream accuracy at equal input dimensionality: WaLLoC latents vs downsampling vs full resolution.

For each built-in benchmark, trains the same model family on every variant of
:func:`walloc_cdl.compare.run_comparison` (images: 4× and 16×, audio: 5× and 20×) over several seeds,
and prints one JSON document with the tables.  ``--stems`` adds the adapter-stem measurement: the
same latent variant with each of ``walloc_cdl.models.STEMS`` (accuracy and training throughput);
``--stem`` picks the one the main table uses.

Codecs: the shipped ones (``walloc_cdl.list_codecs()``).  Where one is missing, ``--codecs auto`` falls
back to the closed-form start of the same preset (PCA/KLT of the wavelet packets, fitted on the
benchmark's own training inputs, no labels) and says so in the JSON.

    python benchmarks/downstream.py --suite cpu                        # sized for 2 CPU cores (words: ~1 h a seed)
    python benchmarks/downstream.py --suite cpu --benchmarks words --reductions 16 --seeds 0  # one ratio
    python benchmarks/downstream.py --suite gpu --device cuda --stems  # the RESULTS.md figures
    python benchmarks/downstream.py --suite cpu --benchmarks instruments --no-latent --no-down --roundtrip
                                     # the full model on decoded and resized-back test sets: what each keeps
    python benchmarks/downstream.py --export-assets .benchassets       # fonts/photos/Fashion-MNIST subset
    python benchmarks/downstream.py ... --resume                       # after a crash: same command + --resume
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from walloc_cdl.data.builtin import load_benchmark  # noqa: E402
from walloc_cdl.compare import compare_config, format_table, run_comparison  # noqa: E402
from walloc_cdl.models.stems import STEMS  # noqa: E402

# benchmark -> (load kwargs, model, reductions, epochs, batch size, lr) per suite
SUITES = {
    "cpu": {
        "fashion-mnist": (dict(n_train=6000, n_test=2000), "resnet10t", [4, 16], 6, 128, 2e-3),
        # 128² crops with the GPU set's text size (12-18 px), 60 000 distinct samples seen once: 2 000
        # samples x 12 epochs left every variant at chance and 4 000 x 15 let latent-16x memorise (4.1 %)
        "words": (dict(n_train=60000, n_test=1000, size=128, font_px=(24, 36)), "resnet10t", [4, 16], 1, 64,
                  2e-3),
        # 6000 distinct notes for 3 epochs (same steps as 1500 x 12): with 1500 the latent models over-fit
        # (RESULTS.md, latent audio probes); rendering notes is nearly free, training steps are not
        "instruments": (dict(n_train=6000, n_test=500), "resnet1d_small", [5, 20], 3, 32, 2e-3),
    },
    "gpu": {
        "fashion-mnist": (dict(n_train=20000, n_test=5000), "resnet18", [4, 16], 10, 256, 2e-3),
        "words": (dict(n_train=10000, n_test=2000), "resnet18", [4, 16], 10, 128, 2e-3),
        "instruments": (dict(n_train=2000, n_test=500), "resnet1d", [5, 20], 20, 64, 2e-3),
    },
}


def closed_form_codec(name: str, x_train: torch.Tensor, modality: str, device: torch.device) -> torch.nn.Module:
    """The preset's codec with its encoder set to the PCA of the packet coefficients of ``x_train``."""
    from walloc_cdl.codec.checkpoints import preset
    from walloc_cdl.codec import build_codec
    from walloc_cdl.training.pca import init_linear_encoder, wavelet_pca

    p = preset(name)
    codec = build_codec(p["codec"]).to(device)
    x = x_train[:2048]
    xs = (x.float() / 255 - 0.5) if modality == "image" else x.float() / 2
    pca = wavelet_pca(codec, (xs[i:i + 128].to(device) for i in range(0, len(xs), 128)))
    init_linear_encoder(codec, pca, pca.step_for(p["rho"]))
    return codec.eval()


def resolve_codecs(bench, mode: str, device: torch.device) -> tuple[dict[float, object], dict[str, str]]:
    from walloc_cdl.codec.checkpoints import list_codecs

    shipped = set(list_codecs())
    codecs, sources = {}, {}
    for r, name in bench.codecs.items():
        if mode in ("auto", "shipped") and name in shipped:
            codecs[float(r)], sources[name] = name, "shipped"
        elif mode == "shipped":
            raise SystemExit(f"shipped codec {name} missing (list_codecs(): {sorted(shipped)})")
        else:
            codecs[float(r)] = closed_form_codec(name, bench.x_train, bench.modality, device)
            sources[name] = "closed-form PCA of the benchmark's training inputs (shipped codec absent)"
    return codecs, sources


def write_idx_subset(src_root: str, out: Path, n_train: int, n_test: int) -> None:
    """Fashion-MNIST subset as idx.gz files (class-balanced, same order as data.builtin.fashion)."""
    from walloc_cdl.data.builtin.fashion import _subset
    from walloc_cdl.data.sources import load_fashion_mnist

    out.mkdir(parents=True, exist_ok=True)
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = load_fashion_mnist(src_root, split)
        idx = _subset(y, n, 0)
        for what, a in (("images-idx3-ubyte", x[idx]), ("labels-idx1-ubyte", y[idx].astype(np.uint8))):
            head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
            (out / f"{prefix}-{what}.gz").write_bytes(gzip.compress(head + a.astype(np.uint8).tobytes(), 6))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    ap.add_argument("--benchmarks", nargs="+", help="subset of the suite's benchmarks")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--codecs", choices=["auto", "shipped", "pca"], default="auto")
    ap.add_argument("--stem", choices=list(STEMS), default="keep", help="adapter stem of the latent variants")
    ap.add_argument("--magnitude", action=argparse.BooleanOptionalAction, default=None,
                    help="|z| beside z into latent models (default: on for audio, off for images)")
    ap.add_argument("--stems", action="store_true",
                    help=f"also measure every adapter stem ({', '.join(STEMS)}) on latent-16x, first seed")
    ap.add_argument("--assets", help="folder from --export-assets (machines without the Debian data packages)")
    ap.add_argument("--export-assets", metavar="DIR", help="write fonts, photos and a Fashion-MNIST subset, then exit")
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every suite's epochs")
    ap.add_argument("--decoded", action="store_true", help="add decoded-R variants (latents decoded, full model)")
    ap.add_argument("--roundtrip", action="store_true",
                    help="also score the trained full model on the test sets decoded by each codec and resized "
                         "down and back (no extra training: what each path keeps of what full resolution reads)")
    ap.add_argument("--reductions", type=float, nargs="*",
                    help="subset of the suite's reductions (none given: full resolution only)")
    ap.add_argument("--no-full", action="store_true", help="skip the full-resolution variant")
    ap.add_argument("--no-down", action="store_true", help="skip the downsampled variants")
    ap.add_argument("--no-latent", action="store_true", help="skip the latent variants (baselines, and decoded-R with --decoded)")
    ap.add_argument("--lr", type=float, help="override every benchmark's learning rate (a sensitivity check)")
    ap.add_argument("--n-train", type=int,
                    help="override the training-set size (distinct samples; a longer budget at 1 epoch)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--verbose", action="store_true", help="print each run's accuracy as it finishes")
    ap.add_argument("--state", default="runs/downstream_state",
                    help="folder for the run folders of every (variant, seed), one subfolder a benchmark")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted run: finished runs with the same data and settings are reused, the "
                         "one cut short continues from its last checkpoint")
    args = ap.parse_args()
    if args.stems and args.no_latent:  # fail now, not after hours of training
        ap.error("--stems measures the latent variant; it cannot be combined with --no-latent")
    if args.roundtrip and args.no_full:
        ap.error("--roundtrip scores the full-resolution model; it cannot be combined with --no-full")

    if args.export_assets:
        from walloc_cdl.data.builtin import words
        from walloc_cdl.data.sources import FASHION_MNIST_DIR

        d = Path(args.export_assets)
        words.export_assets(d / "words")
        n = SUITES["gpu"]["fashion-mnist"][0]
        write_idx_subset(str(FASHION_MNIST_DIR), d / "fashion-mnist", n["n_train"], n["n_test"])
        print(json.dumps({"exported": str(d)}))
        return 0
    if args.assets:
        os.environ["WALLOC_CDL_WORDS_ASSETS"] = str(Path(args.assets) / "words")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    suite = SUITES[args.suite]
    names = args.benchmarks or list(suite)
    for name in names if args.reductions is not None else []:  # before any training, not after hours of it
        unknown = set(args.reductions) - set(suite[name][2])
        if unknown:
            raise SystemExit(f"--reductions {sorted(unknown)}: {name} has {suite[name][2]}; pick with --benchmarks")
    report = {"suite": args.suite, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seeds": args.seeds, "results": {}}
    for name in names:
        load_kw, model, reductions, epochs, bs, lr = suite[name]
        if args.n_train:
            load_kw = dict(load_kw, n_train=args.n_train)
        if name == "fashion-mnist" and args.assets:
            load_kw = dict(load_kw, root=str(Path(args.assets) / "fashion-mnist"))
        state = Path(args.state) / name
        t0 = time.perf_counter()
        bench = load_benchmark(name, **load_kw)
        codecs, sources = resolve_codecs(bench, args.codecs, device)
        if args.reductions is not None:
            reductions = args.reductions
        roundtrip = {float(r): codecs.get(float(r)) for r in reductions} if args.roundtrip else None
        cfg = compare_config(max(1, round(epochs * args.epochs_scale)), bs, args.lr or lr, stem=args.stem,
                             magnitude=args.magnitude, device=device.type)
        res = run_comparison(bench, model, [float(r) for r in reductions], args.seeds, cfg, state, codecs,
                             include_full=not args.no_full, progress=args.verbose, include_decoded=args.decoded,
                             include_down=not args.no_down, roundtrip=roundtrip, resume=args.resume,
                             include_latent=not args.no_latent, device=device.type)
        res["codec_sources"] = sources
        res["wall_s"] = time.perf_counter() - t0
        res.pop("runs")
        report["results"][name] = res
        print(f"\n## {name} ({model})\n{format_table(res)}", file=sys.stderr)
        if args.stems and bench.modality == "image":
            stems = {}
            for stem in STEMS:
                r16 = {16.0: codecs[16.0]}
                s = run_comparison(bench, model, [16.0], args.seeds[:1], dataclasses.replace(cfg, stem=stem),
                                   state / f"stem-{stem}", r16, include_full=False, include_down=False,
                                   progress=False, resume=args.resume, device=device.type)
                row = next(x for x in s["summary"] if x["kind"] == "latent")
                stems[stem] = {k: row[k] for k in ("acc_mean", "samples_per_s", "params")}
            report["results"][name]["stems"] = stems
            print(f"stems: {json.dumps(stems)}", file=sys.stderr)
        if args.out:  # after every benchmark, so a run cut short keeps what finished
            Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
