"""Decoding: accepted formats, orientation, colour modes, and each specific rejection.

Every test image is made here with Pillow and numpy, so the suite needs no photo files.
"""

from __future__ import annotations

import hashlib
import io
import struct
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from vultus.errors import DecodeError
from vultus.pipeline.decode import SUPPORTED_SUFFIXES, DecodedImage, decode_image, downscale

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def _pattern(width: int = 64, height: int = 48) -> Image.Image:
    """Four flat quadrants: lossy codecs keep flat colour close, and a wrong rotation or
    channel order shows up at once."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[: height // 2, : width // 2] = RED
    arr[: height // 2, width // 2 :] = (0, 255, 0)
    arr[height // 2 :, : width // 2] = BLUE
    arr[height // 2 :, width // 2 :] = WHITE
    return Image.fromarray(arr)


def _noise_jpeg(width: int = 256, height: int = 256) -> bytes:
    """A JPEG whose scan data is long and incompressible, so cutting it removes real pixels."""
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (1-bit grey) but whose data holds one tiny row:
    a decoder that trusted it would allocate the whole canvas before noticing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _save(tmp_path: Path, name: str, im: Image.Image, **params: Any) -> Path:
    path = tmp_path / name
    im.save(path, **params)
    return path


def _decode_error(source: Path | bytes, **kwargs: int) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_image(source, **kwargs)
    return info.value


def _assert_pattern(decoded: DecodedImage, *, tolerance: int) -> None:
    rgb = decoded.rgb.astype(int)
    h, w = rgb.shape[:2]
    # Sample the middle of each quadrant: codecs blur the edges between them.
    for (y, x), colour in {
        (h // 4, w // 4): RED,
        (h // 4, 3 * w // 4): (0, 255, 0),
        (3 * h // 4, w // 4): BLUE,
        (3 * h // 4, 3 * w // 4): WHITE,
    }.items():
        assert np.abs(rgb[y, x] - np.array(colour)).max() <= tolerance, (y, x, rgb[y, x])


# --- accepted formats ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "expected_format", "tolerance"),
    [
        ("a.png", {}, "PNG", 0),
        ("a.bmp", {}, "BMP", 0),
        ("a.tiff", {}, "TIFF", 0),
        ("a.tif", {"compression": "tiff_lzw"}, "TIFF", 0),
        ("a.gif", {}, "GIF", 0),
        ("a.webp", {"lossless": True}, "WEBP", 0),
        ("b.webp", {"quality": 90}, "WEBP", 12),
        ("a.jpg", {"quality": 95}, "JPEG", 12),
        ("a.jfif", {"format": "JPEG", "quality": 95}, "JPEG", 12),
        ("a.mpo", {"format": "MPO", "quality": 95}, "JPEG", 12),
    ],
)
def test_accepted_formats_round_trip(
    tmp_path: Path, name: str, params: dict[str, Any], expected_format: str, tolerance: int
) -> None:
    path = _save(tmp_path, name, _pattern(), **params)
    decoded = decode_image(path)
    assert decoded.format == expected_format
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.rgb.shape == (48, 64, 3)
    assert decoded.rgb.dtype == np.uint8
    assert decoded.rgb.flags["C_CONTIGUOUS"]
    assert decoded.size_bytes == path.stat().st_size
    _assert_pattern(decoded, tolerance=tolerance)


def test_bytes_source_matches_path_source(tmp_path: Path) -> None:
    path = _save(tmp_path, "a.png", _pattern())
    from_path = decode_image(path)
    from_bytes = decode_image(path.read_bytes())
    assert from_bytes.sha256 == from_path.sha256
    np.testing.assert_array_equal(from_bytes.rgb, from_path.rgb)


def test_sha256_is_digest_of_file_bytes(tmp_path: Path) -> None:
    path = _save(tmp_path, "a.jpg", _pattern())
    decoded = decode_image(path)
    assert decoded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_supported_suffixes_are_lower_case_and_cover_the_formats() -> None:
    assert all(s == s.lower() and s.startswith(".") for s in SUPPORTED_SUFFIXES)
    expected = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif"}
    assert expected <= SUPPORTED_SUFFIXES


# --- orientation -----------------------------------------------------------------------------


def test_exif_orientation_6_rotates_and_swaps_size(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high, white, with a red block in the stored top-left corner.
    arr = np.full((20, 40, 3), 255, dtype=np.uint8)
    arr[:6, :6] = RED
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path, "rotated.png", Image.fromarray(arr), exif=exif)

    decoded = decode_image(path)
    assert (decoded.width, decoded.height) == (20, 40)
    assert decoded.rgb.shape == (40, 20, 3)
    # Turning clockwise carries the top-left corner to the top-right.
    assert tuple(decoded.rgb[0, 19]) == RED
    assert tuple(decoded.rgb[0, 0]) == WHITE
    assert tuple(decoded.rgb[39, 0]) == WHITE


def test_exif_orientation_in_jpeg(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, "rotated.jpg", _pattern(64, 48), exif=exif, quality=95)
    decoded = decode_image(path)
    assert (decoded.width, decoded.height) == (48, 64)
    # The red quadrant (stored top-left) is now top-right.
    assert np.abs(decoded.rgb[16, 36].astype(int) - np.array(RED)).max() <= 12


# --- frames and colour modes -----------------------------------------------------------------


def test_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 12), colour) for colour in (RED, BLUE, (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = decode_image(path)
    assert decoded.format == "GIF"
    assert (decoded.width, decoded.height) == (16, 12)
    assert (decoded.rgb == np.array(RED, dtype=np.uint8)).all()


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    arr = np.zeros((10, 10, 4), dtype=np.uint8)
    arr[:, :5] = (255, 0, 0, 255)  # opaque red
    arr[:, 5:] = (0, 0, 255, 0)  # fully transparent blue: must vanish
    arr[0, 0] = (0, 0, 0, 128)  # half-transparent black over white: mid grey
    path = _save(tmp_path, "rgba.png", Image.fromarray(arr))
    rgb = decode_image(path).rgb
    assert rgb.shape == (10, 10, 3)
    assert tuple(rgb[5, 2]) == RED
    assert tuple(rgb[5, 7]) == WHITE
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 0])


def test_la_is_composited_over_white(tmp_path: Path) -> None:
    grey = np.full((8, 8), 50, dtype=np.uint8)
    alpha = np.full((8, 8), 255, dtype=np.uint8)
    alpha[:, 4:] = 0
    im = Image.merge("LA", (Image.fromarray(grey), Image.fromarray(alpha)))
    rgb = decode_image(_save(tmp_path, "la.png", im)).rgb
    assert tuple(rgb[0, 0]) == (50, 50, 50)
    assert tuple(rgb[0, 7]) == WHITE


def test_grey_converts_to_rgb(tmp_path: Path) -> None:
    arr = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))
    rgb = decode_image(_save(tmp_path, "l.png", Image.fromarray(arr))).rgb
    assert rgb.shape == (4, 16, 3)
    np.testing.assert_array_equal(rgb[..., 0], arr)
    np.testing.assert_array_equal(rgb[..., 1], arr)
    np.testing.assert_array_equal(rgb[..., 2], arr)


def test_palette_converts_to_rgb(tmp_path: Path) -> None:
    im = Image.new("P", (6, 4), 1)
    im.putpalette([0, 0, 0, *RED, *BLUE] + [0] * (3 * 253))
    im.putpixel((5, 3), 2)
    rgb = decode_image(_save(tmp_path, "p.png", im)).rgb
    assert tuple(rgb[0, 0]) == RED
    assert tuple(rgb[3, 5]) == BLUE


def test_palette_with_transparency_is_composited_over_white(tmp_path: Path) -> None:
    im = Image.new("P", (6, 4), 1)
    im.putpalette([0, 0, 0, *RED, *BLUE] + [0] * (3 * 253))
    im.putpixel((0, 0), 0)
    path = _save(tmp_path, "pt.png", im, transparency=0)
    rgb = decode_image(path).rgb
    assert tuple(rgb[0, 0]) == WHITE  # index 0 is transparent black
    assert tuple(rgb[2, 2]) == RED


def test_cmyk_converts_to_rgb(tmp_path: Path) -> None:
    im = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta + yellow: red
    im.paste((0, 0, 0, 0), (4, 0, 8, 8))  # no ink: white
    rgb = decode_image(_save(tmp_path, "cmyk.tiff", im)).rgb
    assert tuple(rgb[0, 0]) == RED
    assert tuple(rgb[0, 7]) == WHITE


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    decoded = decode_image(_save(tmp_path, "cmyk.jpg", im, quality=95))
    assert decoded.format == "JPEG"
    assert np.abs(decoded.rgb[8, 8].astype(int) - np.array(RED)).max() <= 12


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path, fmt: str) -> None:
    arr = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / f"grey16.{fmt.lower()}"
    Image.fromarray(arr).save(path, fmt)
    rgb = decode_image(path).rgb
    assert rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 64, 128, 255]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_16_bit_grey_colour_key_is_exact(tmp_path: Path) -> None:
    # tRNS marks 1000 transparent; 1001 lands on the same 8-bit level but must stay opaque.
    arr = np.array([[1000, 1001, 65535]], dtype=np.uint16)
    path = tmp_path / "key16.png"
    Image.fromarray(arr).save(path, transparency=1000)
    rgb = decode_image(path).rgb
    assert tuple(rgb[0, 0]) == WHITE
    assert tuple(rgb[0, 1]) == (4, 4, 4)
    assert tuple(rgb[0, 2]) == WHITE


def test_16_bit_rgb_png(tmp_path: Path) -> None:
    # Pillow cannot write 16-bit RGB, so craft the PNG: one pixel of (65535, 32896, 0).
    ihdr = struct.pack(">IIBBBBB", 1, 1, 16, 2, 0, 0, 0)
    row = b"\x00" + struct.pack(">HHH", 65535, 32896, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(row))
        + _png_chunk(b"IEND", b"")
    )
    rgb = decode_image(data).rgb
    assert rgb.shape == (1, 1, 3)
    assert rgb[0, 0, 0] == 255 and abs(int(rgb[0, 0, 1]) - 128) <= 1 and rgb[0, 0, 2] == 0


def test_one_bit_converts_to_rgb(tmp_path: Path) -> None:
    im = Image.new("1", (8, 2), 0)
    im.putpixel((7, 1), 1)
    rgb = decode_image(_save(tmp_path, "bits.png", im)).rgb
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[1, 7]) == WHITE


# --- rejections ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    err = _decode_error(tmp_path / "nope.jpg")
    assert err.code == "file_not_found"
    assert "nope.jpg" in err.message


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "photos.jpg"
    folder.mkdir()
    err = _decode_error(folder)
    assert err.code == "not_a_file"
    assert "photos.jpg" in err.message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    err = _decode_error(path)
    assert err.code == "empty_file"
    assert "empty.jpg" in err.message
    assert _decode_error(b"").code == "empty_file"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.jpg", b"These are my holiday notes, not a photo.\n" * 20),
        ("doc.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"),
        ("random.png", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))),
    ],
)
def test_not_an_image(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    err = _decode_error(path)
    assert err.code == "not_an_image"
    assert name in err.message


def test_ico_is_unsupported(tmp_path: Path) -> None:
    path = _save(tmp_path, "favicon.ico", Image.new("RGB", (32, 32), RED))
    err = _decode_error(path)
    assert err.code == "unsupported_format"
    assert "favicon.ico" in err.message
    assert "ICO" in err.message


def test_truncated_jpeg_is_corrupt(tmp_path: Path) -> None:
    data = _noise_jpeg()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    err = _decode_error(path)
    assert err.code == "corrupt_image"
    assert "cut.jpg" in err.message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("GIF", {}),
        ("WEBP", {}),
        ("WEBP", {"lossless": True}),
        ("JPEG", {}),
    ],
)
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_files_are_corrupt(fmt: str, params: dict[str, Any], keep: float) -> None:
    rng = np.random.default_rng(3)
    im = Image.fromarray(rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    data = buf.getvalue()
    err = _decode_error(data[: int(len(data) * keep)])
    assert err.code == "corrupt_image"


def test_jpeg_with_garbage_in_the_middle_is_corrupt(tmp_path: Path) -> None:
    data = bytearray(_noise_jpeg())
    middle = len(data) // 2
    # A second start-of-frame marker inside the scan is a structural fault libjpeg cannot
    # conceal. (Plain random bytes there are often concealed: libjpeg resyncs and decodes.)
    data[middle : middle + 64] = b"\xff\xc0\x00\x11" + b"\x08" * 60
    path = tmp_path / "garbled.jpg"
    path.write_bytes(bytes(data))
    err = _decode_error(path)
    assert err.code == "corrupt_image"
    assert "garbled.jpg" in err.message


def test_damaged_jpeg_header_is_corrupt_not_unknown(tmp_path: Path) -> None:
    data = bytearray(_noise_jpeg())
    data[20:200] = bytes(180)  # keep the JPEG signature, wipe the segments after it
    path = tmp_path / "header.jpg"
    path.write_bytes(bytes(data))
    err = _decode_error(path)
    assert err.code == "corrupt_image"
    assert "header.jpg" in err.message
    assert "JPEG" in err.message


def test_header_claiming_100_megapixels_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(50_000, 2_000))
    assert path.stat().st_size < 1_000
    start = time.perf_counter()
    # Pillow's own check would warn here (100 MP is past Image.MAX_IMAGE_PIXELS); ours must
    # decide alone and quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        err = _decode_error(path)
    elapsed = time.perf_counter() - start
    # The pixel data is far too short: a decoder that got past the header would have said
    # corrupt_image (after allocating 100 MB), not image_too_large.
    assert err.code == "image_too_large"
    assert elapsed < 1.0
    assert "bomb.png" in err.message
    assert "50000 x 2000" in err.message
    assert "50,000,000" in err.message
    assert "max_pixels" in err.message


def test_max_pixels_is_the_limit(tmp_path: Path) -> None:
    path = _save(tmp_path, "ten.png", Image.new("RGB", (10, 10), RED))
    assert decode_image(path, max_pixels=100).width == 10
    err = _decode_error(path, max_pixels=99)
    assert err.code == "image_too_large"
    assert "10 x 10" in err.message


def test_raised_limit_accepts_what_the_default_refuses() -> None:
    # 8,000 x 7,000 = 56 MP; all one colour, so cheap to store and to decode.
    buf = io.BytesIO()
    Image.new("1", (8_000, 7_000), 1).save(buf, "PNG")
    data = buf.getvalue()
    assert _decode_error(data).code == "image_too_large"
    decoded = decode_image(data, max_pixels=60_000_000)
    assert (decoded.width, decoded.height) == (8_000, 7_000)


def test_wide_thin_image_is_within_the_limit(tmp_path: Path) -> None:
    path = _save(tmp_path, "strip.png", Image.new("RGB", (60_000, 1), BLUE))
    decoded = decode_image(path)
    assert (decoded.width, decoded.height) == (60_000, 1)
    assert tuple(decoded.rgb[0, 59_999]) == BLUE


def test_pillow_global_state_is_left_alone(tmp_path: Path) -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(50_000, 2_000))
    _decode_error(path)
    decode_image(_save(tmp_path, "ok.png", _pattern()))
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# --- downscale -------------------------------------------------------------------------------


def test_downscale_leaves_small_images_alone() -> None:
    arr = np.zeros((300, 400, 3), dtype=np.uint8)
    small, scale = downscale(arr, 400)
    assert small is arr
    assert scale == 1.0


def test_downscale_maps_points_back() -> None:
    arr = np.zeros((500, 1000, 3), dtype=np.uint8)
    arr[300:320, 700:720] = 255  # a bright block centred on (x=710, y=310)
    small, scale = downscale(arr, 100)
    assert small.shape == (50, 100, 3)
    assert small.flags["C_CONTIGUOUS"]
    assert scale == pytest.approx(10.0)
    weight = small[..., 0].astype(float)
    ys, xs = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    # Pixel centres sit at index + 0.5 in the edge-based coordinates boxes use.
    cx = ((xs + 0.5) * weight).sum() / weight.sum()
    cy = ((ys + 0.5) * weight).sum() / weight.sum()
    assert cx * scale == pytest.approx(710, abs=2)
    assert cy * scale == pytest.approx(310, abs=2)


def test_downscale_non_integer_factor() -> None:
    arr = np.full((567, 1234, 3), 200, dtype=np.uint8)
    small, scale = downscale(arr, 800)
    assert max(small.shape[:2]) == 800
    assert small.shape == (368, 800, 3)
    assert scale == pytest.approx(1234 / 800)
    assert (small == 200).all()


def test_downscale_tall_image() -> None:
    arr = np.zeros((3000, 1000, 3), dtype=np.uint8)
    small, scale = downscale(arr, 600)
    assert small.shape == (600, 200, 3)
    assert scale == pytest.approx(5.0)
