"""``walloc-cdl compare``: the same model trained on WaLLoC latents, on equal-dimension downsampling and on
full resolution, through the path users run: encode job -> shards -> streaming loader -> ``train_model``.

Variants, for each reduction r (images: 4, 16; audio: 5, 20):

* ``latent-r``: the codec's latents (``walloc-cdl encode``), through an adapter stem;
* ``down-r``: the whole input resized to 1/√r per side, antialiased (audio: decimated by r), stored as
  uint8 pixel shards by the same encode job, fed to the same network with its first √r of stride removed;
* ``full``: the unmodified network on the full-resolution pixels (uint8 shards);
* ``decoded-r`` (``include_decoded``): the latents decoded back to full resolution, for the full model.

Every variant's shards are written once per content fingerprint (data, transform, options) under the
cache folder and reused by later comparisons; each (variant, seed) trains into ``OUT/runs/`` with
:func:`walloc_cdl.training.train.train_model`, the same budget for all, and is scored on every test split
with :func:`walloc_cdl.training.train.evaluate`.  ``resume=True`` reuses finished runs whose settings match
and continues the one cut short from its last checkpoint (bit-identical on the CPU).

Usage::

    walloc-cdl compare                                        # the embedded default (a few minutes, 2 cores)
    walloc-cdl compare --benchmark words --model resnet18 --seeds 0 1 2 --device cuda
    walloc-cdl compare --data ./my_images --size 128 --codec 16=rgb-16x --codec 4=rgb-4x
    walloc-cdl compare ... --resume                           # the same command after a crash
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .data.builtin import Benchmark, cache_dir
from .training.train import CONFIG_NAME, TrainConfig, evaluate, load_latent_model, train_model


# -- variants ---------------------------------------------------------------------------------------
@dataclass
class Variant:
    """One way to feed the model: latents of a codec, downsampled input, or full resolution."""

    name: str
    kind: str                  # "latent" | "down" | "full" | "decoded" | "down-up" (test inputs only)
    reduction: float           # nominal dimensionality reduction r
    codec: Any = None          # codec name/path or module (latent and decoded variants)


def make_variants(reductions: list[float], codecs: dict[float, Any], include_full: bool = True,
                  include_decoded: bool = False, include_down: bool = True,
                  include_latent: bool = True) -> list[Variant]:
    """latent-r and down-r for each r (a latent variant only where a codec is known), then full.

    ``include_decoded`` adds decoded-r: the latents decoded back to full resolution, for the full model.
    """
    out = []
    for r in reductions:
        name = f"{r:g}x"
        if r in codecs:
            if include_latent:
                out.append(Variant(f"latent-{name}", "latent", r, codecs[r]))
            if include_decoded:
                out.append(Variant(f"decoded-{name}", "decoded", r, codecs[r]))
        if include_down:
            out.append(Variant(f"down-{name}", "down", r))
    if include_full:
        out.append(Variant("full", "full", 1))
    return out


def variant_transform(v: Variant, channels: int, modality: str) -> nn.Module:
    """What the encode job writes for ``v``: the codec itself, or a pixel transform (data.transforms)."""
    from .codec.checkpoints import load_codec
    from .data.transforms import PixelTransform

    ndim = 2 if modality == "image" else 1
    codec = None
    if v.codec is not None:
        codec = v.codec if isinstance(v.codec, nn.Module) else load_codec(v.codec)
    if v.kind == "latent":
        return codec
    if v.kind == "decoded":
        return PixelTransform(channels, 1, ndim, decode_with=codec)
    if v.kind == "down-up":
        return PixelTransform(channels, v.reduction, ndim, restore=True)
    return PixelTransform(channels, v.reduction if v.kind == "down" else 1, ndim)


# -- shards -----------------------------------------------------------------------------------------
def _sources(bench: Benchmark) -> dict[str, Any]:
    from .data.sources import TensorSource

    rate = bench.meta.get("sample_rate")
    out = {"train": TensorSource(bench.x_train, bench.y_train, bench.classes, bench.modality,
                                 f"{bench.name}-train", rate)}
    for split, (x, y) in bench.tests.items():
        out[split] = TensorSource(x, y, bench.classes, bench.modality, f"{bench.name}-{split}", rate)
    return out


def write_variant(bench: Benchmark, v: Variant, cache: str | Path, device: str = "cpu",
                  progress: bool = False, splits: list[str] | None = None, shard_size: int = 1000) -> Path:
    """The variant's dataset (every split of ``bench``) written by the encode job, once per fingerprint.

    A folder whose splits are complete is reused as it is; one cut short is resumed (exactly once)."""
    from .data.encode import EncodeOptions, encode_dataset
    from .data.shards import codec_block

    transform = variant_transform(v, bench.channels, bench.modality)
    sources = _sources(bench)
    if splits is not None:
        sources = {k: s for k, s in sources.items() if k in splits}
    block = codec_block(transform, v.name)
    key = hashlib.sha256(json.dumps({"data": {k: s.fingerprint() for k, s in sources.items()},
                                     "transform": block["weights_sha256"], "shard_size": shard_size,
                                     "world": int(os.environ.get("WORLD_SIZE", 1))},
                                    sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache) / f"{bench.name}-{v.name}-{key}"
    for split, src in sources.items():
        opts = EncodeOptions(split=split, shard_size=shard_size, batch_size=256, device=device, workers=0,
                             resume=True, progress=progress)
        encode_dataset(src, root, transform, v.name, opts)
    return root


# -- runs -------------------------------------------------------------------------------------------
def _finished(run: Path, data: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The final record of a finished run of these settings on this data, else None."""
    path = run / CONFIG_NAME
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    same = saved.get("status") == "done" and saved.get("settings") == json.loads(json.dumps(cfg.result_keys())) \
        and Path(saved.get("data", "")).resolve() == data.resolve()
    return saved.get("final") if same else None


