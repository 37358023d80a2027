"""Input readers for pre-encoding: every corpus becomes an indexed list of items that load to `Sample`s.

A source knows its items up front (sorted, deterministic), so a job can split them across ranks,
resume at an item and give byte-identical output. Loading one item either returns a `Sample` or raises
`SourceError` with the reason; iterating a source yields `Sample` or `Skipped`, never stops on bad input::

    src = open_source("/data/imagenette")            # folder, HF dataset, .tar shards, audio, idx
    for s in src:                                      # Sample(key, data, label, meta) or Skipped(source, reason)
        ...
    x = src.load(17)                                   # one item; raises SourceError(reason)

`Sample.data` is what was decoded, unconverted: images (H, W, C) as uint8, uint16 or float32; audio
(C, T) float32 with `meta["sample_rate"]`. Conversions to what a codec expects live here too:
`image_to_float` (-> [0, 1]), `match_channels` (gray/RGB/RGBA/… -> the codec's channel count),
`audio_to_codec` (resample, channel count). Keys contain no dots (WebDataset splits on the first dot).

Readers: `ImageFolder` (class subfolders give labels; PIL, multi-band TIFF via tifffile),
`AudioFolder` (soundfile), `IdxSource` / `read_idx` / `load_fashion_mnist` (idx, optionally gzipped),
`HFSource` (datasets `load_from_disk` or local data files, any Image/Audio column), `WdsSource`
(existing uncompressed WebDataset tars, e.g. pixel shards).
"""
from __future__ import annotations

import bisect
import gzip
import io
import json
import math
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
                  ".pnm", ".jp2", ".j2k", ".jfif", ".tga", ".ico")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".w64",
                  ".caf", ".rf64")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")


class SourceError(ValueError):
    """An input that cannot be used; the message is the reason a report lists."""


@dataclass
class Sample:
    key: str  # unique within the source, no dots
    data: np.ndarray  # image (H, W, C) uint8 | uint16 | float32, or audio (C, T) float32
    label: int = -1  # -1: unlabelled
    meta: dict[str, Any] = field(default_factory=dict)  # source, size, mode, sample_rate, ...


@dataclass
class Skipped:
    source: str  # file, or file#member / dataset[row]
    reason: str


def make_key(index: int, name: str = "") -> str:
    """'00000017-cats-tabby_01': the item index keeps keys unique and ordered; no dots, tar-safe."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:60]
    return f"{index:08d}" + (f"-{slug}" if slug else "")


class Source:
    """Base class: `items` (one string per item), `load(i)`, iteration with skip-and-report."""

    kind: str = "image"  # "image" | "audio"
    classes: list[str]
    items: list[str]

    def __len__(self) -> int:
        return len(self.items)

    draft: tuple[int, int] | None = None  # JPEG draft hint: decode at >= this (w, h) when a job downscales anyway

    def load(self, i: int) -> Sample:
        raise NotImplementedError

    def item_bytes(self, i: int) -> int:
        """Bytes item i takes in the source (for size-on-disk reports); 0 when unknown."""
        return 0

    def try_load(self, i: int) -> Sample | Skipped:
        """`load`, with any failure turned into `Skipped` (decoders raise many exception types)."""
        try:
            return self.load(i)
        except SourceError as e:
            return Skipped(self.items[i], str(e))
        except Exception as e:  # corrupt inputs make PIL/soundfile/numpy raise anything; never fatal
            return Skipped(self.items[i], f"{type(e).__name__}: {e}")

    def __iter__(self) -> Iterator[Sample | Skipped]:
        for i in range(len(self)):
            yield self.try_load(i)

    def describe(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "kind": self.kind, "items": len(self), "classes": list(self.classes)}


# -- decoding ---------------------------------------------------------------------------------------

def pil_to_array(img: Any) -> np.ndarray:
    """Decoded PIL image -> (H, W, C): uint8 for 8-bit modes, uint16 for 16-bit, float32 for 'F'.

    Palette images become RGB (RGBA when they carry transparency); CMYK/YCbCr/LAB/HSV become RGB.
    """
    mode = img.mode
    if mode == "1":
        img = img.convert("L")
    elif mode in ("P", "PA"):
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode == "La":
        img = img.convert("LA")
    elif mode == "RGBa":
        img = img.convert("RGBA")
    if img.mode.startswith("I;16"):
        a = np.asarray(img).astype(np.uint16)
    elif img.mode == "I":
        a = np.asarray(img)
        if a.min() < 0 or a.max() > 65535:
            raise SourceError(f"32-bit integer image with values in [{a.min()}, {a.max()}] has no known range")
        a = a.astype(np.uint16)
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float32)
    elif img.mode in ("L", "LA", "RGB", "RGBA"):
        a = np.asarray(img)
    else:
        raise SourceError(f"unsupported image mode {img.mode!r}")
    return a[..., None] if a.ndim == 2 else a


def decode_image(data: bytes | Path | str, name: str = "",
                 draft: tuple[int, int] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Bytes or a path -> (H, W, C) array and meta (mode, size). Multi-band / 16-bit RGB TIFFs go
    through tifffile, which PIL cannot read; EXIF orientation is applied, as a viewer shows it.

    `draft` (w, h) lets JPEG decode at a reduced scale (DCT scaling, >= w x h) when the caller will
    downscale anyway; meta["size"] is always the stored size."""
    from PIL import Image, ImageOps

    name = name or (str(data) if isinstance(data, (str, Path)) else "")
    if name.lower().endswith((".tif", ".tiff")):
        try:
            return _decode_tiff(data)
        except SourceError:
            raise
        except Exception:
            pass  # let PIL try (and report) it
    fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    with Image.open(fp) as img:
        mode, size = img.mode, list(img.size)
        turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF rotations by 90 degrees swap w and h
        if turned:
            size = size[::-1]
        if draft is not None and img.format == "JPEG":
            img.draft(img.mode, tuple(draft[::-1]) if turned else tuple(draft))
        img.load()  # decode now so truncated files fail here
        a = pil_to_array(ImageOps.exif_transpose(img))
    if a.size == 0:
        raise SourceError("empty image")
    return a, {"mode": mode, "size": size}


