"""Training batches held entirely on the training device: random image crops and random audio segments.

A codec sees only small crops, so the whole corpus (tens of photos, minutes of audio) is decoded once
into device memory and every batch is sliced there: no loader workers, no host-device copies per step.
Items come from :func:`walloc_cdl.data.sources.open_source` (image folder, HF dataset, WebDataset
tars, idx files, audio folder), so anything pre-encoding reads, training reads too.

Usage::

    data = load_items(["photos/"], kind="image", channels=3, device="cuda")
    sampler = CropSampler(data, crop=256, min_scale=0.5)     # several specs: pass sources= to balance them
    x = sampler.sample(32)            # (32, 3, 256, 256) in [-0.5, 0.5]
"""
from __future__ import annotations

import base64
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.sources import Sample, Skipped, audio_to_codec, image_to_float, match_channels, open_source


def load_items(specs: Sequence[str], kind: str, channels: int, device: str | torch.device = "cpu",
               sample_rate: int = 44100, max_side: int | None = None, limit: int | None = None,
               progress: bool = True, sources: list[int] | None = None) -> list[torch.Tensor]:
    """Every readable item of ``specs`` as a device tensor: images (C, H, W) uint8, audio (C, T) float16.

    ``sources``, if given, is filled with each item's index into ``specs`` (for :func:`balanced_weights`).

    Images are converted to the codec's channel count (gray <-> RGB) and, with ``max_side``, shrunk
    (antialiased) so the longer side fits; audio is resampled to ``sample_rate`` and kept in [-1, 1].
    Unreadable items are skipped and reported once at the end.
    """
    if kind not in ("image", "audio"):
        raise ValueError(f"kind must be 'image' or 'audio', got {kind!r}")
    out: list[torch.Tensor] = []
    skipped: list[Skipped] = []
    for k, spec in enumerate(specs):
        src = open_source(spec, kind=kind)
        if src.kind != kind:
            raise ValueError(f"{spec}: holds {src.kind} items, but this codec trains on {kind}")
        n = len(src) if limit is None else min(len(src), limit)
        for i in tqdm(range(n), desc=f"loading {spec}", disable=not progress, leave=False):
            s = src.try_load(i)
            if isinstance(s, Skipped):
                skipped.append(s)
                continue
            out.append(_to_tensor(s, kind, channels, sample_rate, max_side).to(device))
            if sources is not None:
                sources.append(k)
    if skipped:
        print(f"skipped {len(skipped)} unreadable items, e.g. {skipped[0].source}: {skipped[0].reason}")
    if not out:
        raise ValueError(f"no readable {kind} items in {list(specs)}")
    return out


def _to_tensor(s: Sample, kind: str, channels: int, sample_rate: int, max_side: int | None) -> torch.Tensor:
    if kind == "audio":
        a = audio_to_codec(s.data, s.meta.get("sample_rate", sample_rate), channels, target_rate=sample_rate)
        return torch.from_numpy(a).to(torch.float16)
    a = match_channels(s.data, channels)
    if a.dtype != np.uint8:
        a = np.round(image_to_float(a) * 255).astype(np.uint8)
    t = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)
    if max_side and max(t.shape[1:]) > max_side:
        scale = max_side / max(t.shape[1:])
        size = [max(1, round(d * scale)) for d in t.shape[1:]]
        t = F.interpolate(t[None].float(), size=size, mode="bicubic", antialias=True)[0]
        t = t.round().clamp(0, 255).to(torch.uint8)
    return t.contiguous()


def balanced_weights(sizes: torch.Tensor, sources: list[int]) -> torch.Tensor:
    """Sampling weights giving every source the same share, and items within one a share by ``sizes``.

    So 35 photos and 20,000 Fashion-MNIST images passed together are each half of the batches.
    """
    src = torch.tensor(sources)
    w = sizes.double().clone()
    for k in src.unique():
        m = src == k
        w[m] = w[m] / w[m].sum()
    return (w / w.sum()).float()


