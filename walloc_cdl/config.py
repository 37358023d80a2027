"""``--config FILE``: settings from YAML or JSON, the same keys as the library function's arguments."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, TypeVar

S = TypeVar("S")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A mapping from a .yaml/.yml or .json file (one clear error if it is neither)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such config file")
    yaml_file = p.suffix.lower() in (".yaml", ".yml")
    try:
        if yaml_file:
            import yaml

            out = yaml.safe_load(p.read_text())
        else:
            out = json.loads(p.read_text())
    except Exception as e:
        raise ValueError(f"{p}: not valid {'YAML' if yaml_file else 'JSON'} ({e})") from None
    if not isinstance(out, dict):
        raise ValueError(f"{p}: expected a mapping of settings, got {type(out).__name__}")
    return out


def take(settings: dict[str, Any], cls: type, source: str = "settings") -> Any:
    """``cls(**settings)`` for a dataclass, with unknown keys named in one line."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; known: {', '.join(known)}")
    return cls(**settings)


def settings_from(cls: type[S], overrides: Mapping[str, Any] | None = None, file: str | Path | None = None) -> S:
    """The dataclass ``cls`` from a YAML/JSON file, then ``overrides`` (None values ignored)."""
    values: dict[str, Any] = dict(read_config_file(file)) if file else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return take(values, cls, str(file or "settings"))
