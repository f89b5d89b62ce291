"""Does a rights request find all of a person's photos, and at what cost to the reviewer?

    python benchmarks/rights_recall.py [--sizes lfw,100000,1000000] [--requests 826]
    python benchmarks/rights_recall.py --before      # the engine's old automatic answer
    python benchmarks/rights_recall.py --sizes lfw --request-photo query --misses misses.json

On ../shared/faces/lfw-a (or $VULTUS_TEST_FACES/lfw-a), every person with two or more photos
makes one request with their first photo. The gallery is all of lfw-a, ingested by the engine
(the request photo's own copy is in it, and counts as neither the person's other photo nor a
stranger), then padded with synthetic faces drawn from benchmarks/template_model.npz (the model
fitted to real dlib descriptors that benchmarks/search.py uses) to each larger size.

A simulated reviewer includes the person's candidates and strikes the others; each round of
expansion reruns the engine's search from the faces confirmed so far (`Engine.expand_review`).
Reported per gallery size: the share of the person's other photos in the match tier, in match +
possible, after one and two rounds of expansion and once the review is complete (every
confirmed face searched from, at most MAX_ROUNDS rounds); what the engine decides without a reviewer
(`find_person`: matches, expanded from matches); the strangers per request in each tier (the
reviewer's load); and the time per request (search and expansion, not the selfie's analysis).

"complete" counts the person's other photos that have an indexed face, as before; "all photos"
counts every labelled photo, one where ingest indexed no face being a miss. By default the
selfie is the request photo's one face as ingested (a request photo with several faces makes no
request); `--request-photo query` analyses it as a request's photo is (`query_detection`), and
where it shows several faces the subject points out theirs (the one lfw-a labels: nearest the
centre). `--misses FILE` writes the photos the
complete review missed, with their faces and distances to the person's other photos (JSON).

`--before` runs the engine's `find_person(photo)` on a fresh catalog of lfw-a alone; run it
with PYTHONPATH pointing at an older checkout to measure that version's answer.

Prints a table and writes benchmarks/results/rights_recall.json (merged by label).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from vultus import __version__
from vultus.engine import Engine
from vultus.pipeline.analyse import AnalysedFace

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "rights_recall.json"
# Rounds of expansion a simulated review may take before it is called complete.
MAX_ROUNDS = 8
Template = npt.NDArray[np.float32]
CACHE = Path(os.environ.get("VULTUS_BENCH_CACHE", Path.home() / ".cache" / "vultus-bench"))


def lfw_dir() -> Path:
    root = Path(os.environ.get("VULTUS_TEST_FACES", HERE.parent.parent / "shared" / "faces"))
    folder = root / "lfw-a"
    if not (folder / "labels.csv").exists():
        sys.exit(f"lfw-a not found under {root}: set VULTUS_TEST_FACES")
    return folder


def labels(folder: Path) -> dict[str, str]:
    """Absolute photo path -> identity."""
    with open(folder / "labels.csv", newline="") as fh:
        return {str((folder / r["path"]).resolve()): r["identity"] for r in csv.DictReader(fh)}


def face_paths(data_dir: Path) -> dict[int, str]:
    """Face id -> image path, read straight from the catalog file (works on any version)."""
    db = sqlite3.connect(data_dir / "catalog.db")
    try:
        rows = db.execute(
            "SELECT faces.id, images.path FROM faces JOIN images ON faces.image_id = images.id "
            "WHERE faces.status = 'indexed'"
        ).fetchall()
    finally:
        db.close()
    return {int(f): str(p) for f, p in rows}


def ingest(data_dir: Path, folder: Path, console: Console, workers: int) -> None:
    """lfw-a into a catalog, once (ingest is idempotent: a rerun finishes a killed one)."""
    with Engine.open(data_dir, workers=workers) as engine:
        if "lfw-a" not in {s.name for s, _, _ in engine.sources()}:
            engine.add_source(
                "lfw-a",
                lawful_basis_code="legitimate_interests",
                special_condition="archiving_research",
                purpose="benchmark",
                retention_days=3650,
            )
        start = time.perf_counter()
        summary = engine.add([folder / "images"], source="lfw-a")
        console.print(
            f"ingested lfw-a: {summary.images_added} new images, {summary.faces_indexed} faces "
            f"({time.perf_counter() - start:.0f} s)"
        )


@dataclass
class Request:
    person: str
    selfie_path: str
    selfie_face: int | None  # the request photo's own face in the gallery
    # Each of the person's other photos (every labelled one) -> its indexed faces; empty
    # where ingest indexed no face in it (no face detected, or every face skipped).
    photos: dict[str, set[int]]

    @property
    def targets(self) -> list[set[int]]:
        """The faces of each of the person's other photos that has an indexed face."""
        return [faces for faces in self.photos.values() if faces]


