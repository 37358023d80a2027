"""preview: the pictured reconstruction and its figures are the codec's, bad files are named and skipped."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from walloc_cdl import cli, load_codec
from walloc_cdl.codec.containers import encode_latent, save_latent
from walloc_cdl.preview import latent_mosaic, preview_latent
from walloc_cdl.training.evaluate import audio_roundtrip, image_roundtrip, psnr_uint8


def _photo(h=72, w=100):
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([(xx * 2.5) % 256, (yy * 3.5) % 256, ((xx + yy) * 7) % 256], -1).astype(np.uint8)
    a[20:30, 10:90] = 255  # an edge the codec must blur a little
    return a


def _lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_image_preview_reports_the_codecs_own_figures(tmp_path, capsys):
    a = _photo()
    Image.fromarray(a).save(tmp_path / "p.png")
    assert cli.main(["preview", str(tmp_path / "p.png"), "--codec", "rgb-16x", "--out", str(tmp_path / "o")]) == 0
    (row,) = _lines(capsys)
    codec = load_codec("rgb-16x").eval()
    rec, z = image_roundtrip(codec, a)  # the evaluation path of codec_rd, computed independently
    assert row["psnr_db"] == pytest.approx(psnr_uint8(a, rec), abs=1e-6)
    assert row["latent_shape"] == list(z.shape) and row["reduction"] == pytest.approx(a.size / z.numel())
    assert row["webp_bytes"] == len(encode_latent(z, codec.latent_bits, "webp"))
    assert row["compression_ratio"] == pytest.approx(a.size / row["webp_bytes"])
    assert Image.open(tmp_path / "o" / "p.png").size[0] > 600


def test_audio_preview_matches_the_audio_round_trip(tmp_path, capsys):
    import soundfile as sf

    t = np.arange(22050) / 44100
    clip = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    sf.write(tmp_path / "tone.wav", clip.T, 44100, subtype="FLOAT")
    assert cli.main(["preview", str(tmp_path / "tone.wav"), "--codec", "stereo-5x", "--out", str(tmp_path)]) == 0
    (row,) = _lines(capsys)
    rec, z = audio_roundtrip(load_codec("stereo-5x").eval(), clip)
    want = 10 * math.log10(1 / float(np.mean(((rec - clip) / 2).astype(np.float64) ** 2)))
    assert row["kind"] == "audio" and row["latent_shape"] == list(z.shape)
    assert row["psnr_db"] == pytest.approx(want, abs=1e-3)
    assert (tmp_path / "tone.png").exists()


def test_a_stored_latent_is_decoded_and_pictured(tmp_path, capsys):
    codec = load_codec("rgb-16x").eval()
    with torch.no_grad():
        z = codec.encode(torch.rand(1, 3, 64, 96) - 0.5)[0]
    save_latent(z, tmp_path / "item.webp", codec.latent_bits)
    assert cli.main(["preview", str(tmp_path / "item.webp"), "--codec", "rgb-16x", "--out", str(tmp_path / "o")]) == 0
    (row,) = _lines(capsys)
    assert row["kind"] == "latent" and row["decoded_shape"] == [3, 64, 96] and row["latent_shape"] == [12, 8, 12]
    with pytest.raises(ValueError, match="12 channels, codec 48"):
        preview_latent(load_codec("rgb-4x"), z)


def test_bad_inputs_are_named_and_the_rest_still_run(tmp_path, capsys):
    Image.fromarray(_photo()).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes((tmp_path / "good.png").read_bytes()[:200])
    rc = cli.main(["preview", str(tmp_path / "broken.png"), str(tmp_path / "missing.jpg"), str(tmp_path / "good.png"),
                   "--codec", "rgb-16x", "--out", str(tmp_path / "o")])
    assert rc == 1
    out = capsys.readouterr()
    assert "broken.png: skipped" in out.err and "missing.jpg: skipped" in out.err
    assert '"input"' in out.out and (tmp_path / "o" / "good.png").exists()
    assert not (tmp_path / "o" / "broken.png").exists()


def test_latent_mosaic_tiles_every_channel_on_its_own_scale():
    z = torch.zeros(5, 4, 6)
    z[0] = 100.0  # a loud first channel does not wash out the quiet ones
    z[4, 1, 2] = 3.0
    m = latent_mosaic(z, gap=1)
    assert m.shape == (2 * 5 - 1, 3 * 7 - 1)  # 3 columns × 2 rows of 4×6 tiles
    assert np.nanmax(m) == 1.0 and np.isnan(m[4, 0])  # gaps are blank
    assert m[5 + 1, 7 + 2] == 1.0  # channel 4 (row 1, col 1): its one value shown at full scale


def test_same_named_inputs_get_their_own_pictures(tmp_path, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        Image.fromarray(_photo()).save(tmp_path / d / "x.png")
    assert cli.main(["preview", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "--codec", "rgb-16x",
                     "--out", str(tmp_path / "o")]) == 0
    assert [r["preview"].rsplit("/", 1)[1] for r in _lines(capsys)] == ["x.png", "x-2.png"]
