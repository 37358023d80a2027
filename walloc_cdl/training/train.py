"""Train one classifier on an encoded dataset, streamed shard by shard: ``walloc-cdl train DATA --model NAME``.

What users of timm's ``train.py`` expect, on the dataset ``walloc-cdl encode`` wrote (``_info.json`` +
shards; latents, or the pixel baselines ``compare`` writes): timm's optimizer and scheduler factories
(AdamW, warmup + cosine, per update), label smoothing, gradient clipping and accumulation, bf16 autocast on
CUDA, optional EMA and mixup/cutmix (timm's ``Mixup``, applied on the latent grid), ``torchrun`` DDP with
distinct shards per rank.  Memory does not grow with the dataset: the loader streams
(:class:`walloc_cdl.data.LatentDataset`).

The run folder (``OUT``):

* ``metrics.jsonl``: one JSON line per epoch (``epoch``, ``train_loss``, ``val_top1`` / ``val_top5`` in
  percent, ``samples_per_s``, ``skipped_samples``, ``lr``, ...);
* ``model.safetensors`` + ``config.json`` (codec block, model, stem, class names, input shape, settings):
  :func:`load_latent_model` rebuilds the model from them, taking inputs as ``LatentDataset`` yields them;
* ``checkpoints/last.safetensors``: every ``checkpoint_every`` steps and after every epoch;
  ``resume=True`` continues from it exactly (:mod:`.loop`).

Usage::

    summary = train_model("latents/photos", "resnet18", "runs/photos", epochs=10, val_split="val")
    model = load_latent_model("runs/photos")
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..config import settings_from
from ..files import atomic_path
from ..data.encode import dist_env as _dist_env
from ..data.loader import LatentDataset, make_loader
from ..data.shards import read_info, write_json_atomic
from ..models.classifier import LatentClassifier, build_classifier
from .loop import CheckpointError, Stepper, autocast, load_checkpoint, save_checkpoint

CONFIG_NAME, MODEL_NAME, METRICS_NAME = "config.json", "model.safetensors", "metrics.jsonl"
CHECKPOINT = Path("checkpoints") / "last.safetensors"


class DataError(ValueError):
    """Training data that cannot be used as given; the message says what to do."""


@dataclass
class TrainConfig:
    """Every setting of a run; ``--config FILE`` (YAML/JSON) takes these keys."""

    model: str = "resnet18"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    opt: str = "adamw"
    sched: str = "cosine"
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    warmup_lr: float = 1e-5
    label_smoothing: float = 0.1
    grad_clip: float | None = None
    accum_steps: int = 1
    amp: bool = True
    ema_decay: float | None = None
    mixup: float = 0.0
    cutmix: float = 0.0
    stem: str = "keep"
    magnitude: bool | None = None
    pretrained: bool = False
    train_split: str = "train"
    val_split: str | None = None        # None: "val" if the dataset has it, else "test", else no validation
    epoch_length: int | None = None     # samples per epoch (default: the train split's size)
    crop: list[int] | None = None       # random crop on the latent grid (centre crop in evaluation)
    shuffle: int = 2000                 # sample shuffle buffer per loader worker
    workers: int = 1
    seed: int = 0
    checkpoint_every: int = 500         # steps
    device: str = "auto"

    def result_keys(self) -> dict[str, Any]:
        """The settings that decide the result (a resumed run must match them)."""
        return {k: v for k, v in asdict(self).items() if k not in ("checkpoint_every", "device")}


def config_from(overrides: dict[str, Any] | None = None, file: str | Path | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML/JSON file, then ``overrides`` (None values ignored)."""
    return settings_from(TrainConfig, overrides, file)


# -- distributed ------------------------------------------------------------------------------------
def setup_device(device: str = "auto") -> torch.device:
    """The device for this rank; starts the process group under torchrun (nccl on CUDA, gloo on the CPU)."""
    rank, world, local = _dist_env()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local}" if device == "cuda" and world > 1 else device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def _all_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def _log(msg: str) -> None:
    if _dist_env()[0] == 0:
        print(msg, file=sys.stderr)


# -- data -------------------------------------------------------------------------------------------
def dataset_info(data: str | Path) -> dict[str, Any]:
    try:
        return read_info(data)
    except FileNotFoundError:
        raise DataError(f"{data}: no _info.json; encode a dataset first (walloc-cdl encode INPUT {data} "
                        "--codec NAME)") from None


def pick_val_split(info: dict[str, Any], data: str | Path, val_split: str | None, train_split: str) -> str | None:
    splits = sorted(info["splits"])
    if val_split is not None:
        if val_split not in info["splits"]:
            _log(f"warning: {data} has no split {val_split!r} (splits: {', '.join(splits)}): training without "
                 "validation")
            return None
        return val_split
    for s in ("val", "validation", "test"):
        if s in info["splits"] and s != train_split:
            return s
    _log(f"note: {data} has no 'val' or 'test' split (splits: {', '.join(splits)}): training without validation")
    return None


