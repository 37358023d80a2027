"""Input readers: every kind of input decodes, bad inputs are reported with a reason and never stop a pass."""
import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from walloc_cdl.data.sources import (
    FASHION_MNIST_DIR, AudioFolder, HFSource, IdxSource, ImageFolder, Sample, Skipped, SourceError, WdsSource,
    audio_to_codec, decode_image, image_to_float, load_fashion_mnist, make_key, match_channels, open_source,
    read_idx)

RNG = np.random.default_rng(0)


def _png(a: np.ndarray, mode: str | None = None, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(a, mode) if mode else Image.fromarray(a)).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "cat" / "sub").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / ".hidden").mkdir()
    rgb = RNG.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    (root / "cat" / "a.b.jpg").write_bytes(_png(rgb, fmt="JPEG", quality=95))
    (root / "cat" / "sub" / "gray.png").write_bytes(_png(rgb[..., 0]))
    (root / "cat" / "rgba.png").write_bytes(_png(np.dstack([rgb, rgb[..., :1]])))
    (root / "dog" / "deep16.png").write_bytes(_png(rgb[..., 0].astype(np.uint16) * 257))
    Image.fromarray(rgb).convert("P").save(root / "dog" / "palette.gif")
    jpeg = _png(rgb, fmt="JPEG")
    (root / "dog" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "dog" / "garbage.png").write_bytes(b"not a png at all")
    (root / "dog" / "notes.txt").write_text("hello")
    (root / "dog" / ".DS_Store").write_bytes(b"x")
    (root / ".hidden" / "x.png").write_bytes(_png(rgb))
    return root


def test_image_folder_labels_keys_and_skips(image_tree):
    src = ImageFolder(image_tree)
    assert src.classes == ["cat", "dog"]
    out = list(src)
    good = [s for s in out if isinstance(s, Sample)]
    bad = {Path(s.source).name: s.reason for s in out if isinstance(s, Skipped)}
    assert sorted(bad) == ["garbage.png", "notes.txt", "truncated.jpg"]
    assert "unsupported file type" in bad["notes.txt"]
    assert all(r for r in bad.values())
    by_src = {Path(s.meta["source"]).name: s for s in good}
    assert sorted(by_src) == ["a.b.jpg", "deep16.png", "gray.png", "palette.gif", "rgba.png"]
    assert {s.label for s in good if "dog" in s.meta["source"]} == {1}
    assert by_src["gray.png"].label == 0
    keys = [s.key for s in good]
    assert len(set(keys)) == len(keys) and not any("." in k for k in keys)
    assert by_src["a.b.jpg"].data.shape == (37, 45, 3)
    assert by_src["gray.png"].data.shape == (37, 45, 1)
    assert by_src["rgba.png"].data.shape == (37, 45, 4)
    assert by_src["deep16.png"].data.dtype == np.uint16
    assert by_src["palette.gif"].data.shape == (37, 45, 3)
    # iteration is deterministic and load(i) gives the same thing
    assert [s.key for s in ImageFolder(image_tree) if isinstance(s, Sample)] == keys
    with pytest.raises(SourceError):
        src.load(src.items.index(str(image_tree / "dog" / "notes.txt")))


def test_conversions_match_pil():
    rgb = RNG.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, RNG.integers(0, 256, (8, 9, 1), dtype=np.uint8)])
    assert np.array_equal(match_channels(rgba, 3), np.asarray(Image.fromarray(rgba, "RGBA").convert("RGB")))
    gray = match_channels(rgb, 1)
    assert gray.shape == (8, 9, 1)
    assert np.abs(gray[..., 0].astype(int) - np.asarray(Image.fromarray(rgb).convert("L")).astype(int)).max() <= 1
    g3 = match_channels(rgb[..., :1], 3)
    assert g3.shape == (8, 9, 3) and np.array_equal(g3[..., 2], rgb[..., 0])
    assert np.array_equal(match_channels(rgb, 4)[..., 3], np.full((8, 9), 255, np.uint8))
    assert match_channels(rgba[..., [0, 3]], 3).shape == (8, 9, 3)  # LA -> RGB
    with pytest.raises(SourceError, match="6-channel"):
        match_channels(np.zeros((4, 4, 6), np.uint16), 3)
    x16 = np.array([[[0], [65535], [32768]]], np.uint16)
    assert np.allclose(image_to_float(x16)[..., 0], [[0, 1, 32768 / 65535]])
    assert image_to_float(np.array([[[-1.0, 2.0]]], np.float32)).tolist() == [[[0.0, 1.0]]]


def test_multiband_tiff(tmp_path):
    import tifffile

    bands = RNG.integers(0, 4000, (6, 20, 24), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "scene.tif", bands, photometric="minisblack", planarconfig="separate")
    a, meta = decode_image(tmp_path / "scene.tif")
    assert a.shape == (20, 24, 6) and a.dtype == np.uint16
    assert np.array_equal(a, np.moveaxis(bands, 0, -1))


