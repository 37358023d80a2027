"""Pre-encode a corpus into latent WebDataset shards: ``walloc-cdl encode INPUT OUTPUT --codec NAME``.

    walloc-cdl encode /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz latents/fmnist \\
        --codec gray-4x --split train --shard-size 5000
    walloc-cdl encode photos/ latents/photos --codec rgb-16x --resize 288 --crop random --crop-size 256 --views 4
    walloc-cdl encode drums/ latents/drums --codec stereo-5x --sample-rate 44100 --segment 1.0
    torchrun --standalone --nproc_per_node=2 -m walloc_cdl.cli encode ...   # ranks split items, rank 0 merges

Python::

    report = encode_dataset(open_source("photos/"), "latents/photos", load_codec("rgb-16x"), "rgb-16x",
                            EncodeOptions(resize=288, crop="random", crop_size=(256, 256), views=4))

Each item is decoded (optionally in `workers` processes), converted to the codec's channel count, resized /
cropped (N seeded views) or, for audio, resampled and cut into segments, padded to a multiple of 2^J,
encoded in batches on `device`, and written as ``KEY.latent.npy|webp|png`` + ``KEY.cls`` + ``KEY.json``.
Bad inputs are skipped and listed in the report (``_report_SPLIT.json``), never fatal.

Restartable and reproducible: every random choice is seeded by (seed, item index), and after each shard
is renamed into place the rank's progress (next item, skipped inputs, counts) is saved atomically to
``.progress-SPLIT-rRANK.json``. ``--resume`` continues from there, so a job killed with kill -9 ends with
every sample exactly once, in byte-identical shards (same device and batch size). ``_info.json`` holds no
timings, so it is byte-identical too; the report carries throughput and size on disk vs the source.
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.containers import pad_to_multiple
from .shards import (INFO_NAME, ShardWriter, codec_block, latent_sample, make_info, pixel_sample, read_info,
                     same_latents, write_info, write_json_atomic)
from .remote import Output, open_output
from .sources import Sample, Skipped, Source, SourceError, audio_to_codec, image_to_float, match_channels


@dataclass
class EncodeOptions:
    """What the job does; every field except the run controls at the end is part of the output's identity."""

    split: str = "train"
    container: str = "npy"  # npy | webp | png
    shard_size: int = 1000  # samples per shard
    resize: int | None = None  # images: shorter side -> resize (keeps aspect ratio)
    crop: str = "none"  # none | center | random
    crop_size: tuple[int, int] | None = None  # (h, w); defaults to (resize, resize)
    views: int = 1  # random crops per image
    seed: int = 0
    pad_mode: str = "reflect"  # padding of odd image sizes to 2^J (audio pads with zeros)
    sample_rate: int | None = None  # audio: resample to this rate
    segment: float | None = None  # audio: segment length in seconds (None: whole clips)
    hop: float | None = None  # audio: seconds between segment starts (default: segment)
    min_segment: float = 0.5  # audio: keep a trailing partial segment holding >= this fraction
    mix: str = "auto"  # audio channel handling: auto | first | error
    normalize: str = "none"  # audio: none | peak (walloc's: remove mean, peak to 1) ; always scaled by 1/2
    limit: int | None = None  # only the first N items
    new_classes: bool = False  # a split may add class names the dataset's table lacks (else an error)
    # run controls (not part of the output's identity)
    batch_size: int = 32
    device: str = "cpu"
    workers: int = 0
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def identity(self) -> dict[str, Any]:
        run = {"batch_size", "device", "workers", "resume", "overwrite", "progress"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in run}

    def check(self, kind: str) -> None:
        if self.container not in ("npy", "webp", "png"):
            raise ValueError(f"--container must be npy, webp or png, got {self.container!r}")
        if self.crop not in ("none", "center", "random"):
            raise ValueError(f"--crop must be none, center or random, got {self.crop!r}")
        if self.crop != "none" and self.crop_size is None:
            if self.resize is None:
                raise ValueError("--crop needs --crop-size (or --resize, whose size it then uses)")
            self.crop_size = (self.resize, self.resize)
        if self.views < 1 or (self.views > 1 and self.crop != "random"):
            raise ValueError("--views > 1 needs --crop random (other views would be identical)")
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError("--shard-size and --batch-size must be >= 1")
        if kind == "audio" and (self.resize or self.crop != "none"):
            raise ValueError("--resize/--crop apply to images; audio takes --sample-rate/--segment")
        if kind == "image" and (self.segment or self.sample_rate):
            raise ValueError("--segment/--sample-rate apply to audio")


