"""Given a manifest (CSV or JSONL) listing photos and their sources, when I ingest it, then
each photo lands under its own row's source, bad rows are reported by line and the good ones
land, a rerun adds nothing, and a manifest that cannot be right is refused before any work."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from conftest import add_test_source
from vultus.catalog.models import Image, IngestRun
from vultus.cli import app
from vultus.engine import Engine
from vultus.errors import ConsentRequiredError, ManifestError, RightsError, SourceError


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    """An engine with two sources: "test" and "scans"."""
    add_test_source(empty_engine, "scans")
    return empty_engine


@pytest.fixture(scope="module")
def photos(dev_photos: list[tuple[Path, str]]) -> list[Path]:
    """Six dev photos of six different people."""
    first: dict[str, Path] = {}
    for path, who in dev_photos:
        first.setdefault(who, path)
    return list(first.values())[:6]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def images_by_source(engine: Engine) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for image in engine.list_images(limit=1000):
        out.setdefault(image.source, set()).add(image.path)
    return out


def test_each_photo_lands_under_its_rows_source_and_a_rerun_adds_nothing(
    engine: Engine, photos: list[Path], tmp_path: Path
) -> None:
    manifest = tmp_path / "list.csv"
    rows = [[str(p), "test" if i % 2 else "scans"] for i, p in enumerate(photos)]
    write_csv(manifest, ["path", "source"], rows)

    summaries = engine.add_manifest(manifest)

    assert {s.source: s.images_added for s in summaries} == {"scans": 3, "test": 3}
    assert all(s.errors == [] for s in summaries)
    assert images_by_source(engine) == {
        "scans": {str(p) for p in photos[0::2]},
        "test": {str(p) for p in photos[1::2]},
    }
    # Run again: every photo is recognised by its content and skipped before any analysis.
    again = engine.add_manifest(manifest)
    assert sum(s.images_added for s in again) == 0
    assert sum(s.images_duplicate for s in again) == 6
    assert sum(len(v) for v in images_by_source(engine).values()) == 6


def test_relative_paths_are_read_from_the_manifests_folder(
    engine: Engine, photos: list[Path], tmp_path: Path
) -> None:
    (tmp_path / "scans").mkdir()
    copy = tmp_path / "scans" / "a.jpg"
    shutil.copyfile(photos[0], copy)
    manifest = write_csv(tmp_path / "list.csv", ["path"], [["scans/a.jpg"]])
    [summary] = engine.add_manifest(manifest, source="scans")
    assert summary.images_added == 1 and summary.errors == []
    assert images_by_source(engine) == {"scans": {str(copy)}}


def test_bad_rows_are_reported_by_line_and_good_rows_land(
    engine: Engine, photos: list[Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photos[2].read_bytes()[:2000])
    manifest = write_csv(
        tmp_path / "list.csv",
        ["path", "uri", "source", "consent"],
        [
            [str(photos[0]), "", "test", ""],  # line 2: good
            [str(tmp_path / "gone.jpg"), "", "test", ""],  # line 3: no such file
            ["", "ftp://example.org/a.jpg", "test", ""],  # line 4: a scheme we do not read
            [str(photos[1]), "", "test", "many"],  # line 5: consent is not a record id
            [str(corrupt), "", "scans", ""],  # line 6: corrupt image
            [str(photos[1]), str(photos[1].as_uri()), "test", ""],  # line 7: both path and uri
            ["", photos[3].as_uri(), "scans", ""],  # line 8: good, as a file:// URI
        ],
    )

    summaries = {s.source: s for s in engine.add_manifest(manifest)}

    assert summaries["test"].images_added == 1
    assert summaries["scans"].images_added == 1
    errors = {
        msg.split(": ", 1)[0].rsplit(" ", 1)[-1]: code
        for s in summaries.values()
        for _, code, msg in s.errors
    }
    assert errors == {
        "3": "file_not_found",
        "4": "unsupported_uri",
        "5": "bad_value",
        "6": "corrupt_image",
        "7": "bad_row",
    }
    # Each error names the manifest and the line, so a person can find the row and fix it.
    messages = [m for s in summaries.values() for _, _, m in s.errors]
    assert all(m.startswith(f"{manifest} line ") for m in messages)
    # The corrupt photo's error is recorded under its own row's source.
    assert [c for _, c, _ in summaries["scans"].errors] == ["corrupt_image"]
    assert images_by_source(engine) == {
        "test": {str(photos[0])},
        "scans": {str(photos[3])},
    }


def test_jsonl_manifest_with_a_broken_line(
    engine: Engine, photos: list[Path], tmp_path: Path
) -> None:
    manifest = tmp_path / "list.jsonl"
    lines = [
        json.dumps({"path": str(photos[0]), "source": "scans"}),
        "{not json",
        json.dumps({"uri": photos[1].as_uri()}),  # the default source
        json.dumps({"path": str(photos[2]), "sorce": "scans"}),  # a misspelt field
        "",
    ]
    manifest.write_text("\n".join(lines))

    summaries = {s.source: s for s in engine.add_manifest(manifest, source="test")}

    assert summaries["scans"].images_added == 1
    assert summaries["test"].images_added == 1
    # Lines that name no readable source are recorded in the default source's run.
    assert sorted(m.split(":")[0] for _, _, m in summaries["test"].errors) == [
        f"{manifest} line 2",
        f"{manifest} line 4",
    ]
    assert "sorce" in summaries["test"].errors[1][2]


def _nothing_written(engine: Engine) -> bool:
    with engine.catalog.session() as s:
        runs = s.scalar(select(func.count()).select_from(IngestRun))
        images = s.scalar(select(func.count()).select_from(Image))
    return runs == 0 and images == 0


def test_unregistered_sources_are_refused_before_any_work(
    engine: Engine, photos: list[Path], tmp_path: Path
) -> None:
    names = ["test", "press", "scans", "archive"]
    rows = [[str(p), s] for p, s in zip(photos[:4], names, strict=True)]
    manifest = write_csv(tmp_path / "list.csv", ["path", "source"], rows)
    with pytest.raises(SourceError) as caught:
        engine.add_manifest(manifest)
    assert caught.value.code == "source_unknown"
    assert "archive, press" in caught.value.message
    assert _nothing_written(engine)


def test_rows_without_a_source_need_a_default(
    engine: Engine, photos: list[Path], tmp_path: Path
) -> None:
    manifest = write_csv(tmp_path / "list.csv", ["path", "source"], [[str(photos[0]), ""]])
    with pytest.raises(SourceError) as caught:
        engine.add_manifest(manifest)
    assert caught.value.code == "source_missing" and "line 2" in caught.value.message
    assert _nothing_written(engine)
    [summary] = engine.add_manifest(manifest, source="scans")
    assert summary.source == "scans" and summary.images_added == 1


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("list.csv", "file,who\na.jpg,test\n", "neither CSV"),
        ("list.jsonl", "[1, 2]\n", "neither CSV"),
        ("list.txt", "\x00\x01\x02 binary junk", "neither CSV"),
        ("list.csv", "path,source,sorce\na.jpg,test,x\n", "unknown column"),
        ("list.csv", "\n\n", "empty"),
    ],
)
def test_a_file_that_is_no_manifest_is_refused(
    engine: Engine, tmp_path: Path, name: str, content: str, says: str
) -> None:
    manifest = tmp_path / name
    manifest.write_text(content)
    with pytest.raises(ManifestError) as caught:
        engine.add_manifest(manifest, source="test")
    assert says in caught.value.message
    assert _nothing_written(engine)


def test_dry_run_counts_per_source_and_writes_nothing(
    engine: Engine, photos: list[Path], tmp_path: Path
) -> None:
    rows = [[str(photos[0]), "test"], [str(photos[1]), "scans"], [str(photos[2]), "scans"]]
    manifest = write_csv(tmp_path / "list.csv", ["path", "source"], rows)
    summaries = {s.source: s for s in engine.add_manifest(manifest, dry_run=True)}
    assert {k: s.images_added for k, s in summaries.items()} == {"test": 1, "scans": 2}
    assert all(s.dry_run for s in summaries.values())
    assert _nothing_written(engine)


def test_cli_add_manifest(photos: list[Path], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        add_test_source(engine, "scans")
    manifest = write_csv(
        tmp_path / "list.csv",
        ["path", "source"],
        [[str(photos[0]), "test"], [str(photos[1]), "scans"], [str(tmp_path / "x.jpg"), ""]],
    )
    runner = CliRunner()
    args = ["--data-dir", str(data_dir), "add", "--manifest", str(manifest), "--workers", "1"]
    result = runner.invoke(app, [*args, "--source", "test"])
    assert result.exit_code == 3, result.output  # finished, with the missing file's error
    assert "into scans" in result.output and "into test" in result.output
    assert "line 4" in result.output and "file_not_found" in result.output

    result = runner.invoke(app, ["--data-dir", str(data_dir), "add", "--help"])
    assert "--manifest" in result.output and "s3://" in result.output


def test_rows_carry_their_consent_and_a_consent_of_another_source_is_refused(
    engine: Engine, photos: list[Path], tmp_path: Path
) -> None:
    engine.add_source(
        "event",
        lawful_basis_code="consent",
        special_condition="explicit_consent",
        purpose="event photos",
        retention_days=30,
    )
    consent = engine.add_consent("event", "guest 0042", notice_version="v3")
    wrong = write_csv(
        tmp_path / "wrong.csv",
        ["path", "source", "consent"],
        [[str(photos[0]), "event", str(consent)], [str(photos[1]), "test", str(consent)]],
    )
    with pytest.raises(RightsError, match="not given for source 'test'"):
        engine.add_manifest(wrong)
    assert _nothing_written(engine)
    # A row of the consent source that names no consent refuses the manifest, by line.
    missing = write_csv(
        tmp_path / "missing.csv",
        ["path", "source", "consent"],
        [[str(photos[0]), "event", str(consent)], [str(photos[1]), "event", ""]],
    )
    with pytest.raises(ConsentRequiredError) as caught:
        engine.add_manifest(missing)
    assert caught.value.code == "consent_required" and "(line 3)" in caught.value.message
    assert _nothing_written(engine)

    manifest = write_csv(
        tmp_path / "list.csv",
        ["path", "source", "consent"],
        [[str(photos[0]), "event", str(consent)], [str(photos[1]), "test", ""]],
    )
    engine.add_manifest(manifest)
    # Withdrawing the consent erases the photo that rested on it, and only that one.
    assert engine.withdraw_consent(consent) == 1
    assert images_by_source(engine) == {"test": {str(photos[1])}}
