"""``walloc-cdl compare``: latents vs equal-dimension downsampling vs full resolution; table and plot."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from ..compare import (BENCHMARK_DEFAULTS, COMPARE_KEYS, DEFAULT, compare_config, format_table, load_user_data, plot,
                       run_comparison)
from ..data.builtin import BENCHMARKS, load_benchmark


def _parse_codecs(items: list[str]) -> dict[float, str]:
    out = {}
    for it in items or []:
        r, sep, name = it.partition("=")
        if not sep:
            raise ValueError(f"--codec expects R=NAME_OR_PATH (e.g. 16=rgb-16x), got {it!r}")
        out[float(r)] = name
    return out


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train the same model on WaLLoC latents, on equal-dimension downsampled input and on full resolution "
        "(same budget and seeds), every variant written as shards by the encode job and trained by "
        "`walloc-cdl train`'s function; prints and saves a table and a plot. With no arguments: the embedded "
        f"default ({DEFAULT['benchmark']}, {DEFAULT['model']}).")
    src = p.add_argument_group("data (one of)")
    src.add_argument("--benchmark", choices=sorted(BENCHMARKS), help=f"built-in benchmark (default {DEFAULT['benchmark']})")
    src.add_argument("--data", help="image/audio folder with class subfolders (or anything `encode` reads); "
                                    "20 %% is held out unless --test-data")
    p.add_argument("--test-data", help="separate test set for --data")
    p.add_argument("--size", type=int, default=128, help="--data images: resize + centre-crop side (multiple of 2^J)")
    p.add_argument("--codec", action="append", metavar="R=NAME", help="codec for reduction R (shipped name or "
                                                                      "path); repeatable")
    p.add_argument("--reductions", type=float, nargs="+", help="dimensionality reductions (default: the codecs')")
    p.add_argument("--model", help=f"timm model or audio arch (default {DEFAULT['model']} / resnet1d)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per variant and seed; mean ± std")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the benchmark's)")
    p.add_argument("--n-train", type=int, help="built-in benchmark: training samples")
    p.add_argument("--config", help="YAML/JSON: TrainConfig settings for every run (stem, magnitude, lr, ...)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--out", default="runs/compare", help="results.json, table.md, plot.png and runs/")
    p.add_argument("--resume", action="store_true", help="reuse finished runs in --out, continue the one cut short")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from ..config import read_config_file
    from ..training.train import setup_device

    device = setup_device(args.device)
    progress = not args.quiet
    extra = read_config_file(args.config) if args.config else {}
    study = {k: extra.pop(k) for k in COMPARE_KEYS if k in extra}
    n_test = extra.pop("n_test", None)
    if args.benchmark and args.data:
        raise ValueError("give one of --benchmark, --data")
    codecs = _parse_codecs(args.codec)
    if args.data:
        if not codecs:
            raise ValueError("--data needs --codec R=NAME (e.g. --codec 16=rgb-16x)")
        from ..models import latent_spec

        channels = latent_spec(next(iter(codecs.values()))).channels
        bench = load_user_data(args.data, args.size, args.test_data, 0.2, 0, channels)
        budget = (args.epochs or DEFAULT["epochs"], DEFAULT["batch_size"], DEFAULT["lr"])
    else:
        name = args.benchmark or DEFAULT["benchmark"]
        d = {**DEFAULT, **BENCHMARK_DEFAULTS.get(name, {})}
        kw = {k: v for k, v in (("n_train", args.n_train), ("n_test", n_test)) if v}
        if name in BENCHMARK_DEFAULTS:
            kw = {"n_train": d["n_train"], "n_test": d["n_test"], **kw}
        bench = load_benchmark(name, **kw)
        budget = (args.epochs or d["epochs"], d["batch_size"], d["lr"])
    cfg = compare_config(*budget, device=device.type)
    try:
        cfg = dataclasses.replace(cfg, **extra)
    except TypeError as e:
        raise ValueError(f"{args.config}: {e}; keys are TrainConfig's and {sorted(COMPARE_KEYS)}") from None
    model = args.model or (DEFAULT["model"] if bench.modality == "image" else "resnet1d")
    reductions = args.reductions or sorted(codecs if args.data else bench.codecs)
    out = Path(args.out)
    if out.exists() and any((out / "runs").glob("*")) and not args.resume:
        raise FileExistsError(f"{out} holds runs of an earlier comparison; pass --resume to reuse them or "
                              "choose another --out")
    if progress:
        print(f"{bench.description}: {len(bench.y_train)} train, "
              f"test {', '.join(f'{k}: {len(v[1])}' for k, v in bench.tests.items())}; model {model}; device {device}",
              file=sys.stderr)
    try:
        roundtrip = study.pop("roundtrip", False)
        if roundtrip:
            known = {**bench.codecs, **codecs}
            study["roundtrip"] = {float(r): known.get(float(r)) for r in reductions}
        result = run_comparison(bench, model, [float(r) for r in reductions], args.seeds, cfg, out, codecs,
                                resume=args.resume, progress=progress, device=device.type, **study)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs and the last checkpoint are in {out / 'runs'}; run the same command "
              "with --resume to continue", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", 0)) == 0:
        out.mkdir(parents=True, exist_ok=True)
        table = format_table(result)
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "table.md").write_text(table + "\n")
        plot(result, out / "plot.png")
        print(f"\n{result['description']}\nmodel {result['model']}, {len(result['seeds'])} seed(s), "
              f"{cfg.epochs} epochs, device {result['device']}\n")
        print(table)
        print(f"\nsaved {out / 'results.json'}, {out / 'table.md'}, {out / 'plot.png'}")
    return 0
