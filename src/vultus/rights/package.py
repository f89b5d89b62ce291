"""The Art. 15 access package: what the controller holds about one person, as a zip they can
read (report.html), a machine can read (data.json), and their face crops.

The Engine gathers the facts (the matches at a strict false-match rate, the audit log's searches
that returned them) into an `AccessPackage`; this module only renders it. It never touches the
catalog, so what goes into the package is exactly what the caller passed, nothing more.
"""

from __future__ import annotations

import html
import io
import json
import math
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from vultus.config import require_controller
from vultus.errors import VultusError
from vultus.files import atomic_file
from vultus.lawful_basis import ART6_BASES, ART9_CONDITIONS
from vultus.pipeline.decode import decode_image
from vultus.pipeline.video import player_time
from vultus.storage import read_location

PACKAGE_FORMAT = "vultus-access-package"
PACKAGE_VERSION = 1

# The crop shows the face with a little context (25% of the box each side) and no more: the
# rest of the photo may show other people, whose rights Art. 15(4) says the copy must respect.
CROP_MARGIN = 0.25
CROP_MAX_SIDE = 256
UNAVAILABLE = "image file unavailable"

SOURCE_KINDS_TEXT: dict[str, str] = {
    "folder": "a folder of photos",
    "upload": "photos uploaded to the system",
    "archive": "a photo archive",
    "video": "frames taken from video",
    "object_storage": "photos in object storage",
}

ACTIONS_TEXT: dict[str, str] = {
    "search": "searched the catalog",
    "search_face": "searched the catalog",
    "search_subject": "searched the catalog by a named person",
    "search_template": "searched the catalog",
    "export": "exported results",
    "access": "prepared an access request",
}


@dataclass
class AccessMatch:
    face_id: int
    image_id: int
    image_path: str  # read to cut the crop; never written into the package (see _image_entry)
    box: tuple[int, int, int, int]  # left, top, right, bottom, in EXIF-oriented pixels
    distance: float
    # Estimated false-match rate of this match: the chance that a face of someone else, in a
    # gallery of `AccessPackage.gallery_size` faces, comes at least this close (search.Match.fmr).
    fmr: float
    source: str
    source_kind: str
    lawful_basis: str  # Art. 6(1) code, see vultus.lawful_basis.ART6_BASES
    special_condition: str  # Art. 9(2) code, see vultus.lawful_basis.ART9_CONDITIONS
    legal_reference: str | None
    purpose: str
    added_at: datetime
    retain_until: datetime
    subject: str | None
    restricted: bool
    template: list[float] | None = None
    # A face track of a video: its span and best frame (start_s, end_s, best_s), and the
    # best frame's crop as the catalog keeps it (a JPEG), which the package shows.
    video: tuple[float, float, float] | None = None
    still: bytes | None = field(default=None, repr=False)
    # The collections (AWS Rekognition-compatible API) holding this face, each under the names
    # their clients use: CollectionId, FaceId, ImageId, ExternalImageId, UserId.
    collections: list[dict[str, str | None]] = field(default_factory=list)


@dataclass
class Recipient:
    """One audited search or export whose results contained the person's faces."""

    at: datetime
    actor: str
    purpose: str | None
    case_ref: str | None
    action: str
    face_ids: list[int]


@dataclass
class AccessPackage:
    request_ref: str | None
    generated_at: datetime
    controller: str
    fmr_target: float
    threshold: float
    gallery_size: int
    matches: list[AccessMatch]
    recipients: list[Recipient]
    include_templates: bool
    verification: str | None
    # Who reviewed the candidates, and what the review found (see vultus.rights.review).
    reviewer: str | None = None
    review_summary: str | None = None


@dataclass
class _Crop:
    face_id: int
    name: str | None  # zip member name, None when no crop could be cut
    size: tuple[int, int] | None
    note: str | None


# ---- public API ------------------------------------------------------------------------------


