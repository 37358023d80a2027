"""Train a WaLLoC codec: the loop (:func:`fit`) and the whole ``walloc-cdl train-codec`` job (:func:`train_codec`).

The paper's recipe (Jacobellis & Yadwadkar, DCC 2025): random crops (segments), additive uniform noise
in place of rounding (``Round`` in train mode), loss ``MSE(x, x̂) + tf_weight · MSE(X, X̂)``, AdamW with a
linear warmup then a cosine decay.  Additions:

* a closed-form start (:mod:`.pca`) and an optional decoder-only phase while the encoder stays PCA;
* the encoder's row norms are pinned to their initial value after every step (``pin_encoder_gain``):
  without a rate term the gain would only grow (less relative noise), so pinning it keeps the rate,
  and so the compression ratio, where the closed form put it;
* bf16 autocast on CUDA for the decoder only: wavelets, encoder and companding stay fp32, since a
  latent of magnitude ~100 in bf16 would carry more error than the quantiser itself;
* the schedule can run on a wall-clock budget: progress = max(step / steps, elapsed / time_budget);
* ``keep_best``: the weights with the best validation PSNR seen (the start included) are the result,
  so a good closed-form start (the 1D linear decoder) is never lost to a short noisy run;
* ``freeze_encoder`` fine-tunes the decoder of a trained codec with its latents bit-identical;
  ``round_latents`` then trains it on the integers it will decode rather than on the noise proxy.

The run folder ``OUT``: ``checkpoints/last.safetensors`` (the format of :mod:`.loop`, as ``walloc-cdl
train`` writes: codec, best weights so far, AdamW moments, the samplers' and every generator's state), so
``resume`` continues exactly: a run on a step budget, resumed on the CPU, ends with the weights of one never
interrupted (a time budget follows the clock, so it cannot); ``log.jsonl`` (one line every 25 steps and at
each validation), ``preview_STEP.png`` (originals above reconstructions) and the result ``NAME.safetensors``
+ ``NAME.json`` (its card).

Usage::

    train_codec(CodecTrainSettings(preset="rgb-16x", data=["photos/"], out="runs/rgb16", time_budget=600))
    summary = fit(codec, sampler, CodecTrainSettings(steps=2000), "runs/rgb", val=sampler.fixed(16))
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..codec.bottleneck import companding_scale
from ..codec.checkpoints import codec_card, list_codecs, load_codec, preset, save_codec, state_dict_sha256
from ..codec import Codec1D, Codec2D, build_codec
from .batches import CropSampler, MixedSampler, SegmentSampler, load_items
from .loop import CheckpointError, Stepper, checkpoint_state, load_checkpoint, save_checkpoint
from .pca import (cap_gains, channel_peaks, init_linear_decoder, init_linear_encoder, init_post_filter,
                  linear_reconstruction, scale_latent_gain, wavelet_pca)

CHECKPOINT = Path("checkpoints") / "last.safetensors"
LOG_NAME = "log.jsonl"
DEFAULT_BATCH = 32


@dataclass
class CodecTrainSettings:
    """Every setting of a codec training run: the keys ``train-codec --config FILE`` takes.

    None means "resolved later": from the preset, from the ``init`` codec's card, or a generic default."""

    # the codec: a preset, a trained codec to fine-tune (init), or explicit sizes (these override a preset)
    preset: str | None = None
    init: str | None = None
    ndim: int | None = None               # 2: images (Codec2D), 1: audio (Codec1D)
    channels: int | None = None
    J: int | None = None
    latent_dim: int | None = None
    latent_bits: int | None = None
    Nd: int | None = None
    post_filter: bool = True              # 1D: the 129-tap post filter
    freeze_encoder: bool = False          # decoder only: latents stay bit-identical to the init codec's
    round_latents: bool = False           # frozen encoder only: the decoder sees round(z), not z + noise
    gain_factor: float | None = None      # init only: encoder gain x K first (finer step, new latents)
    # data
    data: list[str] = field(default_factory=list)
    val: list[str] | None = None          # validation sources (default: fixed crops of the training data)
    crop: list[int] | None = None         # image crop sides; several take turns batch by batch
    min_scale: float | None = None        # random downscale: window crop/s, s uniform in [min_scale, 1]
    max_side: int | None = None
    segment: int | None = None            # audio segment length in samples
    sample_rate: int = 44100
    val_size: int = 16
    # optimisation
    steps: int = 10_000
    time_budget: float | None = None      # seconds; the schedule follows it
    batch_size: int | None = None
    lr: float = 5e-4
    min_lr_ratio: float = 0.02
    warmup: int = 200
    weight_decay: float = 1e-2
    decoder_only_steps: int | None = None  # default: 10% of steps from the closed form, 0 from init
    tf_weight: float = 0.0
    grad_clip: float = 1.0
    pin_encoder_gain: bool = True
    amp: bool = True
    keep_best: bool = True
    # closed-form start
    rho: float | None = None              # quantisation noise = rho x truncation error (:mod:`.pca`)
    step: float | None = None             # the quantisation step itself (overrides rho)
    headroom: float | None = None         # cap channel peaks at this many companding scales (0 = off)
    pca_batches: int = 8
    # the run
    out: str | None = None
    name: str | None = None
    device: str = "auto"
    resume: bool = False
    val_every: int = 500
    checkpoint_every: int = 2000
    half: bool = False                    # store the decoder in fp16, as the shipped codecs are
    seed: int = 0
    progress: bool = True


