"""Manifests: the list of images to ingest, as a file, so that millions of files need not be
walked. CSV with a header row, or JSONL (one JSON object a line); one image a row:

    path,source                              {"uri": "s3://archive/1998/001.jpg", "source": "press"}
    1998/001.jpg,press-archive               {"path": "/mnt/scans/002.tif", "source": "scans"}

Columns: `path` (local; relative to the manifest's folder) or `uri` (`s3://bucket/key`,
`file:///path`), `source` (a registered source; the caller's default where empty) and
`consent` (the id of the consent record a photo rests on, for consent-based sources).

Read as a stream, twice: a first pass checks the whole file (its format, and that every
source it names is registered) before any work is done; the second yields the rows. Neither
holds more than one row at a time. A bad row is reported with its line number and the run
goes on.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vultus.errors import ManifestError, SourceError
from vultus.ingest.batches import BadItem, Item
from vultus.storage import is_s3, local_path, split_s3

COLUMNS = ("path", "uri", "source", "consent")
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
# Lines named in a refusal: enough to find the pattern, not a wall of numbers.
SHOWN_LINES = 5


@dataclass
class ManifestScan:
    format: str  # "csv" or "jsonl"
    rows: int = 0
    sources: set[str] = field(default_factory=set)
    consents: set[tuple[str, int]] = field(default_factory=set)
    no_source: list[int] = field(default_factory=list)  # lines with no source and no default
    no_source_count: int = 0
    # Per source, rows that name no consent record (first lines, and how many): refused
    # where the source rests on consent, which the caller knows.
    no_consent: dict[str, list[int]] = field(default_factory=dict)
    no_consent_count: dict[str, int] = field(default_factory=dict)


class Manifest:
    """A manifest file. `default_source` and `default_consent` stand in for empty cells."""

    def __init__(
        self,
        path: Path | str,
        *,
        default_source: str | None = None,
        default_consent: int | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.folder = str(self.path.resolve().parent)
        self.default_source = default_source
        self.default_consent = default_consent
        self.format = self._detect_format()

    def scan(self) -> ManifestScan:
        """Read the whole manifest once: refuse it when a row names no source and there is no
        default, and gather what the caller must check before any work (sources, consents)."""
        scan = ManifestScan(self.format)
        for row in self._rows(locations=False):
            scan.rows += 1
            if row.source is not None:
                scan.sources.add(row.source)
            elif isinstance(row, BadItem) and row.code == "no_source":
                scan.no_source_count += 1
                if row.line is not None and len(scan.no_source) < SHOWN_LINES:
                    scan.no_source.append(row.line)
            if isinstance(row, Item) and row.consent is not None:
                scan.consents.add((row.source, row.consent))
            elif isinstance(row, Item):
                shown = scan.no_consent.setdefault(row.source, [])
                scan.no_consent_count[row.source] = scan.no_consent_count.get(row.source, 0) + 1
                if row.line is not None and len(shown) < SHOWN_LINES:
                    shown.append(row.line)
        if scan.no_source_count:
            lines = ", ".join(map(str, scan.no_source))
            more = " ..." if scan.no_source_count > len(scan.no_source) else ""
            raise SourceError(
                f"{self.path}: {scan.no_source_count:,} row(s) name no source (line {lines}"
                f"{more}); fill the `source` column or give a default with --source",
                code="source_missing",
            )
        return scan

    def __iter__(self) -> Iterator[Item | BadItem]:
        return self._rows(locations=True)

    def _rows(self, *, locations: bool) -> Iterator[Item | BadItem]:
        """The rows; without `locations`, as the check pass needs them: the path or URI as
        written, unchecked (it wants only sources and consents, and goes faster for it)."""
        rows = self._jsonl() if self.format == "jsonl" else self._csv()
        for line, fields in rows:
            yield fields if isinstance(fields, BadItem) else self._row(line, fields, locations)

    # -- formats -------------------------------------------------------------------------------
    def _detect_format(self) -> str:
        """By suffix, else by the first character; either way the first row must parse."""
        try:
            with self.path.open("rb") as fh:
                head = fh.read(64 * 1024)
        except FileNotFoundError:
            raise ManifestError(f"{self.path}: no such manifest", code="file_not_found") from None
        except OSError as exc:
            raise ManifestError(f"{self.path}: {exc.strerror or exc}") from None
        first = next((ln for ln in head.lstrip(b"\xef\xbb\xbf").splitlines() if ln.strip()), b"")
        if not first:
            raise ManifestError(f"{self.path}: the manifest is empty")
        suffix = self.path.suffix.lower()
        jsonl = suffix in JSONL_SUFFIXES or (suffix != ".csv" and first.lstrip()[:1] == b"{")
        if jsonl:
            try:
                if not isinstance(json.loads(first), dict):
                    raise ValueError("not an object")
            except ValueError:
                raise ManifestError(
                    f"{self.path}: neither CSV with a header row nor JSONL: its first line is "
                    "not a JSON object"
                ) from None
            return "jsonl"
        header = next(csv.reader([first.decode("utf-8", errors="replace")]), [])
        names = [h.strip().lower() for h in header]
        if "path" not in names and "uri" not in names:
            raise ManifestError(
                f"{self.path}: neither CSV with a header row nor JSONL: a CSV manifest's first "
                f"line names its columns, among them `path` or `uri` ({', '.join(COLUMNS)})"
            )
        unknown = [h for h in names if h not in COLUMNS]
        if unknown:
            raise ManifestError(
                f"{self.path}: unknown column(s) {', '.join(map(repr, unknown))}; a manifest's "
                f"columns are {', '.join(COLUMNS)}"
            )
        return "csv"

    def _csv(self) -> Iterator[tuple[int, dict[str, Any] | BadItem]]:
        with self.path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
            reader = csv.reader(fh)
            header = next(cells for cells in reader if any(c.strip() for c in cells))
            names = [h.strip().lower() for h in header]
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) > len(names):
                    yield (
                        line,
                        BadItem(
                            cells[0] if cells else "",
                            None,
                            "bad_row",
                            f"{len(cells)} fields, but the header names {len(names)}",
                            line,
                        ),
                    )
                    continue
                yield line, dict(zip(names, cells, strict=False))

    def _jsonl(self) -> Iterator[tuple[int, dict[str, Any] | BadItem]]:
        with self.path.open("rb") as fh:
            for line, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    fields = json.loads(raw)
                except ValueError as exc:
                    yield line, BadItem("", None, "bad_row", f"not valid JSON ({exc})", line)
                    continue
                if not isinstance(fields, dict):
                    yield line, BadItem("", None, "bad_row", "not a JSON object", line)
                    continue
                unknown = sorted(set(fields) - set(COLUMNS))
                if unknown:
                    yield (
                        line,
                        BadItem(
                            str(fields.get("path") or fields.get("uri") or ""),
                            None,
                            "bad_row",
                            f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                            f"{', '.join(COLUMNS)}",
                            line,
                        ),
                    )
                    continue
                yield line, fields

    # -- one row -------------------------------------------------------------------------------
    def _row(self, line: int, fields: dict[str, Any], locations: bool) -> Item | BadItem:
        named = str(fields.get("path") or fields.get("uri") or "")
        try:
            source = _text(fields.get("source"), "source") or self.default_source
        except ValueError as exc:
            return BadItem(named, None, "bad_value", str(exc), line)
        if source is None:
            return BadItem(named, None, "no_source", "no source", line)
        try:
            path, uri = _text(fields.get("path"), "path"), _text(fields.get("uri"), "uri")
            consent = _consent(fields.get("consent"), self.default_consent)
        except ValueError as exc:
            return BadItem(named, source, "bad_value", str(exc), line)
        if bool(path) == bool(uri):
            what = "both `path` and `uri`" if path else "neither `path` nor `uri`"
            return BadItem(named, source, "bad_row", f"the row has {what}; give one", line)
        if not locations:
            return Item(named, source, consent, line)
        try:
            location = self._location(path, uri)
        except SourceError as exc:
            return BadItem(named, source, exc.code, exc.message, line)
        return Item(location, source, consent, line)

    def _location(self, path: str | None, uri: str | None) -> str:
        if uri is not None:
            if is_s3(uri):
                if not split_s3(uri)[1]:
                    raise SourceError(f"{uri}: names a bucket, not an object", code="bad_uri")
                return uri
            from_uri = local_path(uri)  # file://; refuses other schemes
            assert from_uri is not None
            local = str(from_uri)
        else:
            # os.path, not pathlib: this runs per row, and pathlib's parsing was a third of
            # the time of a rerun over rows already held. An absolute path stays as it is.
            local = os.path.join(self.folder, os.path.expanduser(path or ""))
        # Normalised, not resolved: resolving costs a system call per folder of the path,
        # per row. The location is the caller's name for the file; its content is its identity.
        return os.path.normpath(local)


def _text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"`{column}` must be text, not {json.dumps(value)}")
    return value.strip() or None


def _consent(value: Any, default: int | None) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise ValueError(f"`consent` must be a consent record's id, not {json.dumps(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"`consent` must be a consent record's id, not {json.dumps(value)}")
