"""The Art. 15 access package and the Art. 30 / Art. 35 reports, on synthetic images only."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from vultus.errors import ConfigError
from vultus.rights.package import (
    AccessMatch,
    AccessPackage,
    Recipient,
    write_access_package,
)
from vultus.rights.reports import (
    REPORT_KINDS,
    RecipientFacts,
    ReportFacts,
    SourceFacts,
    dpia_markdown,
    ropa_markdown,
    to_html,
    write_report,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RED, BLUE, GREEN = (220, 20, 20), (20, 20, 200), (20, 200, 20)
EVIL = "<script>alert(1)</script>"


# ---- helpers ---------------------------------------------------------------------------------


def painted(
    path: Path,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    *,
    decoy: tuple[int, int, int, int] | None = None,
) -> Path:
    """A blue image with a red square at `box` (and a green one at `decoy`), saved as PNG."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, box)
    if decoy is not None:
        image.paste(GREEN, decoy)
    image.save(path)
    return path


def match(face_id: int, image_id: int, path: Path, box: tuple[int, int, int, int], **kw: Any):
    fields: dict[str, Any] = dict(
        face_id=face_id,
        image_id=image_id,
        image_path=str(path),
        box=box,
        distance=0.31,
        fmr=2e-6,
        source="staff",
        source_kind="folder",
        lawful_basis="legitimate_interests",
        special_condition="archiving_research",
        legal_reference=None,
        purpose="staff directory",
        added_at=NOW - timedelta(days=10),
        retain_until=NOW + timedelta(days=355),
        subject=None,
        restricted=False,
        template=None,
    )
    fields.update(kw)
    return AccessMatch(**fields)


def package(matches: list[AccessMatch], **kw: Any) -> AccessPackage:
    fields: dict[str, Any] = dict(
        request_ref="REQ-42",
        generated_at=NOW,
        controller="ACME Archive",
        fmr_target=1e-3,
        threshold=0.37,
        gallery_size=5000,
        matches=matches,
        recipients=[],
        include_templates=False,
        verification="selfie matched ID photo at distance 0.31",
    )
    fields.update(kw)
    return AccessPackage(**fields)


def read_zip(path: Path) -> tuple[zipfile.ZipFile, dict[str, Any], str]:
    zf = zipfile.ZipFile(path)
    return zf, json.loads(zf.read("data.json")), zf.read("report.html").decode("utf-8")


def centre(image: Image.Image) -> tuple[int, ...]:
    px = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert isinstance(px, tuple)
    return px


