"""The Art. 30 record of processing (ROPA) and an Art. 35 DPIA draft, in Markdown and HTML.

The Engine gathers the facts the system knows (configuration, catalog counts, calibration, audit
and rights-request tallies) into a `ReportFacts`; this module only writes them up. What only the
controller knows (contact details, the necessity argument, the risk appraisal, sign-off) is left
as visible TODO/TO COMPLETE markers rather than guessed.

Markdown is the source of both formats. `to_html` converts the small subset emitted here
(headings, paragraphs, bullet lists, pipe tables, bold) and escapes everything else, so a source
named `<script>` is text in both files.
"""

from __future__ import annotations

import html
import math
import re
import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vultus.config import require_controller
from vultus.errors import ConfigError
from vultus.files import atomic_write
from vultus.lawful_basis import ART6_BASES, ART9_CONDITIONS

REPORT_KINDS = ("ropa", "dpia")

# A common 1:1 verification setting (1 false match in 1,000 comparisons), used in the DPIA to
# show what a threshold that ignores the gallery size would do.
NAIVE_PAIR_FMR = 1e-3


@dataclass
class SourceFacts:
    name: str
    kind: str
    lawful_basis: str  # Art. 6(1) code
    special_condition: str  # Art. 9(2) code
    legal_reference: str | None
    purpose: str
    retention_days: int | None  # None: no retention period configured
    images: int
    faces: int


@dataclass
class RecipientFacts:
    """One API key: who can search or export, and with which role."""

    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


@dataclass
class ReportFacts:
    controller: str
    generated_at: datetime
    data_dir: str
    sources: list[SourceFacts]
    search_purposes: list[str]  # the purposes a search may name (configuration)
    recipients: list[RecipientFacts]
    security_measures: list[str]
    gallery_size: int  # searchable faces
    subjects: int  # named people
    model_id: str
    # Per-search false-match rate target: the chance that a search of the whole gallery returns
    # at least one face of someone else (what `threshold_for(fmr, gallery_size)` takes).
    search_fmr_target: float
    threshold_distance: float
    tar_at_threshold: float | None
    # (per-search FMR target, distance threshold, true-accept rate) rows, at this gallery size.
    fmr_table: list[tuple[float, float, float]]
    searches_per_purpose: dict[str, int]
    erasures: int  # erasures carried out on request (audit entries)
    access_requests: int
    open_requests: int
    overdue_requests: int
    suppression_entries: int
    restricted_faces: int
    retention_purged: int  # images purged at the end of their retention period
    # The calibrated 1:1 (per-pair) false-match rate at threshold_distance. Optional: without it
    # the DPIA derives an upper bound from search_fmr_target and gallery_size.
    pair_fmr_at_threshold: float | None = None
    # Faces those erasures removed (the sum of their audit entries' counts, not the entries).
    faces_erased: int = 0
    # Rights requests are reviewed by a person (vultus.rights.review): the true-accept rate of
    # one photo against another down to the "possible, check by eye" tier, that tier's per-pair
    # false-match rate, and the strangers a reviewer expects per round at this gallery size.
    possible_tar: float | None = None
    possible_pair_fmr: float | None = None
    possible_strangers: float | None = None


# ---- public API ------------------------------------------------------------------------------


