"""Read latent shards back for training and evaluation (a webdataset pipeline).

    ds = LatentDataset("latents/fmnist", split="train", training=True, epoch_length=60000,
                       batch_size=256, crop=(8, 8), dequantize=True)
    loader = make_loader(ds, num_workers=2)       # yields (latents (B, C, h, w) float32, labels (B,) int64)
    for z, y in loader: ...

    ev = LatentDataset("latents/fmnist", split="test", batch_size=500)   # every sample exactly once

Training shuffles the shard list for each epoch (seeded by seed and epoch), gives each rank and loader
worker its own shards (no two ranks read the same shard in an epoch), cycles them and stops after
`epoch_length` samples over all ranks and workers, each worker taking an equal share, so every rank runs
the same number of steps.  The epoch is counted by each iteration, or set with `set_epoch(e)` (a resumed
run, or workers that are not persistent): every draw is a function of (seed, epoch, rank, worker), so an
epoch can be replayed exactly.  Evaluation reads the listed shards once, split over ranks
(`wds.split_by_node`, RANK/WORLD_SIZE or torch.distributed) and loader workers (`wds.split_by_worker`).
A rank that would get no shard raises `NoShardsError` at construction instead of leaving the other ranks
waiting on it.

Bad samples never stop an epoch: a shard member that cannot be read or decoded, or whose label is not a
class of `_info.json`, is skipped with a one-line warning naming the shard and key, and counted in
`skipped` (shared with the loader workers).

Latent-space augmentation: `crop=(h, w)` takes a random crop on the latent grid in training and the
centre crop in evaluation; a crop of the latent grid is the latent of the matching 2^J-aligned pixel
crop away from the borders (periodized wavelets wrap within ~4 latent cells of the image edge).
There is no flip: for a WaLLoC codec, flipping the latent grid is *not* the latent of the flipped
image (bior4.4 filters are symmetric, but reversing the signal moves the downsampling phase by one
sample and negates/reorders the packet bands the linear encoder mixes); tests/test_loader.py measures it.
`dequantize=True` maps the integers through the codec's ToNormal (as its decoder does first).
"""
from __future__ import annotations

import math
import multiprocessing
import random
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from ..codec.bottleneck import ToNormal, companding_scale, latent_max
from .remote import expand, is_url, join, safe_member, with_openers
from .shards import INPUT_KEYS, decode_sample, read_info


class NoShardsError(RuntimeError):
    """More ranks than shards: some rank would read nothing (and stall a distributed job)."""


def _worker_info() -> tuple[int, int, int, int]:
    import webdataset as wds

    return wds.utils.pytorch_worker_info()


def random_crop(z: torch.Tensor, size: Sequence[int], rng: random.Random | None) -> torch.Tensor:
    """Crop the last len(size) dims of a latent (C, h, w) or (C, T) to `size`: random offsets when
    `rng` is given, else the centre. Refuses a crop larger than the latent."""
    dims = z.shape[-len(size):]
    if any(s > d for s, d in zip(size, dims)):
        raise ValueError(f"crop {tuple(size)} is larger than the latent grid {tuple(dims)}")
    idx: list[slice] = []
    for s, d in zip(size, dims):
        o = rng.randint(0, d - s) if rng is not None else (d - s) // 2
        idx.append(slice(o, o + s))
    return z[(..., *idx)]


def _epoch_rng(seed: int | None, epoch: int) -> random.Random:
    """A generator per (seed, rank, worker, epoch): reproducible runs, different draws everywhere."""
    if seed is None:
        return random.Random()
    rank, _, worker, _ = _worker_info()
    return random.Random(((seed * 1000003 + rank) * 1009 + worker) * 1000033 + epoch)


class _Stage:
    """A picklable per-sample map given a random generator in training (None in evaluation); a sample the
    map returns None for is dropped."""

    def __init__(self, fn: Callable[..., Any], seed: int | None, training: bool):
        self.fn, self.seed, self.training, self.epoch = fn, seed, training, 0

    def __call__(self, src: Iterator[dict]) -> Iterator[Any]:
        rng = _epoch_rng(self.seed, self.epoch) if self.training else None
        for s in src:
            out = self.fn(s, rng)
            if out is not None:
                yield out


class _Shuffle:
    """wds.shuffle with a seeded generator per (rank, worker, epoch)."""

    def __init__(self, bufsize: int, seed: int | None):
        self.bufsize, self.seed, self.epoch = bufsize, seed, 0

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        import webdataset as wds

        rng = _epoch_rng(None if self.seed is None else self.seed + 1, self.epoch)
        return wds.shuffle(self.bufsize, initial=min(self.bufsize, 500), rng=rng)(src)


