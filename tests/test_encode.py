"""The pre-encode job: conversions, skipped inputs, seeded views, audio segments, resume after kill -9,
byte-identical output, two ranks under torchrun, the CLI."""
import gzip
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from walloc_cdl import Codec1D, Codec2D, load_codec, save_codec
from walloc_cdl.cli import main as cli
from walloc_cdl.data.encode import EncodeOptions, encode_dataset
from walloc_cdl.data.loader import LatentDataset
from walloc_cdl.data.shards import decode_sample, read_info
from walloc_cdl.data.sources import AudioFolder, IdxSource, ImageFolder

from floatbound import assert_rounded_agree, encode_bound

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def codecs(tmp_path_factory):
    d = tmp_path_factory.mktemp("codecs")
    torch.manual_seed(0)
    rgb = Codec2D(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True).eval()
    gray = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True).eval()
    stereo = Codec1D(channels=2, J=3, Ne=None, Nd=16, latent_dim=8, latent_bits=8, lightweight_encode=True,
                     post_filter=False).eval()
    paths = {}
    for name, c in (("rgb", rgb), ("gray", gray), ("stereo", stereo)):
        paths[name] = save_codec(c, d / f"{name}.safetensors")
    return {"rgb": rgb, "gray": gray, "stereo": stereo, "paths": paths}


def _idx(a):
    return b"\x00\x00\x08" + bytes([a.ndim]) + b"".join(struct.pack(">I", n) for n in a.shape) + a.tobytes()


@pytest.fixture(scope="module")
def idx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    x = RNG.integers(0, 256, (120, 28, 28), dtype=np.uint8)
    y = (np.arange(120) % 10).astype(np.uint8)
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x), mtime=0))
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y), mtime=0))
    return d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz", x, y


def _samples(root, split="train"):
    import webdataset as wds

    info = read_info(root)
    urls = [str(Path(root) / f) for f in info["splits"][split]["filenames"]]
    return [decode_sample(s) for s in wds.WebDataset(urls, shardshuffle=False)]


def _digests(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).glob("*.tar"))} | \
        {"_info.json": hashlib.sha256((Path(root) / "_info.json").read_bytes()).hexdigest()}


