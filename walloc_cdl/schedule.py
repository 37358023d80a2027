"""Learning-rate factor shared by codec training and the downstream comparison."""
from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, progress: float, min_ratio: float = 0.0) -> float:
    """Linear warmup over ``warmup`` steps, times a cosine from 1 to ``min_ratio`` as ``progress`` goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * (min_ratio + (1 - min_ratio) * cos)