class _EpochShards(torch.utils.data.IterableDataset):
    """This (rank, worker)'s shards of an epoch: the list shuffled by (seed, epoch), dealt to ranks, then to
    workers, and cycled (finitely: enough cycles for the epoch's share, plus one)."""

    def __init__(self, urls: Sequence[str], lengths: Sequence[int], seed: int | None, epoch_length: int):
        super().__init__()
        self.urls, self.lengths, self.seed, self.epoch_length, self.epoch = list(urls), list(lengths), seed, epoch_length, 0

    def __iter__(self) -> Iterator[dict]:
        rank, world, worker, workers = _worker_info()
        order = list(range(len(self.urls)))
        random.Random((self.seed or 0) * 1000003 + self.epoch).shuffle(order)
        mine = order[rank::world][worker::workers]
        if not mine:
            raise NoShardsError(f"loader worker {worker} of rank {rank} gets none of the {len(self.urls)} shards: "
                                "use fewer loader workers or re-encode with a smaller --shard-size")
        have = sum(self.lengths[i] for i in mine) if len(self.lengths) == len(self.urls) else 0
        quota = math.ceil(self.epoch_length / (world * workers))
        cycles = math.ceil(quota / have) + 1 if have else 2
        for _ in range(cycles):
            for i in mine:
                yield {"url": self.urls[i]}


class _TakePerWorker:
    """Stop each (rank, worker) after its share of `epoch_length` samples (an epoch in resampled mode)."""

    def __init__(self, epoch_length: int, batch_size: int | None):
        self.epoch_length, self.batch_size = epoch_length, batch_size

    def __call__(self, src: Iterator[Any]) -> Iterator[Any]:
        _, world, _, workers = _worker_info()
        per = math.ceil(self.epoch_length / (world * workers))
        n = math.ceil(per / self.batch_size) if self.batch_size else per
        for i, s in enumerate(src):
            if i >= n:
                return
            yield s


def _collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {tuple(z.shape) for z, _ in batch}
    if len(shapes) > 1:
        raise ValueError(f"latents in a batch differ in shape {sorted(shapes)}: pass crop= (or encode with a "
                         "fixed --size) to batch them")
    return torch.stack([z for z, _ in batch]), torch.tensor([y for _, y in batch], dtype=torch.int64)


