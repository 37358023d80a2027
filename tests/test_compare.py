"""compare: every variant goes encode job -> shards -> train_model, with one budget; the table is honest."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from walloc_cdl import Codec1D, Codec2D
from walloc_cdl.data.transforms import downsample_images
from walloc_cdl.data.builtin import Benchmark
from walloc_cdl.compare import (Variant, compare_config, format_table, make_variants, run_comparison,
                                variant_transform, write_variant)
from walloc_cdl.data.loader import LatentDataset

from floatbound import assert_rounded_agree, encode_bound


def _image_bench(n=96, size=32, classes=4):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = (torch.rand(n, 1, size, size, generator=g) * 60).to(torch.uint8)
    for c in range(classes):  # a bright bar whose position is the class: learnable, needs the pixels
        x[y == c, :, 4 + 6 * c:8 + 6 * c, 8:24] = 250
    return Benchmark("bars", "image", x, y, {"test": (x[:32], y[:32])}, [str(c) for c in range(classes)], {}, "bars")


def _gray(latent_dim=1):
    torch.manual_seed(0)
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=latent_dim, latent_bits=8, lightweight_encode=True)
    with torch.no_grad():
        codec.encoder[0].weight.mul_(20)
    return codec.eval()


def _cfg(**kw):
    return compare_config(kw.pop("epochs", 4), kw.pop("batch_size", 16), kw.pop("lr", 3e-3), **kw)


def test_variants():
    vs = make_variants([4, 16], {16: "gray-16x"})
    assert [v.name for v in vs] == ["down-4x", "latent-16x", "down-16x", "full"]
    assert [v.name for v in make_variants([4, 16], {16: "gray-16x"}, include_full=False, include_down=False)] \
        == ["latent-16x"]
    assert [v.name for v in make_variants([16], {16: "gray-16x"}, include_full=False, include_decoded=True)] \
        == ["latent-16x", "decoded-16x", "down-16x"]


def test_every_variant_is_written_by_the_encode_job(tmp_path):
    """latents = the codec's, down = the whole image resized (uint8), full = the pixels, decoded = round trip."""
    b, codec = _image_bench(n=16), _gray()
    got = {}
    for v in (Variant("latent-16x", "latent", 16, codec), Variant("down-16x", "down", 16), Variant("full", "full", 1),
              Variant("decoded-16x", "decoded", 16, codec)):
        root = write_variant(b, v, tmp_path)
        info = json.loads((root / "_info.json").read_text())
        assert set(info["splits"]) == {"train", "test"} and info["splits"]["train"]["num_samples"] == 16
        got[v.kind] = torch.stack([z for z, _ in LatentDataset(root, "train")])
        assert [y for _, y in LatentDataset(root, "train")] == b.y_train.tolist()
    x = b.x_train
    with torch.no_grad():
        exact = codec.encode(x.float() / 255 - 0.5, quantize=False)
        assert_rounded_agree(got["latent"], exact, encode_bound(codec, x, computations=2))
        ref = ((codec.decode(codec.encode(x)).clamp(-0.5, 0.5) + 0.5) * 255).round()
    assert got["down"].shape == (16, 1, 8, 8) and torch.equal(got["down"], downsample_images(x, 16).float())
    assert torch.equal(got["full"], x.float())
    assert got["decoded"].shape == x.shape and (got["decoded"] - ref).abs().max() <= 1


def test_shards_are_cached_by_content(tmp_path, monkeypatch):
    import walloc_cdl.data.encode as enc

    b = _image_bench(n=16)
    first = write_variant(b, Variant("down-4x", "down", 4), tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in first.glob("*.tar")}
    monkeypatch.setattr(enc._Job, "_encode", lambda *a, **k: pytest.fail("a cached variant was encoded again"))
    assert write_variant(b, Variant("down-4x", "down", 4), tmp_path) == first
    assert stamps and {p: p.stat().st_mtime_ns for p in first.glob("*.tar")} == stamps
    monkeypatch.undo()
    b.x_train[0, 0, 0, 0] ^= 1     # one pixel changed: another fingerprint, another folder
    assert write_variant(b, Variant("down-4x", "down", 4), tmp_path) != first


