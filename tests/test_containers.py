"""Lossless latent containers and padding helpers (walloc_cdl.codec.containers)."""

import io
import json
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from walloc_cdl.codec.containers import (
    FORMATS,
    METADATA_KEY,
    WEBP_MAX_DIM,
    crop_back,
    decode_latent,
    encode_latent,
    latent_info,
    latent_to_pil,
    load_latent,
    pad_to_multiple,
    pil_to_latent,
    save_latent,
)

IMAGE_FORMATS = ("webp", "png", "tiff")


def _walloc():
    return pytest.importorskip("walloc.walloc", reason="walloc 1.2.1 not installed (pip install '.[compat]')")


def random_latent(shape, n_bits, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(-(2 ** (n_bits - 1)), 2 ** (n_bits - 1), shape, generator=g).float()
    z.view(-1)[0] = -(2 ** (n_bits - 1))  # both ends of the range always present
    z.view(-1)[-1] = 2 ** (n_bits - 1) - 1
    return z


# (C, h, w) image latents incl. the RGB 16x codec's 12 channels; (C, T) audio latents incl. 27 and 108
SHAPES = [(12, 16, 20), (3, 8, 8), (16, 4, 4), (5, 3, 3), (1, 5, 7), (27, 50), (108, 300), (2, 1)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_bits", [8, 5, 1])
def test_round_trip_bit_exact(fmt, shape, n_bits):
    z = random_latent(shape, n_bits, seed=zlib.crc32(repr((fmt, shape, n_bits)).encode()))
    data = encode_latent(z, n_bits, fmt)
    z_rec = decode_latent(data)
    assert z_rec.dtype == torch.float32 and z_rec.shape == z.shape
    assert z_rec.equal(z)
    info = latent_info(data)
    assert info.format == fmt and info.shape == shape


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
@pytest.mark.parametrize("c", [1, 3, 4])
def test_every_pixel_mode_round_trips(fmt, c):
    z = random_latent((12, 6, 10), 8, seed=c)
    data = encode_latent(z, 8, fmt, pixel_channels=c)
    assert latent_info(data).pixel_channels == c
    assert decode_latent(data).equal(z)


def test_webp_rgba_with_opaque_alpha_round_trips():
    # libwebp drops an all-255 alpha channel; channel 3 of every pixel is the maximum value here
    z = random_latent((16, 8, 8), 8)
    z[12:] = 127
    data = encode_latent(z, 8, "webp", pixel_channels=4)
    assert Image.open(io.BytesIO(data)).mode == "RGB"
    assert decode_latent(data).equal(z)


def test_webp_rgba_keeps_values_under_transparent_pixels():
    z = random_latent((16, 8, 8), 8)
    z[12:] = -128  # alpha 0 everywhere: without exact=True libwebp rewrites the colour channels
    assert decode_latent(encode_latent(z, 8, "webp", pixel_channels=4)).equal(z)


@settings(max_examples=25, deadline=None)
@given(
    fmt=st.sampled_from(FORMATS),
    n_bits=st.integers(1, 8),
    channels=st.integers(1, 40),
    spatial=st.one_of(st.tuples(st.integers(1, 12), st.integers(1, 12)), st.tuples(st.integers(1, 400))),
    seed=st.integers(0, 2**31 - 1),
)
def test_round_trip_property(fmt, n_bits, channels, spatial, seed):
    z = random_latent((channels, *spatial), n_bits, seed)
    assert decode_latent(encode_latent(z, n_bits, fmt)).equal(z)


@pytest.mark.parametrize("n_bits, dtype", [(8, np.int8), (12, np.int16), (16, np.int16)])
def test_npy_stores_raw_integers(n_bits, dtype):
    z = random_latent((27, 64), n_bits)
    data = encode_latent(z, n_bits, "npy")
    a = np.load(io.BytesIO(data), allow_pickle=False)
    assert a.dtype == dtype and np.array_equal(a, z.numpy())
    assert decode_latent(data, dtype=torch.int32).equal(z.int())
    assert latent_info(data).n_bits == np.dtype(dtype).itemsize * 8


def test_npy_with_object_dtype_is_refused():
    buf = io.BytesIO()
    np.save(buf, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="[Pp]ickle"):
        decode_latent(buf.getvalue())


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_image_formats_refuse_more_than_8_bits(fmt):
    with pytest.raises(ValueError, match="npy"):
        encode_latent(random_latent((3, 4, 4), 8), 12, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_out_of_range_names_range_and_extremes(fmt):
    z = random_latent((12, 4, 4), 8)
    z[0, 0, 0] = 128
    z[1, 0, 0] = -130
    with pytest.raises(ValueError, match=r"\[-128, 127\].*min -130, max 128"):
        encode_latent(z, 8, fmt)
    with pytest.raises(ValueError, match=r"\[-8, 7\].*n_bits=4"):
        encode_latent(random_latent((12, 4, 4), 5), 4, fmt)


def test_out_of_range_in_seed_api():
    z = random_latent((1, 12, 4, 4), 8) * 2
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        latent_to_pil(z, 8, 3)


@pytest.mark.parametrize("bad", [0.5, float("nan"), float("inf")])
def test_non_integer_or_non_finite_is_refused(bad):
    z = random_latent((3, 4, 4), 8)
    z[0, 0, 0] = bad
    with pytest.raises(ValueError, match="non-integer|NaN"):
        encode_latent(z, 8, "png")


@pytest.mark.parametrize("N, C, target", [(12, 1, 16), (13, 3, 27), (17, 4, 36), (10, 3, 12)])
def test_channel_count_error_says_what_to_pad_to(N, C, target):
    with pytest.raises(ValueError, match=f"pad the channel dimension to {target}"):
        latent_to_pil(random_latent((1, N, 4, 4), 8), 8, C)


def test_channels_are_padded_and_stripped():
    z = random_latent((13, 4, 4), 8)
    data = encode_latent(z, 8, "png", pixel_channels=3)
    info = latent_info(data)
    assert (info.grid, info.tile) == (3, (4, 4))  # 3 * 3**2 = 27 >= 13
    assert Image.open(io.BytesIO(data)).size == (12, 12)
    assert decode_latent(data).equal(z)


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_header_is_stored_in_the_standard_field(fmt):
    data = encode_latent(random_latent((12, 4, 4), 6), 6, fmt)
    img = Image.open(io.BytesIO(data))
    text = {"png": lambda: img.info[METADATA_KEY], "tiff": lambda: img.tag_v2[270], "webp": lambda: img.getexif()[270]}
    header = json.loads(text[fmt]())
    assert header["format"] == "walloc-cdl-latent" and header["version"] == 1
    assert header["shape"] == [12, 4, 4] and header["n_bits"] == 6


def test_image_without_header_is_refused():
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="no walloc-cdl header"):
        decode_latent(buf.getvalue())


def test_header_that_does_not_match_the_image_is_refused():
    from PIL import PngImagePlugin

    data = encode_latent(random_latent((12, 4, 4), 8), 8, "png")
    img = Image.open(io.BytesIO(data))
    header = json.loads(img.info[METADATA_KEY])
    header["shape"] = [12, 5, 4]
    meta = PngImagePlugin.PngInfo()
    meta.add_text(METADATA_KEY, json.dumps(header))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=meta)
    with pytest.raises(ValueError, match="does not match"):
        decode_latent(buf.getvalue())


def test_unknown_bytes_are_refused():
    with pytest.raises(ValueError, match="not a latent container"):
        decode_latent(b"GIF89a" + bytes(20))


def test_long_1d_latent_is_folded_within_webp_limit():
    z = random_latent((108, 20000), 8)
    data = encode_latent(z, 8, "webp")
    w, h = Image.open(io.BytesIO(data)).size
    assert max(w, h) <= WEBP_MAX_DIM
    assert decode_latent(data).equal(z)


def test_2d_latent_beyond_webp_limit_is_refused():
    with pytest.raises(ValueError, match="16383 px limit"):
        encode_latent(torch.zeros(12, 8200, 2), 8, "webp")


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_constant_latent_compresses_well(fmt):
    z = torch.zeros(12, 64, 64)
    assert len(encode_latent(z, 8, fmt)) < z.numel() / 20
    noise = random_latent((12, 64, 64), 8)
    assert len(encode_latent(noise, 8, fmt)) > 0.9 * noise.numel()  # incompressible stays incompressible


def test_fewer_bits_give_smaller_files():
    sizes = [len(encode_latent(random_latent((12, 32, 32), b), b, "webp")) for b in (8, 4, 2)]
    assert sizes[0] > sizes[1] > sizes[2]


@pytest.mark.parametrize("suffix", [".webp", ".png", ".tif", ".tiff", ".npy"])
def test_save_and_load_follow_the_suffix(tmp_path, suffix):
    z = random_latent((27, 40), 8)
    path = tmp_path / f"latent{suffix}"
    save_latent(z, path, 8)
    assert load_latent(path).equal(z)


def test_load_error_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        load_latent(path)


def test_seed_walkthrough_round_trips(tmp_path):
    """The seed's three asserts: png (C=1, padded to 16), lossless webp (C=3), deflate tiff (C=4)."""
    z_hat = random_latent((1, 12, 24, 32), 8)
    z_padded = torch.nn.functional.pad(z_hat, (0, 0, 0, 0, 0, 4))
    latent_to_pil(z_padded, 8, 1)[0].save(tmp_path / "latent.png")
    assert pil_to_latent([Image.open(tmp_path / "latent.png")], 16, 8, 1).equal(z_padded)
    latent_to_pil(z_hat, 8, 3)[0].save(tmp_path / "latent.webp", lossless=True)
    assert pil_to_latent([Image.open(tmp_path / "latent.webp")], 12, 8, 3).equal(z_hat)
    latent_to_pil(z_padded, 8, 4)[0].save(tmp_path / "latent.tif", compression="tiff_adobe_deflate")
    assert pil_to_latent([Image.open(tmp_path / "latent.tif")], 16, 8, 4).equal(z_padded)


def test_gray_tiles_saved_as_webp_read_back_with_c1(tmp_path):
    z = random_latent((2, 16, 5, 6), 8)
    for i, img in enumerate(latent_to_pil(z, 8, 1)):
        img.save(tmp_path / f"{i}.webp", lossless=True)  # Pillow writes L as RGB
    images = [Image.open(tmp_path / f"{i}.webp") for i in range(2)]
    assert images[0].mode == "RGB"
    assert pil_to_latent(images, 16, 8, 1).equal(z)


def test_pil_to_latent_refuses_wrong_n_bits():
    images = latent_to_pil(random_latent((1, 12, 4, 4), 8), 8, 3)
    with pytest.raises(ValueError, match="n_bits=4"):
        pil_to_latent(images, 12, 4, 3)


@pytest.mark.parametrize("N, C", [(16, 1), (4, 1), (12, 3), (27, 3), (16, 4), (4, 4)])
@pytest.mark.parametrize("n_bits", [8, 6])
def test_same_images_and_latents_as_walloc(N, C, n_bits):
    ref = _walloc()
    z = random_latent((2, N, 6, 5), n_bits, seed=N * C)
    ours, theirs = latent_to_pil(z, n_bits, C), ref.latent_to_pil(z, n_bits, C)
    for a, b in zip(ours, theirs):
        assert (a.mode, a.size) == (b.mode, b.size)
        assert a.tobytes() == b.tobytes()
    back = pil_to_latent(theirs, N, n_bits, C)
    expected = ref.pil_to_latent(ours, N, n_bits, C)
    assert back.dtype == expected.dtype and back.equal(expected) and back.equal(z)


@pytest.mark.parametrize("size", [(37, 50), (64, 64), (1, 9), (5, 130)])
@pytest.mark.parametrize("multiple", [8, 16])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "constant"])
def test_pad_matches_walloc_and_crops_back(size, multiple, mode):
    ref = _walloc()
    x = torch.randn(2, 3, *size)
    y, info = pad_to_multiple(x, multiple, mode)
    assert y.shape[-2] % multiple == 0 and y.shape[-1] % multiple == 0
    assert crop_back(y, info).equal(x)
    assert ref.crop(y, size).equal(x)
    if info.mode == mode:
        assert y.equal(ref.pad(x, multiple, mode))