class LatentDataset(torch.utils.data.IterableDataset):
    """Latents and labels from a `walloc-cdl encode` dataset (`_info.json` + tar shards), via webdataset.

    Yields (latent float32 (C, h, w) or (C, T), label) or, with `batch_size`, batches
    ((B, C, h, w), (B,)); `with_meta=True` appends the sample's JSON dict (unbatched only).
    `root` is a folder or a URL (``s3://``, ``hf://datasets/ORG/NAME``, ``https://``: `_info.json` read there);
    `urls` lists shards directly (URLs or brace patterns, e.g. ``https://host/train-{000..009}.tar``).
    `latent_column` reads a parquet set of latent tiles instead (:mod:`walloc_cdl.data.parquet`: upstream's
    hub sets with `codec=` naming their layout, or ``walloc-cdl export`` output).
    """

    def __init__(self, root: str | Path, split: str = "train", *, training: bool = False,
                 epoch_length: int | None = None, batch_size: int | None = None, shuffle: int = 2000,
                 crop: Sequence[int] | None = None, dequantize: bool = False, seed: int | None = 0,
                 with_meta: bool = False, urls: str | Sequence[str] | None = None, latent_column: str | None = None,
                 codec: Any = None, label_column: str | None = None):
        super().__init__()
        self.root = root if is_url(str(root)) else Path(root)
        local_info = not is_url(str(root)) and (self.root / "_info.json").exists()
        self._expand = None  # parquet tiles: a stage yielding decoded samples instead of tar members
        if latent_column is not None:
            from .parquet import open_parquet_latents

            self.info, urls, self._expand = open_parquet_latents(str(root), split, latent_column, codec, label_column)
        else:
            self.info = read_info(root) if urls is None or local_info else {"splits": {}}
        if urls is None:
            if split not in self.info["splits"]:
                raise KeyError(f"{root}: no split {split!r}; splits are {sorted(self.info['splits'])}")
            urls = [join(root, f) for f in self.info["splits"][split]["filenames"]]
        self.urls = expand(urls)
        if not self.urls:
            raise NoShardsError(f"{root}: split {split!r} lists no shards")
        split_info = self.info["splits"].get(split, {})
        self.num_samples = int(split_info.get("num_samples", 0))
        self.shard_lengths = [int(n) for n in split_info.get("shard_lengths", [])]
        self.codec = self.info.get("codec", {})
        self.classes = list(self.info.get("classes") or [])
        self._skips = multiprocessing.Value("q", 0)
        self._epoch = -1
        self.num_workers = 1
        self.training, self.batch_size, self.shuffle, self.seed = training, batch_size, shuffle, seed
        self.crop = tuple(crop) if crop is not None else None
        self.with_meta = with_meta
        if with_meta and batch_size:
            raise ValueError("with_meta=True yields single samples; batch them yourself")
        self.epoch_length = epoch_length or (self.num_samples if training else None)
        if training and not self.epoch_length:
            raise ValueError("training reads resampled shards: give epoch_length (samples per epoch)")
        self.to_normal: ToNormal | None = None
        if dequantize:
            bits = self.codec.get("latent_bits") or self.codec.get("config", {}).get("latent_bits")
            if not bits:
                raise ValueError(f"{root}: _info.json has no codec latent_bits; cannot dequantize")
            self.to_normal = ToNormal(companding_scale(int(bits)), latent_max(int(bits)))
        rank, world, _, _ = _worker_info()
        if len(self.urls) < world:  # raised on every rank, so none waits for the others
            raise NoShardsError(
                f"rank {rank} of {world} may get no shard: split {split!r} has {len(self.urls)} shard(s). "
                f"Re-encode with a smaller --shard-size (>= {world} shards) or use fewer ranks.")
        self.pipeline = self._build()

    @property
    def skipped(self) -> int:
        """Samples skipped so far (unreadable, undecodable or out-of-table labels), over all loader workers."""
        return int(self._skips.value)

    def _skip(self, where: str, reason: str) -> None:
        with self._skips.get_lock():
            self._skips.value += 1
            n = self._skips.value
        if n <= 20:
            print(f"skipped {where}: {reason}" + (" (further skips are counted, not printed)" if n == 20 else ""),
                  file=sys.stderr)

    def _tar_error(self, exn: Exception) -> bool:
        """webdataset handler: an unreadable shard member is skipped and counted; reading goes on."""
        self._skip("a shard member", f"{type(exn).__name__}: {exn}")
        return True

    def _sample(self, raw: dict, rng: random.Random | None) -> tuple | None:
        where = f"{raw.get('__url__', '?')}:{raw.get('__key__', '?')}"
        try:   # parquet sources hand over decoded latents
            s = raw if isinstance(raw.get("latent"), torch.Tensor) else decode_sample(raw, meta=self.with_meta)
        except Exception as e:  # a corrupt member: anything numpy/PIL raise
            self._skip(where, f"{type(e).__name__}: {e}")
            return None
        y = s["cls"]
        if (self.classes and y >= len(self.classes)) or (y < 0 and self.training):  # unlabelled: read, not trained
            self._skip(where, f"label {y} is not one of the {len(self.classes)} classes of _info.json")
            return None
        z = s["latent"]
        if self.crop is not None:
            z = random_crop(z, self.crop, rng)
        if self.to_normal is not None:
            z = self.to_normal(z)
        return (z, y, s["json"]) if self.with_meta else (z, y)

    def _build(self) -> Any:
        import webdataset as wds

        self._epoch_stages: list[Any] = []
        if self.training:
            shards = _EpochShards(self.urls, self.shard_lengths, self.seed, self.epoch_length)
            stages: list[Any] = [shards, with_openers, self._expand or wds.tarfile_to_samples(
                handler=self._tar_error, select_files=safe_member)]
            self._epoch_stages.append(shards)
            if self.shuffle:
                stages.append(_Shuffle(self.shuffle, self.seed))
                self._epoch_stages.append(stages[-1])
        else:
            stages = [wds.SimpleShardList(self.urls), wds.split_by_node, wds.split_by_worker,
                      with_openers, self._expand or wds.tarfile_to_samples(handler=self._tar_error,
                                                                           select_files=safe_member)]
        stages.append(wds.select(lambda s: "latent" in s or any(k in s for k in INPUT_KEYS)))
        stages.append(_Stage(self._sample, self.seed, self.training))
        self._epoch_stages.append(stages[-1])
        if self.batch_size:
            stages.append(wds.batched(self.batch_size, collation_fn=_collate, partial=not self.training))
        if self.training:
            stages.append(_TakePerWorker(self.epoch_length, self.batch_size))
        return wds.DataPipeline(*stages)

    def set_epoch(self, epoch: int) -> None:
        """The next iteration reads epoch ``epoch`` (0-based); later ones count on from there."""
        self._epoch = epoch - 1

    def __iter__(self) -> Iterator[Any]:
        self._epoch += 1
        for stage in self._epoch_stages:
            stage.epoch = self._epoch
        return iter(self.pipeline)

    def __len__(self) -> int:
        """Samples (or batches) per epoch on this rank: what a progress bar or LR schedule needs.

        In training every loader worker takes an equal share (``num_workers``, which ``make_loader`` sets)."""
        _, world, _, _ = _worker_info()
        if not self.training:
            n = math.ceil(self.num_samples / world)
            return math.ceil(n / self.batch_size) if self.batch_size else n
        w = max(1, self.num_workers)
        per = math.ceil(self.epoch_length / (world * w))
        return w * (math.ceil(per / self.batch_size) if self.batch_size else per)


def make_loader(dataset: LatentDataset, num_workers: int = 2, **kwargs: Any) -> torch.utils.data.DataLoader:
    """A DataLoader over an (already batched) LatentDataset: batch_size=None, workers persistent."""
    dataset.num_workers = max(1, num_workers)
    kwargs.setdefault("persistent_workers", num_workers > 0)
    # the loader's own generator: making an iterator then draws nothing from the global one, so a run
    # resumed mid-epoch keeps the same random stream (the pipeline's draws are seeded by the dataset)
    kwargs.setdefault("generator", torch.Generator().manual_seed(0))
    kwargs.setdefault("pin_memory", torch.cuda.is_available())
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers, **kwargs)
