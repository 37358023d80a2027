"""Remote inputs and outputs on loopback only: a plain HTTP server for https://-style shard lists, moto's S3
server (with a stalling proxy to kill -9 a job mid-upload), the hub stand-in (conftest) for hf:// datasets;
untrusted tar members, HTTP errors and bounded retries."""
import functools
import gzip
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import tarfile
import threading
import time
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from walloc_cdl import Codec2D, save_codec
from walloc_cdl.cli import main as cli
from walloc_cdl.data import remote
from walloc_cdl.data.loader import LatentDataset
from walloc_cdl.data.remote import RemoteError, open_url
from walloc_cdl.data.shards import decode_sample

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    torch.manual_seed(0)
    c = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True).eval()
    return c, save_codec(c, tmp_path_factory.mktemp("codec") / "gray")


def _png(i: int, size: int = 16) -> bytes:
    a = ((np.arange(size * size).reshape(size, size) * (i + 3)) % 256).astype(np.uint8)
    b = io.BytesIO()
    Image.fromarray(a).save(b, "PNG")
    return b.getvalue()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def _pixel_shards(folder: Path, n_shards: int = 3, per: int = 4) -> None:
    for s in range(n_shards):
        members = {}
        for j in range(per):
            k = s * per + j
            members[f"img{k:03d}.png"] = _png(k)
            members[f"img{k:03d}.cls"] = str(k % 3).encode()
        _tar(folder / f"train-{s}.tar", members)


def _local_samples(root: Path, split: str = "train") -> dict[str, torch.Tensor]:
    return {s["__key__"]: s["latent"] for s in map(decode_sample, _raw(root, split))}


def _raw(root, split):
    import webdataset as wds

    info = json.loads((Path(root) / "_info.json").read_text())
    urls = [str(Path(root) / f) for f in info["splits"][split]["filenames"]]
    return list(wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()))


def test_url_and_name_checks():
    from walloc_cdl.data.remote import is_url, join, safe_member, unsafe_name

    assert [is_url(x) for x in ("hf://o/r", "s3://b/k", "pipe:cat a", "https://h/a", "data:v2/x", "C:/x", "/x")] == \
        [True, True, True, True, False, False, False]
    assert [unsafe_name(n) for n in ("a/b.tar", "../a", "a/../../b", "/etc/x", "C:\\x", "pipe:rm", "s3://b/x")] == \
        [None, "'..' in path", "'..' in path", "absolute path", "absolute path", "a URL", "a URL"]
    assert join("s3://b/root/", "train-0.tar") == "s3://b/root/train-0.tar"
    with pytest.raises(ValueError, match="refused"):
        join("/data", "../x.tar")
    assert [safe_member(n) for n in ("k.latent.npy", "k.PTH", "k.pkl", "../k.cls")] == [True, False, False, False]


# -- a plain HTTP server with fault injection ----------------------------------------------------------

