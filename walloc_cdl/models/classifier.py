"""A classifier that takes its inputs exactly as ``LatentDataset`` yields them.

Whatever a dataset root holds (WaLLoC latents, or the equal-dimension pixel baselines that ``compare``
writes), the model built here standardises it per channel with statistics measured on the training
split and kept as buffers, so a saved run needs no preprocessing recipe beside it.  The network itself
is a timm model behind an adapter stem (:mod:`.stems`) for images, or a 1D arch (:mod:`.audio`) for audio.

Usage::

    model = build_classifier({"model": "resnet10t", "num_classes": 10, "codec": info["codec"],
                              "input_shape": [12, 8, 8]})
    logits = model(z)              # z as LatentDataset yields it: float integers (B, C, h, w)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn


class LatentClassifier(nn.Module):
    """``net((x - mean) / std)`` with per-channel ``mean`` / ``std`` buffers (saved with the weights)."""

    def __init__(self, net: nn.Module, channels: int, ndim: int):
        super().__init__()
        shape = (1, channels) + (1,) * ndim
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.net = net

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean.reshape(self.mean.shape))
        self.std.copy_(std.clamp_min(1e-6).reshape(self.std.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() - self.mean) / self.std)


def needs_img_size(model_name: str) -> bool:
    """timm families whose token grid depends on the input size (given at creation as ``img_size``)."""
    import timm

    return timm.models.model_entrypoint(model_name).__module__.rsplit(".", 1)[-1] in (
        "vision_transformer", "deit", "maxxvit")


def build_classifier(spec: dict[str, Any], pretrained: bool = False) -> LatentClassifier:
    """The network for a dataset's inputs, from a run's ``config.json`` fields.

    ``spec``: ``model`` (timm name or audio arch), ``num_classes``, ``codec`` (the dataset's ``_info.json``
    codec block: a WaLLoC codec's latents, or ``kind: "pixels"`` with its ``stride``), ``input_shape``
    (C, h, w) or (C, T), and optionally ``stem`` and ``magnitude`` (None: on for audio latents, else off).
    """
    from .audio import create_audio_model, create_latent_audio_model
    from .stems import create_latent_model, create_strided_model

    block, shape = spec["codec"], list(spec["input_shape"])
    cfg = block.get("config", {})
    pixels = block.get("kind") == "pixels"
    ndim = len(shape) - 1
    name, n, stem = spec["model"], int(spec["num_classes"]), spec.get("stem") or "keep"
    magnitude = spec.get("magnitude")
    if magnitude is None:
        magnitude = ndim == 1 and not pixels
    if pixels:
        stride = int(cfg.get("stride", 1))
        if ndim == 1:
            net = create_audio_model(name, shape[0], n, input_stride=stride)
        else:
            kw = {"img_size": shape[-1] * stride} if needs_img_size(name) else {}
            net = create_strided_model(name, shape[0], stride, n, pretrained=pretrained, stem=stem,
                                       pixel_chans=int(cfg.get("channels", shape[0])), **kw)
    elif ndim == 1:
        net = create_latent_audio_model(name, cfg, n, magnitude=bool(magnitude))
    else:
        kw = {"img_size": shape[-1] * 2 ** int(cfg["J"])} if needs_img_size(name) else {}
        net = create_latent_model(name, cfg, n, pretrained=pretrained, stem=stem, magnitude=bool(magnitude), **kw)
    return LatentClassifier(net, shape[0], ndim)
