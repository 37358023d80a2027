"""Upstream's pre-encoded hub sets (parquet, an image column of walloc latent_to_pil WebP tiles, a cls
column) read as latents with a named codec, from the hub stand-in and from a local folder."""
import io
import uuid

import numpy as np
import pytest
import torch

from walloc_cdl import latent_to_pil, load_codec
from walloc_cdl.data.loader import LatentDataset
from walloc_cdl.data.parquet import tile_layout


def test_tile_layout_from_names_configs_and_codecs():
    assert tile_layout("RGB_243c_J4_nf8_v1.0.2") == (243, 8, 3)
    assert tile_layout("hf://danjacobellis/walloc/RGB_Li_48c_J3_nf8_v1.0.2") == (48, 8, 3)
    assert tile_layout({"latent_bits": 8, "config": {"latent_dim": 12, "latent_bits": 8}}) == (12, 8, 3)
    assert tile_layout("gray-4x") == (4, 8, 1)  # a shipped codec: loaded for its config
    assert tile_layout(load_codec("rgb-16x")) == (12, 8, 3)
    with pytest.raises(ValueError, match="do not tile"):
        tile_layout({"latent_dim": 7, "latent_bits": 8})


def _upstream_parquet(path, n, seed, absurd_row=None):
    """Rows as upstream writes them: latent_to_pil(z, 8, C=3) saved as lossless WebP, no header."""
    import datasets

    rng = np.random.default_rng(seed)
    zs = torch.from_numpy(rng.integers(-128, 128, (n, 243, 4, 6))).float()
    imgs = []
    for i, img in enumerate(latent_to_pil(zs, 8, 3)):
        b = io.BytesIO()
        img.save(b, "WEBP", lossless=True)
        imgs.append({"bytes": b.getvalue(), "path": None})
    if absurd_row is not None:
        from test_containers import _png_declaring

        imgs[absurd_row] = {"bytes": _png_declaring(12000, 12000), "path": None}
    labels = [int(v) for v in rng.integers(0, 5, n)]
    ds = datasets.Dataset.from_dict({"image": imgs, "cls": labels}, features=datasets.Features(
        {"image": datasets.Image(), "cls": datasets.ClassLabel(names=[f"c{k}" for k in range(5)])}))
    ds.to_parquet(str(path), batch_size=4)
    return zs, labels


def test_upstream_hub_set_trains_as_it_is(hub, tmp_path):
    org = f"o{uuid.uuid4().hex[:10]}"
    z0, y0 = _upstream_parquet(tmp_path / "a.parquet", 10, 0)
    z1, y1 = _upstream_parquet(tmp_path / "b.parquet", 6, 1)
    hub.commit(f"{org}/inet1k_288_walloc", {"data/train-00000-of-00002.parquet": (tmp_path / "a.parquet").read_bytes(),
                                            "data/train-00001-of-00002.parquet": (tmp_path / "b.parquet").read_bytes(),
                                            "README.md": b"upstream"}, "dataset")
    root = f"hf://datasets/{org}/inet1k_288_walloc"
    ds = LatentDataset(root, "train", latent_column="image", codec="RGB_243c_J4_nf8_v1.0.2")
    assert len(ds) == 16 and ds.info["classes"] == [f"c{k}" for k in range(5)]
    got = list(ds)
    assert all(torch.equal(z, ref) for (z, _), ref in zip(got, torch.cat([z0, z1])))
    assert [y for _, y in got] == y0 + y1
    tr = LatentDataset(root, "train", latent_column="image", codec="RGB_243c_J4_nf8_v1.0.2", training=True,
                       batch_size=4, crop=(2, 2), dequantize=True, epoch_length=8)
    batches = list(tr)
    x = batches[0][0]
    assert len(batches) == 2 and x.shape == (4, 243, 2, 2)
    assert torch.isfinite(x).all() and not torch.equal(x, x.round())  # dequantized through ToNormal
    with pytest.raises(ValueError, match="no walloc-cdl header"):
        next(iter(LatentDataset(root, "train", latent_column="image")))  # no codec: the layout is unknown


def test_local_parquet_folder_and_absurd_tiles(tmp_path):
    (tmp_path / "set" / "data").mkdir(parents=True)
    zs, ys = _upstream_parquet(tmp_path / "set" / "data" / "train-00000-of-00001.parquet", 5, 2, absurd_row=3)
    ds = LatentDataset(str(tmp_path / "set"), "train", latent_column="image", codec="RGB_243c_J4_nf8_v1.0.2")
    it = iter(ds)
    assert [torch.equal(next(it)[0], zs[i]) for i in range(3)] == [True] * 3
    with pytest.raises(ValueError, match=r"\[3\]: header declares a 12000x12000 RGB image .* refused before decoding"):
        next(it)