def warmup_cosine(step: int, warmup: int, progress: float, min_ratio: float = 0.0) -> float:
    """Linear warmup over ``warmup`` steps, times a cosine from 1 to ``min_ratio`` as ``progress`` goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * (min_ratio + (1 - min_ratio) * cos)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB for signals of range 1 (the codec's [-0.5, 0.5])."""
    mse = F.mse_loss(x.float(), y.float()).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def reconstruct(codec: Codec1D | Codec2D, x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Eval-mode round trip (true rounding), in chunks; restores the codec's train/eval mode."""
    was = codec.training
    codec.eval()
    out = torch.cat([codec.decode(codec.encode(x[i:i + chunk])) for i in range(0, x.shape[0], chunk)])
    codec.train(was)
    return out


def val_psnr(codec: Codec1D | Codec2D, val: torch.Tensor | Sequence[torch.Tensor],
             rebuild: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Eval-mode PSNR of ``val`` (or of ``rebuild(val)``); for a list (one batch per crop size) the mean over
    sizes, so each counts alike."""
    vals = [val] if isinstance(val, torch.Tensor) else list(val)
    return sum(psnr(rebuild(v) if rebuild else reconstruct(codec, v), v) for v in vals) / len(vals)


def _forward(codec: Codec1D | Codec2D, x: torch.Tensor, amp: bool, train_encoder: bool,
             tf_weight: float, round_latents: bool = False) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        X = codec.wavelet_analysis(x, J=codec.J)
        with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()):
            if round_latents:   # eval-mode Round: the integers the decoder will be given after training
                codec.encoder.eval()
            try:
                v = codec.decoder[0](codec.encoder(X))  # companding + noise (or rounding) + inverse companding, fp32
            finally:
                codec.encoder.train(codec.training)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        X_hat = codec.decoder[1](v)
    X_hat = X_hat.float()
    x_hat = codec.synthesize(X_hat)
    loss = F.mse_loss(x_hat, x)
    if tf_weight:
        loss = loss + tf_weight * F.mse_loss(X_hat, X)
    return loss


def _encoder_conv(codec: Codec1D | Codec2D) -> torch.nn.Module | None:
    first = codec.encoder[0]
    return first if isinstance(first, (torch.nn.Conv1d, torch.nn.Conv2d)) else None


def _row_norms(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1).norm(dim=1)


# -- previews ---------------------------------------------------------------------------------------
def _spectrogram(x: torch.Tensor) -> np.ndarray:
    """Log-magnitude STFT of one channel as uint8 (frequency up), for audio previews."""
    from ..data.transforms import spectrogram_db

    return ((spectrogram_db(x) + 100) / 100 * 255)[::-1].astype(np.uint8)


def save_preview(x: torch.Tensor, x_hat: torch.Tensor, path: str | Path, n: int = 4) -> Path:
    """PNG grid: originals in the top row, reconstructions below (audio: spectrograms of channel 0)."""
    x, x_hat = x[:n].detach().float().cpu(), x_hat[:n].detach().float().cpu()
    if x.ndim == 3:
        rows = [np.concatenate([_spectrogram(a[0]) for a in t], axis=1) for t in (x, x_hat)]
        img = Image.fromarray(np.concatenate(rows, axis=0), "L")
    else:
        c = x.shape[1]
        pick = (lambda t: t[:, :3]) if c >= 3 else (lambda t: t[:, :1])
        rows = [torch.cat(list(pick(t)), dim=-1) for t in (x, x_hat)]
        grid = ((torch.cat(rows, dim=-2) + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        a = grid.permute(1, 2, 0).numpy()
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a, "L" if a.shape[-1] == 1 else "RGB")
    path = Path(path)
    img.save(path)
    return path


def _preview(codec: Codec1D | Codec2D, val: torch.Tensor | Sequence[torch.Tensor] | None, out: Path, step: int) -> None:
    if val is not None:
        v = val if isinstance(val, torch.Tensor) else val[-1]   # a list: the largest crop size
        save_preview(v, reconstruct(codec, v[:4]), out / f"preview_{step:07d}.png")


def _truncate_log(path: Path, step: int) -> None:
    """Drop the lines after ``step``: those a killed run wrote after its last checkpoint, so the resumed log
    has each step once."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines(keepends=True) if json.loads(line)["step"] <= step]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(keep))
        tmp.replace(path)


# -- the loop ---------------------------------------------------------------------------------------
def fit(codec: Codec1D | Codec2D, sampler: Any, settings: CodecTrainSettings, out: str | Path,
        val: torch.Tensor | Sequence[torch.Tensor] | None = None, resume: bool = False, progress: bool = True,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``codec`` in place on ``sampler.sample(batch)`` batches into the run folder ``out``; returns a
    summary for the card.  Reads the optimisation fields of ``settings`` (steps ... keep_best, val_every,
    checkpoint_every, seed); ``resume`` continues from ``out/checkpoints/last.safetensors``."""
    s, out = settings, Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = next(codec.parameters()).device
    amp = s.amp and device.type == "cuda"
    batch, decoder_only = s.batch_size or DEFAULT_BATCH, s.decoder_only_steps or 0
    if s.round_latents and not s.freeze_encoder:
        raise ValueError("round_latents needs freeze_encoder: rounding passes no gradient to the encoder, "
                         "which trains through the noise proxy")
    torch.manual_seed(s.seed)
    enc_params = list(codec.encoder.parameters())
    dec_params = [p for n, p in codec.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params}, {"params": dec_params}], lr=s.lr,
                            weight_decay=s.weight_decay, betas=(0.9, 0.99))
    conv = _encoder_conv(codec)
    pinned = (_row_norms(conv.weight.detach()).clone()
              if (conv is not None and s.pin_encoder_gain and not s.freeze_encoder) else None)
    if s.freeze_encoder:  # no gradient, no optimizer state, no weight decay: the latents stay bit-identical
        for p in enc_params:
            p.requires_grad_(False)
    frozen = _snapshot(codec.encoder) if s.freeze_encoder else None
    best = copy.deepcopy(codec) if (s.keep_best and val is not None) else None
    modules = {"codec": codec, **({"best": best} if best is not None else {})}
    ckpt = out / CHECKPOINT
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from")
        saved = checkpoint_state(ckpt)
        if saved.get("config") != codec.config or saved.get("keep_best") != (best is not None):
            raise CheckpointError(f"{ckpt}: written for codec {saved.get('config')} with keep_best "
                                  f"{saved.get('keep_best')}, not {codec.config} with keep_best {best is not None}; "
                                  "resume with the same settings, or train into a new out folder")
        st = load_checkpoint(ckpt, modules, opt, named_params=codec.named_parameters)
        sampler.load_state_dict(st["sampler"])
        if pinned is not None and st["pinned_norms"] is not None:
            pinned = torch.tensor(st["pinned_norms"], device=device)
        _truncate_log(out / LOG_NAME, st["step"])
        log(f"resumed from {ckpt} at step {st['step']} ({st['elapsed_s']:.0f} s trained)")
    else:
        start_val = val_psnr(codec, val) if val is not None else None
        st = {"step": 0, "elapsed_s": 0.0, "config": codec.config, "keep_best": best is not None,
              "val_psnr_start": start_val, "last_val": start_val, "best_val": start_val, "best_step": 0,
              "loss_ema": None}
        _truncate_log(out / LOG_NAME, 0)   # a new run, a new log

    def pin() -> None:  # after every optimizer step: the encoder's gain, so the rate, stays where it was
        with torch.no_grad():
            w = conv.weight
            w.mul_((pinned / _row_norms(w).clamp_min(1e-12)).reshape(-1, *([1] * (w.ndim - 1))))

    # the Stepper's own autocast would cover the whole forward: _forward puts only the decoder in bf16
    stepper = Stepper(codec, opt, device, amp=False, grad_clip=s.grad_clip or None,
                      after_step=pin if pinned is not None else None)
    step = int(st["step"])
    t0 = time.perf_counter() - float(st["elapsed_s"])

    def save() -> None:
        st.update(step=step, elapsed_s=round(time.perf_counter() - t0, 2), sampler=sampler.state_dict(),
                  pinned_norms=pinned.tolist() if pinned is not None else None)
        save_checkpoint(ckpt, modules, opt, st, named_params=codec.named_parameters)

    logf = (out / LOG_NAME).open("a")
    codec.train()
    # a wall-clock budget ends the run long before s.steps: then the bar counts seconds, so its ETA is true
    by_time = bool(s.time_budget)
    bar = tqdm(total=round(s.time_budget) if by_time else s.steps,
               initial=round(float(st["elapsed_s"])) if by_time else step,
               unit="s" if by_time else "it", disable=not progress, desc="train", dynamic_ncols=True)
    try:
        while step < s.steps:
            elapsed = time.perf_counter() - t0
            frac = step / s.steps
            if s.time_budget:
                if elapsed >= s.time_budget:
                    break
                frac = max(frac, elapsed / s.time_budget)
            f = warmup_cosine(step, s.warmup, frac, s.min_lr_ratio)
            train_encoder = step >= decoder_only and not s.freeze_encoder
            for i, group in enumerate(opt.param_groups):
                group["lr"] = s.lr * f * (1.0 if (i == 1 or train_encoder) else 0.0)
            x = sampler.sample(batch)
            loss = stepper(lambda: _forward(codec, x, amp, train_encoder, s.tf_weight, s.round_latents))
            step += 1
            li = loss.item() if (step % 25 == 0 or step == s.steps) else None
            if li is not None:
                st["loss_ema"] = li if st["loss_ema"] is None else 0.9 * st["loss_ema"] + 0.1 * li
                bar.set_postfix(step=step, loss=f"{st['loss_ema']:.2e}",
                                psnr=f"{10 * math.log10(1 / max(st['loss_ema'], 1e-12)):.2f}",
                                val=f"{st['last_val']:.2f}" if st["last_val"] else "-", lr=f"{s.lr * f:.1e}")
            bar.update(min(round(time.perf_counter() - t0), bar.total) - bar.n if by_time else 1)
            validated = val is not None and bool(s.val_every) and step % s.val_every == 0
            if validated:
                st["last_val"] = val_psnr(codec, val)
                if best is not None and st["last_val"] > st["best_val"]:
                    st["best_val"], st["best_step"] = st["last_val"], step
                    best.load_state_dict(codec.state_dict())
            if li is not None or validated:
                rec = {"step": step, "loss": li, "lr": s.lr * f, "elapsed_s": round(time.perf_counter() - t0, 2),
                       **({"val_psnr": st["last_val"]} if validated else {})}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()  # so `tail -f log.jsonl` follows a long run
            if s.checkpoint_every and step % s.checkpoint_every == 0:
                save()
                _preview(codec, val, out, step)
    finally:
        bar.close()
        logf.close()
    if val is not None:
        st["last_val"] = val_psnr(codec, val)
    save()   # the training position (last weights; the best ones beside them): --resume with more steps goes on
    final_val, result_step = st["last_val"], step
    if best is not None and st["last_val"] < st["best_val"]:
        codec.load_state_dict(best.state_dict())
        log(f"kept the weights of step {st['best_step']} (val PSNR {st['best_val']:.2f} > final {final_val:.2f})")
        final_val, result_step = st["best_val"], st["best_step"]
    _preview(codec, val, out, step)
    if frozen is not None and any(not torch.equal(v, frozen[k]) for k, v in codec.encoder.state_dict().items()):
        raise RuntimeError("the encoder changed under freeze_encoder")  # would silently invalidate users' shards
    codec.eval()
    summary = {"steps": step, "train_seconds": round(st["elapsed_s"], 1), "batch_size": batch,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "amp_bf16": amp, "val_psnr_start": st["val_psnr_start"], "val_psnr": final_val,
               "result_step": result_step, "final_loss_ema": st["loss_ema"], "optimizer": "AdamW",
               "settings": asdict(s),
               **({"encoder_frozen": True} if s.freeze_encoder else {}),
               **({"round_latents": True} if s.round_latents else {})}
    log(f"done: {step} steps in {st['elapsed_s']:.0f} s, val PSNR {st['val_psnr_start']} -> {final_val}")
    return summary


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# -- the train-codec job ----------------------------------------------------------------------------
def train_codec(settings: CodecTrainSettings | None = None, log: Callable[[str], None] = print,
                **overrides: Any) -> dict[str, Any]:
    """Resolve the codec (preset, ``init`` codec or explicit sizes), start it in closed form (or rescale the
    ``init`` codec's gain), train it with :func:`fit` and save ``OUT/NAME.safetensors`` + its card.

    Settings: ``settings`` and/or keyword overrides (fields of :class:`CodecTrainSettings`; None ignored).
    Returns ``{"saved": path, "val_psnr": dB, "steps": n, "card": {...}}``."""
    s = dataclasses.replace(settings or CodecTrainSettings(), **{k: v for k, v in overrides.items() if v is not None})
    data = [s.data] if isinstance(s.data, str) else list(s.data)
    if not data:
        raise ValueError("no training data: give data (--data SOURCE ...)")
    if not s.out:
        raise ValueError("no output folder: give out (--out DIR)")
    init = _load_init(s.init) if s.init else None
    preset_name = s.preset or (s.init if init is not None and _has_preset(s.init) else None)
    # a shipped codec fine-tunes with its own crops and batch by default; another with its card's
    cfg, extra = resolve(s, preset_name, init.config if init is not None else None,
                         _card_training(s.init) if init is not None and preset_name is None else None)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    name = s.name or preset_name or (_init_name(s.init) if init is not None else "codec")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if s.device == "auto" else s.device)
    torch.manual_seed(s.seed)
    codec = (init if init is not None else build_codec(cfg)).to(device)
    # read before training: the start's encoder hash, and its card (which out may later overwrite)
    init_rec = _init_record(s.init, state_dict_sha256(codec.encoder)) if init is not None else None
    if s.gain_factor is not None:
        if init is None:
            raise ValueError("gain_factor rescales a trained codec; give it one with --init")
        scale_latent_gain(codec, s.gain_factor)
        init_rec["gain_factor"] = s.gain_factor
        init_rec["rescaled_encoder_sha256"] = state_dict_sha256(codec.encoder)
    kind = extra["kind"]
    sources: list[int] = []
    items = load_items(data, kind, cfg["channels"], device, s.sample_rate, s.max_side, progress=s.progress,
                       sources=sources)
    if kind == "image":
        def make(items_, seed, src=None):
            crops = [CropSampler(items_, c, extra["min_scale"], seed + k, src) for k, c in enumerate(extra["crop"])]
            return crops[0] if len(crops) == 1 else MixedSampler(crops)
    else:
        make = lambda items_, seed, src=None: SegmentSampler(items_, extra["segment"], seed=seed, sources=src)  # noqa: E731
    sampler = make(items, s.seed, sources if len(data) > 1 else None)
    if s.val:
        val_items = load_items([s.val] if isinstance(s.val, str) else s.val, kind, cfg["channels"], device,
                               s.sample_rate, s.max_side, progress=s.progress)
        val, val_from = make(val_items, 1).fixed(s.val_size), "validation sources"
    else:
        val, val_from = sampler.fixed(s.val_size), "fixed crops of the training data"
    log(f"{name}: {cfg}; {len(items)} training items on {device}; validation: {val_from}")
    if s.gain_factor is not None:
        _warn_saturation(codec, val, s.gain_factor, log)

    closed: dict[str, Any] = {}
    if init is not None:
        log(f"fine-tuning {s.init} (no closed form){'; encoder frozen' if s.freeze_encoder else ''}"
            f"{f'; encoder gain x{s.gain_factor:g}' if s.gain_factor is not None else ''}")
    elif not s.resume:
        closed = _closed_form(codec, sampler, extra, s, val, log)
    run = dataclasses.replace(s, preset=preset_name, data=data, batch_size=extra["batch_size"],
                              crop=extra["crop"] if kind == "image" else None,
                              min_scale=extra["min_scale"] if kind == "image" else None,
                              segment=extra["segment"] if kind == "audio" else None, rho=extra["rho"],
                              headroom=extra["headroom"],
                              decoder_only_steps=(s.decoder_only_steps if s.decoder_only_steps is not None
                                                  else 0 if init is not None else s.steps // 10))
    summary = fit(codec, sampler, run, out, val=val, resume=s.resume, progress=s.progress, log=log)
    block = preset(preset_name) if preset_name else None
    card = {**({"preset": {k: v for k, v in block.items() if k != "codec"}}
               if block is not None and block["codec"] == codec.config else {}),
            "name": name, "created": _dt.date.today().isoformat(),
            "training": {"data": data, "items": len(items), "kind": kind,
                         **({"crop": extra["crop"][0] if len(extra["crop"]) == 1 else extra["crop"],
                             "min_scale": extra["min_scale"]} if kind == "image"
                            else {"segment": extra["segment"], "sample_rate": s.sample_rate}),
                         "validation": val_from, "closed_form": closed,
                         **({"init": init_rec} if init_rec else {}), **summary},
            "storage": "decoder fp16, encoder fp32" if s.half else "fp32"}
    path = save_codec(codec, out / f"{name}.safetensors", metadata=card, half_decoder=s.half)
    return {"saved": str(path), "val_psnr": summary["val_psnr"], "steps": summary["steps"], "card": card}


def resolve(s: CodecTrainSettings, preset_name: str | None = None, init_cfg: dict[str, Any] | None = None,
            init_training: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(codec config, data/training defaults) from the preset and explicit settings (or the ``init`` codec,
    whose card's crops, scale range, segment and batch size are the defaults when it is not a preset)."""
    base = preset(preset_name) if preset_name else {"codec": {}, "kind": None}
    if init_training:
        base.update({k: init_training[k] for k in ("crop", "min_scale", "segment", "batch_size") if k in init_training})
    sizes = {k: getattr(s, k) for k in ("channels", "J", "latent_dim", "latent_bits", "Nd")}
    if init_cfg is not None:
        for key, val in sizes.items():
            if val is not None and val != init_cfg.get(key):
                raise ValueError(f"{key} = {val} contradicts --init {s.init} ({key} = {init_cfg.get(key)}); "
                                 "drop it to fine-tune that codec as it is")
        base = {**base, "codec": dict(init_cfg)}
    cfg = dict(base["codec"])
    ndim = s.ndim or (1 if "post_filter" in cfg else 2)
    cfg.update({k: v for k, v in sizes.items() if v is not None})
    cfg.setdefault("Ne", None)
    cfg.setdefault("latent_bits", 8)
    cfg.setdefault("lightweight_encode", True)
    cfg.setdefault("Nd", 128 if ndim == 2 else 4 * cfg.get("latent_dim", 1))
    if ndim == 1:
        cfg["post_filter"] = s.post_filter and cfg.get("post_filter", True)
    missing = [k for k in ("channels", "J", "latent_dim") if k not in cfg]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}: give --preset NAME, --init CODEC, or these keys in --config")
    kind = "audio" if ndim == 1 else "image"
    extra = {"kind": kind, "crop": _as_list(s.crop or base.get("crop", 256)), "segment": s.segment or base.get("segment", 2 ** 15),
             "min_scale": s.min_scale if s.min_scale is not None else base.get("min_scale", 1.0),
             "rho": s.rho if s.rho is not None else base.get("rho", 0.1),
             "headroom": s.headroom if s.headroom is not None else base.get("headroom", 2.5 if kind == "audio" else 0.0),
             "batch_size": s.batch_size or base.get("batch_size", DEFAULT_BATCH)}
    return cfg, extra


def _closed_form(codec: Codec1D | Codec2D, sampler: Any, extra: dict[str, Any], s: CodecTrainSettings,
                 val: torch.Tensor | Sequence[torch.Tensor], log: Callable[[str], None] = print) -> dict[str, Any]:
    """PCA encoder with the quantisation step of ``rho`` (or ``step``), gains capped to the headroom, and for
    audio the identity post filter and the exact linear decoder; returns the card's ``closed_form`` record."""
    pca = wavelet_pca(codec, (sampler.sample(extra["batch_size"]) for _ in range(s.pca_batches)))
    step = s.step or pca.step_for(extra["rho"])
    gain = init_linear_encoder(codec, pca, step)
    capped = cap_gains(codec, (sampler.sample(extra["batch_size"]) for _ in range(4 * s.pca_batches)),
                       extra["headroom"]) if extra["headroom"] > 0 else 0
    if extra["kind"] == "audio":
        init_post_filter(codec)
        init_linear_decoder(codec, pca)  # the Oobleck decoder can start as the linear decoder exactly
    kept = float(pca.variances[: codec.latent_dim].sum() / pca.variances.sum())
    closed = {"rho": None if s.step else extra["rho"], "step": step, "gain": gain, "headroom": extra["headroom"] or None,
              "capped_channels": capped, "positions": pca.n_samples, "variance_kept": kept,
              "val_psnr_linear": val_psnr(codec, val, lambda v: linear_reconstruction(codec, pca, v))}
    log(f"closed form: PCA keeps {100 * kept:.2f}% of the variance; linear codec val PSNR "
        f"{closed['val_psnr_linear']:.2f} dB (step {step:.4g}, gain {gain:.3g}, {capped} channels capped "
        "to the companding headroom)")
    return closed


def _warn_saturation(codec: torch.nn.Module, val: torch.Tensor | Sequence[torch.Tensor], factor: float,
                     log: Callable[[str], None], headroom: float = 2.5) -> None:
    """Say when the raised gain pushes latent channels into the flat tails of the companding (beyond
    ``headroom`` scales, as ``cap_gains``), where rounding is coarse and ``ToNormal`` clips past 3.7
    companding scales (``benchmarks/codec_rd.py --gain-sweep`` shows what that costs)."""
    vals = [val] if isinstance(val, torch.Tensor) else list(val)   # a list: one batch per crop size
    batches = [v[i:i + 8] for v in vals for i in range(0, len(v), 8)]
    peaks = channel_peaks(codec, batches) / companding_scale(codec.latent_bits)
    over = [(c, round(float(p), 1)) for c, p in enumerate(peaks) if p > headroom]
    if over:
        log(f"warning: with gain_factor {factor:g}, {len(over)} of {len(peaks)} latent channels peak beyond "
            f"{headroom:g} companding scales on the validation crops (channel, peak: {over}); their large values "
            "will clip. A smaller factor keeps them in range.")


def _has_preset(name: str) -> bool:
    try:
        preset(name)
    except KeyError:
        return False
    return True


def _load_init(spec: str) -> Codec1D | Codec2D:
    try:
        return load_codec(spec).train()
    except FileNotFoundError:
        raise FileNotFoundError(f"--init {spec}: not a file and not a shipped codec ({', '.join(list_codecs())})") from None


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
    """The card of the codec given to ``init``: a shipped one's, or the JSON beside a file (None without)."""
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


def _as_list(crop: int | Sequence[int]) -> list[int]:
    return list(crop) if isinstance(crop, (tuple, list)) else [crop]


__all__ = ["CodecTrainSettings", "train_codec", "fit", "resolve", "warmup_cosine", "psnr", "val_psnr",
           "reconstruct", "save_preview", "CHECKPOINT"]
