"""walloc-cdl train / evaluate / predict: a model on an encoded folder, streamed, resumable, reloadable."""
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from walloc_cdl import Codec2D, load_latent_model, save_codec
from walloc_cdl.cli import main as cli
from walloc_cdl.data.loader import LatentDataset
from walloc_cdl.training.train import TrainConfig, evaluate, train_model

CLASSES = ["bar0", "bar1", "bar2", "bar3"]
REPO = Path(__file__).resolve().parents[1]
TINY = dict(model="resnet10t", epochs=2, batch_size=16, lr=3e-3, warmup_epochs=0.2, workers=0, shuffle=64)


def _bar_image(c, rng):
    """16x16 gray noise with a bright bar whose row is the class: learnable from 4x4 latents."""
    a = (rng.random((16, 16)) * 60).astype(np.uint8)
    a[1 + 4 * c:3 + 4 * c, 2:14] = 250
    return a


def _folder(root, n_per_class, seed, classes=CLASSES):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        if name not in classes:
            continue
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(_bar_image(c, rng)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def codec_file(tmp_path_factory):
    torch.manual_seed(0)
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True).eval()
    with torch.no_grad():  # spread the latents over the integer range, as a trained codec does
        codec.encoder[0].weight.mul_(20)
    return save_codec(codec, tmp_path_factory.mktemp("codec") / "tiny.safetensors")


@pytest.fixture(scope="module")
def data(tmp_path_factory, codec_file):
    """An encoded dataset: train (4 classes x 24) and a val split whose folder lacks class bar1."""
    base = tmp_path_factory.mktemp("bars")
    out = base / "latents"
    common = ["--codec", str(codec_file), "--shard-size", "16", "--workers", "0", "--no-progress"]
    assert cli(["encode", str(_folder(base / "train", 24, 0)), str(out), "--split", "train", *common]) == 0
    val = _folder(base / "val", 8, 1, classes=["bar0", "bar2", "bar3"])
    assert cli(["encode", str(val), str(out), "--split", "val", *common]) == 0
    return out


def test_labels_are_given_by_class_name_in_every_split(data):
    info = json.loads((data / "_info.json").read_text())
    assert info["classes"] == CLASSES
    labels = {}
    for _, y, meta in LatentDataset(data, "val", with_meta=True):
        labels.setdefault(Path(meta["source"]).parts[0], set()).add(y)
    # the val folder lacks bar1: bar2 keeps id 2 (folder position would have made it 1)
    assert labels == {"bar0": {0}, "bar2": {2}, "bar3": {3}}


def test_a_split_with_an_unknown_class_is_an_error_unless_asked(tmp_path, data, codec_file, capsys):
    import shutil

    out = tmp_path / "ds"
    shutil.copytree(data, out)
    extra = _folder(tmp_path / "extra", 2, 3, classes=["bar0"])
    (extra / "bar0").rename(extra / "newclass")
    args = ["encode", str(extra), str(out), "--split", "more", "--codec", str(codec_file), "--workers", "0",
            "--no-progress"]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "newclass" in err and "--new-classes" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli(args + ["--new-classes"]) == 0
    assert json.loads((out / "_info.json").read_text())["classes"] == CLASSES + ["newclass"]


def test_an_empty_input_is_an_error(tmp_path, codec_file, capsys):
    (tmp_path / "empty").mkdir()
    assert cli(["encode", str(tmp_path / "empty"), str(tmp_path / "out"), "--codec", str(codec_file)]) == 2
    assert "no input items" in capsys.readouterr().err


def test_train_writes_the_run_folder_and_reloads(tmp_path, data):
    run = tmp_path / "run"
    res = train_model(data, out=run, config=TrainConfig(**TINY), progress=False)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    for key in ("epoch", "train_loss", "val_top1", "val_top5", "samples_per_s", "skipped_samples"):
        assert key in lines[-1], key
    assert lines[-1]["val_top1"] > 60      # 3 of 4 classes present, chance 25-33 %: it learned
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["classes"] == CLASSES and cfg["codec"]["name"] == "tiny" and cfg["model"] == "resnet10t"
    model = load_latent_model(run)
    assert not model.training
    # latents as LatentDataset yields them, no normalisation outside: the same score as the run's last epoch
    correct = n = 0
    for z, y in LatentDataset(data, "val", batch_size=7):
        correct += (model(z).argmax(1) == y).sum().item()
        n += len(y)
    assert n == 24 and 100 * correct / n == pytest.approx(lines[-1]["val_top1"])
    assert res["val_top1"] == lines[-1]["val_top1"]


