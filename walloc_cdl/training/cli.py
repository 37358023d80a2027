"""``walloc-cdl train-codec``: train a WaLLoC codec on your own images or audio, from a closed-form start.

Examples::

    walloc-cdl train-codec --preset rgb-16x --data photos/ --out runs/rgb16 --time-budget 600
    walloc-cdl train-codec --preset stereo-5x --data music/ --out runs/st5 --steps 20000 --device cuda
    walloc-cdl train-codec --channels 6 --J 3 --latent-dim 24 --Nd 128 --data tiffs/ --out runs/ms
    walloc-cdl train-codec --preset rgb-16x --data photos/ --out runs/rgb16 --resume
    walloc-cdl train-codec --init rgb-16x --freeze-encoder --data my_photos/ --out runs/rgb16-mine --time-budget 3600

``--init`` fine-tunes a trained codec (a shipped name or a saved file) instead of starting from the closed
form; with ``--freeze-encoder`` only the decoder trains, so latents stay bit-identical and latent shards and
models built with the starting codec stay valid.  ``--gain-factor K`` first moves that codec along its
rate-distortion curve (a K× finer quantisation step: more bits, higher PSNR; new latents), e.g.
``--init rgb-16x --freeze-encoder --gain-factor 2`` (``benchmarks/codec_rd.py --gain-sweep`` shows the curve).

``--data`` takes image folders, saved HF datasets / data files, WebDataset tars, idx files or audio
folders (anything :func:`walloc_cdl.data.sources.open_source` reads), several at once.
The result is ``OUT/NAME.safetensors`` + ``OUT/NAME.json`` (load with ``walloc_cdl.load_codec(path)``);
checkpoints, previews and a JSONL log go to ``OUT/``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch

from ..codec.bottleneck import companding_scale
from ..codec.checkpoints import codec_card, list_codecs, load_codec, save_codec, state_dict_sha256
from ..codec.model import build_codec
from .batches import CropSampler, MixedSampler, SegmentSampler, load_items
from .pca import (cap_gains, channel_peaks, init_linear_decoder, init_linear_encoder, init_post_filter,
                  linear_reconstruction, scale_latent_gain, wavelet_pca)
from .presets import PRESETS, preset
from .trainer import TrainConfig, train, val_psnr


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[0] + " Trains with MSE, AdamW, warmup + cosine decay, random crops."
    g = p.add_argument_group("codec (a preset, or explicit sizes; explicit values override the preset)")
    g.add_argument("--preset", choices=sorted(PRESETS), help="shipped configuration and its training defaults")
    g.add_argument("--ndim", type=int, choices=(1, 2), help="2: images (Codec2D, default), 1: audio (Codec1D)")
    g.add_argument("--channels", type=int, help="input channels (3 RGB, 1 gray, 2 stereo, 6 multispectral...)")
    g.add_argument("--J", type=int, help="wavelet packet levels (downsampling 2^J per side)")
    g.add_argument("--latent-dim", type=int, help="latent channels")
    g.add_argument("--latent-bits", type=int, help="bits per latent entry (8 fits image containers)")
    g.add_argument("--Nd", type=int, help="decoder width (multiple of 32 for 2D; of latent-dim for 1D)")
    g.add_argument("--no-post-filter", action="store_true", help="1D: no 129-tap post filter")
    g.add_argument("--init", metavar="CODEC",
                   help="fine-tune this trained codec (shipped name, .safetensors, or official .pth + .json) "
                        "instead of starting from the closed form; its config is used")
    g.add_argument("--freeze-encoder", action="store_true",
                   help="train the decoder only: latents stay bit-identical to the starting codec's, so "
                        "latent datasets and models made with it stay valid (use with --init)")
    g.add_argument("--round-latents", action="store_true",
                   help="with --freeze-encoder: the decoder trains on rounded latents, exactly what it decodes "
                        "later, instead of the noisy proxy that an encoder in training needs")
    g.add_argument("--gain-factor", type=float, metavar="K",
                   help="with --init: multiply the codec's encoder gain by K before fine-tuning (finer quantisation "
                        "step, about log2 K more bits per latent entry, so a lower compression ratio and a higher "
                        "PSNR); the decoder's input is scaled back, so it starts from the same function. "
                        "Latents change: datasets made with the starting codec no longer match")
    d = p.add_argument_group("data")
    d.add_argument("--data", nargs="+", required=True,
                   help="training sources (folders, tars, HF datasets, idx); several share the batches equally")
    d.add_argument("--val", nargs="+", help="validation sources (default: fixed crops of the training data)")
    d.add_argument("--crop", type=int, nargs="+",
                   help="image crop side (default 256, or the preset's); several sizes take turns batch by batch "
                        "(e.g. 28 128 for small and large latent grids; --batch-size counts crops of the first, "
                        "larger ones get proportionally fewer)")
    d.add_argument("--min-scale", type=float, help="random downscale of crops: window crop/s, s in [min, 1]")
    d.add_argument("--max-side", type=int, default=None, help="shrink images whose longer side exceeds this")
    d.add_argument("--segment", type=int, help="audio segment length in samples (default 2^15)")
    d.add_argument("--sample-rate", type=int, default=44100, help="audio is resampled to this rate")
    d.add_argument("--val-size", type=int, default=16, help="validation crops/segments")
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=10_000, help="maximum optimizer steps")
    o.add_argument("--time-budget", type=float, help="stop after this many seconds (the schedule follows it)")
    o.add_argument("--batch-size", type=int, help="crops per step (default 32, or the preset's)")
    o.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate")
    o.add_argument("--warmup", type=int, default=200, help="linear warmup steps")
    o.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay")
    o.add_argument("--decoder-only-steps", type=int, default=None,
                   help="first steps train only the decoder, encoder kept at its closed form (default 10%%)")
    o.add_argument("--tf-weight", type=float, default=0.0, help="weight of the transform-domain MSE")
    o.add_argument("--rho", type=float, help="closed-form quantisation: noise on the kept latents = rho x the "
                   "truncation error (smaller = finer step, more bits; default: the preset's, else 0.1)")
    o.add_argument("--step", type=float, help="closed-form quantisation step in transform units (overrides rho)")
    o.add_argument("--headroom", type=float,
                   help="closed form: scale down latent channels whose peaks exceed this many companding scales "
                        "(default 2.5 for audio, whose peaks saturate the companding; 0 = off)")
    o.add_argument("--pca-batches", type=int, default=8, help="batches for the closed-form PCA")
    o.add_argument("--free-encoder-gain", action="store_true",
                   help="let the encoder's gain drift (the rate then grows); default pins it")
    o.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    o.add_argument("--keep-last", action="store_true",
                   help="result = last weights (default: the best validation PSNR seen, the start included)")
    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, help="output folder: NAME.safetensors/.json, ckpt/, previews, log")
    r.add_argument("--name", help="codec name (default: the preset, else 'codec')")
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--resume", action="store_true", help="continue from OUT/ckpt/last.*")
    r.add_argument("--val-every", type=int, default=500, help="steps between validation PSNR and previews")
    r.add_argument("--checkpoint-every", type=int, default=2000, help="steps between checkpoints (for --resume)")
    r.add_argument("--half", action="store_true", help="store the decoder in fp16 (as shipped codecs are)")
    r.add_argument("--seed", type=int, default=0, help="seed of crops, noise and initialisation")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")


def _resolve(args: argparse.Namespace, init_cfg: dict[str, Any] | None = None,
             init_training: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(codec config, data/training defaults) from the preset and explicit options (or the ``--init`` codec,
    whose card's crops, scale range, segment and batch size are the defaults when it is not a preset)."""
    base = preset(args.preset) if args.preset else {"codec": {}, "kind": None}
    if init_training:
        base.update({k: init_training[k] for k in ("crop", "min_scale", "segment", "batch_size") if k in init_training})
    if init_cfg is not None:
        for key in ("channels", "J", "latent_dim", "latent_bits", "Nd"):
            val = getattr(args, key)
            if val is not None and val != init_cfg.get(key):
                raise SystemExit(f"train-codec: --{key.replace('_', '-')} {val} contradicts --init {args.init} "
                                 f"({key} = {init_cfg.get(key)}); drop it to fine-tune that codec as it is")
        base = {**base, "codec": dict(init_cfg)}
    cfg = dict(base["codec"])
    ndim = args.ndim or (1 if "post_filter" in cfg else 2)
    for key, val in (("channels", args.channels), ("J", args.J), ("latent_dim", args.latent_dim),
                     ("latent_bits", args.latent_bits), ("Nd", args.Nd)):
        if val is not None:
            cfg[key] = val
    cfg.setdefault("Ne", None)
    cfg.setdefault("latent_bits", 8)
    cfg.setdefault("lightweight_encode", True)
    cfg.setdefault("Nd", 128 if ndim == 2 else 4 * cfg.get("latent_dim", 1))
    if ndim == 1:
        cfg["post_filter"] = not args.no_post_filter and cfg.get("post_filter", True)
    missing = [k for k in ("channels", "J", "latent_dim") if k not in cfg]
    if missing:
        raise SystemExit(f"train-codec: missing {', '.join('--' + m.replace('_', '-') for m in missing)}")
    kind = "audio" if ndim == 1 else "image"
    extra = {"kind": kind, "crop": args.crop or _as_list(base.get("crop", 256)), "segment": args.segment or base.get("segment", 2 ** 15),
             "min_scale": args.min_scale if args.min_scale is not None else base.get("min_scale", 1.0),
             "rho": args.rho if args.rho is not None else base.get("rho", 0.1),
             "headroom": args.headroom if args.headroom is not None else base.get("headroom", 2.5 if kind == "audio" else 0.0),
             "batch_size": args.batch_size or base.get("batch_size", 32)}
    return cfg, extra


