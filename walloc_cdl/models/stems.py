"""timm models that take WaLLoC latents (or any input already reduced by a stride) instead of pixels.

A latent of ``latent_dim`` channels at H/2^J × W/2^J is, for a classifier, an input whose first 2^J of
spatial reduction has already been done.  :func:`create_latent_model` therefore builds the timm model the
user names and grafts an *adapter stem* onto it where the pixel model's features reach stride 2^J, so the
latent model and the pixel model are the same network from that point on and their costs are comparable.

Four ways to graft (``stem=``), all measured in ``benchmarks/downstream.py --stems`` (see RESULTS.md):

* ``"keep"`` (default): keep every stage.  The pixel stem becomes a 3×3 conv from ``latent_dim`` channels
  with stride max(1, s_stem / 2^J); if 2^J exceeds the stem's stride the first stride-2 stages are made
  stride 1 (convs and pools unstrided, weights kept).  Every kept stage's output then has the same stride
  *relative to the original pixels* as in the pixel model; early stages run on a 2^J/s_stem-times smaller
  grid than in the pixel model.  All pretrained stage weights stay usable.
* ``"enter"``: enter the network at the stage whose input has stride 2^J: the stem and all stages whose
  output stride is <= 2^J are dropped, and a conv + norm adapter maps the latent to that stage's width.
  Cheaper, but it throws away depth (for J=3 a ResNet keeps only layer3 and layer4).
* ``"shuffle"``: when 2^J exceeds the stem's stride s_stem, the stem's first conv becomes a 3×3 conv to
  f² times its width followed by a pixel shuffle by f = 2^J / s_stem (a learned partial synthesis), and
  the stem's other strides become 1.  The stem's output then has the pixel model's grid and width, so
  every stage runs exactly as in the pixel model (and as for pixels downsampled to stride s_stem).  It
  costs about what the pixel model costs after its stem; it buys spatial positions for the early stages,
  which detail-sensitive tasks need (on the words benchmark it beat ``"keep"`` at a lower throughput:
  RESULTS.md).  Where 2^J <= s_stem it is ``"keep"``.
* ``"synth"``: a learned linear synthesis back to the pixel grid: a 3×3 conv from ``latent_dim`` to
  ``pixel_chans``·4^J channels and a pixel shuffle by 2^J, in front of the *unchanged* pixel model.  The
  whole pixel model runs at full resolution, so it costs what the pixel model costs: what it buys is the
  latents' storage and I/O (r× smaller batches on the host) with the pixel model's depth and grid.
  It tells how much of what a full-resolution model reads the latents still hold (on words it read no
  more than ``"keep"``: RESULTS.md), and it is the one stem under which a pretrained pixel model keeps all
  its weights.
  Convolutional families only (ViTs derive their token grid from the input size).

ViT/DeiT use a patch embedding of ``patch_size / 2^J`` on the H/2^J grid: same token grid, same
transformer.

``magnitude=True`` feeds |z| beside z to the first layer (a :class:`Magnitude` module in front of it, which
doubles its input channels).  A packet coefficient's sign follows the phase of the detail inside its band,
so the same edge shifted by a pixel can flip it; |z| is a shift-robust energy cue.  On audio latents it is
the default (it helped on the instrument benchmark); on images it is off by default (RESULTS.md).
``img_size`` in ``timm_kwargs`` always means the *pixel* size, so pixel and latent models are created with
the same arguments.

Usage::

    model = create_latent_model("resnet50", "rgb-16x", num_classes=100)          # latents (B, 12, 32, 32)
    model = create_latent_model("vit_small_patch16_224", codec, 10, img_size=256)  # 2×2 latent patches
    pix = create_strided_model("resnet50", in_chans=3, input_stride=4, num_classes=100)  # 64² downsampled
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from timm.layers import Conv2dSame

STEMS = ("keep", "enter", "shuffle", "synth")


@dataclass(frozen=True)
class LatentSpec:
    """What a model needs to know about a codec: latent channels, levels J, and 1D or 2D."""

    latent_dim: int
    J: int
    ndim: int = 2
    channels: int | None = None

    @property
    def stride(self) -> int:
        return 2 ** self.J


def latent_spec(codec_or_spec: Any) -> LatentSpec:
    """A :class:`LatentSpec` from a codec, a shipped codec name or path, a config dict, or a spec."""
    if isinstance(codec_or_spec, LatentSpec):
        return codec_or_spec
    if isinstance(codec_or_spec, nn.Module):
        c = codec_or_spec
        return LatentSpec(int(c.latent_dim), int(c.J), int(getattr(c, "ndim", 2)), int(c.channels))
    if isinstance(codec_or_spec, (str, Path)):
        from ..codec.checkpoints import read_config

        return latent_spec(read_config(codec_or_spec))
    if isinstance(codec_or_spec, dict):
        d = codec_or_spec
        missing = [k for k in ("latent_dim", "J") if k not in d]
        if missing:
            raise ValueError(f"codec spec lacks {missing}; got keys {sorted(d)}")
        ndim = int(d.get("ndim", 1 if "post_filter" in d else 2))
        return LatentSpec(int(d["latent_dim"]), int(d["J"]), ndim, d.get("channels"))
    raise TypeError(f"expected a codec, codec name/path, config dict or LatentSpec, got {type(codec_or_spec).__name__}")


class Magnitude(nn.Module):
    """x -> [x, |x|] along channels, in front of a model's first layer (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.abs()], dim=1)


