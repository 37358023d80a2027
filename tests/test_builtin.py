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
    assert set(BENCHMARKS) == {"fashion-mnist", "words", "instruments", "fineprint"}


def test_fineprint_shapes_balance_and_determinism():
    b = load_benchmark("fineprint", n_train=200, n_test=100)
    assert b.x_train.shape == (200, 3, 32, 32) and b.x_train.dtype == torch.uint8
    assert b.y_train.dtype == torch.int64 and b.tests["test"][0].shape == (100, 3, 32, 32)
    assert torch.bincount(b.y_train, minlength=10).tolist() == [20] * 10  # class-balanced
    assert torch.bincount(b.tests["test"][1], minlength=10).tolist() == [10] * 10
    assert b.classes == [str(d) for d in range(10)] and b.codecs == {4: "rgb-4x", 16: "rgb-16x"}
    assert "CONSTRUCTED" in b.description
    again = load_benchmark("fineprint", n_train=200, n_test=100)  # from the cache
    assert torch.equal(b.x_train, again.x_train) and torch.equal(b.y_train, again.y_train)
    from walloc_cdl.data.builtin import fineprint

    fresh = fineprint._build(200, "train", 32, (8, 14), 0, 0.5, 0.0)  # rebuilt, not cached: same bytes
    assert np.array_equal(fresh["x"], b.x_train.numpy()) and np.array_equal(fresh["y"], b.y_train.numpy())
    other = load_benchmark("fineprint", n_train=200, n_test=100, seed=1)
    assert not torch.equal(b.x_train, other.x_train)
    assert b.x_train.float().std(dim=(0, 2, 3)).min() > 10  # backgrounds vary, in every channel


def test_fineprint_holds_out_fonts_and_backgrounds():
    from walloc_cdl.data.builtin import fineprint

    train_f, test_f = fineprint.fonts("train"), fineprint.fonts("test")
    assert len(train_f) >= 10 and len(test_f) >= 5 and not set(train_f) & set(test_f)
    assert not set(fineprint.sources("train")) & set(fineprint.sources("test"))
    assert set(fineprint.sources("train")) | set(fineprint.sources("test")) == set(fineprint.SOURCES)
    rng = np.random.default_rng(0)
    for src in fineprint.SOURCES:
        bg = fineprint.background(src, 32, rng)
        assert bg.shape == (32, 32, 3) and bg.min() >= 0 and bg.max() <= 255 and bg.std() > 3, src
    for font in train_f + test_f:  # every face draws ten distinct digits (no missing-glyph boxes)
        from PIL import Image, ImageDraw, ImageFont

        f = ImageFont.truetype(str(font), 24)
        glyphs = set()
        for d in "0123456789":
            im = Image.new("L", (32, 32))
            ImageDraw.Draw(im).text((2, 2), d, font=f, fill=255)
            glyphs.add(im.tobytes())
        assert len(glyphs) == 10, font.name


def test_fineprint_digit_is_small_centred_and_contrasting():
    from walloc_cdl.data.builtin import fineprint

    font = fineprint.fonts("train")[0]
    flat = np.full((32, 32, 3), 200, np.float32)
    img = fineprint.render(flat, "8", font, 12, np.random.default_rng(0), spread=0.0)
    ink = img.mean(axis=2) < 100  # dark ink on a light background
    assert 0.02 < ink.mean() < 0.2  # a small glyph, not a blob
    ys, xs = np.nonzero(ink)
    assert abs(ys.mean() - 15.5) < 3 and abs(xs.mean() - 15.5) < 3
    dark = fineprint.render(np.full((32, 32, 3), 40, np.float32), "8", font, 12, np.random.default_rng(0))
    assert dark.max() > 200  # light ink on a dark background


def test_fineprint_builds_in_seconds():
    import time

    from walloc_cdl.data.builtin import fineprint

    t0 = time.perf_counter()
    a = fineprint._build(2000, "train", 32, (8, 14), 0, 0.5, 0.0)
    assert a["x"].shape == (2000, 3, 32, 32)
    assert time.perf_counter() - t0 < 20  # about 1 s here; the default set (7 000 images) must stay a few seconds
