"""The packet transform against PyWavelets (always) and pytorch-wavelets (when installed)."""
import warnings

import numpy as np
import pytest
import pywt
import torch

from walloc_cdl.codec.wavelets import (DWT1DForward, DWT1DInverse, DWT2DForward, DWT2DInverse, packet_analysis,
                                 packet_synthesis)

from floatbound import assert_within, sum_bound

TAPS = 10  # bior4.4 filters as stored (pytorch-wavelets pads the 9/7 taps to 10)


def _levels_bound(levels, ndim, *tensors):
    """float32 bound for ``levels`` one-level transforms (each a sum of TAPS^ndim terms per output, chained),
    partial sums of the size of the largest value in play."""
    return sum_bound(max(t.abs().max().item() for t in tensors), levels * TAPS ** ndim)


def test_2d_one_level_matches_pywt_dwt2():
    x = np.random.default_rng(0).standard_normal((32, 48))
    cA, (cH, cV, cD) = pywt.dwt2(x, "bior4.4", mode="periodization")
    ours = DWT2DForward().double()(torch.from_numpy(x)[None, None])[0]
    # pywt's (cH, cV, cD) are our bands 1, 2, 3: LH = high along height, HL = high along width
    for band, ref in zip(ours, [cA, cH, cV, cD]):
        np.testing.assert_allclose(band.numpy(), ref, atol=1e-6)


def test_1d_one_level_matches_pywt_dwt():
    x = np.random.default_rng(1).standard_normal(64)
    cA, cD = pywt.dwt(x, "bior4.4", mode="periodization")
    ours = DWT1DForward().double()(torch.from_numpy(x)[None, None])[0]
    np.testing.assert_allclose(ours[0].numpy(), cA, atol=1e-6)
    np.testing.assert_allclose(ours[1].numpy(), cD, atol=1e-6)


def test_2d_packet_matches_pywt_wavelet_packet():
    """Level-2 packet of one channel: our band 4·a + b is pywt's node (a then b) in natural order."""
    x = np.random.default_rng(2).standard_normal((32, 32))
    wp = pywt.WaveletPacket2D(x, "bior4.4", mode="periodization", maxlevel=2)
    names = ["a", "h", "v", "d"]  # pywt node letters for our band order [LL, LH, HL, HH]
    ours = packet_analysis(torch.from_numpy(x)[None, None], DWT2DForward().double(), J=2)[0]
    for i in range(4):
        for j in range(4):
            np.testing.assert_allclose(ours[4 * i + j].numpy(), wp[names[i] + names[j]].data, atol=1e-6)


@pytest.mark.parametrize("shape,J", [((2, 3, 64, 96), 3), ((1, 1, 32, 32), 2), ((1, 6, 16, 16), 4),
                                     ((1, 2, 8, 8), 3)])
def test_2d_perfect_reconstruction(shape, J):
    x = torch.randn(shape)
    X = packet_analysis(x, DWT2DForward(), J)
    assert X.shape == (shape[0], shape[1] * 4 ** J, shape[2] // 2 ** J, shape[3] // 2 ** J)
    assert_within(packet_synthesis(X, DWT2DInverse(), J), x, _levels_bound(2 * J, 2, x, X))


@pytest.mark.parametrize("shape,J", [((2, 2, 1024), 8), ((1, 1, 256), 3), ((1, 5, 64), 5)])
def test_1d_perfect_reconstruction(shape, J):
    x = torch.randn(shape)
    X = packet_analysis(x, DWT1DForward(), J)
    assert X.shape == (shape[0], shape[1] * 2 ** J, shape[2] // 2 ** J)
    assert_within(packet_synthesis(X, DWT1DInverse(), J), x, _levels_bound(2 * J, 1, x, X))


def test_orthogonality_energy_roughly_preserved():
    """bior4.4 is near-orthogonal: packet energy stays within a few percent (sanity, not exactness)."""
    x = torch.randn(1, 1, 64, 64, dtype=torch.float64)
    X = packet_analysis(x, DWT2DForward().double(), 3)
    assert abs(X.square().sum() / x.square().sum() - 1) < 0.1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(dtype):
    x = torch.rand(1, 3, 32, 32) - 0.5
    ref = packet_analysis(x, DWT2DForward(), 2)
    low = packet_analysis(x.to(dtype), DWT2DForward(), 2)
    assert low.dtype == dtype
    # + 1 level: the input's own rounding to dtype
    assert_within(low, ref, sum_bound(ref.abs().max().item(), 3 * TAPS ** 2, dtype))
    rec = packet_synthesis(low, DWT2DInverse(), 2)
    assert_within(rec, x, sum_bound(ref.abs().max().item(), 5 * TAPS ** 2, dtype))


def test_differentiable():
    x = torch.randn(1, 2, 16, 16, requires_grad=True)
    y = packet_synthesis(packet_analysis(x, DWT2DForward(), 2), DWT2DInverse(), 2)
    y.sum().backward()
    assert_within(x.grad, torch.ones_like(x), _levels_bound(4, 2, torch.ones(1), x.grad))


def _pytorch_wavelets():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pytorch_wavelets
        return pytorch_wavelets
    except Exception as e:  # pkg_resources missing under setuptools>=82
        pytest.skip(f"pytorch-wavelets not importable ({type(e).__name__}: {e})")


def test_matches_pytorch_wavelets_2d_and_buffers():
    pw = _pytorch_wavelets()
    wt = pw.DWTForward(J=1, mode="periodization", wave="bior4.4")
    iwt = pw.DWTInverse(mode="periodization", wave="bior4.4")
    ours, ours_i = DWT2DForward(), DWT2DInverse()
    assert ours.state_dict().keys() == wt.state_dict().keys()
    for k, v in wt.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    for k, v in iwt.state_dict().items():
        assert torch.equal(ours_i.state_dict()[k], v), k
    x = torch.randn(2, 3, 40, 56)
    L, H = wt(x)
    ref = torch.cat([L.unsqueeze(2), H[0]], dim=2).flatten(1, 2)
    assert_within(ours(x), ref, 2 * _levels_bound(1, 2, x, ref))
    Lr, Hr = ref.unflatten(1, (3, 4)).split([1, 3], dim=2)
    back = iwt((Lr.squeeze(2), [Hr]))
    assert_within(ours_i(ref), back, 2 * _levels_bound(1, 2, ref, back))


def test_matches_pytorch_wavelets_1d_and_buffers():
    pw = _pytorch_wavelets()
    wt = pw.DWT1DForward(J=1, mode="periodization", wave="bior4.4")
    iwt = pw.DWT1DInverse(mode="periodization", wave="bior4.4")
    for k, v in {**wt.state_dict(), **iwt.state_dict()}.items():
        mine = {**DWT1DForward().state_dict(), **DWT1DInverse().state_dict()}[k]
        assert torch.equal(mine, v), k
    x = torch.randn(2, 2, 128)
    L, H = wt(x)
    ref = torch.stack([L, H[0]], dim=2).flatten(1, 2)
    assert_within(DWT1DForward()(x), ref, 2 * _levels_bound(1, 1, x, ref))
    back = iwt((L, [H[0]]))
    assert_within(DWT1DInverse()(ref), back, 2 * _levels_bound(1, 1, ref, back))


def test_odd_length_follows_pytorch_wavelets_rule():
    """Odd sizes are extended by repeating the last sample (pytorch-wavelets' periodization)."""
    x = torch.randn(1, 1, 15)
    ext = torch.cat([x, x[..., -1:]], dim=-1)
    torch.testing.assert_close(DWT1DForward()(x), DWT1DForward()(ext))