def _prepend_magnitude(model: nn.Module, dotted: str) -> None:
    _set_stage(model, dotted, nn.Sequential(Magnitude(), model.get_submodule(dotted)))


# -- network anatomy --------------------------------------------------------------------------------
@dataclass
class _Anatomy:
    stem: list[str]          # top-level attribute names forming the pixel stem, in forward order
    stages: nn.ModuleList | nn.Sequential | list[nn.Module]
    stage_names: list[str]   # feature_info module names of the stages
    norm: str                # adapter norm for the "enter" stem: 'bn' or 'ln'


def _anatomy(model: nn.Module) -> _Anatomy:
    from timm.models.convnext import ConvNeXt
    from timm.models.efficientnet import EfficientNet
    from timm.models.maxxvit import MaxxVit
    from timm.models.resnet import ResNet

    if isinstance(model, ResNet):
        names = ["layer1", "layer2", "layer3", "layer4"]
        return _Anatomy(["conv1", "bn1", "act1", "maxpool"], [getattr(model, n) for n in names], names, "bn")
    if isinstance(model, ConvNeXt):
        return _Anatomy(["stem"], model.stages, [f"stages.{i}" for i in range(len(model.stages))], "ln")
    if isinstance(model, EfficientNet):
        return _Anatomy(["conv_stem", "bn1"], model.blocks, [f"blocks.{i}" for i in range(len(model.blocks))], "bn")
    if isinstance(model, MaxxVit):
        return _Anatomy(["stem"], model.stages, [f"stages.{i}" for i in range(len(model.stages))], "bn")
    raise NotImplementedError(
        f"no latent adapter for timm class {type(model).__name__}; supported: ResNet (resnet*, resnext*, "
        "seresnet*, ...), ConvNeXt, EfficientNet (efficientnet*, mobilenetv2*), MaxxVit (maxvit*, coatnet*), "
        "VisionTransformer (vit*, deit*)"
    )


