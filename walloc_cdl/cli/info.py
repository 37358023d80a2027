"""``walloc-cdl info [CODEC]``: the shipped codecs, or one codec's card (``--json``: everything)."""
from __future__ import annotations

import argparse
import json

HELP = "describe a codec (shipped name, .pth or .safetensors) or list shipped codecs"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("codec", nargs="?", help="shipped codec name, official .pth (+ .json), .safetensors or hub "
                                            "name hf://ORG/REPO[@REV]/NAME; omit to list the shipped codecs")
    p.add_argument("--json", action="store_true", help="everything known about it (config, card, training record)")


def card_lines(d: dict) -> list[str]:
    """A short card: what it is, what it does to an input, how well, and where it came from."""
    cfg = d["config"]
    kind = "audio" if d["kind"] == "Codec1D" else "images"
    grid = f"{d['downsampling_per_side']}x fewer samples per axis"
    lines = [f"{d['codec']}: {d['kind']} for {kind}, {cfg['channels']} channel(s) -> {cfg['latent_dim']} latent "
             f"channels of {cfg['latent_bits']} bits; {grid}, {d['dimensionality_reduction']:.1f}x fewer values",
             f"parameters: encoder {d['encoder_params']:,}, decoder {d['decoder_params']:,}",
             f"encoder sha256 {d['encoder_sha256'][:16]}  (equal = equal latents)"]
    held = (d.get("card") or {}).get("held_out") or {}
    flat = {}
    for name, res in held.items() if isinstance(held, dict) else []:   # audio cards nest one level deeper
        if isinstance(res, dict) and "psnr" not in res:
            flat.update({k: v for k, v in res.items() if isinstance(v, dict)})
        else:
            flat[name] = res
    for name, res in list(flat.items())[:3]:
        if isinstance(res, dict) and "psnr" in res:
            cr = res.get("cr_webp")
            lines.append(f"held out {name}: {res['psnr']:.2f} dB PSNR" + (f", compression ratio {cr:.1f} (lossless "
                                                                           "WebP latents)" if cr else ""))
    created = (d.get("card") or {}).get("created")
    if created:
        lines.append(f"trained {created}; `walloc-cdl info {d['codec']} --json` for the whole card")
    return lines


def run(args: argparse.Namespace) -> int:
    from ..codec.checkpoints import codec_card, describe, list_codecs

    if not args.codec:
        for name in list_codecs():
            cfg = codec_card(name)["config"]
            print(f"{name:12s} channels={cfg['channels']} J={cfg['J']} latent_dim={cfg['latent_dim']}")
        return 0
    d = describe(args.codec)
    print(json.dumps(d, indent=2) if args.json else "\n".join(card_lines(d)))
    return 0
