"""walloc-cdl: compressed-domain learning with WaLLoC (Jacobellis & Yadwadkar, DCC 2025).

A frozen WaLLoC encoder as a drop-in replacement for resolution reduction::

    import walloc_cdl
    codec = walloc_cdl.load_codec("rgb-16x")          # shipped, offline
    z = codec.encode(x)                               # (B, 3, 256, 256) in [-0.5, 0.5] -> (B, 12, 32, 32)
"""
from .bottleneck import Round, ToNormal, ToUniform
from .checkpoints import CheckpointError, codec_card, list_codecs, load_codec, save_codec, state_dict_sha256
from .codec import Codec1D, Codec2D, build_codec
from .containers import latent_to_pil, pil_to_latent

__version__ = "0.1.0"

__all__ = [
    "Codec1D", "Codec2D", "build_codec", "load_codec", "save_codec", "list_codecs", "codec_card",
    "CheckpointError", "state_dict_sha256", "latent_to_pil", "pil_to_latent", "ToUniform", "Round", "ToNormal",
]