def _stride_ops(module: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, op) for every conv or pool in ``module`` (itself included) that strides."""
    holder = nn.Module()
    holder.add_module("root", module)
    found = []
    for parent in holder.modules():
        for attr, child in parent.named_children():
            if isinstance(child, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and max(_pair(child.stride)) > 1:
                found.append((parent, attr, child))
    return found


def _stride(module: nn.Module) -> int:
    ops = _stride_ops(module)
    return max((max(_pair(op.stride)) for _, _, op in ops), default=1)


def _pair(v: Any) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # type: ignore[return-value]


def _unstride(module: nn.Module) -> nn.Module:
    """Make every strided conv/pool in ``module`` stride 1 with 'same' output size, keeping weights.

    Returns the module to use in its place (differs when ``module`` itself is a strided op)."""
    holder = nn.Module()
    holder.add_module("root", module)
    for parent, attr, op in _stride_ops(holder):
        k, p = _pair(op.kernel_size), _pair(op.padding)
        if isinstance(op, nn.Conv2d):
            op.stride = (1, 1)
            if isinstance(op, Conv2dSame) or isinstance(op.padding, str):
                continue  # pads itself for the new stride
            extra = [kk - 1 - 2 * pp for kk, pp in zip(k, p)]
            if any(e > 0 for e in extra):  # e.g. ConvNeXt's 2×2/2 downsample conv: pad right/bottom
                setattr(parent, attr, nn.Sequential(nn.ZeroPad2d((0, extra[1], 0, extra[0])), op))
        elif k == _pair(op.stride) and p == (0, 0):  # non-overlapping pooling: a no-op at stride 1
            setattr(parent, attr, nn.Identity())
        else:
            op.stride = 1
    return holder.root


def _first_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for parent in module.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                return parent, attr, child
    raise ValueError(f"stem {type(module).__name__} has no conv")


def _replace_stem_conv(model: nn.Module, stem: list[str], in_chans: int, stride: int, upsample: int = 1) -> None:
    """First conv of the stem -> 3×3 conv from ``in_chans`` with ``stride``; the stem's other strides -> 1.

    ``upsample`` > 1: the conv makes ``upsample``² times the width and a pixel shuffle follows it."""
    first = getattr(model, stem[0])
    if isinstance(first, nn.Conv2d):
        parent, attr, conv = model, stem[0], first
    else:
        parent, attr, conv = _first_conv(first)
    new = nn.Conv2d(in_chans, conv.out_channels * upsample ** 2, 3, stride=1, padding=1, bias=conv.bias is not None)
    setattr(parent, attr, nn.Sequential(new, nn.PixelShuffle(upsample)) if upsample > 1 else new)
    for name in stem:
        m = getattr(model, name)
        if m is not new:
            setattr(model, name, _unstride(m))
    new.stride = (stride, stride)  # set last, so unstriding the rest of the stem leaves it alone


def _synthesis_stem(model: nn.Module, stem: list[str], in_chans: int, pixel_chans: int, f: int) -> None:
    """Put a learned linear synthesis (3×3 conv to ``pixel_chans``·f² channels, pixel shuffle by f) in
    front of the stem's first conv, which keeps its weights, stride and ``pixel_chans`` inputs."""
    first = getattr(model, stem[0])
    parent, attr, conv = (model, stem[0], first) if isinstance(first, nn.Conv2d) else _first_conv(first)
    synth = nn.Conv2d(in_chans, pixel_chans * f * f, 3, padding=1)
    setattr(parent, attr, nn.Sequential(synth, nn.PixelShuffle(f), conv))


def _adapter(in_chans: int, out_chans: int, norm: str) -> nn.Sequential:
    from timm.layers import LayerNorm2d

    conv = nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False)
    if norm == "ln":
        return nn.Sequential(conv, LayerNorm2d(out_chans))
    return nn.Sequential(conv, nn.BatchNorm2d(out_chans), nn.ReLU(inplace=True))


def _is_vit(model_name: str) -> bool:
    return timm.models.model_entrypoint(model_name).__module__ in ("timm.models.vision_transformer",
                                                                    "timm.models.deit")


def _log2(n: int, what: str) -> int:
    j = round(math.log2(n))
    if 2 ** j != n:
        raise ValueError(f"{what} must be a power of two, got {n}")
    return j


