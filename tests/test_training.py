"""walloc_cdl.training: closed-form start, samplers, the codec loop and job (checkpoint, exact resume, previews),
presets from the cards, and the train-codec CLI (its --config keys, one-line errors) on the CPU."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from safetensors.torch import load_file

from walloc_cdl import Codec1D, Codec2D, codec_card, list_codecs, load_codec
from walloc_cdl.codec.checkpoints import preset
from walloc_cdl.cli import main as cli_main
from walloc_cdl.training.batches import CropSampler, MixedSampler, SegmentSampler
from walloc_cdl.training.pca import (cap_gains, companding_slope, init_linear_decoder, init_linear_encoder, init_post_filter,
                                     linear_reconstruction, scale_latent_gain, wavelet_pca)
from walloc_cdl.training.codec import CodecTrainSettings, fit, psnr, save_preview, val_psnr, warmup_cosine

from floatbound import LAMBDA, assert_within, companding_inverse_error


def smooth_images(n: int, size: int = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Correlated random images in [-0.5, 0.5]: low-pass noise plus a little texture."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.1 * torch.randn(n, channels, size, size, generator=g)
    return (x / (2.5 * x.abs().max())).clamp(-0.5, 0.5)


def sines(n: int, T: int = 4096, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / 44100
    f = 100 + 2000 * torch.rand(n, 2, 3, 1, generator=g)
    return 0.1 * torch.sin(2 * math.pi * f * t).sum(2)


def test_pca_orders_variances_and_rate_rule():
    codec = Codec2D(3, 2, None, 32, 6, 8, True)
    pca = wavelet_pca(codec, [smooth_images(8)])
    assert torch.all(pca.variances[:-1] >= pca.variances[1:])
    assert torch.allclose(pca.components.T @ pca.components, torch.eye(48), atol=1e-4)
    # rho is the ratio of quantisation noise (latent_dim * step^2 / 12) to the truncation error
    step = pca.step_for(0.5)
    assert 6 * step ** 2 / 12 == pytest.approx(0.5 * float(pca.variances[6:].sum()), rel=1e-5)


def test_linear_closed_form_is_usable_and_rate_controls_distortion():
    codec = Codec2D(3, 2, None, 32, 12, 8, True).eval()
    x = smooth_images(8, seed=1)
    pca = wavelet_pca(codec, [smooth_images(16, seed=2)])
    results = []
    for rho in (0.05, 2.0):
        init_linear_encoder(codec, pca, pca.step_for(rho))
        results.append(psnr(linear_reconstruction(codec, pca, x), x))
        z = codec.encode(x)
        assert torch.equal(z, z.round()) and z.abs().max() <= 127
    assert results[0] > 25.0  # 12 of 48 components of smooth images
    assert results[0] > results[1] + 1.0  # a finer step is better


def test_encoder_gain_sets_the_step_near_zero():
    codec = Codec2D(1, 1, None, 32, 4, 8, True)
    pca = wavelet_pca(codec, [smooth_images(4, channels=1)])
    step = 0.05
    g = init_linear_encoder(codec, pca, step)
    assert g * step * companding_slope(8) == pytest.approx(1.0)


def test_linear_decoder_start_equals_closed_form_1d():
    codec = Codec1D(2, 4, None, 32, 8, 8, True, True).eval()
    x = sines(4)
    pca = wavelet_pca(codec, [x])
    init_linear_encoder(codec, pca, pca.step_for(0.1))
    init_post_filter(codec)
    init_linear_decoder(codec, pca)
    with torch.no_grad():
        lin = linear_reconstruction(codec, pca, x)
        out = codec.decode(codec.encode(x))
    assert psnr(lin, x) > 30
    assert (lin - out).abs().max() < 5e-3


def heavy_tailed(n: int, T: int = 4096, seed: int = 0) -> torch.Tensor:
    """Quiet sines with one loud low note in the last clip: the tail that saturates the companding."""
    x = 0.2 * sines(n, T, seed)
    t = torch.arange(T) / 44100
    x[-1] += 0.45 * torch.sin(2 * math.pi * 60 * t)
    return x.clamp(-0.5, 0.5)


def test_cap_gains_rescues_loud_peaks_and_leaves_fitting_channels_alone():
    codec = Codec1D(2, 4, None, 32, 8, 8, True, True).eval()
    x = heavy_tailed(6)
    pca = wavelet_pca(codec, [x])
    init_linear_encoder(codec, pca, pca.step_for(0.01))  # a fine step: the loud note saturates
    before = codec.encoder[0].weight.clone()
    loud = x[-1:]
    sat_psnr = psnr(linear_reconstruction(codec, pca, loud), loud)
    n = cap_gains(codec, [x], headroom=2.5)
    assert 0 < n < 8
    rows = (codec.encoder[0].weight - before).reshape(8, -1).abs().amax(1) > 0
    assert int(rows.sum()) == n  # only the capped rows changed, and only by a positive factor
    ratio = codec.encoder[0].weight.reshape(8, -1).norm(dim=1) / before.reshape(8, -1).norm(dim=1)
    assert torch.all(ratio <= 1 + 1e-6) and torch.all(ratio > 0)
    with torch.no_grad():  # peaks now sit at the headroom, not in the flat tail of the Normal CDF
        y = codec.encoder[0](codec.wavelet_analysis(x, J=4))[..., 1:-1]
    from walloc_cdl.codec.bottleneck import companding_scale
    assert float(y.abs().amax()) == pytest.approx(2.5 * companding_scale(8), rel=1e-4)
    assert psnr(linear_reconstruction(codec, pca, loud), loud) > sat_psnr + 3
    # a headroom above every peak changes nothing
    w = codec.encoder[0].weight.clone()
    assert cap_gains(codec, [x], headroom=1e6) == 0 and torch.equal(codec.encoder[0].weight, w)


@pytest.mark.parametrize("ndim", [2, 1])
def test_scale_latent_gain_keeps_the_unquantised_codec_and_refines_the_step(ndim):
    torch.manual_seed(0)
    if ndim == 2:
        codec, x, train_x = Codec2D(3, 2, None, 32, 12, 8, True).eval(), smooth_images(4, seed=1), smooth_images(8, seed=2)
    else:
        codec, x, train_x = Codec1D(2, 3, None, 32, 8, 8, True, True).eval(), sines(2, 2048, seed=1), sines(6, 2048, seed=2)
    init_linear_encoder(codec, wavelet_pca(codec, [train_x]), 0.1)
    with torch.no_grad():
        cont = codec.decode(codec.encode(x, quantize=False))
        err = (codec.decode(codec.encode(x)) - cont).pow(2).mean()
        w = codec.encoder[0].weight.clone()
        scale_latent_gain(codec, 2.0)
        assert torch.allclose(codec.encoder[0].weight, 2 * w)
        # the same function without quantisation (ToNormal undoes the companding; the decoder's input is scaled back)
        # both run erf and Φ⁻¹ in float32; the decoder (outputs in [-0.5, 0.5]) is taken as 1-Lipschitz
        assert_within(codec.decode(codec.encode(x, quantize=False)), cont, LAMBDA * companding_inverse_error())
        # with it, a finer step: the rounded codec lands closer to the unquantised one (~4x less noise power)
        assert (codec.decode(codec.encode(x)) - cont).pow(2).mean() < 0.5 * err
    with pytest.raises(ValueError, match="must be > 0"):
        scale_latent_gain(codec, 0.0)
    with pytest.raises(ValueError, match="lightweight"):  # a CNN encoder has no single gain to scale
        scale_latent_gain(Codec2D(3, 1, 32, 32, 12, 8, False), 2.0)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    assert warmup_cosine(0, 10, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(50, 10, 0.5) == pytest.approx(0.5)
    assert warmup_cosine(50, 10, 0.5, min_ratio=0.1) == pytest.approx(0.55)
    assert warmup_cosine(100, 10, 1.0, min_ratio=0.02) == pytest.approx(0.02)
    assert warmup_cosine(100, 10, 2.0) == pytest.approx(0.0)  # progress past the end stays at the floor


def test_samplers_shapes_ranges_and_fixed_batches_do_not_disturb_training_stream():
    imgs = [torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8), torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8)]
    s = CropSampler(imgs, crop=32, min_scale=0.5, seed=0)
    x = s.sample(6)
    assert x.shape == (6, 3, 32, 32) and x.min() >= -0.5 and x.max() <= 0.5
    ref = CropSampler(imgs, crop=32, min_scale=0.5, seed=0)
    ref.sample(6)
    s.fixed(3)
    assert torch.equal(s.sample(4), ref.sample(4))
    assert torch.equal(s.fixed(3), s.fixed(3))
    a = SegmentSampler([torch.ones(2, 100) * 0.8, torch.ones(2, 3000) * -0.8], segment=256, seed=0)
    y = a.sample(8)
    assert y.shape == (8, 2, 256) and y.abs().max() <= 0.4 + 1e-6


def test_sampler_state_round_trips_through_json():
    """What a checkpoint keeps of a sampler: a fresh one given that state draws the same next batches."""
    imgs = [((smooth_images(1, 64, seed=i)[0] + 0.5) * 255).round().to(torch.uint8) for i in range(2)]
    make = lambda: MixedSampler([CropSampler(imgs, 16, 0.5, seed=0), CropSampler(imgs, 32, 0.5, seed=1)])  # noqa: E731
    a, b = make(), make()
    a.sample(8), a.sample(8), a.sample(8)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert all(torch.equal(a.sample(8), b.sample(8)) for _ in range(3))


def test_mixed_sampler_cycles_crop_sizes_at_equal_pixels_and_validates_each():
    imgs = [((smooth_images(1, 96, seed=i)[0] + 0.5) * 255).round().to(torch.uint8) for i in range(2)]
    m = MixedSampler([CropSampler(imgs, 16, seed=0), CropSampler(imgs, 64, seed=1)])
    shapes = [tuple(m.sample(32).shape) for _ in range(4)]
    assert shapes == [(32, 3, 16, 16), (2, 3, 64, 64)] * 2  # 32 x 16^2 = 2 x 64^2 pixels
    val = m.fixed(3)
    assert [tuple(v.shape) for v in val] == [(3, 3, 16, 16), (3, 3, 64, 64)]
    assert all(torch.equal(a, b) for a, b in zip(val, m.fixed(3)))
    codec = Codec2D(3, 2, None, 32, 12, 8, True)
    each = [val_psnr(codec, v) for v in val]
    assert val_psnr(codec, val) == pytest.approx(sum(each) / 2)


def test_train_pins_gain_keeps_best_and_writes_checkpoints(tmp_path):
    torch.manual_seed(0)
    codec = Codec2D(3, 2, None, 32, 12, 8, True)
    imgs = [((smooth_images(1, 64, seed=i)[0] + 0.5) * 255).round().to(torch.uint8) for i in range(3)]
    sampler = CropSampler(imgs, crop=32, seed=0)
    pca = wavelet_pca(codec, [sampler.sample(16)])
    init_linear_encoder(codec, pca, pca.step_for(0.1))
    norms = codec.encoder[0].weight.reshape(12, -1).norm(dim=1).clone()
    cfg = CodecTrainSettings(steps=8, batch_size=4, warmup=2, val_every=4, checkpoint_every=4, decoder_only_steps=2)
    summary = fit(codec, sampler, cfg, tmp_path, val=sampler.fixed(4), progress=False, log=lambda s: None)
    assert summary["steps"] == 8
    assert torch.allclose(codec.encoder[0].weight.reshape(12, -1).norm(dim=1), norms, rtol=1e-5)
    assert summary["val_psnr"] >= summary["val_psnr_start"]
    assert (tmp_path / "checkpoints" / "last.safetensors").exists()  # the one checkpoint format of the project
    assert sorted(p.name for p in tmp_path.glob("preview_*.png")) == ["preview_0000004.png", "preview_0000008.png"]
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()][-1] == 8


def test_save_preview_images_and_audio(tmp_path):
    x = smooth_images(3)
    img = Image.open(save_preview(x, x, tmp_path / "a.png"))
    assert img.size == (3 * 32, 2 * 32) and img.mode == "RGB"
    a = sines(2, 8192)
    assert Image.open(save_preview(a / 2, a / 2, tmp_path / "b.png")).mode == "L"


@pytest.fixture
def photo_folder(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        a = ((smooth_images(1, 48, seed=10 + i)[0] + 0.5) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(a).save(d / f"p{i}.png")
    return d


def config(path, **settings) -> list[str]:
    """``--config FILE`` for the train-codec settings that have no option of their own."""
    path.write_text(json.dumps(settings))
    return ["--config", str(path)]


TINY = dict(channels=3, J=2, latent_dim=12, Nd=32, crop=32, val_size=4, progress=False)


def test_cli_trains_saves_half_decoder_and_resumes(photo_folder, tmp_path):
    out = tmp_path / "run"
    common = ["train-codec", "--data", str(photo_folder), "--out", str(out), "--batch-size", "4", "--device", "cpu",
              "--half", "--name", "tiny", *config(tmp_path / "c.json", **TINY, val_every=3, checkpoint_every=3)]
    assert cli_main(common + ["--steps", "6"]) == 0
    card = json.loads((out / "tiny.json").read_text())
    assert card["training"]["steps"] == 6 and card["training"]["closed_form"]["val_psnr_linear"] > 15
    assert card["training"]["settings"]["val_every"] == 3  # the card holds every setting, as --config takes them
    codec = load_codec(out / "tiny.safetensors")
    assert all(p.dtype == torch.float32 for p in codec.parameters())
    assert (out / "checkpoints" / "last.safetensors").exists() and not (out / "ckpt").exists()
    assert cli_main(common + ["--steps", "9", "--resume"]) == 0
    card = json.loads((out / "tiny.json").read_text())
    assert card["training"]["steps"] == 9
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 9]  # the resumed run continues the log at step 7


def test_resumed_codec_run_ends_bit_identical(photo_folder, tmp_path, monkeypatch):
    """A step-budget run cut short after a checkpoint and resumed ends with the codec, optimizer moments, best
    weights, log and figures of a run never interrupted (CPU).  With a time budget the schedule follows the
    clock, so only this mode can be exact."""
    import walloc_cdl.training.codec as job

    cfg = config(tmp_path / "c.json", **{**TINY, "crop": [16, 32], "val_size": 2}, min_scale=0.5, warmup=2,
                 decoder_only_steps=2, val_every=2, checkpoint_every=4)

    def argv(out):
        return ["train-codec", "--data", str(photo_folder), "--out", str(out), "--batch-size", "4", "--steps", "10",
                "--lr", "5e-3", "--device", "cpu", "--name", "c", *cfg]

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli_main(argv(whole)) == 0

    class Killed(Exception):
        pass

    real, calls = job._forward, []

    def dies_in_step_7(*a, **k):
        calls.append(1)
        if len(calls) == 7:  # the last checkpoint is step 4's: steps 5 and 6 are lost and redone
            raise Killed
        return real(*a, **k)

    monkeypatch.setattr(job, "_forward", dies_in_step_7)
    with pytest.raises(Killed):
        cli_main(argv(cut))
    monkeypatch.undo()
    assert not (cut / "c.safetensors").exists()
    assert cli_main(argv(cut) + ["--resume"]) == 0
    for name in ("c.safetensors", "checkpoints/last.safetensors"):   # result; last weights, best ones, moments
        a, b = load_file(str(whole / name)), load_file(str(cut / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    lines = [[{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in (d / "log.jsonl").read_text().splitlines()]
             for d in (whole, cut)]
    assert lines[0] == lines[1] and [r["step"] for r in lines[1]] == [2, 4, 6, 8, 10]
    ta, tb = (json.loads((d / "c.json").read_text())["training"] for d in (whole, cut))
    for key in ("steps", "val_psnr_start", "val_psnr", "result_step", "final_loss_ema"):
        assert ta[key] == tb[key], key


def test_cli_fine_tunes_from_init_with_a_frozen_encoder(photo_folder, tmp_path):
    base = ["--data", str(photo_folder), "--device", "cpu", "--lr", "5e-3",
            *config(tmp_path / "ft.json", val_size=4, progress=False, warmup=1, keep_best=False)]
    assert cli_main(["train-codec", "--steps", "3", "--out", str(tmp_path / "a"), "--name", "start", "--batch-size", "4",
                     "--data", str(photo_folder), "--device", "cpu", "--lr", "5e-3",
                     *config(tmp_path / "a.json", **TINY, min_scale=0.5, warmup=1, keep_best=False)]) == 0
    start_path = tmp_path / "a" / "start.safetensors"
    start = load_codec(start_path)
    x = smooth_images(2, 32, seed=5)
    for frozen, out in ((True, tmp_path / "b"), (False, tmp_path / "c")):
        args = ["train-codec", "--init", str(start_path), "--steps", "4", "--out", str(out)] + base
        assert cli_main(args + (["--freeze-encoder"] if frozen else [])) == 0
        tuned = load_codec(out / "start.safetensors")  # the name comes from the starting file
        card = json.loads((out / "start.json").read_text())
        init = card["training"]["init"]
        assert init["from"] == str(start_path) and init["training"]["steps"] == 3
        assert card["training"].get("encoder_frozen", False) is frozen and card["training"]["steps"] == 4
        # crops, scale range and batch come from the starting codec's card, not the generic defaults
        assert (card["training"]["crop"], card["training"]["min_scale"], card["training"]["batch_size"]) == (32, 0.5, 4)
        same_latents = torch.equal(tuned.encode(x), start.encode(x))
        same_weights = torch.equal(tuned.encoder[0].weight, start.encoder[0].weight)
        assert same_latents and same_weights if frozen else not same_weights
        assert not torch.equal(tuned.decode(start.encode(x)), start.decode(start.encode(x)))  # the decoder did train


def one_line_error(capsys, text: str) -> str:
    """The CLI's answer to a user error: one line on stderr naming ``text``, no traceback."""
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_gain_factor_rescales_the_init_codec_and_records_it(photo_folder, tmp_path, capsys):
    base = ["--data", str(photo_folder), "--device", "cpu"]
    assert cli_main(["train-codec", "--steps", "2", "--out", str(tmp_path / "a"), "--name", "start", "--batch-size", "4",
                     *config(tmp_path / "a.json", **TINY, warmup=1)] + base) == 0
    start_path = tmp_path / "a" / "start.safetensors"
    start = load_codec(start_path)
    gain = config(tmp_path / "g.json", val_size=4, progress=False, warmup=1, gain_factor=2)
    assert cli_main(["train-codec", "--init", str(start_path), "--freeze-encoder", "--steps", "2",
                     "--out", str(tmp_path / "b"), *gain] + base) == 0
    tuned = load_codec(tmp_path / "b" / "start.safetensors")
    assert torch.allclose(tuned.encoder[0].weight, 2 * start.encoder[0].weight)
    x = smooth_images(2, 32, seed=5)
    assert not torch.equal(tuned.encode(x), start.encode(x))  # the latents change: recorded in the card
    init = json.loads((tmp_path / "b" / "start.json").read_text())["training"]["init"]
    assert init["gain_factor"] == 2.0 and init["rescaled_encoder_sha256"] != init["encoder_sha256"]
    capsys.readouterr()
    assert cli_main(["train-codec", "--preset", "rgb-16x", "--out", str(tmp_path / "c"), *gain] + base) == 2
    one_line_error(capsys, "give it one with --init")
    assert cli_main(["train-codec", "--init", str(start_path), "--freeze-encoder", "--steps", "1", "--out",
                     str(tmp_path / "d"), *config(tmp_path / "g100.json", val_size=4, progress=False, warmup=1,
                                                   gain_factor=100)] + base) == 0
    assert "warning: with gain_factor 100" in capsys.readouterr().out  # far into the companding's flat tails


