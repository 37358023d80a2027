"""data.transforms: equal-dimension baselines (sizes, anti-aliasing that works) and the encode job's pixel transforms."""
import math

import pytest
import torch

from walloc_cdl.data.transforms import (PixelTransform, downsample_images, downsampled_size, resample_audio,
                                       upsample_audio, upsample_images)


def test_image_sizes_and_dtypes():
    x = torch.rand(2, 3, 256, 256)
    assert downsample_images(x, 16).shape == (2, 3, 64, 64)
    assert downsample_images(x, 4).shape == (2, 3, 128, 128)
    assert downsample_images(x, 1) is x
    u = (torch.rand(1, 1, 32, 32) * 255).to(torch.uint8)
    d = downsample_images(u, 16)
    assert d.dtype == torch.uint8 and d.shape[-2:] == (8, 8)
    assert downsampled_size((28, 28), 16) == (7, 7)
    # equal dimensionality: r times fewer values
    assert x.numel() / downsample_images(x, 16).numel() == 16


def test_image_antialiasing():
    # a checkerboard at the pixel Nyquist averages to grey; plain decimation would keep one colour
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2).float()[None, None]
    d = downsample_images(checker, 16)
    assert (d - 0.5).abs().max() < 0.02
    flat = torch.full((1, 3, 64, 64), 0.3)
    assert torch.allclose(downsample_images(flat, 4), flat[..., :32, :32], atol=1e-5)
    with pytest.raises(ValueError):
        downsample_images(torch.rand(3, 8, 8), 4)


def _tone(freq, n=44100 * 2, sr=44100):
    t = torch.arange(n) / sr
    return torch.sin(2 * math.pi * freq * t).view(1, 1, -1).repeat(1, 2, 1)


def test_audio_resampling_keeps_passband_and_removes_aliases():
    r, sr = 20, 44100  # new Nyquist 1102.5 Hz
    low = resample_audio(_tone(300), r)
    assert low.shape == (1, 2, 44100 * 2 // r)
    mid = low[..., 200:-200]
    assert abs(mid.pow(2).mean().sqrt().item() - 1 / math.sqrt(2)) < 0.02
    high = resample_audio(_tone(5000), r)[..., 200:-200]  # would alias to a loud tone without the filter
    assert high.abs().max() < 0.01
    pcm = PixelTransform(2, 5, ndim=1).encode(_tone(100) / 2)     # the encode job's audio baseline: 16-bit PCM
    assert pcm.dtype == torch.int16 and pcm.shape[-1] == 44100 * 2 // 5
    with pytest.raises(ValueError):
        resample_audio(_tone(100), 2.5)


def test_audio_down_and_up_keeps_the_passband_aligned_and_drops_the_rest():
    r, n = 20, 44100
    x = _tone(300, n) + _tone(5000, n)  # one tone below the decimated Nyquist (1102.5 Hz), one above
    back = upsample_audio(resample_audio(x, r), r, n)
    assert back.shape == x.shape
    mid = slice(2000, -2000)
    # the 300 Hz tone comes back in place (same phase), the 5 kHz one is gone
    assert (back[..., mid] - _tone(300, n)[..., mid]).abs().max() < 0.02
    assert upsample_audio(x[..., :100], 1, 90).shape[-1] == 90
    with pytest.raises(ValueError):
        upsample_audio(x[0], r, n)


def test_image_down_and_up_is_the_bicubic_baseline_at_full_size():
    u = (torch.rand(2, 3, 32, 32) * 255).to(torch.uint8)
    back = upsample_images(downsample_images(u, 16), (32, 32))
    assert back.shape == u.shape and back.dtype == torch.uint8
    smooth = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 1, 32, 32).contiguous()
    rt = upsample_images(downsample_images(smooth, 4), (32, 32))
    assert (rt - smooth)[..., 4:-4, 4:-4].abs().max() < 0.02  # a ramp survives; fine detail would not
    assert not torch.equal(back, u)