def test_reflect_falls_back_to_replicate_when_pad_exceeds_size():
    x = torch.arange(3.0).reshape(1, 1, 3)
    y, info = pad_to_multiple(x, 16)  # pads 6 and 7 on a length-3 signal
    assert info.mode == "replicate" and y.shape[-1] == 16
    assert y[..., :6].eq(0).all() and y[..., -7:].eq(2).all()
    assert crop_back(y, info).equal(x)
    y, info = pad_to_multiple(torch.randn(1, 1, 10), 16)  # pads 3 and 3 < 10: reflect is possible
    assert info.mode == "reflect"


@pytest.mark.parametrize("shape, multiple, spatial_dims, expected", [
    ((2, 2, 1000), 256, None, (2, 2, 1024)),  # Codec1D input (B, C, T)
    ((2, 1000), 256, None, (2, 1024)),  # (C, T)
    ((3, 30, 40), 16, 2, (3, 32, 48)),  # unbatched image
    ((2, 2, 3, 30, 40), 16, 2, (2, 2, 3, 32, 48)),
])
def test_pad_shapes(shape, multiple, spatial_dims, expected):
    x = torch.randn(shape)
    y, info = pad_to_multiple(x, multiple, spatial_dims=spatial_dims)
    assert tuple(y.shape) == expected
    assert crop_back(y, info).equal(x)