@dataclass
class Prepared:
    """One codec-ready input: (C, H, W) uint8 pixels or (C, H, W) / (C, T) float32 in [-0.5, 0.5], sizes
    multiples of 2^J (what codec.encode takes)."""

    key: str
    x: torch.Tensor
    label: int
    meta: dict[str, Any] = field(default_factory=dict)


class Preparer:
    """Sample -> list of Prepared (views / segments), deterministic given (seed, item index)."""

    def __init__(self, channels: int, multiple: int, kind: str, options: EncodeOptions):
        options.check(kind)
        self.channels, self.multiple, self.kind, self.o = channels, multiple, kind, options

    def __call__(self, s: Sample, index: int) -> list[Prepared]:
        return self._audio(s, index) if self.kind == "audio" else self._image(s, index)

    # images
    def _image(self, s: Sample, index: int) -> list[Prepared]:
        if s.data.ndim != 3:
            raise SourceError(f"expected an image (H, W, C), got shape {s.data.shape}")
        a = match_channels(s.data, self.channels)
        meta: dict[str, Any] = {"source": s.meta.get("source"), "size": s.meta.get("size", [a.shape[1], a.shape[0]])}
        if self.o.resize:
            a = _resize(a, self.o.resize)
            meta["resize"] = [a.shape[1], a.shape[0]]
        # 8-bit inputs stay uint8 (codec.encode reads uint8 as pixel/255 - 0.5): 4x less to pass between
        # processes and a cheaper encode; anything that needs padding goes through float
        a = (a if a.flags.writeable else a.copy()) if a.dtype == np.uint8 else image_to_float(a)
        x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
        out = []
        rng = np.random.default_rng([self.o.seed, index])
        for v in range(self.o.views):
            xv, box = self._crop(x, rng)
            if any(s % self.multiple for s in xv.shape[-2:]):
                xv = xv.float() / 255 if xv.dtype == torch.uint8 else xv
                xv, pad = pad_to_multiple(xv, self.multiple, self.o.pad_mode, spatial_dims=2)
            else:
                pad = None
            m = dict(meta, crop=box)
            if pad is not None:
                m["pad"] = list(pad.pad)
            if self.o.views > 1:
                m["view"] = v
            key = s.key + (f"_v{v}" if self.o.views > 1 else "")
            out.append(Prepared(key, xv.contiguous() if xv.dtype == torch.uint8 else (xv - 0.5).contiguous(),
                                s.label, m))
        return out

    def _crop(self, x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, list[int]]:
        H, W = x.shape[-2:]
        if self.o.crop == "none":
            return x, [0, 0, W, H]
        h, w = self.o.crop_size
        if H < h or W < w:  # too small: pad (edge) up to the crop
            ph, pw = max(0, h - H), max(0, w - W)
            x = x.float() / 255 if x.dtype == torch.uint8 else x
            x = F.pad(x[None], (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")[0]
            H, W = x.shape[-2:]
        if self.o.crop == "center":
            top, left = (H - h) // 2, (W - w) // 2
        else:
            top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        return x[:, top:top + h, left:left + w], [left, top, w, h]

    # audio
    def _audio(self, s: Sample, index: int) -> list[Prepared]:
        if s.data.ndim != 2:
            raise SourceError(f"expected audio (C, T), got shape {s.data.shape}")
        sr = int(s.meta.get("sample_rate", 0)) or None
        if self.o.sample_rate and not sr:
            raise SourceError("audio has no sample rate to resample from")
        a = audio_to_codec(s.data, sr or 0, self.channels, self.o.sample_rate, self.o.mix)
        sr = self.o.sample_rate or sr
        if self.o.normalize == "peak":
            a = a - a.mean()
            a = a / (np.abs(a).max() + 1e-8)
        x = torch.from_numpy(np.clip(a, -1.0, 1.0) * 0.5)
        T = x.shape[-1]
        meta = {"source": s.meta.get("source"), "sample_rate": sr, "frames": T,
                "channels": s.meta.get("channels")}
        if not self.o.segment:
            spans = [(0, T)]
        else:
            L = max(1, round(self.o.segment * sr))
            hop = max(1, round((self.o.hop or self.o.segment) * sr))
            spans = [(t, L) for t in range(0, max(T - L, 0) + 1, hop)] if T >= L else [(0, L)]
            last = spans[-1][0] + hop if T >= L else T
            if T >= L and last < T and (T - last) >= self.o.min_segment * L:
                spans.append((last, L))
        out = []
        for k, (t0, L) in enumerate(spans):
            seg = x[:, t0:t0 + L]
            seg = F.pad(seg, (0, L - seg.shape[-1]))  # zero-pad a short clip / tail
            seg, pad = pad_to_multiple(seg, self.multiple, "constant", spatial_dims=1)
            m = dict(meta, offset=t0, length=min(L, T - t0))
            if any(pad.pad):
                m["pad"] = list(pad.pad)
            key = s.key + (f"_s{k:05d}" if self.o.segment else "")
            out.append(Prepared(key, seg.contiguous().float(), s.label, m))
        return out


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    """Shorter side -> size, antialiased (PIL for 8-bit L/RGB, torch otherwise)."""
    from PIL import Image

    H, W = a.shape[:2]
    scale = size / min(H, W)
    new = (max(1, round(W * scale)), max(1, round(H * scale)))
    if (W, H) == new:
        return a
    if a.dtype == np.uint8 and a.shape[-1] in (1, 3):
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        r = np.asarray(img.resize(new, Image.BICUBIC, reducing_gap=3.0))
        return r[..., None] if r.ndim == 2 else r
    x = torch.from_numpy(image_to_float(a)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(new[1], new[0]), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return x[0].permute(1, 2, 0).numpy()


class _Items(torch.utils.data.Dataset):
    """Positions of this rank's items -> (index, [Prepared] | Skipped, source bytes), in loader workers."""

    def __init__(self, source: Source, preparer: Preparer, indices: Sequence[int]):
        self.source, self.preparer, self.indices = source, preparer, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, Any, int]:
        i = self.indices[k]
        s = self.source.try_load(i)
        if isinstance(s, Sample):
            try:
                s = self.preparer(s, i)
            except Exception as e:  # a conversion that cannot apply is a skipped input, not a crash
                s = Skipped(self.source.items[i], str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}")
        try:
            nbytes = self.source.item_bytes(i)
        except OSError:
            nbytes = 0
        return i, s, nbytes


def _identity(x: Any) -> Any:
    return x


def input_multiple(codec: torch.nn.Module) -> int:
    """What input sizes must be a multiple of: 2^J for a codec, the transform's own for a baseline."""
    return int(getattr(codec, "multiple", None) or 2 ** codec.J)


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (1 process without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _progress_path(root: Path, split: str, rank: int) -> Path:
    return root / f".progress-{split}-r{rank:02d}.json"


def class_table(source: Source, existing: Sequence[str] | None, new_classes: bool = False
                ) -> tuple[list[str], list[int] | None]:
    """The dataset's one class table and the map from the source's label ids to it.

    Ids are given by class *name*, so a split whose folder lacks a class keeps the other classes' ids.
    A name the table lacks is an error unless ``new_classes`` (then it is appended).  A source without
    names (idx labels, integer ``cls``) keeps its ids; they are checked against the table as they come.
    """
    names = list(getattr(source, "classes", None) or [])
    table = list(existing or [])
    if not names:
        return table, None
    if not table:
        return names, list(range(len(names)))
    unknown = [n for n in names if n not in table]
    if unknown and not new_classes:
        raise ValueError(f"class(es) {unknown[:5]} are not in the dataset's class table {table[:10]}"
                         f"{'...' if len(table) > 10 else ''}; pass --new-classes to add them")
    table += unknown
    return table, [table.index(n) for n in names]


class _Job:
    """One rank's pass over its items, with progress saved after every shard."""

    def __init__(self, source: Source, root: Path, codec: torch.nn.Module, options: EncodeOptions, rank: int,
                 world: int, identity: dict[str, Any], classes: tuple[list[str], list[int] | None] = ([], None),
                 out: Output | None = None):
        self.source, self.root, self.codec, self.o = source, root, codec, options
        self.out = out or Output(root)
        self.rank, self.world, self.identity = rank, world, identity
        self.table, self.label_map = classes
        self.path = _progress_path(root, options.split, rank)
        self.state: dict[str, Any] = {"identity": identity, "next": [0, 0], "shards": [], "skipped": [],
                                      "samples": 0, "items": 0, "classes": {}, "source_bytes": 0, "seconds": 0.0,
                                      "done": False}
        self.pending_skips: list[tuple[int, str, str]] = []
        self.last = (-1, -1)
        self.t0 = time.perf_counter()
        self.elapsed0 = 0.0

    def _save(self, name: str | None = None, count: int = 0) -> None:
        if name is not None:
            self.state["shards"].append([name, count])
        pos, sub = self.last
        self.state["next"] = [pos, sub + 1] if pos >= 0 else self.state["next"]
        nxt = self.state["next"][0]
        keep = [s for s in self.pending_skips if s[0] < nxt or self.state["done"]]
        self.pending_skips = [s for s in self.pending_skips if s not in keep]
        self.state["skipped"] += [{"item": i, "source": src, "reason": r} for i, src, r in keep]
        self.state["seconds"] = self.elapsed0 + time.perf_counter() - self.t0
        write_json_atomic(self.path, self.state)
        self.out.push([name, self.path.name] if name else [self.path.name])  # the shard, then what counts it

    def run(self, indices: list[int], device: torch.device) -> dict[str, Any]:
        o = self.o
        if o.resume and self.path.exists():
            prev = json.loads(self.path.read_text())
            if prev.get("identity") != self.identity:
                raise RuntimeError(f"{self.path}: written by a job with other options or inputs; "
                                   "rerun without --resume (and with --overwrite)")
            self.state, self.elapsed0 = prev, float(prev.get("seconds", 0.0))
            if prev.get("done"):
                return self.state
        nxt_pos, nxt_sub = self.state["next"]
        start = bisect.bisect_left(indices, nxt_pos)
        todo = indices[start:]
        self.state["items"] = start
        self.last = (nxt_pos, nxt_sub - 1) if nxt_sub > 0 else (-1, -1)
        writer = ShardWriter(self.root, o.split, o.shard_size, rank=self.rank, world_size=self.world,
                             start=len(self.state["shards"]), on_shard=self._save)
        prep = Preparer(self.codec.channels, input_multiple(self.codec), self.source.kind, o)
        loader = torch.utils.data.DataLoader(_Items(self.source, prep, todo), batch_size=None, shuffle=False,
                                             num_workers=o.workers, collate_fn=_identity,
                                             prefetch_factor=4 if o.workers else None)
        bar = _bar(len(todo), o.progress and self.rank == 0, f"encode {o.split}")
        buffer: list[tuple[int, int, Prepared]] = []
        for i, result, nbytes in loader:
            self.state["items"] += 1
            bar.update(1)
            if not isinstance(result, Skipped) and result:
                result = self._relabel(i, result)
            if isinstance(result, Skipped):
                self.pending_skips.append((i, result.source, result.reason))
                continue
            for sub, p in enumerate(result):
                if i == nxt_pos and sub < nxt_sub:
                    continue  # written before the resume point
                buffer.append((i, sub, p, nbytes if sub == 0 else 0))
            if len(buffer) >= o.batch_size:
                self._encode(buffer, writer, device)
                buffer = []
        self._encode(buffer, writer, device)
        bar.close()
        self.state["done"] = True
        writer.close()  # the last shard: its rename saves progress (done) via on_shard
        self._save()
        return self.state

    def _relabel(self, i: int, prepared: list[Prepared]) -> list[Prepared] | Skipped:
        """Source label ids -> the dataset's table; an id outside it skips the item (named in the report)."""
        label = prepared[0].label
        if label >= 0 and self.label_map is not None:
            label = self.label_map[label]
        elif label >= 0 and self.table and label >= len(self.table):
            return Skipped(self.source.items[i], f"label {label} outside the {len(self.table)} classes of "
                                                 f"{self.root / INFO_NAME}")
        for p in prepared:
            p.label = label
        return prepared

    @torch.no_grad()  # not inference_mode: codec.encode may cache folded weights for later autograd use
    def _encode(self, buffer: list, writer: ShardWriter, device: torch.device) -> None:
        k = 0
        while k < len(buffer):  # consecutive runs of equal shape form a batch
            kind = (buffer[k][2].x.shape, buffer[k][2].x.dtype)
            j = k
            while j < len(buffer) and (buffer[j][2].x.shape, buffer[j][2].x.dtype) == kind \
                    and j - k < self.o.batch_size:
                j += 1
            x = torch.stack([b[2].x for b in buffer[k:j]]).to(device, non_blocking=True)
            pixels = getattr(self.codec, "stores_pixels", False)
            z = self.codec.encode(x).cpu() if pixels else self.codec.encode(x).to("cpu", torch.int16)
            for (i, sub, p, nbytes), zi in zip(buffer[k:j], z):
                self.last = (i, sub)
                self.state["samples"] += 1
                self.state["source_bytes"] += nbytes
                c = str(p.label)
                self.state["classes"][c] = self.state["classes"].get(c, 0) + 1
                meta = dict(p.meta, item=i)
                writer.write(pixel_sample(p.key, zi, p.label, meta) if pixels else
                             latent_sample(p.key, zi, p.label, meta, self.o.container, int(self.codec.latent_bits)))
            k = j


def _bar(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="item", dynamic_ncols=True)


def _clear_split(root: Path, split: str) -> None:
    for p in list(root.glob(f"{split}-*.tar")) + list(root.glob(f".{split}-*.tar.tmp")) + \
            list(root.glob(f".progress-{split}-r*.json")) + [root / f"_report_{split}.json"]:
        p.unlink(missing_ok=True)


def encode_dataset(source: Source, output: str | Path, codec: torch.nn.Module, codec_name: str = "",
                   options: EncodeOptions | None = None, codec_source: str | None = None) -> dict[str, Any]:
    """Encode `source` into shards under `output` (this process's share under torchrun); returns the report.

    ``codec_source``: where the codec was loaded from (a file path), kept in the codec block so that
    `walloc-cdl predict` can find it again."""
    o = dataclasses.replace(options) if options is not None else EncodeOptions()
    o.check(source.kind)
    rank, world, local_rank = dist_env()
    out = open_output(output)  # a folder, or a staging folder mirrored to s3:// / hf://
    root = out.local
    root.mkdir(parents=True, exist_ok=True)
    device = torch.device(o.device)
    if device.type == "cuda" and device.index is None and world > 1:
        device = torch.device("cuda", local_rank)
    codec = codec.to(device).eval()
    block = codec_block(codec, codec_name, o.container)
    if codec_source:
        block["source"] = codec_source
    n = len(source) if o.limit is None else min(o.limit, len(source))
    if n == 0:
        name = getattr(source, "root", None) or getattr(source, "path", None) or type(source).__name__
        raise ValueError(f"{name}: no input items to encode (an empty folder or dataset?)")
    pulled = out.pull(o.split)   # a remote output's _info.json and progress, into the staging folder
    old_info = read_info(root) if (root / INFO_NAME).exists() else {}
    others = set(old_info.get("splits", {})) - {o.split}   # the table other splits were encoded with
    classes = class_table(source, old_info.get("classes") if others else None, o.new_classes)
    identity = json.loads(json.dumps({"options": o.identity(), "source": source.describe(), "classes": classes[0],
                                      "codec_sha256": block["weights_sha256"], "world_size": world}))  # as saved
    existing = pulled + list(root.glob(f"{o.split}-*.tar")) + list(root.glob(f".progress-{o.split}-r*.json"))
    owned = world > 1 and not torch.distributed.is_initialized()   # a caller's process group stays up
    group = _init_dist(world)
    try:
        if rank == 0 and existing and not o.resume:
            if not o.overwrite:
                raise FileExistsError(f"{root} already holds split {o.split!r}; pass --resume to continue it or "
                                      "--overwrite to replace it")
            _clear_split(root, o.split)
            out.clear(o.split)
        if rank == 0 and old_info:
            old = old_info.get("codec", {})
            if old and not same_latents(old, block):
                raise RuntimeError(f"{root}/{INFO_NAME} belongs to another codec ({old.get('name')!r}); "
                                   "encode into a new folder")
        _barrier(group)
        indices = list(range(rank, n, world))
        state = _Job(source, root, codec, o, rank, world, identity, classes, out).run(indices, device)
        _barrier(group)
        if rank == 0:
            out.pull(o.split)  # every rank's progress, as the remote holds it
            report = _merge(root, source, block, o, world, classes[0], out)
            if not report["samples"]:
                first = report["skipped"][0]["reason"] if report["skipped"] else "no sample"
                raise ValueError(f"{root}: none of the {report['items']} input items could be encoded (first "
                                 f"reason: {first}); see {root / f'_report_{o.split}.json'}")
            return report
        return _rank_report(state)
    finally:
        if group is not None and owned:
            torch.distributed.destroy_process_group()


def _init_dist(world: int) -> Any:
    if world == 1:
        return None
    import datetime

    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
    return torch.distributed.group.WORLD


def _barrier(group: Any) -> None:
    if group is not None:
        torch.distributed.barrier(group)


def _rank_report(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("samples", "items", "skipped", "classes", "source_bytes", "seconds", "shards")}


def _merge(root: Path, source: Source, block: dict[str, Any], o: EncodeOptions, world: int,
           classes: list[str], out: Output | None = None) -> dict[str, Any]:
    """Rank 0: all ranks' progress -> `_info.json` (this split, other splits kept) and the report."""
    states = []
    for r in range(world):
        p = _progress_path(root, o.split, r)
        states.append(json.loads(p.read_text()))
    shards = [tuple(s) for st in states for s in st["shards"]]
    info = read_info(root) if (root / INFO_NAME).exists() else {}
    splits = {k: list(zip(v["filenames"], v["shard_lengths"])) for k, v in info.get("splits", {}).items()}
    splits[o.split] = shards
    new = make_info(splits, block, name=info.get("name", ""), classes=classes,
                    **{"sources": {**info.get("sources", {}), o.split: {**source.describe(), "options": o.identity()}}})
    write_info(root, new)
    out = out or Output(root)
    out_bytes = sum(out.size(f) for f, _ in shards)
    counts: dict[str, int] = {}
    for st in states:
        for c, n in st["classes"].items():
            counts[c] = counts.get(c, 0) + n
    seconds = max(st["seconds"] for st in states)
    samples = sum(st["samples"] for st in states)
    src_bytes = sum(st["source_bytes"] for st in states)
    report = {
        "split": o.split, "output": str(root), "codec": block["name"], "container": o.container,
        "items": sum(st["items"] for st in states), "samples": samples, "shards": len(shards),
        "skipped": [{"item": -1, "source": s.source, "reason": s.reason} for s in getattr(source, "skipped", [])]
        + sorted((s for st in states for s in st["skipped"]), key=lambda s: s["item"]),
        "classes": dict(sorted(counts.items(), key=lambda kv: int(kv[0]))), "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 2) if seconds else None,
        "source_bytes": src_bytes, "output_bytes": out_bytes,
        "size_ratio": round(out_bytes / src_bytes, 4) if src_bytes else None, "world_size": world,
    }
    write_json_atomic(root / f"_report_{o.split}.json", report)
    out.push([f"_report_{o.split}.json", INFO_NAME])  # _info.json last: readers see a complete split
    return report