def near(a: tuple[int, ...], b: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


# ---- access package --------------------------------------------------------------------------


def test_zip_holds_exactly_the_documents_and_one_crop_per_available_face(tmp_path: Path) -> None:
    a = painted(tmp_path / "a.png", (400, 300), (100, 100, 200, 200))
    b = painted(tmp_path / "b.png", (400, 300), (50, 50, 110, 110))
    gone = tmp_path / "gone.jpg"
    matches = [
        match(1, 10, a, (100, 100, 200, 200)),
        match(2, 10, a, (250, 100, 330, 180)),
        match(3, 11, b, (50, 50, 110, 110)),
        match(4, 12, gone, (10, 10, 50, 50)),
    ]
    out = write_access_package(package(matches), tmp_path / "out" / "package.zip")

    assert out == tmp_path / "out" / "package.zip"
    zf, data, _ = read_zip(out)
    assert sorted(zf.namelist()) == sorted(
        ["README.txt", "report.html", "data.json", "crops/1.jpg", "crops/2.jpg", "crops/3.jpg"]
    )
    # One entry per image, grouping its faces.
    assert [img["image_id"] for img in data["images"]] == [10, 11, 12]
    assert [f["face_id"] for f in data["images"][0]["faces"]] == [1, 2]
    # Nothing but the package is left in the folder (the temporary file was moved into place).
    assert [p.name for p in out.parent.iterdir()] == ["package.zip"]


def test_data_json_describes_each_image(tmp_path: Path) -> None:
    a = painted(tmp_path / "a.png", (400, 300), (100, 100, 200, 200))
    m = match(
        1,
        10,
        a,
        (100, 100, 200, 200),
        subject="Jane Doe",
        special_condition="substantial_public_interest",
        legal_reference="Archives Act s. 7",
    )
    _, data, _ = read_zip(write_access_package(package([m]), tmp_path / "p.zip"))

    image = data["images"][0]
    assert image["source"] == "staff"
    assert image["lawful_basis"]["code"] == "legitimate_interests"
    assert "Art. 6(1)(f)" in image["lawful_basis"]["text"]
    assert "Art. 9(2)(g)" in image["special_condition"]["text"]
    assert image["legal_reference"] == "Archives Act s. 7"
    assert image["purpose"] == "staff directory"
    assert image["added_at"] == (NOW - timedelta(days=10)).isoformat()
    assert image["retain_until"] == (NOW + timedelta(days=355)).isoformat()
    assert image["subjects"] == ["Jane Doe"]
    assert image["faces"][0]["crop"] == "crops/1.jpg"
    assert data["request_ref"] == "REQ-42"
    assert data["fmr_target"] == 1e-3 and data["threshold"] == 0.37
    assert data["gallery_size"] == 5000
    assert data["verification"] == "selfie matched ID photo at distance 0.31"


def test_templates_only_when_asked(tmp_path: Path) -> None:
    a = painted(tmp_path / "a.png", (400, 300), (100, 100, 200, 200))
    m = match(1, 10, a, (100, 100, 200, 200), template=[0.25, -0.5, 0.125])

    zf, data, report = read_zip(write_access_package(package([m]), tmp_path / "no.zip"))
    assert "template" not in zf.read("data.json").decode().lower()
    assert not any("template" in k for k in all_keys(data))
    assert "0.125" not in report

    _, data, _ = read_zip(
        write_access_package(package([m], include_templates=True), tmp_path / "yes.zip")
    )
    assert data["images"][0]["faces"][0]["template"] == [0.25, -0.5, 0.125]


def test_crop_is_the_box_grown_by_a_quarter_and_comes_from_the_right_place(
    tmp_path: Path,
) -> None:
    # The decoy square would be at the crop's centre if the box were read as (top, left, ...).
    img = painted(tmp_path / "a.png", (400, 300), (100, 40, 200, 140), decoy=(30, 90, 130, 190))
    m = match(1, 10, img, (100, 40, 200, 140))
    zf, _, _ = read_zip(write_access_package(package([m]), tmp_path / "p.zip"))

    crop = Image.open(io.BytesIO(zf.read("crops/1.jpg")))
    assert crop.size == (150, 150)  # 100 px box + 25 px each side
    assert near(centre(crop), RED)
    assert near(crop.convert("RGB").getpixel((3, 3)), BLUE)  # type: ignore[arg-type]


def test_crop_is_clipped_to_the_image_and_at_most_256_px(tmp_path: Path) -> None:
    img = painted(tmp_path / "big.png", (1000, 800), (200, 200, 600, 500))
    near_edge = painted(tmp_path / "edge.png", (300, 300), (0, 0, 80, 80))
    matches = [
        match(1, 10, img, (200, 200, 600, 500)),  # grown: 600 x 450, scaled to 256 x 192
        match(2, 11, near_edge, (0, 0, 80, 80)),  # grown: (-20, -20, 100, 100), clipped
    ]
    zf, _, _ = read_zip(write_access_package(package(matches), tmp_path / "p.zip"))

    big = Image.open(io.BytesIO(zf.read("crops/1.jpg")))
    assert big.size == (256, 192)
    assert near(centre(big), RED)
    edge = Image.open(io.BytesIO(zf.read("crops/2.jpg")))
    assert edge.size == (100, 100)


def test_crop_of_an_exif_rotated_photo_uses_oriented_coordinates(tmp_path: Path) -> None:
    # Build the photo as a viewer shows it (portrait, red square in the lower half), then store it
    # turned on its side with EXIF orientation 6 so only exif_transpose puts it upright. The
    # box lies below y = 200, outside the stored 400 x 200 pixels: read unturned, it cannot work.
    upright = Image.new("RGB", (200, 400), BLUE)
    box = (40, 250, 140, 350)
    upright.paste(RED, box)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, format="JPEG", quality=95, exif=exif)
    with Image.open(path) as check:
        assert check.size == (400, 200)
        assert ImageOps.exif_transpose(check).size == (200, 400)

    zf, _, _ = read_zip(
        write_access_package(package([match(1, 10, path, box)]), tmp_path / "p.zip")
    )

    crop = Image.open(io.BytesIO(zf.read("crops/1.jpg")))
    assert crop.size == (150, 150)  # grown (15, 225, 165, 375), inside the upright 200 x 400
    assert near(centre(crop), RED)


