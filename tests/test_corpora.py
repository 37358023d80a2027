"""walloc_cdl.data.corpora: deduplicated photos with a fixed held-out split, phrases, held-out audio."""
import hashlib

import numpy as np
import pytest

from walloc_cdl.data import corpora


@pytest.fixture(scope="module")
def all_photos():
    missing = corpora.missing_photo_packages()
    if missing:
        pytest.skip(f"Debian photo packages not installed: {missing} (.ci/run installs them)")
    return corpora.photos("all")


def test_photo_split_is_disjoint_deduplicated_and_holds_out_every_source(all_photos):
    train, test = corpora.photos("train"), corpora.photos("test")
    assert {p.name for p in train}.isdisjoint({p.name for p in test})
    assert len(train) + len(test) == len(all_photos) >= 40
    digests = [hashlib.sha256(p.path.read_bytes()).hexdigest() for p in all_photos]
    assert len(set(digests)) == len(digests)
    assert {p.name for p in test} == set(corpora.HELD_OUT_PHOTOS)
    for source in {p.source for p in all_photos}:
        assert sum(p.source == source for p in test) >= 2, source


def test_load_photo_shrinks_and_converts(all_photos):
    big = next(p for p in all_photos if p.source == "plasma-workspace-wallpapers")
    a = corpora.load_photo(big, max_side=512)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and max(a.shape[:2]) == 512
    g = corpora.load_photo(big, max_side=256, gray=True)
    assert g.shape[2] == 1 and max(g.shape[:2]) == 256
    with pytest.raises(ValueError, match="cannot read image"):
        corpora.load_photo(__file__)
    with pytest.raises(ValueError, match="split"):
        corpora.photos("val")


def test_program_split_covers_families_once():
    train, test = corpora.programs("train"), corpora.programs("test")
    assert set(train).isdisjoint(test) and sorted(train + test) == corpora.programs("all")
    assert len(test) == len(corpora.FAMILIES)  # one held-out program per family
    for progs, _ in corpora.FAMILIES.values():
        assert sum(p in corpora.HELD_OUT_PROGRAMS for p in progs) == 1


@pytest.fixture(scope="module")
def fluidr3():
    pytest.importorskip("tinysoundfont")
    if not corpora.FLUIDR3.exists():
        pytest.skip("fluid-soundfont-gm not installed")
    return corpora.FLUIDR3


def test_render_phrase_is_deterministic_stereo_and_normalised(fluidr3):
    a = corpora.render_phrase(fluidr3, seed=3, seconds=1.0, voices=3)
    b = corpora.render_phrase(fluidr3, seed=3, seconds=1.0, voices=3)
    assert a.shape == (2, 44100) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() == pytest.approx(0.89, rel=1e-5)
    assert np.abs(a[0] - a[1]).mean() > 1e-4  # random pans make real stereo
    c = corpora.render_phrase(fluidr3, seed=4, seconds=1.0)
    assert not np.array_equal(a, c)


def test_real_recordings_load_as_stereo_at_44k():
    paths = corpora.real_recordings()
    if not paths:
        pytest.skip("sonic-pi-samples / hydrogen-drumkits not installed")
    x = corpora.load_audio(paths[0])
    assert x.ndim == 2 and x.shape[0] == 2 and x.dtype == np.float32 and np.abs(x).max() <= 1.0


def test_real_recordings_split_is_disjoint_and_covers_both_packages():
    test, train = corpora.real_recordings("test"), corpora.real_recordings("train")
    if not test:
        pytest.skip("sonic-pi-samples / hydrogen-drumkits not installed")
    assert set(test).isdisjoint(train) and len(train) > len(test)
    assert {p.stem for p in test if p.parent == corpora.SONIC_PI_DIR} <= set(corpora.SONIC_PI_HELD_OUT)
    assert not any(p.parent.name in corpora.HYDROGEN_HELD_OUT_KITS for p in train)
    assert any(p.parent == corpora.SONIC_PI_DIR for p in train) and any(p.parent != corpora.SONIC_PI_DIR for p in train)
    with pytest.raises(ValueError, match="split"):
        corpora.real_recordings("val")
