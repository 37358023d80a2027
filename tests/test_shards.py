"""Shard writer/reader: atomic, reproducible tars that webdataset, timm's ReaderWds and HF datasets all read."""
import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch

from walloc_cdl import Codec2D
from walloc_cdl.codec.containers import decode_latent
from walloc_cdl.data.shards import (INFO_NAME, ShardWriter, codec_block, count_samples, decode_sample, latent_sample,
                                    make_info, read_info, shard_paths, write_info)


def _latents(n, c=12, h=4, w=4, bits=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return [torch.randint(lo, hi + 1, (c, h, w), generator=g).float() for _ in range(n)]


def _write(root, zs, container="npy", bits=8, shard_size=3, split="train"):
    with ShardWriter(root, split, shard_size) as w:
        for i, z in enumerate(zs):
            w.write(latent_sample(f"{i:05d}", z, i % 4, {"source": f"img{i}.jpg", "size": [32, 32]}, container, bits))
    return w.shards


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return Codec2D(channels=3, J=2, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True).eval()


@pytest.mark.parametrize("container", ["npy", "webp", "png"])
def test_roundtrip_webdataset(tmp_path, container, codec):
    import webdataset as wds

    zs = _latents(7)
    shards = _write(tmp_path, zs, container)
    assert shards == [("train-000000.tar", 3), ("train-000001.tar", 3), ("train-000002.tar", 1)]
    write_info(tmp_path, make_info({"train": shards}, codec_block(codec, "tiny", container)))
    info = read_info(tmp_path)
    assert info["splits"]["train"]["num_samples"] == 7 and info["codec"]["weights_sha256"]
    assert not list(tmp_path.glob(".*tmp"))
    got = [decode_sample(s) for s in wds.WebDataset(shard_paths(tmp_path), shardshuffle=False)]
    assert [g["__key__"] for g in got] == [f"{i:05d}" for i in range(7)]
    for g, z, i in zip(got, zs, range(7)):
        assert torch.equal(g["latent"], z) and g["cls"] == i % 4 and g["json"]["source"] == f"img{i}.jpg"
    with tarfile.open(tmp_path / "train-000000.tar") as tf:
        members = tf.getmembers()
    ext = {"npy": "latent.npy", "webp": "latent.webp", "png": "latent.png"}[container]
    assert [m.name for m in members[:3]] == [f"00000.{e}" for e in ("cls", "json", ext)]
    assert {m.mtime for m in members} == {0}
    if container == "npy":
        with tarfile.open(tmp_path / "train-000000.tar") as tf:
            a = np.load(io.BytesIO(tf.extractfile(f"00000.{ext}").read()), allow_pickle=False)
        assert a.dtype == np.int8 and a.shape == (12, 4, 4)


def test_int16_for_wide_latents(tmp_path):
    z = _latents(1, bits=10)[0]
    _write(tmp_path, [z], "npy", bits=10)
    with tarfile.open(tmp_path / "train-000000.tar") as tf:
        data = tf.extractfile("00000.latent.npy").read()
    assert np.load(io.BytesIO(data)).dtype == np.int16 and torch.equal(decode_latent(data), z)
    with pytest.raises(ValueError):
        latent_sample("k", z, 0, {}, "webp", 10)


def test_byte_identical_and_key_rules(tmp_path):
    zs = _latents(5)
    _write(tmp_path / "a", zs)
    _write(tmp_path / "b", zs)
    digest = lambda d: [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.tar"))]
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    for bad in ("a.b", "a/b", ""):
        with pytest.raises(ValueError, match="no dots"):
            latent_sample(bad, zs[0], 0, {})
    assert count_samples(tmp_path / "a" / "train-000000.tar") == 3


def test_failed_writer_leaves_no_partial_shard(tmp_path):
    zs = _latents(4)
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "train", 3) as w:
            for i, z in enumerate(zs):
                w.write(latent_sample(f"{i:05d}", z, 0, {}))
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-000000.tar"]


def test_read_info_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="walloc-cdl encode"):
        read_info(tmp_path)
    (tmp_path / INFO_NAME).write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_info(tmp_path)


def test_timm_reader_wds(tmp_path, codec):
    from timm.data.readers.reader_wds import ReaderWds

    zs = _latents(5)
    shards = _write(tmp_path, zs, "png", shard_size=2)
    write_info(tmp_path, make_info({"validation": shards}, codec_block(codec, "tiny", "png")))
    # timm decodes the first key found with PIL and renames its 'jpg' output: list both, no mode conversion
    reader = ReaderWds(str(tmp_path), split="validation", input_key="latent.png;jpg", input_img_mode="")
    got = list(reader)
    assert len(reader) == 5 and [t for _, t in got] == [i % 4 for i in range(5)]
    from walloc_cdl.codec.containers import pil_to_latent

    # timm hands back the PIL tiles; with the codec block's latent_dim they are the latents again
    assert torch.equal(pil_to_latent([got[2][0]], N=12, n_bits=8, C=got[2][0].getbands().__len__())[0], zs[2])


def test_hf_load_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    zs = _latents(5)
    shards = _write(tmp_path, zs, "npy", shard_size=2)
    ds = datasets.load_dataset("webdataset", data_files={"train": [str(tmp_path / f) for f, _ in shards]},
                               split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 5
    row = ds[3]
    assert np.array_equal(np.asarray(row["latent.npy"]), zs[3].numpy()) and row["cls"] == 3
    assert row["json"]["source"] == "img3.jpg" and ds.features["latent.npy"].feature.feature.feature.dtype == "int8"


def test_timm_create_dataset_recipe(tmp_path):
    """The documented recipe: timm.data.create_dataset('wds/...', **timm_dataset_kwargs(root)) yields the
    latents LatentDataset yields, with their classes, from `_info.json` as encode writes it."""
    import timm.data
    from PIL import Image

    from walloc_cdl import Codec2D, save_codec
    from walloc_cdl.cli import main as cli
    from walloc_cdl.data.loader import LatentDataset
    from walloc_cdl.data.shards import timm_dataset_kwargs

    torch.manual_seed(0)
    path = save_codec(Codec2D(channels=3, J=2, Ne=None, Nd=32, latent_dim=12, latent_bits=8,
                              lightweight_encode=True).eval(), tmp_path / "c")
    rng = np.random.default_rng(0)
    for i in range(7):
        (tmp_path / "img" / f"k{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "img" / f"k{i % 2}" / f"{i}.png")
    out = tmp_path / "lat"
    assert cli(["encode", str(tmp_path / "img"), str(out), "--codec", str(path), "--container", "webp",
                "--workers", "0", "--no-progress", "--shard-size", "3"]) == 0
    ds = timm.data.create_dataset("wds/latents", root=str(out), split="train", **timm_dataset_kwargs(out))
    got = sorted((float(z.sum()), int(y)) for z, y in ds)
    ref = sorted((float(z.sum()), int(y)) for z, y in LatentDataset(out, "train"))
    assert len(got) == 7 and got == ref
    assert all(isinstance(z, torch.Tensor) and z.shape == (12, 4, 4) for z, _ in ds)
    assert cli(["encode", str(tmp_path / "img"), str(tmp_path / "npy"), "--codec", str(path), "--workers", "0",
                "--no-progress"]) == 0
    with pytest.raises(ValueError, match="timm decodes images with PIL"):
        timm_dataset_kwargs(tmp_path / "npy")