def test_run_comparison_learns_and_reports(tmp_path):
    res = run_comparison(_image_bench(), "resnet10t", [16.0], [0, 1], _cfg(epochs=6), tmp_path / "out",
                         codecs={16.0: _gray()}, progress=False, cache=tmp_path / "cache")
    rows = {r["variant"]: r for r in res["summary"]}
    assert set(rows) == {"latent-16x", "down-16x", "full"}
    assert rows["full"]["input_dims"] == 1024 and rows["latent-16x"]["input_dims"] == 64
    assert rows["down-16x"]["reduction"] == 16
    assert rows["full"]["acc_mean"]["test"] > 60  # chance is 25 %
    assert len(res["runs"]) == 6 and all(r["samples_per_s"] > 0 for r in res["runs"])
    # each run is a train_model run folder, reloadable
    run = Path(res["runs"][0]["run"])
    assert (run / "model.safetensors").exists() and (run / "metrics.jsonl").exists()
    table = format_table(res)
    assert "latent-16x" in table and "samples/s" in table and "16.0×" in table


def test_roundtrip_scores_the_full_model_on_decoded_and_resized_test_inputs(tmp_path):
    res = run_comparison(_image_bench(), "resnet10t", [16.0], [0], _cfg(epochs=4), tmp_path / "a",
                         codecs={16.0: None}, include_down=False, progress=False, roundtrip={16.0: _gray()},
                         cache=tmp_path / "cache")
    (full,) = res["summary"]
    assert full["kind"] == "full" and set(full["acc_mean"]) == {"test"}
    assert set(full["acc_extra_mean"]) == {"test@decoded-16x", "test@down-up-16x"}
    assert "round-tripped test inputs" in format_table(res)
    # a round trip that keeps the input (r = 1) scores exactly what the untouched test set scores
    same = run_comparison(_image_bench(), "resnet10t", [1.0], [0], _cfg(epochs=1), tmp_path / "b", codecs={},
                          include_down=False, progress=False, roundtrip={1.0: None}, cache=tmp_path / "cache")
    (row,) = same["summary"]
    assert row["acc_extra_mean"] == {"test@down-up-1x": row["acc_mean"]["test"]}


