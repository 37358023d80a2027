"""Recipe: train the shipped WaLLoC codecs offline, from the real photos and sounds on this machine.

Three steps; the middle one is where a GPU helps, the others run anywhere::

    # 1. export the training corpora (walloc_cdl.data.corpora, training split only) to plain folders
    python recipes/train_codec.py prepare --out .train_data
    # 2. train every preset on a wall-clock budget each (the LR schedule follows the budget); after --,
    #    train-codec options or KEY=VALUE settings (its --config keys) for every preset
    python recipes/train_codec.py train --data-root .train_data --out runs/shipped \\
        --budget rgb-16x=120 rgb-4x=110 gray-16x=35 gray-4x=35 stereo-20x=80 stereo-5x=80 -- progress=false
    # 3. held-out figures into each card, then copy into the package
    python recipes/train_codec.py evaluate runs/shipped/*/*.safetensors --install
    # optional: more decoder training later, latents unchanged (how the shipped rgb-16x and gray decoders
    # were last improved; each card's training.command is the command of that day, in the options it had)
    walloc-cdl train-codec --init rgb-16x --freeze-encoder --data .train_data/photos --out runs/ft --time-budget 5700

Each preset is one ``walloc-cdl train-codec`` call (see ``walloc-cdl train-codec --help``) with the
settings this recipe chose in ``OUT/NAME/train-codec.json`` (its ``--config``); the printed command, with
that file, trains a codec on your own folder.  Training data: the 35 training photos (long side <= 1024 px,
JPEG q95 copies), Fashion-MNIST training images (gray codecs only), FluidR3 phrases of the training
programs and the training split of the real recordings (``corpora.real_recordings("train")``; stereo
codecs draw half of each batch from each; FLAC).  Held-out data (never exported here):
``corpora.HELD_OUT_PHOTOS``, Fashion-MNIST t10k, FluidR3 phrases of ``corpora.HELD_OUT_PROGRAMS``,
TimGM6mb phrases, the held-out real recordings (``corpora.real_recordings("test")``).
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from walloc_cdl.codec.checkpoints import codec_card, list_codecs
from walloc_cdl.cli import main as walloc_cli
from walloc_cdl.data import corpora
from walloc_cdl.data.sources import load_fashion_mnist

PRESETS = [n for n in list_codecs() if "preset" in codec_card(n)]

SOURCES = {"rgb": ["photos"], "gray": ["photos", "fashion-mnist/train-images-idx3-ubyte.gz"], "stereo": ["audio", "real"]}
# Audio codecs start as the exact linear codec (49 dB at 5x): a gentler LR disturbs it less, and fp32
# keeps the bf16 decoder's ~-54 dB rounding out of the loss.
COMMON = {"decoder_only_steps": 300, "val_every": 500, "checkpoint_every": 100_000, "warmup": 200}
FAMILY = {"rgb": {"lr": 1e-3}, "gray": {"lr": 1e-3}, "stereo": {"lr": 1e-4, "amp": False, "val_every": 200}}


def prepare(out: Path, n_phrases: int, phrase_seconds: float, n_fmnist: int, max_side: int) -> None:
    """Write photos/ (JPEG q95), fashion-mnist/ (idx.gz subset), audio/ (FLAC phrases) and real/ (the training
    split of the real recordings, 44.1 kHz stereo FLAC) under ``out``."""
    import soundfile as sf

    (out / "photos").mkdir(parents=True, exist_ok=True)
    for p in tqdm(corpora.photos("train"), desc="photos"):
        Image.fromarray(corpora.load_photo(p, max_side=max_side)).save(out / "photos" / f"{p.name}.jpg", quality=95)
    x, _ = load_fashion_mnist(split="train")
    idx = np.random.default_rng(0).permutation(len(x))[:n_fmnist]
    header = b"\x00\x00\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in (len(idx), 28, 28))
    (out / "fashion-mnist").mkdir(exist_ok=True)
    (out / "fashion-mnist" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + x[idx].tobytes(), 9))
    (out / "audio").mkdir(exist_ok=True)
    for i in tqdm(range(n_phrases), desc="phrases"):
        a = corpora.render_phrase(corpora.FLUIDR3, seed=i, seconds=phrase_seconds)
        sf.write(out / "audio" / f"phrase{i:04d}.flac", a.T, corpora.SAMPLE_RATE, subtype="PCM_16")
    (out / "real").mkdir(exist_ok=True)
    real = corpora.real_recordings("train")
    for path in tqdm(real, desc="real recordings"):
        a = corpora.load_audio(path)
        sf.write(out / "real" / f"{path.parent.name}__{path.stem}.flac", a.T, corpora.SAMPLE_RATE, subtype="PCM_16")
    manifest = {"photos": [p.name for p in corpora.photos("train")], "fashion_mnist_train_indices": len(idx),
                "phrases": n_phrases, "phrase_seconds": phrase_seconds, "soundfont": str(corpora.FLUIDR3),
                "programs": corpora.programs("train"), "max_side": max_side,
                "real_recordings": [f"{p.parent.name}/{p.name}" for p in real]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2 ** 20:.1f} MiB)")


def split_extra(extra: list[str]) -> tuple[list[str], dict[str, object]]:
    """(train-codec options, settings) from what follows ``--``: ``KEY=VALUE`` is a --config setting (VALUE
    read as JSON when it is JSON: 16, 1e-4, false), anything else an option passed on."""
    flags, settings = [], {}
    for x in extra:
        key, eq, value = x.partition("=")
        if eq and not x.startswith("-"):
            try:
                settings[key] = json.loads(value)
            except ValueError:
                settings[key] = value
        else:
            flags.append(x)
    return flags, settings


def train(data_root: Path, out: Path, budgets: dict[str, float], extra: list[str]) -> None:
    """One ``train-codec`` call per preset, each in ``out/NAME``; a failure is reported and the rest go on."""
    failed = []
    flags, settings = split_extra(extra)
    for name, budget in budgets.items():
        family = name.split("-")[0]
        data = [str(data_root / s) for s in SOURCES[family]]
        steps = 1_000_000  # the wall-clock budget ends training
        cfg = out / name / "train-codec.json"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(json.dumps({**COMMON, **FAMILY[family], **settings}, indent=1))
        argv = ["train-codec", "--preset", name, "--data", *data, "--out", str(out / name), "--steps", str(steps),
                "--time-budget", str(budget), "--half", "--config", str(cfg), *flags]
        print(f"== {name}: walloc-cdl {' '.join(argv)}  # {cfg}: {cfg.read_text()}", flush=True)
        t = time.time()
        try:
            walloc_cli(argv)
        except Exception as e:  # noqa: BLE001 - keep training the other presets
            failed.append(name)
            print(f"!! {name} failed after {time.time() - t:.0f} s: {type(e).__name__}: {e}", flush=True)
    if failed:
        print(f"failed presets: {failed}")


def evaluate(paths: list[Path], install: bool) -> None:
    """Held-out figures (walloc_cdl.training.evaluate) into each card; ``--install`` copies into the package."""
    from walloc_cdl.codec.checkpoints import PRETRAINED_DIR, load_codec
    from walloc_cdl.training.evaluate import heldout_figures

    for path in paths:
        codec = load_codec(path)
        card_path = path.with_suffix(".json")
        card = json.loads(card_path.read_text())
        t = time.time()
        card["held_out"] = heldout_figures(codec)
        card["held_out"]["command"] = "python recipes/train_codec.py evaluate " + path.name
        print(f"{path.stem}: {json.dumps(card['held_out'])} ({time.time() - t:.0f} s)", flush=True)
        card_path.write_text(json.dumps(card, indent=2))
        if install:
            shutil.copy(path, PRETRAINED_DIR / path.name)
            shutil.copy(card_path, PRETRAINED_DIR / card_path.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("prepare", help="export training corpora to folders")
    a.add_argument("--out", type=Path, default=Path(".train_data"))
    a.add_argument("--phrases", type=int, default=72, help="FluidR3 training phrases")
    a.add_argument("--phrase-seconds", type=float, default=4.0)
    a.add_argument("--fashion-mnist", type=int, default=20_000, help="Fashion-MNIST training images to export")
    a.add_argument("--max-side", type=int, default=1024)
    b = sub.add_parser("train", help="train presets on a wall-clock budget each")
    b.add_argument("--data-root", type=Path, default=Path(".train_data"))
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--budget", nargs="+", default=[f"{n}=60" for n in PRESETS], help="NAME=SECONDS ...")
    b.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after --: train-codec options or KEY=VALUE settings (its --config keys) for every preset")
    c = sub.add_parser("evaluate", help="held-out figures into the cards")
    c.add_argument("paths", nargs="+", type=Path, help="NAME.safetensors files written by train")
    c.add_argument("--install", action="store_true", help="copy codec + card into walloc_cdl/pretrained")
    args = p.parse_args(argv)
    if args.step == "prepare":
        prepare(args.out, args.phrases, args.phrase_seconds, args.fashion_mnist, args.max_side)
    elif args.step == "train":
        budgets = {k: float(v) for k, v in (b.split("=") for b in args.budget)}
        unknown = sorted(set(budgets) - set(PRESETS))
        if unknown:
            p.error(f"unknown presets {unknown}; available: {sorted(PRESETS)}")
        train(args.data_root, args.out, budgets, [x for x in args.extra if x != "--"])
    else:
        evaluate(args.paths, args.install)
    return 0


if __name__ == "__main__":
    sys.exit(main())
