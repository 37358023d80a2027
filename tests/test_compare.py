"""compare: every variant trains with the same budget, the table is honest about dims, files are written."""
import json
from pathlib import Path

import pytest
import torch

from walloc_cdl import Codec1D, Codec2D
from walloc_cdl.benchdata import Benchmark
from walloc_cdl.compare import (CompareConfig, Variant, build_model, format_table, make_variants, prepare,
                                run_comparison)


def _image_bench(n=96, size=32, classes=4):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = (torch.rand(n, 1, size, size, generator=g) * 60).to(torch.uint8)
    for c in range(classes):  # a bright bar whose position is the class: learnable, needs the pixels
        x[y == c, :, 4 + 6 * c:8 + 6 * c, 8:24] = 250
    return Benchmark("bars", "image", x, y, {"test": (x[:32], y[:32])}, [str(c) for c in range(classes)], {}, "bars")


def test_variants_and_dims():
    vs = make_variants([4, 16], {16: "gray-16x"})
    assert [v.name for v in vs] == ["down-4x", "latent-16x", "down-16x", "full"]
    # a latent-only run (benchmarks/downstream.py --no-down --no-full): reductions without a codec vanish
    assert [v.name for v in make_variants([4, 16], {16: "gray-16x"}, include_full=False, include_down=False)] \
        == ["latent-16x"]
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=1, latent_bits=8, lightweight_encode=True)
    b = _image_bench()
    z = prepare(vs[1], b.x_train, "image", codec, torch.device("cpu"))
    d = prepare(vs[2], b.x_train, "image", None, torch.device("cpu"))
    assert z.shape == (96, 1, 8, 8) and z.dtype == torch.int8
    # batches fill one preallocated tensor: any batch size gives the same inputs
    assert prepare(vs[1], b.x_train, "image", codec, torch.device("cpu"), batch_size=40).equal(z)
    assert d.shape == (96, 1, 8, 8) and d.dtype == torch.uint8
    f = prepare(vs[3], b.x_train, "image", None, torch.device("cpu"))
    assert f.data_ptr() == b.x_train.data_ptr()  # full resolution shares the input, no second copy


def test_decoded_variant_is_the_codec_round_trip_at_full_resolution():
    vs = make_variants([16], {16: "gray-16x"}, include_full=False, include_decoded=True)
    assert [v.name for v in vs] == ["latent-16x", "decoded-16x", "down-16x"]
    # the bound alone (downstream.py --no-latent --decoded): decoded-r stays, latent-r goes
    assert [v.name for v in make_variants([16], {16: "gray-16x"}, include_full=False, include_decoded=True,
                                          include_down=False, include_latent=False)] == ["decoded-16x"]
    torch.manual_seed(0)
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=1, latent_bits=8, lightweight_encode=True).eval()
    b = _image_bench(n=8)
    d = prepare(vs[1], b.x_train, "image", codec, torch.device("cpu"))
    assert d.shape == b.x_train.shape and d.dtype == torch.uint8
    with torch.no_grad():
        ref = codec.decode(codec.encode(b.x_train.float() / 255 - 0.5)).clamp(-0.5, 0.5)
    assert (d.float() - (ref + 0.5) * 255).abs().max() <= 0.5 + 1e-3
    assert not torch.equal(d, b.x_train)   # a 16x codec loses something: this is not the input passed through


def test_run_comparison_learns_and_reports(tmp_path):
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=1, latent_bits=8, lightweight_encode=True)
    res = run_comparison(_image_bench(), "resnet10t", [16.0], [0, 1], CompareConfig(epochs=6, batch_size=16, lr=3e-3),
                         torch.device("cpu"), codecs={16.0: codec}, progress=False)
    rows = {r["variant"]: r for r in res["summary"]}
    assert set(rows) == {"latent-16x", "down-16x", "full"}
    assert rows["full"]["input_dims"] == 1024 and rows["latent-16x"]["input_dims"] == 64
    assert rows["down-16x"]["reduction"] == 16
    assert rows["full"]["acc_mean"]["test"] > 60  # chance is 25 %
    assert len(res["runs"]) == 6 and all(r["samples_per_s"] > 0 and r["peak_mem_mb"] > 0 for r in res["runs"])
    table = format_table(res)
    assert "latent-16x" in table and "samples/s" in table and "16.0×" in table


