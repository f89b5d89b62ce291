"""Turn an image file into an upright RGB array, or say precisely why it cannot be used.

Every rejection is a `DecodeError` whose code a caller can act on (skip, report, retry with a
higher limit) and whose message names the file, so that an ingest log of thousands of photos
stays readable.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import stat
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from vultus.errors import DecodeError
from vultus.pipeline.base import RGBImage

# Pillow's format names for what we accept, and the name we report. MPO (multi-picture JPEG,
# what many phones write) is a JPEG whose first picture is the photo itself.
_ACCEPTED_FORMATS: dict[str, str] = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WEBP",
    "BMP": "BMP",
    "TIFF": "TIFF",
    "GIF": "GIF",
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)

# Exceptions Pillow's own `Image.open` treats as "not this format, try the next plugin".
_NOT_THIS_FORMAT = (SyntaxError, IndexError, TypeError, struct.error)

# What Pillow raises on damaged data, in the header or in the pixel stream.
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)

_ORIENTATION_TAG = ExifTags.Base.Orientation


@dataclass(frozen=True)
class DecodedImage:
    rgb: RGBImage  # (height, width, 3) uint8, C-contiguous, upright
    width: int
    height: int
    format: str  # "JPEG", "PNG", "WEBP", "BMP", "TIFF" or "GIF"
    sha256: str  # hex digest of the file's bytes, as stored
    size_bytes: int
    # Frames (or pages) the file holds: an animated GIF, PNG or WebP, a multi-page TIFF. Only
    # the first is decoded; callers say so (see vultus.ingest.batches.RunNotes).
    frames: int = 1


def decode_image(source: Path | bytes, *, max_pixels: int = 50_000_000) -> DecodedImage:
    """Decode a file (or its bytes) into an upright RGB image.

    Raises `DecodeError` with code `file_not_found`, `not_a_file`, `unreadable_file`,
    `empty_file`, `not_an_image`, `unsupported_format`, `image_too_large` or `corrupt_image`.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    data, label = _read_source(source)
    if not data:
        raise DecodeError(f"Cannot decode {label}: it is empty (0 bytes).", code="empty_file")
    # Hash exactly the bytes we decode, so the catalogue's identity of a photo matches its pixels.
    digest = hashlib.sha256(data).hexdigest()
    rgb, fmt, frames = _decode(data, label, max_pixels)
    return DecodedImage(
        rgb=rgb,
        width=int(rgb.shape[1]),
        height=int(rgb.shape[0]),
        format=fmt,
        sha256=digest,
        size_bytes=len(data),
        frames=frames,
    )


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    frames: int


def inspect_image(data: bytes, label: str, *, max_pixels: int = 50_000_000) -> ImageHeader:
    """What a file's header says, without decoding a pixel: for counting (`vultus add
    --dry-run`). Refuses, with `decode_image`'s codes, what is empty, not an image, of an
    unsupported format or too large; damage in the pixel data is found only by decoding."""
    if not data:
        raise DecodeError(f"Cannot decode {label}: it is empty (0 bytes).", code="empty_file")
    try:
        with _quiet_pillow_bomb_warnings(max_pixels):
            im, signature = _identify(data)
            if im is None:
                raise _unidentified(label, signature)
            with im:
                fmt, width, height = _checked(im, label, max_pixels)
                return ImageHeader(fmt, width, height, _frames(im))
    except DecodeError:
        raise
    except (Image.DecompressionBombError, *_CORRUPT) as exc:
        raise DecodeError(
            f"Cannot decode {label}: the image header is damaged ({exc}).", code="corrupt_image"
        ) from exc


def read_file(path: Path) -> bytes:
    """A file's bytes, refused with `decode_image`'s codes when it is missing, unreadable or not
    a regular file (a FIFO would block the read forever)."""
    return _read_source(path)[0]