def _decode_tiff(data: bytes | Path | str) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    with tifffile.TiffFile(fp) as tif:
        page = tif.series[0]
        a = page.asarray()
        axes = page.axes
    # bring to (H, W, C): tifffile axes use Y, X and S (samples) or C/I/Q (bands/planes)
    squeeze = "".join(ax for ax, n in zip(axes, a.shape) if n == 1 and ax not in "YX")
    for ax in squeeze:
        a = a.squeeze(axes.index(ax))
        axes = axes.replace(ax, "", 1)
    if a.ndim == 2:
        a = a[..., None]
    elif a.ndim == 3 and axes.index("Y") != 0:  # band-first (C, H, W)
        a = np.moveaxis(a, 0, -1)
    elif a.ndim != 3:
        raise SourceError(f"TIFF with axes {axes!r} and shape {a.shape} is not an image")
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        pass
    elif a.dtype.kind == "f":
        a = a.astype(np.float32)
    elif a.dtype.kind in "iu" and a.min() >= 0 and a.max() <= 65535:
        a = a.astype(np.uint16)
    else:
        raise SourceError(f"TIFF sample type {a.dtype} has no known range")
    return np.ascontiguousarray(a), {"mode": f"tiff-{a.dtype}-{a.shape[-1]}band", "size": [a.shape[1], a.shape[0]]}


def decode_audio(data: bytes | Path | str) -> tuple[np.ndarray, dict[str, Any]]:
    """Bytes or a path -> (C, T) float32 and meta (sample_rate, channels, frames)."""
    import soundfile as sf

    fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    a, sr = sf.read(fp, dtype="float32", always_2d=True)
    if a.shape[0] == 0:
        raise SourceError("audio has no frames")
    if not np.isfinite(a).all():
        raise SourceError("audio holds NaN or infinite samples")
    return np.ascontiguousarray(a.T), {"sample_rate": int(sr), "channels": int(a.shape[1]), "frames": int(a.shape[0])}


# -- conversions to what a codec expects ------------------------------------------------------------