def test_pad_is_a_no_op_on_multiples_and_needs_known_dims():
    x = torch.randn(1, 3, 32, 48)
    y, info = pad_to_multiple(x, 16)
    assert y is x and crop_back(y, info).equal(x)
    with pytest.raises(ValueError, match="spatial_dims"):
        pad_to_multiple(torch.randn(4), 8)


def _png_declaring(w: int, h: int) -> bytes:
    """A PNG whose IHDR declares w x h RGB but holds almost no data (what an attacker would send)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the test's own Image.open below
def test_absurd_declared_sizes_are_refused_before_decoding():
    import time

    from walloc_cdl.codec.containers import MAX_LATENT_VALUES, latent_info, tile_to_latent

    data = _png_declaring(12000, 12000)  # 432M values: above the limit, below PIL's own bomb limit
    assert 12000 * 12000 * 3 > MAX_LATENT_VALUES and len(data) < 200
    t = time.perf_counter()
    for f in (decode_latent, latent_info):
        with pytest.raises(ValueError, match="header declares a 12000x12000 RGB image .* refused before decoding"):
            f(data)
    with pytest.raises(ValueError, match="refused before decoding"):
        decode_latent(_png_declaring(100000, 100000))  # PIL's decompression-bomb limit, same message
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "|i1", "fortran_order": False, "shape": (64, 65536, 65536)})
    with pytest.raises(ValueError, match=r"declares shape \(64, 65536, 65536\).* refused before reading"):
        decode_latent(npy.getvalue())
    from PIL import Image

    with pytest.raises(ValueError, match="refused before decoding"):
        tile_to_latent(Image.open(io.BytesIO(data)), layout=(243, 8, 3))
    assert time.perf_counter() - t < 2  # nothing was decoded or allocated


def test_tile_to_latent_reads_our_tiles_and_walloc_tiles():
    from PIL import Image

    from walloc_cdl.codec.containers import TileToLatent, tile_to_latent

    z = torch.randint(-128, 128, (243, 4, 5)).float()
    ours = Image.open(io.BytesIO(encode_latent(z, 8, "webp")))
    assert torch.equal(TileToLatent()(ours), z)
    b = io.BytesIO()
    latent_to_pil(z[None], 8, 3)[0].save(b, "WEBP", lossless=True)  # walloc's layout, no header
    theirs = Image.open(io.BytesIO(b.getvalue()))
    assert torch.equal(tile_to_latent(theirs, layout=(243, 8, 3)), z)
    with pytest.raises(ValueError, match="layout"):
        tile_to_latent(Image.open(io.BytesIO(b.getvalue())))
