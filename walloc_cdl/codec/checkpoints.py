"""Load and save codecs without ever executing pickled code.

Three sources, one entry point (:func:`load_codec`):

* a shipped codec name (``list_codecs()``): ``walloc_cdl/pretrained/NAME.safetensors`` + ``NAME.json``;
* an official WaLLoC ``.pth`` (``{'model_state_dict': ...}``) with its ``.json`` config beside it, or with
  a pickled ``config`` object inside (the LCCL notebooks saved a notebook-local ``Config`` class);
* the project's own format: ``.safetensors`` whose header metadata holds the config.

``.pth`` files go through ``torch.load(weights_only=True)``.  A notebook ``Config`` global is mapped to a
plain namespace through torch's own safe unpickler; any other global is refused with an error that
names it, and nothing in the file runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickletools
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..files import atomic_path
from .model import Codec1D, Codec2D, build_codec

PRETRAINED_DIR = Path(__file__).parents[1] / "pretrained"
CONFIG_KEYS = ("channels", "J", "Ne", "Nd", "latent_dim", "latent_bits", "lightweight_encode", "post_filter")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: refused pickle globals, missing config, mismatched weights."""


class PickledConfig(SimpleNamespace):
    """Stand-in for a notebook-local ``Config`` class found in an official checkpoint."""


def list_codecs() -> list[str]:
    """Names of the codecs shipped inside the package."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.json") if p.with_suffix(".safetensors").exists())


def codec_card(name: str) -> dict[str, Any]:
    """The JSON record of a shipped codec: config, training data, steps and held-out figures."""
    path = PRETRAINED_DIR / f"{name}.json"
    if not path.exists():
        raise KeyError(f"no shipped codec named {name!r}; available: {list_codecs()}")
    return json.loads(path.read_text())


def preset(name: str) -> dict[str, Any]:
    """A shipped codec's configuration (``"codec"``) and its training defaults (``kind``, ``crop``,
    ``min_scale``, ``rho``, ``batch_size``, ``segment``): its card's ``config`` and ``preset`` blocks, so
    ``train-codec --preset NAME`` and the shipped codec never disagree.  KeyError names the available ones."""
    card = codec_card(name) if name in list_codecs() else {}
    if "preset" not in card:
        raise KeyError(f"unknown preset {name!r}; available: {[n for n in list_codecs() if 'preset' in codec_card(n)]}")
    return {"codec": dict(card["config"]), **card["preset"]}


# -- pickle inspection ------------------------------------------------------------------------------
def _pickle_globals(path: Path) -> list[str]:
    """'module.name' of every global a torch zip checkpoint's pickle references (read, never run)."""
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            data = zf.read(pkl)
    except (zipfile.BadZipFile, StopIteration) as e:
        raise CheckpointError(f"{path}: not a torch zip checkpoint ({e}); re-save it with torch>=1.6") from e
    found, strings = [], []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(arg)
        elif op.name == "GLOBAL":
            found.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
    return found


def _is_config_global(name: str) -> bool:
    module, _, cls = name.rpartition(".")
    return cls.endswith("Config") and (module == "__main__" or module.startswith("__main__"))


def load_pth(path: str | Path) -> dict[str, Any]:
    """``torch.load`` of an official checkpoint, weights only; maps a notebook ``Config`` to a namespace."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - re-raised below with the reason
        if not isinstance(first, __import__("pickle").UnpicklingError):
            raise CheckpointError(f"{path}: cannot be read as a torch checkpoint: {first}") from first
    names = _pickle_globals(path)
    configs = sorted({n for n in names if _is_config_global(n)})
    with torch.serialization.safe_globals([(PickledConfig, n) for n in configs]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            allowed = set(configs)
            suspicious = sorted({n for n in names if n not in allowed and not n.startswith(("torch.", "collections."))})
            raise CheckpointError(
                f"{path}: refused to unpickle: it references globals that could run code "
                f"({', '.join(suspicious) or 'see below'}). Only tensors, plain containers and a notebook "
                f"Config object are accepted. torch said: {str(e).splitlines()[0]}"
            ) from None


# -- config handling --------------------------------------------------------------------------------
def _config_from(obj: Any) -> dict[str, Any]:
    d = vars(obj) if isinstance(obj, SimpleNamespace) else dict(obj)
    return {k: d[k] for k in CONFIG_KEYS if k in d}


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON config ({e})") from e
    return _config_from(data["config"] if isinstance(data.get("config"), dict) else data)


def _load_state(codec: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the first mismatch and both shapes."""
    own = codec.state_dict()
    for k, v in own.items():
        if k not in state:
            raise CheckpointError(f"{source}: weights lack key {k!r} (config expects shape {tuple(v.shape)})")
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: config and weights disagree at {k!r}: config gives shape {tuple(v.shape)}, "
                f"weights have {tuple(state[k].shape)}"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise CheckpointError(f"{source}: weights have key {extra[0]!r} that the config's codec does not")
    codec.load_state_dict(state, strict=True)


