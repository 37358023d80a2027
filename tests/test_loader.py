"""LatentDataset: exact-once evaluation, resampled training epochs, rank splitting, latent augmentation."""
import collections

import pytest
import torch

from walloc_cdl import Codec2D
from walloc_cdl.data.loader import LatentDataset, NoShardsError, make_loader, random_crop
from walloc_cdl.data.shards import ShardWriter, codec_block, latent_sample, make_info, write_info

from floatbound import assert_within, encode_bound

N = 23


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return Codec2D(channels=3, J=2, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True).eval()


@pytest.fixture(scope="module")
def root(tmp_path_factory, codec):
    root = tmp_path_factory.mktemp("latents")
    g = torch.Generator().manual_seed(1)
    splits = {}
    for split, n in (("train", N), ("test", 7)):
        with ShardWriter(root, split, shard_size=5) as w:
            for i in range(n):
                z = torch.randint(-128, 128, (12, 6, 8), generator=g).float()
                w.write(latent_sample(f"{split}{i:04d}", z, i % 3, {"i": i}))
        splits[split] = w.shards
    write_info(root, make_info(splits, codec_block(codec, "tiny")))
    return root


def _keys(ds):
    return [m["i"] for _, _, m in ds]


def test_eval_reads_each_sample_once(root):
    ds = LatentDataset(root, "train", with_meta=True)
    assert sorted(_keys(ds)) == list(range(N)) and len(ds) == N
    z, y, m = next(iter(ds))
    assert z.shape == (12, 6, 8) and z.dtype == torch.float32 and y == m["i"] % 3
    batched = LatentDataset(root, "train", batch_size=4)
    batches = list(make_loader(batched, num_workers=2))
    ys = torch.cat([y for _, y in batches])
    assert len(ys) == N and sorted(b[0].shape[0] for b in batches)[-1] == 4
    assert collections.Counter(ys.tolist()) == collections.Counter(i % 3 for i in range(N))


def test_eval_split_by_node(root, monkeypatch):
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        part = _keys(LatentDataset(root, "train", with_meta=True))
        assert part
        seen += part
    assert sorted(seen) == list(range(N))
    monkeypatch.setenv("WORLD_SIZE", "3")  # 'test' has 2 shards
    with pytest.raises(NoShardsError, match="smaller --shard-size"):
        LatentDataset(root, "test")


def test_training_is_resampled_with_epoch_length(root):
    ds = LatentDataset(root, "train", training=True, epoch_length=50, batch_size=8, shuffle=10, crop=(4, 4))
    batches = list(ds)
    assert len(batches) == len(ds) == 7 and all(z.shape == (8, 12, 4, 4) for z, _ in batches)
    again = [z for z, _ in LatentDataset(root, "train", training=True, epoch_length=50, batch_size=8,
                                         shuffle=10, crop=(4, 4))]
    assert all(torch.equal(a, b) for (a, _), b in zip(batches, again))  # seeded
    second_epoch = [z for z, _ in ds]
    assert not all(torch.equal(a, b) for (a, _), b in zip(batches, second_epoch))  # new draws each epoch
    with_workers = list(make_loader(LatentDataset(root, "train", training=True, epoch_length=40, batch_size=5),
                                    num_workers=2))
    assert sum(len(y) for _, y in with_workers) == 40
    with pytest.raises(ValueError, match="epoch_length"):
        LatentDataset(root / "elsewhere", "train", training=True, urls=[str(root / "train-000000.tar")])


def test_dequantize_matches_codec(root, codec):
    z, _ = next(iter(LatentDataset(root, "test")))
    zq, _ = next(iter(LatentDataset(root, "test", dequantize=True)))
    assert torch.allclose(zq, codec.decoder[0](z))


def test_errors(root):
    with pytest.raises(KeyError, match="splits are"):
        LatentDataset(root, "val")
    with pytest.raises(ValueError, match="larger than"):
        random_crop(torch.zeros(2, 3, 3), (4, 4), None)
    assert random_crop(torch.arange(10.0)[None], (4,), None).tolist() == [[3.0, 4.0, 5.0, 6.0]]


def test_latent_crop_is_latent_of_pixel_crop_away_from_borders(codec):
    """What the crop augmentation means: interior latents of an aligned pixel crop equal the latent grid crop."""
    x = torch.rand(1, 3, 64, 64) - 0.5
    z = codec.encode(x, quantize=False)  # (1, 12, 16, 16), 2^J = 4
    zc = codec.encode(x[..., 16:48, 8:40], quantize=False)  # crop at latent (4, 2), size 8x8
    inner = (slice(None), slice(None), slice(3, 5), slice(3, 5))
    assert_within(zc[inner], z[..., 4:12, 2:10][inner], encode_bound(codec, x, computations=2))
    assert not torch.allclose(zc[..., :1, :], z[..., 4:5, 2:10], atol=1e-2)  # borders wrap (periodization)


def test_horizontal_flip_is_not_exact(codec):
    """Why the loader offers no flip: flip(latent(x)) is far from latent(flip(x)) for a WPT codec."""
    x = torch.rand(2, 3, 32, 32) - 0.5
    a = codec.encode(torch.flip(x, dims=[-1]), quantize=False)
    b = torch.flip(codec.encode(x, quantize=False), dims=[-1])
    rel = ((a - b).norm() / a.norm()).item()
    assert rel > 0.1, rel
    # nor does a one-cell shift repair it
    assert all(((a - torch.roll(b, s, -1)).norm() / a.norm()).item() > 0.1 for s in (-1, 1))


def test_training_ranks_draw_different_samples(root, monkeypatch):
    firsts = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        ds = LatentDataset(root, "train", training=True, epoch_length=20, batch_size=10, shuffle=0)
        assert len(ds) == 1
        firsts.append(next(iter(ds))[0])
    assert not torch.equal(*firsts)