class _Files(SimpleHTTPRequestHandler):
    faults: dict[str, list[int]] = {}
    log: list[str] = []

    def log_message(self, *a):
        pass

    def do_GET(self):  # noqa: N802
        self.log.append(self.path)
        codes = self.faults.get(self.path)
        if codes:
            code = codes.pop(0)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def http(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = type("H", (_Files,), {"faults": {}, "log": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("WALLOC_CDL_HTTP_RETRIES", "3")
    monkeypatch.setenv("WALLOC_CDL_HTTP_BACKOFF", "0")
    monkeypatch.setattr(remote, "_SESSION", None)
    yield
    remote._SESSION = None


def test_encode_brace_pattern_over_http_and_read_back_from_an_http_root(http, gray, tmp_path):
    www, url, _ = http
    _pixel_shards(www / "pix")
    out = tmp_path / "lat"
    assert cli(["encode", f"{url}/pix/train-{{0..2}}.tar", str(out), "--codec", str(gray[1]),
                "--workers", "0", "--no-progress", "--shard-size", "5"]) == 0
    info = json.loads((out / "_info.json").read_text())
    assert info["splits"]["train"]["num_samples"] == 12
    report = json.loads((out / "_report_train.json").read_text())
    assert report["skipped"] == []
    local = _local_samples(out)
    assert len(local) == 12
    # the latents equal those of the decoded PNGs
    z = gray[0].encode(torch.from_numpy(np.array(Image.open(io.BytesIO(_png(5)))))[None, None])[0]
    key5 = next(k for k in local if k.endswith("img005"))
    assert torch.equal(local[key5], z.float())
    # the same dataset served over HTTP: LatentDataset reads _info.json and the shards there
    import shutil

    shutil.copytree(out, www / "lat")
    ds = LatentDataset(f"{url}/lat", "train", with_meta=True)
    got = {m["item"]: z for z, _, m in ds}
    assert len(got) == 12 and all(isinstance(v, torch.Tensor) for v in got.values())
    assert sorted(torch.stack(list(local.values())).sum(dim=(1, 2, 3)).tolist()) == \
        sorted(torch.stack(list(got.values())).sum(dim=(1, 2, 3)).tolist())
    # two loader workers (forked after the parent read _info.json over HTTP) share the shards
    from walloc_cdl.data.loader import make_loader

    loader = make_loader(LatentDataset(f"{url}/lat", "train", batch_size=2), num_workers=2, persistent_workers=False)
    assert sum(len(y) for _, y in loader) == 12
    # urls= takes a brace pattern of shard URLs directly
    assert sum(1 for _ in LatentDataset("unused", urls=f"{url}/lat/train-{{000000..000002}}.tar")) == 12


def test_http_404_names_the_url_at_once(http, fast_retries):
    _, url, h = http
    with pytest.raises(RemoteError, match=rf"{url}/absent.tar: HTTP 404"):
        open_url(f"{url}/absent.tar")
    assert h.log.count("/absent.tar") == 1  # not retried


def test_transient_503_is_retried_a_bounded_number_of_times(http, fast_retries):
    www, url, h = http
    (www / "x.tar").write_bytes(b"payload")
    h.faults["/x.tar"] = [503, 503]
    assert open_url(f"{url}/x.tar").read() == b"payload"
    assert h.log.count("/x.tar") == 3
    h.faults["/x.tar"] = [503] * 50
    with pytest.raises(RemoteError, match=rf"{url}/x.tar: HTTP 503 .* after 3 retries"):
        open_url(f"{url}/x.tar")
    assert h.log.count("/x.tar") == 3 + 4  # 1 try + 3 retries, then the error


def test_unreachable_host_is_an_error_naming_the_url(fast_retries):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(RemoteError, match=rf"http://127.0.0.1:{port}/a.tar: ConnectionError"):
        open_url(f"http://127.0.0.1:{port}/a.tar")


def test_untrusted_tar_members_never_reach_the_filesystem(http, gray, tmp_path, monkeypatch):
    www, url, _ = http
    monkeypatch.chdir(tmp_path)
    _tar(www / "bad.tar", {"../evil.png": _png(1), "/tmp/walloc-evil-abs.png": _png(2), "ok.png": _png(3),
                           "ok.cls": b"1", "w.pth": b"\x80\x04K\x01.", "x.pkl": b"\x80\x04K\x01.",
                           "y.pickle": b"\x80\x04K\x01."})
    out = tmp_path / "deep" / "lat"
    assert cli(["encode", f"{url}/bad.tar", str(out), "--codec", str(gray[1]), "--workers", "0",
                "--no-progress"]) == 0
    assert json.loads((out / "_info.json").read_text())["splits"]["train"]["num_samples"] == 1
    reasons = {s["source"].split("#", 1)[1]: s["reason"] for s in json.loads((out / "_report_train.json").read_text())
               ["skipped"]}
    assert set(reasons) == {"../evil.png", "/tmp/walloc-evil-abs.png", "w.pth", "x.pkl", "y.pickle"}
    assert all(r.startswith("refused") for r in reasons.values())
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "deep" / "evil.png").exists()
    assert not Path("/tmp/walloc-evil-abs.png").exists()
    # the loader drops such members of latent shards too, and refuses listed names that leave the root
    z = gray[0].encode(torch.zeros(1, 1, 16, 16))[0]
    from walloc_cdl.data.shards import latent_sample

    good = latent_sample("a", z, 0, {})
    _tar(www / "lat" / "train-0.tar", {"a.latent.npy": good["latent.npy"], "a.cls": b"0",
                                       "../b.latent.npy": good["latent.npy"], "c.latent.npy": good["latent.npy"],
                                       "c.pth": b"\x80\x04K\x01."})
    got = list(LatentDataset("x", urls=[f"{url}/lat/train-0.tar"]))
    assert len(got) == 2  # a and c; ../b and c.pth are never read
    (www / "lat" / "_info.json").write_text(json.dumps({"splits": {"train": {"filenames": ["../../etc/passwd"],
                                                                             "num_samples": 1}}}))
    with pytest.raises(ValueError, match=r"'\.\./\.\./etc/passwd' refused"):
        LatentDataset(f"{url}/lat", "train")


# -- S3 through moto -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"
    old = os.environ.get("AWS_ENDPOINT_URL_S3")
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    yield fs, endpoint
    srv.stop()
    if old is None:
        os.environ.pop("AWS_ENDPOINT_URL_S3", None)


def _bucket(fs) -> str:
    b = f"b{uuid.uuid4().hex[:12]}"
    fs.mkdir(b)
    return b


def _idx_files(d: Path, n: int = 60):
    def idx(a):
        return b"\x00\x00\x08" + bytes([a.ndim]) + b"".join(struct.pack(">I", k) for k in a.shape) + a.tobytes()

    x = np.random.default_rng(0).integers(0, 256, (n, 16, 16), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    d.mkdir(parents=True, exist_ok=True)
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(x), mtime=0))
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(y), mtime=0))
    return d / "train-images-idx3-ubyte.gz"


