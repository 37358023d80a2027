"""``walloc-cdl train DATA --model NAME --out RUN``: one classifier on an encoded dataset (streamed)."""
from __future__ import annotations

import argparse
import json

from ..training.train import TrainConfig, config_from, train_model

HELP = "train a timm (images) or 1D (audio) classifier on an encoded dataset; --resume continues a run"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train one classifier on a dataset written by `walloc-cdl encode` (latent shards + _info.json), "
        "streamed shard by shard. Writes RUN/metrics.jsonl (one line per epoch), RUN/model.safetensors and "
        "RUN/config.json; reload with walloc_cdl.load_latent_model(RUN). Every setting of "
        "walloc_cdl.training.TrainConfig (optimizer, schedule, label smoothing, clipping, accumulation, EMA, "
        "mixup/cutmix, ...) can be given in --config FILE (YAML or JSON); options given here override it. "
        "Under torchrun each rank reads its own shards (DDP).")
    d = TrainConfig()
    p.add_argument("data", help="dataset folder (or URL) holding _info.json and the shards")
    p.add_argument("--model", help=f"timm model name (images) or audio arch (resnet1d, ...); default {d.model}")
    p.add_argument("--out", required=True, help="run folder: metrics.jsonl, model.safetensors, config.json, checkpoints/")
    p.add_argument("--config", help="YAML or JSON file of TrainConfig settings")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, help=f"samples per step per rank; default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"peak learning rate (warmup + cosine); default {d.lr}")
    p.add_argument("--stem", choices=["keep", "enter", "shuffle", "synth"],
                   help="how latents enter an image model (default keep: every stage kept)")
    p.add_argument("--val-split", help="split scored after every epoch (default: val, else test, else none)")
    p.add_argument("--crop", type=int, nargs="+", metavar="N",
                   help="random crop of the latent grid (h w, or T for audio); centre crop when scoring")
    p.add_argument("--codec", help="refuse the data unless it was encoded with this codec")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--workers", type=int, help=f"loader processes per rank; default {d.workers}")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cfg = config_from({"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                       "stem": args.stem, "val_split": args.val_split, "crop": args.crop, "device": args.device,
                       "workers": args.workers, "seed": args.seed}, args.config)
    result = train_model(args.data, out=args.out, config=cfg, resume=args.resume, codec=args.codec,
                         progress=not args.quiet)
    print(json.dumps({k: v for k, v in result.items() if k != "classes"}))
    return 0
