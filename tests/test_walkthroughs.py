"""The seed walkthrough recipes run end to end on shipped codecs and their round trips are bit-exact."""
import importlib.util
from pathlib import Path

import pytest

from walloc_cdl import list_codecs
from walloc_cdl.data import corpora

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_image_walkthrough(tmp_path):
    if "rgb-16x" not in list_codecs():
        pytest.skip("no shipped rgb-16x")
    s = _load("walkthrough_image").main(["--out", str(tmp_path)])
    assert s["dimensionality_reduction"] == 16.0
    assert s["psnr_db"] > 24
    assert all(c["bit_exact"] for c in s["containers"].values())
    assert s["containers"]["webp"]["compression_ratio"] > s["containers"]["npy"]["compression_ratio"]
    assert {p.name for p in tmp_path.iterdir()} >= {"latent_histogram.png", "reconstruction.png", "latent.webp"}


def test_audio_walkthrough(tmp_path):
    pytest.importorskip("tinysoundfont")
    if not corpora.FLUIDR3.exists():
        pytest.skip(f"{corpora.FLUIDR3} missing (apt-get install fluid-soundfont-gm)")
    s = _load("walkthrough_audio").main(["--out", str(tmp_path), "--seconds", "2"])
    assert s["latent_shape"][1] == 108
    assert s["psnr_db"] > 30
    assert all(c["bit_exact"] for c in s["containers"].values())
    assert (tmp_path / "reconstruction.wav").exists()