def downscale(image: RGBImage, max_side: int) -> tuple[RGBImage, float]:
    """Shrink `image` so that its longer side is at most `max_side`.

    Returns the copy and `scale`, with original_coord = small_coord * scale. An image that
    already fits comes back as the same array with scale 1.0, so callers pay nothing for it.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    height, width = int(image.shape[0]), int(image.shape[1])
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    factor = longest / max_side
    new_width = max(1, min(max_side, round(width / factor)))
    new_height = max(1, min(max_side, round(height / factor)))
    pil = Image.fromarray(np.ascontiguousarray(image))
    # reducing_gap lets Pillow first shrink by an integer factor with `reduce` (a cheap box
    # average), then finish with an antialiased bilinear pass: near area-quality, much faster
    # than a full-size bilinear on a 50 MP photo.
    small = pil.resize((new_width, new_height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    # The longer side maps exactly; rounding the shorter side moves it by under half a pixel.
    scale = longest / max(new_width, new_height)
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8)), scale


def _read_source(source: Path | bytes) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "the image data"
    path = Path(source)
    label = str(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise DecodeError(f"Cannot decode {label}: no such file.", code="file_not_found") from exc
    except OSError as exc:
        raise DecodeError(
            f"Cannot decode {label}: {exc.strerror or exc}.", code="unreadable_file"
        ) from exc
    # Checked up front: reading a FIFO or device would block or never end.
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise DecodeError(f"Cannot decode {label}: it is {kind}.", code="not_a_file")
    try:
        return path.read_bytes(), label
    except OSError as exc:
        raise DecodeError(
            f"Cannot decode {label}: {exc.strerror or exc}.", code="unreadable_file"
        ) from exc


def _checked(im: Image.Image, label: str, max_pixels: int) -> tuple[str, int, int]:
    """The format and size an opened file's header gives, refused where not accepted. The bomb
    guard proper: the size is known before any pixel is decoded."""
    fmt = _ACCEPTED_FORMATS.get(im.format or "")
    if fmt is None:
        raise DecodeError(
            f"Cannot decode {label}: {im.format} images are not supported; use "
            "JPEG, PNG, WebP, BMP, TIFF or GIF.",
            code="unsupported_format",
        )
    width, height = im.size
    if width * height > max_pixels:
        raise _too_large(label, width, height, max_pixels)
    return fmt, width, height


def _decode(data: bytes, label: str, max_pixels: int) -> tuple[RGBImage, str, int]:
    # We never set ImageFile.LOAD_TRUNCATED_IMAGES: left False, `load()` raises on a cut-off
    # stream instead of padding it with grey, which would index a half-empty photo.
    try:
        with _quiet_pillow_bomb_warnings(max_pixels):
            im, signature = _identify(data)
            if im is None:
                raise _unidentified(label, signature)
            with im:
                fmt, width, height = _checked(im, label, max_pixels)
                im.load()
                rgb = _to_rgb_array(_upright(im))
                frames = _frames(im)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's own hard limit (twice Image.MAX_IMAGE_PIXELS) still guards plugin internals
        # such as GIF frames and TIFF tiles: reached when max_pixels is set above it, or when
        # a GIF frame claims far more than the canvas its header declared.
        raise DecodeError(
            f"Cannot decode {label}: Pillow refused it as too large ({exc}). Files this large "
            "also need PIL.Image.MAX_IMAGE_PIXELS raised.",
            code="image_too_large",
        ) from exc
    except _CORRUPT as exc:
        raise DecodeError(
            f"Cannot decode {label}: the image data is truncated or corrupt ({exc}).",
            code="corrupt_image",
        ) from exc
    return rgb, fmt, frames


def _frames(im: Image.Image) -> int:
    """How many frames or pages the file holds (1 for a still image). Counting walks a GIF's
    frames; a file whose later frames are damaged counts as what could be counted, since its
    first frame, the one indexed, decoded well."""
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except _CORRUPT:
        return 2  # more than one frame, as far as it can be read


def _unidentified(label: str, signature: str | None) -> DecodeError:
    if signature is None:
        return DecodeError(
            f"Cannot decode {label}: it is not an image file (or not one we can recognise).",
            code="not_an_image",
        )
    if signature in _ACCEPTED_FORMATS:
        return DecodeError(
            f"Cannot decode {label}: it starts like a {_ACCEPTED_FORMATS[signature]} file, but "
            "its header is corrupt.",
            code="corrupt_image",
        )
    return DecodeError(
        f"Cannot decode {label}: {signature} images are not supported; use JPEG, PNG, WebP, BMP, "
        "TIFF or GIF.",
        code="unsupported_format",
    )


def _too_large(label: str, width: int, height: int, max_pixels: int) -> DecodeError:
    return DecodeError(
        f"Cannot decode {label}: it is {width} x {height} = {width * height:,} pixels, more than "
        f"the limit of {max_pixels:,}. This guards against decompression bombs; if you trust the "
        "file, raise the `max_pixels` setting (vultus.toml or VULTUS_MAX_PIXELS).",
        code="image_too_large",
    )


def _identify(data: bytes) -> tuple[ImageFile.ImageFile | None, str | None]:
    """What `Image.open` does, minus its decompression-bomb check.

    `Image.open` warns past Image.MAX_IMAGE_PIXELS and raises past twice that, before we can see
    the size. Our `max_pixels` must decide instead, and changing MAX_IMAGE_PIXELS would change
    it for every other user of Pillow in the process. So we walk the same plugin registry in the
    same order; the header is parsed, no pixels are decoded.

    Returns the opened image, or None and the first format whose signature matched but whose
    header would not parse (so a damaged JPEG is not reported as "not an image").

    Like `Image.open`, the common formats (Pillow's `preinit`: BMP, GIF, JPEG, PPM, PNG) are
    tried before every plugin is loaded: loading all of them costs a one-off search 60 ms.
    """
    prefix = data[:16]
    signature_match: str | None = None
    tried: set[str] = set()
    for load_all in (Image.preinit, Image.init):
        load_all()
        for name in [n for n in Image.ID if n not in tried]:
            tried.add(name)
            factory, accept = Image.OPEN[name]
            if accept is not None:
                verdict = accept(prefix)
                # A str verdict is Pillow's "looks like this format, but unsupported".
                if not verdict or isinstance(verdict, str):
                    continue
            try:
                return factory(io.BytesIO(data), ""), None
            except _NOT_THIS_FORMAT:
                if accept is not None and signature_match is None:
                    signature_match = name
    return None, signature_match


@contextlib.contextmanager
def _quiet_pillow_bomb_warnings(max_pixels: int) -> Iterator[None]:
    """Silence Pillow's DecompressionBombWarning when the caller allowed images that large.

    `catch_warnings` swaps process-wide state (not thread-safe), so it is entered only when the
    caller raised max_pixels past Pillow's warning threshold; otherwise our own check has
    already refused anything Pillow would warn about.
    """
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is None or max_pixels <= pillow_limit:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. A photo with an unreadable EXIF block is kept as stored:
    its pixels decoded fine, and rejecting it for a metadata fault would lose a usable photo."""
    try:
        orientation = im.getexif().get(_ORIENTATION_TAG, 1)
    except _CORRUPT:
        return im
    # Skip exif_transpose for the common upright case: it would copy the whole image.
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return im
    try:
        turned = ImageOps.exif_transpose(im)
    except _CORRUPT:
        return im
    return turned if turned is not None else im


def _to_rgb_array(im: Image.Image) -> RGBImage:
    if im.mode.startswith("I") or im.mode == "F":
        im = _high_depth_to_l(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        # Composite over white: transparent areas of logos and cut-outs become background,
        # not the black that dropping alpha would leave (which a detector reads as hair or
        # shadow).
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba)
        im = canvas
    elif im.mode != "RGB":
        im = im.convert("RGB")
    # np.array copies: the result owns its memory and outlives the Pillow image.
    return np.array(im, dtype=np.uint8, order="C")


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey to 8-bit grey (L, or LA with a colour key) by scaling, not clipping.

    Pillow's own convert clips values above 255, which turns a 16-bit scan almost entirely
    white. Integer modes are read as 16-bit samples (how Pillow holds 16-bit PNG and TIFF);
    float images as 0..1 when they fit in it, else as 0..255.
    """
    values = np.asarray(im)
    if im.mode == "F":
        floats = values.astype(np.float64)
        finite = floats[np.isfinite(floats)]
        if finite.size and float(finite.max()) <= 1.0:
            floats = floats * 255.0
        grey8 = np.clip(np.nan_to_num(floats), 0, 255).round().astype(np.uint8)
    else:
        wide = np.clip(values.astype(np.int64), 0, 65535)
        grey8 = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    key = im.info.get("transparency")
    if isinstance(key, int) and im.mode != "F":
        # A PNG tRNS colour key names one exact 16-bit value; compare before scaling, since
        # 257 neighbouring values share each 8-bit level.
        alpha = np.where(values == key, 0, 255).astype(np.uint8)
        return Image.merge("LA", (Image.fromarray(grey8), Image.fromarray(alpha)))
    return Image.fromarray(grey8)
