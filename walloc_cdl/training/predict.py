"""Classify image or sound files with a trained run: encode each with the run's codec, as its dataset was.

The run's ``config.json`` holds the dataset's codec block and the encode job's options, so a file goes
through the same conversion (channels, resize, crop, sample rate, segments) and the same codec, checked
by its encoder fingerprint, as the training data did.  A sound cut into several segments is classified by
the mean of the segments' probabilities.

Usage::

    for p in predict_files("runs/photos", ["cat.jpg", "dog.png"]):
        print(p["file"], p["class"], p["prob"])
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.encode import EncodeOptions, Preparer, input_multiple
from ..data.loader import random_crop
from ..data.sources import Sample, SourceError, decode_audio, decode_image
from .train import DataError, load_latent_model, run_config


def _transform(block: dict[str, Any], codec: Any) -> torch.nn.Module:
    """The run's codec (or baseline transform), refusing one whose encoder differs from the dataset's."""
    from ..codec.checkpoints import load_codec
    from ..data.shards import codec_block, same_latents
    from ..data.transforms import PixelTransform

    cfg = block.get("config", {})
    if block.get("kind") == "pixels":
        if "decoded_by" in cfg:
            raise DataError("this run was trained on codec round trips; predict needs the codec: not supported")
        return PixelTransform(cfg["channels"], cfg["reduction"], cfg["ndim"])
    names = [codec] if codec else [n for n in (block.get("name"), block.get("source")) if n]
    if not names:
        raise DataError("the run's dataset names no codec; pass --codec NAME_OR_PATH")
    c = None
    for name in names:
        try:
            c = load_codec(name)
            break
        except FileNotFoundError:
            continue
    if c is None:
        raise DataError(f"the run's codec {names[0]!r} is not a shipped codec or a file here; pass --codec PATH")
    if not same_latents(block, codec_block(c, str(name))):
        raise DataError(f"codec {name!r} is not the one the run's data was encoded with ({block.get('name')!r}); "
                        "pass that codec with --codec")
    return c


def _options(cfg: dict[str, Any]) -> EncodeOptions:
    """The dataset's encode options, with random crops replaced by the centre one (one view)."""
    known = {f.name for f in dataclasses.fields(EncodeOptions)}
    opts = EncodeOptions(**{k: v for k, v in (cfg.get("encode_options") or {}).items() if k in known})
    if opts.crop_size is not None:
        opts.crop_size = tuple(opts.crop_size)
    if opts.crop == "random":
        opts.crop, opts.views = "center", 1
    return opts


@torch.no_grad()
def predict_files(run: str | Path, files: Sequence[str | Path], codec: Any = None, topk: int = 3,
                  device: str = "cpu") -> list[dict[str, Any]]:
    """One record per file: ``file``, ``class``, ``prob`` and the ``top`` k (name, prob); or ``error``."""
    cfg = run_config(run)
    model = load_latent_model(run, device)
    names = model.class_names or [str(i) for i in range(cfg["num_classes"])]
    block = cfg["codec"]
    transform = _transform(block, codec).to(device).eval()
    kind = "audio" if len(cfg["input_shape"]) == 2 else "image"
    prep = Preparer(transform.channels, input_multiple(transform), kind, _options(cfg))
    out = []
    for f in files:
        try:
            data, meta = decode_audio(f) if kind == "audio" else decode_image(f)
            views = prep(Sample("file", data, -1, meta), 0)
            z = transform.encode(torch.stack([v.x for v in views]).to(device)).float()
            if cfg.get("crop"):
                z = random_crop(z, cfg["crop"], None)
            p = model(z).softmax(1).mean(0)
        except (OSError, ValueError, SourceError, RuntimeError) as e:
            out.append({"file": str(f), "error": f"{type(e).__name__}: {e}"})
            continue
        top = p.topk(min(topk, len(p)))
        out.append({"file": str(f), "class": names[int(top.indices[0])], "prob": float(top.values[0]),
                    "top": [[names[int(i)], float(v)] for v, i in zip(top.values, top.indices)]})
    return out
