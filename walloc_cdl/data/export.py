"""``walloc-cdl export``: a latent dataset (``_info.json`` + shards) as parquet, the way upstream WaLLoC
publishes pre-encoded sets, for ``datasets.load_dataset`` and the hub.

    walloc-cdl export latents/photos photos-parquet                      # data/train-00000-of-00001.parquet ...
    walloc-cdl export s3://bucket/latents photos-parquet --push-to-hub me/photos-latents

Columns: ``image`` (HF Image: the lossless WebP/PNG latent tile, bytes as stored; ``.npy`` latents are
re-encoded as lossless WebP), ``cls`` (ClassLabel named from ``_info.json``'s classes, else int64), ``key``
and ``json`` (the sample's metadata). Tiles carry our header, so ``walloc_cdl.decode_latent(row["image"]
["bytes"])`` reads them with no side information, and when the channels tile without padding (12 = 3·2²,
243 = 3·9²) they are also exactly walloc's ``latent_to_pil(z, n_bits, C=3)`` images. A README with a
``configs`` block maps splits to files; ``codec.json`` holds the codec block. Read it back with
``LatentDataset(OUT, split, latent_column="image")``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

from .remote import join, safe_member, with_openers
from .shards import LATENT_KEYS, dumps, read_info


def _raw_samples(urls: Sequence[str]) -> Iterator[dict]:
    import webdataset as wds

    yield from wds.DataPipeline(wds.SimpleShardList(list(urls)), with_openers,
                                wds.tarfile_to_samples(select_files=safe_member))


def _tile(sample: dict, n_bits: int) -> bytes:
    from ..codec.containers import decode_latent, encode_latent

    for key in ("latent.webp", "latent.png"):
        if key in sample:
            return bytes(sample[key])
    if "latent.npy" in sample:
        if n_bits > 8:
            raise ValueError(f"sample {sample['__key__']!r}: {n_bits}-bit latents do not fit 8-bit image tiles")
        return encode_latent(decode_latent(bytes(sample["latent.npy"])), n_bits, "webp")
    raise KeyError(f"sample {sample.get('__key__')!r} has no latent ({list(LATENT_KEYS)})")


def _card(info: dict[str, Any], splits: Sequence[str]) -> str:
    codec = info.get("codec", {})
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    lines += [f"  - split: {s}\n    path: data/{s}-*" for s in splits]
    lines += ["---", "", f"# WaLLoC latents ({codec.get('name') or 'codec'})", "",
              "Lossless latent tiles written by walloc-cdl (`walloc-cdl export`). Column `image` holds one tile "
              "per sample, `cls` the label.", "", "```python",
              "import walloc_cdl",
              "z = walloc_cdl.decode_latent(row['image']['bytes'])   # the tile describes its own layout",
              "```", "", "Codec block (`codec.json`):", "", "```json", json.dumps(codec, indent=1), "```", ""]
    return "\n".join(lines)


def export_parquet(root: str | Path, out: str | Path, splits: Sequence[str] | None = None,
                   rows_per_file: int = 10000, rows_per_group: int = 500,
                   push_to_hub: str | None = None) -> dict[str, Any]:
    """Write `root`'s splits as ``out/data/SPLIT-0000k-of-0000n.parquet`` (+ README.md, codec.json); returns
    {split: rows}. `push_to_hub="ORG/NAME"` then uploads the folder to that dataset repo in one commit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .parquet import latent_features

    info = read_info(root)
    splits = list(splits or info["splits"])
    bits = int(info.get("codec", {}).get("latent_bits") or info.get("codec", {}).get("config", {}).get("latent_bits")
               or 8)
    classes = list(info.get("classes") or [])
    features = latent_features(classes)
    schema = features.arrow_schema
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split in splits:
        if split not in info["splits"]:
            raise KeyError(f"{root}: no split {split!r}; splits are {sorted(info['splits'])}")
        total = int(info["splits"][split]["num_samples"])
        n_files = max(1, math.ceil(total / rows_per_file))
        for old in (out / "data").glob(f"{split}-*.parquet"):
            old.unlink()
        urls = [join(root, f) for f in info["splits"][split]["filenames"]]
        writer, rows, k, batch = None, 0, 0, []

        def flush() -> None:
            nonlocal batch
            if batch:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                batch = []

        for s in _raw_samples(urls):
            if writer is None or (rows and rows % rows_per_file == 0):
                flush()
                if writer is not None:
                    writer.close()
                    k += 1
                writer = pq.ParquetWriter(str(out / "data" / f"{split}-{k:05d}-of-{n_files:05d}.parquet"), schema)
            label = int(s["cls"]) if "cls" in s else -1
            if classes and not 0 <= label < len(classes):
                raise ValueError(f"sample {s['__key__']!r}: label {label} outside the {len(classes)} classes")
            meta = s.get("json", b"{}")
            batch.append({"image": {"bytes": _tile(s, bits), "path": None}, "cls": label, "key": s["__key__"],
                          "json": meta.decode() if isinstance(meta, (bytes, bytearray)) else dumps(meta).decode()})
            rows += 1
            if len(batch) >= rows_per_group:
                flush()
        if writer is not None:
            flush()
            writer.close()
        counts[split] = rows
    (out / "README.md").write_text(_card(info, splits))
    (out / "codec.json").write_text(json.dumps(info.get("codec", {}), indent=1, sort_keys=True) + "\n")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push_to_hub, repo_type="dataset", exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=push_to_hub, repo_type="dataset",
                          commit_message=f"walloc-cdl export of {info.get('codec', {}).get('name') or root}")
    return counts
