"""Latent WebDataset shards: one sample = ``KEY.latent.npy|webp|png`` + ``KEY.cls`` + ``KEY.json``.

Shards are plain uncompressed tars with a fixed mtime, user and mode, written to a hidden temporary file
and renamed when complete, so a killed job never leaves a half shard under a final name and re-running
an identical job gives byte-identical files. The dataset root holds ``_info.json`` in timm's ReaderWds
layout plus a ``codec`` block::

    {"name": "...", "splits": {"train": {"name": "train", "num_samples": N, "filenames": [...],
                                         "shard_lengths": [...]}},
     "codec": {"name": "rgb-16x", "config": {...}, "weights_sha256": "...", "container": "npy"}, ...}

Writing and reading::

    with ShardWriter(root, "train", shard_size=1000) as w:
        w.write(latent_sample(key, z, label, meta, container="npy", n_bits=8))
    write_info(root, make_info({"train": w.shards}, codec_block(codec, "rgb-16x", "npy")))
    sample = decode_sample(raw_webdataset_sample)   # {"__key__", "latent": float tensor, "cls", "json"}

Other readers: plain ``webdataset.WebDataset`` (+ `decode_sample`), HF
``load_dataset("webdataset", data_files=...)`` (``latent.npy`` arrives as int8 nested lists, ``cls`` int,
``json`` dict) and timm, for image containers (``--container webp|png``; timm decodes with PIL)::

    ds = timm.data.create_dataset("wds/latents", root=ROOT, split="train", is_training=True, batch_size=256,
                                  **timm_dataset_kwargs(ROOT))      # yields (latent tensor, class)

:func:`timm_dataset_kwargs` names the tile member, turns off timm's RGB conversion and adds the
transform from tile to latent; timm's ReaderWds reads `_info.json` (splits, filenames, shard_lengths,
num_samples) as it is.
Latents are never stored as .pth (webdataset's .pth decoder unpickles).
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..codec.containers import decode_latent, encode_latent
from ..files import atomic_path

INFO_NAME = "_info.json"
CONTAINERS = {"npy": "latent.npy", "webp": "latent.webp", "png": "latent.png"}
LATENT_KEYS = tuple(CONTAINERS.values())
PIXEL_KEY = "pixels.npy"  # equal-dimension baselines (data.transforms.PixelTransform): uint8 images, int16 PCM
INPUT_KEYS = LATENT_KEYS + (PIXEL_KEY,)
MTIME = 0  # fixed tar mtime: shards are byte-reproducible


def shard_name(split: str, rank: int, index: int, world_size: int = 1) -> str:
    """'train-000003.tar', or 'train-r01-000003.tar' when several ranks write side by side."""
    return f"{split}-{index:06d}.tar" if world_size == 1 else f"{split}-r{rank:02d}-{index:06d}.tar"


def dumps(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, compact) for sample sidecars and info files."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def latent_sample(key: str, z: torch.Tensor | np.ndarray, label: int, meta: Mapping[str, Any],
                  container: str = "npy", n_bits: int = 8) -> dict[str, Any]:
    """A tar-ready sample: rounded latent (C, h, w) or (C, T) in a container, label, metadata."""
    if "." in key or "/" in key or not key:
        raise ValueError(f"sample key {key!r} must be non-empty and contain no dots or slashes")
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {sorted(CONTAINERS)}, got {container!r}")
    return {"__key__": key, CONTAINERS[container]: encode_latent(z, n_bits, container),
            "cls": str(int(label)).encode(), "json": dumps(dict(meta))}


def pixel_sample(key: str, x: torch.Tensor | np.ndarray, label: int, meta: Mapping[str, Any]) -> dict[str, Any]:
    """A tar-ready baseline sample: reduced pixels (C, h, w) uint8 or samples (C, T) int16, label, metadata."""
    if "." in key or "/" in key or not key:
        raise ValueError(f"sample key {key!r} must be non-empty and contain no dots or slashes")
    a = torch.as_tensor(x).detach().cpu().numpy()
    if a.dtype not in (np.uint8, np.int16):
        raise ValueError(f"pixel samples are uint8 images or int16 audio, got {a.dtype}")
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return {"__key__": key, PIXEL_KEY: buf.getvalue(), "cls": str(int(label)).encode(), "json": dumps(dict(meta))}


def decode_sample(sample: Mapping[str, Any], dtype: torch.dtype = torch.float32,
                  meta: bool = True) -> dict[str, Any]:
    """Raw webdataset sample (bytes fields) -> {"__key__", "latent": tensor (C, h, w), "cls": int, "json": dict}
    (`meta=False` leaves the JSON unparsed, as bytes: loaders that do not need it skip the cost)."""
    ext = next((k for k in INPUT_KEYS if k in sample), None)
    if ext is None:
        raise KeyError(f"sample {sample.get('__key__')!r} has no latent ({list(INPUT_KEYS)}); has {sorted(sample)}")
    out = {"__key__": sample.get("__key__"), "latent": decode_latent(bytes(sample[ext]), dtype)}
    out["cls"] = int(sample["cls"]) if "cls" in sample else -1
    raw = sample.get("json", b"{}")
    out["json"] = json.loads(raw) if meta else raw
    return out


class ShardWriter:
    """Numbered tar shards of `shard_size` samples each, written atomically (temp file + rename).

    `start` resumes numbering; `on_shard(name, count)` is called after each rename (a job records its
    progress there). `shards` lists (filename, count) of the shards this writer completed.
    """

    def __init__(self, root: str | Path, split: str = "train", shard_size: int = 1000, *, rank: int = 0,
                 world_size: int = 1, start: int = 0,
                 on_shard: Callable[[str, int], None] | None = None):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.split, self.shard_size, self.rank, self.world_size = split, shard_size, rank, world_size
        self.index = start
        self.on_shard = on_shard
        self.shards: list[tuple[str, int]] = []
        self._tar: Any = None
        self._file: Any = None
        self._count = 0
        self._tmp: Path | None = None

    def _open(self) -> None:
        import webdataset as wds

        name = shard_name(self.split, self.rank, self.index, self.world_size)
        self._tmp = self.root / f".{name}.tmp"
        self._file = open(self._tmp, "wb")
        self._tar = wds.TarWriter(self._file, encoder=False, mtime=MTIME, user="walloc", group="walloc")
        self._count = 0

    def write(self, sample: Mapping[str, Any]) -> None:
        if self._tar is None:
            self._open()
        self._tar.write(dict(sample))
        self._count += 1
        if self._count >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Close the current shard (if it holds samples) and give it its final name."""
        if self._tar is None:
            return
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        name = shard_name(self.split, self.rank, self.index, self.world_size)
        os.replace(self._tmp, self.root / name)
        self.shards.append((name, self._count))
        self._tar = self._file = self._tmp = None
        self.index += 1
        if self.on_shard is not None:
            self.on_shard(name, self._count)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        elif self._tar is not None:  # failed: drop the partial shard
            self._tar.close()
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._tar = None


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to `path` via a temporary file and a rename (readers never see half a file)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode() + b"\n")