def requests(paths: dict[int, str], who: dict[str, str], limit: int | None) -> list[Request]:
    """One request per person with two or more photos that have an indexed face, by the first
    of them. Each request also lists the person's labelled photos without an indexed face."""
    faces_of: dict[str, list[int]] = defaultdict(list)
    for fid, path in paths.items():
        faces_of[str(Path(path).resolve())].append(fid)
    labelled: dict[str, list[str]] = defaultdict(list)
    for path, person in who.items():
        labelled[person].append(path)
    out = []
    for person in sorted(labelled):
        indexed = sorted(p for p in labelled[person] if p in faces_of)
        if len(indexed) < 2:
            continue
        first = indexed[0]
        # A photo with two detected faces (rare in lfw-a) holds the person in one of them: it
        # is found when any of its faces is.
        photos = {p: set(faces_of.get(p, ())) for p in sorted(labelled[person]) if p != first}
        own = faces_of[first]
        out.append(Request(person, first, own[0] if len(own) == 1 else None, photos))
    return out[:limit] if limit else out


def pad(engine: Engine, total: int, console: Console) -> None:
    """Synthetic faces (the fitted model) up to `total` faces, with bulk inserts."""
    sys.path.insert(0, str(HERE))
    from query import fill
    from search import Identities

    have = len(engine.index)
    if have >= total:
        return
    need = total - have
    chunks = (vecs for _, vecs in Identities(need, seed=total).chunks())
    fill(engine, need, console, vectors=chunks, source_name="synthetic-padding")
    engine.rebuild_index()


@dataclass
class Row:
    label: str
    gallery: int
    requests: int
    photos: int
    match: float
    match_possible: float
    round1: float
    round2: float
    complete: float
    # Every labelled photo in the denominator: one without an indexed face is a miss.
    photos_all: int
    photos_unindexed: int
    complete_all: float
    rounds_mean: float
    automatic: float
    strangers_match: float
    strangers_possible: float
    strangers_total: float
    strangers_max: int
    ms_per_request: float
    possible_fmr: float
    possible_strangers: float
    # The possible tier's distance threshold for a single query (the selfie's first search).
    possible_threshold: float


def selfies_from_gallery(engine: Engine, reqs: list[Request]) -> dict[str, Template]:
    """Person -> the template of their request photo's one face in the gallery (ingest's
    detection); a request photo with several faces there makes no request."""
    templates = engine.catalog.templates_of([r.selfie_face for r in reqs if r.selfie_face])
    return {
        r.person: templates[r.selfie_face]
        for r in reqs
        if r.selfie_face is not None and r.selfie_face in templates
    }


def selfies_analysed(engine: Engine, reqs: list[Request], console: Console) -> dict[str, Template]:
    """Person -> the template of their request photo analysed as a request's photo is
    (`query_detection`). Where it shows several faces, the subject points out theirs: lfw-a
    labels the person whose face is at the centre of the crop, so the face nearest the centre
    (the engine's own face 1 is the largest: in a crop, often a nearer bystander)."""
    out: dict[str, Template] = {}
    start = time.perf_counter()
    for r in reqs:
        analysed = engine.analyse(Path(r.selfie_path), detection="query")
        cx, cy = analysed.width / 2, analysed.height / 2

        def off_centre(face: AnalysedFace, cx: float = cx, cy: float = cy) -> float:
            b = face.box
            return ((b.left + b.right) / 2 - cx) ** 2 + ((b.top + b.bottom) / 2 - cy) ** 2

        usable = sorted((f for f in analysed.faces if f.template is not None), key=off_centre)
        if usable and usable[0].template is not None:
            out[r.person] = usable[0].template
    console.print(
        f"analysed {len(reqs)} request photos as queries ({engine.settings.query_detection}): "
        f"{len(out)} with a usable face ({time.perf_counter() - start:.0f} s)"
    )
    return out


