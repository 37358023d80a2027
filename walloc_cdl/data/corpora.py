"""The real training and held-out corpora that exist offline on these machines (see shared/DATA.md).

Photos: about 44 deduplicated real photographs from three Debian wallpaper packages and four Python
libraries' sample images; renders and abstract wallpapers are left out by name.  A fixed split holds
out two or three photos of every source (``HELD_OUT_PHOTOS``) that no shipped codec trained on.

Audio (44.1 kHz stereo): phrases rendered offline with ``tinysoundfont``.  Training phrases use the
FluidR3 bank and the programs of ten acoustic GM families minus one held-out program per family
(``HELD_OUT_PROGRAMS``).  Held-out material: FluidR3 phrases of the held-out programs, phrases of the
training programs rendered with the independent TimGM6mb bank, and real recordings
(``sonic-pi-samples``, ``hydrogen-drumkits``).

Usage::

    from walloc_cdl.data import corpora
    train = corpora.photos("train")                  # list[Photo], deduplicated
    img = corpora.load_photo(train[0], max_side=1024)  # (H, W, 3) uint8
    x = corpora.render_phrase(corpora.FLUIDR3, seed=0)  # (2, T) float32 in [-1, 1]
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE_RATE = 44100
FLUIDR3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TIMGM6MB = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
HYDROGEN_DIR = Path("/usr/share/hydrogen/data/drumkits")

# -- photos -----------------------------------------------------------------------------------------
_PLASMA = Path("/usr/share/wallpapers")
_LOMIRI = Path("/usr/share/backgrounds")
_MATE = Path("/usr/share/backgrounds/mate/nature")

# Photographs only: the other wallpapers of these packages are renders or abstract art.
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am")
LOMIRI_PHOTOS = ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                 "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
                 "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
                 "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
                 "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")
MATE_PHOTOS = ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
               "TwoWings", "Wood", "YellowFlower")
LIBRARY_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "china", "flower", "grace_hopper")

#: Two or three photos of every source; no shipped codec saw them.
HELD_OUT_PHOTOS = frozenset({"EveningGlow", "Path", "picosdeeuropa_by_Aitzol_Berasategi", "Wine_by_Jakkub_Mede",
                             "Dune", "LadyBird", "astronaut", "chelsea", "coffee"})


@dataclass(frozen=True)
class Photo:
    """One real photograph: a stable ``name``, the package or library it came from, and its file."""

    name: str
    source: str
    path: Path

    @property
    def held_out(self) -> bool:
        return self.name in HELD_OUT_PHOTOS


def _largest_plasma_image(name: str) -> Path | None:
    """A plasma wallpaper ships one image in several resolutions (often symlinks): take the largest."""
    files = [p for p in (_PLASMA / name / "contents" / "images").glob("*") if p.is_file()]

    def pixels(p: Path) -> int:
        m = re.match(r"(\d+)x(\d+)", p.stem)
        return int(m[1]) * int(m[2]) if m else 0

    return max(files, key=pixels) if files else None


def _library_paths() -> dict[str, Path]:
    out: dict[str, Path] = {}
    try:
        import skimage

        d = Path(skimage.__file__).parent / "data"
        for n in ("astronaut", "chelsea", "coffee", "motorcycle_left"):
            out[n] = d / f"{n}.png"
        out["rocket"] = d / "rocket.jpg"
    except ImportError:
        pass
    try:
        import sklearn

        d = Path(sklearn.__file__).parent / "datasets" / "images"
        out["china"], out["flower"] = d / "china.jpg", d / "flower.jpg"
    except ImportError:
        pass
    try:
        import matplotlib

        out["grace_hopper"] = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    except ImportError:
        pass
    return out


def _candidates() -> list[Photo]:
    found: list[Photo] = []
    for n in PLASMA_PHOTOS:
        p = _largest_plasma_image(n)
        if p is not None:
            found.append(Photo(n, "plasma-workspace-wallpapers", p))
    found += [Photo(n, "lomiri-wallpapers", _LOMIRI / f"{n}.jpg") for n in LOMIRI_PHOTOS]
    found += [Photo(n, "mate-backgrounds", _MATE / f"{n}.jpg") for n in MATE_PHOTOS]
    lib = _library_paths()
    found += [Photo(n, "library-samples", lib[n]) for n in LIBRARY_PHOTOS if n in lib]
    return [p for p in found if p.path.is_file()]


@lru_cache(maxsize=1)
def _all_photos() -> tuple[Photo, ...]:
    seen: set[str] = set()
    out = []
    for p in _candidates():
        digest = hashlib.sha256(p.path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(p)
    return tuple(out)


def photos(split: str = "train") -> list[Photo]:
    """The deduplicated photos installed here: ``'train'``, ``'test'`` (held out) or ``'all'``."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    return [p for p in _all_photos() if split == "all" or p.held_out == (split == "test")]


