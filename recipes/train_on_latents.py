"""Recipe: your labelled image folder -> latent shards -> a trained classifier -> predictions.

The three commands ``walloc-cdl encode``, ``train`` and ``predict`` as Python calls, to copy and edit:

    python recipes/train_on_latents.py photos/ runs/photos          # photos/CLASS/*.jpg
"""
import sys
from pathlib import Path

import walloc_cdl
from walloc_cdl.data import EncodeOptions, encode_dataset, open_source

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
codec = walloc_cdl.load_codec("rgb-16x")

# 1. encode once: 256² centre crops -> 12x32x32 latents, 1000 samples a shard (class ids by folder name)
opts = EncodeOptions(split="train", resize=256, crop="center", shard_size=1000, resume=True)
encode_dataset(open_source(folder), out / "latents", codec, "rgb-16x", opts)

# 2. train, streamed shard by shard; every TrainConfig field is a keyword (opt, sched, mixup, ema_decay, ...)
walloc_cdl.train_model(out / "latents", "resnet18", out / "run", epochs=10, batch_size=64, resume=True)

# 3. reload: the model takes latents as LatentDataset yields them; predict encodes files with the run's codec
model = walloc_cdl.load_latent_model(out / "run")
files = sorted(p for p in folder.rglob("*") if p.is_file())[:5]
for p in walloc_cdl.predict_files(out / "run", files):
    print(p["file"], p.get("class"), p.get("prob"))
