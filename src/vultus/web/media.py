"""Pictures for the pages: a face cropped with its context and outlined, a photo shrunk with
every face outlined and numbered, a query photo as an inline preview. People judge faces by
looking. Nothing here is written to disk: every picture is drawn per request from the stored
photo, so an erased face cannot linger in a thumbnail cache."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vultus.pipeline.decode import decode_image

Box = tuple[int, int, int, int]
Colour = tuple[int, int, int]

MATCH: Colour = (30, 130, 60)
OTHER: Colour = (150, 150, 150)
QUERY: Colour = (25, 95, 180)
ERASE: Colour = (180, 40, 30)
OUTLINES: dict[str, Colour] = {"match": MATCH, "other": OTHER, "query": QUERY, "erase": ERASE}


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _open(photo: Path | bytes, max_pixels: int) -> Image.Image:
    """Upright RGB by the decoder's rules (size limits, EXIF orientation), so that boxes
    found at ingest land where the face is."""
    return Image.fromarray(decode_image(photo, max_pixels=max_pixels).rgb)


def face_tile(
    photo: Path | bytes, box: Box, *, size: int, colour: Colour, max_pixels: int
) -> bytes:
    """The face with context around it (the box grown to 2.2 times its side), outlined."""
    image = _open(photo, max_pixels)
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * 2.2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    crop = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    scale = size / max(1, crop[2] - crop[0])
    tile = image.crop(crop).resize((size, size), Image.Resampling.LANCZOS)
    width = max(2, size // 80)
    ImageDraw.Draw(tile).rectangle(
        [
            (left - crop[0]) * scale,
            (top - crop[1]) * scale,
            (right - crop[0]) * scale,
            (bottom - crop[1]) * scale,
        ],
        outline=colour,
        width=width,
    )
    return _jpeg(tile)


def photo_with_boxes(
    photo: Path | bytes,
    boxes: Sequence[tuple[Box, str, Colour]],
    *,
    max_side: int,
    max_pixels: int,
) -> bytes:
    """The photo no larger than `max_side`, each face outlined and labelled."""
    image = _open(photo, max_pixels)
    scale = min(1.0, max_side / max(image.width, image.height))
    if scale < 1.0:
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.LANCZOS,
        )
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.width, image.height) / 160))
    font = ImageFont.load_default(size=max(12, width * 6))
    for (left, top, right, bottom), label, colour in boxes:
        rect = [left * scale, top * scale, right * scale, bottom * scale]
        draw.rectangle(rect, outline=colour, width=width)
        if label:
            x, y = rect[0], max(0.0, rect[1] - width * 8)
            bbox = draw.textbbox((x, y), label, font=font)
            draw.rectangle([bbox[0] - 3, bbox[1] - 2, bbox[2] + 3, bbox[3] + 2], fill=colour)
            draw.text((x, y), label, fill="white", font=font)
    return _jpeg(image)


def placeholder(text: str, size: int) -> bytes:
    """A calm grey tile where a picture may not be shown (a restricted face)."""
    tile = Image.new("RGB", (size, size), (225, 225, 222))
    draw = ImageDraw.Draw(tile)
    font = ImageFont.load_default(size=max(12, size // 12))
    bbox = draw.textbbox((0, 0), text, font=font)
    draw.text(
        ((size - (bbox[2] - bbox[0])) / 2, (size - (bbox[3] - bbox[1])) / 2),
        text,
        fill=(70, 70, 70),
        font=font,
    )
    return _jpeg(tile)


def preview(photo: bytes, *, max_side: int, max_pixels: int) -> tuple[str, int, int]:
    """An uploaded photo as a small inline JPEG (data URL), with the photo's full size: the
    page draws face boxes over it in the photo's own pixel coordinates. The upload itself is
    never stored."""
    image = _open(photo, max_pixels)
    width, height = image.width, image.height
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    data = base64.b64encode(_jpeg(image, quality=80)).decode()
    return f"data:image/jpeg;base64,{data}", width, height


def data_uri(jpeg: bytes) -> str:
    """A JPEG inlined in the page: drawn for one view and gone with it, never a second
    request (which would be a second view to audit)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


# EXIF tags: when the photo was taken, and where (the GPS block).
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_TAKEN, _TAKEN_FALLBACK = 36867, 306  # DateTimeOriginal, DateTime


def _degrees(value: object, ref: object) -> float | None:
    try:
        d, m, s = (float(x) for x in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    sign = -1.0 if str(ref).upper() in {"S", "W"} else 1.0
    return sign * (d + m / 60 + s / 3600)


def photo_facts(photo: bytes) -> dict[str, str]:
    """When and where the photo says it was taken (EXIF), as far as it says: "taken" and
    "place" ("52.52000, 13.40500"), each absent when the file does not say."""
    facts: dict[str, str] = {}
    try:
        exif = Image.open(io.BytesIO(photo)).getexif()
        taken = exif.get_ifd(_EXIF_IFD).get(_TAKEN) or exif.get(_TAKEN_FALLBACK)
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:  # a damaged EXIF block says nothing; the photo itself was decoded
        return facts
    if taken:
        facts["taken"] = str(taken).strip().replace(":", "-", 2)
    lat, lon = _degrees(gps.get(2), gps.get(1)), _degrees(gps.get(4), gps.get(3))
    if lat is not None and lon is not None:
        facts["place"] = f"{lat:.5f}, {lon:.5f}"
    return facts
