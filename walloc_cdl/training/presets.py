"""Configurations of the shipped codecs and their training defaults (``train-codec --preset NAME``).

Dimensionality reduction is ``channels · 4^J / latent_dim`` (2D) or ``channels · 2^J / latent_dim`` (1D):

* ``rgb-16x`` 192/12, ``rgb-4x`` 192/48: the paper's main image configuration (J = 3, 1×1 encoder).
* ``gray-16x`` 16/1, ``gray-4x`` 16/4: J = 2, so a Fashion-MNIST image needs no padding (28 = 7·4) and
  becomes a 7×7 latent grid (8×8 if padded to 32); at J = 3 it would need padding to 32 and give 4×4,
  too small for most CNN stems.  They train on Fashion-MNIST images and grayscale photos, in 28², 64² and
  192² crops in turn: the decoder's attention spans the whole latent grid, and decoders that saw only 28²
  crops fell to ~21 dB on whole photos (RESULTS.md, codec RD).
  At 16× with J = 2 the single latent channel is close to the LL band (a 4× per side reduction), so the
  gain over downsampling is small; ``gray-4x`` keeps 4 of 16 bands' worth and is the useful one.
* ``stereo-20x`` 512/27 (19×) and ``stereo-5x`` 512/108 (4.7×): the paper's audio configuration (J = 8).

``rho`` sets the quantisation step of the closed-form encoder (see :mod:`.pca`) and so the rate:
smaller is finer (more bits, higher PSNR).  Decoder widths keep the pretrained folder small (fp16).
"""
from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "rgb-16x": {"codec": dict(channels=3, J=3, Ne=None, Nd=128, latent_dim=12, latent_bits=8, lightweight_encode=True),
                "kind": "image", "crop": 256, "min_scale": 0.5, "rho": 0.05, "batch_size": 32},
    "rgb-4x": {"codec": dict(channels=3, J=3, Ne=None, Nd=128, latent_dim=48, latent_bits=8, lightweight_encode=True),
               "kind": "image", "crop": 256, "min_scale": 0.5, "rho": 0.2, "batch_size": 32},
    "gray-16x": {"codec": dict(channels=1, J=2, Ne=None, Nd=64, latent_dim=1, latent_bits=8, lightweight_encode=True),
                 "kind": "image", "crop": (28, 64, 192), "min_scale": 0.25, "rho": 0.005, "batch_size": 256},
    "gray-4x": {"codec": dict(channels=1, J=2, Ne=None, Nd=64, latent_dim=4, latent_bits=8, lightweight_encode=True),
                "kind": "image", "crop": (28, 64, 192), "min_scale": 0.25, "rho": 0.01, "batch_size": 256},
    "stereo-20x": {"codec": dict(channels=2, J=8, Ne=None, Nd=216, latent_dim=27, latent_bits=8,
                                 lightweight_encode=True, post_filter=True),
                   "kind": "audio", "segment": 2 ** 15, "rho": 0.1, "batch_size": 32},
    "stereo-5x": {"codec": dict(channels=2, J=8, Ne=None, Nd=216, latent_dim=108, latent_bits=8,
                                lightweight_encode=True, post_filter=True),
                  "kind": "audio", "segment": 2 ** 15, "rho": 0.2, "batch_size": 32},
}


def preset(name: str) -> dict[str, Any]:
    """A copy of one preset; KeyError names the available ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    p = dict(PRESETS[name])
    p["codec"] = dict(p["codec"])
    return p
