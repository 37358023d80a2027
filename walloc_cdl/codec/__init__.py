"""The codec: wavelet packet analysis -> linear encoder -> bottleneck (``encode``), and back (``decode``).

Jacobellis & Yadwadkar, "Learned Compression for Compressed Learning", DCC 2025.  ``wavelets`` (the bior4.4
packet transform), ``bottleneck`` (companding + rounding), ``nets`` (encoder/decoder networks), ``model``
(``Codec1D`` / ``Codec2D``, walloc 1.2.1's layout), ``fast`` (what ``codec.encode`` runs: the CPU and
Triton paths), ``containers`` (lossless latent tiles), ``checkpoints`` (loading, saving, the shipped
codecs).  Arrows run one way: checkpoints -> model -> fast / nets / wavelets / bottleneck.
"""
from .bottleneck import Round, ToNormal, ToUniform
from .checkpoints import CheckpointError, codec_card, list_codecs, load_codec, save_codec, state_dict_sha256
from .containers import decode_latent, encode_latent, latent_to_pil, pil_to_latent
from .model import Codec1D, Codec2D, build_codec, to_codec_range, to_pixels

__all__ = ["Codec1D", "Codec2D", "build_codec", "load_codec", "save_codec", "list_codecs", "codec_card",
           "CheckpointError", "state_dict_sha256", "latent_to_pil", "pil_to_latent", "encode_latent",
           "decode_latent", "ToUniform", "Round", "ToNormal", "to_codec_range", "to_pixels"]