def measure(
    engine: Engine,
    reqs: list[Request],
    selfies: dict[str, Template],
    person_of: dict[int, str],
    label: str,
    missed: list[tuple[Request, str]] | None = None,
) -> Row:
    """One complete simulated review per request that has a selfie template. `missed`, when
    given, receives each (request, photo path) that the complete review did not find,
    unindexed photos included."""
    found = {k: 0 for k in ("match", "possible", "r1", "r2", "all", "auto")}
    rounds: list[int] = []
    strangers_match: list[int] = []
    strangers_possible: list[int] = []
    strangers_total: list[int] = []
    times = []
    threshold = 0.0
    n_targets = n_all = n_unindexed = 0
    used = 0
    for r in reqs:
        if r.person not in selfies:
            continue
        used += 1
        n_targets += len(r.targets)
        n_all += len(r.photos)
        n_unindexed += len(r.photos) - len(r.targets)

        def photos_in(faces: set[int], r: Request = r) -> int:
            return sum(bool(t & faces) for t in r.targets)

        def is_stranger(fid: int, person: str = r.person) -> bool:
            return person_of.get(fid) != person

        t0 = time.perf_counter()
        review = engine.review_person(selfies[r.person], expand=False)
        elapsed = time.perf_counter() - t0
        threshold = review.possible_threshold
        shown = {c.face_id: c.tier for c in review.candidates}
        found["match"] += photos_in({f for f, t in shown.items() if t == "match"})
        found["possible"] += photos_in(set(shown))
        for rnd in ("r1", "r2", *["all"] * (MAX_ROUNDS - 2)):
            undecided = [c.face_id for c in review.candidates if c.decision is None]
            review.decide(
                include=[f for f in undecided if not is_stranger(f)],
                strike=[f for f in undecided if is_stranger(f)],
            )
            before = review.rounds
            t0 = time.perf_counter()
            engine.expand_review(review, max_rounds=1)
            elapsed += time.perf_counter() - t0
            if rnd != "all":
                found[rnd] += photos_in({c.face_id for c in review.candidates})
            if review.rounds == before:
                break  # every confirmed face searched from: the review is complete
        rounds.append(review.rounds)
        reached = {c.face_id for c in review.candidates}
        found["all"] += photos_in(reached)
        if missed is not None:
            missed += [(r, p) for p, faces in r.photos.items() if not faces & reached]
        times.append(elapsed)
        strangers = [c for c in review.candidates if is_stranger(c.face_id)]
        strangers_match.append(sum(c.tier != "possible" for c in strangers))
        strangers_possible.append(sum(c.tier == "possible" for c in strangers))
        strangers_total.append(len(strangers))
        auto = engine.find_person(selfies[r.person])
        found["auto"] += photos_in(set(auto.face_ids))
    share = {k: v / max(1, n_targets) for k, v in found.items()}
    return Row(
        label=label,
        gallery=len(engine.index),
        requests=used,
        photos=n_targets,
        match=share["match"],
        match_possible=share["possible"],
        round1=share["r1"],
        round2=share["r2"],
        complete=share["all"],
        photos_all=n_all,
        photos_unindexed=n_unindexed,
        complete_all=found["all"] / max(1, n_all),
        rounds_mean=statistics.fmean(rounds),
        automatic=share["auto"],
        strangers_match=statistics.fmean(strangers_match),
        strangers_possible=statistics.fmean(strangers_possible),
        strangers_total=statistics.fmean(strangers_total),
        strangers_max=max(strangers_total),
        ms_per_request=1000 * statistics.median(times),
        possible_fmr=engine.settings.possible_fmr,
        possible_strangers=engine.settings.possible_strangers,
        possible_threshold=threshold,
    )


