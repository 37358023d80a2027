"""walloc-cdl export: our latent shards as parquet tiles + labels that datasets.load_dataset reads, that
walloc's pil_to_latent and our LatentDataset read back, pushed to the hub stand-in and streamed from it."""
import io
import json
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

from walloc_cdl import Codec2D, decode_latent, pil_to_latent, save_codec
from walloc_cdl.cli import main as cli
from walloc_cdl.data.loader import LatentDataset


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """12 RGB images in 3 classes, encoded with a 12-channel codec: webp tiles and npy."""
    d = tmp_path_factory.mktemp("exp")
    torch.manual_seed(0)
    codec = Codec2D(channels=3, J=2, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True).eval()
    path = save_codec(codec, d / "rgb12")
    rng = np.random.default_rng(0)
    for i in range(12):
        (d / "img" / f"k{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(d / "img" / f"k{i % 3}" / f"{i}.png")
    outs = {}
    for container in ("webp", "npy"):
        outs[container] = d / container
        assert cli(["encode", str(d / "img"), str(outs[container]), "--codec", str(path), "--container", container,
                    "--workers", "0", "--no-progress", "--shard-size", "5"]) == 0
    return d, outs


def _latents(root):
    return {k: (z, y) for z, y, k in ((z, y, m["source"]) for z, y, m in LatentDataset(root, "train", with_meta=True))}


@pytest.mark.parametrize("container", ["webp", "npy"])
def test_export_reads_back_with_load_dataset_walloc_and_latentdataset(encoded, container, tmp_path):
    import datasets

    d, outs = encoded
    out = tmp_path / "pq"
    assert cli(["export", str(outs[container]), str(out), "--rows-per-file", "5"]) == 0
    files = sorted(p.name for p in (out / "data").iterdir())
    assert files == [f"train-0000{k}-of-00003.parquet" for k in range(3)]
    assert "path: data/train-*" in (out / "README.md").read_text()
    assert json.loads((out / "codec.json").read_text())["latent_bits"] == 8
    ds = datasets.load_dataset("parquet", data_files={"train": str(out / "data" / "*.parquet")}, split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["image"], datasets.Image) and ds.features["cls"].names == ["k0", "k1", "k2"]
    ref = _latents(outs[container])
    assert len(ds) == 12
    for row in ds.cast_column("image", datasets.Image(decode=False)):
        z, y = ref[json.loads(row["json"])["source"]]
        assert torch.equal(decode_latent(row["image"]["bytes"]), z) and row["cls"] == y
        img = Image.open(io.BytesIO(row["image"]["bytes"]))  # walloc's own reader, given N, bits, C=3
        assert torch.equal(pil_to_latent([img], N=12, n_bits=8, C=3)[0], z)
    back = LatentDataset(str(out), "train", latent_column="image")  # self-describing tiles: no codec needed
    assert sorted(float(z.sum()) for z, _ in back) == sorted(float(z.sum()) for z, _ in ref.values())


def test_export_push_to_hub_and_stream_it_back(hub, encoded, tmp_path):
    import datasets

    d, outs = encoded
    repo = f"o{uuid.uuid4().hex[:10]}/latents"
    assert cli(["export", str(outs["webp"]), str(tmp_path / "pq"), "--push-to-hub", repo]) == 0
    tree = hub.tree(repo, repo_type="dataset")
    assert {"README.md", "codec.json", "data/train-00000-of-00001.parquet"} <= set(tree)
    rows = list(datasets.load_dataset(repo, split="train", streaming=True))
    assert len(rows) == 12 and {r["cls"] for r in rows} == {0, 1, 2}
    back = LatentDataset(f"hf://datasets/{repo}", "train", latent_column="image", batch_size=4)
    assert [tuple(z.shape) for z, _ in back] == [(4, 12, 4, 4)] * 3
