"""Closed-form (PCA) stereo codec on the held-out audio sets: rate rule ``rho`` x companding headroom.

Why the shipped stereo codecs cap their latent gains (``headroom`` in ``train-codec --config``): this builds the
closed-form codec of a preset from the training corpora (FluidR3 phrases + the training split of the real
recordings, half of each PCA batch each, as ``recipes/train_codec.py`` does), then scores the linear
codec on ``corpora.heldout_audio()`` for every (rho, headroom) pair.  No training; CPU in under a minute.

    python benchmarks/closed_form_audio.py                              # stereo-5x, rho 0.2/2, headroom 0/2.5
    python benchmarks/closed_form_audio.py --preset stereo-20x --rho 0.1 --headroom 0 2.5

Prints JSON.  PSNR as in ``walloc_cdl.training.evaluate``: pooled over the clips of a set, peak 1 on [-1, 1]/2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from walloc_cdl.codec.checkpoints import preset  # noqa: E402
from walloc_cdl.codec import build_codec  # noqa: E402
from walloc_cdl.codec.containers import crop_back, pad_to_multiple  # noqa: E402
from walloc_cdl.data import corpora  # noqa: E402
from walloc_cdl.training.batches import SegmentSampler  # noqa: E402
from walloc_cdl.training.pca import cap_gains, init_linear_encoder, linear_reconstruction, wavelet_pca  # noqa: E402


def pooled_psnr(codec, pca, clips: list[np.ndarray]) -> float:
    se = n = 0.0
    for clip in clips:
        x, info = pad_to_multiple(torch.from_numpy(np.array(clip, copy=True))[None] / 2, codec.downsampling)
        r = crop_back(linear_reconstruction(codec, pca, x), info)[0].numpy()
        se += float(np.sum((r - clip / 2).astype(np.float64) ** 2))
        n += clip.size
    return 10 * math.log10(n / se)


@torch.no_grad()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="stereo-5x", choices=["stereo-5x", "stereo-20x"])
    ap.add_argument("--rho", type=float, nargs="+", default=[0.2, 2.0])
    ap.add_argument("--headroom", type=float, nargs="+", default=[0.0, 2.5], help="0 = no cap")
    ap.add_argument("--pca-batches", type=int, default=32)
    args = ap.parse_args()

    p = preset(args.preset)
    codec = build_codec(p["codec"]).eval()
    phrases = [torch.from_numpy(corpora.render_phrase(corpora.FLUIDR3, seed=i)) for i in range(72)]
    real = [torch.from_numpy(corpora.load_audio(f)) for f in corpora.real_recordings("train")]
    if not real:
        raise SystemExit("no real recordings: apt-get install sonic-pi-samples hydrogen-drumkits")
    sampler = SegmentSampler(phrases + real, p["segment"], seed=0, sources=[0] * len(phrases) + [1] * len(real))
    pca = wavelet_pca(codec, (sampler.sample(32) for _ in range(args.pca_batches)))
    sets = corpora.heldout_audio()
    rows = []
    for rho in args.rho:
        for headroom in args.headroom:
            gain = init_linear_encoder(codec, pca, pca.step_for(rho))
            capped = cap_gains(codec, (sampler.fixed(32, seed=s) for s in range(16)), headroom) if headroom else 0
            rows.append({"rho": rho, "headroom": headroom or None, "gain": gain, "capped_channels": capped,
                         **{name: pooled_psnr(codec, pca, clips) for name, clips in sets.items()}})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "closed_form_audio", "preset": args.preset, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "training_items": {"phrases": len(phrases), "real": len(real)}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