def check_codec(block: dict[str, Any], data: str | Path, codec: Any) -> None:
    """Refuse shards made by another codec than the one asked for (names both)."""
    if codec is None:
        return
    from ..codec.checkpoints import load_codec
    from ..data.shards import codec_block, fingerprint_key, same_latents

    want = codec_block(load_codec(codec) if isinstance(codec, (str, Path)) else codec, str(codec))
    key = fingerprint_key(block)
    if not same_latents(block, want):
        raise DataError(f"{data} was encoded with codec {block.get('name')!r} ({key} {str(block.get(key))[:12]}), "
                        f"not with {str(codec)!r} ({want[key][:12]}): train without --codec, or re-encode")


def first_input(data: str | Path, split: str, crop: list[int] | None) -> torch.Tensor:
    """One sample's input as the loader yields it (shape check before any training)."""
    ds = LatentDataset(data, split, crop=crop, shuffle=0)
    for z, _ in ds:
        return z
    raise DataError(f"{data}: split {split!r} yields no readable sample")


@torch.no_grad()
def input_stats(data: str | Path, split: str, crop: list[int] | None, n: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over the first ``n`` samples of ``split`` (read in order)."""
    ds = LatentDataset(data, split, crop=crop, batch_size=256)
    s = s2 = None
    count = samples = 0
    for z, _ in ds:
        x = z.double().transpose(0, 1).reshape(z.shape[1], -1)
        s = x.sum(1) if s is None else s + x.sum(1)
        s2 = x.square().sum(1) if s2 is None else s2 + x.square().sum(1)
        count, samples = count + x.shape[1], samples + len(z)
        if samples >= n:
            break
    mean = s / count
    std = (s2 / count - mean.square()).clamp_min(0).sqrt()
    return mean.float(), std.float()


# -- evaluation -------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, data: str | Path, split: str, device: torch.device, batch_size: int = 256,
             crop: list[int] | None = None, workers: int = 0, amp: bool = True) -> dict[str, Any]:
    """Top-1 / top-5 accuracy (percent), mean loss and sample count on ``split``, every sample once (ranks
    and loader workers each score their shards; the counts are summed)."""
    ds = LatentDataset(data, split, batch_size=batch_size, crop=crop)
    model.eval()
    acc = torch.zeros(4, dtype=torch.float64, device=device)   # top1, top5, loss sum, n
    for z, y in make_loader(ds, num_workers=workers, persistent_workers=False):
        keep = y >= 0                                  # unlabelled samples are not scored
        z, y = z[keep].to(device, non_blocking=True), y[keep].to(device, non_blocking=True)
        if not len(y):
            continue
        with autocast(device, amp):
            logits = model(z).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        acc[0] += (top[:, 0] == y).sum()
        acc[1] += (top == y[:, None]).any(1).sum()
        acc[2] += F.cross_entropy(logits, y, reduction="sum")
        acc[3] += len(y)
    acc = _all_sum(acc)
    n = int(acc[3].item())
    if n == 0:
        raise DataError(f"{data}: split {split!r} yields no readable sample")
    return {"top1": 100 * acc[0].item() / n, "top5": 100 * acc[1].item() / n, "loss": acc[2].item() / n,
            "num_samples": n, "skipped": ds.skipped}


# -- the run folder ---------------------------------------------------------------------------------
def load_latent_model(run: str | Path, device: str | torch.device = "cpu") -> LatentClassifier:
    """The trained model of a run folder in eval mode; it takes inputs exactly as ``LatentDataset`` yields
    them (the per-channel standardisation is inside)."""
    from safetensors.torch import load_file

    run = Path(run)
    cfg = run_config(run)
    if not (run / MODEL_NAME).exists():
        raise DataError(f"{run}: no {MODEL_NAME} (the run has not finished; continue it with --resume)")
    model = build_classifier(cfg)
    model.load_state_dict(load_file(str(run / MODEL_NAME)))
    model.class_names = list(cfg.get("classes") or [])
    return model.to(device).eval()


def run_config(run: str | Path) -> dict[str, Any]:
    path = Path(run) / CONFIG_NAME
    if not path.exists():
        raise DataError(f"{run}: no {CONFIG_NAME}; not a walloc-cdl training run (walloc-cdl train ... --out RUN)")
    return json.loads(path.read_text())


# -- training ---------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """torch, numpy's global generator (timm's Mixup draws from it) and Python's: a seeded run repeats."""
    import random

    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def _mixup(cfg: TrainConfig, num_classes: int) -> Any:
    if not (cfg.mixup or cfg.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                 num_classes=num_classes)