def image_to_float(a: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 / uint16 / float -> float32 in [0, 1] (floats are clipped)."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as PIL's convert("L")


def match_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) -> (H, W, channels). Alpha is dropped (as PIL's convert('RGB') does, so latent and pixel
    pipelines see the same colours); gray is repeated; RGB -> gray uses ITU-R 601 luma; RGB -> 4 channels
    adds an opaque alpha. Other band counts (e.g. 6-band multispectral into an RGB codec) are refused."""
    c = a.shape[-1]
    if c == channels:
        return a
    one = np.float32(1.0) if a.dtype.kind == "f" else np.iinfo(a.dtype).max
    if c in (2, 4):  # LA, RGBA: drop alpha, then convert the colour part
        return match_channels(np.ascontiguousarray(a[..., : c - 1]), channels)
    if c == 1 and channels == 3:
        return np.repeat(a, 3, axis=-1)
    if c == 1 and channels == 4:
        return np.concatenate([np.repeat(a, 3, axis=-1), np.full_like(a, one)], axis=-1)
    if c == 3 and channels == 1:
        y = (a.astype(np.float32) @ _LUMA)[..., None]
        return y.astype(a.dtype) if a.dtype.kind == "f" else np.round(y).astype(a.dtype)
    if c == 3 and channels == 4:
        return np.concatenate([a, np.full_like(a[..., :1], one)], axis=-1)
    raise SourceError(f"cannot convert a {c}-channel image to the codec's {channels} channels")


def audio_to_codec(a: np.ndarray, sample_rate: int, channels: int, target_rate: int | None = None,
                   mix: str = "auto") -> np.ndarray:
    """(C, T) float -> (channels, T') float32 at `target_rate` (polyphase resampling, scipy).

    Channel handling, `mix`: 'auto' averages to mono for a 1-channel codec and repeats mono for more;
    'first' takes the first channels; 'error' refuses a mismatch.
    """
    c = a.shape[0]
    if c != channels:
        if mix == "error":
            raise SourceError(f"audio has {c} channels, codec expects {channels}")
        if mix == "first" and c >= channels:
            a = a[:channels]
        elif channels == 1:
            a = a.mean(axis=0, keepdims=True)
        elif c == 1:
            a = np.repeat(a, channels, axis=0)
        elif c > channels:
            a = a[:channels]
        else:
            raise SourceError(f"cannot convert {c}-channel audio to {channels} channels")
    if target_rate and target_rate != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(target_rate), int(sample_rate))
        a = resample_poly(a, target_rate // g, sample_rate // g, axis=-1)
    return np.ascontiguousarray(a, dtype=np.float32)


# -- folders ----------------------------------------------------------------------------------------

def _scan_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class subfolders (sorted) -> labels; files directly in `root` are unlabelled (-1) when there are
    classes. Hidden files and folders are ignored; every other file is an item (unsupported ones are
    reported when loaded)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [d.name for d in dirs]
    files: list[tuple[Path, int]] = []
    files += [(p, -1) for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")]
    for label, d in enumerate(dirs):
        for p in sorted(d.rglob("*")):
            rel = p.relative_to(d).parts
            if p.is_file() and not any(part.startswith(".") for part in rel):
                files.append((p, label))
    return classes, files


class _FolderSource(Source):
    suffixes: tuple[str, ...] = ()

    def __init__(self, root: str | Path, suffixes: Sequence[str] | None = None):
        self.root = Path(root)
        self.classes, self._files = _scan_folder(self.root)
        if suffixes is not None:
            self.suffixes = tuple(s.lower() for s in suffixes)
        self.items = [str(p) for p, _ in self._files]

    def item_bytes(self, i: int) -> int:
        return self._files[i][0].stat().st_size

    def _key(self, i: int) -> str:
        p = self._files[i][0]
        return make_key(i, str(p.relative_to(self.root).with_suffix("")))

    def load(self, i: int) -> Sample:
        path, label = self._files[i]
        if path.suffix.lower() not in self.suffixes:
            raise SourceError(f"unsupported file type {path.suffix or '(no suffix)'!r}")
        data, meta = self._decode(path)
        meta = {"source": str(path.relative_to(self.root)), **meta}
        return Sample(self._key(i), data, label, meta)


class ImageFolder(_FolderSource):
    """root/CLASS/**/IMAGE (labels = sorted class folder index), or a flat folder of images (label -1)."""

    kind = "image"
    suffixes = IMAGE_SUFFIXES

    def _decode(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        return decode_image(path, draft=self.draft)


class AudioFolder(_FolderSource):
    """root/CLASS/**/FILE read with soundfile (wav, flac, ogg, mp3, aiff, ...)."""

    kind = "audio"
    suffixes = AUDIO_SUFFIXES

    def _decode(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        return decode_audio(path)


# -- idx (MNIST / Fashion-MNIST) --------------------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzipped or not, into a numpy array."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise SourceError(f"{path}: corrupt gzip stream ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise SourceError(f"{path}: not an idx file (magic {raw[:4]!r})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if ndim == 0 or len(raw) < head:
        raise SourceError(f"{path}: idx header truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = dtype.itemsize * math.prod(shape)
    if len(raw) - head < need:
        raise SourceError(f"{path}: idx data truncated ({len(raw) - head} of {need} bytes for shape {shape})")
    return np.frombuffer(raw, dtype, math.prod(shape), head).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(root: str | Path = FASHION_MNIST_DIR, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) for split 'train' (60k) or 'test' (10k)."""
    prefix = {"train": "train", "test": "t10k", "t10k": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images, labels = (_find_idx(root, f"{prefix}-{what}") for what in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    x, y = read_idx(images), read_idx(labels).astype(np.int64)
    if x.shape[0] != y.shape[0]:
        raise SourceError(f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels")
    return x, y


def _find_idx(root: Path, stem: str) -> Path:
    for p in (root / stem, root / f"{stem}.gz"):
        if p.exists():
            return p
    raise FileNotFoundError(f"{root}: no {stem}[.gz] (Debian: apt-get install dataset-fashion-mnist)")


class IdxSource(Source):
    """Images (N, H, W) or (N, H, W, C) from an idx file, labels from a matching idx file (optional)."""

    kind = "image"

    def __init__(self, images: str | Path, labels: str | Path | None = None,
                 classes: Sequence[str] | None = None):
        self.path = Path(images)
        self.x = read_idx(images)
        if self.x.ndim not in (3, 4):
            raise SourceError(f"{images}: idx array of shape {self.x.shape} is not (N, H, W[, C])")
        self.y = read_idx(labels).astype(np.int64).reshape(-1) if labels is not None else None
        if self.y is not None and len(self.y) != len(self.x):
            raise SourceError(f"{images} has {len(self.x)} images but {labels} has {len(self.y)} labels")
        n_classes = int(self.y.max()) + 1 if self.y is not None and len(self.y) else 0
        self.classes = list(classes) if classes is not None else [str(c) for c in range(n_classes)]
        self.items = [f"{self.path}[{i}]" for i in range(len(self.x))]

    @classmethod
    def fashion_mnist(cls, root: str | Path = FASHION_MNIST_DIR, split: str = "train") -> "IdxSource":
        prefix = "train" if split == "train" else "t10k"
        root = Path(root)
        return cls(_find_idx(root, f"{prefix}-images-idx3-ubyte"), _find_idx(root, f"{prefix}-labels-idx1-ubyte"),
                   FASHION_MNIST_CLASSES)

    def item_bytes(self, i: int) -> int:
        """The file's size shared over its items (idx.gz is compressed as a whole)."""
        return round(self.path.stat().st_size / max(1, len(self.x)))

    def load(self, i: int) -> Sample:
        a = self.x[i]
        a = a[..., None] if a.ndim == 2 else a
        if a.dtype not in (np.uint8, np.uint16):
            a = a.astype(np.float32)
        label = int(self.y[i]) if self.y is not None else -1
        return Sample(make_key(i), np.ascontiguousarray(a), label,
                      {"source": f"{self.path.name}[{i}]", "size": [int(a.shape[1]), int(a.shape[0])]})


class TensorSource(Source):
    """In-memory samples: images uint8 (N, C, H, W) or audio float (N, C, T) in [-1, 1], integer labels.

    What a built-in benchmark hands the encode job; ``describe()`` carries a content fingerprint, so a
    job's identity (and a comparison's cache) changes with the data.
    """

    def __init__(self, x: Any, y: Any, classes: Sequence[str], kind: str = "image", name: str = "tensors",
                 sample_rate: int | None = None):
        import torch

        if len(x) != len(y):
            raise SourceError(f"{name}: {len(x)} samples but {len(y)} labels")
        self.x, self.y, self.kind, self.name = x, torch.as_tensor(y), kind, name
        self.classes, self.sample_rate = list(classes), sample_rate
        self.items = [f"{name}[{i}]" for i in range(len(x))]

    def load(self, i: int) -> Sample:
        t = self.x[i]
        a = t.permute(1, 2, 0).numpy() if self.kind == "image" else t.float().numpy()
        meta: dict[str, Any] = {"source": self.items[i]}
        if self.sample_rate:
            meta["sample_rate"] = self.sample_rate
        return Sample(make_key(i), np.ascontiguousarray(a), int(self.y[i]), meta)

    def fingerprint(self) -> str:
        """sha256 of shapes, dtypes and every byte (computed once)."""
        if getattr(self, "_fingerprint", None) is None:
            import hashlib

            h = hashlib.sha256(f"{tuple(self.x.shape)}{self.x.dtype}".encode())
            h.update(self.x.contiguous().numpy().tobytes())
            h.update(self.y.contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:32]
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "name": self.name, "fingerprint": self.fingerprint()}


# -- Hugging Face datasets --------------------------------------------------------------------------

_HF_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv"}


class HFSource(Source):
    """A `datasets.Dataset` (or a `load_from_disk` folder, or local data files) with an Image or Audio column.

    The column is read undecoded (bytes) and decoded here, so a corrupt row is skipped, not fatal.
    `column` defaults to the first Image/Audio feature; `label_column` to a ClassLabel feature or 'label'.
    """

    def __init__(self, dataset: Any, column: str | None = None, label_column: str | None = None,
                 split: str | None = None, key_column: str | None = None):
        import datasets

        ds = _open_hf(dataset, split) if not isinstance(dataset, (datasets.Dataset, datasets.DatasetDict)) else dataset
        if isinstance(ds, datasets.DatasetDict):
            if split is None:
                split = "train" if "train" in ds else next(iter(ds))
            ds = ds[split]
        feats = ds.features
        if column is None:
            column = next((k for k, f in feats.items() if isinstance(f, (datasets.Image, datasets.Audio))), None)
            if column is None:
                raise SourceError(f"dataset has no Image or Audio column (features: {list(feats)}); pass column=")
        if column not in feats:
            raise SourceError(f"dataset has no column {column!r} (columns: {list(feats)})")
        f = feats[column]
        self.kind = "audio" if isinstance(f, datasets.Audio) else "image"
        if isinstance(f, (datasets.Image, datasets.Audio)):
            ds = ds.cast_column(column, type(f)(decode=False))
        if label_column is None:
            label_column = next((k for k, g in feats.items() if isinstance(g, datasets.ClassLabel)),
                                "label" if "label" in feats else None)
        lf = feats.get(label_column) if label_column else None
        self.classes = list(lf.names) if isinstance(lf, datasets.ClassLabel) else []
        self.ds, self.column, self.label_column, self.key_column = ds, column, label_column, key_column
        self.name = str(dataset) if isinstance(dataset, (str, Path)) else "dataset"
        self.items = [f"{self.name}[{i}]" for i in range(len(ds))]

    def item_bytes(self, i: int) -> int:
        v = self.ds[i][self.column]
        b = v.get("bytes") if isinstance(v, dict) else v
        if isinstance(b, (bytes, bytearray)):
            return len(b)
        p = v.get("path") if isinstance(v, dict) else v
        return Path(p).stat().st_size if isinstance(p, str) and Path(p).exists() else 0

    def load(self, i: int) -> Sample:
        row = self.ds[i]
        data, meta, path = decode_hf_value(row[self.column], self.kind, self.draft)
        label = row.get(self.label_column, -1) if self.label_column else -1
        label = int(label) if isinstance(label, (int, np.integer)) else -1
        name = str(row[self.key_column]) if self.key_column else (Path(path).stem if path else "")
        return Sample(make_key(i, name), data, label, {"source": f"{self.name}[{i}]", **meta})


def decode_hf_value(v: Any, kind: str, draft: tuple[int, int] | None = None
                    ) -> tuple[np.ndarray, dict[str, Any], str | None]:
    """One undecoded HF Image/Audio value ({'bytes', 'path'}, bytes, a path, a PIL image, or a decoded
    audio dict {'array', 'sampling_rate'}) -> (data, meta, path)."""
    if v is None:
        raise SourceError("the value is empty")
    if isinstance(v, dict) and "array" in v:
        a = np.asarray(v["array"], np.float32)
        a = a[None] if a.ndim == 1 else a
        return a, {"sample_rate": int(v.get("sampling_rate") or 0), "channels": a.shape[0]}, v.get("path")
    path = None
    if isinstance(v, dict):
        path = v.get("path")
        src: Any = v.get("bytes") if v.get("bytes") is not None else path
        if src is None:
            raise SourceError("the value has neither bytes nor path")
    elif isinstance(v, (bytes, str)):
        src, path = v, v if isinstance(v, str) else None
    else:  # already decoded (e.g. a PIL image in a plain column)
        src = v
    if kind == "audio":
        data, meta = decode_audio(src)
    elif hasattr(src, "mode") and hasattr(src, "size"):
        data, meta = pil_to_array(src), {"mode": src.mode, "size": list(src.size)}
    else:
        data, meta = decode_image(src, name=path or "", draft=draft)
    return data, meta, path


def _open_hf(path: str | Path, split: str | None) -> Any:
    import datasets

    p = Path(path)
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()):
        return datasets.load_from_disk(str(p))
    files = sorted(str(f) for f in p.rglob("*") if f.suffix in _HF_BUILDERS) if p.is_dir() else [str(p)]
    builders = {_HF_BUILDERS.get(Path(f).suffix) for f in files}
    if not files or None in builders or len(builders) != 1:
        raise SourceError(f"{path}: not a saved dataset nor local data files of one type {sorted(_HF_BUILDERS)}")
    return datasets.load_dataset(builders.pop(), data_files={split or "train": files}, split=split or "train")


class HFStreamSource(Source):
    """A dataset on the Hugging Face hub, read in place: ``hf://datasets/ORG/NAME[@REV]``.

    datasets' ``load_dataset_builder`` resolves the split's data files (configs, README, conventions); its
    parquet files are then read through HfFileSystem with range requests (pyarrow), so nothing is
    downloaded whole: the footers give the row counts up front (what a job needs to split ranks and
    resume), and `load(i)` fetches only the row group holding row i (one kept per process). Not
    ``load_dataset(streaming=True)``: its iterator can only resume by re-reading every earlier row. A
    dataset stored otherwise is read from the hub's parquet conversion (``@refs%2Fconvert%2Fparquet``).
    Read it with ``--workers 0`` (the CLI does): each decoding worker would fetch every row group.
    """

    streamed = True

    def __init__(self, spec: str, split: str | None = None, column: str | None = None,
                 label_column: str | None = None, key_column: str | None = None, config: str | None = None):
        import datasets
        import fsspec
        import pyarrow.parquet as pq

        from ..codec.hub import parse_hub_name

        ref = parse_hub_name(spec)
        if ref.repo_type != "dataset":
            raise SourceError(f"{spec}: not an HF dataset name (hf://datasets/ORG/NAME)")
        builder = datasets.load_dataset_builder(ref.repo_id, config, revision=ref.revision,
                                                data_dir=ref.path or None)
        files_by_split = dict(builder.config.data_files or {})
        split = split or ("train" if "train" in files_by_split else next(iter(files_by_split), None))
        if split not in files_by_split:
            raise SourceError(f"{spec}: no split {split!r}; splits are {sorted(files_by_split)}")
        files = [str(f) for f in files_by_split[split]]
        if not files or not all(f.endswith(".parquet") for f in files):
            raise SourceError(f"{spec}: split {split!r} is not stored as parquet ({files[:2]}...); read the hub's "
                              f"conversion: hf://datasets/{ref.repo_id}@refs%2Fconvert%2Fparquet")
        self._files: list[tuple[str, Any, list[int]]] = []  # url, ParquetFile, first row of each row group
        self._starts: list[int] = []
        total, feats = 0, None
        for url in files:
            pf = pq.ParquetFile(fsspec.open(url, "rb", block_size=1 << 20).open())  # 1 MiB range reads
            self._starts.append(total)
            offsets, n = [], 0
            for g in range(pf.metadata.num_row_groups):
                offsets.append(n)
                n += pf.metadata.row_group(g).num_rows
            self._files.append((url, pf, offsets))
            total += n
            if feats is None:
                feats = datasets.Features.from_arrow_schema(pf.schema_arrow)
        self.features = feats or datasets.Features()
        if column is None:
            column = next((k for k, f in self.features.items() if isinstance(f, (datasets.Image, datasets.Audio))),
                          None)
            if column is None:
                raise SourceError(f"{spec}: no Image or Audio column (columns: {list(self.features)}); pass column=")
        if column not in self.features:
            raise SourceError(f"{spec}: no column {column!r} (columns: {list(self.features)})")
        self.kind = "audio" if isinstance(self.features[column], datasets.Audio) else "image"
        if label_column is None:
            label_column = next((k for k, g in self.features.items() if isinstance(g, datasets.ClassLabel)),
                                "label" if "label" in self.features else None)
        lf = self.features.get(label_column) if label_column else None
        self.classes = list(lf.names) if isinstance(lf, datasets.ClassLabel) else []
        self.column, self.label_column, self.key_column = column, label_column, key_column
        self.name, self.split = spec, split
        self.items = [f"{spec}[{i}]" for i in range(total)]
        self._group: tuple[tuple[int, int], dict[str, list]] | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dataset": self.name, "split": self.split}

    def _row(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self.items):
            raise IndexError(i)
        f = bisect.bisect_right(self._starts, i) - 1
        url, pf, offsets = self._files[f]
        g = bisect.bisect_right(offsets, i - self._starts[f]) - 1
        if self._group is None or self._group[0] != (f, g):
            cols = [c for c in (self.column, self.label_column, self.key_column) if c]
            self._group = ((f, g), pf.read_row_group(g, columns=cols).to_pydict())
        rows = self._group[1]
        k = i - self._starts[f] - offsets[g]
        return {c: v[k] for c, v in rows.items()}

    def item_bytes(self, i: int) -> int:
        v = self._row(i)[self.column]
        b = v.get("bytes") if isinstance(v, dict) else v
        return len(b) if isinstance(b, (bytes, bytearray)) else 0

    def load(self, i: int) -> Sample:
        row = self._row(i)
        v = row[self.column]
        if isinstance(v, dict) and v.get("bytes") is None:
            raise SourceError("the value has no embedded bytes (a path into the repo is not followed)")
        data, meta, path = decode_hf_value(v, self.kind, self.draft)
        label = row.get(self.label_column, -1) if self.label_column else -1
        label = int(label) if isinstance(label, (int, np.integer)) else -1
        name = str(row[self.key_column]) if self.key_column else (Path(path).stem if path else "")
        return Sample(make_key(i, name), data, label, {"source": f"{self.name}[{i}]", **meta})


# -- existing WebDataset tars -----------------------------------------------------------------------

class WdsSource(Source):
    """Samples from uncompressed WebDataset tars (KEY.jpg|png|webp|…|wav|flac + KEY.cls / KEY.json).

    Members are indexed once (offsets), so items load in any order; a truncated tar keeps the samples
    before the damage and reports the rest. Compressed tars are reported: decompress them first.
    """

    def __init__(self, tars: str | Path | Sequence[str | Path], kind: str | None = None):
        self.skipped: list[Skipped] = []
        self.origin: dict[Path, str] = {}  # cached copy -> the URL it came from
        paths = _expand_tars(tars, self.origin)
        self._index: list[tuple[Path, str, dict[str, tuple[int, int]]]] = []
        for p in paths:
            self._index += self._scan(p)
        kinds = {_member_kind(m) for _, _, ms in self._index for m in ms} - {None}
        self.kind = kind or ("audio" if kinds == {"audio"} else "image")
        self.classes = []
        self.items = [f"{self.origin.get(p, p)}#{k}" for p, k, _ in self._index]

    def _scan(self, path: Path) -> list[tuple[Path, str, dict[str, tuple[int, int]]]]:
        from .remote import is_pickle, unsafe_name

        where = self.origin.get(path, str(path))
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00":
            self.skipped.append(Skipped(where, "compressed tar: decompress it first (random access needed)"))
            return []
        groups: dict[str, dict[str, tuple[int, int]]] = {}
        try:
            with tarfile.open(path, "r:") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    why = unsafe_name(m.name) or ("pickled member, never unpickled" if is_pickle(m.name) else None)
                    if why:  # members are read by offset, never extracted; unsafe ones are not read at all
                        self.skipped.append(Skipped(f"{where}#{m.name}", f"refused: {why}"))
                        continue
                    name = m.name.rsplit("/", 1)[-1]
                    prefix = m.name[: len(m.name) - len(name)]
                    if "." not in name:
                        continue
                    key, ext = name.split(".", 1)
                    groups.setdefault(prefix + key, {})[ext.lower()] = (m.offset_data, m.size)
        except (tarfile.TarError, OSError, EOFError) as e:
            self.skipped.append(Skipped(where, f"unreadable after {len(groups)} samples: {e}"))
        return [(path, k, g) for k, g in groups.items()]

    def item_bytes(self, i: int) -> int:
        return sum(size for _, size in self._index[i][2].values())

    def load(self, i: int) -> Sample:
        path, key, members = self._index[i]

        def read(ext: str) -> bytes:
            off, size = members[ext]
            with open(path, "rb") as f:
                f.seek(off)
                b = f.read(size)
            if len(b) != size:
                raise SourceError(f"{ext} truncated")
            return b

        ext = next((e for e in members if _member_kind(e) == self.kind), None)
        if ext is None:
            raise SourceError(f"no {self.kind} member (has {sorted(members)})")
        if self.kind == "audio":
            data, meta = decode_audio(read(ext))
        else:
            data, meta = decode_image(read(ext), name=f"x.{ext}", draft=self.draft)
        label = -1
        for lab in ("cls", "label", "cls2"):
            if lab in members:
                try:
                    label = int(read(lab).decode().strip())
                except ValueError:
                    pass
                break
        extra = {}
        if "json" in members:
            try:
                extra = {"source_json": json.loads(read("json"))}
            except ValueError:
                pass
        name = self.origin[path].rsplit("/", 1)[-1] if path in self.origin else path.name
        return Sample(make_key(i, key), data, label, {"source": f"{name}#{key}", **meta, **extra})


def _member_kind(ext: str) -> str | None:
    last = "." + ext.rsplit(".", 1)[-1]
    if last in IMAGE_SUFFIXES:
        return "image"
    if last in AUDIO_SUFFIXES:
        return "audio"
    return None


def _expand_tars(tars: str | Path | Sequence[str | Path], origin: dict[Path, str] | None = None) -> list[Path]:
    """Local tar paths of a folder, a path, a brace/glob pattern or a list; URLs (https, s3, hf, pipe, brace
    patterns of them) are fetched into walloc-cdl's cache first (random access needs a seekable file),
    `origin` mapping each cached copy back to its URL."""
    from .remote import expand, fetch, is_url

    if any(is_url(str(t)) for t in ([tars] if isinstance(tars, (str, Path)) else tars)):
        out = []
        for url in expand([str(t) for t in ([tars] if isinstance(tars, (str, Path)) else tars)]):
            p = fetch(url) if is_url(url) else Path(url)
            if origin is not None and is_url(url):
                origin[p] = url
            out.append(p)
        return out
    if isinstance(tars, (str, Path)):
        p = Path(tars)
        if p.is_dir():
            return sorted(p.glob("*.tar"))
        if any(c in str(tars) for c in "{*?["):
            import braceexpand  # webdataset dependency

            out: list[Path] = []
            for pattern in braceexpand.braceexpand(str(tars)):
                out += sorted(Path(pattern).parent.glob(Path(pattern).name)) if any(c in pattern for c in "*?[") \
                    else [Path(pattern)]
            return out
        return [p]
    return [Path(t) for t in tars]


# -- dispatch ---------------------------------------------------------------------------------------

def open_source(spec: str | Path, kind: str | None = None, **kwargs: Any) -> Source:
    """Guess the reader for `spec`: an idx(.gz) file (labels found next to it), .tar shards, a saved HF
    dataset or HF data files, else a folder of images or (kind='audio', or audio files inside) audio.
    URLs: ``hf://datasets/ORG/NAME[@REV]`` is read in place (`HFStreamSource`, `split=` picks the split);
    tars and brace patterns of them over https://, s3://, hf:// or pipe: are fetched into the cache."""
    s = str(spec)
    from .remote import is_url

    if is_url(s):  # https://, s3://, pipe: tars (brace patterns too); hf://datasets/ORG/NAME or its tars
        if s.startswith("hf://") and not s.endswith(".tar") and "{" not in s:
            split = kwargs.pop("split", None)
            return HFStreamSource(s, split=split, **kwargs)
        return WdsSource(s, kind=kind)
    p = Path(s)
    if not p.exists() and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s):  # a hub dataset id, as users type it
        try:
            return HFStreamSource(f"hf://datasets/{s}", split=kwargs.pop("split", None), **kwargs)
        except Exception as e:  # noqa: BLE001 - say both readings
            raise SourceError(f"{s}: no such local path, and not readable as the hub dataset hf://datasets/{s} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if "idx" in p.name and p.is_file() and "images" in p.name:
        stem = p.name.replace("images-idx3", "labels-idx1").removesuffix(".gz")
        lab = next((q for q in (p.with_name(stem), p.with_name(stem + ".gz")) if q.exists()), None)
        classes = FASHION_MNIST_CLASSES if "fashion" in str(p.resolve()).lower() else None
        return IdxSource(p, lab, classes)
    if p.is_file() and (p.name.endswith("ubyte") or p.name.endswith("ubyte.gz")):
        return IdxSource(p)
    if s.endswith(".tar") or "{" in s or (p.is_dir() and any(p.glob("*.tar")) and not any(p.glob("*/"))):
        return WdsSource(s, kind=kind)
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()) \
            or p.suffix in _HF_BUILDERS:
        return HFSource(s, **kwargs)
    if kind == "audio":
        return AudioFolder(p)
    if kind == "image":
        return ImageFolder(p)
    if p.is_dir():
        first = next((f for f in sorted(p.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES + AUDIO_SUFFIXES), None)
        if first is not None and first.suffix.lower() in AUDIO_SUFFIXES:
            return AudioFolder(p)
        return ImageFolder(p)
    raise SourceError(f"{spec}: not a folder, idx file, tar shard, HF dataset (hf://datasets/ORG/NAME) or URL")