def test_cli_train_evaluate_predict(tmp_path, data, capsys):
    run = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 2\nbatch_size: 16\nlr: 0.003\nwarmup_epochs: 0.2\nworkers: 0\nmixup: 0.2\n"
                   "cutmix: 0.5\nema_decay: 0.9\naccum_steps: 2\ngrad_clip: 1.0\n")
    assert cli(["train", str(data), "--model", "resnet10t", "--out", str(run), "--config", str(cfg), "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["settings"]["mixup"] == 0.2
    capsys.readouterr()
    assert cli(["evaluate", str(run), str(data), "--split", "val"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["num_samples"] == 24 and 0 <= scores["top1"] <= scores["top5"] <= 100
    img = tmp_path / "two.png"
    Image.fromarray(_bar_image(2, np.random.default_rng(9))).save(img)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert cli(["predict", str(run), str(img), str(tmp_path / "broken.png")]) == 0
    cap = capsys.readouterr()
    assert cap.out.split("\t")[1] in CLASSES and "broken.png: skipped" in cap.err


def test_bad_inputs_say_what_to_do(tmp_path, data, codec_file, capsys):
    other = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True)
    other_file = save_codec(other, tmp_path / "other.safetensors")
    assert cli(["train", str(data), "--out", str(tmp_path / "r1"), "--codec", str(other_file)]) == 2
    err = capsys.readouterr().err
    assert "'tiny'" in err and "other.safetensors" in err and "Traceback" not in err
    # an audio arch on image latents: said before any training
    assert cli(["train", str(data), "--out", str(tmp_path / "r2"), "--model", "resnet1d"]) == 2
    assert "cannot" in capsys.readouterr().err
    assert cli(["train", str(tmp_path), "--out", str(tmp_path / "r3")]) == 2
    assert "encode a dataset first" in capsys.readouterr().err
    # no validation split: trains and says so
    res = train_model(data, out=tmp_path / "r4", config=TrainConfig(**{**TINY, "epochs": 1}), val_split="nope",
                      progress=False)
    assert "val_top1" not in res and "without validation" in capsys.readouterr().err


def _corrupt_copy(data, dest):
    """A copy of the dataset with one member's latent bytes garbled and one label outside the classes."""
    import shutil

    shutil.copytree(data, dest)
    shard = dest / "train-000001.tar"
    members = []
    with tarfile.open(shard) as tf:
        for m in tf:
            members.append((m, tf.extractfile(m).read()))
    bad_latent = next(i for i, (m, _) in enumerate(members) if m.name.endswith(".latent.npy"))
    bad_label = next(i for i, (m, _) in enumerate(members) if m.name.endswith(".cls") and i > bad_latent + 3)
    members[bad_latent] = (members[bad_latent][0], b"\x93NUMPY garbage")
    members[bad_label] = (members[bad_label][0], b"17")
    with tarfile.open(shard, "w") as tf:
        for m, b in members:
            m.size = len(b)
            tf.addfile(m, io.BytesIO(b))


def test_corrupt_members_are_skipped_and_counted(tmp_path, data, capsys):
    bad = tmp_path / "bad"
    _corrupt_copy(data, bad)
    res = train_model(bad, out=tmp_path / "run", config=TrainConfig(**{**TINY, "epochs": 1}), progress=False)
    assert res["skipped_samples"] >= 2
    err = capsys.readouterr().err
    assert "train-000001.tar" in err and "label 17" in err


def _train_cmd(data, run, extra=()):
    return [sys.executable, "-m", "walloc_cdl.cli", "train", str(data), "--out", str(run), "--config",
            str(run.parent / "tiny.json"), "--quiet", *extra]


def test_resume_after_kill_9_ends_bit_identical(tmp_path, data):
    """A run killed mid-epoch and resumed gives the weights of a run never interrupted (CPU)."""
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY, "epochs": 3, "checkpoint_every": 2, "mixup": 0.3,
                                                   "ema_decay": 0.9}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(_train_cmd(data, whole), check=True, env=env, timeout=600)
    cut = tmp_path / "cut"
    p = subprocess.Popen(_train_cmd(data, cut), env=env)
    ckpt = cut / "checkpoints" / "last.safetensors"
    t0 = time.time()
    while not ckpt.exists() and p.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (cut / "model.safetensors").exists(), "the run finished before it could be killed"
    subprocess.run(_train_cmd(data, cut, ["--resume"]), check=True, env=env, timeout=600)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (cut / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


@pytest.mark.slow
def test_torchrun_ddp_two_gloo_ranks(tmp_path, data):
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY, "epochs": 1}))
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "walloc_cdl.cli", "train", str(data), "--out", str(run), "--config", str(tmp_path / "tiny.json"), "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["world_size"] == 2 and m["val_samples"] == 24     # every val sample scored once over 2 ranks
    assert load_latent_model(run)(torch.zeros(1, 4, 4, 4)).shape == (1, 4)


def test_each_rank_reads_its_own_shards_in_an_epoch(data, monkeypatch):
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        ds = LatentDataset(data, "train", training=True, epoch_length=48, shuffle=0, with_meta=True)
        seen.append({m["item"] for _, _, m in ds})
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_evaluate_counts_every_sample_once(data):
    from walloc_cdl.models.classifier import build_classifier

    info = json.loads((data / "_info.json").read_text())
    net = build_classifier({"model": "resnet10t", "num_classes": 4, "codec": info["codec"], "input_shape": [4, 4, 4]})
    r = evaluate(net, data, "val", torch.device("cpu"), batch_size=5)
    assert r["num_samples"] == 24 and r["top1"] <= r["top5"]
