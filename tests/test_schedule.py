"""Warmup then cosine: the factor both training loops use."""
import pytest

from walloc_cdl.schedule import warmup_cosine


def test_warmup_then_cosine_to_floor():
    assert warmup_cosine(0, 10, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(50, 10, 0.5) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 1.0, min_ratio=0.02) == pytest.approx(0.02)
    assert warmup_cosine(100, 10, 2.0) == pytest.approx(0.0)  # progress past the end stays at the floor
