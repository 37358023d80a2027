"""A constructed, detail-sensitive image set that needs nothing but the installed packages: which digit is
printed, small, on a busy background?

Each sample is a ``size``² RGB image (32² by default, so that five models train in minutes on two CPU
cores): a background from one of eight sources, at half contrast by default, with one digit 0-9 rendered
in a text font shipped with matplotlib (DejaVu Sans / Serif / Mono, STIX, Computer Modern: 21 faces) at
8-14 px per em, in near-black or near-white ink (whichever contrasts with the background under it),
centred (``spread`` moves it off centre, which slows learning a lot).  Backgrounds are crops of the
images matplotlib ships (``mpl-data/sample_data``: a photo, a product shot, two elevation maps in colour
maps, an MRI slice) and seeded procedural ones (fractal colour noise, gratings, coloured tiles).  Train
and test differ in *font* (every third face, sorted by name, is held out) and in *background source*
(the photo, the bathymetry map and the gratings appear only in test), so a model must read the digit's
shape rather than memorise glyph bitmaps or backgrounds.

It is constructed, not collected: it stands in for tasks where the label lives in fine detail (small
text, fine texture, thin structures, small defects) that resolution reduction erases.  The digits are
6-10 px tall with strokes one or two pixels wide, so halving or quartering the side (equal-dimension
downsampling at 4x and 16x) leaves 3-5 or 1.5-2.5 px of blur on a textured background; the RGB codecs
spend their channels on luma detail rather than chroma, which is where a dark or light digit lives.
Generated deterministically from its parameters in seconds and cached
(:func:`walloc_cdl.data.builtin.cached`).
"""
from __future__ import annotations

import gzip
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import Benchmark, cached

CLASSES = [str(d) for d in range(10)]
#: Background sources; the ``TEST_SOURCES`` never appear in training.
SOURCES = ("clouds", "dem", "grating", "hopper", "mri", "present", "tiles", "topo")
TEST_SOURCES = ("grating", "hopper", "topo")
#: matplotlib's fonts that are not text faces with real digits (symbol/size variants, math encodings).
_NOT_TEXT = re.compile(r"Display|LastResort|NonUni|STIXSiz|cmex|cmsy|cmmi", re.I)


def _mpl_data() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path())


def fonts(split: str = "train") -> list[Path]:
    """matplotlib's text fonts of the split: every third face (sorted by file name) is held out for 'test'."""
    files = sorted((p for p in (_mpl_data() / "fonts" / "ttf").glob("*.ttf") if not _NOT_TEXT.search(p.name)),
                   key=lambda p: p.name)
    if not files:
        raise FileNotFoundError(f"no fonts under {_mpl_data() / 'fonts' / 'ttf'}")
    return [p for i, p in enumerate(files) if (i % 3 == 2) == (split == "test")]


def sources(split: str = "train") -> list[str]:
    return [s for s in SOURCES if (s in TEST_SOURCES) == (split == "test")]


def _colormap(a: np.ndarray, name: str, shade: bool = False) -> np.ndarray:
    import matplotlib

    a = a.astype(np.float64)
    v = (a - a.min()) / max(np.ptp(a), 1e-9)
    rgb = matplotlib.colormaps[name](v)[..., :3]
    if shade:  # hillshade: the relief's own fine structure
        gy, gx = np.gradient(a)
        s = np.clip(0.5 + 0.5 * (gx - gy) / (np.abs(np.gradient(a)).mean() * 4 + 1e-9), 0, 1)
        rgb = rgb * (0.55 + 0.45 * s[..., None])
    return (rgb * 255).astype(np.float32)