def test_missing_image_is_reported_not_fatal(tmp_path: Path) -> None:
    a = painted(tmp_path / "a.png", (400, 300), (100, 100, 200, 200))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture at all")
    matches = [
        match(1, 10, a, (100, 100, 200, 200)),
        match(2, 11, tmp_path / "deleted.jpg", (0, 0, 10, 10)),
        match(3, 12, broken, (0, 0, 10, 10)),
    ]
    zf, data, report = read_zip(write_access_package(package(matches), tmp_path / "p.zip"))

    assert "crops/2.jpg" not in zf.namelist() and "crops/3.jpg" not in zf.namelist()
    by_id = {img["image_id"]: img for img in data["images"]}
    assert by_id[10]["image_file_available"] is True
    for image_id, face_id in ((11, 2), (12, 3)):
        assert by_id[image_id]["image_file_available"] is False
        assert by_id[image_id]["note"] == "image file unavailable"
        assert by_id[image_id]["faces"][0]["crop"] is None
        assert 'src="crops/' + str(face_id) not in report
    assert "image file unavailable" in report


def test_report_escapes_hostile_text_and_is_accessible(tmp_path: Path) -> None:
    a = painted(tmp_path / "a.png", (400, 300), (100, 100, 200, 200))
    m = match(1, 10, a, (100, 100, 200, 200), source=EVIL, subject=EVIL, purpose=EVIL)
    pkg = package(
        [m],
        controller=EVIL,
        recipients=[Recipient(NOW, EVIL, EVIL, EVIL, "search", [1])],
    )
    _, data, report = read_zip(write_access_package(pkg, tmp_path / "p.zip"))

    assert "<script" not in report.lower()
    assert "&lt;script&gt;" in report
    assert data["images"][0]["source"] == EVIL  # JSON keeps the value as it is
    assert '<html lang="en">' in report
    assert "<caption>" in report and 'scope="col"' in report
    # Every image has alt text, and it is the only one (one match).
    images = re.findall(r"<img\b[^>]*>", report)
    assert len(images) == 1
    assert re.search(r'alt="[^"]+"', images[0])
    assert 'src="crops/1.jpg"' in images[0]
    # The server's file path is not disclosed.
    assert str(tmp_path) not in report
    assert str(tmp_path) not in json.dumps(data)


def test_recipients_appear_in_report_and_data(tmp_path: Path) -> None:
    a = painted(tmp_path / "a.png", (400, 300), (100, 100, 200, 200))
    recipients = [
        Recipient(
            NOW - timedelta(days=2), "investigator-7", "fraud inquiry", "CASE-9", "search", [1]
        ),
        Recipient(NOW - timedelta(days=5), "hr-export", None, None, "export", [1]),
    ]
    pkg = package([match(1, 10, a, (100, 100, 200, 200))], recipients=recipients)
    _, data, report = read_zip(write_access_package(pkg, tmp_path / "p.zip"))

    assert "investigator-7" in report and "CASE-9" in report and "fraud inquiry" in report
    assert "hr-export" in report
    # Oldest first.
    assert [r["actor"] for r in data["recipients"]] == ["hr-export", "investigator-7"]
    assert data["recipients"][1]["face_ids"] == [1]
    assert data["recipients"][1]["case_ref"] == "CASE-9"
    assert "distance" in report.lower() and "false-match rate" in report.lower()
    assert "0.310" in report  # the match's distance
    assert "erasure" in report.lower() and "restriction" in report.lower()