# -- public ---------------------------------------------------------------------------------------
def create_strided_model(model_name: str, in_chans: int, input_stride: int, num_classes: int,
                         pretrained: bool = False, stem: str = "keep", features_only: bool = False,
                         out_indices: tuple[int, ...] | None = None, magnitude: bool = False,
                         pixel_chans: int = 3, **timm_kwargs: Any) -> nn.Module:
    """The timm model ``model_name`` fed an input whose spatial reduction ``input_stride`` is already done.

    ``input_stride=1`` is the plain pixel model; WaLLoC latents use 2^J; downsampled pixels use √r.
    The returned model keeps timm's API (``forward_features``, ``forward_head``, ``reset_classifier``);
    ``features_only=True`` returns timm's ``FeatureListNet`` whose ``feature_info`` reductions are
    relative to this model's own input.  ``model.latent_adapter`` records what was changed.
    ``magnitude``: |x| beside x into the first layer (module docstring); for reduced inputs only.
    ``pixel_chans``: channels of the pixels behind the input, which the ``synth`` stem reconstructs.
    """
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    _log2(input_stride, "input_stride")
    if magnitude and input_stride == 1:
        raise ValueError("magnitude=True is for inputs already reduced (latents): give input_stride > 1")
    if magnitude:  # build for 2 × in_chans, then put Magnitude in front of the layer that reads the input
        vit = _is_vit(model_name)  # timm builds ViT feature extractors itself; others are wrapped below
        model = create_strided_model(model_name, 2 * in_chans, input_stride, num_classes, pretrained, stem,
                                     features_only and vit, out_indices, pixel_chans=pixel_chans, **timm_kwargs)
        # the conv that reads the input, not its container: timm's feature taps name the containers
        root = "" if vit else _anatomy(model).stem[0]
        first = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and (
            n.endswith("patch_embed.proj") if vit else n == root or n.startswith(f"{root}.")))
        _prepend_magnitude(model, first)
        model.latent_adapter = {**model.latent_adapter, "in_chans": in_chans, "magnitude": True}
        return _features(model, out_indices) if features_only and not vit else model
    if input_stride == 1:
        if features_only:
            kw = {"out_indices": out_indices} if out_indices is not None else {}
            return timm.create_model(model_name, pretrained=pretrained, in_chans=in_chans,
                                     features_only=True, **kw, **timm_kwargs)
        return timm.create_model(model_name, pretrained=pretrained, in_chans=in_chans,
                                 num_classes=num_classes, **timm_kwargs)
    if _is_vit(model_name):
        if stem == "synth":  # timm derives a ViT's token grid from its input size, which synth would break
            raise ValueError(f"{model_name}: stem='synth' is for convolutional families; ViTs take latents through a "
                             "patch embedding of patch_size / 2^J (the default)")
        return _create_vit(model_name, in_chans, input_stride, num_classes, pretrained, features_only,
                           out_indices, **timm_kwargs)

    synth = stem == "synth"
    model = timm.create_model(model_name, pretrained=pretrained, num_classes=num_classes,
                              **({"in_chans": pixel_chans} if synth else {}), **timm_kwargs)
    a = _anatomy(model)
    s_stem = math.prod(_stride(getattr(model, n)) for n in a.stem)
    strides = [_stride(s) for s in a.stages]
    mode = stem if synth or input_stride > s_stem else "keep"  # nothing to drop or shuffle when the stem strides more

    reductions: dict[str, int] = {}
    dropped: list[str] = []
    if mode in ("shuffle", "synth"):
        if synth:
            _synthesis_stem(model, a.stem, in_chans, pixel_chans, input_stride)
        else:
            _replace_stem_conv(model, a.stem, in_chans, 1, upsample=input_stride // s_stem)
        # relative to the latent input the stem's output is finer: only whole reductions are listed
        r = s_stem
        for name, stage in zip(a.stage_names, a.stages):
            r *= _stride(stage)
            if r >= input_stride:
                reductions[name] = r // input_stride
    elif mode == "keep":
        _replace_stem_conv(model, a.stem, in_chans, max(1, s_stem // input_stride))
        remaining = max(1, input_stride // s_stem)
        for stage, s in zip(a.stages, strides):
            if remaining == 1:
                break
            if s > 1:
                if remaining % s:
                    raise ValueError(f"{model_name}: input stride {input_stride} does not match its strides")
                _unstride(stage)  # stages are containers: ops are replaced in place
                remaining //= s
        if remaining != 1:
            raise ValueError(f"{model_name}: input stride {input_stride} exceeds the network's total stride")
        r = max(1, s_stem // input_stride)
        reductions.update({n: r for n in ("act1", "stem")})
        for name, stage in zip(a.stage_names, a.stages):
            r *= _stride(stage)
            reductions[name] = r
    else:
        cum, n_drop = s_stem, 0
        for s in strides:
            if cum * s > input_stride:
                break
            cum *= s
            n_drop += 1
        if cum != input_stride:
            raise ValueError(f"{model_name}: no stage boundary at stride {input_stride} (stem {s_stem}, "
                             f"stages {strides})")
        info = {f["module"]: f["num_chs"] for f in model.feature_info}
        last = a.stage_names[n_drop - 1] if n_drop else (a.stem[-1] if a.stem[-1] in info else "stem")
        width = info.get(last) or _out_width(a.stages[n_drop])
        setattr(model, a.stem[0], _adapter(in_chans, width, a.norm))
        for name in a.stem[1:]:
            setattr(model, name, nn.Identity())
        for i in range(n_drop):
            _set_stage(model, a.stage_names[i], nn.Identity())
        dropped = a.stage_names[:n_drop]
        r = 1
        for name, stage in zip(a.stage_names[n_drop:], a.stages[n_drop:] if not isinstance(a.stages, list)
                               else a.stages[n_drop:]):
            r *= _stride(stage)
            reductions[name] = r

    model.feature_info = [dict(f, reduction=reductions[f["module"]]) for f in model.feature_info
                          if f["module"] in reductions and f["module"] not in dropped]
    model.latent_adapter = {"stem": mode, "input_stride": input_stride, "in_chans": in_chans,
                            "dropped": dropped}
    return _features(model, out_indices) if features_only else model


def _features(model: nn.Module, out_indices: tuple[int, ...] | None) -> nn.Module:
    """timm's FeatureListNet over an adapted model, its feature_info already rewritten."""
    from timm.models import FeatureListNet

    idx = out_indices if out_indices is not None else tuple(range(len(model.feature_info)))
    dotted = any("." in f["module"] for f in model.feature_info)  # stages inside a Sequential
    feats = FeatureListNet(model, out_indices=idx, flatten_sequential=dotted)
    feats.latent_adapter = model.latent_adapter
    return feats


def _set_stage(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, attr = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and attr.isdigit():
        parent[int(attr)] = module
    else:
        setattr(parent, attr, module)


def _out_width(stage: nn.Module) -> int:
    for m in stage.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError("cannot infer stage width")


def _create_vit(model_name: str, in_chans: int, input_stride: int, num_classes: int, pretrained: bool,
                features_only: bool, out_indices: tuple[int, ...] | None, **kw: Any) -> nn.Module:
    cfg = timm.models.get_pretrained_cfg(model_name)
    img_size = kw.pop("img_size", (cfg.input_size[-1] if cfg is not None else 224))
    patch = kw.pop("patch_size", None)
    if patch is None:
        probe = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=img_size)
        patch = probe.patch_embed.patch_size[0]
    if patch % input_stride:
        raise ValueError(f"{model_name}: patch size {patch} is not divisible by the input stride {input_stride}")
    if img_size % input_stride:
        raise ValueError(f"img_size {img_size} is not a multiple of the input stride {input_stride}")
    extra = {"features_only": True, **({"out_indices": out_indices} if out_indices is not None else {})} \
        if features_only else {"num_classes": num_classes}
    model = timm.create_model(model_name, pretrained=pretrained, in_chans=in_chans, img_size=img_size // input_stride,
                              patch_size=patch // input_stride, **extra, **kw)
    model.latent_adapter = {"stem": "patch_embed", "input_stride": input_stride, "in_chans": in_chans,
                            "patch_size": patch // input_stride, "dropped": []}
    return model


def create_latent_model(model_name: str, codec_or_spec: Any, num_classes: int, pretrained: bool = False,
                        **timm_kwargs: Any) -> nn.Module:
    """timm ``model_name`` taking WaLLoC latents (B, latent_dim, H/2^J, W/2^J) of ``codec_or_spec``.

    ``codec_or_spec``: a Codec2D, a shipped codec name (``"rgb-16x"``), a path, a config dict with
    ``latent_dim`` and ``J``, or a :class:`LatentSpec`.  ``timm_kwargs`` go to ``timm.create_model``
    (``img_size`` is the pixel size); ``stem="keep"|"enter"|"shuffle"|"synth"`` picks the graft (module
    docstring).
    """
    spec = latent_spec(codec_or_spec)
    if spec.ndim != 2:
        raise ValueError("create_latent_model builds 2D (image) models; for audio latents use "
                         "walloc_cdl.models.create_latent_audio_model")
    timm_kwargs.setdefault("pixel_chans", spec.channels or 3)
    return create_strided_model(model_name, spec.latent_dim, spec.stride, num_classes, pretrained=pretrained,
                                **timm_kwargs)
