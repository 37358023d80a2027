"""Built-in real-data benchmarks for ``walloc-cdl compare`` (each loads or builds offline, then caches).

* ``fashion-mnist``: Fashion-MNIST (real), 28² padded to 32², 10 classes.
* ``words``: a *constructed* detail-sensitive set: one of 50 words rendered in a real font at a small size
  onto a 256² crop of a real photo; train and test differ in font family and in photo.
* ``fineprint``: a *constructed* detail-sensitive set built only from what ``pip install`` brings: one digit
  in one of matplotlib's fonts at a small size on a 32² background (matplotlib's sample images, procedural
  textures); train and test differ in font and in background source.
* ``instruments``: instrument family (10 acoustic GM families) of single notes rendered from a real
  sampled soundfont, stereo 44.1 kHz; trained on FluidR3, tested on FluidR3 and across soundfonts on
  TimGM6mb.

Usage::

    bench = load_benchmark("words", n_train=4000, n_test=1000)
    bench.x_train.shape        # (4000, 3, 256, 256) uint8;  bench.tests["test"] = (x, y)
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ...files import atomic_path

BENCHMARKS: dict[str, str] = {
    "fashion-mnist": "walloc_cdl.data.builtin.fashion",
    "words": "walloc_cdl.data.builtin.words",
    "instruments": "walloc_cdl.data.builtin.instruments",
    "fineprint": "walloc_cdl.data.builtin.fineprint",
}


@dataclass
class Benchmark:
    """Tensors in memory: images uint8 (N, C, H, W); audio float32 (N, C, T) in [-1, 1]."""

    name: str
    modality: str                                   # "image" | "audio"
    x_train: torch.Tensor
    y_train: torch.Tensor
    tests: dict[str, tuple[torch.Tensor, torch.Tensor]]
    classes: list[str]
    codecs: dict[int, str]                          # dimensionality reduction -> shipped codec name
    description: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])


def cache_dir() -> Path:
    """``$WALLOC_CDL_CACHE`` or ``~/.cache/walloc_cdl``: where generated benchmark sets are kept."""
    return Path(os.environ.get("WALLOC_CDL_CACHE", Path.home() / ".cache" / "walloc_cdl")) / "benchdata"


def cached(name: str, params: dict[str, Any], build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays from ``cache_dir()/NAME-HASH.npz``, built and saved on first use (never pickled)."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays


def load_benchmark(name: str, **kwargs: Any) -> Benchmark:
    """A built-in benchmark by name (``BENCHMARKS``); ``kwargs`` size it (see each module's ``load``)."""
    import importlib

    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; built-in: {sorted(BENCHMARKS)}")
    return importlib.import_module(BENCHMARKS[name]).load(**kwargs)


__all__ = ["Benchmark", "BENCHMARKS", "load_benchmark", "cache_dir", "cached"]