def test_no_match_package_is_still_written(tmp_path: Path) -> None:
    zf, data, report = read_zip(write_access_package(package([]), tmp_path / "p.zip"))
    assert sorted(zf.namelist()) == ["README.txt", "data.json", "report.html"]
    assert data["images"] == [] and data["recipients"] == []
    assert "no face that matches you" in report


# ---- ROPA and DPIA ---------------------------------------------------------------------------


def facts(**kw: Any) -> ReportFacts:
    fields: dict[str, Any] = dict(
        controller="ACME Archive",
        generated_at=NOW,
        data_dir="/srv/vultus",
        sources=[
            SourceFacts(
                "staff_photos",
                "folder",
                "legitimate_interests",
                "employment",
                "Labour Act s. 5",
                "staff directory",
                730,
                1234,
                1301,
            ),
            SourceFacts(
                "press_archive",
                "archive",
                "public_task",
                "archiving_research",
                None,
                "historical research",
                None,
                48766,
                48699,
            ),
        ],
        search_purposes=["fraud investigation", "rights request"],
        recipients=[
            RecipientFacts("alice-key", "searcher", NOW - timedelta(days=40), None, False),
            RecipientFacts("bob-key", "admin", NOW - timedelta(days=400), None, True),
        ],
        security_measures=["Full-disk encryption on the host"],
        gallery_size=50000,
        subjects=321,
        model_id="dlib-resnet-v1",
        search_fmr_target=1e-3,
        threshold_distance=0.3712,
        tar_at_threshold=0.873,
        fmr_table=[(1e-2, 0.41, 0.93), (1e-3, 0.3712, 0.873)],
        searches_per_purpose={"fraud investigation": 77, "rights request": 4},
        erasures=17,
        access_requests=9,
        open_requests=2,
        overdue_requests=1,
        suppression_entries=16,
        restricted_faces=3,
        retention_purged=480,
        pair_fmr_at_threshold=1e-6,
    )
    fields.update(kw)
    return ReportFacts(**fields)


def test_ropa_markdown_states_the_facts() -> None:
    md = ropa_markdown(facts())
    for text in (
        "ACME Archive",
        "staff_photos",
        "press_archive",
        "staff directory",
        "historical research",
        "fraud investigation",
        "Art. 6(1)(f)",
        "Art. 9(2)(b)",
        "Labour Act s. 5",
        "730 days",
        "alice-key",
        "revoked",
        "Full-disk encryption on the host",
        "1,234",
        "50,000",
        "480",
    ):
        assert text in md, text
    assert "special-category biometric data under Art. 9(1)" in md
    # The Art. 6(1)(f) basis is stated whole: the balancing test, not a sentence cut off.
    assert "interests or fundamental rights and freedoms override them" in md
    assert "Art. 30(1)(e)" in md and "None by design" in md
    # A source without a retention period is flagged for the controller.
    assert "TO COMPLETE" in md and "no limit configured" in md


def test_dpia_markdown_states_the_facts_and_the_false_match_arithmetic() -> None:
    md = dpia_markdown(facts())
    assert "DRAFT" in md and "TODO" in md
    for text in (
        "staff_photos",
        "press_archive",
        "50,000",
        "321",
        "77",
        "87.3%",
        "0.3712",
        "17",
        "Art. 35(7)(a)",
        "Art. 35(7)(b)",
        "Art. 35(7)(c)",
        "Art. 35(7)(d)",
    ):
        assert text in md, text
    # 50,000 faces x 1e-6 per pair = 0.05 false candidates per search; 81 searches -> 4.05.
    assert "**0.05**" in md
    assert "4.05" in md
    # Erasures are counted in faces, and the erasures they came in.
    counted = dpia_markdown(facts(erasures=2, faces_erased=9))
    assert "Faces erased on request: 9 (in 2 erasure(s))" in counted
    # Without the calibrated per-pair rate, it is bounded from the per-search target.
    bounded = dpia_markdown(facts(pair_fmr_at_threshold=None))
    assert "at most 0.001" in bounded


