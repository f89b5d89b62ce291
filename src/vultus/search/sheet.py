"""A contact sheet of search results: the query face, then each match cropped around its face
with the face outlined, green where it is a match at the chosen false-match rate. People judge
faces by looking, not by reading distances.

Two forms from the same tiles: a picture (.jpg or .png: `vultus search --sheet`), and the case
sheet (.html), a self-contained page for the case file with the purpose, the case reference,
who searched and when, each match's verdict and odds, its pictures inlined as data URIs (it
opens offline, prints, and fetches nothing). The web UI's case sheet is this one.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
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


@dataclass(frozen=True)
class CaseFacts:
    """What a case sheet says about the search besides its results."""

    purpose: str
    case_ref: str | None
    actor: str
    when: datetime
    controller: str = ""


def render_sheet(
    result: SearchResult,
    query_photo: Path | bytes | None,
    out: Path,
    *,
    endpoint_url: str | None = None,
    facts: CaseFacts | None = None,
) -> Path:
    """Write a contact sheet of `result` to `out`: a JPEG or PNG, or with a .html name the
    case sheet (which needs `facts`). Matches held in a bucket are read from it
    (`endpoint_url`: an S3-compatible store)."""
    if out.suffix.lower() in {".html", ".htm"}:
        if facts is None:
            raise ValueError("a case sheet (.html) states the search's purpose, who and when")
        photos = {m.image_id: _read(m.image_path, endpoint_url) for m in result.matches}
        query = query_tile(result, query_photo)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(case_sheet_html(result, query, photos, facts), encoding="utf-8")
        return out
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


def _data_uri(tile: Image.Image) -> str:
    buffer = io.BytesIO()
    tile.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


CASE_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1c1d1f; margin: 24px; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 20px 0 8px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts div { display: contents; }
dt { color: #55595e; } dd { margin: 0; }
.query { display: flex; gap: 16px; align-items: flex-start; }
ol { list-style: none; padding: 0; display: grid; gap: 12px;
     grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); }
li { border: 2px solid #bbb; border-radius: 6px; padding: 6px; break-inside: avoid; }
li.match { border-color: #2ea043; }
img { display: block; width: 200px; height: 200px; }
.verdict { font-weight: 700; margin: 4px 0 0; } .small { font-size: 12px; color: #55595e; }
.decision { font-size: 16px; font-weight: 650; }
@media print { body { margin: 0; } }
"""


def query_tile(result: SearchResult, query_photo: Path | bytes | None) -> str | None:
    """The query face, outlined, as a data URI: a caller that does not keep the query photo
    (the web UI) keeps this instead, for the case sheet."""
    if query_photo is None or result.query_face is None:
        return None
    return _data_uri(_tile(query_photo, result.query_face.box, QUERY))


def case_sheet_html(
    result: SearchResult,
    query: str | None,
    photos: Mapping[int, bytes],
    facts: CaseFacts,
) -> str:
    """The case sheet as one HTML page: `query` is the `query_tile`, `photos` each match's
    photo by image id (an empty value draws "image unavailable")."""
    e = html.escape
    rows = [
        ("Purpose", facts.purpose),
        ("Case reference", facts.case_ref or "none given"),
        ("Searched by", facts.actor),
        ("When", facts.when.strftime("%Y-%m-%d %H:%M UTC")),
        ("Search (audit entry)", str(result.search_id) if result.search_id else "not audited"),
        ("Gallery", f"{result.gallery_size:,} faces"),
        (
            "A match means",
            f"at most 1 in {round(1 / result.fmr_target):,} chance per search "
            "that a stranger's face comes this close",
        ),
    ]
    if facts.controller:
        rows.insert(0, ("Controller", facts.controller))
    figure = ""
    if query is not None and result.query_face is not None:
        figure = (
            f'<figure><img src="{query}" alt="The query face"><figcaption class="small">'
            f"Query: face {result.query_face.number} of {result.faces_seen} in the photo"
            "</figcaption></figure>"
        )
    cards = []
    for i, m in enumerate(result.matches, start=1):
        colour = MATCH if m.is_match else NO_MATCH
        tile = _data_uri(_tile(photos.get(m.image_id, b""), m.box, colour))
        verdict = "Match" if m.is_match else "Possible match, check by eye"
        odds = m.odds or "odds unknown: no calibration"
        cards.append(
            f'<li class="{"match" if m.is_match else "possible"}"><img src="{tile}" '
            f'alt="{e(verdict)}: face {m.face_id}"><p class="verdict">#{i} {e(verdict)}</p>'
            f'<p>{e(odds)}</p><p class="small">{e(m.file_name)}'
            f"{' · id ' + e(m.external_id) if m.external_id else ''}<br>"
            f"source {e(m.source)} · {e(m.lawful_basis.replace('_', ' '))}"
            f"{'<br>person: ' + e(m.subject) if m.subject else ''}<br>face {m.face_id}</p></li>"
        )
    facts_html = "".join(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in rows)
    decision = result.decision[:1].upper() + result.decision[1:]
    listing = f"<ol>{''.join(cards)}</ol>" if cards else "<p>No face came close enough.</p>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Case sheet {e(facts.case_ref or '')} · Vultus</title>"
        f"<style>{CASE_STYLE}</style></head><body>"
        f'<h1>Case sheet: face search</h1><div class="query">{figure}'
        f'<dl class="facts">{facts_html}</dl></div>'
        f'<p class="decision">{e(decision)}.</p>'
        f"<h2>Results, closest first ({len(result.matches)})</h2>{listing}"
        '<p class="small">Made by Vultus. Each match is a calibrated decision; a possible '
        "match is for a person to check by eye. The search is in the audit log.</p>"
        "</body></html>"
    )