def codec_block(codec: torch.nn.Module, name: str | None = None, container: str = "npy") -> dict[str, Any]:
    """What a reader needs to know about the codec: name, config, weights fingerprint, container.

    ``encoder_sha256`` fingerprints the encoder alone: equal values mean equal latents, so a codec whose
    decoder was fine-tuned (``train-codec --freeze-encoder``) still matches shards made before.
    """
    from ..codec.checkpoints import state_dict_sha256

    if getattr(codec, "stores_pixels", False):  # a baseline (data.transforms.PixelTransform): no weights
        fp = codec.fingerprint()
        return {"name": name or "", "class": type(codec).__name__, "kind": "pixels", "config": dict(codec.config),
                "weights_sha256": fp, "encoder_sha256": fp, "container": "npy",
                "latent_bits": int(codec.latent_bits), "downsampling": int(codec.factor)}
    return {"name": name or "", "class": type(codec).__name__, "kind": "latent", "config": dict(codec.config),
            "weights_sha256": state_dict_sha256(codec), "encoder_sha256": state_dict_sha256(codec.encoder),
            "container": container,
            "latent_bits": int(codec.latent_bits), "downsampling": int(codec.downsampling)}


def fingerprint_key(block: Mapping[str, Any]) -> str:
    """The codec-block field that decides the latents: the encoder's fingerprint where recorded (a decoder
    fine-tune keeps it), else the whole codec's."""
    return "encoder_sha256" if block.get("encoder_sha256") else "weights_sha256"