def run_variant(bench: Benchmark, v: Variant, model_name: str, seeds: list[int], cfg: TrainConfig, out: Path,
                cache: Path, resume: bool, progress: bool, extra_tests: dict[str, Path] | None = None,
                device: str = "cpu") -> list[dict[str, Any]]:
    """Encode (cached), train one run per seed, score every test split; one record per seed."""
    t0 = time.perf_counter()
    root = write_variant(bench, v, cache, device, progress)
    prep_s = time.perf_counter() - t0
    tests = list(bench.tests)
    records = []
    for seed in seeds:
        run = out / "runs" / f"{v.name}-seed{seed}"
        rcfg = dataclasses.replace(cfg, model=model_name, seed=seed, val_split=tests[0])
        final = _finished(run, root, rcfg) if resume else None
        if final is None:
            if run.exists() and not resume and int(os.environ.get("RANK", 0)) == 0:
                import shutil

                shutil.rmtree(run)
            _barrier()
            final = train_model(root, out=run, config=rcfg, resume=resume, progress=progress)
        scored = load_latent_model(run, rcfg.device if rcfg.device != "auto" else "cpu")
        dev = next(scored.parameters()).device
        acc = {t: evaluate(scored, root, t, dev, 2 * cfg.batch_size, rcfg.crop)["top1"] for t in tests}
        extra = {k: evaluate(scored, p, k.split("@")[0], dev, 2 * cfg.batch_size)["top1"]
                 for k, p in (extra_tests or {}).items()}
        cfg_saved = json.loads((run / CONFIG_NAME).read_text())
        shape = cfg_saved["input_shape"]
        rec = {"variant": v.name, "kind": v.kind, "seed": seed, "input_shape": shape,
               "input_dims": math.prod(shape), "acc": acc, **({"acc_extra": extra} if extra else {}),
               "samples_per_s": final["samples_per_s"], "train_seconds": final["train_seconds"],
               "final_train_loss": final["train_loss"], "params": sum(p.numel() for p in scored.parameters()),
               "prep_s": prep_s, "shards": str(root), "run": str(run),
               "codec": v.codec if isinstance(v.codec, str) else None}
        records.append(rec)
        if progress:
            accs = " ".join(f"{k}={a:.2f}" for k, a in {**acc, **extra}.items())
            print(f"  {v.name:>12} seed {seed}: {accs}  {rec['samples_per_s']:.0f} samples/s", file=sys.stderr)
    return records


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def run_comparison(bench: Benchmark, model_name: str, reductions: list[float], seeds: list[int],
                   cfg: TrainConfig, out: str | Path, codecs: dict[float, Any] | None = None,
                   include_full: bool = True, include_decoded: bool = False, include_down: bool = True,
                   include_latent: bool = True, roundtrip: dict[float, Any] | None = None,
                   resume: bool = False, progress: bool = True, cache: str | Path | None = None,
                   device: str = "cpu") -> dict[str, Any]:
    """Every variant × seed on ``bench`` through shards and ``train_model``; per-run records and summaries.

    ``roundtrip`` ({r: codec or None}): the trained full model is also scored on every test split after a
    round trip, decoded by each codec (``split@decoded-r``) and resized down by r and back
    (``split@down-up-r``); no extra training.
    """
    out = Path(out)
    cache = Path(cache) if cache is not None else cache_dir().parent / "shards"
    codecs = {**bench.codecs, **(codecs or {})}
    variants = make_variants(reductions, {r: c for r, c in codecs.items() if c is not None}, include_full,
                             include_decoded, include_down, include_latent)
    full_dims = math.prod(bench.x_train.shape[1:])
    extra: dict[str, Path] = {}
    if roundtrip and include_full:
        for r, c in sorted(roundtrip.items()):
            trips = ([Variant(f"decoded-{r:g}x", "decoded", r, c)] if c is not None else []) + \
                    [Variant(f"down-up-{r:g}x", "down-up", r)]
            for t in trips:
                root = write_variant(bench, t, cache, device, progress, splits=list(bench.tests))
                extra.update({f"{k}@{t.name}": root for k in bench.tests})
    runs, summary = [], []
    for v in variants:
        recs = run_variant(bench, v, model_name, seeds, cfg, out, cache, resume, progress,
                           extra if v.kind == "full" else None, device)
        for r in recs:
            r["reduction"] = full_dims / r["input_dims"]
        runs.extend(recs)
        summary.append(summarize(recs))
    return {"benchmark": bench.name, "description": bench.description, "model": model_name, "stem": cfg.stem,
            "magnitude": cfg.magnitude, "device": device, "train_size": len(bench.y_train),
            "test_sizes": {k: len(v[1]) for k, v in bench.tests.items()}, "seeds": seeds,
            "config": dataclasses.asdict(cfg), "summary": summary, "runs": runs, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    first = per_seed[0]

    def over_seeds(key: str, stat: Any) -> dict[str, float]:
        return {k: float(stat([r[key][k] for r in per_seed])) for k in first[key]}

    out = {"variant": first["variant"], "kind": first["kind"], "input_shape": first["input_shape"],
           "input_dims": first["input_dims"], "reduction": first["reduction"],
           "acc_mean": over_seeds("acc", np.mean), "acc_std": over_seeds("acc", np.std),
           "samples_per_s": float(np.mean([r["samples_per_s"] for r in per_seed])),
           "params": first["params"], "n_seeds": len(per_seed)}
    if "acc_extra" in first:
        out["acc_extra_mean"], out["acc_extra_std"] = over_seeds("acc_extra", np.mean), over_seeds("acc_extra", np.std)
    return out


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table: one row per variant."""
    rows = result["summary"]
    tests = list(rows[0]["acc_mean"])
    full = next((r for r in rows if r["kind"] == "full"), None)
    head = ["variant", *[f"acc {t} %" for t in tests], "input", "dims", "reduction", "train samples/s",
            *(["speed vs full"] if full else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        accs = [f"{r['acc_mean'][t]:.2f} ± {r['acc_std'][t]:.2f}" for t in tests]
        cells = [r["variant"], *accs, "×".join(map(str, r["input_shape"])), str(r["input_dims"]),
                 f"{r['reduction']:.1f}×", f"{r['samples_per_s']:.0f}",
                 *([f"{r['samples_per_s'] / full['samples_per_s']:.2f}×"] if full else [])]
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:  # roundtrip: the same trained model on round-tripped test inputs
        if r.get("acc_extra_mean"):
            scores = ", ".join(f"{k} {m:.2f} ± {r['acc_extra_std'][k]:.2f}" for k, m in r["acc_extra_mean"].items())
            lines.append(f"\n{r['variant']} model on round-tripped test inputs (no retraining): {scores}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """Accuracy (mean ± std over seeds) against input dims, and training throughput, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 (matplotlib.ticker below)

    rows = result["summary"]
    test = list(rows[0]["acc_mean"])[0]
    colors = {"latent": "tab:blue", "down": "tab:orange", "full": "tab:green", "decoded": "tab:gray"}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        c = colors[r["kind"]]
        a1.errorbar(r["input_dims"], r["acc_mean"][test], yerr=r["acc_std"][test], fmt="o", color=c, capsize=3)
        a1.annotate(r["variant"], (r["input_dims"], r["acc_mean"][test]), textcoords="offset points", xytext=(5, 5))
        a2.bar(r["variant"], r["samples_per_s"], color=c)
    a1.set_xscale("log")
    a1.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())   # decades only: minor labels collide
    a1.set_xlabel("input values per sample")
    a1.set_ylabel(f"accuracy on {test} (%)")
    a1.grid(alpha=0.3)
    a2.set_ylabel("training samples/s")
    a2.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{result['benchmark']} · {result['model']} · {len(result['seeds'])} seed(s) · {result['device']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- user data --------------------------------------------------------------------------------------
def load_user_data(spec: str, size: int | None, test_spec: str | None, test_fraction: float, seed: int,
                   channels: int | None = None, clip: int | None = None) -> Benchmark:
    """An image/audio folder (or anything ``open_source`` reads), resized and centre-cropped to ``size``
    (audio: ``clip`` samples), as a :class:`Benchmark` whose variants the encode job then writes."""
    from .codec.model import to_pixels
    from .data.encode import EncodeOptions, Preparer
    from .data.sources import Sample, open_source

    def read(s: str) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
        src = open_source(s)
        if len(src) == 0:
            raise ValueError(f"{s}: no input items (an empty folder or dataset?)")
        kind = src.kind
        opts = EncodeOptions(resize=size, crop="center", crop_size=(size, size)) if kind == "image" and size \
            else EncodeOptions()
        prep = Preparer(channels or 3 if kind == "image" else channels or 2, 1, kind, opts)
        xs, ys, skipped = [], [], 0
        for i in range(len(src)):
            item = src.try_load(i)
            if not isinstance(item, Sample) or item.label < 0:
                skipped += 1
                continue
            x = prep(item, i)[0].x
            if kind == "image":
                x = x if x.dtype == torch.uint8 else to_pixels(x)
            else:
                n = clip or x.shape[-1]
                x = torch.nn.functional.pad(x[:, :n], (0, max(0, n - x.shape[-1]))) * 2
            xs.append(x)
            ys.append(item.label)
        if not xs:
            raise ValueError(f"{s}: no labelled samples ({skipped} skipped); class subfolders give labels")
        if skipped:
            print(f"{s}: skipped {skipped} unlabelled or unreadable items", file=sys.stderr)
        return torch.stack(xs), torch.tensor(ys), list(getattr(src, "classes", None) or []), kind

    x, y, classes, kind = read(spec)
    if test_spec:
        xt, yt, tclasses, _ = read(test_spec)
        if tclasses and classes and tclasses != classes:  # by name, as the encode job does
            yt = torch.tensor([classes.index(tclasses[int(t)]) for t in yt])
    else:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y), generator=g)
        n_test = max(1, int(round(test_fraction * len(y))))
        xt, yt, x, y = x[perm[:n_test]], y[perm[:n_test]], x[perm[n_test:]], y[perm[n_test:]]
    n_classes = int(max(y.max(), yt.max())) + 1
    classes = classes if len(classes) >= n_classes else [str(i) for i in range(n_classes)]
    return Benchmark(name=Path(spec).name or "data", modality=kind, x_train=x, y_train=y, tests={"test": (xt, yt)},
                     classes=classes, codecs={}, description=f"user data {spec}")


