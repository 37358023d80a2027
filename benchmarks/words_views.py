"""What each 16×/4× path leaves of the words benchmark's text, as one picture.

Rows: test crops (3 by default) of the CPU words suite (128², text 12-18 px, unseen fonts and photos). Columns: the crop,
decoded by `rgb-4x`, resized 1/2 per side and back, decoded by `rgb-16x`, resized 1/4 per side and back,
and the first latent channel of `rgb-16x` (16×16, shown blocky). It goes with the decoded-16x run in
RESULTS.md: a model trained on `rgb-16x`-decoded crops stayed at chance while one trained on the latents
read half the words, though most decoded words stay legible to a person (under ringing and 8×8 texture).
The columns are made by :func:`walloc_cdl.compare.variant_transform`, what the encode job writes for those runs.

    python benchmarks/words_views.py --out benchmarks/words_views.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from walloc_cdl import load_codec  # noqa: E402
from walloc_cdl.data.builtin import load_benchmark  # noqa: E402
from walloc_cdl.compare import Variant, variant_transform  # noqa: E402


@torch.no_grad()
def views(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """uint8 crops (N, 3, H, W) -> {column title: uint8 (N, 3, H, W), or int8 latent (N, 1, h, w)}."""
    out = {"crop": x}
    for name, r in (("rgb-4x", 4), ("rgb-16x", 16)):
        codec = load_codec(name).eval()
        for title, v in ((f"decoded {name}", Variant(f"decoded-{r}x", "decoded", r, codec)),
                         (f"down {r}x and up", Variant(f"down-up-{r}x", "down-up", r))):
            out[title] = variant_transform(v, 3, "image").encode(x)
        if r == 16:
            out["rgb-16x latent ch 0"] = codec.encode(x)[:, :1].to(torch.int8)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3, help="test crops (rows)")
    ap.add_argument("--out", default="words_views.png")
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench = load_benchmark("words", n_train=args.n, n_test=args.n, size=128, font_px=(24, 36))
    xt, yt = next(iter(bench.tests.values()))
    cols = views(xt[:args.n])
    fig, axes = plt.subplots(args.n, len(cols), figsize=(2.2 * len(cols), 2.3 * args.n), squeeze=False)
    for j, (title, v) in enumerate(cols.items()):
        for i in range(args.n):
            ax = axes[i, j]
            if v.shape[1] == 3:
                ax.imshow(v[i].permute(1, 2, 0).numpy())
            else:
                ax.imshow(v[i, 0].numpy(), cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(bench.classes[int(yt[i])], fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=60)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
