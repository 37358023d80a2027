"""Remote data: shards and datasets behind ``https://``, ``s3://``, ``hf://`` and ``pipe:`` URLs.

    LatentDataset("s3://bucket/latents/photos", split="train")            # _info.json + shards from S3
    LatentDataset("hf://datasets/me/photos-latents", split="train")
    LatentDataset(urls="https://host/shards/train-{000000..000009}.tar")  # a brace pattern, no _info.json
    walloc-cdl encode "https://host/pixels/train-{0000..0099}.tar" s3://bucket/latents --codec rgb-16x

Reading goes through webdataset: :func:`register` puts :func:`open_url` into ``webdataset.gopen``'s
scheme table for http(s), hf and s3 (call it before a plain ``wds.WebDataset`` of such URLs; our
pipelines do, through the :func:`with_openers` stage). ``open_url`` is ours rather than webdataset's ``curl`` pipe because an HTTP error then
names the URL and status (curl reports "exit 22"), transient errors (429, 5xx, refused connections)
are retried a bounded number of times (``WALLOC_CDL_HTTP_RETRIES``, default 3; curl's is 30 × 2 s), and
no curl binary is needed. ``hf://`` files are fetched from their ``resolve`` URL with the hub token
(huggingface_hub's ``hf_hub_url`` / ``build_hf_headers``, so ``HF_ENDPOINT`` and ``HF_TOKEN`` apply),
``s3://`` through fsspec/s3fs (``pip install walloc-cdl[remote]``; endpoint from ``AWS_ENDPOINT_URL``).

Remote data is untrusted: tar members whose names hold ``..`` or start with ``/`` and pickled members
(``.pth``, ``.pkl``, ``.pickle``) are never read (:func:`safe_member`), file names listed in a remote
``_info.json`` must be plain relative names (:func:`join`), and nothing from a tar is ever extracted.

Outputs: :func:`open_output` gives a job a local folder to write into; for ``s3://`` and ``hf://`` it is a
staging folder whose finished files are uploaded in order (a shard, then the progress that counts it;
``_info.json`` last), each upload atomic (an S3 PUT / one hub commit), so ``--resume`` after a kill
continues from what the remote holds, with every sample exactly once.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterable

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".pickle", ".ckpt")
TRANSIENT_STATUS = (408, 425, 429, 500, 502, 503, 504)
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")


class RemoteError(OSError):
    """A remote file that cannot be read or written; the message names the URL and the reason."""


SCHEMES = ("http", "https", "hf", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "pipe")


def is_url(spec: object) -> bool:
    """True for URLs of the schemes we open (https, s3, hf, pipe, ...); a local name like 'data:v2' is a path."""
    return isinstance(spec, str) and scheme(spec) in SCHEMES


def scheme(url: str) -> str:
    m = _URL.match(url)
    return m["scheme"].lower() if m else ""


def cache_root() -> Path:
    """walloc-cdl's own cache (downloaded tars, output staging): ``WALLOC_CDL_CACHE`` or ~/.cache/walloc-cdl."""
    base = os.environ.get("WALLOC_CDL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "walloc-cdl")
    return Path(base)


# -- untrusted names ---------------------------------------------------------------------------------

def unsafe_name(name: str) -> str | None:
    """Why a member or listed file name must not be used ('..', absolute, a URL), or None if it is fine."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "'..' in path"
    if is_url(name):
        return "a URL"
    if "\x00" in name:
        return "NUL in name"
    return None


def is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def safe_member(fname: str) -> bool:
    """webdataset ``select_files`` predicate: False (and a warning) for unsafe names and pickled members."""
    why = unsafe_name(fname) or ("pickled member (never unpickled)" if is_pickle(fname) else None)
    if why:
        log.warning("refused tar member %r: %s", fname, why)
        return False
    return True


def join(root: str | Path, name: str) -> str:
    """``root/name`` for a local folder or a URL, refusing names that would leave the root."""
    why = unsafe_name(name)
    if why:
        raise ValueError(f"{root}: listed file {name!r} refused ({why})")
    if is_url(str(root)):
        return str(root).rstrip("/") + "/" + name
    return str(Path(root) / name)


# -- reading -----------------------------------------------------------------------------------------

def _retries() -> int:
    return max(0, int(os.environ.get("WALLOC_CDL_HTTP_RETRIES", "3")))


_SESSION: Any = None
_SESSION_PID = -1


def _session() -> Any:
    """A requests session whose adapter retries transient failures (urllib3 Retry, exponential backoff);
    one per process, so forked loader workers never share a parent's keep-alive sockets."""
    global _SESSION, _SESSION_PID
    if _SESSION is None or _SESSION_PID != os.getpid():
        _SESSION_PID = os.getpid()
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util import Retry

        retry = Retry(total=_retries(), connect=_retries(), read=_retries(), status=_retries(),
                      status_forcelist=TRANSIENT_STATUS, allowed_methods=frozenset({"GET", "HEAD"}),
                      backoff_factor=float(os.environ.get("WALLOC_CDL_HTTP_BACKOFF", "0.5")),
                      backoff_max=10, raise_on_status=False, respect_retry_after_header=True)
        s = requests.Session()
        s.mount("http://", HTTPAdapter(max_retries=retry))
        s.mount("https://", HTTPAdapter(max_retries=retry))
        _SESSION = s
    return _SESSION


def _hf_http(url: str) -> tuple[str, dict[str, str]]:
    """hf://[datasets/]ORG/REPO[@REV]/PATH -> (resolve URL, headers with the hub token)."""
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from ..codec.hub import parse_hub_name

    ref = parse_hub_name(url)
    if not ref.path:
        raise RemoteError(f"{url}: names a repository, not a file in it")
    if constants.HF_HUB_OFFLINE:
        raise RemoteError(f"{url}: HF_HUB_OFFLINE=1 forbids reading remote shards; download the dataset first "
                          f"(`hf download --repo-type {ref.repo_type} {ref.repo_id}`) and pass its local folder")
    return (hf_hub_url(ref.repo_id, ref.path, repo_type=ref.repo_type, revision=ref.revision),
            build_hf_headers())


def open_url(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any) -> BinaryIO:
    """A readable stream of `url` (http, https, hf, s3 or any fsspec protocol); errors name the URL."""
    if mode[0] != "r":
        raise RemoteError(f"{url}: open_url reads only; outputs go through open_output")
    s = scheme(url)
    if s in ("http", "https", "hf"):
        http_url, headers = _hf_http(url) if s == "hf" else (url, {})
        import requests

        try:
            r = _session().get(http_url, headers=headers, stream=True, timeout=(10, 60))
        except requests.RequestException as e:
            raise RemoteError(f"{url}: {type(e).__name__} after {_retries()} retries: {_short(e)}") from None
        if r.status_code >= 400:
            r.close()
            tries = f" after {_retries()} retries" if r.status_code in TRANSIENT_STATUS else ""
            raise RemoteError(f"{url}: HTTP {r.status_code} {r.reason}{tries}")
        r.raw.decode_content = True
        return r.raw
    import fsspec

    try:
        return fsspec.open(url, mode).open()
    except FileNotFoundError:
        raise RemoteError(f"{url}: not found") from None
    except ImportError as e:
        raise RemoteError(f"{url}: {s}:// needs an extra package ({e}); pip install 'walloc-cdl[remote]'") from None
    except Exception as e:  # noqa: BLE001 - botocore/aiohttp raise many kinds; the URL is what matters
        raise RemoteError(f"{url}: {type(e).__name__}: {_short(e)}") from None


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e) else type(e).__name__