def test_roundtrip_scores_the_full_model_on_decoded_and_resized_test_inputs():
    torch.manual_seed(0)
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=1, latent_bits=8, lightweight_encode=True)
    res = run_comparison(_image_bench(), "resnet10t", [16.0], [0], CompareConfig(epochs=6, batch_size=16, lr=3e-3),
                         torch.device("cpu"), codecs={16.0: None}, include_down=False, progress=False,
                         roundtrip={16.0: codec})
    (full,) = res["summary"]
    assert full["kind"] == "full" and set(full["acc_mean"]) == {"test"}  # the shared columns stay as they were
    assert set(full["acc_extra_mean"]) == {"test@decoded-16x", "test@down-up-16x"}
    assert all(0 <= a <= 100 for a in full["acc_extra_mean"].values())
    assert "round-tripped test inputs" in format_table(res) and "test@down-up-16x" in format_table(res)
    # a round trip that keeps the input (r = 1 resize) scores exactly what the untouched test set scores
    same = run_comparison(_image_bench(), "resnet10t", [1.0], [0], CompareConfig(epochs=1, batch_size=16),
                          torch.device("cpu"), codecs={}, include_down=False, progress=False, roundtrip={1.0: None})
    (row,) = same["summary"]
    assert row["acc_extra_mean"] == {"test@down-up-1x": row["acc_mean"]["test"]}


def test_magnitude_default_is_per_modality_and_can_be_forced():
    from walloc_cdl.models.stems import Magnitude

    codec = Codec2D(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True)
    lat = Variant("latent-16x", "latent", 16, codec)
    has_mag = lambda m: any(isinstance(x, Magnitude) for x in m.modules())
    assert not has_mag(build_model(lat, "resnet10t", "image", 3, 5, codec, 64, "keep"))
    assert has_mag(build_model(lat, "resnet10t", "image", 3, 5, codec, 64, "keep", magnitude=True))
    # only latent variants: a downsampled-pixel model never gets |x|
    assert not has_mag(build_model(Variant("down-16x", "down", 16), "resnet10t", "image", 3, 5, None, 64, "keep",
                                   magnitude=True))
    a = Codec1D(channels=2, J=4, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True, post_filter=False)
    alat = Variant("latent-8x", "latent", 8, a)
    assert build_model(alat, "resnet1d_small", "audio", 2, 3, a, None, "keep").magnitude
    assert not build_model(alat, "resnet1d_small", "audio", 2, 3, a, None, "keep", magnitude=False).magnitude