def state_dict_sha256(codec: torch.nn.Module) -> str:
    """Fingerprint of a codec's weights (sorted keys, raw bytes): identifies it in dataset metadata."""
    h = hashlib.sha256()
    for k, v in sorted(codec.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -- public entry points ----------------------------------------------------------------------------
def read_config(name_or_path: str | Path) -> dict[str, Any]:
    """A codec's config without building it: a shipped card's, a .safetensors header's, or the JSON (or the
    embedded config) of an official .pth."""
    path, name = Path(name_or_path), str(name_or_path)
    if not path.exists() and name in list_codecs():
        return dict(codec_card(name)["config"])
    if path.suffix == ".safetensors" and path.exists():
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "config" in meta:
            return _config_from(json.loads(meta["config"]))
    if path.with_suffix(".json").exists():
        return _read_config_file(path.with_suffix(".json"))
    return dict(load_codec(name_or_path).config)


def load_codec(name_or_path: str | Path, config: dict[str, Any] | str | Path | None = None,
               device: str | torch.device = "cpu") -> Codec1D | Codec2D:
    """A codec in eval mode from a shipped name, an official ``.pth`` (+ ``.json``), our ``.safetensors``,
    or a hub name ``hf://ORG/REPO[@REV]/NAME`` (:mod:`walloc_cdl.codec.hub`; the official bare names ``RGB_16x``,
    ``RGB_4x``, ``stereo_5x``, ``stereo_20x`` resolve to danjacobellis/walloc when nothing local has them).

    ``config`` overrides the config found with the weights: a dict or a path to a JSON file.
    """
    from . import hub

    name = str(name_or_path)
    path = Path(name_or_path)
    if hub.is_hub_name(name):
        path = hub.fetch_codec(name)
    elif not path.exists() and name in list_codecs():
        path = PRETRAINED_DIR / f"{name}.safetensors"
    elif not path.exists() and hub.official_name(name):
        path = hub.fetch_codec(hub.official_name(name))
    if not path.exists():
        raise FileNotFoundError(
            f"{name_or_path}: no such file and no shipped codec of that name; shipped: {list_codecs()}; "
            f"hub names: hf://ORG/REPO/NAME, or an official one {list(hub.OFFICIAL_NAMES)}"
        )
    cfg: dict[str, Any] | None = None
    if isinstance(config, (str, Path)):
        cfg = _read_config_file(Path(config))
    elif config is not None:
        cfg = _config_from(config)

    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        if cfg is None:
            if "config" in meta:
                cfg = _config_from(json.loads(meta["config"]))
            elif path.with_suffix(".json").exists():
                cfg = _read_config_file(path.with_suffix(".json"))
    else:
        ckpt = load_pth(path)
        if not isinstance(ckpt, dict):
            raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
        state = ckpt.get("model_state_dict", ckpt)
        if cfg is None and path.with_suffix(".json").exists():
            cfg = _read_config_file(path.with_suffix(".json"))
        if cfg is None and "config" in ckpt:
            cfg = _config_from(ckpt["config"])
    if cfg is None:
        raise CheckpointError(
            f"{path}: no codec config found; put the official JSON beside it ({path.with_suffix('.json').name})"
            " or pass config=..."
        )
    if "post_filter" not in cfg and any(k == "wt.h0" for k in state):
        cfg["post_filter"] = any(k.startswith("post.") for k in state)
    codec = build_codec(cfg)
    _load_state(codec, state, str(path))
    return codec.to(device).eval()


def save_codec(codec: Codec1D | Codec2D, path: str | Path, metadata: dict[str, Any] | None = None,
               official: bool = False, half_decoder: bool = False, push_to_hub: str | None = None) -> Path:
    """Save as ``.safetensors`` with the config in its header (+ a readable ``.json`` beside it).

    ``official=True`` writes walloc's own layout instead (``.pth`` with ``model_state_dict`` + ``.json``)
    for users of the original package.  ``half_decoder=True`` stores the decoder's floating tensors as
    fp16 (half the size; :func:`load_codec` restores fp32); the encoder, which defines the latents, and
    the wavelet filters stay fp32.  ``push_to_hub="ORG/REPO"`` then publishes both files in one commit
    (:func:`walloc_cdl.codec.hub.push_codec`); ``load_codec("hf://ORG/REPO/NAME")`` reads them back.
    """
    saved = _save_codec(codec, path, metadata, official, half_decoder)
    if push_to_hub:
        from .hub import push_codec

        push_codec(saved, push_to_hub)
    return saved


def _save_codec(codec: Codec1D | Codec2D, path: str | Path, metadata: dict[str, Any] | None,
                official: bool, half_decoder: bool) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = codec.config
    state = {k: v.detach().cpu().contiguous() for k, v in codec.state_dict().items()}
    if half_decoder:
        state = {k: v.half() if (k.startswith("decoder.") and v.is_floating_point()) else v for k, v in state.items()}
    if official:
        path = path.with_suffix(".pth")
        with atomic_path(path) as tmp:
            torch.save({"model_state_dict": state}, tmp)
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(cfg, indent=4))
        return path
    path = path.with_suffix(".safetensors")
    meta = {"format": "walloc-cdl", "config": json.dumps(cfg)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
        # safetensors >= 0.7 creates the file 0600; a codec is made to be shared, so honour the umask instead
        mask = os.umask(0)
        os.umask(mask)
        tmp.chmod(0o666 & ~mask)
    card = {"config": cfg, **(metadata or {})}
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(card, indent=2))
    return path


def describe(name_or_path: str) -> dict[str, Any]:
    """A JSON-able summary of a codec: config, shapes, parameter counts and, if shipped, its card."""
    codec = load_codec(name_or_path)
    n_enc = sum(p.numel() for p in codec.encoder.parameters())
    n_dec = sum(p.numel() for p in codec.decoder.parameters())
    out = {
        "codec": str(name_or_path),
        "kind": type(codec).__name__,
        "config": codec.config,
        "downsampling_per_side": codec.downsampling,
        "dimensionality_reduction": codec.dimensionality_reduction,
        "encoder_params": n_enc,
        "decoder_params": n_dec,
        "weights_sha256": state_dict_sha256(codec),
        "encoder_sha256": state_dict_sha256(codec.encoder),  # equal = equal latents
    }
    if str(name_or_path) in list_codecs():
        card = codec_card(str(name_or_path))
        out["card"] = {k: v for k, v in card.items() if k != "config"}
    return out