# -- CLI --------------------------------------------------------------------------------------------
DEFAULT = dict(benchmark="fineprint", model="resnet10t", n_train=6000, n_test=1000, epochs=2, batch_size=32, lr=2e-3)
"""The main job (``walloc-cdl compare`` with no arguments): sized for a few minutes on 2 CPU cores."""
#: budgets of the other built-in benchmarks when run by name (samples, epochs, batch size, learning rate)
BENCHMARK_DEFAULTS = {"fineprint": DEFAULT, "fashion-mnist": dict(n_train=6000, n_test=2000, epochs=4, batch_size=128,
                                                                  lr=2e-3)}
HELP = "train one model on WaLLoC latents vs equal-dimension downsampling vs full resolution; table + plot"
#: --config keys that shape the study rather than each run (besides these and n_test, TrainConfig's)
COMPARE_KEYS = ("include_full", "include_decoded", "include_down", "include_latent", "roundtrip")


def compare_config(epochs: int, batch_size: int, lr: float, **kw: Any) -> TrainConfig:
    """The budget every variant shares: AdamW, 5 % warmup then cosine, label smoothing 0.1."""
    base = dict(warmup_epochs=0.05 * epochs, min_lr=0.0, warmup_lr=0.0, weight_decay=0.05, label_smoothing=0.1,
                workers=0, shuffle=1000)
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, **{**base, **kw})