def test_audio_variants():
    g = torch.Generator().manual_seed(0)
    n, T = 32, 4096
    y = torch.arange(n) % 2
    t = torch.arange(T) / 44100
    f = torch.where(y == 0, 300.0, 3000.0)[:, None]
    x = (0.5 * torch.sin(2 * torch.pi * f * t))[:, None].repeat(1, 2, 1).half()
    b = Benchmark("tones", "audio", x, y, {"test": (x, y)}, ["low", "high"], {}, "tones")
    codec = Codec1D(channels=2, J=4, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True,
                    post_filter=False)
    res = run_comparison(b, "resnet1d_small", [8.0], [0], CompareConfig(epochs=2, batch_size=8),
                         torch.device("cpu"), codecs={8.0: codec}, progress=False, roundtrip={8.0: codec})
    shapes = {r["variant"]: r["input_shape"] for r in res["summary"]}
    assert shapes == {"latent-8x": [4, T // 16 + 2], "down-8x": [2, T // 8], "full": [2, T]}
    full = next(r for r in res["summary"] if r["kind"] == "full")
    assert set(full["acc_extra_mean"]) == {"test@decoded-8x", "test@down-up-8x"}


def test_cli_writes_table_and_plot(tmp_path, monkeypatch, capsys):
    from walloc_cdl import cli
    from walloc_cdl.checkpoints import save_codec

    if not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("apt-get install dataset-fashion-mnist")
    monkeypatch.setenv("WALLOC_CDL_CACHE", str(tmp_path / "cache"))
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=1, latent_bits=8, lightweight_encode=True)
    path = save_codec(codec, tmp_path / "g16.safetensors")
    out = tmp_path / "out"
    rc = cli.main(["compare", "--benchmark", "fashion-mnist", "--n-train", "200", "--n-test", "50", "--epochs", "1",
                   "--model", "resnet10t", "--codec", f"16={path}", "--out", str(out), "--quiet", "--roundtrip",
                   "--magnitude"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| latent-16x |" in printed and "| full |" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["train_size"] == 200 and res["test_sizes"] == {"test": 50} and res["magnitude"] is True
    full = next(r for r in res["summary"] if r["kind"] == "full")  # 16x: the given codec; 4x: the benchmark's
    assert set(full["acc_extra_mean"]) == {f"test@{k}-{r}x" for k in ("decoded", "down-up") for r in (4, 16)}
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "table.md").exists()


def test_cli_rejects_bad_codec_spec():
    from walloc_cdl import cli

    with pytest.raises(SystemExit, match="R=NAME"):
        cli.main(["compare", "--benchmark", "fashion-mnist", "--codec", "rgb-16x", "--n-train", "10"])


@pytest.mark.slow
def test_torchrun_ddp_two_cpu_ranks(tmp_path):
    """Two gloo ranks split the training set; rank 0 alone writes the results."""
    import os
    import subprocess
    import sys

    from walloc_cdl.checkpoints import save_codec

    if not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("apt-get install dataset-fashion-mnist")
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=1, latent_bits=8, lightweight_encode=True)
    path = save_codec(codec, tmp_path / "g16.safetensors")
    out = tmp_path / "out"
    env = dict(os.environ, WALLOC_CDL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "walloc_cdl.compare", "--benchmark", "fashion-mnist", "--n-train", "128", "--n-test", "40",
           "--epochs", "1", "--batch-size", "16", "--model", "resnet10t", "--codec", f"16={path}",
           "--reductions", "16", "--no-full", "--device", "cpu", "--out", str(out), "--quiet"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert res["world_size"] == 2
    assert res["runs"][0]["steps"] == 4  # 128 samples / 2 ranks / batch 16
    assert r.stdout.count("| latent-16x |") == 1  # printed once, by rank 0
    # --resume under DDP: every rank reads the ledger rank 0 wrote and agrees on what is left to train
    r = subprocess.run(cmd + ["--resume", "--seeds", "0", "1", "--checkpoint-every", "0"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((out / "results.json").read_text())
    assert [(x["variant"], x["seed"]) for x in again["runs"]] == \
        [("latent-16x", 0), ("latent-16x", 1), ("down-16x", 0), ("down-16x", 1)]
    assert again["runs"][0] == res["runs"][0] and again["runs"][2] == res["runs"][1]
    assert "2 finished run(s) reused" in r.stdout


def _bar_folder(root: Path) -> Path:
    """Tiny class-subfolder image set: a bright bar whose position is the class."""
    import numpy as np
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


def test_user_folder_and_shards(tmp_path):
    from walloc_cdl import cli
    from walloc_cdl.checkpoints import save_codec

    root = _bar_folder(tmp_path)
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=2, latent_bits=8, lightweight_encode=True)
    path = save_codec(codec, tmp_path / "g.safetensors")
    common = ["--model", "resnet10t", "--epochs", "2", "--batch-size", "8", "--quiet"]
    assert cli.main(["compare", "--data", str(root / "train"), "--test-data", str(root / "test"), "--size", "32",
                     "--codec", f"8={path}", "--out", str(tmp_path / "o1"), *common]) == 0
    res = json.loads((tmp_path / "o1" / "results.json").read_text())
    assert {r["variant"] for r in res["summary"]} == {"latent-8x", "down-8x", "full"}
    assert res["train_size"] == 40 and res["test_sizes"] == {"test": 16}
    for split in ("train", "test"):
        assert cli.main(["encode", str(root / split), str(tmp_path / "shards"), "--codec", str(path), "--split", split,
                         "--no-progress"]) == 0
    assert cli.main(["compare", "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "o2"), *common]) == 0
    res = json.loads((tmp_path / "o2" / "results.json").read_text())
    (row,) = res["summary"]
    assert row["kind"] == "latent" and row["input_shape"] == [2, 8, 8] and res["train_size"] == 40


def test_cli_resumes_an_interrupted_comparison(tmp_path, monkeypatch, capsys):
    from walloc_cdl import cli, compare
    from walloc_cdl.checkpoints import save_codec

    root = _bar_folder(tmp_path / "data")
    codec = Codec2D(channels=1, J=2, Ne=None, Nd=32, latent_dim=2, latent_bits=8, lightweight_encode=True)
    path = save_codec(codec, tmp_path / "g.safetensors")
    out = tmp_path / "out"
    cmd = ["compare", "--data", str(root / "train"), "--test-data", str(root / "test"), "--size", "32",
           "--codec", f"8={path}", "--no-full", "--model", "resnet10t", "--epochs", "1", "--batch-size", "8",
           "--out", str(out)]
    real, calls = compare.train_and_evaluate, []

    def dies_on_the_second_run(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(compare, "train_and_evaluate", dies_on_the_second_run)
    assert cli.main(cmd) == 130
    assert "--resume" in capsys.readouterr().err and not (out / "results.json").exists()
    with pytest.raises(SystemExit, match="interrupted comparison"):
        cli.main(cmd)  # starting over would throw the finished run away: refused
    assert cli.main(cmd + ["--resume"]) == 0
    assert len(calls) == 3  # latent-8x came from the ledger; down-8x trained
    assert "1 finished run(s) reused" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in res["runs"]] == ["latent-8x", "down-8x"]
    assert cli.main(cmd) == 0  # a finished comparison may be started over without --resume
    assert len(calls) == 5