def test_dpia_flags_searches_under_unconfigured_purposes() -> None:
    md = dpia_markdown(facts(searches_per_purpose={"fraud investigation": 3, "curiosity": 2}))
    assert re.search(r"not configured:\*\* curiosity", md)


def test_to_html_escapes_and_renders_the_subset() -> None:
    text = "\n".join(
        [
            "# Title <b>",
            "",
            "A **bold** claim & more",
            "continued.",
            "",
            "- one <i>",
            "- two",
            "",
            "Table: Caption <x>",
            "",
            "| Name | Count |",
            "| --- | ---: |",
            "| a\\|b <script> | 3 |",
            "",
            "Unpaired ** star",
        ]
    )
    page = to_html(text, "T <title>")
    assert '<html lang="en">' in page
    assert "<title>T &lt;title&gt;</title>" in page
    assert "<h1>Title &lt;b&gt;</h1>" in page
    assert "<p>A <strong>bold</strong> claim &amp; more continued.</p>" in page
    assert "<li>one &lt;i&gt;</li>" in page and "<li>two</li>" in page
    assert "<caption>Caption &lt;x&gt;</caption>" in page
    assert '<th scope="col">Name</th>' in page
    assert "<td>a|b &lt;script&gt;</td>" in page  # the escaped pipe stays inside its cell
    assert '<td class="num">3</td>' in page
    assert "<p>Unpaired ** star</p>" in page
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page


def test_markdown_reports_carry_user_text_as_text() -> None:
    # Given purposes, a controller and a source typed to make markup in a Markdown viewer ...
    marked = ["_em_ ~~gone~~", "![x](http://t.example/p.png)", "&lt;b&gt;", "- list", "1. list"]
    hostile = facts(
        controller="ACME \x1b[2J(cleared)",
        search_purposes=marked,
        sources=[
            SourceFacts("**b**", "folder", "consent", "explicit_consent", None, "p", 30, 1, 1)
        ],
    )
    for text in (ropa_markdown(hostile), dpia_markdown(hostile)):
        # ... every value is escaped: no emphasis, strike-through, image, entity or list ...
        assert "\\_em\\_ \\~\\~gone\\~\\~" in text
        assert "_em_" not in text and "~~gone" not in text and "![x]" not in text
        assert "&lt;" not in text.replace("\\&lt;", "")
        assert "- - list" not in text and "- 1. list" not in text
        # ... and no terminal escape code survives.
        assert "\x1b" not in text and "ACME \\[2J(cleared)" in text


def test_write_report_writes_markdown_and_html(tmp_path: Path) -> None:
    hostile = facts(
        sources=[
            SourceFacts(EVIL + "|x", "folder", "consent", "explicit_consent", None, "p", 30, 1, 1)
        ]
    )
    for kind in ("ropa", "dpia"):
        paths = write_report(kind, hostile, tmp_path / "reports")
        assert paths == [tmp_path / "reports" / f"{kind}.md", tmp_path / "reports" / f"{kind}.html"]
        page = paths[1].read_text(encoding="utf-8")
        assert "<script" not in page.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<table>" in page and "<caption>" in page and 'scope="col"' in page
        # The pipe in the source's name did not split its table cell.
        assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;|x</td>" in page
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "dpia.html",
        "dpia.md",
        "ropa.html",
        "ropa.md",
    ]


def test_unknown_report_kind_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_report("minutes", facts(), tmp_path)
    assert not any(tmp_path.iterdir())


def test_documents_never_name_a_placeholder_controller(tmp_path: Path) -> None:
    """An access package or a report that would not name the controller is refused, with
    what to do, rather than written with a stand-in."""
    for controller in ("", "   "):
        with pytest.raises(ConfigError) as caught:
            write_access_package(package([], controller=controller), tmp_path / "p.zip")
        assert caught.value.code == "controller_unset" and "vultus.toml" in caught.value.message
        for kind in REPORT_KINDS:
            with pytest.raises(ConfigError) as caught:
                write_report(kind, facts(controller=controller), tmp_path / "reports")
            assert caught.value.code == "controller_unset"
    assert not (tmp_path / "p.zip").exists() and not (tmp_path / "reports").exists()
