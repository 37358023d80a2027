"""walloc-cdl: compressed-domain learning with WaLLoC (Jacobellis & Yadwadkar, DCC 2025).

A frozen WaLLoC encoder as a drop-in replacement for resolution reduction::

    import walloc_cdl
    codec = walloc_cdl.load_codec("rgb-16x")          # shipped, offline
    z = codec.encode(x)                               # (B, 3, 256, 256) in [-0.5, 0.5] -> (B, 12, 32, 32)
    model = walloc_cdl.create_latent_model("resnet50", codec, num_classes=1000)

The codec API is imported eagerly; the dataset and model layers (webdataset, timm) load on first use.
"""
from importlib import import_module

from .codec import (CheckpointError, Codec1D, Codec2D, Round, ToNormal, ToUniform, build_codec, codec_card,
                    decode_latent, encode_latent, latent_to_pil, list_codecs, load_codec, pil_to_latent, save_codec,
                    state_dict_sha256)

__version__ = "0.1.0"

_LAZY = {
    "create_latent_model": "walloc_cdl.models", "create_latent_audio_model": "walloc_cdl.models",
    "LatentDataset": "walloc_cdl.data", "make_loader": "walloc_cdl.data", "OnTheFlyEncoder": "walloc_cdl.data",
    "encode_dataset": "walloc_cdl.data", "EncodeOptions": "walloc_cdl.data", "open_source": "walloc_cdl.data",
    "fast_encode": "walloc_cdl.codec.fast",
    "train_model": "walloc_cdl.training.train", "TrainConfig": "walloc_cdl.training.train",
    "load_latent_model": "walloc_cdl.training.train", "evaluate_model": "walloc_cdl.training.train",
    "predict_files": "walloc_cdl.training.predict",
}

__all__ = [
    "Codec1D", "Codec2D", "build_codec", "load_codec", "save_codec", "list_codecs", "codec_card",
    "CheckpointError", "state_dict_sha256", "latent_to_pil", "pil_to_latent", "encode_latent", "decode_latent",
    "ToUniform", "Round", "ToNormal", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'walloc_cdl' has no attribute {name!r}")