def _png(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()



def _assert_stored_latent(z, codec, x):
    """A stored latent is the rounded encode of x (the job batched it with others: only ties may differ)."""
    with torch.no_grad():
        assert_rounded_agree(z, codec.encode(x, quantize=False)[0], encode_bound(codec, x, computations=2), 0.99)

def test_image_folder_conversions_and_skips(tmp_path, codecs):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    rgb = RNG.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    (root / "a" / "rgb.png").write_bytes(_png(rgb))
    (root / "a" / "gray.png").write_bytes(_png(rgb[..., 0]))
    (root / "a" / "rgba.png").write_bytes(_png(np.dstack([rgb, rgb[..., :1]])))
    (root / "b" / "deep.png").write_bytes(_png(rgb[..., 1].astype(np.uint16) * 257))
    Image.fromarray(rgb).convert("P").save(root / "b" / "pal.gif")
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    import tifffile

    tifffile.imwrite(root / "b" / "six.tif", RNG.integers(0, 999, (6, 16, 16), dtype=np.uint16),
                     photometric="minisblack", planarconfig="separate")
    out = tmp_path / "out"
    report = encode_dataset(ImageFolder(root), out, codecs["rgb"], "rgb",
                            EncodeOptions(shard_size=2, batch_size=3, progress=False))
    assert report["items"] == 7 and report["samples"] == 5 and report["shards"] == 3
    skipped = {Path(s["source"]).name: s["reason"] for s in report["skipped"]}
    assert sorted(skipped) == ["broken.jpg", "six.tif"] and "6-channel" in skipped["six.tif"]
    assert report["source_bytes"] > 0 and report["output_bytes"] == sum(p.stat().st_size for p in out.glob("*.tar"))
    got = {Path(s["json"]["source"]).name: s for s in _samples(out)}
    assert sorted(got) == ["deep.png", "gray.png", "pal.gif", "rgb.png", "rgba.png"]
    for s in got.values():  # 30x45 padded (reflect) to 32x48 -> 4x6 latent grid
        assert s["latent"].shape == (12, 4, 6) and s["json"]["pad"] == [1, 2, 1, 1] and "." not in s["__key__"]
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255 - 0.5
    x = torch.nn.functional.pad(x, (1, 2, 1, 1), mode="reflect")
    _assert_stored_latent(got["rgb.png"]["latent"], codecs["rgb"], x)
    assert torch.equal(got["rgba.png"]["latent"], got["rgb.png"]["latent"])  # alpha dropped
    assert got["gray.png"]["cls"] == 0 and got["deep.png"]["cls"] == 1
    info = read_info(out)
    assert info["classes"] == ["a", "b"] and info["codec"]["name"] == "rgb"
    assert json.loads((out / "_report_train.json").read_text())["samples"] == 5


def test_seeded_random_views(tmp_path, codecs, idx_files):
    images, labels, x, _ = idx_files
    opts = EncodeOptions(crop="random", crop_size=(16, 16), views=3, limit=5, progress=False)
    encode_dataset(IdxSource(images, labels), tmp_path / "a", codecs["gray"], "gray", opts)
    encode_dataset(IdxSource(images, labels), tmp_path / "b", codecs["gray"], "gray", opts)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    got = _samples(tmp_path / "a")
    assert [s["__key__"] for s in got[:3]] == ["00000000_v0", "00000000_v1", "00000000_v2"]
    boxes = [tuple(s["json"]["crop"]) for s in got[:3]]
    assert len(set(boxes)) == 3 and all(b[2:] == (16, 16) for b in boxes)
    left, top = boxes[1][:2]
    crop = torch.from_numpy(x[0, top:top + 16, left:left + 16])[None, None]  # 8-bit input stays uint8
    _assert_stored_latent(got[1]["latent"], codecs["gray"], crop)
    with pytest.raises(ValueError, match="--views"):
        encode_dataset(IdxSource(images, labels), tmp_path / "c", codecs["gray"], "", EncodeOptions(views=2))


def test_audio_segments(tmp_path, codecs):
    root = tmp_path / "snd"
    (root / "kick").mkdir(parents=True)
    t = np.arange(22050) / 44100
    sf.write(root / "kick" / "k.wav", np.stack([np.sin(2e3 * t), np.cos(3e3 * t)], 1) * 0.9, 44100)
    sf.write(root / "kick" / "mono.flac", np.sin(1e3 * t[:4000]) * 0.5, 48000)
    (root / "kick" / "bad.wav").write_bytes(b"RIFFxxxxWAVE")
    report = encode_dataset(AudioFolder(root), tmp_path / "out", codecs["stereo"], "stereo",
                            EncodeOptions(sample_rate=16000, segment=0.1, progress=False))
    # k.wav: 0.5 s -> 5 segments of 1600; mono.flac: 4000 samples at 48k -> ceil(4000/3) = 1334 at 16k, one padded segment
    assert report["samples"] == 6 and [Path(s["source"]).name for s in report["skipped"]] == ["bad.wav"]
    got = _samples(tmp_path / "out")
    assert [s["__key__"].rsplit("_", 1)[1] for s in got] == ["s00000", "s00001", "s00002", "s00003", "s00004",
                                                            "s00000"]
    assert all(s["latent"].shape == (8, 1600 // 8 + 2) for s in got)
    assert got[-1]["json"]["length"] == 1334 and got[1]["json"]["offset"] == 1600
    with pytest.raises(ValueError, match="--resize"):
        encode_dataset(AudioFolder(root), tmp_path / "x", codecs["stereo"], "", EncodeOptions(resize=32))


_SCRIPT = """
import sys, time
from walloc_cdl.codec.checkpoints import load_codec
from walloc_cdl.data.encode import EncodeOptions, encode_dataset
from walloc_cdl.data.sources import IdxSource

class Slow(IdxSource):
    delay = 0.0
    def load(self, i):
        time.sleep(self.delay)
        return super().load(i)

if __name__ == "__main__":
    images, labels, codec, out, resume, delay = sys.argv[1:]
    Slow.delay = float(delay)
    encode_dataset(Slow(images, labels), out, load_codec(codec), "gray",
                   EncodeOptions(shard_size=10, batch_size=4, crop="random", crop_size=(20, 20), views=2,
                                 resume=resume == "1", progress=False))
"""


def test_resume_after_kill9_is_exact_and_byte_identical(tmp_path, codecs, idx_files):
    images, labels, _, _ = idx_files
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [sys.executable, str(script), str(images), str(labels), str(codecs["paths"]["gray"])]
    ref, out = tmp_path / "ref", tmp_path / "out"
    subprocess.run(args + [str(ref), "0", "0"], env=env, check=True, timeout=120)
    proc = subprocess.Popen(args + [str(out), "0", "0.02"], env=env)
    deadline = time.time() + 60
    while not (out / "train-000004.tar").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "_info.json").exists(), "the job finished before it was killed"
    written = len(list(out.glob("train-*.tar")))
    assert 4 < written < 24
    with pytest.raises(FileExistsError, match="--resume"):
        encode_dataset(IdxSource(images, labels), out, codecs["gray"], "gray", EncodeOptions())
    subprocess.run(args + [str(out), "1", "0"], env=env, check=True, timeout=120)
    assert _digests(out) == _digests(ref)
    keys = [s["__key__"] for s in _samples(out)]
    assert len(keys) == 240 and len(set(keys)) == 240
    assert not list(out.glob(".*.tmp"))


def test_two_ranks_with_torchrun(tmp_path, codecs, idx_files):
    images, _, x, y = idx_files
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "walloc_cdl.cli", "encode", str(images), str(out), "--codec", str(codecs["paths"]["gray"]),
           "--shard-size", "25", "--workers", "0", "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    info = read_info(out)["splits"]["train"]
    assert info["num_samples"] == 120 and sum(info["shard_lengths"]) == 120
    assert {f.split("-")[1] for f in info["filenames"]} == {"r00", "r01"}
    got = _samples(out)
    assert sorted(s["json"]["item"] for s in got) == list(range(120))
    by_item = {s["json"]["item"]: s for s in got}
    assert all(by_item[i]["cls"] == int(y[i]) for i in range(120))
    ref = codecs["gray"].encode(torch.from_numpy(x[7])[None, None])[0]
    assert torch.equal(by_item[7]["latent"], ref)
    assert sum(1 for _ in LatentDataset(out, "train")) == 120


def test_cli_splits_containers_and_existing_output(tmp_path, codecs, idx_files, capsys):
    images, _, _, _ = idx_files
    out = tmp_path / "out"
    base = [str(images), str(out), "--codec", str(codecs["paths"]["gray"]), "--workers", "2", "--no-progress",
            "--shard-size", "50", "--container", "webp"]
    for n in (30, 40, 60):   # what the options do not carry goes in --config
        (tmp_path / f"limit{n}.yaml").write_text(f"limit: {n}\nbatch_size: 16\n")
    lim = {n: ["--config", str(tmp_path / f"limit{n}.yaml")] for n in (30, 40, 60)}
    assert cli(["encode", *base, *lim[60]]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 60 and report["shards"] == 2
    first = _digests(out)
    assert cli(["encode", *base, *lim[60]]) == 2       # one line on stderr, no traceback
    assert "pass --resume" in capsys.readouterr().err
    assert cli(["encode", *base, *lim[60], "--resume"]) == 0  # already done: nothing changes
    assert _digests(out) == first
    assert cli(["encode", *base, "--split", "test", *lim[30], "--container", "webp"]) == 0
    info = read_info(out)
    assert sorted(info["splits"]) == ["test", "train"] and info["splits"]["train"]["num_samples"] == 60
    with tarfile.open(out / "test-000000.tar") as tf:
        assert any(n.endswith(".latent.webp") for n in tf.getnames())
    assert cli(["encode", *base, *lim[40], "--overwrite"]) == 0
    assert read_info(out)["splits"]["train"]["num_samples"] == 40 and not (out / "train-000001.tar").exists()
    torch.manual_seed(1)
    other = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True)
    with pytest.raises(RuntimeError, match="another codec"):
        encode_dataset(IdxSource(images), out, other, "other", EncodeOptions(split="val", progress=False))
    tuned = load_codec(codecs["paths"]["gray"])  # a decoder fine-tune keeps the latents: it may add a split
    with torch.no_grad():
        next(tuned.decoder.parameters()).add_(0.1)
    encode_dataset(IdxSource(images), out, tuned, "gray-tuned", EncodeOptions(split="val", progress=False, limit=10))
    assert read_info(out)["splits"]["val"]["num_samples"] == 10
