"""Built-in benchmarks: real sources, the advertised splits, determinism and caching."""
from pathlib import Path

import numpy as np
import pytest
import torch

from walloc_cdl.data.builtin import BENCHMARKS, load_benchmark


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WALLOC_CDL_CACHE", str(tmp_path))


def test_fashion_mnist_subset():
    if not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("apt-get install dataset-fashion-mnist")
    b = load_benchmark("fashion-mnist", n_train=500, n_test=100)
    assert b.x_train.shape == (500, 1, 32, 32) and b.x_train.dtype == torch.uint8
    assert b.x_train[:, :, :2].max() == 0  # zero padding 28 -> 32
    assert torch.bincount(b.y_train, minlength=10).tolist() == [50] * 10
    assert b.tests["test"][0].shape == (100, 1, 32, 32)
    assert b.codecs == {4: "gray-4x", 16: "gray-16x"}


def test_words_split_by_font_and_photo():
    from walloc_cdl.data.builtin import words
    from walloc_cdl.data import corpora

    if not Path("/usr/share/dict/words").exists() or corpora.missing_photo_packages():
        pytest.skip("needs wamerican and the photo packages (see shared/DATA.md)")
    vocab = words.vocabulary()
    assert len(vocab) == len(set(vocab)) == 50 and all(len(w) == 5 for w in vocab)
    fam = lambda ps: {p.stem.split("-")[0] for p in ps}  # noqa: E731
    assert fam(words.fonts("train")).isdisjoint(fam(words.fonts("test")))
    assert {p.name for p in corpora.photos("train")}.isdisjoint({p.name for p in corpora.photos("test")})
    b = load_benchmark("words", n_train=60, n_test=20, size=64)
    assert b.x_train.shape == (60, 3, 64, 64) and len(b.classes) == 50
    again = load_benchmark("words", n_train=60, n_test=20, size=64)  # from the cache, identical
    assert torch.equal(b.x_train, again.x_train)
    assert "CONSTRUCTED" in b.description
    assert "(4-4 px)" in b.description  # the default 12-18 px at 256, scaled to the 64-px crops (4 px floor)


def test_words_font_size_scales_with_the_crop():
    from walloc_cdl.data.builtin.words import scaled_font_px

    assert scaled_font_px((12, 18), 256) == (12, 18)
    assert scaled_font_px((24, 36), 128) == (12, 18)  # the CPU suite: the GPU set's text on smaller crops
    assert scaled_font_px((12, 18), 32) == (4, 4)  # never below 4 px


def test_word_is_drawn_where_it_contrasts():
    from walloc_cdl.data.builtin import words

    try:
        font = words.fonts("train")[0]
    except FileNotFoundError as e:
        pytest.skip(str(e))
    photo = np.full((300, 300, 3), 230, np.uint8)
    img = words.render(photo, "house", font, 14, np.random.default_rng(0), size=256)
    assert img.shape == (256, 256, 3)
    assert img.min() < 50  # dark ink on a light photo
    assert (img < 128).mean() < 0.02  # small text


def test_instruments_cross_soundfont():
    from walloc_cdl.data import corpora

    if not (corpora.FLUIDR3.exists() and corpora.TIMGM6MB.exists()):
        pytest.skip("apt-get install fluid-soundfont-gm timgm6mb-soundfont")
    pytest.importorskip("tinysoundfont")
    b = load_benchmark("instruments", n_train=20, n_test=10, clip=4096)
    assert b.x_train.shape == (20, 2, 4096) and b.modality == "audio"
    assert set(b.tests) == {"fluidr3", "timgm6mb"}
    assert len(b.classes) == 10
    peaks = b.x_train.float().abs().amax(dim=(1, 2))
    assert (peaks > 0.2).all() and (peaks <= 0.91).all()  # not silent, peak-normalised
    assert not torch.equal(b.tests["fluidr3"][0], b.tests["timgm6mb"][0])


def test_unknown_benchmark():
    with pytest.raises(KeyError, match="built-in"):
        load_benchmark("imagenet")
    assert set(BENCHMARKS) == {"fashion-mnist", "words", "instruments"}
