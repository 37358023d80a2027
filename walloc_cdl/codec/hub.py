"""Codecs by Hugging Face hub name, through ``huggingface_hub`` (its cache, token and offline mode).

    load_codec("hf://danjacobellis/walloc/RGB_16x")           # RGB_16x.pth + RGB_16x.json from the repo
    load_codec("hf://danjacobellis/walloc@5f0c.../RGB_16x")   # pinned to a revision (branch, tag or commit)
    load_codec("RGB_16x")                                     # official bare name -> danjacobellis/walloc
    save_codec(codec, "out/my-codec", push_to_hub="me/codecs")   # then load_codec("hf://me/codecs/my-codec")

A hub name is ``hf://ORG/REPO[@REV]/NAME``: NAME (a path in the repo, without suffix) resolves to
``NAME.safetensors`` (our format, config in its header) or else ``NAME.pth`` (walloc's), each with an
optional ``NAME.json`` beside it; a NAME that ends in ``.pth`` / ``.safetensors`` names the file itself.
Datasets are ``hf://datasets/ORG/NAME[@REV][/PATH]`` (see :mod:`walloc_cdl.data.remote`).

Downloads land in the hub cache (``HF_HUB_CACHE`` / ``HF_HOME``) and come from ``HF_ENDPOINT`` with
``HF_TOKEN``; with ``HF_HUB_OFFLINE=1`` only the cache is read, and a file missing from it is one
:class:`HubError` naming the file, the cache and what to do. The downloaded weights go through the
same safe loader as local files (:func:`walloc_cdl.codec.checkpoints.load_codec`): nothing is unpickled.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

OFFICIAL_REPO = "danjacobellis/walloc"
OFFICIAL_NAMES = ("RGB_16x", "RGB_4x", "stereo_5x", "stereo_20x")
WEIGHT_SUFFIXES = (".safetensors", ".pth")
_NAME = re.compile(r"^hf://(?:(?P<type>models|datasets|spaces)/)?(?P<org>[^/@]+)/(?P<repo>[^/@]+)"
                   r"(?:@(?P<rev>[^/]+))?(?:/(?P<path>.*))?$")


class HubError(RuntimeError):
    """A hub name that cannot be resolved: malformed, absent from the repo, or offline and not cached."""


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://`` name: repository, optional revision, path inside it."""

    repo_id: str
    path: str = ""
    revision: str | None = None
    repo_type: str = "model"  # model | dataset | space

    def url(self, path: str | None = None) -> str:
        """Back to ``hf://[datasets/]ORG/REPO[@REV]/PATH`` (HfFileSystem's spelling)."""
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        rev = f"@{self.revision.replace('/', '%2F')}" if self.revision else ""
        p = self.path if path is None else path
        return f"hf://{kind}{self.repo_id}{rev}" + (f"/{p}" if p else "")


def is_hub_name(name: object) -> bool:
    return isinstance(name, str) and name.startswith("hf://")


def parse_hub_name(name: str) -> HubRef:
    """``hf://ORG/REPO[@REV]/PATH`` or ``hf://datasets/ORG/NAME[@REV][/PATH]`` -> HubRef (``%2F`` in REV is /)."""
    m = _NAME.match(name)
    if m is None:
        raise HubError(f"{name}: not a hub name; expected hf://ORG/REPO/NAME, hf://ORG/REPO@REV/NAME or "
                       "hf://datasets/ORG/NAME")
    path = (m["path"] or "").strip("/")
    if any(part in ("..", ".") for part in path.split("/")):
        raise HubError(f"{name}: '..' and '.' are not allowed in a hub path")
    return HubRef(f"{m['org']}/{m['repo']}", path, unquote(m["rev"]) if m["rev"] else None,
                  (m["type"] or "models")[:-1])


def official_name(name: str) -> str | None:
    """``RGB_16x`` -> ``hf://danjacobellis/walloc/RGB_16x`` for the official bare names, else None."""
    return f"hf://{OFFICIAL_REPO}/{name}" if name in OFFICIAL_NAMES else None


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