def write_access_package(
    package: AccessPackage,
    out: Path,
    *,
    max_pixels: int = 50_000_000,
    endpoint_url: str | None = None,
) -> Path:
    """Write the access package zip to `out` and return `out`.

    The zip is built in a temporary file beside `out` and moved into place, so a reader never
    sees half a package and a failure leaves any previous file untouched. `max_pixels` is the
    decoder's limit; pass the same value ingest used so every catalogued photo can be cropped.
    `endpoint_url` is the S3-compatible store that photos held in a bucket are read from.
    """
    require_controller(package.controller, "an access package")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    matches = _unique(package.matches)
    crops, jpegs = _cut_crops(matches, max_pixels, endpoint_url)
    data = _data_json(package, matches, crops)
    report = _report_html(package, matches, crops)
    readme = _readme(package)
    stamp = _zip_time(package.generated_at)

    # 0600: the package holds special-category data, so only the owner may read it until they
    # choose to share it.
    with atomic_file(out) as fh, zipfile.ZipFile(fh, "w") as zf:
        _put(zf, "README.txt", readme.encode("utf-8"), stamp, zipfile.ZIP_DEFLATED)
        _put(zf, "report.html", report.encode("utf-8"), stamp, zipfile.ZIP_DEFLATED)
        body = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        _put(zf, "data.json", body.encode("utf-8"), stamp, zipfile.ZIP_DEFLATED)
        for name, jpeg in jpegs.items():
            # JPEG is already compressed; deflating it again only costs time.
            _put(zf, name, jpeg, stamp, zipfile.ZIP_STORED)
    return out


def describe_basis(code: str) -> str:
    """Art. 6(1) code in words, e.g. 'legitimate_interests' -> 'Art. 6(1)(f): legitimate ...'."""
    return ART6_BASES.get(code, f"{code} (code not recognised)")


def describe_condition(code: str) -> str:
    """Art. 9(2) code in words."""
    return ART9_CONDITIONS.get(code, f"{code} (code not recognised)")


def one_in(rate: float) -> str:
    """A rate as people read it: 'about 1 in 250,000'."""
    if math.isnan(rate):
        return "unknown"
    if rate <= 0:
        return "too small to measure"
    if rate >= 0.1:
        return f"about {rate:.0%}"
    return f"about 1 in {_sig2(1 / rate):,}"


# ---- crops ------------------------------------------------------------------------------------


def _sig2(n: float) -> int:
    """Round to two significant figures: 'about 1 in 1,234,567' claims false precision."""
    if n < 100:
        return int(round(n))
    magnitude = 10 ** (int(math.floor(math.log10(n))) - 1)
    return int(round(n / magnitude) * magnitude)


def _unique(matches: Iterable[AccessMatch]) -> list[AccessMatch]:
    seen: set[int] = set()
    out: list[AccessMatch] = []
    for m in matches:
        if m.face_id not in seen:
            seen.add(m.face_id)
            out.append(m)
    return out


def _by_image(matches: list[AccessMatch]) -> dict[int, list[AccessMatch]]:
    groups: dict[int, list[AccessMatch]] = {}
    for m in matches:
        groups.setdefault(m.image_id, []).append(m)
    return groups


