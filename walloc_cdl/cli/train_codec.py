"""``walloc-cdl train-codec``: train a WaLLoC codec on images or audio (:func:`walloc_cdl.training.codec.train_codec`)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import textwrap

from ..codec.checkpoints import list_codecs
from . import HelpFormatter

EXAMPLES = """\
examples:
  walloc-cdl train-codec --preset rgb-16x --data photos/ --out runs/rgb16 --time-budget 600
  walloc-cdl train-codec --preset stereo-5x --data music/ --out runs/st5 --steps 20000 --device cuda
  walloc-cdl train-codec --config ms.yaml --data tiffs/ --out runs/ms    # ms.yaml: {channels: 6, J: 3, latent_dim: 24}
  walloc-cdl train-codec --preset rgb-16x --data photos/ --out runs/rgb16 --resume
  walloc-cdl train-codec --init rgb-16x --freeze-encoder --data my_photos/ --out runs/rgb16-mine --time-budget 3600
  walloc-cdl train-codec --init rgb-16x --freeze-encoder --config gain.json ...   # gain.json: {"gain_factor": 2}
"""


class _Formatter(HelpFormatter):
    """Wraps prose paragraphs; keeps a paragraph with indented lines (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paras = text.split("\n\n")
        return "\n\n".join("\n".join(indent + line for line in para.splitlines())
                             if any(line.startswith("  ") for line in para.splitlines())
                             else textwrap.fill(" ".join(para.split()), width, initial_indent=indent,
                                                subsequent_indent=indent, break_on_hyphens=False)
                             for para in paras)


def configure_parser(p: argparse.ArgumentParser) -> None:
    from ..training.codec import CodecTrainSettings

    p.formatter_class = _Formatter
    p.description = (
        "Train a WaLLoC codec on your own images or audio: from the closed form (PCA of the wavelet packets, "
        "quantisation step set by rho), then MSE, AdamW, warmup + cosine, random crops; or fine-tune a trained "
        "codec (--init). With --freeze-encoder only the decoder trains, so latents stay bit-identical and latent "
        "shards and models made with the starting codec stay valid. --data takes image folders, saved HF "
        "datasets / data files, WebDataset tars, idx files or audio folders, several at once. Writes "
        "OUT/NAME.safetensors + OUT/NAME.json (walloc_cdl.load_codec(path)), OUT/checkpoints/last.safetensors "
        "(--resume continues from it), previews and OUT/log.jsonl.")
    keys = ", ".join(f.name for f in dataclasses.fields(CodecTrainSettings))
    p.epilog = (EXAMPLES + "\n\n--config FILE (YAML or JSON) takes the keys of walloc_cdl.training.codec."
                "CodecTrainSettings (options given here override it): " + keys)
    p.add_argument("--preset", metavar="NAME",
                   help=f"a shipped codec's configuration and training defaults ({', '.join(list_codecs())})")
    p.add_argument("--init", metavar="CODEC",
                   help="fine-tune this trained codec (shipped name, .safetensors, or official .pth + .json) "
                        "instead of starting from the closed form")
    p.add_argument("--freeze-encoder", action="store_true", default=None,
                   help="train the decoder only: latents stay bit-identical to the --init codec's")
    p.add_argument("--data", nargs="+", metavar="SOURCE",
                   help="training sources (folders, tars, HF datasets, idx); several share the batches equally")
    p.add_argument("--val", nargs="+", metavar="SOURCE",
                   help="validation sources (default: fixed crops of the training data)")
    p.add_argument("--out", help="run folder: NAME.safetensors/.json, checkpoints/, previews, log.jsonl")
    p.add_argument("--name", help="codec name (default: the preset, the --init codec's, else 'codec')")
    p.add_argument("--steps", type=int, help="maximum optimizer steps (default 10000)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="stop after this many seconds of training (the schedule follows it)")
    p.add_argument("--batch-size", type=int, help="crops per step (default: the preset's, else 32)")
    p.add_argument("--lr", type=float, help="peak AdamW learning rate (default 5e-4)")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue from OUT/checkpoints/last.safetensors")
    p.add_argument("--half", action="store_true", default=None,
                   help="store the decoder in fp16, as the shipped codecs are")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings (the keys are listed below)")


def run(args: argparse.Namespace) -> int:
    from ..training.codec import CodecTrainSettings, train_codec
    from ..config import settings_from

    given = {k: v for k, v in vars(args).items() if k not in ("config", "debug")}
    result = train_codec(settings_from(CodecTrainSettings, given, args.config))
    print(json.dumps({k: result[k] for k in ("saved", "val_psnr", "steps")}))
    return 0