def image_faces(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Resolved image path -> every face ingest recorded in it, skipped ones too."""
    db = sqlite3.connect(data_dir / "catalog.db")
    try:
        rows = db.execute(
            'SELECT images.path, images.width, images.height, faces.id, faces."left", '
            'faces.top, faces."right", faces.bottom, faces.detector, faces.det_score, '
            "faces.box_size, faces.sharpness, faces.yaw, faces.status, faces.skip_reason "
            "FROM faces JOIN images ON faces.image_id = images.id"
        ).fetchall()
    finally:
        db.close()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path, w, h, fid, left, top, right, bottom, det, score, size, sharp, yaw, st, why in rows:
        # How far the box's centre lies from the image's (LFW centres the named person).
        off = ((left + right - w) ** 2 + (top + bottom - h) ** 2) ** 0.5 / 2
        out[str(Path(path).resolve())].append(
            {
                "face": fid,
                "box": [left, top, right, bottom],
                "detector": det,
                "det_score": round(score, 3),
                "box_size": size,
                "centre_offset_px": round(off, 1),
                "sharpness": round(sharp, 1),
                "yaw": round(yaw, 1),
                "status": st,
                "skip_reason": why,
            }
        )
    return out


def dump_misses(
    engine: Engine,
    missed: list[tuple[Request, str]],
    selfies: dict[str, Template],
    threshold: float,
    out: Path,
) -> dict[str, int]:
    """The photos a complete review missed, as JSON: each with its recorded faces and, per
    indexed face, the nearest distance to any other photo of the person (the request's selfie
    template included), and whether a chain of the person's photos, each within `threshold`
    (the single-query possible threshold) of the next, links it to the selfie. Returns the
    counts by a first classification."""
    detail = image_faces(engine.settings.data_dir)
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = defaultdict(int)
    for r, path in missed:
        # The selfie stands as face -1: the template the request searched with.
        own: dict[str, set[int]] = {r.selfie_path: {-1}, **r.photos}
        templates = engine.catalog.templates_of(sorted(set().union(*r.photos.values())))
        templates[-1] = selfies[r.person]
        units = {f: v / np.linalg.norm(v) for f, v in templates.items()}
        reach = _reachable(own, units, r.selfie_path, threshold)
        faces = detail.get(path, [])
        for f in faces:
            if f["status"] == "indexed":
                f["nearest_same_person"] = round(_nearest_other(f["face"], path, own, units), 4)
        near = [f["nearest_same_person"] for f in faces if "nearest_same_person" in f]
        if not r.photos[path]:
            kind = "no_face" if not faces else "face_skipped"
        elif min(near, default=float("inf")) > 0.6:
            kind = "far_or_other_person"  # beyond dlib's usual same-person distance
        elif path in reach:
            kind = "reachable"
        else:
            kind = "unreachable"
        counts[kind] += 1
        rows.append(
            {
                "person": r.person,
                "photo": path,
                "photos_of_person": len(r.photos) + 1,
                "class": kind,
                "reachable_by_chain": path in reach,
                "faces": faces,
            }
        )
    out.write_text(
        json.dumps({"possible_threshold": threshold, "counts": counts, "misses": rows}, indent=1)
    )
    return dict(counts)


def _nearest_other(
    fid: int,
    photo: str,
    own: dict[str, set[int]],
    units: dict[int, npt.NDArray[np.floating[Any]]],
) -> float:
    """Distance from a face to the nearest face of another of the person's photos."""
    others = [units[g] for p, fs in own.items() if p != photo for g in fs if g in units]
    if fid not in units or not others:
        return float("inf")
    cos = np.stack(others) @ units[fid]
    return float(np.sqrt(np.clip(2.0 - 2.0 * cos.max(), 0.0, None)))


def _reachable(
    own: dict[str, set[int]],
    units: dict[int, npt.NDArray[np.floating[Any]]],
    start: str,
    threshold: float,
) -> set[str]:
    """The person's photos linked to `start` by steps of at most `threshold`."""
    seen = {start}
    frontier = [start]
    while frontier:
        here = frontier.pop()
        for photo, faces in own.items():
            if photo in seen:
                continue
            if any(
                a in units
                and b in units
                and float(np.sqrt(max(0.0, 2.0 - 2.0 * float(units[a] @ units[b])))) <= threshold
                for a in own[here]
                for b in faces
            ):
                seen.add(photo)
                frontier.append(photo)
    return seen


def measure_before(engine: Engine, reqs: list[Request], label: str) -> dict[str, Any]:
    """The engine's automatic answer to a photo (`find_person`), on any version."""
    found = n = strangers = 0
    times = []
    paths = face_paths(engine.settings.data_dir)
    for r in reqs:
        if r.selfie_face is None:
            continue  # two faces in the request photo: not a valid request
        t0 = time.perf_counter()
        plan = engine.find_person(Path(r.selfie_path))
        times.append(time.perf_counter() - t0)
        got = set(plan.face_ids)
        found += sum(bool(t & got) for t in r.targets)
        n += len(r.targets)
        mine = set().union(*r.targets)
        strangers += len(
            [f for f in got if f not in mine and str(Path(paths[f]).resolve()) != r.selfie_path]
        )
    return {
        "label": label,
        "gallery": len(engine.index),
        "requests": len(times),
        "photos": n,
        "automatic": found / max(1, n),
        "strangers_total": strangers / max(1, len(times)),
        "ms_per_request_with_analysis": 1000 * statistics.median(times),
    }


def print_table(rows: list[Row], console: Console) -> None:
    table = Table(title="Rights requests: share of the person's other photos found")
    for col in (
        "gallery",
        "requests",
        "match",
        "match+possible",
        "+1 round",
        "+2 rounds",
        "complete (rounds)",
        "all photos (no face)",
        "no reviewer",
        "strangers: match",
        "possible",
        "total (max)",
        "ms/request",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r.gallery:,}",
            str(r.requests),
            f"{r.match:.1%}",
            f"{r.match_possible:.1%}",
            f"{r.round1:.1%}",
            f"{r.round2:.1%}",
            f"{r.complete:.2%} ({r.rounds_mean:.1f})",
            f"{r.complete_all:.2%} ({r.photos_unindexed})",
            f"{r.automatic:.1%}",
            f"{r.strangers_match:.2f}",
            f"{r.strangers_possible:.2f}",
            f"{r.strangers_total:.2f} ({r.strangers_max})",
            f"{r.ms_per_request:.1f}",
        )
    console.print(table)
    if rows:
        console.print(
            f"possible tier: per-pair FMR <= {rows[0].possible_fmr:g} and <= "
            f"{rows[0].possible_strangers:g} expected strangers per round; "
            f"load {os.getloadavg()[0]:.1f}"
        )