def _cut_crops(
    matches: list[AccessMatch], max_pixels: int, endpoint_url: str | None
) -> tuple[dict[int, _Crop], dict[str, bytes]]:
    crops: dict[int, _Crop] = {}
    jpegs: dict[str, bytes] = {}
    for m in [m for m in matches if m.still is not None]:
        # A face track's best frame, as kept at ingest: the video is not decoded again.
        name = f"crops/{m.face_id}.jpg"
        jpegs[name] = m.still or b""
        with Image.open(io.BytesIO(jpegs[name])) as still:
            crops[m.face_id] = _Crop(m.face_id, name, still.size, None)
    for faces in _by_image([m for m in matches if m.still is None]).values():
        try:
            # decode_image is what ingest used: it applies the EXIF orientation with
            # ImageOps.exif_transpose, so the boxes (stored in upright pixels) land on the face.
            data = read_location(faces[0].image_path, endpoint_url=endpoint_url)
            image = Image.fromarray(decode_image(data, max_pixels=max_pixels).rgb)
        except (VultusError, OSError, ValueError):
            # A photo moved or deleted since ingest must not block the person's access request:
            # say so in the package and go on with what is still there.
            for m in faces:
                crops[m.face_id] = _Crop(m.face_id, None, None, UNAVAILABLE)
            continue
        for m in faces:
            region = _grow(m.box, image.width, image.height)
            if region is None:
                crops[m.face_id] = _Crop(m.face_id, None, None, "face box lies outside the image")
                continue
            tile = image.crop(region)
            tile.thumbnail((CROP_MAX_SIDE, CROP_MAX_SIDE), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            tile.save(buf, format="JPEG", quality=90)
            name = f"crops/{m.face_id}.jpg"
            jpegs[name] = buf.getvalue()
            crops[m.face_id] = _Crop(m.face_id, name, tile.size, None)
    return crops, jpegs


def _grow(
    box: tuple[int, int, int, int], width: int, height: int
) -> tuple[int, int, int, int] | None:
    left, top, right, bottom = box
    dx, dy = (right - left) * CROP_MARGIN, (bottom - top) * CROP_MARGIN
    region = (
        max(0, int(math.floor(left - dx))),
        max(0, int(math.floor(top - dy))),
        min(width, int(math.ceil(right + dx))),
        min(height, int(math.ceil(bottom + dy))),
    )
    if region[2] <= region[0] or region[3] <= region[1]:
        return None
    return region


# ---- data.json --------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat()


def _data_json(
    package: AccessPackage, matches: list[AccessMatch], crops: dict[int, _Crop]
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": PACKAGE_FORMAT,
        "version": PACKAGE_VERSION,
        "request_ref": package.request_ref,
        "generated_at": _iso(package.generated_at),
        "controller": package.controller,
        "verification": package.verification,
        "reviewed_by": package.reviewer,
        "review": package.review_summary,
        "fmr_target": package.fmr_target,
        "threshold": package.threshold,
        "gallery_size": package.gallery_size,
        "fmr_explanation": _fmr_sentence(package),
    }
    # Only name the option when it was used, so a package without templates holds no trace of
    # the word a reader (or a test) would look for.
    if package.include_templates:
        data["include_templates"] = True
    data["images"] = [
        _image_entry(faces, crops, package.include_templates)
        for faces in _by_image(matches).values()
    ]
    data["recipients"] = [
        {
            "at": _iso(r.at),
            "actor": r.actor,
            "action": r.action,
            "purpose": r.purpose,
            "case_ref": r.case_ref,
            "face_ids": list(r.face_ids),
        }
        for r in sorted(package.recipients, key=lambda r: r.at)
    ]
    return data


def _image_entry(
    faces: list[AccessMatch], crops: dict[int, _Crop], include_templates: bool
) -> dict[str, Any]:
    first = faces[0]
    # The file path is left out on purpose: folder and file names on the controller's server
    # can name other people, and the image id is enough to refer to the photo in a request.
    entry: dict[str, Any] = {
        "image_id": first.image_id,
        "source": first.source,
        "source_kind": first.source_kind,
        "lawful_basis": {"code": first.lawful_basis, "text": describe_basis(first.lawful_basis)},
        "special_condition": {
            "code": first.special_condition,
            "text": describe_condition(first.special_condition),
        },
        "legal_reference": first.legal_reference,
        "purpose": first.purpose,
        "added_at": _iso(first.added_at),
        "retain_until": _iso(first.retain_until),
        "subjects": sorted({m.subject for m in faces if m.subject}),
        "kind": "video" if first.video is not None else "photo",
    }
    available = any(crops[m.face_id].note != UNAVAILABLE for m in faces)
    entry["image_file_available"] = available
    if not available:
        entry["note"] = UNAVAILABLE
    face_entries = []
    for m in faces:
        crop = crops[m.face_id]
        face: dict[str, Any] = {
            "face_id": m.face_id,
            "box": list(m.box),
            "distance": m.distance,
            "fmr": m.fmr,
            "subject": m.subject,
            "restricted": m.restricted,
            "crop": crop.name,
        }
        if m.video is not None:
            start, end, best = m.video
            face["video"] = {"start_s": start, "end_s": end, "best_frame_s": best}
        face["collections"] = [dict(c) for c in m.collections]
        if crop.note and crop.note != UNAVAILABLE:
            face["note"] = crop.note
        if include_templates:
            face["template"] = None if m.template is None else [float(x) for x in m.template]
        face_entries.append(face)
    entry["faces"] = face_entries
    return entry


# ---- report.html ------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(value: datetime, *, time: bool = False) -> str:
    text = f"{value:%Y-%m-%d %H:%M}" if time else f"{value:%Y-%m-%d}"
    if time and value.tzinfo is not None:
        text += f" {value.tzname() or ''}".rstrip()
    return text


def _fmr_sentence(package: AccessPackage) -> str:
    return (
        f"A face counts as a match only when its distance to the person's photo is at most "
        f"{package.threshold:.3f}. This threshold was set so that, in a catalog of "
        f"{package.gallery_size:,} faces, the chance that a search for someone who is not in "
        f"it wrongly returns a face is {one_in(package.fmr_target)} (false-match rate target "
        f"{package.fmr_target:g}). Each match's own estimated false-match rate is the chance "
        f"that a face of someone else in the catalog would come at least that close: the "
        f"smaller it is, the surer the match."
    )


_STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.5; max-width: 62rem;
       margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
caption { text-align: left; font-weight: bold; padding: .4rem 0; }
th, td { border: 1px solid #999; padding: .35rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { display: block; max-width: 128px; height: auto; }
.note { color: #8a1c1c; font-weight: bold; }
"""


def _report_html(
    package: AccessPackage, matches: list[AccessMatch], crops: dict[int, _Crop]
) -> str:
    groups = _by_image(matches)
    controller = _e(package.controller)
    ref = _e(package.request_ref) if package.request_ref else None
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Your data held by {controller}: right of access (Art. 15 GDPR)</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>Your personal data held by {controller}</h1>",
        "<p>This is our answer to your request to see the personal data we hold about you "
        "(right of access, Art. 15 of the General Data Protection Regulation).</p>",
        "<ul>",
        f"<li>Prepared: {_e(_when(package.generated_at, time=True))}</li>",
    ]
    if ref:
        parts.append(f"<li>Request reference: {ref}</li>")
    if package.verification:
        parts.append(f"<li>How we checked it is you: {_e(package.verification)}</li>")
    if package.review_summary:
        parts.append(f"<li>How we found your photos: {_e(package.review_summary)}</li>")
    parts.append("</ul>")

    # ---- summary
    parts.append("<h2>What we found</h2>")
    if matches:
        parts.append(
            f"<p>We compared your photo with all {package.gallery_size:,} faces in our catalog. "
            f"We found <strong>{len(matches)} face(s) that match you in {len(groups)} "
            f"photo(s)</strong>. Each is shown below, with where the photo came from, why we hold "
            f"it, how long we will keep it and who has seen it.</p>"
        )
    else:
        parts.append(
            f"<p>We compared your photo with all {package.gallery_size:,} faces in our catalog "
            "and found <strong>no face that matches you</strong>"
            + (
                ": a person checked every face our system proposed and judged that none is you."
                if package.review_summary
                else " at the strictness described below."
            )
            + " This means we hold no photo of you that our system can find.</p>"
        )
    missing = [i for i, faces in groups.items() if crops[faces[0].face_id].note == UNAVAILABLE]
    if missing:
        parts.append(
            f'<p class="note">For {len(missing)} photo(s) the image file is unavailable '
            "(moved or deleted since it was catalogued), so we cannot show the face. We still "
            "hold the catalog record, listed below.</p>"
        )

    # ---- how matching works
    parts += [
        "<h2>How close each match is</h2>",
        "<p>Our system turns each face into a list of numbers (a face template) and measures "
        "the distance between two templates: the smaller the distance, the more alike the "
        "faces. Two photos of the same person are usually close; photos of different people "
        "are usually far apart, but not always.</p>",
        f"<p>{_e(_fmr_sentence(package))}</p>",
    ]

    # ---- faces table
    if matches:
        parts += [
            "<table>",
            "<caption>Faces that match you</caption>",
            "<thead><tr>",
            '<th scope="col">Face</th><th scope="col">Face number</th>'
            '<th scope="col">Photo number</th><th scope="col">Distance</th>'
            '<th scope="col">Estimated false-match rate</th>'
            '<th scope="col">Name linked to it</th><th scope="col">Status</th>',
            "</tr></thead>",
            "<tbody>",
        ]
        for m in matches:
            crop = crops[m.face_id]
            if crop.name and crop.size:
                alt = f"Face {m.face_id}, cropped from photo {m.image_id} (source {m.source})"
                cell = (
                    f'<img src="{_e(crop.name)}" alt="{_e(alt)}" '
                    f'width="{crop.size[0]}" height="{crop.size[1]}">'
                )
            else:
                cell = f'<span class="note">{_e(crop.note or UNAVAILABLE)}</span>'
            status = (
                "Restricted (Art. 18): stored only, not otherwise used"
                if m.restricted
                else "In use"
            )
            where = f"{m.image_id}"
            if m.video is not None:
                start, end, best = m.video
                where += (
                    f" (a video: you appear from {player_time(start)} to {player_time(end)}; "
                    f"the picture is the frame at {player_time(best)})"
                )
            parts.append(
                "<tr>"
                f"<td>{cell}</td>"
                f'<th scope="row">{m.face_id}</th>'
                f"<td>{_e(where)}</td>"
                f'<td class="num">{m.distance:.3f}</td>'
                f'<td class="num">{_e(one_in(m.fmr))} ({m.fmr:.1e})</td>'
                f"<td>{_e(m.subject) if m.subject else 'none'}</td>"
                f"<td>{_e(status)}</td>"
                "</tr>"
            )
        parts += ["</tbody>", "</table>"]

        # ---- why and how long
        parts += [
            "<h2>Why we hold these photos and for how long</h2>",
            "<p>Faces are biometric data, a special category of personal data (Art. 9(1) GDPR). "
            "We may process them only with a legal basis (Art. 6(1)) and one of the conditions "
            "of Art. 9(2). These are ours, for each photo:</p>",
            "<table>",
            "<caption>Source, legal basis, purpose and retention of each photo</caption>",
            "<thead><tr>",
            '<th scope="col">Photo number</th><th scope="col">Where it came from</th>'
            '<th scope="col">Legal basis (Art. 6)</th>'
            '<th scope="col">Condition for biometric data (Art. 9)</th>'
            '<th scope="col">Purpose</th><th scope="col">Added</th>'
            '<th scope="col">Kept until</th>',
            "</tr></thead>",
            "<tbody>",
        ]
        for image_id, faces in groups.items():
            m = faces[0]
            kind = SOURCE_KINDS_TEXT.get(m.source_kind, m.source_kind)
            condition = describe_condition(m.special_condition)
            if m.legal_reference:
                condition += f" (law: {m.legal_reference})"
            parts.append(
                "<tr>"
                f'<th scope="row">{image_id}</th>'
                f"<td>{_e(m.source)} ({_e(kind)})</td>"
                f"<td>{_e(describe_basis(m.lawful_basis))}</td>"
                f"<td>{_e(condition)}</td>"
                f"<td>{_e(m.purpose)}</td>"
                f"<td>{_e(_when(m.added_at))}</td>"
                f"<td>{_e(_when(m.retain_until))}</td>"
                "</tr>"
            )
        parts += ["</tbody>", "</table>"]

    # ---- collections
    held = [(m.face_id, c) for m in matches for c in m.collections]
    if held:
        parts += [
            "<h2>Collections that hold your faces</h2>",
            "<p>Applications connected to our system group faces into named collections, under "
            "their own identifiers. These are the ones holding your faces.</p>",
            "<table>",
            "<caption>Your faces in collections</caption>",
            "<thead><tr>",
            '<th scope="col">Face number</th><th scope="col">Collection</th>'
            '<th scope="col">Face id</th><th scope="col">Image id</th>'
            '<th scope="col">External image id</th><th scope="col">User id</th>',
            "</tr></thead>",
            "<tbody>",
        ]
        for face_id, c in held:
            parts.append(
                "<tr>"
                f'<th scope="row">{face_id}</th>'
                f"<td>{_e(c['CollectionId'])}</td>"
                f"<td>{_e(c['FaceId'])}</td>"
                f"<td>{_e(c['ImageId'])}</td>"
                f"<td>{_e(c['ExternalImageId'] or 'none')}</td>"
                f"<td>{_e(c['UserId'] or 'none')}</td>"
                "</tr>"
            )
        parts += ["</tbody>", "</table>"]

    # ---- recipients
    parts.append("<h2>Who received your data</h2>")
    if package.recipients:
        actors = sorted({r.actor for r in package.recipients})
        parts += [
            "<p>Our audit log records every search and export. These are the ones whose results "
            f"included at least one of your faces. Recipients: {_e(', '.join(actors))}.</p>",
            "<table>",
            "<caption>Searches and exports that returned your faces</caption>",
            "<thead><tr>",
            '<th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th>'
            '<th scope="col">Purpose</th><th scope="col">Case reference</th>'
            '<th scope="col">Your face numbers</th>',
            "</tr></thead>",
            "<tbody>",
        ]
        for r in sorted(package.recipients, key=lambda r: r.at):
            action = ACTIONS_TEXT.get(r.action, r.action)
            parts.append(
                "<tr>"
                f'<th scope="row">{_e(_when(r.at, time=True))}</th>'
                f"<td>{_e(r.actor)}</td>"
                f"<td>{_e(action)}</td>"
                f"<td>{_e(r.purpose or 'not stated')}</td>"
                f"<td>{_e(r.case_ref or 'none')}</td>"
                f"<td>{_e(', '.join(str(i) for i in r.face_ids))}</td>"
                "</tr>"
            )
        parts += ["</tbody>", "</table>"]
    else:
        parts.append("<p>Our audit log shows no search or export that returned your faces.</p>")
    parts.append(
        "<p>The face search runs on our own systems and sends your data to no outside service.</p>"
    )

    # ---- rights
    quote = f" quoting the reference <strong>{ref}</strong> and" if ref else ""
    parts += [
        "<h2>Your rights</h2>",
        "<ul>",
        "<li><strong>Erasure</strong> (Art. 17): ask us to delete these faces and photos. We "
        "also keep a record that stops the same face being added again.</li>",
        "<li><strong>Restriction</strong> (Art. 18): ask us to keep the data but stop using it "
        "in searches, for example while you contest a match.</li>",
        "<li><strong>Rectification</strong> (Art. 16): tell us if a face is not you or a name "
        "linked to it is wrong.</li>",
        "<li><strong>Objection</strong> (Art. 21): object to processing based on legitimate "
        "interests or a public task.</li>",
        "<li><strong>Complaint</strong> (Art. 77): you may complain to a data protection "
        "supervisory authority.</li>",
        "</ul>",
        f"<p>To make a request, contact {controller}{quote} the face or photo numbers above. "
        "We answer within one month (Art. 12(3)).</p>",
    ]

    # ---- files
    parts += [
        "<h2>Files in this package</h2>",
        "<ul>",
        "<li>report.html: this page.</li>",
        "<li>data.json: the same facts in a machine-readable form (Art. 20 portability).</li>",
        "<li>crops/: a cut-out of each face we found, named by face number.</li>",
    ]
    if package.include_templates:
        parts.append(
            "<li>The face templates (the numbers our system computed from each face) are "
            "included in data.json.</li>"
        )
    else:
        parts.append(
            "<li>The face templates (the numbers computed from each face) are not included; "
            "you can ask for them.</li>"
        )
    parts += ["</ul>", "</main>", "</body>", "</html>", ""]
    return "\n".join(parts)


# ---- README.txt and zip helpers ---------------------------------------------------------------


def _readme(package: AccessPackage) -> str:
    extra = (
        " data.json also holds the face templates, the numbers computed from each face."
        if package.include_templates
        else ""
    )
    return (
        f"This package answers a request for access to personal data (Art. 15 GDPR) made to "
        f"{package.controller}. Open report.html in a web browser for a plain-language account "
        "of the photos in which we found your face, why and for how long we hold them, and who "
        "has received them; data.json holds the same facts in machine-readable form, one entry "
        "per photo; the crops folder holds a cut-out of each face, named by its face number."
        f"{extra}\n"
    )


def _zip_time(value: datetime) -> tuple[int, int, int, int, int, int]:
    # ZIP cannot store dates before 1980; stamping every entry with the package's time keeps
    # the archive reproducible from the same facts.
    year = max(1980, value.year)
    return (year, value.month, value.day, value.hour, value.minute, value.second)


def _put(
    zf: zipfile.ZipFile,
    name: str,
    payload: bytes,
    stamp: tuple[int, int, int, int, int, int],
    compression: int,
) -> None:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = compression
    info.external_attr = 0o600 << 16
    zf.writestr(info, payload)