class _StallingProxy:
    """TCP proxy to the S3 server that, once armed with an object name, forwards the headers and a few
    bytes of the PUT of that object, then holds the rest: the upload is in flight when the test kills."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.stall_on: bytes | None = None
        self.stalled = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, a, b, upstream):
        held = False
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if held:
                    continue
                if upstream and self.stall_on and b"PUT " in data and self.stall_on in data.split(b"\r\n", 1)[0]:
                    end = data.find(b"\r\n\r\n")
                    b.sendall(data[:end + 4 + 8] if end >= 0 else data[:len(data) // 2])
                    held = True
                    self.stalled.set()
                    continue
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def _encode_cmd(images, out, codec, *extra):
    cfg = Path(tempfile.mkdtemp()) / "batch6.json"
    cfg.write_text('{"batch_size": 6}')  # encode's options beyond the common ones go in --config
    return [sys.executable, "-m", "walloc_cdl.cli", "encode", str(images), out, "--codec", str(codec),
            "--shard-size", "6", "--config", str(cfg), "--workers", "0", "--no-progress", *extra]


def test_encode_to_s3_kill9_mid_upload_then_resume_exactly_once(s3, gray, tmp_path):
    fs, endpoint = s3
    images = _idx_files(tmp_path / "idx")
    bucket = _bucket(fs)
    ref = tmp_path / "ref"
    base = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run(_encode_cmd(images, str(ref), gray[1]), env=base, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    proxy = _StallingProxy(int(endpoint.rsplit(":", 1)[1]))
    proxy.stall_on = f"/{bucket}/ds/train-000003.tar".encode()
    env = dict(base, AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{proxy.port}", WALLOC_CDL_CACHE=str(tmp_path / "c1"))
    url = f"s3://{bucket}/ds"
    proc = subprocess.Popen(_encode_cmd(images, url, gray[1]), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proxy.stalled.wait(120), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no PUT"
    os.kill(proc.pid, signal.SIGKILL)  # mid-upload: the PUT of shard 3 has its headers and 8 bytes sent
    proc.wait()
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/ds", refresh=True)}
    assert {"train-000000.tar", "train-000001.tar", "train-000002.tar"} <= names
    assert "train-000003.tar" not in names and "_info.json" not in names  # nothing half-written is visible
    # without --resume the job refuses; with it, from a fresh machine (empty cache), it ends exactly once
    proxy.stall_on = None
    env2 = dict(env, WALLOC_CDL_CACHE=str(tmp_path / "c2"))
    r = subprocess.run(_encode_cmd(images, url, gray[1]), env=env2, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--resume" in r.stderr
    r = subprocess.run(_encode_cmd(images, url, gray[1], "--resume"), env=env2, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    proxy.close()
    fs.invalidate_cache()
    info = json.loads(fs.cat(f"{bucket}/ds/_info.json"))
    assert info["splits"]["train"]["num_samples"] == 60
    ref_info = json.loads((ref / "_info.json").read_text())
    assert info["splits"] == ref_info["splits"]
    for f in ref_info["splits"]["train"]["filenames"]:  # byte-identical to the job that was never killed
        assert fs.cat(f"{bucket}/ds/{f}") == (ref / f).read_bytes(), f
    ds = LatentDataset(url, "train", with_meta=True)
    items = sorted(m["item"] for _, _, m in ds)
    assert items == list(range(60))  # every sample exactly once
    assert json.loads(fs.cat(f"{bucket}/ds/_report_train.json"))["output_bytes"] == \
        sum((ref / f).stat().st_size for f in ref_info["splits"]["train"]["filenames"])


def test_encode_tar_inputs_over_pipe_s3_and_hf(s3, hub, gray, tmp_path):
    fs, _ = s3
    _pixel_shards(tmp_path / "pix")
    bucket = _bucket(fs)
    org = f"o{uuid.uuid4().hex[:10]}"
    files = {}
    for p in sorted((tmp_path / "pix").iterdir()):
        fs.put_file(str(p), f"{bucket}/pix/{p.name}")
        files[f"shards/{p.name}"] = p.read_bytes()
    hub.commit(f"{org}/pix", files, "dataset")
    specs = {"local": str(tmp_path / "pix" / "train-{0..2}.tar"),
             "pipe": f"pipe:cat {tmp_path / 'pix'}/train-{{0..2}}.tar",
             "s3": f"s3://{bucket}/pix/train-{{0..2}}.tar",
             "hf": f"hf://datasets/{org}/pix/shards/train-{{0..2}}.tar"}
    got = {}
    for name, spec in specs.items():
        out = tmp_path / f"lat-{name}"
        assert cli(["encode", spec, str(out), "--codec", str(gray[1]), "--workers", "0", "--no-progress"]) == 0, name
        got[name] = sorted((k.split("-", 1)[1], float(z.sum())) for k, z in _local_samples(out).items())
    assert len(got["local"]) == 12 and all(v == got["local"] for v in got.values())
    assert json.loads((tmp_path / "lat-hf" / "_report_train.json").read_text())["skipped"] == []


def test_loader_over_an_s3_root_trains_and_evaluates(s3, gray, tmp_path):
    fs, _ = s3
    images = _idx_files(tmp_path / "idx", 24)
    out = tmp_path / "lat"
    assert cli(_encode_cmd(images, str(out), gray[1])[3:]) == 0
    bucket = _bucket(fs)
    for p in out.iterdir():
        fs.put_file(str(p), f"{bucket}/lat/{p.name}")
    local = sorted(int(y) for _, y in LatentDataset(out, "train"))
    assert sorted(int(y) for _, y in LatentDataset(f"s3://{bucket}/lat", "train")) == local
    tr = LatentDataset(f"s3://{bucket}/lat", "train", training=True, batch_size=4, epoch_length=12)
    batches = list(tr)
    assert len(batches) == 3 and batches[0][0].shape == (4, 4, 4, 4)


# -- the hub: datasets read in place, latent datasets pushed ------------------------------------------

def _noise_png(i: int, size: int) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(i).integers(0, 256, (size, size), dtype=np.uint8)).save(b, "PNG")
    return b.getvalue()


def _parquet_dataset(tmp_path, n=24, rows_per_group=6, size=512):
    """Incompressible images, so that a row group (about 1.5 MB) outweighs HfFileSystem's 1 MiB blocks."""
    import datasets

    imgs = [{"bytes": _noise_png(i, size), "path": None} for i in range(n)]
    ds = datasets.Dataset.from_dict({"img": imgs, "label": [i % 3 for i in range(n)]},
                                    features=datasets.Features({"img": datasets.Image(),
                                                                "label": datasets.ClassLabel(names=["a", "b", "c"])}))
    p = tmp_path / "train.parquet"
    ds.to_parquet(str(p), batch_size=rows_per_group)
    return p