def same_latents(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two codec blocks give the same latents (compared by the first block's fingerprint field)."""
    key = fingerprint_key(a)
    return a.get(key) == b.get(key)


def make_info(splits: Mapping[str, Sequence[tuple[str, int]]], codec: Mapping[str, Any] | None = None,
              name: str = "", **extra: Any) -> dict[str, Any]:
    """timm ReaderWds `_info.json` from {split: [(filename, count), ...]} plus a codec block."""
    info: dict[str, Any] = {"name": name, "splits": {}}
    for split, shards in splits.items():
        info["splits"][split] = {"name": split, "num_samples": int(sum(n for _, n in shards)),
                                 "filenames": [f for f, _ in shards], "shard_lengths": [int(n) for _, n in shards]}
    if codec is not None:
        info["codec"] = dict(codec)
    info.update(extra)
    return info


def timm_dataset_kwargs(root: str | Path) -> dict[str, Any]:
    """Keyword arguments for ``timm.data.create_dataset("wds/...", root=ROOT, ...)`` over our shards.

    ``input_key`` lists the tile member and then ``jpg``: timm's ReaderWds decodes the first listed key
    it finds and renames its result from ``jpg`` (reader_wds.py, ``_decode`` then ``wds.rename``), so the
    last alternative is what it yields. ``input_img_mode=""`` keeps the tile's pixels as stored."""
    from ..codec.containers import TileToLatent

    container = read_info(root).get("codec", {}).get("container", "npy")
    if container not in ("webp", "png"):
        raise ValueError(f"{root}: timm decodes images with PIL; its {container!r} latents need "
                         "walloc_cdl.LatentDataset (or re-encode with --container webp)")
    return {"input_key": f"{CONTAINERS[container]};jpg", "input_img_mode": "", "transform": TileToLatent()}


def write_info(root: str | Path, info: Mapping[str, Any]) -> Path:
    path = Path(root) / INFO_NAME
    write_json_atomic(path, dict(info))
    return path


def read_info(root: str | Path) -> dict[str, Any]:
    """`_info.json` of a dataset folder or URL (``s3://``, ``hf://datasets/...``, ``https://``)."""
    from .remote import is_url, join, read_bytes

    if is_url(str(root)):
        path: Any = join(root, INFO_NAME)
        raw = read_bytes(path)
    else:
        path = Path(root) / INFO_NAME
        if not path.exists():
            raise FileNotFoundError(f"{root}: no {INFO_NAME}; is this a walloc-cdl latent dataset (walloc-cdl encode)?")
        raw = path.read_bytes()
    try:
        info = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(info, dict) or not isinstance(info.get("splits"), dict):
        raise ValueError(f"{path}: no 'splits' mapping (timm ReaderWds layout expected)")
    return info


def shard_paths(root: str | Path, split: str = "train") -> list[str]:
    """Absolute shard paths of a split, from `_info.json`."""
    info = read_info(root)
    if split not in info["splits"]:
        raise KeyError(f"{root}: no split {split!r}; splits are {sorted(info['splits'])}")
    from .remote import join

    return [join(root, f) for f in info["splits"][split]["filenames"]]


def count_samples(path: str | Path) -> int:
    """Samples (distinct keys) in one tar shard, reading headers only."""
    keys = set()
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            if m.isfile():
                keys.add(m.name.split(".", 1)[0])
    return len(keys)


def sample_bytes(sample: Mapping[str, Any]) -> int:
    """Bytes a sample's payload takes (without tar headers)."""
    return sum(len(v) for k, v in sample.items() if not k.startswith("_") and isinstance(v, (bytes, bytearray)))
