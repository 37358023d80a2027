"""``walloc-cdl compare``: train one model family on WaLLoC latents, on equal-dimension downsampled input
and on full resolution, with the same budget and seeds, and tabulate accuracy against cost.

Variants, for each reduction r (images: 4, 16; audio: 5, 20):

* ``latent-r``: the shipped (or given) codec's latents, fed through an adapter stem
  (:func:`walloc_cdl.models.create_latent_model`, audio: ``create_latent_audio_model``);
* ``down-r``: pixels resized to H/√r × W/√r with antialiasing (audio: resampled by r), fed to the same
  network with its first √r (audio: r) of stride removed, the same way;
* ``full``: the unmodified network on full-resolution input.

Inputs are encoded/resized once before training (as a pre-encoded dataset would be), stored compactly
(int8 latents, uint8 pixels, float16 audio) and standardised per channel with training-set statistics.
Every variant then trains with AdamW, warmup + cosine schedule and label smoothing, for the same number
of epochs and batch size, for each seed.  Reported per variant (mean ± std over seeds): test accuracy
(every test split), input values per sample, reduction vs full, training samples/s (model steps only),
and peak training memory (CUDA peak; on the CPU an estimate: weights, gradients, AdamW state and
activations saved for backward).  Under ``torchrun`` each rank trains on its share (DDP).
Every finished run is recorded under ``OUT/state/`` and the run in flight is checkpointed every few
minutes (:mod:`walloc_cdl.runstate`), so ``--resume`` continues a comparison cut short.

Usage::

    walloc-cdl compare                                   # Fashion-MNIST default, < 10 min on 2 cores
    walloc-cdl compare --benchmark words --model resnet18 --reductions 4 16 --seeds 0 1 2 --device cuda
    walloc-cdl compare --data ./my_images --size 128 --codec 16=rgb-16x --codec 4=rgb-4x
    torchrun --nproc_per_node 2 -m walloc_cdl.compare --benchmark instruments
    walloc-cdl compare --benchmark words ... --resume    # the same command again after a crash
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .baselines import downsample_images, resample_audio, upsample_audio, upsample_images
from .benchdata import BENCHMARKS, Benchmark, load_benchmark
from .runstate import RunCheckpoint, RunLedger, data_fingerprint, signature
from .schedule import warmup_cosine


# -- variants ---------------------------------------------------------------------------------------
@dataclass
class Variant:
    """One way to feed the model: latents of a codec, downsampled input, or full resolution."""

    name: str
    kind: str                  # "latent" | "down" | "full" | "decoded" (latents decoded back to full resolution)
                               # | "down-up" (resized down and back: only to score the full model, see roundtrip)
    reduction: float           # nominal dimensionality reduction r
    codec: Any = None          # codec name/path or module (latent variants)

    def input_stride(self, modality: str, codec: nn.Module | None) -> int:
        if self.kind == "latent":
            return 2 ** codec.J
        if self.kind == "down":  # the largest power of two the resize already did (√r per side, r for audio)
            per_side = math.sqrt(self.reduction) if modality == "image" else self.reduction
            return 2 ** int(math.floor(math.log2(per_side) + 1e-9))
        return 1


def make_variants(reductions: list[float], codecs: dict[float, Any], include_full: bool = True,
                  include_decoded: bool = False, include_down: bool = True,
                  include_latent: bool = True) -> list[Variant]:
    """latent-r and down-r for each r (a latent variant only where a codec is known), then full.

    ``include_decoded`` adds decoded-r: the latents decoded back to full resolution and fed to the full
    model: what a pixel model learns from the codec's reconstruction.  It bounds the latent models only
    where it is as easy to learn from as the latents: on the words set at 16× decoded-16x stayed at chance
    while latent models read half the words (RESULTS.md).  ``include_latent=False`` keeps decoded-r alone.
    """
    out = []
    for r in reductions:
        name = f"{r:g}x"
        if r in codecs:
            if include_latent:
                out.append(Variant(f"latent-{name}", "latent", r, codecs[r]))
            if include_decoded:
                out.append(Variant(f"decoded-{name}", "decoded", r, codecs[r]))
        if include_down:
            out.append(Variant(f"down-{name}", "down", r))
    if include_full:
        out.append(Variant("full", "full", 1))
    return out


def _to_codec_range(x: torch.Tensor, modality: str) -> torch.Tensor:
    """uint8 pixels -> [-0.5, 0.5]; audio in [-1, 1] -> [-0.5, 0.5] (the codecs' input range)."""
    return x.float() / 255.0 - 0.5 if modality == "image" else x.float() / 2


@torch.no_grad()
def prepare(variant: Variant, x: torch.Tensor, modality: str, codec: nn.Module | None, device: torch.device,
            batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """The variant's model inputs for all of ``x``, computed once and stored compactly on the CPU.

    Full resolution is ``x`` itself, not a copy: at 180 000 words images that copy was 8.8 GB.
    ``progress`` shows a bar: decoding 180 000 crops takes half an hour on 2 CPU cores.
    """
    from tqdm import tqdm

    if variant.kind == "full":
        return x.cpu()
    out: torch.Tensor | None = None
    for i in tqdm(range(0, len(x), batch_size), desc=f"prepare {variant.name}", unit="batch", leave=False,
                  disable=not progress):
        xb = x[i:i + batch_size].to(device)
        yb = _prepare_batch(variant, xb, modality, codec)
        if out is None:  # filled in place: a list + torch.cat held two copies (17.7 GB at 180 000 crops)
            out = torch.empty((len(x),) + tuple(yb.shape[1:]), dtype=yb.dtype)
        out[i:i + len(yb)] = yb
    assert out is not None, "prepare() needs at least one input"
    return out


def _prepare_batch(variant: Variant, xb: torch.Tensor, modality: str, codec: nn.Module | None) -> torch.Tensor:
    """One batch of :func:`prepare`, moved to the CPU in its compact storage dtype."""
    if variant.kind == "latent":
        z = codec.encode(_to_codec_range(xb, modality))
        return z.to(torch.int8 if codec.latent_bits <= 8 else torch.int16).cpu()
    if variant.kind == "decoded":
        y = codec.decode(codec.encode(_to_codec_range(xb, modality))).clamp(-0.5, 0.5)
        return ((y + 0.5) * 255).round().to(torch.uint8).cpu() if modality == "image" else (2 * y).half().cpu()
    if variant.kind == "down":
        if modality == "image":
            return downsample_images(xb, variant.reduction).cpu()
        return resample_audio(xb.float(), int(variant.reduction)).half().cpu()
    if variant.kind == "down-up":
        if modality == "image":
            return upsample_images(downsample_images(xb, variant.reduction), xb.shape[-2:]).cpu()
        r = int(variant.reduction)
        return upsample_audio(resample_audio(xb.float(), r), r, xb.shape[-1]).half().cpu()
    return xb.cpu()


def channel_stats(x: torch.Tensor, n: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over (a prefix of) the training inputs, shaped to broadcast."""
    s = x[:n].float().transpose(0, 1).reshape(x.shape[1], -1)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return s.mean(1).view(shape), s.std(1).clamp_min(1e-6).view(shape)


def build_model(variant: Variant, model_name: str, modality: str, in_chans: int, num_classes: int,
                codec: nn.Module | None, img_size: int | None, stem: str, pretrained: bool = False,
                magnitude: bool | None = None) -> nn.Module:
    """The same family for every variant; only the stem (where the input enters) differs.

    ``magnitude``: latent models get |z| beside z (:mod:`walloc_cdl.models.stems`); None means the measured
    default of each modality: on for audio, off for images (RESULTS.md).
    """
    from .models import create_audio_model, create_strided_model

    stride = variant.input_stride(modality, codec)
    chans = codec.latent_dim if variant.kind == "latent" else in_chans
    mag = variant.kind == "latent" and (modality == "audio" if magnitude is None else magnitude)
    if modality == "audio":
        return create_audio_model(model_name, chans, num_classes, input_stride=stride, magnitude=mag)
    kw: dict[str, Any] = {"img_size": img_size} if _needs_img_size(model_name) else {}
    return create_strided_model(model_name, chans, stride, num_classes, pretrained=pretrained, stem=stem,
                                magnitude=mag, pixel_chans=in_chans, **kw)


def _needs_img_size(model_name: str) -> bool:
    import timm

    return timm.models.model_entrypoint(model_name).__module__.rsplit(".", 1)[-1] in (
        "vision_transformer", "deit", "maxxvit")


# -- distributed ----------------------------------------------------------------------------------
def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def setup_distributed(device: str) -> torch.device:
    rank, world, local = dist_env()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local}" if device == "cuda" and world > 1 else device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


# -- training -------------------------------------------------------------------------------------
@dataclass
class CompareConfig:
    """One training budget shared by every variant and seed."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    label_smoothing: float = 0.1
    amp: bool = True


def _batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int,
             device: torch.device | None = None) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).to(device or "cpu")
    per_rank = n // world
    mine = perm[rank * per_rank:(rank + 1) * per_rank]
    for i in range(0, len(mine) - batch_size + 1, batch_size):  # drop the ragged last batch
        yield mine[i:i + batch_size]


def estimate_train_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes: weights + gradients + two AdamW moments + tensors autograd saves for backward (one step)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        with contextlib.suppress(RuntimeError):
            seen[(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return 4 * params + sum(seen.values())


def _normalize(xb: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return (xb.float() - stats[0].to(xb.device)) / stats[1].to(xb.device)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor],
             device: torch.device, batch_size: int, amp: bool) -> float:
    """Top-1 accuracy in %, each rank scoring its slice and the counts summed."""
    rank, world, _ = dist_env()
    model.eval()
    correct = torch.zeros(2, dtype=torch.float64, device=device)
    idx = torch.arange(len(x), device=x.device)[rank::world]
    for i in range(0, len(idx), batch_size):
        j = idx[i:i + batch_size]
        with _autocast(device, amp):
            logits = model(_normalize(x[j].to(device, non_blocking=True), stats))
        correct[0] += (logits.argmax(1) == y[j].to(device)).sum().item()
        correct[1] += len(j)
    if world > 1:
        dist.all_reduce(correct)
    return float(100 * correct[0] / correct[1].clamp_min(1))


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_and_evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       tests: dict[str, tuple[torch.Tensor, torch.Tensor]], cfg: CompareConfig, seed: int,
                       device: torch.device, progress: bool = True,
                       extra_tests: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                       checkpoint: RunCheckpoint | None = None) -> dict[str, Any]:
    """Train ``model`` on (x, y) and score it on every test split; returns accuracies and costs.

    ``extra_tests`` are scored too (``acc_extra``) but kept out of ``acc``, which every variant shares.
    ``checkpoint`` (:class:`walloc_cdl.runstate.RunCheckpoint`): continue from it when it exists, save
    to it every few minutes and after the last step.  Batches are a function of (seed, epoch), so a
    resumed run sees the same data in the same order.  ``final_train_loss``: the mean training loss
    (label smoothing included) over the last epoch, of this rank's share under DDP.
    """
    from tqdm import tqdm

    rank, world, _ = dist_env()
    stats = channel_stats(x)
    model = model.to(device)
    if device.type == "cpu":
        n = min(cfg.batch_size, len(x))
        mem_est = estimate_train_memory(model, _normalize(x[:n], stats), y[:n])
    core = model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, max(1, len(x) // world))
    steps_per_epoch = max(1, (len(x) // world) // bs)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup * total))
    timed_samples, timed_s, step, loss_sum, resumed_from = 0, 0.0, 0, 0.0, None
    if checkpoint is not None and (saved := checkpoint.load(core, opt)) is not None:
        step, timed_s, timed_samples = int(saved["step"]), float(saved["timed_s"]), int(saved["timed_samples"])
        loss_sum, resumed_from = float(saved["loss_sum"]), step
        if saved.get("total") != total:
            raise RuntimeError(f"{checkpoint.path}: saved for {saved.get('total')} steps, this run has {total}")
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_acc = torch.zeros((), dtype=torch.float64, device=device)  # final epoch's loss, summed on the device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    def state() -> dict[str, Any]:
        return {"step": step, "total": total, "timed_s": timed_s, "timed_samples": timed_samples,
                "loss_sum": loss_sum + float(loss_acc)}

    bar = tqdm(total=total, initial=step, desc="train", leave=False, disable=not progress or rank != 0,
               mininterval=1.0)
    for epoch in range(step // steps_per_epoch, cfg.epochs):
        model.train()
        skip = step - epoch * steps_per_epoch  # > 0 only in the epoch a resumed run stopped in
        for b, j in enumerate(_batches(len(x), bs, seed, epoch, rank, world, x.device)):
            if b < skip:
                continue
            t0 = time.perf_counter()
            for g in opt.param_groups:  # warmup + cosine over all steps, as a function of the step alone
                g["lr"] = cfg.lr * warmup_cosine(step, warm, step / max(1, total))
            xb = _normalize(x[j].to(device, non_blocking=True), stats)
            yb = y[j].to(device, non_blocking=True)
            with _autocast(device, cfg.amp):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= min(5, total // 5) and step != resumed_from:  # skip warm-up steps (allocator, cudnn autotune)
                timed_s += time.perf_counter() - t0
                timed_samples += bs * world
            if epoch == cfg.epochs - 1:
                loss_acc += loss.detach().double()
            step += 1
            bar.update()
            if bar.n % 20 == 0:  # .item() syncs the device: not every step
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if checkpoint is not None:
                checkpoint.maybe_save(core, opt, state, force=step == total)
    bar.close()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else mem_est
    accs = {name: evaluate(model, xt, yt, stats, device, 2 * bs, cfg.amp) for name, (xt, yt) in tests.items()}
    extra = {name: evaluate(model, xt, yt, stats, device, 2 * bs, cfg.amp)
             for name, (xt, yt) in (extra_tests or {}).items()}
    return {"acc": accs, **({"acc_extra": extra} if extra_tests else {}),
            "samples_per_s": timed_samples / max(timed_s, 1e-9), "peak_mem_mb": peak / 2 ** 20,
            "mem_kind": "cuda-peak" if device.type == "cuda" else "estimate",
            "params": sum(p.numel() for p in core.parameters()), "steps": total,
            "final_train_loss": (loss_sum + float(loss_acc)) / steps_per_epoch,
            **({"resumed_from_step": resumed_from} if resumed_from is not None else {})}


# -- the comparison --------------------------------------------------------------------------------
def run_comparison(bench: Benchmark, model_name: str, reductions: list[float], seeds: list[int],
                   cfg: CompareConfig, device: torch.device, codecs: dict[float, Any] | None = None,
                   stem: str = "keep", include_full: bool = True, progress: bool = True,
                   pretrained: bool = False, include_decoded: bool = False,
                   include_down: bool = True, roundtrip: dict[float, Any] | None = None,
                   magnitude: bool | None = None, ledger: RunLedger | None = None,
                   include_latent: bool = True) -> dict[str, Any]:
    """Every variant × seed on ``bench``; returns per-run records and per-variant summaries.

    ``roundtrip`` ({r: codec or None}): the full model is also scored, without retraining, on every test
    split after a round trip: encoded and decoded by each codec given (``split@decoded-r``), and resized
    down by r and back (``split@down-up-r``).  Unlike ``include_decoded`` it costs no training run, and it
    tells what each path keeps of what the full model reads.  ``magnitude``: see :func:`build_model`.
    ``ledger`` (:class:`walloc_cdl.runstate.RunLedger`): finished runs recorded there are reused instead of
    trained, the others are recorded as they finish and checkpointed while they train.
    """
    from .checkpoints import load_codec, state_dict_sha256

    def _codec(c: Any) -> nn.Module:
        return (c if isinstance(c, nn.Module) else load_codec(c)).to(device).eval()

    rank, world, _ = dist_env()
    codecs = {**bench.codecs, **(codecs or {})}
    variants = make_variants(reductions, {r: c for r, c in codecs.items() if c is not None}, include_full,
                             include_decoded, include_down, include_latent)
    full_dims = math.prod(bench.x_train.shape[1:])
    img_size = int(bench.x_train.shape[-1]) if bench.modality == "image" else None
    base = {"benchmark": bench.name, "description": bench.description,
            "data": data_fingerprint(bench.x_train, bench.y_train, *(t for xy in bench.tests.values() for t in xy)),
            "model": model_name, "stem": stem, "magnitude": magnitude, "pretrained": pretrained, "config": vars(cfg),
            "device": device.type, "world": world}
    runs, summary = [], []
    for v in variants:
        codec = _codec(v.codec) if v.kind in ("latent", "decoded") else None
        spec = {**base, "variant": [v.name, v.kind, v.reduction],
                "codec": state_dict_sha256(codec) if codec is not None else None,
                "roundtrip": sorted(f"{r:g}={state_dict_sha256(_codec(c)) if c is not None else None}"
                                    for r, c in roundtrip.items()) if v.kind == "full" and roundtrip else None}
        sigs = {seed: signature({**spec, "seed": seed}) for seed in seeds}
        stored = {seed: ledger.finished(sigs[seed]) for seed in seeds} if ledger is not None else {}
        per_seed = [stored[seed] for seed in seeds if stored.get(seed)]
        todo = [seed for seed in seeds if not stored.get(seed)]
        if rank == 0 and progress and per_seed:
            print(f"  {v.name:>12}: reusing finished seed(s) {[r['seed'] for r in per_seed]} from {ledger.file}",
                  file=sys.stderr)
        if todo:
            t0 = time.perf_counter()
            xtr = prepare(v, bench.x_train, bench.modality, codec, device, progress=progress and rank == 0)
            tests = {k: (prepare(v, xt, bench.modality, codec, device), yt) for k, (xt, yt) in bench.tests.items()}
            extra = roundtrip_tests(bench, roundtrip, device, _codec) if v.kind == "full" and roundtrip else None
            prep_s = time.perf_counter() - t0
            ytr = bench.y_train
            if device.type == "cuda":  # small benchmarks fit: index batches on the device, no host copies
                xtr, ytr = xtr.to(device), ytr.to(device)
                tests = {k: (xt.to(device), yt.to(device)) for k, (xt, yt) in tests.items()}
                extra = {k: (xt.to(device), yt.to(device)) for k, (xt, yt) in extra.items()} if extra else None
            dims = math.prod(xtr.shape[1:])
        for seed in todo:
            torch.manual_seed(seed)
            model = build_model(v, model_name, bench.modality, bench.channels, len(bench.classes), codec,
                                img_size, stem, pretrained, magnitude)
            ckpt = ledger.checkpoint(v.name, seed, sigs[seed]) if ledger is not None else None
            res = train_and_evaluate(model, xtr, ytr, tests, cfg, seed, device, progress, extra, ckpt)
            rec = {"variant": v.name, "kind": v.kind, "seed": seed, "input_shape": list(xtr.shape[1:]),
                   "input_dims": dims, "reduction": full_dims / dims, "prep_s": prep_s,
                   "codec": (v.codec if isinstance(v.codec, str) else getattr(codec, "config", None)), **res}
            per_seed.append(rec)
            if ledger is not None:
                ledger.record(sigs[seed], rec)
            if rank == 0 and progress:
                accs = " ".join(f"{k}={a:.2f}" for k, a in {**res["acc"], **res.get("acc_extra", {})}.items())
                print(f"  {v.name:>12} seed {seed}: {accs}  {res['samples_per_s']:.0f} samples/s", file=sys.stderr)
        per_seed.sort(key=lambda r: seeds.index(r["seed"]))
        runs.extend(per_seed)
        summary.append(summarize(per_seed))
    return {"benchmark": bench.name, "description": bench.description, "model": model_name, "stem": stem,
            "magnitude": magnitude, "device": str(device), "world_size": world, "train_size": len(bench.y_train),
            "test_sizes": {k: len(v[1]) for k, v in bench.tests.items()}, "seeds": seeds, "config": vars(cfg),
            "summary": summary, "runs": runs, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def roundtrip_tests(bench: Benchmark, codecs: dict[float, Any], device: torch.device,
                    load: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every test split after each round trip of ``run_comparison(roundtrip=)``, at full resolution."""
    out = {}
    for r, c in sorted(codecs.items()):
        trips = [Variant(f"decoded-{r:g}x", "decoded", r, c)] if c is not None else []
        for v in trips + [Variant(f"down-up-{r:g}x", "down-up", r)]:
            codec = load(c) if v.kind == "decoded" else None
            for k, (xt, yt) in bench.tests.items():
                out[f"{k}@{v.name}"] = (prepare(v, xt, bench.modality, codec, device), yt)
    return out


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    first = per_seed[0]

    def over_seeds(key: str, stat: Any) -> dict[str, float]:
        return {k: float(stat([r[key][k] for r in per_seed])) for k in first[key]}

    out = {"variant": first["variant"], "kind": first["kind"], "input_shape": first["input_shape"],
           "input_dims": first["input_dims"], "reduction": first["reduction"],
           "acc_mean": over_seeds("acc", np.mean), "acc_std": over_seeds("acc", np.std),
           "samples_per_s": float(np.mean([r["samples_per_s"] for r in per_seed])),
           "peak_mem_mb": float(np.mean([r["peak_mem_mb"] for r in per_seed])), "mem_kind": first["mem_kind"],
           "params": first["params"], "n_seeds": len(per_seed)}
    if "acc_extra" in first:  # run_comparison(roundtrip=)
        out["acc_extra_mean"], out["acc_extra_std"] = over_seeds("acc_extra", np.mean), over_seeds("acc_extra", np.std)
    return out


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table: one row per variant."""
    rows = result["summary"]
    tests = list(rows[0]["acc_mean"])
    full = next((r for r in rows if r["kind"] == "full"), None)
    mem = "peak MB" + (" (est.)" if rows[0]["mem_kind"] == "estimate" else "")
    head = ["variant", *[f"acc {t} %" for t in tests], "input", "dims", "reduction", "train samples/s",
            *(["speed vs full"] if full else []), mem]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        accs = [f"{r['acc_mean'][t]:.2f} ± {r['acc_std'][t]:.2f}" for t in tests]
        cells = [r["variant"], *accs, "×".join(map(str, r["input_shape"])), str(r["input_dims"]),
                 f"{r['reduction']:.1f}×", f"{r['samples_per_s']:.0f}",
                 *([f"{r['samples_per_s'] / full['samples_per_s']:.2f}×"] if full else []), f"{r['peak_mem_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:  # run_comparison(roundtrip=): the same trained model on round-tripped test inputs
        if r.get("acc_extra_mean"):
            scores = ", ".join(f"{k} {m:.2f} ± {r['acc_extra_std'][k]:.2f}" for k, m in r["acc_extra_mean"].items())
            lines.append(f"\n{r['variant']} model on round-tripped test inputs (no retraining): {scores}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """Accuracy (mean ± std over seeds) against input dims, and training throughput, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["summary"]
    test = list(rows[0]["acc_mean"])[0]
    colors = {"latent": "tab:blue", "down": "tab:orange", "full": "tab:green", "decoded": "tab:gray"}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        c = colors[r["kind"]]
        a1.errorbar(r["input_dims"], r["acc_mean"][test], yerr=r["acc_std"][test], fmt="o", color=c, capsize=3)
        a1.annotate(r["variant"], (r["input_dims"], r["acc_mean"][test]), textcoords="offset points", xytext=(5, 5))
        a2.bar(r["variant"], r["samples_per_s"], color=c)
    a1.set_xscale("log")
    a1.set_xlabel("input values per sample")
    a1.set_ylabel(f"accuracy on {test} (%)")
    a1.grid(alpha=0.3)
    a2.set_ylabel("training samples/s")
    a2.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{result['benchmark']} · {result['model']} · {len(result['seeds'])} seed(s) · {result['device']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- user data --------------------------------------------------------------------------------------
def load_user_data(spec: str, size: int | None, test_spec: str | None, test_fraction: float, seed: int,
                   channels: int | None = None, clip: int | None = None) -> Benchmark:
    """An image/audio folder, HF dataset, idx file or pixel WebDataset as an in-memory :class:`Benchmark`."""
    from .data.sources import open_source

    def read(s: str) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
        src = open_source(s)
        xs, ys, skipped = [], [], 0
        for item in src:
            if not hasattr(item, "data") or item.label < 0:
                skipped += 1
                continue
            xs.append(_fit(item.data, src.kind, size, channels, clip))
            ys.append(item.label)
        if not xs:
            raise ValueError(f"{s}: no labelled samples found ({skipped} skipped); class subfolders give labels")
        if skipped:
            print(f"{s}: skipped {skipped} unlabelled or unreadable items", file=sys.stderr)
        return torch.stack(xs), torch.tensor(ys), list(getattr(src, "classes", None) or []), src.kind

    x, y, classes, kind = read(spec)
    if test_spec:
        xt, yt, _, _ = read(test_spec)
    else:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y), generator=g)
        n_test = max(1, int(round(test_fraction * len(y))))
        xt, yt, x, y = x[perm[:n_test]], y[perm[:n_test]], x[perm[n_test:]], y[perm[n_test:]]
    n_classes = int(max(y.max(), yt.max())) + 1
    classes = classes if len(classes) >= n_classes else [str(i) for i in range(n_classes)]
    return Benchmark(name=Path(spec).name or spec, modality=kind, x_train=x, y_train=y, tests={"test": (xt, yt)},
                     classes=classes, codecs={}, description=f"user data {spec}")


def _fit(a: np.ndarray, kind: str, size: int | None, channels: int | None, clip: int | None) -> torch.Tensor:
    """Image (H, W, C) -> uint8 (C, size, size) by resize + centre crop; audio (C, T) -> float16 (C, clip)."""
    from .data.sources import match_channels

    if kind == "audio":
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if channels and t.shape[0] != channels:
            t = t.mean(0, keepdim=True).expand(channels, -1) if channels > 1 or t.shape[0] > 1 else t
        n = clip or t.shape[-1]
        t = F.pad(t[:, :n], (0, max(0, n - t.shape[-1])))
        return t.clamp(-1, 1).half()
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 1.0), 0, 1) * 255).round().astype(np.uint8)
    if channels:
        a = match_channels(a, channels)
    t = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)
    if size:
        h, w = t.shape[1:]
        s = size / min(h, w)
        if s != 1:
            t = F.interpolate(t[None].float(), size=(max(size, round(h * s)), max(size, round(w * s))), mode="bicubic",
                              antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
        h, w = t.shape[1:]
        t = t[:, (h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size]
    return t


def load_shards(root: str, test_split: str = "test") -> tuple[Benchmark, dict[str, Any]]:
    """Pre-encoded latent shards (``walloc-cdl encode``) as a latent-only :class:`Benchmark` + codec block."""
    from .data.loader import LatentDataset
    from .data.shards import read_info

    info = read_info(root)

    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for z, y in LatentDataset(root, split=split, batch_size=256):
            xs.append(z)
            ys.append(y)
        return torch.cat(xs), torch.cat(ys)

    x, y = read("train")
    tests = {test_split: read(test_split)} if test_split in info.get("splits", {}) else {}
    if not tests:
        raise ValueError(f"{root}: no '{test_split}' split in _info.json (splits: {sorted(info.get('splits', {}))})")
    n_classes = int(max(y.max(), tests[test_split][1].max())) + 1
    modality = "audio" if x.ndim == 3 else "image"
    return Benchmark(name=Path(root).name, modality=modality, x_train=x, y_train=y, tests=tests,
                     classes=[str(i) for i in range(n_classes)], codecs={}, description=f"latent shards {root}"), \
        info.get("codec", {})


def run_on_shards(root: str, model_name: str, seeds: list[int], cfg: CompareConfig, device: torch.device,
                  stem: str, progress: bool, magnitude: bool | None = None,
                  ledger: RunLedger | None = None) -> dict[str, Any]:
    """Latent-only comparison entry for shards: trains the latent variant on the stored latents."""
    from .codec import build_codec

    bench, block = load_shards(root)
    if "config" not in block:
        raise ValueError(f"{root}/_info.json has no codec block with a config; cannot build the adapter stem")
    codec = build_codec(block["config"])
    rank, world, _ = dist_env()
    dims = math.prod(bench.x_train.shape[1:])
    spec = {"shards": str(Path(root).resolve()), "codec": block, "model": model_name, "stem": stem,
            "magnitude": magnitude, "config": vars(cfg), "device": device.type, "world": world,
            "data": data_fingerprint(bench.x_train, bench.y_train, *(t for xy in bench.tests.values() for t in xy))}
    runs = []
    for seed in seeds:
        sig = signature({**spec, "seed": seed})
        if ledger is not None and (rec := ledger.finished(sig)) is not None:
            runs.append(rec)
            continue
        torch.manual_seed(seed)
        model = build_model(Variant("latent", "latent", codec.dimensionality_reduction), model_name, bench.modality,
                            codec.channels, len(bench.classes), codec,
                            bench.x_train.shape[-1] * 2 ** codec.J if bench.modality == "image" else None, stem,
                            magnitude=magnitude)
        ckpt = ledger.checkpoint("latent", seed, sig) if ledger is not None else None
        res = train_and_evaluate(model, bench.x_train, bench.y_train, bench.tests, cfg, seed, device, progress,
                                 checkpoint=ckpt)
        runs.append({"variant": f"latent-{block.get('name', 'codec')}", "kind": "latent", "seed": seed,
                     "input_shape": list(bench.x_train.shape[1:]), "input_dims": dims,
                     "reduction": codec.dimensionality_reduction, **res})
        if ledger is not None:
            ledger.record(sig, runs[-1])
    return {"benchmark": bench.name, "description": bench.description + " (latent variant only: shards hold no "
            "pixels; run compare on the source data for the baselines)", "model": model_name, "stem": stem,
            "device": str(device), "world_size": world, "train_size": len(bench.y_train),
            "test_sizes": {k: len(v[1]) for k, v in bench.tests.items()}, "seeds": seeds, "config": vars(cfg),
            "summary": [summarize(runs)], "runs": runs, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# -- CLI --------------------------------------------------------------------------------------------
DEFAULT = dict(benchmark="fashion-mnist", model="resnet10t", n_train=6000, n_test=2000, epochs=4)


def _parse_codecs(items: list[str]) -> dict[float, str]:
    out = {}
    for it in items or []:
        r, sep, name = it.partition("=")
        if not sep:
            raise SystemExit(f"--codec expects R=NAME_OR_PATH (e.g. 16=rgb-16x), got {it!r}")
        out[float(r)] = name
    return out


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train the same model family on WaLLoC latents, on equal-dimension downsampled input and on full "
        "resolution (same budget and seeds), then print and save a table (accuracy, input dims, reduction, "
        "training samples/s, peak memory) and a plot. With no arguments: a Fashion-MNIST subset (6000 train, "
        "2000 test), gray-4x and gray-16x latents vs 1/2- and 1/4-per-side downsampling vs full 32x32, ResNet-10t, "
        "4 epochs: a few minutes on 2 CPU cores.")
    src = p.add_argument_group("data (one of)")
    src.add_argument("--benchmark", choices=sorted(BENCHMARKS), help=f"built-in benchmark (default {DEFAULT['benchmark']})")
    src.add_argument("--data", help="image/audio folder with class subfolders, saved HF dataset, idx file or "
                                    "pixel WebDataset tars")
    src.add_argument("--shards", help="pre-encoded latent shards (walloc-cdl encode): trains the latent variant only")
    p.add_argument("--test-data", help="separate test set for --data (else a random --test-fraction split)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--size", type=int, default=128, help="--data images: resize + centre-crop side (multiple of 2^J)")
    p.add_argument("--clip", type=int, default=32768, help="--data audio: samples per clip (multiple of 2^J)")
    p.add_argument("--channels", type=int, help="--data: convert to this many channels (default: the codec's)")
    p.add_argument("--n-train", type=int, help="built-in benchmark: training samples (default: the benchmark's)")
    p.add_argument("--n-test", type=int, help="built-in benchmark: test samples (per test split)")
    p.add_argument("--model", help="timm model (images) or audio arch (resnet1d, convnet1d, resnet1d_small); "
                                   f"default {DEFAULT['model']} / resnet1d")
    from .models.stems import STEMS

    p.add_argument("--stem", choices=list(STEMS), default="keep",
                   help="how latents enter the network: keep every stage (default), enter at the stage of stride "
                        "2^J (cheaper), shuffle up to the pixel stem's grid (costlier; for fine detail), or synth: "
                        "a learned synthesis to full resolution in front of the pixel model (costs what it costs)")
    p.add_argument("--magnitude", action=argparse.BooleanOptionalAction, default=None,
                   help="feed |z| beside z to latent models (default: on for audio, off for images)")
    p.add_argument("--pretrained", action="store_true", help="start from timm's pretrained weights (needs the hub)")
    p.add_argument("--reductions", type=float, nargs="+", help="dimensionality reductions r (default: the benchmark's "
                                                             "shipped codecs, images 4 16, audio 5 20; --data: the --codec ones)")
    p.add_argument("--codec", action="append", metavar="R=NAME", help="codec for reduction R (shipped name or "
                                                                      "path); repeatable; overrides the benchmark's")
    p.add_argument("--no-full", action="store_true", help="skip the full-resolution variant")
    p.add_argument("--decoded", action="store_true", help="add decoded-R: latents decoded back to full resolution, "
                                                          "full model (what a pixel model learns from the codec's "
                                                          "reconstruction)")
    p.add_argument("--roundtrip", action="store_true",
                   help="also score the trained full model on the test sets decoded by each codec and resized down "
                        "and back (no extra training)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per variant and seed; the table gives mean ± std")
    p.add_argument("--epochs", type=int, help=f"epochs per run (default {DEFAULT['epochs']})")
    p.add_argument("--batch-size", type=int, default=128, help="samples per optimizer step (all variants)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (warmup + cosine, all variants)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--out", default="runs/compare", help="folder for results.json, table.md and plot.png "
                                                         "(and state/: finished runs and checkpoints, for --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted comparison in --out: runs that finished are reused (if data, model, "
                        "budget and codec are unchanged), the one cut short restarts from its last checkpoint")
    p.add_argument("--checkpoint-every", type=float, default=10.0, metavar="MIN",
                   help="minutes between checkpoints of the run in flight")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, _ = dist_env()
    device = setup_distributed(args.device)
    cfg = CompareConfig(epochs=args.epochs or DEFAULT["epochs"], batch_size=args.batch_size, lr=args.lr)
    progress = not args.quiet
    if sum(x is not None for x in (args.benchmark, args.data, args.shards)) > 1:
        raise SystemExit("give one of --benchmark, --data, --shards")
    if args.roundtrip and (args.no_full or args.shards):
        raise SystemExit("--roundtrip scores the full-resolution model: drop --no-full (shards hold no pixels)")
    try:
        ledger = RunLedger(Path(args.out) / "state", args.resume, 60 * args.checkpoint_every, writer=rank == 0)
    except FileExistsError as e:
        raise SystemExit(str(e)) from None
    try:
        result = _compare(args, cfg, device, progress, ledger)
    except KeyboardInterrupt:
        if rank == 0:
            print(f"\ninterrupted: finished runs and the last checkpoint are in {ledger.root}; run the same command "
                  "with --resume to continue", file=sys.stderr)
        return 130
    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table = format_table(result)
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "table.md").write_text(table + "\n")
        plot(result, out / "plot.png")
        ledger.complete()
        print(f"\n{result['description']}\nmodel {result['model']}, {len(result['seeds'])} seed(s), "
              f"{result['config']['epochs']} epochs, device {result['device']}\n")
        print(table)
        reused = f" ({ledger.reused} finished run(s) reused from {ledger.file})" if ledger.reused else ""
        print(f"\nsaved {out / 'results.json'}, {out / 'table.md'}, {out / 'plot.png'}{reused}")
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _compare(args: argparse.Namespace, cfg: CompareConfig, device: torch.device, progress: bool,
             ledger: RunLedger) -> dict[str, Any]:
    rank, world, _ = dist_env()
    if args.shards:
        model = args.model or DEFAULT["model"]
        result = run_on_shards(args.shards, model, args.seeds, cfg, device, args.stem, progress, args.magnitude,
                               ledger)
    else:
        codecs = _parse_codecs(args.codec)
        if args.data:
            channels = args.channels
            if channels is None and codecs:
                from .models import latent_spec

                channels = latent_spec(next(iter(codecs.values()))).channels
            bench = load_user_data(args.data, args.size, args.test_data, args.test_fraction, 0, channels, args.clip)
            if not codecs:
                raise SystemExit("--data needs --codec R=NAME (e.g. --codec 16=rgb-16x)")
        else:
            name = args.benchmark or DEFAULT["benchmark"]
            kw = {k: v for k, v in (("n_train", args.n_train), ("n_test", args.n_test)) if v is not None}
            if name == DEFAULT["benchmark"] and not kw:
                kw = {"n_train": DEFAULT["n_train"], "n_test": DEFAULT["n_test"]}
            bench = load_benchmark(name, **kw)
        model = args.model or (DEFAULT["model"] if bench.modality == "image" else "resnet1d")
        reductions = args.reductions or sorted(codecs if args.data else bench.codecs)
        if rank == 0 and progress:
            print(f"{bench.description}: {len(bench.y_train)} train, "
                  f"test {', '.join(f'{k}: {len(v[1])}' for k, v in bench.tests.items())}; model {model}; "
                  f"device {device}{f' x{world}' if world > 1 else ''}", file=sys.stderr)
        known = {**bench.codecs, **codecs}
        roundtrip = {float(r): known.get(r) for r in reductions} if args.roundtrip else None
        result = run_comparison(bench, model, [float(r) for r in reductions], args.seeds, cfg, device, codecs,
                                args.stem, not args.no_full, progress, args.pretrained, args.decoded,
                                roundtrip=roundtrip, magnitude=args.magnitude, ledger=ledger)
    return result


def main(argv: list[str] | None = None) -> int:
    from .cli import HelpFormatter
    p = argparse.ArgumentParser(prog="walloc-cdl compare", formatter_class=HelpFormatter)
    configure_parser(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
