"""A contact sheet of search results: the query face, then each match cropped around its face
with the face outlined, green where it is a match at the chosen false-match rate. People judge
faces by looking, not by reading distances."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vultus.errors import VultusError
from vultus.pipeline.decode import decode_image
from vultus.pipeline.video import frame_at
from vultus.search.results import SearchResult
from vultus.storage import read_location

TILE = 200
LABEL = 38
COLUMNS = 5
MATCH, NO_MATCH, QUERY = (46, 160, 67), (150, 150, 150), (30, 100, 200)


def _tile(
    photo: Path | bytes,
    box: tuple[int, int, int, int],
    colour: tuple[int, int, int],
    at: float | None = None,
) -> Image.Image:
    """The face with context around it (the box grown by 60% a side), outlined. `at`: the
    photo is a video, and the face is in its frame at `at` seconds (a track's best frame)."""
    try:
        rgb = decode_image(photo).rgb if at is None else frame_at(photo, at)
    except VultusError:
        tile = Image.new("RGB", (TILE, TILE), (60, 60, 60))
        ImageDraw.Draw(tile).text((10, TILE // 2), "image unavailable", fill="white")
        return tile
    image = Image.fromarray(rgb)
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * 2.2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    crop = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    scale = TILE / (crop[2] - crop[0])
    tile = image.crop(crop).resize((TILE, TILE), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(tile)
    outline = [
        (left - crop[0]) * scale,
        (top - crop[1]) * scale,
        (right - crop[0]) * scale,
        (bottom - crop[1]) * scale,
    ]
    draw.rectangle(outline, outline=colour, width=3)
    return tile


def _read(location: str, endpoint_url: str | None) -> bytes:
    try:
        return read_location(location, endpoint_url=endpoint_url)
    except VultusError:
        return b""  # drawn as "image unavailable", like any photo that cannot be decoded


def render_sheet(
    result: SearchResult,
    query_photo: Path | bytes | None,
    out: Path,
    *,
    endpoint_url: str | None = None,
) -> Path:
    """Write a JPEG or PNG contact sheet of `result` to `out`. Matches held in a bucket are
    read from it (`endpoint_url`: an S3-compatible store)."""
    tiles: list[tuple[Image.Image, str, tuple[int, int, int]]] = []
    if query_photo is not None and result.query_face is not None:
        label = f"query: face {result.query_face.number} of {result.faces_seen}"
        tiles.append((_tile(query_photo, result.query_face.box, QUERY), label, QUERY))
    for i, m in enumerate(result.matches, start=1):
        colour = MATCH if m.is_match else NO_MATCH
        label = f"#{i} d={m.distance:.3f}\nFMR {m.fmr:.1e} {'match' if m.is_match else ''}"
        at = None if m.video is None else m.video.best_s
        if at is not None:
            label += f" @{at:.1f}s"
        data = _read(m.image_path, endpoint_url)
        tiles.append((_tile(data, m.box, colour, at), label, colour))
    rows = max(1, -(-len(tiles) // COLUMNS))
    sheet = Image.new("RGB", (COLUMNS * (TILE + 8) + 8, rows * (TILE + LABEL + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for n, (tile, label, colour) in enumerate(tiles):
        x = 8 + (n % COLUMNS) * (TILE + 8)
        y = 8 + (n // COLUMNS) * (TILE + LABEL + 8)
        sheet.paste(tile, (x, y))
        draw.rectangle([x - 2, y - 2, x + TILE + 1, y + TILE + 1], outline=colour, width=2)
        draw.multiline_text((x + 2, y + TILE + 3), label, fill=(20, 20, 20), font=font, spacing=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=90)
    return out