def missing_photo_packages() -> list[str]:
    """Debian packages whose photos are absent (tests skip with this reason; .ci/run installs them)."""
    present = {p.source for p in _all_photos()}
    return [s for s in ("plasma-workspace-wallpapers", "lomiri-wallpapers", "mate-backgrounds") if s not in present]


def load_photo(photo: Photo | str | Path, max_side: int | None = 1024, gray: bool = False) -> np.ndarray:
    """(H, W, 3) or (H, W, 1) uint8, downscaled (Lanczos, antialiased) so the longer side is <= max_side.

    Wallpapers are 2560-5120 px wide; at ``max_side=1024`` their crops have detail comparable to the
    library samples (512 px), which is what a 256² training crop should see.
    """
    path = photo.path if isinstance(photo, Photo) else Path(photo)
    try:
        img = Image.open(path)
        img.draft("RGB", (max_side, max_side) if max_side else img.size)  # fast JPEG DCT scaling, >= target
        img = img.convert("L" if gray else "RGB")
    except OSError as e:
        raise ValueError(f"{path}: cannot read image ({e})") from e
    if max_side and max(img.size) > max_side:
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.LANCZOS)
    a = np.asarray(img)
    return a[..., None] if a.ndim == 2 else a


# -- audio ------------------------------------------------------------------------------------------
#: General MIDI programs of acoustic families, with the pitch range phrases are drawn from.
FAMILIES: dict[str, tuple[tuple[int, ...], tuple[int, int]]] = {
    "piano": (tuple(range(0, 8)), (36, 96)),
    "chromatic_percussion": (tuple(range(8, 16)), (55, 96)),
    "organ": (tuple(range(16, 21)), (36, 84)),
    "guitar": ((24, 25), (40, 84)),
    "bass": ((32, 33, 34, 35), (28, 55)),
    "strings": (tuple(range(40, 47)), (40, 88)),
    "ensemble": ((48, 49, 52, 53), (48, 84)),
    "brass": (tuple(range(56, 64)), (40, 80)),
    "reed": (tuple(range(64, 72)), (48, 88)),
    "pipe": (tuple(range(72, 80)), (60, 96)),
}
#: One program per family that no shipped audio codec trained on (bright piano, vibraphone, church
#: organ, steel guitar, finger bass, cello, choir aahs, trombone, alto sax, flute).
HELD_OUT_PROGRAMS = frozenset({1, 11, 19, 25, 33, 42, 52, 57, 65, 73})


def programs(split: str = "train") -> list[int]:
    """GM programs of the acoustic families: training ones, held-out ones ('test') or 'all'."""
    every = sorted(p for progs, _ in FAMILIES.values() for p in progs)
    if split == "all":
        return every
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    return [p for p in every if (p in HELD_OUT_PROGRAMS) == (split == "test")]


def _pitch_range(program: int) -> tuple[int, int]:
    return next(r for progs, r in FAMILIES.values() if program in progs)


@lru_cache(maxsize=2)
def soundfont_synth(soundfont: str):
    """A tinysoundfont synthesiser at 44.1 kHz with ``soundfont`` loaded, shared (rendering is stateful)."""
    try:
        from tinysoundfont import Synth
    except ImportError as e:
        raise ImportError("rendering phrases needs tinysoundfont: pip install --no-deps tinysoundfont") from e
    if not Path(soundfont).exists():
        raise FileNotFoundError(f"{soundfont}: soundfont missing (apt-get install fluid-soundfont-gm "
                                "timgm6mb-soundfont)")
    synth = Synth(samplerate=SAMPLE_RATE)
    return synth, synth.sfload(soundfont)


