"""Encode on the fly: augmented pixel/audio batches -> latents on the same device, inside a training loop.

    enc = OnTheFlyEncoder(load_codec("rgb-16x"), dequantize=True).to("cuda")
    for x, y in pixel_loader:                      # uint8 (B, 3, H, W) or float in [0, 1]
        x, y = mixup(x.cuda(non_blocking=True), y)  # any GPU augmentation, MixUp included
        z = enc(x)                                 # (B, 12, H/8, W/8), no entropy coding, no host transfer
        loss = criterion(model(z), y)

The codec is frozen (no gradients, always eval). The module only maps the input range to the codec's
[-0.5, 0.5], pads sizes to 2^J when asked, and calls ``codec.encode`` (the fast path sits behind it).

For Hugging Face users, `encode_hf_dataset` adds a latent column through ``datasets.map(batched=True)``::

    ds = encode_hf_dataset(ds, codec, column="image", resize=64, crop="center", device="cuda")
    ds.with_format("torch")["latent"]              # int8 (C, h, w) per row
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..codec.model import to_codec_range
from ..codec.containers import pad_to_multiple


class OnTheFlyEncoder(nn.Module):
    """Frozen WaLLoC encoder as a module: batch (uint8 or float) -> latents, on the batch's device.

    value_range: what float input spans; default (0, 1) for images and (-1, 1) for audio. uint8 input
    always means pixel/255. quantize: round (what a pre-encoded dataset stores) or keep the companded
    reals. dequantize: map through the codec's ToNormal, as its decoder does first (a better-scaled
    model input). pad: pad sizes that are not multiples of 2^J (reflect) instead of raising.
    """

    def __init__(self, codec: nn.Module, value_range: tuple[float, float] | None = None, quantize: bool = True,
                 dequantize: bool = False, pad: bool = False):
        super().__init__()
        self.codec = codec.eval().requires_grad_(False)
        self.value_range = value_range or ((0.0, 1.0) if codec.ndim == 2 else (-1.0, 1.0))
        self.quantize, self.dequantize, self.pad = quantize, dequantize, pad
        self.multiple = 2 ** codec.J

    def train(self, mode: bool = True) -> "OnTheFlyEncoder":
        super().train(mode)
        self.codec.eval()  # frozen: a parent's .train() must not switch the codec
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad and any(s % self.multiple for s in x.shape[2:]):
            x = self._unit(x) if x.dtype == torch.uint8 else x
            x, _ = pad_to_multiple(x, self.multiple, "reflect", spatial_dims=x.ndim - 2)
        if x.dtype != torch.uint8:
            x = self._unit(x)
        z = self.codec.encode(x, quantize=self.quantize)
        return self.codec.decoder[0](z) if self.dequantize else z

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        """-> float in [-0.5, 0.5] (uint8 as pixel/255); float input is mapped from value_range."""
        if x.dtype == torch.uint8:
            return to_codec_range(x)
        lo, hi = self.value_range
        if (lo, hi) == (-0.5, 0.5):
            return x
        return (x.float() - lo) / (hi - lo) - 0.5

    def extra_repr(self) -> str:
        return f"value_range={self.value_range}, quantize={self.quantize}, dequantize={self.dequantize}"


def encode_hf_dataset(ds: Any, codec: nn.Module, column: str | None = None, *, batch_size: int = 64,
                      device: str | torch.device = "cpu", output_column: str = "latent",
                      remove_columns: bool = True, resize: int | None = None, crop: str = "none",
                      crop_size: tuple[int, int] | None = None, sample_rate: int | None = None,
                      num_proc: int | None = None, **map_kwargs: Any) -> Any:
    """Add `output_column` (int8/int16 latents, (C, h, w) or (C, T)) to a `datasets.Dataset` via
    ``ds.map(batched=True)``, with the same conversions as `walloc-cdl encode` (channels, resize/crop,
    resampling, padding to 2^J). Rows that fail to decode get None. With `remove_columns` the image/audio
    column is dropped. Batches whose inputs differ in size are encoded in equal-size groups."""
    import datasets

    from .encode import EncodeOptions, Preparer
    from .sources import Sample, SourceError, decode_hf_value

    feats = ds.features
    if column is None:
        column = next((k for k, f in feats.items() if isinstance(f, (datasets.Image, datasets.Audio))), None)
        if column is None:
            raise ValueError(f"dataset has no Image or Audio column (features: {list(feats)}); pass column=")
    kind = "audio" if isinstance(feats.get(column), datasets.Audio) or codec.ndim == 1 else "image"
    if isinstance(feats.get(column), (datasets.Image, datasets.Audio)):
        ds = ds.cast_column(column, type(feats[column])(decode=False))
    opts = EncodeOptions(resize=resize, crop=crop, crop_size=crop_size, sample_rate=sample_rate)
    opts.check(kind)
    prep = Preparer(codec.channels, codec.J, kind, opts)
    dtype = np.int8 if codec.latent_bits <= 8 else np.int16
    device = torch.device(device)

    def fn(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        enc = codec.to(device).eval()
        xs: list[torch.Tensor | None] = []
        for v, i in zip(batch[column], indices):
            try:
                data, meta, _ = decode_hf_value(v, kind)
                xs.append(prep(Sample("k", data, -1, meta), i)[0].x)
            except (SourceError, OSError, ValueError, RuntimeError):
                xs.append(None)
        out: list[np.ndarray | None] = [None] * len(xs)
        by_shape: dict[tuple, list[int]] = {}
        for k, x in enumerate(xs):
            if x is not None:
                by_shape.setdefault((tuple(x.shape), x.dtype), []).append(k)
        with torch.no_grad():
            for ks in by_shape.values():
                z = enc.encode(torch.stack([xs[k] for k in ks]).to(device)).to("cpu", torch.int16).numpy()
                for k, zk in zip(ks, z):
                    out[k] = zk.astype(dtype)
        return {output_column: out}

    remove = [column] if remove_columns else None
    return ds.map(fn, batched=True, batch_size=batch_size, with_indices=True, remove_columns=remove,
                  num_proc=num_proc, **map_kwargs)