class _Miss(HubError):
    """A file neither in the cache nor downloadable now (offline, hub unreachable); `why` says which."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


def _missing(name: str, ref: HubRef, files: list[str], why: str, fetch: list[str] | None = None) -> _Miss:
    """One line: the files, the cache, why they cannot be downloaded now, and the command that would."""
    fix = (f"run once with network access (or `hf download {ref.repo_id} {' '.join(fetch or files)}"
           f"{' --revision ' + ref.revision if ref.revision else ''}`) to fill the cache, or unset HF_HUB_OFFLINE")
    return _Miss(f"{name}: {' or '.join(files)} is not in the Hugging Face cache ({cache_dir()}) and {why}; {fix}",
                 why)


def download(ref: HubRef, filename: str, name: str | None = None) -> str | None:
    """hf_hub_download of one file of `ref`'s repo: its local path, or None when the repo lacks it
    (or the cache knows it is absent). Offline misses and unreachable hubs raise :class:`HubError`."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    name = name or ref.url()
    try:
        return hf_hub_download(ref.repo_id, filename, revision=ref.revision, repo_type=ref.repo_type)
    except LocalEntryNotFoundError as e:
        cause = e.__cause__
        if isinstance(cause, RevisionNotFoundError):
            raise HubError(f"{name}: revision {ref.revision!r} not found in {ref.repo_id} ({_endpoint()})") from None
        cached = try_to_load_from_cache(ref.repo_id, filename, revision=ref.revision, repo_type=ref.repo_type)
        if cached is not None and not isinstance(cached, str):  # the cache records that the repo lacks it
            return None
        raise _missing(name, ref, [filename], _why_not(cause)) from None
    except EntryNotFoundError:
        return None
    except RevisionNotFoundError:
        raise HubError(f"{name}: revision {ref.revision!r} not found in {ref.repo_id} ({_endpoint()})") from None
    except RepositoryNotFoundError:
        raise HubError(f"{name}: repository {ref.repo_id} not found on {_endpoint()} (or private: set HF_TOKEN)") \
            from None


def _why_not(cause: BaseException | None) -> str:
    if offline():
        return "HF_HUB_OFFLINE=1 forbids downloading it"
    response = getattr(cause, "response", None)
    if response is not None:
        return f"the hub ({_endpoint()}) answered HTTP {response.status_code}"
    return f"the hub ({_endpoint()}) cannot be reached"


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def fetch_codec(name: str) -> Path:
    """Local path of a hub codec's weights (``NAME.safetensors`` or ``NAME.pth``), with ``NAME.json``
    downloaded beside it (same snapshot folder) when the repo has one."""
    ref = parse_hub_name(name)
    if ref.repo_type != "model":
        raise HubError(f"{name}: codecs live in model repos (hf://ORG/REPO/NAME), not {ref.repo_type} repos")
    if not ref.path:
        raise HubError(f"{name}: no codec name after the repo (hf://ORG/REPO/NAME)")
    stem = ref.path
    candidates = [stem] if stem.endswith(WEIGHT_SUFFIXES) else [stem + s for s in WEIGHT_SUFFIXES]
    if ref.repo_id == OFFICIAL_REPO and not stem.endswith(WEIGHT_SUFFIXES):
        candidates = candidates[::-1]  # walloc's repo holds .pth files: ask for those first
    sidecar = str(Path(stem).with_suffix("")) + ".json"
    weights = None
    misses: list[_Miss] = []
    for cand in candidates:
        try:
            weights = download(ref, cand, name)
        except _Miss as e:  # offline or unreachable: the other candidate may be cached
            misses.append(e)
            continue
        if weights is not None:
            break
    if weights is None:
        if misses:  # every file tried, why, and the preferred pair to fetch
            raise _missing(name, ref, candidates, misses[-1].why, fetch=[candidates[0], sidecar]) from None
        raise HubError(f"{name}: {ref.repo_id}{'@' + ref.revision if ref.revision else ''} has no "
                       f"{' or '.join(candidates)} ({_endpoint()})")
    path = Path(weights)
    pinned = HubRef(ref.repo_id, ref.path, path.parent.name if _is_commit(path.parent.name) else ref.revision)
    try:  # the same commit as the weights, so the pair cannot straddle a push
        download(pinned, sidecar, name)
    except HubError:
        pass  # offline without the .json cached: load_codec says so if the weights lack a config
    return path


def _is_commit(s: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{40}", s) is not None


def push_codec(path: str | Path, repo_id: str, *, revision: str | None = None, private: bool | None = None,
               commit_message: str | None = None, token: str | None = None) -> str:
    """Publish a saved codec (``NAME.safetensors`` or ``NAME.pth``, with its ``NAME.json``) to a model repo
    in one commit, creating the repo if needed; returns its hub name ``hf://REPO/NAME``."""
    from huggingface_hub import CommitOperationAdd, HfApi

    path = Path(path)
    files = [p for p in (path, path.with_suffix(".json")) if p.exists()]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such codec file to push")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    ops = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files]
    api.create_commit(repo_id, ops, commit_message=commit_message or f"walloc-cdl: add codec {path.stem}",
                      revision=revision)
    return f"hf://{repo_id}{'@' + revision if revision else ''}/{path.stem}"