def render_phrase(soundfont: str | Path = FLUIDR3, seed: int = 0, seconds: float = 4.0,
                  program_pool: list[int] | None = None, voices: int | None = None,
                  peak: float = 0.89) -> np.ndarray:
    """A random multi-instrument phrase: (2, T) float32 in [-1, 1], peak-normalised to ``peak``.

    1-3 voices, each a program from ``program_pool`` (default: training programs) panned at random,
    play notes and chords of random length and velocity in the family's range; so the stereo image is
    real (tinysoundfont alone renders most programs centred).
    """
    rng = np.random.default_rng(seed)
    pool = program_pool or programs("train")
    synth, sfid = soundfont_synth(str(soundfont))
    n_voices = voices or int(rng.integers(1, 4))
    # (time in frames, channel, pitch, velocity or 0 for note off)
    events: list[tuple[int, int, int, int]] = []
    total = int(seconds * SAMPLE_RATE)
    for ch in range(n_voices):
        prog = int(rng.choice(pool))
        synth.program_select(ch, sfid, 0, prog)
        synth.control_change(ch, 10, int(rng.integers(0, 128)))  # pan
        synth.control_change(ch, 7, 100)
        lo, hi = _pitch_range(prog)
        t = int(rng.uniform(0, 0.3) * SAMPLE_RATE)
        while t < total - SAMPLE_RATE // 4:
            dur = int(rng.uniform(0.12, 1.0) * SAMPLE_RATE)
            root = int(rng.integers(lo, hi + 1))
            chord = [root] + [root + int(i) for i in rng.choice([3, 4, 7, 12], size=int(rng.integers(0, 3)))]
            vel = int(rng.integers(50, 127))
            for p in chord:
                if p <= 127:
                    events += [(t, ch, p, vel), (min(t + dur, total), ch, p, 0)]
            t += int(dur * rng.uniform(0.6, 1.3))
    events.sort()
    chunks, now = [], 0
    for t, ch, p, vel in events:
        if t > now:
            chunks.append(np.frombuffer(synth.generate(t - now), np.float32))
            now = t
        if vel:
            synth.noteon(ch, p, vel)
        else:
            synth.noteoff(ch, p)
    if total > now:
        chunks.append(np.frombuffer(synth.generate(total - now), np.float32))
    for ch in range(n_voices):
        synth.sounds_off(ch)
    synth.generate(SAMPLE_RATE // 2)  # flush, so the next phrase starts silent
    for ch in range(n_voices):
        synth.program_unset(ch)
    x = np.concatenate(chunks).reshape(-1, 2)[:total].T.copy()
    m = float(np.abs(x).max())
    return (x * (peak / m)).astype(np.float32) if m > 0 else x


def load_audio(path: str | Path, samplerate: int = SAMPLE_RATE, channels: int = 2) -> np.ndarray:
    """(channels, T) float32 in [-1, 1]: :mod:`walloc_cdl.data.sources` decoding, resampled, mono repeated."""
    from .sources import audio_to_codec, decode_audio

    x, meta = decode_audio(path)
    return audio_to_codec(x, meta["sample_rate"], channels, target_rate=samplerate)


#: Real recordings held out from every shipped audio codec (sonic-pi: file stems; hydrogen: kit dirs).
SONIC_PI_HELD_OUT = ("ambi_choir", "ambi_piano", "ambi_lunar_land", "bass_woodsy_c", "drum_roll", "guit_harmonics",
                     "guit_e_fifths", "loop_amen", "loop_compus", "loop_garzul", "perc_bell", "vinyl_rewind")
HYDROGEN_HELD_OUT_KITS = ("Audiophob", "GMkit")


def real_recordings(split: str = "test", hits_per_kit: int = 24) -> list[Path]:
    """Real recordings that are installed, split so that no shipped codec trained on the ``"test"`` ones.

    ``"test"``: the sonic-pi stems above and the first six hits of the held-out kits.  ``"train"``: every
    other sonic-pi stem and the first ``hits_per_kit`` hits of every other kit (so no kit dominates).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    held = split == "test"
    stems = sorted(SONIC_PI_DIR.glob("*.flac")) if SONIC_PI_DIR.exists() else []
    out = [p for p in stems if (p.stem in SONIC_PI_HELD_OUT) == held]
    kits = sorted(d for d in HYDROGEN_DIR.iterdir() if d.is_dir()) if HYDROGEN_DIR.exists() else []
    for kit in kits:
        if (kit.name in HYDROGEN_HELD_OUT_KITS) != held:
            continue
        hits = sorted(p for p in kit.glob("*") if p.suffix.lower() in (".wav", ".flac"))
        out += hits[:6 if held else hits_per_kit]
    return out


def heldout_audio(segment: int = 4 * SAMPLE_RATE, n_phrases: int = 6) -> dict[str, list[np.ndarray]]:
    """The held-out audio sets, each a list of (2, T) float32 clips in [-1, 1] (real clips cut to ``segment``).

    ``fluidr3-heldout-programs``: FluidR3, only held-out programs; ``timgm6mb``: training programs
    through the other bank; ``real``: :func:`real_recordings`.
    """
    sets: dict[str, list[np.ndarray]] = {}
    test_progs = programs("test")
    sets["fluidr3-heldout-programs"] = [render_phrase(FLUIDR3, seed=10_000 + i, seconds=segment / SAMPLE_RATE,
                                                      program_pool=test_progs) for i in range(n_phrases)]
    if TIMGM6MB.exists():
        sets["timgm6mb"] = [render_phrase(TIMGM6MB, seed=20_000 + i, seconds=segment / SAMPLE_RATE)
                            for i in range(n_phrases)]
    real = [load_audio(p)[:, :segment] for p in real_recordings()]
    if real:
        sets["real"] = real
    return sets