def run(args: argparse.Namespace) -> int:
    init = _load_init(args.init) if args.init else None
    if init is not None and args.preset is None and args.init in PRESETS:
        args.preset = args.init  # a shipped codec fine-tunes with its own crops and batch by default
    cfg, extra = _resolve(args, init.config if init is not None else None,
                          _card_training(args.init) if init is not None and args.preset is None else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or args.preset or (_init_name(args.init) if init is not None else "codec")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    codec = (init if init is not None else build_codec(cfg)).to(device)
    # read before training: the start's encoder hash, and its card (which --out may later overwrite)
    init_rec = _init_record(args.init, state_dict_sha256(codec.encoder)) if init is not None else None
    if args.gain_factor is not None:
        if init is None:
            raise SystemExit("train-codec: --gain-factor rescales a trained codec; give it one with --init")
        scale_latent_gain(codec, args.gain_factor)
        init_rec["gain_factor"] = args.gain_factor
        init_rec["rescaled_encoder_sha256"] = state_dict_sha256(codec.encoder)
    kind, progress = extra["kind"], not args.no_progress
    sources: list[int] = []
    items = load_items(args.data, kind, cfg["channels"], device, args.sample_rate, args.max_side, progress=progress,
                       sources=sources)
    if kind == "image":
        def make(data, seed, src=None):
            crops = [CropSampler(data, c, extra["min_scale"], seed + k, src) for k, c in enumerate(extra["crop"])]
            return crops[0] if len(crops) == 1 else MixedSampler(crops)
    else:
        make = lambda data, seed, src=None: SegmentSampler(data, extra["segment"], seed=seed, sources=src)  # noqa: E731
    sampler = make(items, args.seed, sources if len(args.data) > 1 else None)
    if args.val:
        val_items = load_items(args.val, kind, cfg["channels"], device, args.sample_rate, args.max_side, progress=progress)
        val, val_from = make(val_items, 1).fixed(args.val_size), "validation sources"
    else:
        val, val_from = sampler.fixed(args.val_size), "fixed crops of the training data"
    print(f"{name}: {cfg}; {len(items)} training items on {device}; validation: {val_from}")
    if args.gain_factor is not None:
        _warn_saturation(codec, val, args.gain_factor)

    closed: dict[str, Any] = {}
    if init is not None:
        print(f"fine-tuning {args.init} (no closed form){'; encoder frozen' if args.freeze_encoder else ''}"
              f"{f'; encoder gain x{args.gain_factor:g}' if args.gain_factor is not None else ''}")
    elif not args.resume:
        pca = wavelet_pca(codec, (sampler.sample(extra["batch_size"]) for _ in range(args.pca_batches)))
        step = args.step or pca.step_for(extra["rho"])
        gain = init_linear_encoder(codec, pca, step)
        capped = cap_gains(codec, (sampler.sample(extra["batch_size"]) for _ in range(4 * args.pca_batches)),
                           extra["headroom"]) if extra["headroom"] > 0 else 0
        if kind == "audio":
            init_post_filter(codec)
            init_linear_decoder(codec, pca)  # the Oobleck decoder can start as the linear decoder exactly
        kept = float(pca.variances[: cfg["latent_dim"]].sum() / pca.variances.sum())
        closed = {"rho": None if args.step else extra["rho"], "step": step, "gain": gain, "headroom": extra["headroom"] or None,
                  "capped_channels": capped, "positions": pca.n_samples,
                  "variance_kept": kept, "val_psnr_linear": val_psnr(codec, val, lambda v: linear_reconstruction(codec, pca, v))}
        print(f"closed form: PCA keeps {100 * kept:.2f}% of the variance; linear codec val PSNR "
              f"{closed['val_psnr_linear']:.2f} dB (step {step:.4g}, gain {gain:.3g}, {capped} channels capped "
              f"to the companding headroom)")
    tc = TrainConfig(steps=args.steps, batch_size=extra["batch_size"], lr=args.lr, warmup=args.warmup,
                     weight_decay=args.weight_decay, tf_weight=args.tf_weight, time_budget=args.time_budget,
                     decoder_only_steps=(args.decoder_only_steps if args.decoder_only_steps is not None
                                         else 0 if init is not None else args.steps // 10),
                     freeze_encoder=args.freeze_encoder, round_latents=args.round_latents,
                     amp=not args.no_amp, keep_best=not args.keep_last, pin_encoder_gain=not args.free_encoder_gain, val_every=args.val_every,
                     checkpoint_every=args.checkpoint_every, seed=args.seed)
    summary = train(codec, sampler, tc, out, val=val, resume=args.resume, progress=progress)
    card = {"name": name, "created": _dt.date.today().isoformat(),
            "training": {"data": [str(d) for d in args.data], "items": len(items), "kind": kind,
                         **({"crop": extra["crop"][0] if len(extra["crop"]) == 1 else extra["crop"], "min_scale": extra["min_scale"]} if kind == "image"
                            else {"segment": extra["segment"], "sample_rate": args.sample_rate}),
                         "validation": val_from, "closed_form": closed,
                         **({"init": init_rec} if init_rec else {}), **summary},
            "storage": "decoder fp16, encoder fp32" if args.half else "fp32"}
    path = save_codec(codec, out / f"{name}.safetensors", metadata=card, half_decoder=args.half)
    print(json.dumps({"saved": str(path), "val_psnr": summary["val_psnr"], "steps": summary["steps"]}))
    return 0


def _warn_saturation(codec: torch.nn.Module, val: torch.Tensor, factor: float, headroom: float = 2.5) -> None:
    """Say when the raised gain pushes latent channels into the flat tails of the companding (beyond
    ``headroom`` scales, as ``--headroom``/``cap_gains``), where rounding is coarse and ``ToNormal`` clips past
    3.7 (``codec_rd.py --gain-sweep``: the RGB codecs lose 2-4 dB there)."""
    peaks = channel_peaks(codec, [val[i:i + 8] for i in range(0, len(val), 8)]) / companding_scale(codec.latent_bits)
    over = [(c, round(float(p), 1)) for c, p in enumerate(peaks) if p > headroom]
    if over:
        print(f"warning: with --gain-factor {factor:g}, {len(over)} of {len(peaks)} latent channels peak beyond "
              f"{headroom:g} companding scales on the validation crops (channel, peak: {over}); their large values "
              "will clip. A smaller factor keeps them in range.")


def _load_init(spec: str) -> torch.nn.Module:
    try:
        return load_codec(spec).train()
    except FileNotFoundError as e:
        raise SystemExit(f"train-codec: --init {spec}: not a file and not a shipped codec ({', '.join(list_codecs())})") from e


def _init_name(spec: str) -> str:
    return Path(spec).stem if spec not in list_codecs() else spec


def _init_record(spec: str, encoder_sha: str) -> dict[str, Any]:
    """Where a fine-tune started: the codec, its encoder's hash (equal hashes = equal latents) and its training."""
    rec: dict[str, Any] = {"from": spec, "encoder_sha256": encoder_sha}
    card = _init_card(spec)
    if card:
        rec["training"] = card.get("training")
    return rec


def _init_card(spec: str) -> dict[str, Any] | None:
    """The card of the codec given to ``--init``: a shipped one's, or the JSON beside a file (None without)."""
    return codec_card(spec) if spec in list_codecs() else _card_beside(Path(spec))


def _card_training(spec: str) -> dict[str, Any] | None:
    """The ``training`` record of that card (None without one)."""
    training = (_init_card(spec) or {}).get("training")
    return training if isinstance(training, dict) else None


def _card_beside(path: Path) -> dict[str, Any] | None:
    js = path.with_suffix(".json")
    try:
        return json.loads(js.read_text()) if js.exists() else None
    except (OSError, ValueError):
        return None


def _as_list(crop: int | tuple[int, ...] | list[int]) -> list[int]:
    return list(crop) if isinstance(crop, (tuple, list)) else [crop]