def read_bytes(spec: str | Path) -> bytes:
    """All bytes of a local file or a URL."""
    if not is_url(str(spec)):
        return Path(spec).read_bytes()
    if scheme(str(spec)) == "pipe":
        import webdataset as wds

        with wds.gopen(str(spec), "rb") as f:
            return f.read()
    with open_url(str(spec)) as f:
        return f.read()


def fetch(url: str, folder: Path | None = None) -> Path:
    """A local copy of `url` in walloc-cdl's cache (downloaded once, to a temp name then renamed)."""
    folder = folder or cache_root() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(re.sub(r"[?#].*$", "", url)).name or "file"
    dest = folder / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}"
    if dest.exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    src = None
    try:
        if scheme(url) == "pipe":
            import webdataset as wds

            src = wds.gopen(url, "rb")
        else:
            src = open_url(url)
        with open(tmp, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        src.close()
        src = None
        os.replace(tmp, dest)
    except (OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, RemoteError):
            raise
        raise RemoteError(f"{url}: {_short(e)}") from None
    finally:
        if src is not None:
            src.close()
    return dest


def expand(urls: str | Iterable[str]) -> list[str]:
    """Brace patterns (``train-{000..009}.tar``) -> the list of URLs, as webdataset's shard lists do."""
    import braceexpand

    if isinstance(urls, str):
        urls = [urls]
    return [u for pattern in urls for u in braceexpand.braceexpand(pattern)]


def register() -> None:
    """Open http(s), hf and s3 URLs in webdataset pipelines with :func:`open_url` (idempotent)."""
    import importlib

    table = importlib.import_module("webdataset.gopen").gopen_schemes  # `webdataset.gopen` is also a function
    for s in ("http", "https", "hf", "s3"):
        table[s] = open_url


def with_openers(src: Iterable[dict]) -> Iterable[dict]:
    """A pipeline stage before ``tarfile_to_samples``: registers the openers in the process that iterates
    (a loader worker started by spawn or forkserver does not inherit the registration)."""
    register()
    yield from src


# -- outputs -----------------------------------------------------------------------------------------

class Output:
    """A job's output folder: everything is written locally; `push` / `pull` mirror it (here: nothing)."""

    def __init__(self, root: str | Path):
        self.url = str(root)
        self.local = Path(root)

    def pull(self, split: str) -> list[str]:
        """Bring the remote `_info.json` and this split's progress files here; names of remote split files."""
        return []

    def push(self, names: Iterable[str]) -> None:
        """Upload these finished local files, in order, each atomically."""

    def clear(self, split: str) -> None:
        """Delete this split's remote files (shards, progress, report)."""

    def size(self, name: str) -> int:
        return (self.local / name).stat().st_size


def _split_file(name: str, split: str) -> bool:
    return (name.startswith(f"{split}-") and name.endswith(".tar")) or \
        name.startswith(f".progress-{split}-r") or name == f"_report_{split}.json"


class _RemoteOutput(Output):
    """Staging folder + an fsspec filesystem (s3) or hub commits (hf); shards leave the staging folder
    once uploaded, so a job needs local room for about one shard, not for the dataset."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url.rstrip("/")
        self.local = cache_root() / "staging" / hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.local.mkdir(parents=True, exist_ok=True)
        self.sizes: dict[str, int] = {}

    def _list(self) -> dict[str, int]:
        raise NotImplementedError

    def _get(self, name: str, dest: Path) -> None:
        raise NotImplementedError

    def _put(self, names: list[str]) -> None:
        raise NotImplementedError

    def _delete(self, names: list[str]) -> None:
        raise NotImplementedError

    def pull(self, split: str) -> list[str]:
        remote = self._list()
        self.sizes.update(remote)
        stale = list(self.local.glob(f".progress-{split}-r*.json")) + [self.local / "_info.json"]
        for p in stale + list(self.local.glob(f"{split}-*.tar")):
            if p.suffix == ".tar" or p.name not in remote:  # local state the remote never received: it must
                p.unlink(missing_ok=True)                    # not count (an unpushed shard is written again)
        for name in remote:
            if name == "_info.json" or name.startswith(f".progress-{split}-r"):
                self._get(name, self.local / name)
        return sorted(n for n in remote if _split_file(n, split))

    def push(self, names: Iterable[str]) -> None:
        names = [n for n in names if n]
        if not names:
            return
        for n in names:
            self.sizes[n] = (self.local / n).stat().st_size
        try:
            self._put(names)
        except RemoteError:
            raise
        except Exception as e:  # noqa: BLE001
            raise RemoteError(f"{self.url}: upload of {', '.join(names)} failed: {type(e).__name__}: {_short(e)}") \
                from None
        for n in names:
            if n.endswith(".tar"):
                (self.local / n).unlink(missing_ok=True)

    def clear(self, split: str) -> None:
        self._delete([n for n in self._list() if _split_file(n, split)])

    def size(self, name: str) -> int:
        if name not in self.sizes:
            self.sizes.update(self._list())
        return self.sizes[name]


class FsspecOutput(_RemoteOutput):
    """s3:// (or any fsspec filesystem): one PUT per file, which S3 makes visible only when complete."""

    def __init__(self, url: str):
        super().__init__(url)
        import fsspec

        try:
            self.fs, self.path = fsspec.core.url_to_fs(self.url)
        except ImportError as e:
            raise RemoteError(f"{url}: needs an extra package ({e}); pip install 'walloc-cdl[remote]'") from None

    def _list(self) -> dict[str, int]:
        try:
            entries = self.fs.ls(self.path, detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        return {PurePosixPath(e["name"]).name: int(e.get("size") or 0) for e in entries if e.get("type") == "file"}

    def _get(self, name: str, dest: Path) -> None:
        tmp = dest.with_name(f".{dest.name}.pull")
        self.fs.get_file(f"{self.path}/{name}", str(tmp))
        os.replace(tmp, dest)

    def _put(self, names: list[str]) -> None:
        for n in names:
            self.fs.put_file(str(self.local / n), f"{self.path}/{n}")

    def _delete(self, names: list[str]) -> None:
        if names:
            self.fs.rm([f"{self.path}/{n}" for n in names])


class HubOutput(_RemoteOutput):
    """hf://datasets/ORG/NAME[@REV][/PATH]: every push is one commit (a shard and its progress together)."""

    def __init__(self, url: str):
        super().__init__(url)
        from huggingface_hub import HfApi

        from ..codec.hub import parse_hub_name

        self.ref = parse_hub_name(url)
        if self.ref.repo_type != "dataset":
            raise RemoteError(f"{url}: latent datasets go to dataset repos (hf://datasets/ORG/NAME)")
        self.api = HfApi()
        self.api.create_repo(self.ref.repo_id, repo_type="dataset", exist_ok=True)
        self.prefix = self.ref.path + "/" if self.ref.path else ""

    def _list(self) -> dict[str, int]:
        from huggingface_hub.errors import EntryNotFoundError

        try:
            entries = self.api.list_repo_tree(self.ref.repo_id, path_in_repo=self.ref.path or None,
                                              repo_type="dataset", revision=self.ref.revision)
            return {PurePosixPath(e.path).name: int(getattr(e, "size", 0) or 0) for e in entries
                    if hasattr(e, "size") and PurePosixPath(e.path).parent.as_posix() == (self.ref.path or ".")}
        except EntryNotFoundError:
            return {}

    def _get(self, name: str, dest: Path) -> None:
        from huggingface_hub import hf_hub_download

        p = hf_hub_download(self.ref.repo_id, self.prefix + name, repo_type="dataset", revision=self.ref.revision)
        shutil.copyfile(p, dest)

    def _put(self, names: list[str]) -> None:
        from huggingface_hub import CommitOperationAdd

        ops = [CommitOperationAdd(self.prefix + n, str(self.local / n)) for n in names]
        self.api.create_commit(self.ref.repo_id, ops, commit_message=f"walloc-cdl encode: {', '.join(names)}",
                               repo_type="dataset", revision=self.ref.revision)

    def _delete(self, names: list[str]) -> None:
        from huggingface_hub import CommitOperationDelete

        if names:
            self.api.create_commit(self.ref.repo_id, [CommitOperationDelete(self.prefix + n) for n in names],
                                   commit_message="walloc-cdl encode: --overwrite", repo_type="dataset",
                                   revision=self.ref.revision)


def open_output(spec: str | Path) -> Output:
    """The output of a job: a local folder, or a staging folder mirrored to ``s3://`` / ``hf://datasets/``."""
    s = str(spec)
    if not is_url(s):
        return Output(spec)
    if scheme(s) == "hf":
        return HubOutput(s)
    if scheme(s) in ("http", "https", "pipe"):
        raise RemoteError(f"{s}: cannot write to {scheme(s)}: URLs; use a folder, s3:// or hf://datasets/")
    return FsspecOutput(s)

