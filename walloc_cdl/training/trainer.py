"""The WaLLoC training loop: MSE on pixels/samples, AdamW, linear warmup then cosine decay.

The paper's recipe (Jacobellis & Yadwadkar, DCC 2025): random crops (segments), additive uniform noise
in place of rounding (``Round`` in train mode), loss ``MSE(x, x̂) + tf_weight · MSE(X, X̂)``.  Additions:

* a closed-form start (:mod:`.pca`) and an optional decoder-only phase while the encoder stays PCA;
* the encoder's row norms are pinned to their initial value after every step (``pin_encoder_gain``):
  without a rate term the gain would only grow (less relative noise), so pinning it keeps the rate,
  and so the compression ratio, where the closed form put it;
* bf16 autocast on CUDA for the decoder only: wavelets, encoder and companding stay fp32, since a
  latent of magnitude ~100 in bf16 would carry more error than the quantiser itself;
* the schedule can run on a wall-clock budget: progress = max(step / steps, elapsed / time_budget);
* ``keep_best``: the weights with the best validation PSNR seen (the start included) are the result,
  so a good closed-form start (the 1D linear decoder) is never lost to a short noisy run;
* checkpoints (``last.safetensors`` via :func:`save_codec` + ``last.optim.safetensors`` holding the
  AdamW moments, no pickle), ``--resume``, validation PSNR, preview PNGs, a JSONL log.

Usage::

    summary = train(codec, sampler, TrainConfig(steps=2000), out_dir="runs/rgb", val=sampler.fixed(16))
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..codec.checkpoints import load_codec, save_codec
from ..codec.model import Codec1D, Codec2D
from ..schedule import warmup_cosine
from .loop import load_optimizer_tensors, optimizer_tensors


@dataclass
class TrainConfig:
    """Optimisation settings; every field is a ``train-codec`` option."""

    steps: int = 10_000
    batch_size: int = 32
    lr: float = 5e-4
    min_lr_ratio: float = 0.02
    warmup: int = 200
    weight_decay: float = 1e-2
    decoder_only_steps: int = 0
    freeze_encoder: bool = False
    round_latents: bool = False   # frozen encoder only: decoder sees round(z), not z + noise
    tf_weight: float = 0.0
    time_budget: float | None = None
    amp: bool = True
    pin_encoder_gain: bool = True
    keep_best: bool = True
    grad_clip: float = 1.0
    val_every: int = 500
    checkpoint_every: int = 2000
    seed: int = 0


def lr_factor(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warmup over ``cfg.warmup`` steps, then cosine from 1 to ``min_lr_ratio`` over ``progress``."""
    return warmup_cosine(step, cfg.warmup, progress, cfg.min_lr_ratio)


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
    x_hat = codec._post(codec.wavelet_synthesis(X_hat, J=codec.J))
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
    from ..preview import spectrogram_db

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


# -- checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(codec: Codec1D | Codec2D, opt: torch.optim.Optimizer, out_dir: Path, state: dict[str, Any]) -> None:
    """``last.safetensors`` (codec) + ``last.optim.safetensors`` (AdamW moments; step etc. in its header)."""
    ckpt = out_dir / "ckpt"
    save_codec(codec, ckpt / "last.safetensors", metadata={"trainer_state": state})
    save_file(optimizer_tensors(codec.named_parameters(), opt), str(ckpt / "last.optim.safetensors"),
              metadata={"trainer_state": json.dumps(state)})


def load_checkpoint(codec: Codec1D | Codec2D, opt: torch.optim.Optimizer, out_dir: Path) -> dict[str, Any]:
    """Restore codec weights and optimizer moments written by :func:`save_checkpoint`; returns its state."""
    ckpt = out_dir / "ckpt"
    if not (ckpt / "last.safetensors").exists():
        raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from (expected last.safetensors)")
    saved = load_codec(ckpt / "last.safetensors")
    if saved.config != codec.config:
        raise ValueError(f"{ckpt}: checkpoint config {saved.config} differs from the requested {codec.config}")
    codec.load_state_dict(saved.state_dict())
    with safe_open(str(ckpt / "last.optim.safetensors"), framework="pt") as f:
        state = json.loads((f.metadata() or {})["trainer_state"])
        load_optimizer_tensors(codec.named_parameters(), opt, {k: f.get_tensor(k) for k in f.keys()})
    return state


