"""Instrument-family classification of single notes rendered from real sampled soundfonts.

A sample is one note (random program of the family, pitch in the family's range, velocity, length and
stereo pan) rendered with ``tinysoundfont`` at 44.1 kHz stereo, peak-normalised to a random level so
loudness carries no label.  Classes are the ten acoustic General-MIDI families of
:data:`walloc_cdl.data.corpora.FAMILIES`.  Training notes come from FluidR3; the ``fluidr3`` test set
holds fresh notes of the same bank and ``timgm6mb`` the same kind of notes from the independent TimGM6mb
bank (different recordings of every instrument): the cross-soundfont test.
"""
from __future__ import annotations

import numpy as np
import torch

from . import Benchmark, cached

CLIP = 32768  # 0.74 s at 44.1 kHz; a multiple of 2^8 so J=8 codecs need no padding


def render_note(soundfont: str, program: int, pitch: int, velocity: int, pan: int, onset: int, length: int,
                clip: int = CLIP) -> np.ndarray:
    """(2, clip) float32: one note of ``program`` starting at ``onset`` frames, released after ``length``
    (onset + length < clip)."""
    from ..corpora import soundfont_synth

    synth, sfid = soundfont_synth(str(soundfont))
    synth.program_select(0, sfid, 0, program)
    synth.control_change(0, 10, pan)
    synth.control_change(0, 7, 100)
    parts = [np.frombuffer(synth.generate(onset), np.float32)] if onset else []
    synth.noteon(0, pitch, velocity)
    parts.append(np.frombuffer(synth.generate(length), np.float32))
    synth.noteoff(0, pitch)
    parts.append(np.frombuffer(synth.generate(clip - onset - length), np.float32))
    synth.notes_off()
    synth.sounds_off()
    synth.generate(4096)  # flush the release so the next note starts from silence
    return np.concatenate(parts).reshape(-1, 2)[:clip].T.copy()


def _build(n: int, soundfont: str, seed: int, clip: int) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    from ..corpora import FAMILIES

    fams = list(FAMILIES.values())
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(fams))
    x = np.empty((n, 2, clip), np.float16)
    for i in tqdm(range(n), desc=f"notes/{soundfont.rsplit('/', 1)[-1]}", leave=False, disable=n < 500):
        progs, (lo, hi) = fams[labels[i]]
        for _ in range(10):  # re-draw the rare silent note (a preset without samples at that pitch)
            a = render_note(soundfont, int(rng.choice(progs)), int(rng.integers(lo, hi + 1)),
                            int(rng.integers(60, 128)), int(rng.integers(16, 112)),
                            int(rng.integers(0, clip // 30)), int(rng.uniform(0.35, 0.8) * clip), clip)
            m = float(np.abs(a).max())
            if m > 1e-4:
                break
        x[i] = a * (rng.uniform(0.25, 0.9) / max(m, 1e-4))
    return {"x": x, "y": labels.astype(np.int64)}


def load(n_train: int = 2000, n_test: int = 500, clip: int = CLIP, seed: int = 0) -> Benchmark:
    """Train on FluidR3; test on fresh FluidR3 notes and on TimGM6mb.  Audio float16 (N, 2, clip) in [-1, 1]."""
    from ..corpora import FAMILIES, FLUIDR3, TIMGM6MB

    for sf, pkg in ((FLUIDR3, "fluid-soundfont-gm"), (TIMGM6MB, "timgm6mb-soundfont")):
        if not sf.exists():
            raise FileNotFoundError(f"{sf}: soundfont missing (apt-get install {pkg})")
    sets = {}
    for name, sf, n, s in (("train", FLUIDR3, n_train, seed), ("fluidr3", FLUIDR3, n_test, seed + 1000),
                           ("timgm6mb", TIMGM6MB, n_test, seed + 2000)):
        a = cached("instruments", dict(v=1, n=n, sf=sf.name, seed=s, clip=clip), lambda: _build(n, str(sf), s, clip))
        sets[name] = (torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
    return Benchmark(
        name="instruments", modality="audio", x_train=sets["train"][0], y_train=sets["train"][1],
        tests={"fluidr3": sets["fluidr3"], "timgm6mb": sets["timgm6mb"]}, classes=list(FAMILIES),
        codecs={5: "stereo-5x", 20: "stereo-20x"},
        description=(f"single notes of 10 acoustic GM families, stereo 44.1 kHz, {clip} samples; train FluidR3, "
                     "test FluidR3 (fresh notes) and TimGM6mb (other soundfont)"),
        meta={"sample_rate": 44100, "clip": clip},
    )