@lru_cache(maxsize=None)
def _image(name: str) -> np.ndarray:
    """A sample-data image as float32 (H, W, 3) in [0, 255]."""
    d = _mpl_data() / "sample_data"
    if name == "hopper":
        return np.asarray(Image.open(d / "grace_hopper.jpg").convert("RGB"), np.float32)
    if name == "present":
        im = Image.open(d / "Minduka_Present_Blue_Pack.png").convert("RGBA")
        bg = Image.new("RGBA", im.size, (235, 235, 228, 255))
        return np.asarray(Image.alpha_composite(bg, im).convert("RGB"), np.float32)
    if name == "dem":
        with np.load(d / "jacksboro_fault_dem.npz") as f:
            return _colormap(f["elevation"], "gist_earth", shade=True)
    if name == "topo":
        with np.load(d / "topobathy.npz") as f:
            return _colormap(f["topo"], "terrain", shade=True)
    if name == "mri":
        a = np.frombuffer(gzip.open(d / "s1045.ima.gz").read(), np.uint16).reshape(256, 256).astype(np.float32)
        a = np.clip(a / np.percentile(a, 99.5), 0, 1) * 255
        return np.repeat(a[..., None], 3, axis=2)
    raise KeyError(name)


def _crop(img: np.ndarray, size: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """A random crop covering ``size`` px after scaling ``img`` by a factor in [lo, hi] (at least to fit)."""
    h, w = img.shape[:2]
    s = max(rng.uniform(lo, hi), size / min(h, w))
    ch, cw = min(h, int(np.ceil(size / s))), min(w, int(np.ceil(size / s)))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = Image.fromarray(np.clip(img[y:y + ch, x:x + cw], 0, 255).astype(np.uint8)).resize((size, size),
                                                                                            Image.BICUBIC)
    out = np.asarray(crop, np.float32)
    return out[:, ::-1] if rng.random() < 0.5 else out


def _smooth(rng: np.random.Generator, size: int, cells: int, chans: int = 3) -> np.ndarray:
    """Normal noise on a (cells+1)² grid, bicubically upsampled to size² (float32, about unit scale)."""
    g = rng.standard_normal((chans, 1, cells + 1, cells + 1)).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(g), size=(size, size), mode="bicubic", align_corners=True)
    return up[:, 0].permute(1, 2, 0).numpy()