def write_json(entries: list[dict[str, Any]], params: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    keep = [r for r in old.get("runs", []) if r["label"] not in {e["label"] for e in entries}]
    doc = {
        "benchmark": "rights_recall",
        "vultus": __version__,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": params,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": keep + entries,
    }
    RESULTS.write_text(json.dumps(doc, indent=2))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="lfw,100000,1000000")
    ap.add_argument("--requests", type=int, default=None, help="at most this many (default all)")
    ap.add_argument("--possible-fmr", type=float, default=None)
    ap.add_argument("--possible-strangers", type=float, default=None)
    ap.add_argument("--before", action="store_true", help="only find_person, lfw-a gallery")
    ap.add_argument("--label", default=None, help="name of this run in the JSON")
    ap.add_argument("--work", type=Path, default=CACHE / "rights_recall")
    ap.add_argument(
        "--request-photo",
        choices=("gallery", "query"),
        default="gallery",
        help="selfie template: the request photo's one face as ingested (default), or its "
        "labelled (central) face, the photo analysed as a request's photo is",
    )
    ap.add_argument(
        "--misses", type=Path, default=None, help="write the complete review's misses (JSON)"
    )
    ap.add_argument(
        "--workers", type=int, default=max(1, os.cpu_count() or 1), help="ingest processes"
    )
    args = ap.parse_args(argv)
    console = Console(width=170)
    folder = lfw_dir()
    who = labels(folder)
    base = args.work / ("lfw-a-before" if args.before else "lfw-a")
    ingest(base, folder, console, args.workers)
    paths = face_paths(base)
    reqs = requests(paths, who, args.requests)
    person_of = {f: who.get(str(Path(p).resolve()), "") for f, p in paths.items()}
    console.print(f"{len(reqs)} requests, {sum(len(r.targets) for r in reqs)} photos to find")

    if args.before:
        with Engine.open(base, workers=1) as engine:
            entry = measure_before(engine, reqs, args.label or "before")
        console.print(entry)
        write_json([entry], {"sizes": ["lfw"]})
        return

    overrides: dict[str, Any] = {"workers": 1}
    if args.possible_fmr is not None:
        overrides["possible_fmr"] = args.possible_fmr
    if args.possible_strangers is not None:
        overrides["possible_strangers"] = args.possible_strangers
    rows = []
    for size in args.sizes.split(","):
        if size == "lfw":
            data_dir = base
        else:
            # One padded copy per size: padding only adds, so a copy padded to 1M cannot
            # stand in for 100k.
            data_dir = args.work / f"padded-{int(size)}"
            if not data_dir.exists():
                shutil.copytree(base, data_dir)
        with Engine.open(data_dir, **overrides) as engine:
            if size != "lfw":
                pad(engine, int(size), console)
            label = f"{args.label or 'after'}@{size}"
            if args.request_photo == "query":
                selfies = selfies_analysed(engine, reqs, console)
            else:
                selfies = selfies_from_gallery(engine, reqs)
            missed: list[tuple[Request, str]] = []
            rows.append(measure(engine, reqs, selfies, person_of, label, missed))
            if args.misses is not None and size == "lfw":
                counts = dump_misses(
                    engine, missed, selfies, rows[-1].possible_threshold, args.misses
                )
                console.print(f"{len(missed)} photos missed ({counts}): {args.misses}")
            print_table(rows, console)
    write_json(
        [asdict(r) for r in rows],
        {"sizes": args.sizes, "requests": len(reqs)},
    )


if __name__ == "__main__":
    main()