def test_cli_trains_with_two_crop_sizes(photo_folder, tmp_path):
    out = tmp_path / "mix"
    assert cli_main(["train-codec", "--data", str(photo_folder), "--out", str(out), "--batch-size", "8", "--steps", "4",
                     "--device", "cpu", "--name", "mix",
                     *config(tmp_path / "c.json", **{**TINY, "crop": [16, 32], "val_size": 2}, val_every=2)]) == 0
    card = json.loads((out / "mix.json").read_text())
    assert card["training"]["crop"] == [16, 32] and card["training"]["closed_form"]["val_psnr_linear"] > 10
    assert sorted(p.name for p in out.glob("preview_*.png"))  # previews of the largest size


def test_cli_init_refuses_contradicting_sizes_and_unknown_codecs(photo_folder, tmp_path, capsys):
    assert cli_main(["train-codec", "--init", "rgb-16x", "--data", str(photo_folder), "--out", str(tmp_path),
                     *config(tmp_path / "j.json", J=2)]) == 2
    one_line_error(capsys, "contradicts --init rgb-16x")
    assert cli_main(["train-codec", "--init", str(tmp_path / "nope.safetensors"), "--data", str(photo_folder),
                     "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "not a file and not a shipped codec")


def test_cli_config_refuses_unknown_keys_and_options_override_it(photo_folder, tmp_path, capsys):
    assert cli_main(["train-codec", "--data", str(photo_folder), "--out", str(tmp_path / "x"),
                     *config(tmp_path / "bad.json", **TINY, **{"gain-factor": 2})]) == 2
    err = one_line_error(capsys, "unknown key(s) ['gain-factor']")
    assert "known: preset, init," in err and "gain_factor" in err
    (tmp_path / "c.yaml").write_text("channels: 3\nJ: 2\nlatent_dim: 12\nNd: 32\ncrop: 32\nval_size: 2\n"
                                     "progress: false\nsteps: 50\nname: from-yaml\n")
    assert cli_main(["train-codec", "--data", str(photo_folder), "--out", str(tmp_path / "y"), "--steps", "1",
                     "--batch-size", "2", "--device", "cpu", "--config", str(tmp_path / "c.yaml")]) == 0
    card = json.loads((tmp_path / "y" / "from-yaml.json").read_text())   # YAML read; --steps beat its 50
    assert card["training"]["steps"] == 1 and card["training"]["settings"]["Nd"] == 32


def test_presets_are_the_shipped_cards():
    """``preset(NAME)`` reads the shipped card: its codec is the card's config (one source of truth) and its
    training defaults fit the codec's kind; an unknown name lists the available ones."""
    assert list_codecs()
    for name in list_codecs():
        p = preset(name)
        assert p["codec"] == codec_card(name)["config"] == load_codec(name).config
        assert p["kind"] == ("audio" if "post_filter" in p["codec"] else "image")
        assert {"rho", "batch_size"} <= set(p) and ("segment" in p if p["kind"] == "audio" else "crop" in p)
    assert preset("gray-4x")["crop"] == [28, 64, 192] and preset("rgb-16x")["rho"] == 0.05
    with pytest.raises(KeyError, match=r"unknown preset 'nope'; available: \[.*'rgb-16x'"):
        preset("nope")


def test_a_codec_trained_from_a_preset_carries_its_preset_block(photo_folder, tmp_path):
    """So installing a retrained shipped codec (recipes/train_codec.py evaluate --install) keeps the preset."""
    out = tmp_path / "g"
    assert cli_main(["train-codec", "--preset", "gray-4x", "--data", str(photo_folder), "--out", str(out),
                     "--steps", "1", "--batch-size", "2", "--device", "cpu",
                     *config(tmp_path / "c.json", val_size=2, progress=False, crop=[28], pca_batches=1)]) == 0
    card = json.loads((out / "gray-4x.json").read_text())
    assert card["preset"] == codec_card("gray-4x")["preset"] and card["training"]["crop"] == 28


def test_train_freeze_encoder_keeps_the_encoder_bit_identical(tmp_path):
    torch.manual_seed(0)
    codec = Codec2D(3, 2, None, 32, 12, 8, True)
    sampler = CropSampler([((smooth_images(1, 64, seed=i)[0] + 0.5) * 255).round().to(torch.uint8) for i in range(2)],
                          crop=32, seed=0)
    before = {k: v.clone() for k, v in codec.encoder.state_dict().items()}
    cfg = CodecTrainSettings(steps=3, batch_size=4, warmup=1, lr=1e-2, val_every=10, checkpoint_every=10,
                             freeze_encoder=True, keep_best=False)
    fit(codec, sampler, cfg, tmp_path, progress=False, log=lambda s: None)
    assert all(torch.equal(v, before[k]) for k, v in codec.encoder.state_dict().items())


def test_round_latents_trains_the_decoder_on_what_it_decodes(tmp_path):
    """With a frozen encoder the decoder can train on round(z), the integers it decodes later: the training
    loss is then the one of eval-mode latents (no noise), and the encoder's mode is left as it was."""
    from walloc_cdl.training.codec import _forward
    torch.manual_seed(0)
    codec = Codec2D(3, 2, None, 32, 12, 8, True).train()
    x = smooth_images(2, 32, seed=3)
    with torch.no_grad():
        noisy = [_forward(codec, x, False, False, 0.0).item() for _ in range(2)]
        rounded = [_forward(codec, x, False, False, 0.0, round_latents=True).item() for _ in range(2)]
        assert codec.training and codec.encoder.training
        codec.eval()
        exact = _forward(codec, x, False, False, 0.0).item()   # eval mode throughout: true rounding
        codec.train()
    assert noisy[0] != noisy[1] and rounded[0] == rounded[1]
    assert rounded[0] == pytest.approx(exact, rel=1e-6) and abs(noisy[0] - exact) > 1e-6 * exact
    with pytest.raises(ValueError, match="needs freeze_encoder"):
        fit(codec, CropSampler([(x[0] * 255 + 127.5).round().to(torch.uint8)], crop=16), CodecTrainSettings(
            steps=1, round_latents=True), tmp_path, progress=False, log=lambda s: None)


def test_synthesize_is_decode_before_the_clamp():
    """The public inverse path the trainer uses: synthesis + the 1D post filter, unclamped."""
    torch.manual_seed(0)
    for codec, x in ((Codec1D(2, 4, None, 32, 8, 8, True, True).eval(), sines(2, 2048)),
                     (Codec2D(3, 2, None, 32, 12, 8, True).eval(), smooth_images(2, 32))):
        with torch.no_grad():
            z = codec.encode(x)
            assert torch.equal(codec.clamp(codec.synthesize(codec.decoder(z))), codec.decode(z))
            assert torch.equal(codec.synthesize(codec.decoder(z)),
                               codec._post(codec.wavelet_synthesis(codec.decoder(z), J=codec.J)))


def test_cli_trains_audio_folder(tmp_path):
    sf = pytest.importorskip("soundfile")
    d = tmp_path / "audio"
    d.mkdir()
    for i, clip in enumerate(sines(2, 16384, seed=3)):
        sf.write(d / f"c{i}.wav", clip.T.numpy(), 44100)
    out = tmp_path / "run"
    assert cli_main(["train-codec", "--data", str(d), "--out", str(out), "--batch-size", "4", "--steps", "4",
                     "--device", "cpu", *config(tmp_path / "c.json", ndim=1, channels=2, J=4, latent_dim=8, Nd=16,
                                                segment=2048, val_size=4, progress=False)]) == 0
    card = json.loads((out / "codec.json").read_text())
    # the 1D decoder starts as the linear closed form, so the start is already a working codec
    assert card["training"]["val_psnr_start"] == pytest.approx(card["training"]["closed_form"]["val_psnr_linear"], abs=0.5)
    assert card["training"]["val_psnr"] >= card["training"]["val_psnr_start"]


def test_cli_help_and_missing_options(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train-codec", "--help"])
    out = capsys.readouterr().out
    assert "--time-budget" in out and "examples:" in out and "gain_factor" in out  # the --config keys are listed
    options = {w.split("=")[0] for w in out.split() if w.startswith("--") and w[2:3].isalpha()}
    assert len(options - {"--help", "--debug"}) <= 15, sorted(options)   # research knobs live in --config
    assert cli_main(["train-codec", "--data", "x", "--out", "y"]) == 2
    one_line_error(capsys, "missing channels, J, latent_dim")