def test_audio_folder_and_conversion(tmp_path):
    root = tmp_path / "snd"
    (root / "kick").mkdir(parents=True)
    (root / "snare").mkdir()
    t = np.arange(4410) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 220 * t)], 1).astype(np.float32)
    sf.write(root / "kick" / "k1.wav", stereo[:, 0], 44100, subtype="PCM_16")
    sf.write(root / "snare" / "s1.flac", stereo, 48000)
    (root / "snare" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = list(AudioFolder(root))
    good = [s for s in out if isinstance(s, Sample)]
    assert [Path(s.source).name for s in out if isinstance(s, Skipped)] == ["broken.wav"]
    assert [(s.data.shape, s.meta["sample_rate"], s.label) for s in good] == [((1, 4410), 44100, 0),
                                                                             ((2, 4410), 48000, 1)]
    mono = audio_to_codec(good[1].data, 48000, channels=1, target_rate=16000)
    assert mono.shape == (1, 1470) and mono.dtype == np.float32
    assert np.allclose(audio_to_codec(good[1].data, 48000, 1)[0], good[1].data.mean(0))
    assert audio_to_codec(good[0].data, 44100, channels=2).shape == (2, 4410)
    with pytest.raises(SourceError):
        audio_to_codec(good[1].data, 48000, channels=1, mix="error")
    assert isinstance(open_source(root), AudioFolder)


def _idx(a: np.ndarray) -> bytes:
    return b"\x00\x00\x08" + bytes([a.ndim]) + b"".join(struct.pack(">I", n) for n in a.shape) + a.tobytes()


def test_idx_roundtrip_and_corruption(tmp_path):
    x = RNG.integers(0, 256, (5, 7, 6), dtype=np.uint8)
    y = np.array([3, 1, 4, 1, 5], np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(y))
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), x)
    src = open_source(tmp_path / "train-images-idx3-ubyte.gz")
    assert isinstance(src, IdxSource) and len(src) == 5
    s = src.load(2)
    assert s.label == 4 and s.data.shape == (7, 6, 1) and "." not in s.key
    ximg, ylab = load_fashion_mnist(tmp_path, "train")
    assert ximg.shape == (5, 7, 6) and ylab.dtype == np.int64
    (tmp_path / "cut").write_bytes(_idx(x)[:-10])
    with pytest.raises(SourceError, match="truncated"):
        read_idx(tmp_path / "cut")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(_idx(x))[:30])
    with pytest.raises(SourceError, match="gzip"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "nope").write_bytes(b"\x89PNG....")
    with pytest.raises(SourceError, match="not an idx"):
        read_idx(tmp_path / "nope")


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist():
    x, y = load_fashion_mnist(split="test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert sorted(np.unique(y).tolist()) == list(range(10)) and np.bincount(y).tolist() == [1000] * 10
    src = IdxSource.fashion_mnist(split="test")
    assert src.classes[9] == "Ankle boot" and src.load(0).label == int(y[0])


def test_hf_dataset_disk_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    imgs = [_png(RNG.integers(0, 256, (16, 12, 3), dtype=np.uint8)) for _ in range(3)]
    rows = {"img": [{"bytes": b, "path": None} for b in imgs] + [{"bytes": b"broken", "path": None}],
            "y": [0, 1, 1, 0]}
    feats = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict(rows, features=feats)
    ds.save_to_disk(str(tmp_path / "saved"))
    for spec in (ds, tmp_path / "saved"):
        src = HFSource(spec) if not isinstance(spec, Path) else open_source(spec)
        assert src.kind == "image" and src.classes == ["a", "b"]
        out = list(src)
        assert [type(o).__name__ for o in out] == ["Sample"] * 3 + ["Skipped"]
        assert [o.label for o in out[:3]] == [0, 1, 1] and out[0].data.shape == (16, 12, 3)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    src = open_source(tmp_path / "d.parquet")
    assert len(src) == 4 and isinstance(src.load(1), Sample)
    with pytest.raises(SourceError, match="no Image or Audio"):
        HFSource(datasets.Dataset.from_dict({"a": [1]}))


def test_hf_audio_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    buf = io.BytesIO()
    sf.write(buf, np.zeros((800, 2), np.float32), 16000, format="WAV")
    ds = datasets.Dataset.from_dict({"audio": [{"bytes": buf.getvalue(), "path": None}]})
    ds = ds.cast_column("audio", datasets.Audio(decode=False))  # encoding needs torchcodec, casting does not
    src = HFSource(ds)
    s = src.load(0)
    assert src.kind == "audio" and s.data.shape == (2, 800) and s.meta["sample_rate"] == 16000


def test_webdataset_tars(tmp_path):
    import webdataset as wds

    good = _png(RNG.integers(0, 256, (10, 11, 3), dtype=np.uint8))
    with wds.TarWriter(str(tmp_path / "a.tar")) as w:
        w.write({"__key__": "s0", "png": good, "cls": b"7"})
        w.write({"__key__": "s1", "jpg": b"\xff\xd8broken", "cls": b"2"})
        w.write({"__key__": "s2", "txt": b"no image"})
    raw = (tmp_path / "a.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tf:
        second = next(m for m in tf if m.name.startswith("s1")).offset
    (tmp_path / "b.tar").write_bytes(raw[: second + 700])  # cut inside the second sample
    (tmp_path / "c.tar").write_bytes(gzip.compress(raw))
    src = WdsSource([tmp_path / "a.tar", tmp_path / "b.tar", tmp_path / "c.tar"])
    out = list(src)
    assert isinstance(out[0], Sample) and out[0].label == 7 and out[0].data.shape == (10, 11, 3)
    assert [type(o).__name__ for o in out[:3]] == ["Sample", "Skipped", "Skipped"]
    assert "no image member" in out[2].reason
    assert isinstance(out[3], Sample)  # b.tar's first sample survived the cut
    reasons = " ".join(s.reason for s in src.skipped)
    assert "compressed" in reasons and "unreadable" in reasons
    assert isinstance(open_source(tmp_path / "a.tar"), WdsSource)


def test_make_key():
    assert make_key(3, "x/y.z w") == "00000003-x_y_z_w"
    assert make_key(12) == "00000012"
