"""A constructed, detail-sensitive image set: which word is written, small, on a real photo?

Each 256² sample is a crop of a real photograph (:mod:`walloc_cdl.data.corpora`) with one of 50
five-letter words (``wamerican``) rendered in a real font (Debian ``fonts-*``) at 12-18 px, in black or
white (whichever contrasts with the photo under it), near the centre (jittered by a quarter of the
free space).  Train and test differ in
*font family* (every third family, sorted by name, is held out) and in *photo* (the corpora's held-out
photos), so a model must read the letters rather than memorise glyph bitmaps or backgrounds.

It is constructed, not collected: it stands in for tasks where the label lives in fine detail (text,
small defects, thin structures) that resolution reduction erases.  Generated deterministically from its
parameters and cached (:func:`walloc_cdl.data.builtin.cached`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import Benchmark, cached

WORDS_FILE = Path("/usr/share/dict/words")
PHOTO_SIDE = 768  # photos are shrunk to this longer side (at 256 px samples) before cropping
FONT_DIRS = (Path("/usr/share/fonts"),)
#: Fonts that are not Latin text faces (symbols, dingbats, math, script).
_NOT_TEXT = re.compile(r"symbol|dingbat|math|D050000L|Z003|emoji", re.I)


def vocabulary(n_classes: int = 50, length: int = 5, seed: int = 1234) -> list[str]:
    """``n_classes`` distinct lowercase words of ``length`` letters from ``/usr/share/dict/words``."""
    if _assets() and (_assets() / "vocabulary.txt").exists():
        words = (_assets() / "vocabulary.txt").read_text().split()
        if len(words) >= n_classes:
            return words[:n_classes]
    if not WORDS_FILE.exists():
        raise FileNotFoundError(f"{WORDS_FILE}: word list missing (apt-get install wamerican)")
    words = sorted({w for w in WORDS_FILE.read_text(errors="ignore").split() if re.fullmatch(f"[a-z]{{{length}}}", w)})
    if len(words) < n_classes:
        raise ValueError(f"{WORDS_FILE} has only {len(words)} {length}-letter words, need {n_classes}")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(words, n_classes, replace=False).tolist())


def _assets() -> Path | None:
    """``$WALLOC_CDL_WORDS_ASSETS``: a folder from :func:`export_assets`, for machines without the packages."""
    d = os.environ.get("WALLOC_CDL_WORDS_ASSETS")
    return Path(d) if d else None


def fonts(split: str = "train") -> list[Path]:
    """Installed text fonts of the split: every third family (sorted by name) is held out for 'test'."""
    dirs = (_assets() / "fonts",) if _assets() else FONT_DIRS
    files = sorted({p for d in dirs if d.exists() for ext in ("ttf", "otf") for p in d.rglob(f"*.{ext}")
                    if not _NOT_TEXT.search(p.name)}, key=lambda p: p.name)
    families = sorted({p.stem.split("-")[0] for p in files})
    test = {f for i, f in enumerate(families) if i % 3 == 2}
    chosen = [p for p in files if (p.stem.split("-")[0] in test) == (split == "test")]
    if not chosen:
        raise FileNotFoundError(f"no {split} fonts found under {FONT_DIRS} (apt-get install fonts-dejavu-core "
                                "fonts-liberation fonts-urw-base35)")
    return chosen


def render(photo: np.ndarray, word: str, font: Path, font_px: int, rng: np.random.Generator,
           size: int = 256, spread: float = 0.25) -> np.ndarray:
    """A (size, size, 3) uint8 crop of ``photo`` with ``word`` written on it."""
    h, w = photo.shape[:2]
    if h < size or w < size:
        raise ValueError(f"photo {w}x{h} is smaller than the crop {size}")
    y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    crop = photo[y0:y0 + size, x0:x0 + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    img = Image.fromarray(np.ascontiguousarray(crop))
    draw = ImageDraw.Draw(img)
    f = ImageFont.truetype(str(font), font_px)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=f)
    tw, th = right - left, bottom - top
    # near the centre, jittered by up to ``spread`` of the free space: the task is reading, not search
    fx, fy = max(0, size - tw), max(0, size - th)
    x = round(fx / 2 + rng.uniform(-spread, spread) * fx / 2) - left
    y = round(fy / 2 + rng.uniform(-spread, spread) * fy / 2) - top
    under = np.asarray(img)[max(0, y + top):y + bottom, max(0, x + left):x + right]
    luma = float(under.mean()) if under.size else 128.0
    ink = (0, 0, 0) if luma > 128 else (255, 255, 255)
    draw.text((x, y), word, font=f, fill=ink)
    return np.asarray(img)


def _render_one(job: tuple) -> np.ndarray:
    i, seed, split_id, word, font, lo, hi, size = job
    rng = np.random.default_rng([seed, split_id, i])  # per sample: identical serially or in a pool
    photo = _PHOTOS[int(rng.integers(len(_PHOTOS)))]
    return render(photo, word, font, int(rng.integers(lo, hi + 1)), rng, size)


_PHOTOS: list[np.ndarray] = []


def scaled_font_px(font_px: tuple[int, int], size: int) -> tuple[int, int]:
    """The font size range drawn on ``size``-px crops: ``font_px`` is given at 256 px (text keeps its share)."""
    lo, hi = (max(4, round(p * size / 256)) for p in font_px)
    return lo, hi


def _build(n: int, split: str, words: list[str], size: int, font_px: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from .. import corpora

    scale = size / 256
    side = max(size, round(PHOTO_SIDE * scale))
    if _assets():
        photos = sorted((_assets() / "photos" / split).glob("*.jpg"))
    else:
        photos = corpora.photos("test" if split == "test" else "train")
    if not photos:
        raise FileNotFoundError(f"no {split} photos installed; missing packages: {corpora.missing_photo_packages()}")
    _PHOTOS[:] = [a for a in (corpora.load_photo(p, max_side=side) for p in photos) if min(a.shape[:2]) >= size]
    fs = fonts(split)
    split_id = 0 if split == "train" else 1
    rng = np.random.default_rng([seed, split_id])
    labels = rng.permutation(np.arange(n) % len(words))
    fidx = rng.integers(len(fs), size=n)
    lo, hi = scaled_font_px(font_px, size)
    jobs = [(i, seed, split_id, words[labels[i]], fs[fidx[i]], lo, hi, size) for i in range(n)]
    workers = min(16, os.cpu_count() or 1) if n >= 2000 else 1
    bar = dict(total=n, desc=f"words/{split}", leave=False, disable=n < 2000)
    if workers > 1:  # fork shares the decoded photos with the workers
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
            imgs = list(tqdm(ex.map(_render_one, jobs, chunksize=64), **bar))
    else:
        imgs = [_render_one(j) for j in tqdm(jobs, **bar)]
    return {"x": np.stack(imgs).transpose(0, 3, 1, 2), "y": labels.astype(np.int64)}


def export_assets(out: str | Path, n_classes: int = 50) -> Path:
    """Copy what :func:`load` needs (fonts, photos shrunk to PHOTO_SIDE as JPEG q95, the vocabulary) into
    ``out``, to carry to a machine without the Debian packages; point ``$WALLOC_CDL_WORDS_ASSETS`` at it."""
    import shutil

    from .. import corpora

    out = Path(out)
    for split in ("train", "test"):
        (out / "photos" / split).mkdir(parents=True, exist_ok=True)
        (out / "fonts" / split).mkdir(parents=True, exist_ok=True)
        for p in fonts(split):
            shutil.copy(p, out / "fonts" / split / p.name)
        for ph in corpora.photos(split):
            Image.fromarray(corpora.load_photo(ph, max_side=PHOTO_SIDE)).save(out / "photos" / split / f"{ph.name}.jpg",
                                                                              quality=95)
    (out / "vocabulary.txt").write_text("\n".join(vocabulary(n_classes)) + "\n")
    return out


def load(n_train: int = 4000, n_test: int = 1000, size: int = 256, n_classes: int = 50,
         font_px: tuple[int, int] = (12, 18), seed: int = 0) -> Benchmark:
    """The words set: uint8 (N, 3, size, size); ``font_px`` is the size range at 256 px (scaled with ``size``)."""
    words = vocabulary(n_classes)
    px = scaled_font_px(font_px, size)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        params = dict(v=3, n=n, split=split, size=size, words=words, font_px=list(font_px), seed=seed,
                      fonts=[p.name for p in fonts(split)])
        a = cached("words", params, lambda: _build(n, split, words, size, font_px, seed))
        splits[split] = (torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
    return Benchmark(
        name="words", modality="image", x_train=splits["train"][0], y_train=splits["train"][1],
        tests={"test": splits["test"]}, classes=words, codecs={4: "rgb-4x", 16: "rgb-16x"},
        description=(f"CONSTRUCTED: {n_classes} words in real fonts ({px[0]}-{px[1]} px) on "
                     f"{size}x{size} crops of real photos; test fonts and photos unseen in training"),
        meta={"train_fonts": [p.name for p in fonts("train")], "test_fonts": [p.name for p in fonts("test")],
              "size": size},
    )
