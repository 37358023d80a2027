"""Lossless containers for quantized WaLLoC latents, and input padding helpers.

A rounded latent holds small integers (``n_bits`` bits, signed). Storing it as a lossless image
lets a stock image codec do the entropy coding (the paper's "entropy coding" step). Channels are
tiled into an ``n x n`` grid of ``c``-channel pixels, with ``N = c * n**2`` (walloc 1.2.1's layout).

Seed-compatible, batched ``(B, N, h, w)``::

    images = latent_to_pil(z, n_bits=8, C=3)          # list of PIL images, one per batch item
    z_rec = pil_to_latent(images, N=12, n_bits=8, C=3)

Self-describing bytes for one latent ``(C, h, w)`` or 1D ``(C, T)``::

    data = encode_latent(z, n_bits=8, fmt="webp")     # 'webp' | 'png' | 'tiff' | 'npy'
    z_rec = decode_latent(data)                       # shape and bit depth come from the bytes
    assert z_rec.equal(z)

Image containers carry one JSON header (``LatentInfo``) in the format's standard description field:
a PNG ``tEXt`` chunk keyed ``walloc-cdl``, the TIFF ``ImageDescription`` tag (270), and the
``ImageDescription`` tag of the WebP ``EXIF`` chunk. ``.npy`` needs none: its own header holds shape
and dtype, and values are stored as they are (int8, or int16 when ``n_bits > 8``).
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image, PngImagePlugin

FORMATS = ("webp", "png", "tiff", "npy")
WEBP_MAX_DIM = 16383  # libwebp's limit on width and height
# Largest latent (values, i.e. pixels x bands of a tile, or npy elements) a container may declare: far above
# any real latent (a 16x codec's latent of a 1-gigapixel RGB image has 2e8), and refused from the header alone,
# before anything is decoded or allocated, so untrusted tiles cannot ask for gigabytes.
MAX_LATENT_VALUES = 1 << 28
METADATA_KEY = "walloc-cdl"  # PNG text keyword
_MAGIC = "walloc-cdl-latent"  # value of the header's "format" field
_VERSION = 1
_SUFFIXES = {".webp": "webp", ".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}
_SEED_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
# Pixel mode written for c latent channels per pixel. WebP has no L or CMYK: a 1-channel tiling is
# written as gray RGB and a 4-channel one as RGBA (saved with exact=True so libwebp keeps the colour
# of transparent pixels). PNG has no CMYK either.
_MODES = {
    "webp": {1: "RGB", 3: "RGB", 4: "RGBA"},
    "png": {1: "L", 3: "RGB", 4: "RGBA"},
    "tiff": {1: "L", 3: "RGB", 4: "CMYK"},
}


def _value_range(n_bits: int) -> tuple[int, int]:
    if not isinstance(n_bits, (int, np.integer)) or not 1 <= n_bits <= 16:
        raise ValueError(f"n_bits must be an integer in [1, 16], got {n_bits!r}")
    return -(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1


def _check_values(x: torch.Tensor, n_bits: int) -> None:
    """Refuse values a container cannot hold exactly (walloc would wrap or truncate them)."""
    lo, hi = _value_range(n_bits)
    if x.numel() == 0:
        raise ValueError("latent is empty")
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise ValueError("latent holds NaN or infinite values")
        if not torch.equal(x, torch.round(x)):
            raise ValueError(
                "latent holds non-integer values; round it first "
                "(codec.encode(x, quantize=True) or a codec in eval mode)"
            )
    x_min, x_max = x.min().item(), x.max().item()
    if x_min < lo or x_max > hi:
        raise ValueError(
            f"latent values must lie in [{lo}, {hi}] for n_bits={n_bits}; "
            f"got min {x_min:g}, max {x_max:g}"
        )


def _to_bytes(x: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Signed integers -> uint8 with walloc's offset of 2**(n_bits-1)."""
    _check_values(x, n_bits)
    return (x.to(torch.int16) + 2 ** (n_bits - 1)).to(torch.uint8)