def _skip(it: Iterator[Any], n: int) -> Iterator[Any]:
    for i, b in enumerate(it):
        if i >= n:
            yield b


def train_model(data: str | Path, model: str | None = None, out: str | Path = "runs/train", *,
                config: TrainConfig | None = None, resume: bool = False, codec: Any = None,
                progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Train ``model`` on the dataset at ``data`` (``_info.json`` + shards) into the run folder ``out``.

    Settings: ``config`` and/or keyword overrides (the fields of :class:`TrainConfig`).  ``codec``: refuse
    shards made by any other codec.  ``resume``: continue from ``out/checkpoints/last.safetensors``.
    Returns the final record: the last metrics line plus the run's paths.
    """
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from tqdm.auto import tqdm

    cfg = dataclasses.replace(config or TrainConfig(), **{k: v for k, v in overrides.items() if v is not None})
    if model is not None:
        cfg.model = model
    out = Path(out)
    rank, world, _ = _dist_env()
    device = setup_device(cfg.device)
    info = dataset_info(data)
    if cfg.train_split not in info["splits"]:
        raise DataError(f"{data}: no split {cfg.train_split!r} (splits: {', '.join(sorted(info['splits']))})")
    block = info.get("codec") or {}
    if "config" not in block:
        raise DataError(f"{data}/_info.json has no codec block; encode the dataset with walloc-cdl encode")
    check_codec(block, data, codec)
    classes = list(info.get("classes") or [])
    n_train = int(info["splits"][cfg.train_split]["num_samples"])
    if n_train == 0:
        raise DataError(f"{data}: split {cfg.train_split!r} is empty")
    if not classes:
        raise DataError(f"{data}/_info.json lists no classes; encode labelled data (class subfolders or a label "
                        "column)")
    val_split = pick_val_split(info, data, cfg.val_split, cfg.train_split)
    crop = list(cfg.crop) if cfg.crop else None
    sample = first_input(data, cfg.train_split, crop)
    spec = {"model": cfg.model, "num_classes": len(classes), "codec": block, "input_shape": list(sample.shape),
            "stem": cfg.stem, "magnitude": cfg.magnitude, "crop": crop, "classes": classes,
            "encode_options": info.get("sources", {}).get(cfg.train_split, {}).get("options", {})}

    seed_everything(cfg.seed)
    try:
        net = build_classifier(spec, pretrained=cfg.pretrained)
    except (ValueError, KeyError, RuntimeError) as e:
        raise DataError(f"{cfg.model} cannot be built for {data} ({block.get('name') or 'codec'} inputs "
                        f"{tuple(sample.shape)}): {e}") from None
    net.set_stats(*input_stats(data, cfg.train_split, crop))
    net.eval()
    try:
        with torch.no_grad():
            net(sample[None].repeat(2, *([1] * sample.ndim)))
    except Exception as e:  # a latent grid the network cannot take
        raise DataError(f"{cfg.model} cannot take {data}'s inputs of shape {tuple(sample.shape)}: "
                        f"{type(e).__name__}: {e}") from None
    net = net.to(device)

    train_ds = LatentDataset(data, cfg.train_split, training=True, epoch_length=cfg.epoch_length or n_train,
                             batch_size=cfg.batch_size, shuffle=cfg.shuffle, crop=crop, seed=cfg.seed)
    workers = max(0, min(cfg.workers, len(train_ds.urls) // world))
    loader = make_loader(train_ds, num_workers=workers, persistent_workers=False)
    batches = len(train_ds)
    updates_per_epoch = math.ceil(batches / max(1, cfg.accum_steps))

    opt = create_optimizer_v2(net, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched, _ = create_scheduler_v2(opt, sched=cfg.sched, num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
                                   min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr, step_on_epochs=False,
                                   updates_per_epoch=updates_per_epoch)
    ema = None
    if cfg.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(net, decay=cfg.ema_decay)
    model_ddp: nn.Module = net
    if world > 1:
        model_ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    mixup = _mixup(cfg, len(classes))
    criterion = (SoftTargetCrossEntropy() if mixup is not None else
                 LabelSmoothingCrossEntropy(cfg.label_smoothing) if cfg.label_smoothing else nn.CrossEntropyLoss())
    stepper = Stepper(model_ddp, opt, device, amp=cfg.amp, accum_steps=cfg.accum_steps, grad_clip=cfg.grad_clip,
                      scheduler=sched, ema=ema)
    modules: dict[str, nn.Module] = {"model": net, **({"ema": ema.module} if ema is not None else {})}

    run_spec = {**spec, "data": str(data), "train_split": cfg.train_split, "val_split": val_split,
                "settings": cfg.result_keys(), "world_size": world, "workers": workers}
    ckpt = out / CHECKPOINT
    state = {"epoch": 0, "batch": 0, "updates": 0, "history": [], "loss_sum": 0.0, "loss_n": 0,
             "samples": 0, "seconds": 0.0, "spec": json.loads(json.dumps(run_spec))}
    if resume and not ckpt.exists():
        _log(f"note: nothing to resume in {out}: starting the run")
    if resume and ckpt.exists():
        saved = load_checkpoint(ckpt, modules, opt)
        if saved["spec"] != state["spec"]:
            diff = sorted(k for k in set(saved["spec"]) | set(state["spec"])
                          if saved["spec"].get(k) != state["spec"].get(k))
            raise DataError(f"{ckpt}: written by a run with other settings ({', '.join(diff)}); resume with the "
                            "same command, or train into a new --out")
        state = saved
        stepper.updates = int(state["updates"])
        sched.step_update(num_updates=stepper.updates)
        _log(f"resumed {out} at epoch {state['epoch'] + 1}, batch {state['batch']} ({stepper.updates} updates)")
    elif rank == 0:
        if (out / CONFIG_NAME).exists() and not resume:
            raise DataError(f"{out} holds a run already; pass --resume to continue it or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_json_atomic(out / CONFIG_NAME, {**run_spec, "status": "training"})

    def save() -> None:
        state["updates"] = stepper.updates
        save_checkpoint(ckpt, modules, opt, state)

    skips0 = train_ds.skipped
    for epoch in range(int(state["epoch"]), cfg.epochs):
        net.train()
        train_ds.set_epoch(epoch)
        start = int(state["batch"])
        bar = tqdm(total=batches, initial=start, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress or rank != 0, dynamic_ncols=True, leave=False)
        t0 = time.perf_counter() - float(state["seconds"])
        it = _skip(iter(loader), start) if start else iter(loader)
        for z, y in it:
            z, y = z.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if mixup is not None:
                z, y = mixup(z, y)
            loss = stepper(lambda: criterion(model_ddp(z), y))
            state["loss_sum"] += float(loss)
            state["loss_n"] += 1
            state["batch"] += 1
            state["samples"] += len(z) * world
            state["seconds"] = time.perf_counter() - t0
            bar.update(1)
            if state["batch"] % 10 == 0:
                bar.set_postfix(loss=f"{state['loss_sum'] / state['loss_n']:.3f}",
                                samples_s=f"{state['samples'] / max(state['seconds'], 1e-9):.0f}", refresh=False)
            if cfg.checkpoint_every and stepper.micro == 0 and stepper.updates % cfg.checkpoint_every == 0 \
                    and state["batch"] < batches:
                save()
        bar.close()
        if state["batch"] < batches:
            _log(f"warning: epoch {epoch + 1} ended after {state['batch']} of {batches} batches (unreadable samples?)")
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": state["loss_sum"] / max(1, state["loss_n"]),
                                  "samples_per_s": state["samples"] / max(state["seconds"], 1e-9),
                                  "train_seconds": round(state["seconds"], 2), "updates": stepper.updates,
                                  "lr": opt.param_groups[0]["lr"],
                                  "skipped_samples": int(_all_sum(torch.tensor(train_ds.skipped - skips0)).item())}
        if val_split is not None:
            scored = ema.module if ema is not None else net
            v = evaluate(scored, data, val_split, device, 2 * cfg.batch_size, crop, amp=cfg.amp)
            record.update(val_top1=v["top1"], val_top5=v["top5"], val_loss=v["loss"], val_samples=v["num_samples"])
        state["history"].append(record)
        state.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_n=0, samples=0, seconds=0.0)
        save()
        if rank == 0:  # rewritten from the checkpoint's history: a resumed run never repeats or loses a line
            with atomic_path(out / METRICS_NAME) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in state["history"]))
            if progress:
                _log(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                        for k, v in record.items() if k != "epoch"))

    final = ema.module if ema is not None else net
    if rank == 0:
        from safetensors.torch import save_file

        with atomic_path(out / MODEL_NAME) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in final.state_dict().items()}, str(tmp))
        write_json_atomic(out / CONFIG_NAME, {**run_spec, "status": "done", "final": state["history"][-1]})
    if world > 1 and dist.is_initialized():
        dist.barrier()
    return {**(state["history"][-1] if state["history"] else {}), "run": str(out), "classes": classes,
            "input_shape": list(sample.shape), "params": sum(p.numel() for p in net.parameters())}


evaluate_model = evaluate

__all__ = ["TrainConfig", "train_model", "evaluate", "evaluate_model", "load_latent_model", "config_from", "DataError",
           "CheckpointError", "run_config"]