def write_report(kind: str, facts: ReportFacts, out_dir: Path) -> list[Path]:
    """Write `<kind>.md` and `<kind>.html` into `out_dir`; kind is "ropa" or "dpia"."""
    require_controller(facts.controller, f"the {kind} report")
    if kind == "ropa":
        text, title = ropa_markdown(facts), f"Record of processing activities: {facts.controller}"
    elif kind == "dpia":
        text, title = dpia_markdown(facts), f"DPIA draft: {facts.controller}"
    else:
        raise ConfigError(
            f"unknown report kind {kind!r}; choose one of: {', '.join(REPORT_KINDS)}",
            code="report_kind_invalid",
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out_dir / f"{kind}.md", out_dir / f"{kind}.html"
    _write_atomic(md_path, text)
    _write_atomic(html_path, to_html(text, title))
    return [md_path, html_path]


def pair_fmr_for_target(search_fmr: float, gallery_size: int) -> float:
    """The per-pair rate p with 1 - (1 - p)**gallery_size == search_fmr: the largest 1:1 rate a
    threshold meeting the per-search target can have (calibration.threshold_for's inverse)."""
    n = max(1, gallery_size)
    if search_fmr >= 1.0:
        return 1.0
    return -math.expm1(math.log1p(-search_fmr) / n)


def expected_false_candidates(gallery_size: int, pair_fmr: float) -> float:
    """Expected faces of other people at or under the threshold in one search: each search
    compares the query with every face in the gallery, each a false match with chance p."""
    return max(0, gallery_size) * pair_fmr


# ---- ROPA -------------------------------------------------------------------------------------


def ropa_markdown(facts: ReportFacts) -> str:
    """The Art. 30(1) record of processing, from the configuration and catalog counts."""
    f = facts
    out: list[str] = [
        "# Record of processing activities (Art. 30(1) GDPR)",
        f"Processing activity: face search with Vultus. Generated {_md(_when(f.generated_at))} "
        f"from the configuration of the data directory {_md(f.data_dir)}.",
        "Items marked **TO COMPLETE** are not held by the system and must be added by the "
        "controller.",
        "## 1. Controller (Art. 30(1)(a))",
        _bullets(
            [
                f"**Controller:** {_md(f.controller)}",
                "**Contact details, joint controllers, representative and data protection "
                "officer:** TO COMPLETE",
            ]
        ),
        "## 2. Purposes of the processing (Art. 30(1)(b))",
        "Purpose recorded for each source of photos:",
        _bullets([f"**{_md(s.name)}:** {_md(s.purpose)}" for s in f.sources])
        if f.sources
        else "No sources are configured.",
        "Purposes a search must name (every search is logged with one):",
        _bullets([_md(p) for p in f.search_purposes])
        if f.search_purposes
        else "No search purposes are configured. **TO COMPLETE**",
        _table(
            "Lawful basis of each source",
            ["Source", "Kind", "Art. 6(1) basis", "Art. 9(2) condition", "Legal reference"],
            [
                [
                    s.name,
                    s.kind,
                    _basis(s.lawful_basis),
                    _condition(s.special_condition),
                    s.legal_reference or "none",
                ]
                for s in f.sources
            ],
        ),
        "## 3. Categories of data subjects (Art. 30(1)(c))",
        _bullets(
            [
                f"People whose faces appear in photos from the source **{_md(s.name)}** "
                f"({_num(s.images)} images, {_num(s.faces)} faces)"
                for s in f.sources
            ]
            + [
                f"{_num(f.subjects)} of these people are named: their faces are linked to a "
                "name or label",
                "Users of the system (API key holders), whose searches and exports are logged",
                "People who made a data protection request (access, erasure, restriction)",
            ]
        ),
        "## 4. Categories of personal data (Art. 30(1)(c))",
        _bullets(
            [
                f"Photographs ({_num(sum(s.images for s in f.sources))} images) and the "
                "position of each face in them",
                f"**Face templates** ({_num(f.gallery_size)} searchable faces, computed with "
                f"the model {_md(f.model_id)})",
                "Names or labels linked to faces",
                "Audit log of searches and exports: who, when, purpose, case reference and the "
                "faces returned",
                "Records of data protection requests and the suppression list that keeps "
                "erased faces out",
            ]
        ),
        "**Face templates are special-category biometric data under Art. 9(1) GDPR.** They "
        "result from specific technical processing of facial images that allows the unique "
        "identification of a person (Art. 4(14)). Processing them needs an Art. 9(2) condition "
        "in addition to an Art. 6(1) basis; both are recorded for each source above. The "
        "photographs they come from are personal data of everyone shown in them.",
        "## 5. Recipients (Art. 30(1)(d))",
        "Access to the system is by API key, each with a role. Key holders are the recipients "
        "of search results inside the controller's organisation:",
        _recipients_table(f),
        "The system discloses nothing to third parties by itself. **TO COMPLETE:** "
        "disclosures users make outside the system (for example to public authorities).",
        "## 6. Transfers to third countries or international organisations (Art. 30(1)(e))",
        "None by design. Vultus is self-hosted: the photographs, face templates, search index "
        f"and audit log stay in {_md(f.data_dir)} on the controller's own infrastructure, and "
        "the software calls no external service. If the host is run by a processor or located "
        "outside the EEA, record that transfer and its safeguards here.",
        "## 7. Time limits for erasure (Art. 30(1)(f))",
        "Photos and everything derived from them (faces, templates, index entries) are erased "
        "automatically when the retention period of their source ends.",
        "**TO COMPLETE:** a retention period for the sources that have none: "
        + ", ".join(_md(s.name) for s in f.sources if s.retention_days is None)
        + "."
        if any(s.retention_days is None for s in f.sources)
        else "",
        _table(
            "Retention period of each source",
            ["Source", "Retention"],
            [[s.name, _retention(s.retention_days)] for s in f.sources],
        ),
        f"Images erased by retention so far: {_num(f.retention_purged)}. Faces erased on "
        f"request so far: {_num(f.faces_erased)} (in {_num(f.erasures)} erasure(s)).",
        "## 8. Technical and organisational security measures (Art. 30(1)(g), Art. 32(1))",
        _bullets([_md(m) for m in f.security_measures])
        if f.security_measures
        else "None recorded. **TO COMPLETE**",
    ]
    return _join(out)


# ---- DPIA -------------------------------------------------------------------------------------


def dpia_markdown(facts: ReportFacts) -> str:
    """An Art. 35(7) DPIA draft: the facts the system knows, TODOs for the rest."""
    f = facts
    total_images = sum(s.images for s in f.sources)
    total_searches = sum(f.searches_per_purpose.values())
    unlisted = sorted(p for p in f.searches_per_purpose if p not in set(f.search_purposes))
    # Configured purposes never used still get a row: an unused purpose may not be necessary.
    per_purpose = {p: 0 for p in f.search_purposes} | f.searches_per_purpose
    out: list[str] = [
        "# Data protection impact assessment (Art. 35 GDPR): DRAFT",
        "**DRAFT for the data protection officer to review and complete.** This is not a "
        "finished assessment. Vultus filled in the facts it holds; the sections marked **TODO** "
        "need what only the controller knows. The assessment must be completed, and the DPO's "
        "advice sought (Art. 35(2)), before the processing starts or changes.",
        f"Controller: {_md(f.controller)}. Generated {_md(_when(f.generated_at))} from the data "
        f"directory {_md(f.data_dir)}.",
        "## Why an assessment is required",
        "Face search processes biometric data to identify people: special-category data under "
        "Art. 9(1) GDPR. Processing it on a large scale needs a DPIA (Art. 35(3)(b)), as does "
        "systematic monitoring or matching of data sets. **TODO:** confirm against your "
        "supervisory authority's list (Art. 35(4)).",
        "## 1. Systematic description of the processing (Art. 35(7)(a))",
        "### Nature and scope",
        _bullets(
            [
                f"Photos catalogued: {_num(total_images)} images from {_num(len(f.sources))} "
                "sources",
                f"Searchable faces (gallery size): **{_num(f.gallery_size)}**",
                f"People named in the catalog: {_num(f.subjects)}",
                f"Face model: {_md(f.model_id)}",
                f"Searches logged: {_num(total_searches)}",
            ]
        ),
        _table(
            "Sources of photos",
            ["Source", "Kind", "Purpose", "Images", "Faces", "Retention"],
            [
                [
                    s.name,
                    s.kind,
                    s.purpose,
                    _num(s.images),
                    _num(s.faces),
                    _retention(s.retention_days),
                ]
                for s in f.sources
            ],
            numeric={3, 4},
        ),
        "### Purposes",
        "Purposes a search must name:",
        _bullets([_md(p) for p in f.search_purposes])
        if f.search_purposes
        else "No search purposes are configured.",
        _table(
            "Searches logged per purpose",
            ["Purpose", "Searches"],
            [[p, _num(n)] for p, n in sorted(per_purpose.items())]
            + [["**Total**", f"**{_num(total_searches)}**"]],
            numeric={1},
            raw_rows={len(per_purpose)},
        ),
    ]
    if unlisted:
        out.append(
            "**Searches were logged under purposes that are not configured:** "
            + ", ".join(_md(p) for p in unlisted)
            + ". Check them for function creep."
        )
    out += [
        "### Context",
        "**TODO:** who appears in the photos and in what setting; their reasonable "
        "expectations; whether children or other vulnerable people are included; who uses the "
        "search and for what decisions; the legitimate interest pursued, where relied on.",
        "## 2. Necessity and proportionality (Art. 35(7)(b))",
        "### Lawful basis",
        _table(
            "Lawful basis of each source",
            ["Source", "Art. 6(1) basis", "Art. 9(2) condition", "Legal reference"],
            [
                [
                    s.name,
                    _basis(s.lawful_basis),
                    _condition(s.special_condition),
                    s.legal_reference or "none",
                ]
                for s in f.sources
            ],
        ),
    ]
    if any(s.lawful_basis == "legitimate_interests" for s in f.sources):
        out.append(
            "**TODO:** attach the legitimate-interests balancing test for the sources that rely "
            "on Art. 6(1)(f)."
        )
    unlimited = [s.name for s in f.sources if s.retention_days is None]
    out += [
        "### Data minimisation and storage limitation",
        _bullets(
            [
                "Only faces that pass the quality gates are turned into templates; the rest are "
                "recorded as skipped and never searchable",
                "Photos past their source's retention period, and everything derived from "
                f"them, are erased automatically ({_num(f.retention_purged)} images so far)",
                "Access packages contain face crops, not whole photos, so other people in a "
                "photo are not disclosed",
            ]
        ),
        "**TODO:** set a retention period for the sources that have none: "
        + ", ".join(_md(n) for n in unlimited)
        + " (Art. 5(1)(e))."
        if unlimited
        else "",
        "### Data subjects' rights (Art. 12 to 22)",
        _bullets(
            [
                f"Access requests handled: {_num(f.access_requests)}",
                f"Faces erased on request: {_num(f.faces_erased)} (in {_num(f.erasures)} "
                "erasure(s))",
                f"Suppression list entries (erased faces kept out of new ingests): "
                f"{_num(f.suppression_entries)}",
                f"Faces under restriction of processing (Art. 18): {_num(f.restricted_faces)}",
                f"Requests open: {_num(f.open_requests)}, of which past the one-month deadline "
                f"of Art. 12(3): **{_num(f.overdue_requests)}**",
            ]
        ),
        "**TODO:** why face search is necessary for each purpose, and why less intrusive means "
        "(manual review, searching by other criteria) do not suffice; how people are informed "
        "(Art. 13 and 14).",
        "## 3. Risks to the rights and freedoms of data subjects (Art. 35(7)(c))",
        "### False matches at scale",
    ]
    out += _false_match_section(f, total_searches)
    out += [
        "### Missed matches",
        _missed_matches(f),
        "### Other risks",
        _bullets(
            [
                "Wrong decisions about a person based on a false match (see above)",
                "Function creep: the search used for purposes beyond those declared",
                "Breach of the template store: unlike a password, a face cannot be changed",
                "Identification of people who expect to stay anonymous in the photos; a "
                "chilling effect where people know face search is used",
                "Unequal accuracy across demographic groups: the calibration above is measured "
                "on one data set and does not show differences between groups",
            ]
        ),
        "**TODO:** rate the likelihood and severity of each risk for your context, and test "
        "accuracy on data representative of the people in your photos.",
        "## 4. Measures to address the risks (Art. 35(7)(d))",
        _bullets(
            [
                "A strict, calibrated threshold that tightens as the gallery grows, so the "
                "per-search false-match rate stays at the target",
                "Every search names a purpose and is written to an audit log with the actor, "
                "case reference and results",
                f"Role-based API keys: {_num(_active_keys(f))} active of {_num(len(f.recipients))}",
                "Retention periods enforced automatically",
                "Erasure with a suppression list; restriction of processing per face",
                "Self-hosted: no transfer of data to third parties or third countries",
            ]
            + [_md(m) for m in f.security_measures]
        ),
        "**TODO:** residual risk after these measures, and whether prior consultation of the "
        "supervisory authority is required (Art. 36(1)).",
        "## 5. Consultation and sign-off",
        _bullets(
            [
                "**TODO:** advice of the data protection officer (Art. 35(2))",
                "**TODO:** views of data subjects or their representatives (Art. 35(9))",
                "**TODO:** decision, name and date of approval",
                "**TODO:** date of the next review (Art. 35(11))",
            ]
        ),
    ]
    return _join(out)


def _false_match_section(f: ReportFacts, total_searches: int) -> list[str]:
    if f.pair_fmr_at_threshold is not None:
        pair = f.pair_fmr_at_threshold
        pair_text = f"the calibrated per-pair false-match rate is {_rate(pair)} ({_one_in(pair)})"
        bound = ""
    else:
        pair = pair_fmr_for_target(f.search_fmr_target, f.gallery_size)
        pair_text = (
            f"the per-pair false-match rate is at most {_rate(pair)} ({_one_in(pair)}; derived "
            f"from the "
            f"per-search target {f.search_fmr_target:g} and the gallery size)"
        )
        bound = "at most "
    expected = expected_false_candidates(f.gallery_size, pair)
    naive = expected_false_candidates(f.gallery_size, NAIVE_PAIR_FMR)
    lines = [
        "A face search compares the query face with every face in the gallery. Each "
        "comparison with a face of someone else has a small chance of scoring under the "
        "threshold; across a large gallery these chances add up.",
        f"At the configured threshold (distance {f.threshold_distance:.4f}), {pair_text}. "
        f"Expected false candidates per search = gallery size × per-pair FMR = "
        f"{_num(f.gallery_size)} × {_rate(pair)} = **{bound}{expected:.3g}**. "
        f"Over the {_num(total_searches)} searches logged, that is {bound}about "
        f"{expected * total_searches:.3g} faces of the wrong person returned as candidates.",
        f"For comparison, a threshold fixed at a per-pair rate of {NAIVE_PAIR_FMR:g} (a common "
        f"1:1 verification setting) would return about {naive:,.0f} false candidates per search "
        "in this gallery. Vultus instead tightens the threshold as the gallery grows, which "
        "keeps false candidates rare but also misses more true matches.",
    ]
    if f.fmr_table:
        rows = []
        for target, distance, tar in sorted(f.fmr_table):
            mark = " (configured)" if math.isclose(target, f.search_fmr_target) else ""
            per_search = expected_false_candidates(
                f.gallery_size, pair_fmr_for_target(target, f.gallery_size)
            )
            rows.append([f"{target:g}{mark}", f"{distance:.4f}", _pct(tar), f"≤ {per_search:.3g}"])
        lines += [
            _table(
                "Calibrated operating points at this gallery size",
                [
                    "Per-search FMR target",
                    "Distance threshold",
                    "True-accept rate",
                    "False candidates per search",
                ],
                rows,
                numeric={1, 2, 3},
            ),
        ]
    return lines


def _missed_matches(f: ReportFacts) -> str:
    if f.tar_at_threshold is None:
        return (
            "The true-accept rate at the threshold is not known. **TODO:** measure it; a "
            "search that misses a person's photos also makes their access and erasure "
            "requests incomplete."
        )
    miss = 1.0 - f.tar_at_threshold
    text = (
        f"At the threshold, the calibrated true-accept rate is {_pct(f.tar_at_threshold)}: "
        f"about {_pct(miss)} of a person's own photos are not found by the automatic match "
        "decision alone."
    )
    if f.possible_tar is None or f.possible_pair_fmr is None:
        return text
    return text + (
        " Access, erasure, restriction and objection requests are therefore never answered "
        'by that decision alone: a person reviews every candidate down to the "possible, '
        f'check by eye" tier (per-pair false-match rate {f.possible_pair_fmr:.2g}, where one '
        f"photo finds another of the same person {_pct(f.possible_tar)} of the time, and "
        f"about {f.possible_strangers or 0:g} strangers per round are shown to be struck), and "
        "the search reruns from every face the reviewer confirms, until no new candidate "
        "appears. benchmarks/rights_recall.py measures the share of a person's photos this "
        "finds (docs/rights.md)."
    )


# ---- Markdown helpers -------------------------------------------------------------------------

# Characters that would start markup in the emitted subset or in common Markdown renderers that
# may display the .md file (emphasis, strike-through, links and images, entities, raw HTML;
# a link needs its brackets, so parentheses are left alone),
# backslash-escaped in every value taken from the facts. An underscore inside a word
# (`staff_photos`) emphasises nothing and is left as it is.
_MD_SPECIAL = re.compile(r"([\\`*~|#<>\[\]&]|(?<!\w)_|_(?!\w))")
_LIST_START = re.compile(r"^(\d*)((?<=\d)[.)]|(?<!\d)[-+])")
# Control characters (a terminal's escape codes among them) are dropped from values.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _md(value: object) -> str:
    # Newlines in a value (a purpose typed over two lines) would otherwise end a list item or a
    # table row early.
    text = _CONTROL.sub("", " ".join(str(value).split()))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    # At the start of a list item, "- x", "+ x" and "1. x" would start a list of their own.
    return _LIST_START.sub(r"\1\\\2", text)


def _join(blocks: list[str]) -> str:
    return "\n\n".join(b for b in blocks if b) + "\n"


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _table(
    caption: str,
    header: list[str],
    rows: list[list[str]],
    *,
    numeric: set[int] | None = None,
    raw_rows: set[int] | None = None,
) -> str:
    """A pipe table after a `Table: caption` line (to_html makes it the <caption>). Cells are
    escaped except in `raw_rows` (indices of rows written here, such as a bold total);
    `numeric` columns are right-aligned."""
    numeric = numeric or set()
    raw_rows = raw_rows or set()
    if not rows:
        return f"{_md(caption)}: none."
    sep = ["---:" if i in numeric else "---" for i in range(len(header))]
    lines = [
        f"Table: {_md(caption)}",
        "",
        "| " + " | ".join(_md(h) for h in header) + " |",
        "| " + " | ".join(sep) + " |",
    ]
    for k, row in enumerate(rows):
        cells = row if k in raw_rows else [_md(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _recipients_table(f: ReportFacts) -> str:
    rows = [
        [
            r.name,
            r.role,
            _when(r.created_at, time=False),
            _when(r.expires_at, time=False) if r.expires_at else "never",
            _key_status(r, f.generated_at),
        ]
        for r in sorted(f.recipients, key=lambda r: (r.revoked, r.name))
    ]
    if not rows:
        return "No API keys are configured."
    return _table("API keys and roles", ["Key", "Role", "Created", "Expires", "Status"], rows)


def _key_status(r: RecipientFacts, now: datetime) -> str:
    if r.revoked:
        return "revoked"
    if r.expires_at is not None:
        try:
            if r.expires_at <= now:
                return "expired"
        except TypeError:
            # One naive and one aware datetime: the facts cannot say, so do not claim either.
            return "active unless expired"
    return "active"


def _active_keys(f: ReportFacts) -> int:
    return sum(_key_status(r, f.generated_at) == "active" for r in f.recipients)


def _basis(code: str) -> str:
    return ART6_BASES.get(code, f"{code} (code not recognised)")


def _condition(code: str) -> str:
    return ART9_CONDITIONS.get(code, f"{code} (code not recognised)")


def _retention(days: int | None) -> str:
    if days is None:
        return "no limit configured"
    return f"{days:,} days" + (f" (about {days / 365:.1f} years)" if days >= 365 else "")


def _when(value: datetime, *, time: bool = True) -> str:
    text = f"{value:%Y-%m-%d %H:%M}" if time else f"{value:%Y-%m-%d}"
    if time and value.tzinfo is not None:
        text += f" {value.tzname() or ''}".rstrip()
    return text


def _num(n: int) -> str:
    return f"{n:,}"


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _rate(p: float) -> str:
    return f"{p:.2e}"


def _one_in(p: float) -> str:
    """'1 in 63,000,000': two significant figures, since the calibration cannot claim more."""
    if p <= 0:
        return "too small to measure"
    n = 1 / p
    if n < 100:
        return f"1 in {n:.0f}"
    magnitude = 10 ** (int(math.floor(math.log10(n))) - 1)
    return f"1 in {round(n / magnitude) * magnitude:,}"


# ---- Markdown subset -> HTML ------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^[-*]\s+(.*)$")
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_CAPTION = re.compile(r"^Table:\s+(.*)$")
_ESCAPABLE = set(string.punctuation)

_STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.5; max-width: 62rem;
       margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }
table { border-collapse: collapse; margin: 1rem 0; }
caption { text-align: left; font-weight: bold; padding: .4rem 0; }
th, td { border: 1px solid #999; padding: .35rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #eee; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def to_html(markdown_text: str, title: str) -> str:
    """A standalone, accessible HTML page from the Markdown subset this module writes:
    ATX headings, paragraphs, `-` bullet lists, pipe tables (with an optional `Table: caption`
    line before them), `**bold**` and backslash escapes. Everything else is text: all of it is
    HTML-escaped, so no input can add markup."""
    lines = markdown_text.splitlines()
    body: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        caption = _CAPTION.match(line)
        j = _captioned_table(lines, i)
        if caption and j is not None:
            html_table, i = _render_table(lines, j, caption.group(1))
            body.append(html_table)
            continue
        if _table_starts(lines, i):
            html_table, i = _render_table(lines, i, None)
            body.append(html_table)
            continue
        if _BULLET.match(line):
            items: list[str] = []
            while i < n and lines[i].strip():
                bullet = _BULLET.match(lines[i])
                if bullet:
                    items.append(bullet.group(1))
                elif items and lines[i][:1].isspace():
                    items[-1] += " " + lines[i].strip()  # continuation of the item above
                else:
                    break
                i += 1
            body.append("<ul>\n" + "\n".join(f"<li>{_inline(t)}</li>" for t in items) + "\n</ul>")
            continue
        para: list[str] = []
        while i < n and lines[i].strip() and not _starts_block(lines, i):
            para.append(lines[i].strip())
            i += 1
        if not para:  # a line that looked like a block start but was not one: keep it as text
            para.append(lines[i].strip())
            i += 1
        body.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            "<main>",
            *body,
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    if _HEADING.match(line) or _BULLET.match(line) or _table_starts(lines, i):
        return True
    return _captioned_table(lines, i) is not None


def _captioned_table(lines: list[str], i: int) -> int | None:
    """Where the table starts when line i is a `Table: caption` line before one (blank lines
    between allowed), else None."""
    if not _CAPTION.match(lines[i]):
        return None
    j = i + 1
    while j < len(lines) and not lines[j].strip():
        j += 1
    return j if _table_starts(lines, j) else None


def _table_starts(lines: list[str], i: int) -> bool:
    return (
        i + 1 < len(lines)
        and lines[i].lstrip().startswith("|")
        and bool(_SEPARATOR.match(lines[i + 1].strip()))
    )


def _split_row(line: str) -> list[str]:
    """Cells of a pipe-table row; `\\|` is a literal pipe (left escaped for _inline)."""
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    cells: list[str] = []
    cell: list[str] = []
    k = 0
    while k < len(text):
        c = text[k]
        if c == "\\" and k + 1 < len(text):
            cell.append(text[k : k + 2])
            k += 2
            continue
        if c == "|":
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(c)
        k += 1
    tail = "".join(cell).strip()
    if tail:  # a row without a closing pipe
        cells.append(tail)
    return cells


def _render_table(lines: list[str], i: int, caption: str | None) -> tuple[str, int]:
    header = _split_row(lines[i])
    aligns = [c.strip().endswith(":") for c in _split_row(lines[i + 1])]
    width = len(header)
    i += 2
    rows: list[list[str]] = []
    while i < len(lines) and lines[i].lstrip().startswith("|"):
        cells = _split_row(lines[i])
        rows.append((cells + [""] * width)[:width])
        i += 1

    def cls(col: int) -> str:
        return ' class="num"' if col < len(aligns) and aligns[col] else ""

    out = ["<table>"]
    if caption:
        out.append(f"<caption>{_inline(caption)}</caption>")
    out.append(
        "<thead><tr>"
        + "".join(f'<th scope="col"{cls(c)}>{_inline(h)}</th>' for c, h in enumerate(header))
        + "</tr></thead>"
    )
    out.append("<tbody>")
    for row in rows:
        out.append(
            "<tr>" + "".join(f"<td{cls(c)}>{_inline(v)}</td>" for c, v in enumerate(row)) + "</tr>"
        )
    out += ["</tbody>", "</table>"]
    return "\n".join(out), i


def _inline(text: str) -> str:
    """Escape `text` for HTML, turning paired `**` into <strong> and `\\x` into a literal x."""
    tokens: list[str | None] = []  # None marks a `**`
    buf: list[str] = []
    k = 0
    while k < len(text):
        c = text[k]
        if c == "\\" and k + 1 < len(text) and text[k + 1] in _ESCAPABLE:
            buf.append(text[k + 1])
            k += 2
            continue
        if text.startswith("**", k):
            tokens.append("".join(buf))
            tokens.append(None)
            buf = []
            k += 2
            continue
        buf.append(c)
        k += 1
    tokens.append("".join(buf))
    markers = [idx for idx, t in enumerate(tokens) if t is None]
    if len(markers) % 2:
        tokens[markers[-1]] = "**"  # an unpaired marker is text, not an unclosed tag
        markers.pop()
    out: list[str] = []
    opening = True
    for t in tokens:
        if t is None:
            out.append("<strong>" if opening else "</strong>")
            opening = not opening
        else:
            out.append(html.escape(t, quote=True))
    return "".join(out)


def _write_atomic(path: Path, text: str) -> None:
    # 0600: key names may name staff, and the controller decides who else may read it.
    atomic_write(path, text)