def _grid(N: int, C: int) -> int:
    """n with N == C * n**2, or an error that names the channel count to pad to."""
    if C < 1 or N < 1:
        raise ValueError(f"channel counts must be positive, got N={N}, C={C}")
    n = math.isqrt(N // C)
    if C * n * n != N:
        m = _grid_at_least(N, C)
        raise ValueError(
            f"N={N} latent channels cannot be tiled as C * n**2 with C={C}: pad the channel "
            f"dimension to {C * m * m} (e.g. torch.nn.functional.pad(z, (0, 0, 0, 0, 0, "
            f"{C * m * m - N}))), or use encode_latent, which pads and strips for you"
        )
    return n


def _grid_at_least(N: int, C: int) -> int:
    """Smallest n with C * n**2 >= N."""
    n = math.isqrt(-(-N // C))
    return n if C * n * n >= N else n + 1


def _tile(x: torch.Tensor, c: int, n: int) -> np.ndarray:
    """(B, c*n*n, h, w) uint8 -> (B, n*h, n*w, c), channel-major tiles as in walloc."""
    return rearrange(x, "b (c nh nw) h w -> b (nh h) (nw w) c", c=c, nh=n, nw=n).numpy()


def _untile(x: np.ndarray, c: int, n: int) -> torch.Tensor:
    """(B, n*h, n*w, c) -> (B, c*n*n, h, w)."""
    return rearrange(torch.from_numpy(np.array(x)), "b (nh h) (nw w) c -> b (c nh nw) h w", nh=n, nw=n)


def latent_to_pil(latent: torch.Tensor, n_bits: int, C: int) -> list[Image.Image]:
    """Tile a batch of rounded latents (B, N, h, w) into 8-bit images, one per batch item.

    Same images as walloc 1.2.1: N = C * n**2 channels become an n x n grid of tiles with C = 1 (L),
    3 (RGB) or 4 (CMYK) latent channels per pixel; value v is stored as v + 2**(n_bits-1).
    Unlike walloc, non-integer values are refused instead of silently truncated.
    """
    if C not in _SEED_MODES:
        raise ValueError(f"Unsupported number of channels C={C}. Supported values are 1 (L), 3 (RGB), and 4 (CMYK)")
    if n_bits > 8:
        raise ValueError(f"8-bit images hold at most n_bits=8, got n_bits={n_bits}; use encode_latent(..., fmt='npy')")
    latent = torch.as_tensor(latent).detach().cpu()
    if latent.ndim != 4:
        raise ValueError(f"latent must have shape (B, N, h, w), got {tuple(latent.shape)}")
    n = _grid(latent.shape[1], C)
    tiles = _tile(_to_bytes(latent, n_bits), C, n)
    return [_from_array(t, _SEED_MODES[C]) for t in tiles]


def _from_array(a: np.ndarray, mode: str) -> Image.Image:
    """(H, W, c) uint8 -> PIL image in `mode` (frombytes: also CMYK, and no deprecated mode= argument)."""
    if mode == "RGB" and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return Image.frombytes(mode, (a.shape[1], a.shape[0]), np.ascontiguousarray(a).tobytes())


def _pixels(img: Image.Image, c: int, where: str) -> np.ndarray:
    """Image -> (H, W, c) uint8, accepting the lossless stand-ins other tools produce."""
    bands = len(img.getbands())
    if img.mode not in ("L", "RGB", "RGBA", "CMYK"):
        raise ValueError(f"{where}: expected an 8-bit L/RGB/RGBA/CMYK image, got mode {img.mode!r}")
    a = np.asarray(img)
    a = a[..., None] if a.ndim == 2 else a
    if bands == c:
        return a
    if c == 1 and img.mode == "RGB":  # gray saved as RGB (WebP has no L mode)
        if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
            raise ValueError(f"{where}: expected a gray image for C=1, got RGB with differing channels")
        return a[..., :1]
    if c == 4 and img.mode == "RGB":  # libwebp drops an all-opaque alpha channel
        return np.concatenate([a, np.full_like(a[..., :1], 255)], axis=-1)
    raise ValueError(f"{where}: image mode {img.mode!r} has {bands} channels, expected C={c}")


def _from_bytes(x: torch.Tensor, n_bits: int, where: str) -> torch.Tensor:
    _, hi = _value_range(n_bits)
    top = int(x.max()) if x.numel() else 0
    if top > 2 * hi + 1:
        raise ValueError(
            f"{where}: pixel value {top} cannot come from an n_bits={n_bits} latent "
            f"(largest is {2 * hi + 1}); is n_bits right?"
        )
    return x.to(torch.float32) - (hi + 1)


def pil_to_latent(images: Sequence[Image.Image], N: int, n_bits: int, C: int) -> torch.Tensor:
    """Inverse of `latent_to_pil`: images -> float32 latents (B, N, h, w), as in walloc 1.2.1."""
    if C not in _SEED_MODES:
        raise ValueError(f"Unsupported number of channels C={C}. Supported values are 1 (L), 3 (RGB), and 4 (CMYK)")
    n = _grid(N, C)
    if not images:
        raise ValueError("no images given")
    arrays = [_pixels(img, C, f"image {i}") for i, img in enumerate(images)]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"images differ in size: {sorted(sizes)}")
    (H, W) = sizes.pop()
    if H % n or W % n:
        raise ValueError(f"image size {W}x{H} is not a multiple of the {n}x{n} tile grid for N={N}, C={C}")
    return _from_bytes(_untile(np.stack(arrays), C, n), n_bits, "images")


@dataclass(frozen=True)
class LatentInfo:
    """What a container says about the latent it holds; image containers store it as JSON."""

    format: str  # 'webp' | 'png' | 'tiff' | 'npy'
    shape: tuple[int, ...]  # latent shape: (C, h, w) or (C, T)
    n_bits: int  # latent bit depth (npy: the dtype's width, 8 or 16)
    pixel_channels: int | None = None  # c: latent channels per pixel (1, 3 or 4); None for npy
    grid: int | None = None  # n: the image is an n x n grid of tiles, c * n**2 >= C
    tile: tuple[int, int] | None = None  # (rows, cols) of one tile; 1D latents are folded into rows

    def header(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k != "format"}
        return json.dumps({"format": _MAGIC, "version": _VERSION, **fields}, separators=(",", ":"))


def _plan(shape: tuple[int, ...], fmt: str, n_bits: int, pixel_channels: int | None) -> LatentInfo:
    """Choose the tiling: fewest padded channels, ties to more latent channels per pixel (smaller files
    in all three formats where measured). 1D latents
    (C, T) become one-row tiles, folded into rows of at most WEBP_MAX_DIM / n samples so the
    image stays within WebP's limit; the header's shape lets decoding drop the fold's padding."""
    C = shape[0]
    choices = [pixel_channels] if pixel_channels is not None else [1, 3, 4]
    if any(c not in (1, 3, 4) for c in choices):
        raise ValueError(f"pixel_channels must be 1, 3 or 4, got {pixel_channels!r}")
    c = min(choices, key=lambda c: (c * _grid_at_least(C, c) ** 2 - C, -c))
    n = _grid_at_least(C, c)
    if len(shape) == 3:
        tile = (shape[1], shape[2])
    else:
        width = max(1, WEBP_MAX_DIM // n)
        rows = -(-shape[1] // width)
        tile = (rows, -(-shape[1] // rows))
    if fmt == "webp" and max(tile) * n > WEBP_MAX_DIM:
        raise ValueError(
            f"latent {shape} tiles to {tile[1] * n}x{tile[0] * n} px, above WebP's "
            f"{WEBP_MAX_DIM} px limit; use fmt='png', 'tiff' or 'npy'"
        )
    return LatentInfo(fmt, tuple(shape), n_bits, c, n, tile)


def _normalize_fmt(fmt: str) -> str:
    f = fmt.lower().lstrip(".")
    f = "tiff" if f == "tif" else f
    if f not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    return f


def encode_latent(
    z: torch.Tensor | np.ndarray, n_bits: int = 8, fmt: str = "webp", *, pixel_channels: int | None = None
) -> bytes:
    """One rounded latent (C, h, w) or (C, T) -> lossless self-describing bytes.

    Image formats ('webp' lossless, 'png', 'tiff' with Adobe deflate) take n_bits <= 8; channels are
    zero-padded up to c * n**2 and the tiling (`pixel_channels` c, chosen automatically unless given)
    is recorded so `decode_latent` needs no side information. 'npy' stores the integers directly as
    int8 (int16 when n_bits > 8), n_bits <= 16.
    """
    fmt = _normalize_fmt(fmt)
    z = torch.as_tensor(z).detach().cpu()
    if z.ndim not in (2, 3):
        raise ValueError(f"latent must have shape (C, h, w) or (C, T), got {tuple(z.shape)}")
    if fmt == "npy":
        _check_values(z, n_bits)
        buf = io.BytesIO()
        np.save(buf, z.numpy().astype(np.int8 if n_bits <= 8 else np.int16), allow_pickle=False)
        return buf.getvalue()
    if n_bits > 8:
        raise ValueError(f"fmt={fmt!r} holds 8-bit pixels: n_bits={n_bits} needs fmt='npy'")
    info = _plan(tuple(z.shape), fmt, n_bits, pixel_channels)
    c, n, (rows, cols) = info.pixel_channels, info.grid, info.tile
    b = _to_bytes(z, n_bits)
    if z.ndim == 2:
        b = F.pad(b, (0, rows * cols - z.shape[1]), value=2 ** (n_bits - 1)).reshape(z.shape[0], rows, cols)
    b = F.pad(b, (0, 0, 0, 0, 0, c * n * n - z.shape[0]), value=2 ** (n_bits - 1))
    img = _from_array(_tile(b[None], c, n)[0], _MODES[fmt][c])
    out = io.BytesIO()
    if fmt == "png":
        meta = PngImagePlugin.PngInfo()
        meta.add_text(METADATA_KEY, info.header())
        img.save(out, format="PNG", pnginfo=meta)
    elif fmt == "tiff":
        img.save(out, format="TIFF", compression="tiff_adobe_deflate", tiffinfo={270: info.header()})
    else:
        exif = Image.Exif()
        exif[270] = info.header()
        img.save(out, format="WEBP", lossless=True, exact=True, exif=exif.tobytes())
    return out.getvalue()


def _sniff(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] == b"\x93NUMPY":
        return "npy"
    raise ValueError(f"not a latent container (unknown magic bytes {data[:12]!r}); expected {FORMATS}")


def _read_header(img: Image.Image, fmt: str) -> LatentInfo:
    if fmt == "png":
        text = img.info.get(METADATA_KEY)
    elif fmt == "tiff":
        text = img.tag_v2.get(270)
    else:
        text = img.getexif().get(270)
    if text is None:
        raise ValueError(f"{fmt} image has no walloc-cdl header; use pil_to_latent with N, n_bits and C")
    try:
        d = json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{fmt} image description is not a walloc-cdl JSON header: {e}") from None
    if not isinstance(d, dict) or d.get("format") != _MAGIC:
        raise ValueError(f"{fmt} image description is not a walloc-cdl header")
    if d.get("version") != _VERSION:
        raise ValueError(f"walloc-cdl header version {d.get('version')!r} is not supported (expected {_VERSION})")
    try:
        info = LatentInfo(
            fmt,
            tuple(int(s) for s in d["shape"]),
            int(d["n_bits"]),
            int(d["pixel_channels"]),
            int(d["grid"]),
            (int(d["tile"][0]), int(d["tile"][1])),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"walloc-cdl header is malformed ({e!r}): {text}") from None
    rows, cols = info.tile
    C, n, c = info.shape[0], info.grid, info.pixel_channels
    ok = (
        len(info.shape) in (2, 3)
        and min(info.shape) >= 1
        and c in (1, 3, 4)
        and 1 <= info.n_bits <= 8
        and n >= 1
        and C <= c * n * n
        and img.size == (cols * n, rows * n)
        and (info.shape[1:] == (rows, cols) if len(info.shape) == 3 else rows * cols >= info.shape[1])
    )
    if not ok:
        raise ValueError(f"walloc-cdl header does not match the {img.size[0]}x{img.size[1]} {img.mode} image: {text}")
    return info


def check_declared_size(img: Image.Image, where: str = "latent tile") -> None:
    """Refuse an opened (not yet decoded) image whose header declares more than MAX_LATENT_VALUES values."""
    w, h = img.size
    values = w * h * max(1, len(img.getbands()))
    if w < 1 or h < 1 or values > MAX_LATENT_VALUES:
        raise ValueError(f"{where}: header declares a {w}x{h} {img.mode} image ({values} values, limit "
                         f"{MAX_LATENT_VALUES}); refused before decoding")


def _open_image(data: bytes, where: str) -> Image.Image:
    """Image.open (reads the header only) + the declared-size check; PIL's own bomb check is kept."""
    try:
        with warnings.catch_warnings():  # our own limit below is the stricter one
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ValueError(f"{where}: {e}; refused before decoding") from None
    check_declared_size(img, where)
    return img


def _npy_header(data: bytes) -> tuple[tuple[int, ...], np.dtype]:
    buf = io.BytesIO(data)
    fmt_ = np.lib.format
    version = fmt_.read_magic(buf)
    read = fmt_.read_array_header_1_0 if version == (1, 0) else fmt_.read_array_header_2_0
    shape, _, dtype = read(buf)
    if math.prod(shape) > MAX_LATENT_VALUES:
        raise ValueError(f"npy latent: header declares shape {tuple(shape)} ({math.prod(shape)} values, limit "
                         f"{MAX_LATENT_VALUES}); refused before reading")
    return tuple(shape), dtype


def latent_info(data: bytes) -> LatentInfo:
    """Read what a container holds (format, shape, bit depth, tiling) without decoding pixels."""
    fmt = _sniff(data)
    if fmt == "npy":
        shape, dtype = _npy_header(data)
        return LatentInfo(fmt, shape, dtype.itemsize * 8)
    with _open_image(data, fmt) as img:
        return _read_header(img, fmt)


def tile_to_latent(img: Image.Image, layout: tuple[int, int, int] | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A decoded latent tile (PIL image, e.g. from timm's ReaderWds or an HF Image column) -> latent (C, h, w).

    Tiles written by `encode_latent` describe themselves; others (walloc's `latent_to_pil`, upstream's hub
    sets) need `layout` = (latent channels N, n_bits, latent channels per pixel C)."""
    fmt = {"PNG": "png", "WEBP": "webp", "TIFF": "tiff"}.get(img.format or "", "")
    try:
        info = _read_header(img, fmt) if fmt else None
    except ValueError as e:
        if layout is None:
            raise ValueError(f"{e} (tile_to_latent: layout=(N, n_bits, C))") from None
        info = None
    if info is None:
        if layout is None:
            raise ValueError(f"{img.format} image has no walloc-cdl header: pass layout=(N, n_bits, C)")
        N, n_bits, C = layout
        check_declared_size(img)
        return pil_to_latent([img], N, n_bits, C)[0].to(dtype)
    a = _pixels(img, info.pixel_channels, fmt)
    return _finish(a, info).to(dtype)


class TileToLatent:
    """A torchvision-style transform: latent tile (PIL) -> latent tensor; for timm datasets over our shards."""

    def __init__(self, layout: tuple[int, int, int] | None = None):
        self.layout = layout

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return tile_to_latent(img, self.layout)


def _finish(a: np.ndarray, info: LatentInfo) -> torch.Tensor:
    z = _from_bytes(_untile(a[None], info.pixel_channels, info.grid)[0], info.n_bits, info.format)[: info.shape[0]]
    if len(info.shape) == 2:
        z = z.reshape(info.shape[0], -1)[:, : info.shape[1]]
    return z.contiguous()


def decode_latent(data: bytes, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bytes from `encode_latent` -> the latent (C, h, w) or (C, T), as `dtype` (float32 like pil_to_latent)."""
    fmt = _sniff(data)
    if fmt == "npy":
        _npy_header(data)
        a = np.load(io.BytesIO(data), allow_pickle=False)
        if a.dtype.kind not in "iu" or a.ndim not in (2, 3):
            raise ValueError(f"npy latent must be an integer array (C, h, w) or (C, T), got {a.dtype} {a.shape}")
        return torch.from_numpy(a.astype(np.int64 if a.dtype.kind == "u" else a.dtype)).to(dtype)
    with _open_image(data, fmt) as img:
        info = _read_header(img, fmt)
        a = _pixels(img, info.pixel_channels, fmt)
    return _finish(a, info).to(dtype).contiguous()


def save_latent(z: torch.Tensor | np.ndarray, path: str | Path, n_bits: int = 8, **kwargs) -> None:
    """Write `encode_latent` bytes to `path`; the format follows the suffix (.webp .png .tif .tiff .npy)."""
    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"{path}: unknown latent suffix; use one of {sorted(_SUFFIXES)}")
    path.write_bytes(encode_latent(z, n_bits, _SUFFIXES[path.suffix.lower()], **kwargs))


def load_latent(path: str | Path, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read a latent written by `save_latent` (any suffix: the format is sniffed from the bytes)."""
    path = Path(path)
    try:
        return decode_latent(path.read_bytes(), dtype)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: {e}") from e


class PadInfo(NamedTuple):
    """How `pad_to_multiple` padded: what `crop_back` needs to undo it."""

    pad: tuple[int, ...]  # torch.nn.functional.pad order: (left, right) or (left, right, top, bottom)
    size: tuple[int, ...]  # original spatial size: (T,) or (H, W)
    mode: str  # padding mode actually used


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "reflect", *, spatial_dims: int | None = None
) -> tuple[torch.Tensor, PadInfo]:
    """Pad the last 1 or 2 dims up to a multiple (e.g. 2**J), centred like walloc 1.2.1's `pad`.

    `spatial_dims` defaults to the codec conventions: 2 for (B, C, H, W), 1 for (B, C, T) and (C, T);
    pass spatial_dims=2 for an unbatched image (C, H, W). Reflect padding needs each pad to be
    smaller than its dimension (PyTorch's rule); when a pad is not, the whole call falls back to
    'replicate' (edge) padding and `PadInfo.mode` says so.
    """
    if spatial_dims is None:
        spatial_dims = {4: 2, 3: 1, 2: 1}.get(x.ndim)
        if spatial_dims is None:
            raise ValueError(f"cannot infer spatial_dims for shape {tuple(x.shape)}; pass spatial_dims=1 or 2")
    if spatial_dims not in (1, 2) or x.ndim < spatial_dims:
        raise ValueError(f"spatial_dims must be 1 or 2 and at most x.ndim, got {spatial_dims} for {tuple(x.shape)}")
    if not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    size = tuple(x.shape[-spatial_dims:])
    if min(size) < 1:
        raise ValueError(f"cannot pad an empty signal of size {size}")
    pad: list[int] = []
    for s in reversed(size):  # F.pad order: last dim first
        extra = -s % multiple
        pad += [extra // 2, extra - extra // 2]
    if mode in ("reflect", "circular") and any(p >= s for s, p in zip(reversed(size), pad[1::2])):
        mode = "replicate"  # the right/bottom pad is the larger one
    if not any(pad):
        return x, PadInfo(tuple(pad), size, mode)
    lead = x.shape[:-spatial_dims]
    y = x.reshape((-1, 1) + size)
    y = F.pad(y, pad, mode=mode) if mode != "constant" else F.pad(y, pad)
    return y.reshape(lead + y.shape[-spatial_dims:]), PadInfo(tuple(pad), size, mode)


def crop_back(x: torch.Tensor, info: PadInfo) -> torch.Tensor:
    """Undo `pad_to_multiple` on its output (or on anything with the same padded spatial size)."""
    size = info.size
    if len(size) == 1:
        return x[..., info.pad[0] : info.pad[0] + size[0]]
    left, top = info.pad[0], info.pad[2]
    return x[..., top : top + size[0], left : left + size[1]]
