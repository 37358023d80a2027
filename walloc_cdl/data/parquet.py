"""Latent datasets stored as parquet, as upstream WaLLoC publishes them on the hub: an image column of
lossless WebP/PNG latent tiles (walloc's ``latent_to_pil`` layout) and a class column.

    ds = LatentDataset("hf://datasets/danjacobellis/inet1k_288_walloc", "train", latent_column="image",
                       codec="RGB_243c_J4_nf8_v1.0.2", batch_size=64, crop=(16, 16))

Tiles without our header need the layout (latent channels N, bits, latent channels per pixel C); `codec`
gives it: upstream's names ``RGB_[Li_]<N>c_J<J>_nf<bits>[...]`` are read as such (no download), anything
else is what :func:`walloc_cdl.load_codec` takes (a shipped name, a file, ``hf://ORG/REPO/NAME``).
Tiles that carry our header (``walloc-cdl export``) need no codec. The split's files come from
datasets' ``load_dataset_builder`` (hub repos and local folders alike) and are read row group by row
group (HfFileSystem range requests on the hub), each worker / rank taking whole files.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Iterator, Mapping

UPSTREAM_NAME = re.compile(r"^(?:hf://.*/)?(?P<kind>RGB|Stereo|Gray|Mono)_(?:Li_)?(?P<N>\d+)c_J(?P<J>\d+)"
                           r"_nf(?P<bits>\d+)")


def tile_layout(codec: Any) -> tuple[int, int, int]:
    """(N latent channels, n_bits, C latent channels per pixel) of a codec, codec config, codec block or name."""
    if isinstance(codec, str):
        m = UPSTREAM_NAME.match(codec)
        if m:
            N, bits = int(m["N"]), int(m["bits"])
        else:
            from ..codec.checkpoints import load_codec

            c = load_codec(codec)
            N, bits = int(c.latent_dim), int(c.latent_bits)
    elif isinstance(codec, Mapping):
        cfg = codec.get("config", codec)
        N, bits = int(cfg["latent_dim"]), int(codec.get("latent_bits") or cfg["latent_bits"])
    else:
        N, bits = int(codec.latent_dim), int(codec.latent_bits)
    for C in (3, 1, 4):  # walloc's examples tile RGB codecs' latents with C=3
        if N % C == 0 and math.isqrt(N // C) ** 2 == N // C:
            return N, bits, C
    raise ValueError(f"{N} latent channels do not tile as C * n**2 with C in (1, 3, 4); pass layout=(N, bits, C)")


def parquet_files(root: str, split: str) -> list[str]:
    """The split's parquet files: a .parquet path/URL itself, else datasets' resolution of a hub repo
    (``hf://datasets/ORG/NAME[@REV][/DIR]``) or a local folder (``data/train-*.parquet``, README configs)."""
    import datasets

    from ..codec.hub import is_hub_name, parse_hub_name
    from .remote import is_url

    if root.endswith(".parquet"):
        return [root]
    if is_hub_name(root):
        ref = parse_hub_name(root)
        builder = datasets.load_dataset_builder(ref.repo_id, revision=ref.revision, data_dir=ref.path or None)
    elif is_url(root):
        raise ValueError(f"{root}: list the .parquet URLs (urls=...) for a {root.split(':')[0]}:// folder")
    else:
        builder = datasets.load_dataset_builder(root)
    files = dict(builder.config.data_files or {})
    if split not in files:
        raise KeyError(f"{root}: no split {split!r}; splits are {sorted(files)}")
    out = [str(f) for f in files[split]]
    if not all(f.endswith(".parquet") for f in out):
        raise ValueError(f"{root}: split {split!r} is not parquet ({out[:2]})")
    return out


def open_parquet(url: str) -> Any:
    """A pyarrow ParquetFile: local, or over fsspec (hf://, s3://) in 1 MiB range reads; http(s) is fetched."""
    import fsspec
    import pyarrow.parquet as pq

    from .remote import fetch, is_url, scheme

    if not is_url(url):
        return pq.ParquetFile(url)
    if scheme(url) in ("http", "https"):
        return pq.ParquetFile(str(fetch(url)))
    return pq.ParquetFile(fsspec.open(url, "rb", block_size=1 << 20).open())


class ParquetLatents:
    """A webdataset pipeline stage: {"url": parquet file} -> samples {"__key__", "latent", "cls", "json"}."""

    def __init__(self, latent_column: str, label_column: str | None, layout: tuple[int, int, int] | None,
                 key_column: str | None = None, batch_rows: int = 256):
        self.latent_column, self.label_column, self.key_column = latent_column, label_column, key_column
        self.layout, self.batch_rows = layout, batch_rows

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        from .remote import register

        register()
        for item in src:
            url = item["url"]
            pf = open_parquet(url)
            cols = [c for c in (self.latent_column, self.label_column, self.key_column) if c]
            row = 0
            for batch in pf.iter_batches(batch_size=self.batch_rows, columns=cols):
                d = batch.to_pydict()
                for k in range(batch.num_rows):
                    yield self.sample(url, row, {c: d[c][k] for c in cols})
                    row += 1

    def sample(self, url: str, row: int, values: Mapping[str, Any]) -> dict:
        from ..codec.containers import _open_image, tile_to_latent

        v = values[self.latent_column]
        data = v.get("bytes") if isinstance(v, dict) else v
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(f"{url}[{row}]: column {self.latent_column!r} holds no image bytes")
        with _open_image(bytes(data), f"{url}[{row}]") as img:
            z = tile_to_latent(img, self.layout)
        label = values.get(self.label_column, -1) if self.label_column else -1
        key = str(values[self.key_column]) if self.key_column else f"{row:08d}"
        return {"__key__": key, "latent": z, "cls": int(label if label is not None else -1),
                "json": {"source": url, "row": row}}


def open_parquet_latents(root: str, split: str, latent_column: str, codec: Any = None,
                         label_column: str | None = None) -> tuple[dict[str, Any], list[str], ParquetLatents]:
    """What LatentDataset needs of a parquet latent set: an `_info.json`-like dict (num_samples, codec
    latent_bits, classes), the file list, and the stage that reads them."""
    import datasets

    files = parquet_files(str(root), split)
    first = open_parquet(files[0])
    feats = datasets.Features.from_arrow_schema(first.schema_arrow)
    if latent_column not in feats:
        raise KeyError(f"{files[0]}: no column {latent_column!r} (columns: {list(feats)})")
    if label_column is None:
        label_column = next((c for c in ("cls", "label") if c in feats),
                            next((k for k, f in feats.items() if isinstance(f, datasets.ClassLabel)), None))
    lf = feats.get(label_column) if label_column else None
    layout = tile_layout(codec) if codec is not None else None
    n = sum(open_parquet(f).metadata.num_rows if i else first.metadata.num_rows for i, f in enumerate(files))
    block: dict[str, Any] = {"name": str(codec) if isinstance(codec, str) else "", "container": "parquet"}
    if layout is not None:
        block.update(latent_bits=layout[1], config={"latent_dim": layout[0], "latent_bits": layout[1]})
    info = {"splits": {split: {"name": split, "num_samples": n, "filenames": files}}, "codec": block,
            "classes": list(lf.names) if isinstance(lf, datasets.ClassLabel) else []}
    return info, files, ParquetLatents(latent_column, label_column, layout)


def latent_features(classes: list[str] | None) -> Any:
    """The HF features of an exported latent set: image tiles, class label, key, JSON metadata."""
    import datasets

    label = datasets.ClassLabel(names=list(classes)) if classes else datasets.Value("int64")
    return datasets.Features({"image": datasets.Image(), "cls": label, "key": datasets.Value("string"),
                              "json": datasets.Value("string")})
