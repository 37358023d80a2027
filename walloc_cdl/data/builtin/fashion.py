"""Fashion-MNIST (real; Debian ``dataset-fashion-mnist``), padded 28² -> 32² so J=2 and J=3 codecs fit.

Both splits are read with :func:`walloc_cdl.data.sources.load_fashion_mnist`; a seeded, class-balanced
subset keeps CPU runs short.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import Benchmark

CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def _subset(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    per = [rng.permutation(np.flatnonzero(y == c)) for c in range(len(CLASSES))]
    order = np.stack([p[: (n + len(per) - 1) // len(per)] for p in per], axis=1).reshape(-1)
    return np.sort(order[:n])


def load(n_train: int | None = 10000, n_test: int | None = 2000, seed: int = 0, root: str | None = None) -> Benchmark:
    """Fashion-MNIST train/test subsets (``None`` = all 60k / 10k), as uint8 (N, 1, 32, 32)."""
    from ..sources import FASHION_MNIST_DIR, load_fashion_mnist

    root = root or FASHION_MNIST_DIR
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = load_fashion_mnist(root, split)
        idx = _subset(y, n, seed)
        xt = F.pad(torch.from_numpy(x[idx]).unsqueeze(1), (2, 2, 2, 2))
        splits[split] = (xt, torch.from_numpy(y[idx]))
    return Benchmark(
        name="fashion-mnist", modality="image", x_train=splits["train"][0], y_train=splits["train"][1],
        tests={"test": splits["test"]}, classes=CLASSES, codecs={4: "gray-4x", 16: "gray-16x"},
        description="Fashion-MNIST (real, Zalando), 28x28 grayscale zero-padded to 32x32, 10 classes",
        meta={"root": str(root), "n_train": len(splits["train"][1]), "n_test": len(splits["test"][1])},
    )