# -- the loop ---------------------------------------------------------------------------------------
def train(codec: Codec1D | Codec2D, sampler: Any, cfg: TrainConfig, out_dir: str | Path,
          val: torch.Tensor | Sequence[torch.Tensor] | None = None, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``codec`` in place on ``sampler.sample(batch)`` batches; returns a summary for the card."""
    out_dir = Path(out_dir)
    (out_dir / "ckpt").mkdir(parents=True, exist_ok=True)
    device = next(codec.parameters()).device
    amp = cfg.amp and device.type == "cuda"
    torch.manual_seed(cfg.seed)
    enc_params = list(codec.encoder.parameters())
    dec_params = [p for n, p in codec.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params}, {"params": dec_params}], lr=cfg.lr,
                            weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    conv = _encoder_conv(codec)
    pinned = (_row_norms(conv.weight.detach()).clone()
              if (conv is not None and cfg.pin_encoder_gain and not cfg.freeze_encoder) else None)
    if cfg.round_latents and not cfg.freeze_encoder:
        raise ValueError("round_latents needs freeze_encoder: rounding passes no gradient to the encoder, "
                         "which trains through the noise proxy")
    if cfg.freeze_encoder:  # no gradient, no optimizer state, no weight decay: the latents stay bit-identical
        for p in enc_params:
            p.requires_grad_(False)

    start, elapsed0, history = 0, 0.0, []
    if resume:
        state = load_checkpoint(codec, opt, out_dir)
        start, elapsed0 = int(state["step"]), float(state["elapsed_s"])
        if pinned is not None and "pinned_norms" in state:
            pinned = torch.tensor(state["pinned_norms"], device=device)
        log(f"resumed from {out_dir / 'ckpt'} at step {start} ({elapsed0:.0f} s trained)")
    frozen = _snapshot(codec.encoder) if cfg.freeze_encoder else None
    val_psnr_start = val_psnr(codec, val) if val is not None else None

    def trainer_state(step: int, elapsed: float) -> dict[str, Any]:
        return {"step": step, "elapsed_s": round(elapsed, 2), "config": asdict(cfg),
                "pinned_norms": pinned.tolist() if pinned is not None else None}

    logf = (out_dir / "log.jsonl").open("a")
    codec.train()
    t0 = time.perf_counter() - elapsed0
    step, last_val, loss_ema = start, val_psnr_start, None
    best_val, best_step = val_psnr_start, start
    best_state = _snapshot(codec) if (cfg.keep_best and val is not None) else None
    # a wall-clock budget ends the run long before cfg.steps: then the bar counts seconds, so its ETA is true
    by_time = bool(cfg.time_budget)
    bar = tqdm(total=round(cfg.time_budget) if by_time else cfg.steps, initial=round(elapsed0) if by_time else start,
               unit="s" if by_time else "it", disable=not progress, desc="train", dynamic_ncols=True)
    try:
        while step < cfg.steps:
            elapsed = time.perf_counter() - t0
            progress_frac = step / cfg.steps
            if cfg.time_budget:
                if elapsed >= cfg.time_budget:
                    break
                progress_frac = max(progress_frac, elapsed / cfg.time_budget)
            f = lr_factor(step, progress_frac, cfg)
            train_encoder = step >= cfg.decoder_only_steps and not cfg.freeze_encoder
            for i, group in enumerate(opt.param_groups):
                group["lr"] = cfg.lr * f * (1.0 if (i == 1 or train_encoder) else 0.0)
            x = sampler.sample(cfg.batch_size)
            loss = _forward(codec, x, amp, train_encoder, cfg.tf_weight, cfg.round_latents)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(codec.parameters(), cfg.grad_clip)
            opt.step()
            if pinned is not None:
                with torch.no_grad():
                    w = conv.weight
                    w.mul_((pinned / _row_norms(w).clamp_min(1e-12)).reshape(-1, *([1] * (w.ndim - 1))))
            step += 1
            li = loss.item() if (step % 25 == 0 or step == cfg.steps) else None
            if li is not None:
                loss_ema = li if loss_ema is None else 0.9 * loss_ema + 0.1 * li
                bar.set_postfix(step=step, loss=f"{loss_ema:.2e}", psnr=f"{10 * math.log10(1 / max(loss_ema, 1e-12)):.2f}",
                                val=f"{last_val:.2f}" if last_val else "-", lr=f"{cfg.lr * f:.1e}")
            bar.update(min(round(time.perf_counter() - t0), bar.total) - bar.n if by_time else 1)
            if val is not None and step % cfg.val_every == 0:
                last_val = val_psnr(codec, val)
                if best_state is not None and last_val > best_val:
                    best_val, best_step, best_state = last_val, step, _snapshot(codec)
            if step % cfg.checkpoint_every == 0:
                _checkpoint(codec, opt, out_dir, val, trainer_state(step, time.perf_counter() - t0))
            if li is not None or step % cfg.val_every == 0:
                rec = {"step": step, "loss": li, "lr": cfg.lr * f, "elapsed_s": round(time.perf_counter() - t0, 2)}
                if step % cfg.val_every == 0 and val is not None:
                    rec["val_psnr"] = last_val
                logf.write(json.dumps(rec) + "\n")
                logf.flush()  # so `tail -f log.jsonl` follows a long run
    finally:
        bar.close()
        logf.close()
    elapsed = time.perf_counter() - t0
    if val is not None:
        last_val = val_psnr(codec, val)
        if best_state is not None and last_val < best_val:
            codec.load_state_dict(best_state)
            log(f"kept the weights of step {best_step} (val PSNR {best_val:.2f} > final {last_val:.2f})")
            last_val = best_val
        else:
            best_step = step
    if frozen is not None and any(not torch.equal(v, frozen[k]) for k, v in codec.encoder.state_dict().items()):
        raise RuntimeError("the encoder changed under freeze_encoder")  # would silently invalidate users' shards
    _checkpoint(codec, opt, out_dir, val, trainer_state(step, elapsed))
    codec.eval()
    summary = {"steps": step, "train_seconds": round(elapsed, 1), "batch_size": cfg.batch_size,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "amp_bf16": amp, "val_psnr_start": val_psnr_start, "val_psnr": last_val,
               "result_step": best_step if best_state is not None else step,
               "final_loss_ema": loss_ema, "optimizer": "AdamW", "trainer": asdict(cfg),
               **({"encoder_frozen": True} if cfg.freeze_encoder else {}),
               **({"round_latents": True} if cfg.round_latents else {})}
    log(f"done: {step} steps in {elapsed:.0f} s, val PSNR {val_psnr_start} -> {last_val}")
    return summary


def _snapshot(codec: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in codec.state_dict().items()}


def _checkpoint(codec, opt, out_dir: Path, val: torch.Tensor | Sequence[torch.Tensor] | None, state: dict[str, Any]) -> None:
    save_checkpoint(codec, opt, out_dir, state)
    if val is not None:
        v = val if isinstance(val, torch.Tensor) else val[-1]
        save_preview(v, reconstruct(codec, v[:4]), out_dir / f"preview_{state['step']:07d}.png")