def background(source: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) float32 background in [0, 255] from ``source`` (see ``SOURCES``)."""
    if source in ("hopper", "present", "dem", "topo", "mri"):
        img = _image(source)
        lo, hi = {"hopper": (0.15, 0.6), "present": (0.5, 1.5), "dem": (0.3, 1.0), "topo": (0.8, 2.0),
                  "mri": (0.4, 1.0)}[source]
        out = _crop(img, size, rng, lo, hi)
        if source == "mri":  # a random tint
            out = out * rng.uniform(0.6, 1.0, 3).astype(np.float32) + rng.uniform(0, 60, 3).astype(np.float32)
        return np.clip(out, 0, 255)
    if source == "clouds":  # fractal colour noise
        n = sum(_smooth(rng, size, 2 ** (o + 1)) / 1.7 ** o for o in range(5))
        n = (n - n.mean()) / (n.std() + 1e-6)
        return np.clip(rng.uniform(50, 205, 3) + n * rng.uniform(15, 45), 0, 255).astype(np.float32)
    if source == "grating":  # two or three sinusoidal gratings of random period, orientation and colour
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        out = np.zeros((size, size, 3), np.float32) + rng.uniform(60, 195, 3).astype(np.float32)
        for _ in range(int(rng.integers(2, 4))):
            th, period = rng.uniform(0, np.pi), rng.uniform(6, 32)
            wave = np.sin(2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / period + rng.uniform(0, 2 * np.pi))
            out += wave[..., None] * rng.uniform(-30, 30, 3).astype(np.float32)
        return np.clip(out, 0, 255)
    if source == "tiles":  # overlapping coloured rectangles
        out = np.zeros((size, size, 3), np.float32) + rng.uniform(40, 215, 3).astype(np.float32)
        for _ in range(int(rng.integers(4, 12))):
            y0, x0 = rng.integers(-size // 4, size, 2)
            hh, ww = rng.integers(size // 8, size // 2, 2)
            out[max(0, y0):max(0, y0 + hh), max(0, x0):max(0, x0 + ww)] = rng.uniform(30, 225, 3)
        return out + _smooth(rng, size, 4) * 8
    raise KeyError(f"unknown background source {source!r}; known: {SOURCES}")


def render(bg: np.ndarray, text: str, font: Path, font_px: int, rng: np.random.Generator,
           spread: float = 0.3) -> np.ndarray:
    """``bg`` (size, size, 3) with ``text`` written on it near the centre, as uint8."""
    size = bg.shape[0]
    img = Image.fromarray(np.clip(bg, 0, 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(img)
    f = ImageFont.truetype(str(font), font_px)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
    fx, fy = max(0, size - (right - left)), max(0, size - (bottom - top))
    x = round(fx / 2 + rng.uniform(-spread, spread) * fx / 2) - left
    y = round(fy / 2 + rng.uniform(-spread, spread) * fy / 2) - top
    under = np.asarray(img)[max(0, y + top):y + bottom, max(0, x + left):x + right]
    luma = float((under.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).mean()) if under.size else 128.0
    tint = rng.integers(0, 40, 3)
    ink = tuple(int(t) for t in (tint if luma > 128 else 255 - tint))
    draw.text((x, y), text, font=f, fill=ink)
    return np.asarray(img)


def _build(n: int, split: str, size: int, font_px: tuple[int, int], seed: int, contrast: float = 1.0,
           spread: float = 0.3) -> dict[str, np.ndarray]:
    fs, srcs = fonts(split), sources(split)
    split_id = 0 if split == "train" else 1
    labels = np.random.default_rng([seed, split_id]).permutation(np.arange(n) % len(CLASSES))
    x = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, split_id, i])
        bg = background(srcs[int(rng.integers(len(srcs)))], size, rng)
        if contrast != 1:  # the background's variations scaled about its mean colour
            m = bg.mean(axis=(0, 1), keepdims=True)
            bg = m + contrast * (bg - m)
        x[i] = render(bg, CLASSES[labels[i]], fs[int(rng.integers(len(fs)))],
                      int(rng.integers(font_px[0], font_px[1] + 1)), rng, spread)
    return {"x": x.transpose(0, 3, 1, 2).copy(), "y": labels.astype(np.int64)}


def load(n_train: int = 6000, n_test: int = 1000, size: int = 32, font_px: tuple[int, int] = (8, 14),
         contrast: float = 0.5, spread: float = 0.0, seed: int = 0) -> Benchmark:
    """The fineprint set: uint8 (N, 3, size, size).

    ``font_px``: the range of font sizes (pixels per em); ``contrast``: the background's variations about
    its mean colour are scaled by it; ``spread``: the digit is placed off centre by up to this share of
    the free space (0: centred).
    """
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        params = dict(v=1, n=n, split=split, size=size, font_px=list(font_px), contrast=contrast, spread=spread,
                      seed=seed,
                      fonts=[p.name for p in fonts(split)], sources=sources(split))
        a = cached("fineprint", params, lambda: _build(n, split, size, tuple(font_px), seed, contrast, spread))
        splits[split] = (torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
    return Benchmark(
        name="fineprint", modality="image", x_train=splits["train"][0], y_train=splits["train"][1],
        tests={"test": splits["test"]}, classes=CLASSES, codecs={4: "rgb-4x", 16: "rgb-16x"},
        description=(f"CONSTRUCTED: digits in matplotlib's fonts ({font_px[0]}-{font_px[1]} px) on {size}x{size} "
                     "backgrounds (matplotlib sample images, procedural); test fonts and background sources "
                     "unseen in training"),
        meta={"train_fonts": [p.name for p in fonts("train")], "test_fonts": [p.name for p in fonts("test")],
              "train_sources": sources("train"), "test_sources": sources("test"), "size": size,
              "font_px": list(font_px)},
    )