def test_encode_hf_dataset_reads_row_groups_in_place(hub, gray, tmp_path):
    import pyarrow.parquet as pq

    org = f"o{uuid.uuid4().hex[:10]}"
    p = _parquet_dataset(tmp_path, n=36)
    assert pq.ParquetFile(p).metadata.num_row_groups == 6
    hub.commit(f"{org}/pix", {"data/train-00000-of-00001.parquet": p.read_bytes(), "README.md": b"pixels"},
               "dataset")
    served = f"/datasets/{org}/pix/resolve"
    out = tmp_path / "lat"
    (tmp_path / "limit3.json").write_text('{"limit": 3}')
    assert cli(["encode", f"hf://datasets/{org}/pix", str(out), "--split", "train", "--codec", str(gray[1]),
                "--config", str(tmp_path / "limit3.json"), "--no-progress"]) == 0
    got = sum(v for k, v in hub.served.items() if k.startswith(served) and k.endswith(".parquet"))
    assert 0 < got < p.stat().st_size * 0.5  # the footer and one row group, not the whole file
    assert json.loads((out / "_info.json").read_text())["splits"]["train"]["num_samples"] == 3
    out2 = tmp_path / "all"
    assert cli(["encode", f"hf://datasets/{org}/pix", str(out2), "--split", "train", "--codec", str(gray[1]),
                "--no-progress"]) == 0
    info = json.loads((out2 / "_info.json").read_text())
    assert info["splits"]["train"]["num_samples"] == 36 and info["classes"] == ["a", "b", "c"]
    samples = {s["json"]["item"]: s for s in map(decode_sample, _raw(out2, "train"))}
    assert {i: s["cls"] for i, s in samples.items()} == {i: i % 3 for i in range(36)}
    x = torch.from_numpy(np.asarray(Image.open(io.BytesIO(_noise_png(7, 512)))).copy())[None, None]
    assert torch.equal(samples[7]["latent"], gray[0].encode(x)[0].float())
    from huggingface_hub import constants

    cached = Path(constants.HF_HUB_CACHE) / f"datasets--{org}--pix"
    assert list(cached.rglob("README.md")) and not list(cached.rglob("*.parquet"))  # no parquet downloaded whole
    from walloc_cdl.data.sources import HFStreamSource, SourceError, open_source

    src = open_source(f"{org}/pix", split="train")  # the bare id a user types
    assert isinstance(src, HFStreamSource) and len(src) == 36 and src.classes == ["a", "b", "c"]
    with pytest.raises(SourceError, match=f"{org}/absent: no such local path, and not readable as the hub dataset"):
        open_source(f"{org}/absent")
    with pytest.raises(Exception, match="no split 'nope'"):   # --debug: the error itself, not its one-line form
        cli(["encode", f"hf://datasets/{org}/pix", str(tmp_path / "x"), "--split", "nope", "--codec", str(gray[1]),
             "--debug"])