def test_audio_variants(tmp_path):
    n, T = 32, 4096
    y = torch.arange(n) % 2
    t = torch.arange(T) / 44100
    f = torch.where(y == 0, 300.0, 3000.0)[:, None]
    x = (0.5 * torch.sin(2 * torch.pi * f * t))[:, None].repeat(1, 2, 1)
    b = Benchmark("tones", "audio", x, y, {"test": (x, y)}, ["low", "high"], {}, "tones")
    codec = Codec1D(channels=2, J=4, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True,
                    post_filter=False)
    res = run_comparison(b, "resnet1d_small", [8.0], [0], _cfg(epochs=2, batch_size=8), tmp_path / "out",
                         codecs={8.0: codec}, progress=False, roundtrip={8.0: codec}, cache=tmp_path / "cache")
    shapes = {r["variant"]: r["input_shape"] for r in res["summary"]}
    assert shapes == {"latent-8x": [4, T // 16 + 2], "down-8x": [2, T // 8], "full": [2, T]}
    full = next(r for r in res["summary"] if r["kind"] == "full")
    assert set(full["acc_extra_mean"]) == {"test@decoded-8x", "test@down-up-8x"}
    # audio baselines are 16-bit PCM shards of the resampled clip
    assert variant_transform(Variant("down-8x", "down", 8), 2, "audio").encode(x[:1] / 2).dtype == torch.int16


def _bar_folder(root: Path) -> Path:
    """Tiny class-subfolder image set: a bright bar whose position is the class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 16)):
        for c in range(2):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            for i in range(n // 2):
                a = (rng.random((32, 32)) * 60).astype(np.uint8)
                a[4 + 12 * c:10 + 12 * c, 4:28] = 250
                Image.fromarray(a).save(d / f"{i}.png")
    return root


def test_cli_user_folder_writes_table_and_plot(tmp_path, monkeypatch, capsys):
    from walloc_cdl import cli
    from walloc_cdl.codec.checkpoints import save_codec

    monkeypatch.setenv("WALLOC_CDL_CACHE", str(tmp_path / "cache"))
    root = _bar_folder(tmp_path / "data")
    path = save_codec(_gray(2), tmp_path / "g.safetensors")
    (tmp_path / "study.yaml").write_text("batch_size: 8\nroundtrip: true\nmagnitude: true\n")
    assert cli.main(["compare", "--data", str(root / "train"), "--test-data", str(root / "test"), "--size", "32",
                     "--codec", f"16={path}", "--out", str(tmp_path / "o1"), "--model", "resnet10t", "--epochs", "2",
                     "--config", str(tmp_path / "study.yaml"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| latent-16x |" in printed and "| full |" in printed
    res = json.loads((tmp_path / "o1" / "results.json").read_text())
    assert {r["variant"] for r in res["summary"]} == {"latent-16x", "down-16x", "full"}
    assert res["train_size"] == 40 and res["test_sizes"] == {"test": 16} and res["magnitude"] is True
    full = next(r for r in res["summary"] if r["kind"] == "full")
    assert set(full["acc_extra_mean"]) == {"test@decoded-16x", "test@down-up-16x"}
    assert (tmp_path / "o1" / "plot.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "o1" / "table.md").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    from walloc_cdl import cli

    assert cli.main(["compare", "--benchmark", "fashion-mnist", "--codec", "rgb-16x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "R=NAME" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_resumes_an_interrupted_comparison(tmp_path, monkeypatch, capsys):
    from walloc_cdl import cli, compare
    from walloc_cdl.codec.checkpoints import save_codec

    monkeypatch.setenv("WALLOC_CDL_CACHE", str(tmp_path / "cache"))
    root = _bar_folder(tmp_path / "data")
    path = save_codec(_gray(2), tmp_path / "g.safetensors")
    (tmp_path / "c.json").write_text(json.dumps({"include_full": False, "batch_size": 8}))
    out = tmp_path / "out"
    cmd = ["compare", "--data", str(root / "train"), "--test-data", str(root / "test"), "--size", "32",
           "--codec", f"16={path}", "--model", "resnet10t", "--epochs", "1", "--config", str(tmp_path / "c.json"),
           "--out", str(out)]
    real, calls = compare.train_model, []

    def dies_on_the_second_run(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(compare, "train_model", dies_on_the_second_run)
    assert cli.main(cmd) == 130
    assert "--resume" in capsys.readouterr().err and not (out / "results.json").exists()
    assert cli.main(cmd) == 2  # starting over would throw the finished run away: refused
    assert "--resume" in capsys.readouterr().err
    assert cli.main(cmd + ["--resume"]) == 0
    assert len(calls) == 3  # latent-16x was reused; down-16x trained
    res = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in res["runs"]] == ["latent-16x", "down-16x"]


@pytest.mark.slow
def test_torchrun_ddp_two_cpu_ranks(tmp_path):
    """Two gloo ranks: the encode job splits the items, train_model the shards; rank 0 alone writes results."""
    from walloc_cdl.codec.checkpoints import save_codec

    root = _bar_folder(tmp_path / "data")
    path = save_codec(_gray(2), tmp_path / "g.safetensors")
    (tmp_path / "c.json").write_text(json.dumps({"include_full": False, "batch_size": 8}))
    out = tmp_path / "out"
    env = dict(os.environ, WALLOC_CDL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "walloc_cdl.cli", "compare", "--data", str(root / "train"), "--test-data", str(root / "test"),
           "--size", "32", "--codec", f"16={path}", "--model", "resnet10t", "--epochs", "1", "--device", "cpu",
           "--config", str(tmp_path / "c.json"), "--out", str(out), "--quiet"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert r.stdout.count("| latent-16x |") == 1  # printed once, by rank 0
    run = json.loads((Path(res["runs"][0]["run"]) / "config.json").read_text())
    assert run["world_size"] == 2 and run["final"]["val_samples"] == 16
