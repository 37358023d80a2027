"""``walloc-cdl info``: what a codec is (config, reduction, parameters, weights fingerprint)."""
from __future__ import annotations

import argparse
import json

from .checkpoints import codec_card, list_codecs, load_codec, state_dict_sha256


def describe(name_or_path: str) -> dict:
    """A JSON-able summary of a codec: config, shapes, parameter counts and, if shipped, its card."""
    codec = load_codec(name_or_path)
    n_enc = sum(p.numel() for p in codec.encoder.parameters())
    n_dec = sum(p.numel() for p in codec.decoder.parameters())
    out = {
        "codec": str(name_or_path),
        "kind": type(codec).__name__,
        "config": codec.config,
        "downsampling_per_side": codec.downsampling,
        "dimensionality_reduction": codec.dimensionality_reduction,
        "encoder_params": n_enc,
        "decoder_params": n_dec,
        "weights_sha256": state_dict_sha256(codec),
        "encoder_sha256": state_dict_sha256(codec.encoder),  # equal = equal latents
    }
    if str(name_or_path) in list_codecs():
        card = codec_card(str(name_or_path))
        out["card"] = {k: v for k, v in card.items() if k != "config"}
    return out


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("codec", nargs="?", help="shipped codec name, official .pth (+ .json), .safetensors or hub "
                                            "name hf://ORG/REPO[@REV]/NAME; omit to list the shipped codecs")


def run(args: argparse.Namespace) -> int:
    if not args.codec:
        for name in list_codecs():
            cfg = codec_card(name)["config"]
            print(f"{name:12s} channels={cfg['channels']} J={cfg['J']} latent_dim={cfg['latent_dim']}")
        return 0
    print(json.dumps(describe(args.codec), indent=2))
    return 0