def test_encode_to_an_hf_dataset_repo_and_read_it_back(hub, gray, tmp_path):
    images = _idx_files(tmp_path / "idx", 18)
    org = f"o{uuid.uuid4().hex[:10]}"
    url = f"hf://datasets/{org}/lat"
    assert cli(_encode_cmd(images, url, gray[1])[3:]) == 0
    tree = hub.tree(f"{org}/lat", repo_type="dataset")
    assert {"train-000000.tar", "train-000001.tar", "train-000002.tar", "_info.json", "_report_train.json",
            ".progress-train-r00.json"} <= set(tree)
    commits = [p for m, p in hub.requests if p.startswith(f"/api/datasets/{org}/lat/commit/")]
    assert len(commits) == 5  # one per shard (with its progress), the closing progress, report + _info.json
    assert sorted(m["item"] for _, _, m in LatentDataset(url, "train", with_meta=True)) == list(range(18))


def test_encode_to_hf_kill9_mid_commit_then_resume_exactly_once(hub, gray, tmp_path):
    images = _idx_files(tmp_path / "idx", 30)
    org = f"o{uuid.uuid4().hex[:10]}"
    url = f"hf://datasets/{org}/lat"
    ref = tmp_path / "ref"
    assert cli(_encode_cmd(images, str(ref), gray[1])[3:]) == 0
    base = dict(os.environ, PYTHONPATH=str(REPO), WALLOC_CDL_CACHE=str(tmp_path / "c1"))
    commits = f"/api/datasets/{org}/lat/commit/"
    gate = threading.Event()
    hub.stalled.clear()
    hub.stall[commits] = [2, gate]  # two shards land; the third commit is held: in flight when the job dies
    proc = subprocess.Popen(_encode_cmd(images, url, gray[1]), env=base, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert hub.stalled.wait(120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gate.set()
    tree = hub.tree(f"{org}/lat", repo_type="dataset")
    assert {"train-000000.tar", "train-000001.tar"} <= set(tree)
    assert "train-000002.tar" not in tree and "_info.json" not in tree
    env2 = dict(base, WALLOC_CDL_CACHE=str(tmp_path / "c2"))  # another machine: only the repo remembers
    r = subprocess.run(_encode_cmd(images, url, gray[1], "--resume"), env=env2, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    tree = hub.tree(f"{org}/lat", repo_type="dataset")
    ref_info = json.loads((ref / "_info.json").read_text())
    assert json.loads(tree["_info.json"])["splits"] == ref_info["splits"]
    assert all(tree[f] == (ref / f).read_bytes() for f in ref_info["splits"]["train"]["filenames"])
    assert sorted(m["item"] for _, _, m in LatentDataset(url, "train", with_meta=True)) == list(range(30))