class _Sampler:
    """Shared by the samplers: a private generator, so validation draws leave the training stream as is."""

    gen: torch.Generator

    def sample(self, batch: int) -> torch.Tensor:
        raise NotImplementedError

    def fixed(self, n: int, seed: int = 1234) -> torch.Tensor:
        """A reproducible batch (validation, previews) that does not disturb the training stream."""
        state = self.gen.get_state()
        self.gen.manual_seed(seed)
        x = self.sample(n)
        self.gen.set_state(state)
        return x

    def state_dict(self) -> dict[str, Any]:
        """Where the training stream stands, as JSON (a checkpoint holds it, so a resumed run draws on)."""
        return {"gen": base64.b64encode(self.gen.get_state().numpy().tobytes()).decode()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(torch.frombuffer(bytearray(base64.b64decode(state["gen"])), dtype=torch.uint8))


class CropSampler(_Sampler):
    """Random ``crop``² crops with random flips and, with ``min_scale < 1``, random downscaling.

    A crop of side ``crop / s`` (s uniform in [min_scale, 1]) is resized to ``crop`` (antialiased), so
    large photos are seen at several scales.  Images smaller than the window are padded by reflection.
    """

    def __init__(self, images: list[torch.Tensor], crop: int, min_scale: float = 1.0, seed: int = 0,
                 sources: list[int] | None = None):
        self.images = images
        self.crop = crop
        self.min_scale = min_scale
        self.gen = torch.Generator().manual_seed(seed)
        # sample images in proportion to their area (capped) so big photos are not under-used
        areas = torch.tensor([min(float(im.shape[1] * im.shape[2]), 4.0 * crop * crop) for im in images])
        self.weights = balanced_weights(areas, sources) if sources else areas / areas.sum()

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.gen))

    def sample(self, batch: int) -> torch.Tensor:
        idx = torch.multinomial(self.weights, batch, replacement=True, generator=self.gen).tolist()
        out = []
        for i in idx:
            im = self.images[i]
            s = self.min_scale + (1 - self.min_scale) * self._rand()
            win = min(round(self.crop / s), im.shape[1], im.shape[2]) if s < 1 else self.crop
            if im.shape[1] < win or im.shape[2] < win:
                ph, pw = max(0, win - im.shape[1]), max(0, win - im.shape[2])
                mode = "reflect" if ph < im.shape[1] and pw < im.shape[2] else "replicate"
                im = F.pad(im[None].float(), (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)[0]
            y = int(self._rand() * (im.shape[1] - win + 1))
            x = int(self._rand() * (im.shape[2] - win + 1))
            c = im[:, y:y + win, x:x + win].float()
            if win != self.crop:
                c = F.interpolate(c[None], size=(self.crop, self.crop), mode="bicubic", antialias=True)[0]
            if self._rand() < 0.5:
                c = c.flip(-1)
            out.append(c)
        return (torch.stack(out) / 255.0).clamp(0, 1) - 0.5


class MixedSampler(_Sampler):
    """Batches that cycle through several crop sizes, with about the same pixels per batch.

    The decoder's mid-block attention spans the whole latent grid, so a decoder that only ever saw 7×7
    grids (28² crops at J = 2) falls apart on a photo's 80×128 grid (gray-4x: 20.9 dB whole, 27.0 dB decoded
    in 28² tiles). Cycling small and large crops (the gray presets: 28², 64², 192²) fixed it, up to the
    held-out photos' 256×160 grids (RESULTS.md). ``batch`` counts crops of the first size; a crop of side
    c gets ``batch * (c0 / c)^2`` items.
    """

    def __init__(self, samplers: Sequence[CropSampler]):
        if not samplers:
            raise ValueError("MixedSampler needs at least one sampler")
        self.samplers = list(samplers)
        self.gen = self.samplers[0].gen
        self._next = 0

    def items_for(self, sampler: CropSampler, batch: int) -> int:
        return max(1, round(batch * (self.samplers[0].crop / sampler.crop) ** 2))

    def sample(self, batch: int) -> torch.Tensor:
        s = self.samplers[self._next % len(self.samplers)]
        self._next += 1
        return s.sample(self.items_for(s, batch))

    def fixed(self, n: int, seed: int = 1234) -> list[torch.Tensor]:  # type: ignore[override]
        """One reproducible batch per crop size (validation scores each size alike)."""
        return [s.fixed(n, seed) for s in self.samplers]

    def state_dict(self) -> dict[str, Any]:
        return {"next": self._next, "samplers": [s.state_dict() for s in self.samplers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._next = int(state["next"])
        for s, st in zip(self.samplers, state["samplers"]):
            s.load_state_dict(st)


class SegmentSampler(_Sampler):
    """Random ``segment``-sample windows of (C, T) clips, with random gain, polarity and channel swap.

    Clips are in [-1, 1]; batches are halved into the codec's [-0.5, 0.5].  Gain is log-uniform in
    [min_gain, 1] so quiet material is seen too; short clips are zero-padded.
    """

    def __init__(self, clips: list[torch.Tensor], segment: int, min_gain: float = 0.25, seed: int = 0,
                 sources: list[int] | None = None):
        self.clips = clips
        self.segment = segment
        self.min_gain = min_gain
        self.gen = torch.Generator().manual_seed(seed)
        lengths = torch.tensor([float(c.shape[-1]) for c in clips])
        self.weights = balanced_weights(lengths, sources) if sources else lengths / lengths.sum()

    def sample(self, batch: int) -> torch.Tensor:
        g = self.gen
        idx = torch.multinomial(self.weights, batch, replacement=True, generator=g).tolist()
        out = []
        for i in idx:
            c = self.clips[i]
            T = c.shape[-1]
            if T < self.segment:
                c = F.pad(c, (0, self.segment - T))
                T = self.segment
            t0 = int(torch.randint(0, T - self.segment + 1, (), generator=g))
            seg = c[:, t0:t0 + self.segment].float()
            gain = math.exp(math.log(self.min_gain) * float(torch.rand((), generator=g)))
            if float(torch.rand((), generator=g)) < 0.5:
                gain = -gain
            if seg.shape[0] > 1 and float(torch.rand((), generator=g)) < 0.5:
                seg = seg.flip(0)
            out.append(seg * gain)
        return torch.stack(out).clamp(-1, 1) / 2
