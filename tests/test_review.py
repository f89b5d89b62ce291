"""Rights requests reviewed by a person: candidates in tiers, no false "nothing held", and
expansion from the faces a reviewer confirms (issue 11's story, as a data subject meets it).

The catalog holds three photos of Scarlett Johansson among the other dev photos; the fourth is
her selfie. The match tier is made stricter than any distance here (a per-request false-match
rate of 1e-12), which is what a large gallery does to a weak model: the engine can no longer
decide alone. The possible tier must still show her three photos, and a reviewer's decision must
be enough to find, erase and suppress them all.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import add_test_source
from vultus.cli import app
from vultus.engine import Engine
from vultus.errors import RightsError
from vultus.rights.review import Review

PERSON = "Scarlett_Johansson"
runner = CliRunner()


def vultus(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def held_dir(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    data_dir = tmp_path_factory.mktemp("review")
    photos = sorted((faces_dir / "dev" / "images").rglob("*.*"))
    selfie = [p for p in photos if p.parent.name == PERSON][0]
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        summary = engine.add([p for p in photos if p != selfie], source="test")
        assert summary.errors == [] and summary.images_added == len(photos) - 1
    # What a weak model at a large gallery does: no distance passes the match decision.
    (data_dir / "vultus.toml").write_text("rights_fmr = 1e-12\n")
    return data_dir


@pytest.fixture
def data_dir(held_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(held_dir, copy)
    return copy


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    with Engine.open(data_dir, workers=1) as e:
        yield e


def selfie_of(faces_dir: Path) -> Path:
    return sorted((faces_dir / "dev" / "images" / PERSON).iterdir())[0]


def held_faces(engine: Engine) -> set[int]:
    return {
        r.face_id
        for r in engine.catalog.list_faces(limit=1000)
        if Path(r.image_path).parent.name == PERSON
    }


def test_no_certain_match_is_not_nothing_held(engine: Engine, faces_dir: Path) -> None:
    review = engine.review_person(selfie_of(faces_dir))
    hers = held_faces(engine)
    assert len(hers) == 3
    assert not [c for c in review.candidates if c.tier == "match"]
    possible = {c.face_id for c in review.candidates if c.tier == "possible"}
    assert hers <= possible
    assert review.headline().startswith("No certain match;")
    assert "nothing" not in review.headline().lower()
    # The reviewer's load stays small: a stranger or two at most besides her photos.
    assert len(possible - hers) <= engine.settings.possible_strangers
    # Every candidate carries its odds in words, and nothing is included unconfirmed.
    assert all("strangers' faces come this close" in c.odds for c in review.candidates)
    assert review.included == [] and engine.settle(review).matches == []


def test_a_confirmed_face_brings_the_others_by_expansion(engine: Engine, faces_dir: Path) -> None:
    hers = held_faces(engine)
    first = engine.review_person(selfie_of(faces_dir), expand=False)
    nearest = min((c for c in first.candidates if c.face_id in hers), key=lambda c: c.distance)
    # Confirming one of her faces: the search reruns from it and the rest come with it.
    review = engine.review_person(selfie_of(faces_dir), include=[nearest.face_id])
    assert review.rounds >= 1
    assert hers <= {c.face_id for c in review.candidates}
    assert nearest.face_id in review.face_ids
    with pytest.raises(RightsError, match="not candidates"):
        review.decide(include=[10**9])


def test_cli_story_preview_then_include_erases_all_three_and_suppresses(
    data_dir: Path, faces_dir: Path
) -> None:
    selfie = selfie_of(faces_dir)
    code, out = vultus(data_dir, "rights", "erase", str(selfie), "--preview", "--json")
    assert code == 0, out
    preview = json.loads(out)
    assert preview["headline"].startswith("No certain match;")
    with Engine.open(data_dir, workers=1) as engine:
        hers = held_faces(engine)
    shown = {c["face_id"]: c for c in preview["candidates"]}
    assert hers <= set(shown)
    for fid in hers:
        c = shown[fid]
        assert c["tier"] == "possible" and not c["included"]
        assert c["image_path"].endswith((".jpg", ".jpeg", ".png")) and c["image_id"] > 0
        assert c["distance"] > 0 and 0 < c["pair_fmr"] < 1 and c["odds"]
    # The preview changed nothing.
    with Engine.open(data_dir, workers=1) as engine:
        assert held_faces(engine) == hers

    # Without a decision, nothing is erased and the answer is not "nothing held".
    code, out = vultus(data_dir, "rights", "erase", str(selfie), "--yes")
    assert code == 1
    assert "possible match" in out and "Nothing was erased" in out

    include = [a for fid in sorted(hers) for a in ("--include", str(fid))]
    code, out = vultus(data_dir, "rights", "erase", str(selfie), *include, "--yes")
    assert code == 0, out
    assert "3 face(s) removed from Vultus" in out
    with Engine.open(data_dir, workers=1) as engine:
        assert held_faces(engine) == set()
        again = engine.add([selfie.parent], source="test")
        assert again.faces_suppressed == 4  # her three photos and the selfie itself
        assert held_faces(engine) == set()


def test_review_is_kept_with_the_request_and_survives_reloading(
    engine: Engine, faces_dir: Path
) -> None:
    request = engine.create_request("access", selfie=selfie_of(faces_dir).read_bytes())
    review = engine.request_review(request.ref, reviewer="dpo")
    hers = held_faces(engine)
    review.decide(include=sorted(hers), reviewer="dpo")
    engine.record_review(request.ref, engine.expand_review(review))
    assert engine.request(request.ref).status == "in_review"

    reloaded = engine.request_review(request.ref)
    assert set(reloaded.face_ids) == hers
    assert reloaded.reviewer == "dpo"
    assert Review.from_json(reloaded.to_json()).to_json() == reloaded.to_json()
    entry = engine.audit.entries(action="request")[-1]
    assert entry.details["event"] == "reviewed" and set(entry.details["included"]) == hers


def settle_as_hers(engine: Engine, ref: str, hers: set[int]) -> Review:
    """A reviewer includes her faces and strikes the others, until nothing is left to check."""
    review = engine.request_review(ref, reviewer="dpo")
    while review.to_check or not set(review.face_ids) >= hers & {
        c.face_id for c in review.candidates
    }:
        ids = {c.face_id for c in review.candidates}
        review = engine.decide_request(
            ref,
            include=ids & hers,
            strike=ids - hers,
            version=review.version,
            reviewer="dpo",
        )
    return review


def test_an_erasure_by_request_waits_for_every_decision_and_for_photos_added_since(
    engine: Engine, faces_dir: Path
) -> None:
    hers = held_faces(engine)
    selfie = selfie_of(faces_dir)
    request = engine.create_request("erasure", selfie=engine.intake_photo(selfie.read_bytes()))
    ref = request.ref
    first = engine.request_review(ref, reviewer="dpo")
    with pytest.raises(RightsError) as pending:
        engine.erase_request(ref, actor="dpo")
    assert pending.value.code == "review_pending" and "not yet decided" in pending.value.message

    review = settle_as_hers(engine, ref, hers)
    assert set(review.face_ids) == hers and review.version != first.version
    with pytest.raises(RightsError) as stale:
        engine.erase_request(ref, version=first.version, actor="dpo")
    assert stale.value.code == "review_changed"

    # A photo of her is catalogued after the review: nothing goes until it is looked at.
    assert engine.add([selfie], source="test").images_added == 1
    (new,) = held_faces(engine) - hers
    with pytest.raises(RightsError) as changed:
        engine.erase_request(ref, version=review.version, actor="dpo")
    assert changed.value.code == "review_changed" and "photos added since" in changed.value.message
    assert engine.face(new)  # nothing was erased
    review = engine.request_review(ref)
    (arrived,) = [c for c in review.candidates if c.face_id == new]
    assert arrived.found_in_round == review.rounds
    review = settle_as_hers(engine, ref, hers | {new})

    receipt = engine.erase_request(ref, version=review.version, actor="dpo")
    assert receipt.faces_erased == 4 and held_faces(engine) == set()
    closed = engine.request(ref)
    assert (closed.status, closed.receipt_id, closed.selfie) == ("done", receipt.receipt_id, None)
    assert engine.request_receipt(ref)["faces_erased"] == 4  # type: ignore[index]
    kept = engine.stored_review(ref)
    assert kept is not None and set(kept.face_ids) == hers | {new} and kept.template is None
    with pytest.raises(RightsError, match="nothing more is done"):
        engine.request_review(ref)
    actions = [e.action for e in engine.request_history(ref)]
    assert actions[0] == "request" and "erasure" in actions


def test_cli_records_a_request_from_a_photo_of_two_people_and_erases_by_it(
    data_dir: Path, faces_dir: Path
) -> None:
    extra = faces_dir / "dev" / "extra"
    code, out = vultus(
        data_dir, "rights", "request", "erasure", "--selfie", str(extra / "dogs.jpg")
    )
    assert code != 0 and "no usable face" in out
    two = str(extra / "two_people.jpg")
    code, out = vultus(data_dir, "rights", "request", "erasure", "--selfie", two)
    assert code == 2 and "shows 2 faces" in out and "--face N" in out
    code, out = vultus(data_dir, "rights", "request", "erasure", "--selfie", two, "--face", "2")
    assert code == 0, out
    found = re.search(r"request (R-\d{8}-[0-9A-F]{6})", out)
    assert found is not None
    ref = found[1]
    with Engine.open(data_dir, workers=1) as engine:
        assert len(engine.photo_faces(engine.request_selfie(ref)).faces) == 1

    selfie = selfie_of(faces_dir)
    code, out = vultus(
        data_dir, "rights", "update", ref, "--selfie", str(selfie), "--note", "better photo"
    )
    assert code == 0 and "photo replaced" in out, out
    with Engine.open(data_dir, workers=1) as engine:
        assert engine.request_selfie(ref) == selfie.read_bytes()
        assert "better photo" in (engine.request(ref).notes or "")
        hers = held_faces(engine)

    include = [a for fid in sorted(hers) for a in ("--include", str(fid))]
    code, out = vultus(
        data_dir, "rights", "erase", str(selfie), "--request", ref, *include, "--yes"
    )
    assert code == 0 and "3 face(s) removed from Vultus" in out, out
    with Engine.open(data_dir, workers=1) as engine:
        closed = engine.request(ref)
        assert closed.status == "done" and closed.receipt_id and closed.selfie is None
        review = engine.stored_review(ref)
        assert review is not None and review.to_check == []  # --yes struck the rest
    code, out = vultus(data_dir, "rights", "erase", str(selfie), "--request", ref, "--yes")
    assert code == 2 and "nothing more is done" in out
    code, out = vultus(data_dir, "rights", "suppression")
    assert code == 0 and ref in out  # the entry names the request that erased the person
