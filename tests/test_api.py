"""The REST API as its users meet it: an operator uploads photos, an investigator searches with
a purpose, a DPO answers rights requests, an auditor reads the log. Real app (through httpx),
real SQLite, real FAISS, real photos from the dev set."""

from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from typer.testing import CliRunner

from conftest import PURPOSE, add_test_source, name_controller
from vultus.api import create_app
from vultus.audit import EXPORT_FIELDS, verify_export
from vultus.cli import app as cli_app
from vultus.engine import Engine
from vultus.engine.apikeys import ROLES

# (method, route template) of every request any test here made, to check every route is used.
HITS: set[tuple[str, str]] = set()
RAN: set[str] = set()


@dataclasses.dataclass
class Api:
    client: TestClient
    engine: Engine
    app: FastAPI
    secrets: dict[str, str]

    def as_(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.secrets[role]}

    def image_ids(self) -> dict[str, int]:
        """Gallery images by identity (each photo is named after its person)."""
        listing = self.client.get("/v1/images?limit=500", headers=self.as_("operator")).json()
        return {Path(i["path"]).stem: i["id"] for i in listing}

    def face_of(self, identity: str) -> int:
        image_id = self.image_ids()[identity]
        faces = self.client.get(f"/v1/faces?image_id={image_id}", headers=self.as_("operator"))
        return int(faces.json()[0]["id"])


def dev(faces_dir: Path, identity: str, n: int) -> Path:
    """The n-th dev photo of a person (0 is the one in the gallery)."""
    return sorted((faces_dir / "dev" / "images" / identity).iterdir())[n]


def upload(path: Path | bytes, name: str = "photo.jpg") -> dict[str, tuple[str, bytes, str]]:
    data = path if isinstance(path, bytes) else path.read_bytes()
    return {"file": (name, data, "image/jpeg")}


@pytest.fixture(scope="session")
def api_dir(
    tmp_path_factory: pytest.TempPathFactory, gallery_split: tuple[list[Path], list]
) -> Path:
    """Each dev identity's first photo, copied (named after the person) and ingested once."""
    root = tmp_path_factory.mktemp("api")
    photos = root / "photos"
    photos.mkdir()
    for photo in gallery_split[0]:
        shutil.copy(photo, photos / f"{photo.parent.name}{photo.suffix}")
    with Engine.open(name_controller(root / "data"), workers=1) as engine:
        add_test_source(engine)
        assert engine.add([photos], source="test").images_added == 17
    return root / "data"


def _open(api_dir: Path, tmp_path: Path, **overrides: object) -> Engine:
    copy = tmp_path / "data"
    shutil.copytree(api_dir, copy)
    # The server reads photos that clients name by path from this test's folder only.
    overrides.setdefault("ingest_roots", [str(tmp_path)])
    return Engine.open(copy, workers=overrides.pop("workers", 1), **overrides)


def _api(engine: Engine, app: FastAPI, client: TestClient) -> Api:
    secrets = {role: engine.keys.create(role, role)[1] for role in ROLES}
    return Api(client, engine, app, secrets)


def _record(api: Api, request: pytest.FixtureRequest) -> None:
    RAN.add(request.node.name)
    for method, route, _status in api.app.state.metrics.requests.samples():
        HITS.add((method, route))


@pytest.fixture
def api(api_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    with _open(api_dir, tmp_path) as engine:
        app = create_app(engine=engine)
        api = _api(engine, app, TestClient(app))
        yield api
        _record(api, request)


def test_an_uploaded_photo_is_kept_and_found_by_a_search_with_a_purpose(
    api: Api, faces_dir: Path
) -> None:
    client, op, inv = api.client, api.as_("operator"), api.as_("investigator")
    source = {
        "name": "uploads",
        "lawful_basis": "legitimate_interests",
        "special_condition": "archiving_research",
        "purpose": "photos sent in by the newsroom",
        "retention_days": 30,
        "kind": "upload",
    }
    created = client.post("/v1/sources", json=source, headers=op)
    assert created.status_code == 201 and created.json()["images"] == 0
    assert created.json()["originals_deletable"] is False  # originals are left unless allowed
    assert {s["name"] for s in client.get("/v1/sources", headers=op).json()} == {"test", "uploads"}

    # Given a photo of Katy Perry uploaded under the source, with the integrator's own id ...
    data = dev(faces_dir, "Katy_Perry", 1).read_bytes()
    form = {"source": "uploads", "external_id": "crm-42"}
    response = client.post(
        "/v1/images", files=upload(data, "red carpet.jpg"), data=form, headers=op
    )
    assert response.status_code == 201, response.text
    image_id = response.json()["image_id"]
    assert response.json()["summary"]["faces_indexed"] == 1
    image = response.json()["image"]
    assert (image["id"], image["file_name"], image["external_id"]) == (
        image_id,
        "red carpet.jpg",
        "crm-42",
    )
    stored = api.engine.settings.data_dir / "images" / f"{hashlib.sha256(data).hexdigest()}.jpg"
    assert stored.read_bytes() == data  # a stored copy, which an erasure can blur
    assert image["path"] == str(stored)  # ... named by its content, but known by its name
    # Sent again, it is the same image; it keeps its names, and may not take another id.
    again = client.post("/v1/images", files=upload(data, "x.jpg"), data=form, headers=op)
    assert again.json()["image_id"] == image_id
    assert again.json()["summary"]["images_duplicate"] == 1
    assert again.json()["image"]["file_name"] == "red carpet.jpg"
    other_id = {"source": "uploads", "external_id": "crm-43"}
    refused = client.post("/v1/images", files=upload(data), data=other_id, headers=op)
    assert refused.status_code == 422 and refused.json()["code"] == "external_id_conflict"
    assert "crm-42" in refused.json()["message"]
    by_id = client.get("/v1/images", params={"external_id": "crm-42"}, headers=op).json()
    assert [i["id"] for i in by_id] == [image_id]

    detail = client.get(f"/v1/images/{image_id}", headers=op).json()
    assert detail["image"]["source"] == "uploads" and detail["image"]["faces"] == 1
    (face,) = detail["faces"]
    assert set(face["box"]) == {"left", "top", "right", "bottom"}
    listed = client.get("/v1/images", params={"source": "uploads"}, headers=op).json()
    assert [i["id"] for i in listed] == [image_id]
    assert len(client.get("/v1/images?limit=500", headers=op).json()) == 18

    # ... when an investigator searches with another photo of her, stating a purpose ...
    query = {"photo": ("query.jpg", dev(faces_dir, "Katy_Perry", 2).read_bytes(), "image/jpeg")}
    form = {"purpose": PURPOSE, "case_ref": "CASE-1", "top_k": "5"}
    response = client.post("/v1/search", files=query, data=form, headers=inv)
    assert response.status_code == 200, response.text
    result = response.json()
    # ... then both photos of her are the matches, with everything a reviewer needs.
    assert result["found"] and result["gallery_size"] == 18
    matched = {m["image_id"] for m in result["matches"] if m["is_match"]}
    assert matched == {image_id, api.image_ids()["Katy_Perry"]}
    best = result["matches"][0]
    assert set(best) == set(
        "face_id image_id file_name external_id image_path box distance similarity fmr "
        "is_match tier pair_fmr odds source lawful_basis subject video".split()
    )
    assert best["tier"] == "match" and "faces come this close" in best["odds"]
    assert best["video"] is None  # a photo's face; a face track of a video names its moment
    # The photos are named as their senders know them; where they lie on the server is for
    # the operator, not the investigator.
    names = {m["image_id"]: (m["file_name"], m["external_id"]) for m in result["matches"]}
    assert names[image_id] == ("red carpet.jpg", "crm-42")
    assert names[api.image_ids()["Katy_Perry"]] == ("Katy_Perry.jpg", None)
    assert all(m["image_path"] is None for m in result["matches"])
    assert (
        best["fmr"] < 1e-3 and best["lawful_basis"] == "legitimate_interests / archiving_research"
    )
    assert result["query_face"]["number"] == 1 and len(result["faces"]) == 1
    assert result["faces"][0]["box"] == result["query_face"]["box"]
    entry = api.engine.audit.entries(action="search")[-1]
    assert (entry.actor, entry.purpose, entry.case_ref) == ("key:investigator", PURPOSE, "CASE-1")

    # A search without a purpose, or with one outside the list, is refused.
    missing = client.post("/v1/search", files=query, data={"top_k": "5"}, headers=inv)
    assert missing.status_code == 422
    assert missing.json()["code"] == "purpose_required"
    unknown = client.post("/v1/search", files=query, data={"purpose": "curiosity"}, headers=inv)
    assert unknown.status_code == 422 and unknown.json()["code"] == "purpose_unknown"
    assert len(api.engine.audit.entries(action="search")) == 1

    # The investigator may look at the photo of a result, naming the search; each look is in
    # the audit log with that search and its purpose.
    via = {"search": result["search_id"]}
    assert result["search_id"] == entry.id
    shown = client.get(f"/v1/images/{image_id}/file", params=via, headers=inv)
    assert shown.status_code == 200 and shown.content == data
    assert shown.headers["content-type"] == "image/jpeg"
    thumb = client.get(f"/v1/images/{image_id}/thumbnail", params={"max": 64, **via}, headers=inv)
    assert thumb.headers["content-type"] == "image/jpeg"
    assert max(PILImage.open(io.BytesIO(thumb.content)).size) <= 64
    views = api.engine.audit.entries(action="view", actor="key:investigator")
    assert [v.result_ids for v in views] == [[face["id"]], [face["id"]]]
    assert {(v.details["search"], v.purpose, v.case_ref) for v in views} == {
        (entry.id, PURPOSE, "CASE-1")
    }

    # A group photo: HOG and MMOD find five faces; looking harder, a sixth (the nearest).
    group = (faces_dir / "dev" / "extra" / "selfie-many-people.jpg").read_bytes()
    seen = {}
    for how in ("", "harder"):
        fields = {"purpose": PURPOSE, **({"detection": how} if how else {})}
        found = client.post(
            "/v1/search", files={"photo": ("g.jpg", group, "image/jpeg")}, data=fields, headers=inv
        )
        assert found.status_code == 200, found.text
        seen[how] = len(found.json()["faces"])
    assert seen == {"": 5, "harder": 6}


def test_an_investigator_sees_the_photos_of_its_own_results_and_nothing_else(
    api: Api, faces_dir: Path
) -> None:
    client, inv = api.client, api.as_("investigator")
    other_inv = {"X-API-Key": api.engine.keys.create("other", "investigator")[1]}
    images = api.image_ids()
    # Given an investigator's search with a photo of Katy Perry, for a purpose ...
    query = {"photo": ("q.jpg", dev(faces_dir, "Katy_Perry", 2).read_bytes(), "image/jpeg")}
    form = {"purpose": PURPOSE, "case_ref": "CASE-9", "top_k": "3"}
    result = client.post("/v1/search", files=query, data=form, headers=inv).json()
    search = result["search_id"]
    returned = {m["image_id"] for m in result["matches"]}
    faces = {m["face_id"] for m in result["matches"]}
    assert images["Katy_Perry"] in returned
    # ... then it sees the photos and faces of those results, naming the search ...
    for image_id in returned:
        for what in ("file", "thumbnail"):
            shown = client.get(
                f"/v1/images/{image_id}/{what}", params={"search": search}, headers=inv
            )
            assert shown.status_code == 200, shown.text
    for face_id in faces:
        shown = client.get(f"/v1/faces/{face_id}", params={"search": search}, headers=inv)
        assert shown.status_code == 200
    # ... and nothing else: no photo without a search, none outside its results, none through
    # another key's search or an audit entry that is not a search.
    refused: list[tuple[str, int, str]] = []
    for image_id in images.values():
        for params in ({}, {"search": search}, {"search": search + 10_000}):
            answer = client.get(f"/v1/images/{image_id}/file", params=params, headers=inv)
            if answer.status_code == 200:
                assert image_id in returned and params == {"search": search}
            else:
                refused.append((str(params), answer.status_code, answer.json()["code"]))
    assert len(refused) == 3 * len(images) - len(returned)
    assert {(status, code) for _, status, code in refused} == {
        (403, "search_required"),
        (403, "not_in_results"),
    }
    katy = images["Katy_Perry"]
    theirs = client.get(f"/v1/images/{katy}/file", params={"search": search}, headers=other_inv)
    assert theirs.status_code == 403 and theirs.json()["code"] == "not_in_results"
    a_view = api.engine.audit.entries(action="view", actor="key:investigator")[-1].id
    not_a_search = client.get(f"/v1/images/{katy}/file", params={"search": a_view}, headers=inv)
    assert not_a_search.status_code == 403
    unlisted = next(f for f in range(1, 100) if f not in faces)
    face = client.get(f"/v1/faces/{unlisted}", params={"search": search}, headers=inv)
    assert face.status_code == 403 and face.json()["code"] == "not_in_results"
    assert client.get(f"/v1/faces/{min(faces)}", headers=inv).status_code == 403
    # Named subjects are looked up only by searching with them.
    op = api.as_("operator")
    client.post("/v1/subjects", json={"name": "Katy", "face_ids": [min(faces)]}, headers=op)
    assert client.get("/v1/subjects/Katy", headers=inv).status_code == 403
    # Every view it made is in the audit log with the search it came from, and its purpose.
    views = api.engine.audit.entries(action="view", actor="key:investigator")
    assert len(views) == 2 * len(returned) + len(faces) + len(returned)
    assert {(v.details["search"], v.purpose, v.case_ref) for v in views} == {
        (search, PURPOSE, "CASE-9")
    }
    assert all(set(v.result_ids) & faces for v in views)


def test_search_by_face_and_by_subject_and_verify_two_photos(api: Api, faces_dir: Path) -> None:
    client, op, inv = api.client, api.as_("operator"), api.as_("investigator")
    # A photo on the server is registered where it lies.
    second = api.engine.settings.data_dir.parent / "katy.jpg"
    shutil.copy(dev(faces_dir, "Katy_Perry", 1), second)
    registered = client.post(
        "/v1/images/register", json={"path": str(second), "source": "test"}, headers=op
    )
    assert registered.status_code == 201, registered.text
    second_id = registered.json()["image_id"]
    folder = client.post(
        "/v1/images/register", json={"path": str(second.parent), "source": "test"}, headers=op
    )
    assert folder.status_code == 422 and folder.json()["code"] == "path_is_folder"

    katy = api.face_of("Katy_Perry")
    made = client.post("/v1/subjects", json={"name": "Katy Perry", "face_ids": [katy]}, headers=op)
    assert made.status_code == 201 and [f["id"] for f in made.json()["faces"]] == [katy]
    shown = client.get("/v1/subjects/Katy Perry", headers=op).json()
    assert shown["subject"]["faces"] == 1

    by_face = client.post(
        "/v1/search/face", json={"face_id": katy, "purpose": PURPOSE}, headers=inv
    )
    assert by_face.status_code == 200, by_face.text
    assert katy not in [m["face_id"] for m in by_face.json()["matches"]]
    assert by_face.json()["matches"][0]["image_id"] == second_id
    assert by_face.json()["matches"][0]["is_match"]
    by_subject = client.post(
        "/v1/search/subject",
        json={"subject": "Katy Perry", "purpose": PURPOSE, "margin": 0.05},
        headers=inv,
    )
    assert [m["image_id"] for m in by_subject.json()["matches"] if m["is_match"]][-1] == second_id
    # The open-set answer names the subject; no other subject is near enough to make it doubtful.
    assert by_subject.json()["best_subject"] == "Katy Perry"
    assert by_subject.json()["ambiguous"] is False
    no_purpose = client.post("/v1/search/face", json={"face_id": katy}, headers=inv)
    assert no_purpose.status_code == 422 and no_purpose.json()["code"] == "purpose_required"

    def verify(a: Path, b: Path, **form: str) -> dict:
        files = {
            "photo_a": ("a.jpg", a.read_bytes(), "image/jpeg"),
            "photo_b": ("b.jpg", b.read_bytes(), "image/jpeg"),
        }
        response = client.post("/v1/verify", files=files, data=form, headers=inv)
        return {**response.json(), "http": response.status_code}

    same = verify(dev(faces_dir, "Katy_Perry", 2), dev(faces_dir, "Katy_Perry", 3), purpose=PURPOSE)
    assert same["http"] == 200 and same["same_person"] is True
    other = verify(dev(faces_dir, "Katy_Perry", 2), dev(faces_dir, "Elon_Musk", 1), purpose=PURPOSE)
    assert other["same_person"] is False and other["distance"] > same["distance"]
    refused = verify(dev(faces_dir, "Katy_Perry", 2), dev(faces_dir, "Katy_Perry", 3))
    assert refused["http"] == 422 and refused["code"] == "purpose_required"
    assert [e.actor for e in api.engine.audit.entries(action="verify")] == ["key:investigator"] * 2

    # Searches from many threads at once answer as one alone does (the engine serialises the
    # pipeline and the index; the server runs each request in its own thread).
    photo = dev(faces_dir, "Katy_Perry", 3).read_bytes()

    def search_once(_: int) -> list[tuple[int, float]]:
        files = {"photo": ("q.jpg", photo, "image/jpeg")}
        response = client.post("/v1/search", files=files, data={"purpose": PURPOSE}, headers=inv)
        assert response.status_code == 200, response.text
        return [(m["image_id"], m["distance"]) for m in response.json()["matches"]]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(search_once, range(8)))
    assert all(a == answers[0] for a in answers)
    assert {i for i, _ in answers[0][:2]} == {second_id, api.image_ids()["Katy_Perry"]}


def test_subjects_are_created_renamed_merged_linked_and_unlinked(api: Api) -> None:
    client, op = api.client, api.as_("operator")
    elon, jeff, katy = (api.face_of(n) for n in ("Elon_Musk", "Jeff_Bezos", "Katy_Perry"))
    assert client.post(
        "/v1/subjects", json={"name": "A", "face_ids": [elon]}, headers=op
    ).is_success
    assert client.post(
        "/v1/subjects", json={"name": "B", "face_ids": [jeff]}, headers=op
    ).is_success
    twice = client.post("/v1/subjects", json={"name": "A"}, headers=op)
    assert twice.status_code == 422 and twice.json()["code"] == "exists"
    unknown_face = client.post("/v1/subjects", json={"name": "C", "face_ids": [10**6]}, headers=op)
    assert unknown_face.status_code == 404

    renamed = client.patch("/v1/subjects/A", json={"name": "Elon Musk"}, headers=op)
    assert renamed.json()["subject"]["name"] == "Elon Musk"
    assert client.get("/v1/subjects/A", headers=op).status_code == 404
    linked = client.post("/v1/subjects/B/faces", json={"face_ids": [katy]}, headers=op)
    assert linked.json() == {"count": 1}
    merged = client.post("/v1/subjects/Elon Musk/merge", json={"other": "B"}, headers=op)
    assert sorted(f["id"] for f in merged.json()["faces"]) == sorted([elon, jeff, katy])
    assert client.get("/v1/subjects/B", headers=op).status_code == 404

    unlinked = client.delete(f"/v1/subjects/Elon Musk/faces/{katy}", headers=op)
    assert unlinked.json() == {"count": 1}
    assert client.delete(f"/v1/subjects/Elon Musk/faces/{katy}", headers=op).status_code == 404
    assert client.get("/v1/subjects", headers=op).json()[0]["faces"] == 2
    faces = client.get("/v1/faces", params={"subject": "Elon Musk"}, headers=op).json()
    assert sorted(f["id"] for f in faces) == sorted([elon, jeff])
    assert client.get(f"/v1/faces/{katy}", headers=op).json()["subject"] is None

    # Deleting a subject takes its name and links, never its faces.
    assert client.post("/v1/subjects", json={"name": "K", "face_ids": [katy]}, headers=op)
    assert client.delete("/v1/subjects/K", headers=op).json() == {"count": 1}
    assert client.get("/v1/subjects/K", headers=op).status_code == 404
    assert client.delete("/v1/subjects/K", headers=op).status_code == 404
    assert client.get(f"/v1/faces/{katy}", headers=op).json()["subject"] is None

    # Deleting the only face of a photo takes the photo with it; deleting a photo its faces.
    jeff_image = api.image_ids()["Jeff_Bezos"]
    assert client.delete(f"/v1/faces/{jeff}", headers=op).json() == {"count": 1}
    assert client.get(f"/v1/faces/{jeff}", headers=op).status_code == 404
    assert client.get(f"/v1/images/{jeff_image}", headers=op).status_code == 404
    katy_image = api.image_ids()["Katy_Perry"]
    assert client.delete(f"/v1/images/{katy_image}", headers=op).json() == {"count": 1}
    assert len(api.image_ids()) == 15


def test_a_rights_request_is_answered_and_the_erased_person_is_gone(
    api: Api, faces_dir: Path
) -> None:
    client, dpo, inv = api.client, api.as_("dpo"), api.as_("investigator")
    kit = api.face_of("Kit_Harington")
    kit_image = api.image_ids()["Kit_Harington"]
    kit_path = client.get(f"/v1/images/{kit_image}", headers=api.as_("operator")).json()["image"][
        "path"
    ]
    selfie = dev(faces_dir, "Kit_Harington", 1).read_bytes()

    def search_kit() -> dict:
        photo = {"photo": ("q.jpg", dev(faces_dir, "Kit_Harington", 2).read_bytes(), "image/jpeg")}
        response = client.post("/v1/search", files=photo, data={"purpose": PURPOSE}, headers=inv)
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert kit in [m["face_id"] for m in search_kit()["matches"] if m["is_match"]]

    # An erasure request arrives with a selfie: it is due in one month (Art. 12(3)).
    response = client.post(
        "/v1/rights/requests",
        data={"kind": "erasure", "contact": "kit@example.org"},
        files={"selfie": ("selfie.jpg", selfie, "image/jpeg")},
        headers=dpo,
    )
    assert response.status_code == 201, response.text
    request = response.json()
    ref = request["ref"]
    assert request["status"] == "received" and request["has_selfie"]
    assert 27 <= request["days_left"] <= 31 and not request["overdue"]
    assert ref in [r["ref"] for r in client.get("/v1/rights/requests", headers=dpo).json()]
    moved = client.patch(f"/v1/rights/requests/{ref}", json={"status": "in_review"}, headers=dpo)
    assert moved.json()["status"] == "in_review"
    no_reason = client.patch(f"/v1/rights/requests/{ref}", json={"extend_months": 1}, headers=dpo)
    assert no_reason.status_code == 422
    extended = client.patch(
        f"/v1/rights/requests/{ref}",
        json={"extend_months": 1, "reason": "many sources"},
        headers=dpo,
    ).json()
    assert extended["deadline"] == extended["extended_until"] > extended["due_at"]

    # The DPO reviews the candidates: the match is included; possible ones are decided by eye.
    review = client.get(f"/v1/rights/requests/{ref}/review", headers=dpo).json()
    assert review["kind"] == "erasure" and review["included"] == [kit]
    assert review["headline"].startswith("1 match") and review["version"]
    (candidate,) = [c for c in review["candidates"] if c["face_id"] == kit]
    assert candidate["tier"] == "match" and candidate["included"] and candidate["odds"]
    assert client.get(f"/v1/rights/requests/{ref}", headers=dpo).json()["reviewed"]
    if review["to_check"]:
        pending = client.post(
            f"/v1/rights/requests/{ref}/erasure", json={"confirm": True}, headers=dpo
        )
        assert pending.status_code == 422 and pending.json()["code"] == "review_pending"
        review = client.post(
            f"/v1/rights/requests/{ref}/review",
            data={"strike": review["to_check"], "review_version": review["version"]},
            headers=dpo,
        ).json()
    assert review["to_check"] == [] and review["included"] == [kit]

    # Then previews, and erases exactly what was reviewed.
    preview = client.get(f"/v1/rights/requests/{ref}/erasure-preview", headers=dpo).json()
    assert preview["face_ids"] == [kit] and preview["images_removed"] == 1
    assert preview["review_version"] == review["version"] and preview["to_check"] == []
    erase = f"/v1/rights/requests/{ref}/erasure"
    unconfirmed = client.post(erase, json={"confirm": False}, headers=dpo)
    assert unconfirmed.json()["code"] == "confirmation_required"
    stale = client.post(erase, json={"confirm": True, "face_ids": [kit, 10**6]}, headers=dpo)
    assert stale.status_code == 422 and stale.json()["code"] == "plan_changed"
    old = client.post(erase, json={"confirm": True, "review_version": "0" * 16}, headers=dpo)
    assert old.status_code == 422 and old.json()["code"] == "review_changed"
    assert client.get(f"/v1/faces/{kit}", headers=dpo).status_code == 200  # nothing erased yet
    receipt = client.post(
        erase,
        json={"confirm": True, "face_ids": [kit], "review_version": review["version"]},
        headers=dpo,
    )
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["faces_erased"] == 1 and receipt.json()["suppression_added"]
    assert receipt.json()["signature"]
    # The photo is the operator's original, outside the data directory, under a source that
    # does not let Vultus delete originals: it is left in place, and the receipt says so.
    assert receipt.json()["images_erased"] == 1 and receipt.json()["originals_deleted"] == []
    ((left),) = receipt.json()["left_in_place"]
    assert left["location"] == kit_path and "originals_deletable" in left["reason"]
    assert Path(kit_path).exists()
    rid = receipt.json()["receipt_id"]
    assert client.get(f"/v1/rights/requests/{ref}", headers=dpo).json()["receipt_id"] == rid

    # Then the person no longer appears: not in a search, not as a face, not as a photo.
    after = search_kit()
    assert kit not in [m["face_id"] for m in after["matches"]] and not after["found"]
    assert client.get(f"/v1/faces/{kit}", headers=dpo).status_code == 404
    assert client.get(f"/v1/images/{kit_image}", headers=api.as_("operator")).status_code == 404
    # Uploaded again, the photo is refused as suppressed, and the answer names it.
    again = client.post(
        "/v1/images",
        files=upload(Path(kit_path), "kit-again.jpg"),
        data={"source": "test"},
        headers=api.as_("operator"),
    )
    assert again.status_code == 201 and again.json()["image_id"] is None
    assert again.json()["summary"]["suppressed_photos"] == ["kit-again.jpg"]
    (entry,) = client.get("/v1/rights/suppression", headers=dpo).json()
    # The erasure closed the request, with its receipt; its photo is gone.
    done = client.get(f"/v1/rights/requests/{ref}", headers=dpo).json()
    assert done["status"] == "done" and done["closed_at"] and not done["overdue"]
    assert done["receipt_id"] == receipt.json()["receipt_id"] and not done["has_selfie"]
    same = client.patch(f"/v1/rights/requests/{ref}", json={"status": "done"}, headers=dpo)
    assert same.status_code == 200 and same.json()["closed_at"] == done["closed_at"]
    reopen = client.patch(f"/v1/rights/requests/{ref}", json={"status": "received"}, headers=dpo)
    assert reopen.status_code == 422 and reopen.json()["code"] == "closed"
    assert ref not in [r["ref"] for r in client.get("/v1/rights/requests", headers=dpo).json()]
    closed = client.get("/v1/rights/requests", params={"all": True}, headers=dpo).json()
    assert ref in [r["ref"] for r in closed]
    again = client.get(f"/v1/rights/requests/{ref}/erasure-preview", headers=dpo)
    assert again.json()["code"] == "closed"
    history = client.get(f"/v1/rights/requests/{ref}/history", headers=dpo).json()
    assert [h["action"] for h in history][0] == "request" and "erasure" in {
        h["action"] for h in history
    }
    assert all(h["details"]["request"] == ref for h in history)
    removed = client.post(
        f"/v1/rights/suppression/{entry['id']}/remove",
        json={"reason": "consent given"},
        headers=dpo,
    )
    assert removed.is_success and client.get("/v1/rights/suppression", headers=dpo).json() == []

    # An access request: reviewed, with an identity check; the package holds the person's
    # photos, and nothing else.
    katy_selfie = dev(faces_dir, "Katy_Perry", 1).read_bytes()
    access = client.post(
        "/v1/rights/requests",
        data={"kind": "access"},
        files={"selfie": ("s.jpg", katy_selfie, "image/jpeg")},
        headers=dpo,
    ).json()["ref"]
    wrong = client.get(f"/v1/rights/requests/{access}/erasure-preview", headers=dpo)
    assert wrong.status_code == 422 and wrong.json()["code"] == "wrong_kind"
    katy_review = client.get(f"/v1/rights/requests/{access}/review", headers=dpo).json()
    strangers = client.post(
        f"/v1/rights/requests/{access}/review",
        data={"strike": katy_review["to_check"]},
        files={"verify_with": ("id.jpg", selfie, "image/jpeg")},  # Kit's face, not hers
        headers=dpo,
    )
    assert strangers.status_code == 422 and strangers.json()["code"] == "identity_check_failed"
    katy_review = client.post(
        f"/v1/rights/requests/{access}/review",
        data={"strike": katy_review["to_check"]},
        files={"verify_with": ("id.jpg", dev(faces_dir, "Katy_Perry", 2).read_bytes(), "i/j")},
        headers=dpo,
    ).json()
    assert katy_review["identity_check"].startswith("The selfie matched")
    package = client.post(
        f"/v1/rights/requests/{access}/access-package",
        data={"review_version": katy_review["version"]},
        headers=dpo,
    )
    assert package.status_code == 200, package.text
    assert package.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(package.content)) as z:
        data = json.loads(z.read("data.json"))
    assert [img["image_id"] for img in data["images"]] == [api.image_ids()["Katy_Perry"]]
    assert client.get(f"/v1/rights/requests/{access}", headers=dpo).json()["kind"] == "access"

    # Restriction keeps a face out of results until lifted; an objection restricts at once.
    elon = api.face_of("Elon_Musk")
    restrict = {"face_ids": [elon], "reason": "accuracy contested"}
    assert client.post("/v1/rights/restrictions", json=restrict, headers=dpo).json() == {"count": 1}
    query = {"photo": ("e.jpg", dev(faces_dir, "Elon_Musk", 1).read_bytes(), "image/jpeg")}
    form = {"purpose": PURPOSE}
    hidden = client.post("/v1/search", files=query, data=form, headers=inv).json()
    assert elon not in [m["face_id"] for m in hidden["matches"]]
    lift = {**restrict, "lift": True}
    assert client.post("/v1/rights/restrictions", json=lift, headers=dpo).json() == {"count": 1}
    shown = client.post("/v1/search", files=query, data=form, headers=inv).json()
    assert elon in [m["face_id"] for m in shown["matches"]]
    rose = dev(faces_dir, "Rose_Leslie", 1).read_bytes()
    objection = client.post(
        "/v1/rights/objections", files={"selfie": ("r.jpg", rose, "image/jpeg")}, headers=dpo
    ).json()
    assert objection["faces_restricted"] == 1
    assert objection["request"]["kind"] == "objection"
    assert objection["request"]["status"] == "in_review"
    rose_face = api.face_of("Rose_Leslie")
    listed = client.get("/v1/rights/restrictions", headers=dpo).json()
    assert [f["id"] for f in listed] == [rose_face] and listed[0]["restricted"]
    # Settled: the restriction of the reviewed faces is lifted, through the review.
    objection_ref = objection["request"]["ref"]
    rose_review = client.get(f"/v1/rights/requests/{objection_ref}/review", headers=dpo).json()
    client.post(
        f"/v1/rights/requests/{objection_ref}/review",
        data={"strike": rose_review["to_check"]},
        headers=dpo,
    )
    lifted = client.post(
        f"/v1/rights/requests/{objection_ref}/restriction", json={"lift": True}, headers=dpo
    )
    assert lifted.json() == {"face_ids": [rose_face], "lifted": True}
    assert client.get("/v1/rights/restrictions", headers=dpo).json() == []
    assert all(e.actor == "key:dpo" for e in api.engine.audit.entries(action="request"))


def test_a_request_photo_must_show_the_person_and_can_be_replaced(
    api: Api, faces_dir: Path
) -> None:
    client, dpo = api.client, api.as_("dpo")
    extra = faces_dir / "dev" / "extra"
    two = (extra / "kit_with_rose.jpg").read_bytes()
    faces = client.post(
        "/v1/rights/photo-faces", files={"photo": ("two.jpg", two, "image/jpeg")}, headers=dpo
    ).json()
    assert [f["number"] for f in faces["faces"]] == [1, 2] and faces["unusable"] == 0
    assert faces["faces"][0]["box"]["right"] > faces["faces"][0]["box"]["left"]

    def new(photo: bytes, **fields: str) -> dict:
        response = client.post(
            "/v1/rights/requests",
            data={"kind": "erasure", **fields},
            files={"selfie": ("p.jpg", photo, "image/jpeg")},
            headers=dpo,
        )
        return {**response.json(), "http": response.status_code}

    dogs = new((extra / "dogs.jpg").read_bytes())
    assert (dogs["http"], dogs["code"]) == (422, "no_face")
    several = new(two)
    assert (several["http"], several["code"]) == (422, "several_faces")
    assert new(two, face="3")["code"] == "no_such_face"
    assert client.get("/v1/rights/requests", headers=dpo).json() == []  # nothing stored
    created = new(two, face="1")
    assert created["http"] == 201 and created["has_selfie"]
    ref = created["ref"]
    kept = api.engine.request_selfie(ref)
    assert kept != two and len(api.engine.photo_faces(kept).faces) == 1
    kit = api.face_of("Kit_Harington")
    assert client.get(f"/v1/rights/requests/{ref}/review", headers=dpo).json()["included"] == [kit]

    rose = dev(faces_dir, "Rose_Leslie", 1).read_bytes()
    replaced = client.put(
        f"/v1/rights/requests/{ref}/selfie",
        files={"selfie": ("r.jpg", rose, "image/jpeg")},
        headers=dpo,
    )
    assert replaced.status_code == 200 and not replaced.json()["reviewed"]
    rose_face = api.face_of("Rose_Leslie")
    review = client.get(f"/v1/rights/requests/{ref}/review", headers=dpo).json()
    assert review["included"] == [rose_face]

    noted = client.post(
        f"/v1/rights/requests/{ref}/notes", json={"text": "Photo replaced by email"}, headers=dpo
    )
    assert "key:dpo: Photo replaced by email" in noted.json()["notes"]
    events = [
        h["details"].get("event")
        for h in client.get(f"/v1/rights/requests/{ref}/history", headers=dpo).json()
    ]
    assert events == ["received", "reviewed", "photo_replaced", "reviewed", "note"]
    refused = client.patch(f"/v1/rights/requests/{ref}", json={"status": "rejected"}, headers=dpo)
    assert refused.json()["status"] == "rejected" and not refused.json()["has_selfie"]
    late = client.put(
        f"/v1/rights/requests/{ref}/selfie",
        files={"selfie": ("r.jpg", rose, "image/jpeg")},
        headers=dpo,
    )
    assert late.status_code == 422 and late.json()["code"] == "closed"
    assert (
        client.get(f"/v1/rights/requests/{ref}/history", headers=dpo).json()[-1]["details"][
            "photo_destroyed"
        ]
        is True
    )


def test_the_audit_log_is_queried_exported_and_verified(
    api: Api, tmp_path: Path, faces_dir: Path
) -> None:
    client, inv = api.client, api.as_("investigator")
    query = {"photo": ("k.jpg", dev(faces_dir, "Katy_Perry", 1).read_bytes(), "image/jpeg")}
    form = {"purpose": PURPOSE, "case_ref": "CASE-9"}
    found = client.post("/v1/search", files=query, data=form, headers=inv).json()["matches"]
    assert found and found[0]["face_id"] == api.face_of("Katy_Perry")

    for reader in ("dpo", "auditor"):
        entries = client.get("/v1/audit", params={"action": "search"}, headers=api.as_(reader))
        (entry,) = entries.json()
        assert entry["actor"] == "key:investigator" and entry["case_ref"] == "CASE-9"
        assert entry["result_ids"] == [m["face_id"] for m in found]
    disclosed = found[0]["face_id"]
    who = client.get("/v1/audit", params={"face_id": disclosed}, headers=api.as_("auditor"))
    assert [e["action"] for e in who.json()] == ["search"]
    mine = client.get(
        "/v1/audit", params={"actor": "key:investigator", "since": "2000-01-01"}, headers=inv
    )
    assert mine.status_code == 403  # an investigator does not read the audit log
    far = client.get(
        "/v1/audit", params={"since": "0001-01-01T00:00+01:00"}, headers=api.as_("dpo")
    )
    assert far.status_code == 422 and far.json()["code"] == "invalid_request"

    exported = client.get("/v1/audit/export", headers=api.as_("auditor"))
    assert exported.status_code == 200
    lines = exported.text.splitlines()
    assert len(lines) == len(api.engine.audit.entries())
    (tmp_path / "audit.jsonl").write_text(exported.text)
    assert verify_export(tmp_path / "audit.jsonl").ok
    as_csv = client.get("/v1/audit/export", params={"format": "csv"}, headers=api.as_("dpo"))
    assert as_csv.text.splitlines()[0].split(",") == list(EXPORT_FIELDS)
    verified = client.get("/v1/audit/verify", headers=api.as_("auditor")).json()
    assert verified["ok"] and verified["entries"] == len(lines) and verified["problems"] == []

    ropa = client.get("/v1/reports/ropa", headers=api.as_("dpo"))
    assert ropa.status_code == 200 and ropa.headers["content-type"].startswith("text/markdown")
    assert "Record of processing" in ropa.text and "legitimate" in ropa.text
    dpia = client.get("/v1/reports/dpia", params={"format": "html"}, headers=api.as_("dpo"))
    assert dpia.headers["content-type"].startswith("text/html") and "<html" in dpia.text.lower()


def test_an_admin_manages_keys_and_rotates_the_master_key(
    api_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # A key file of this test's own: the rotation must not change the one the others share.
    shutil.copy(os.environ["VULTUS_KEY_FILE"], tmp_path / "own.key")
    os.chmod(tmp_path / "own.key", 0o600)
    monkeypatch.setenv("VULTUS_KEY_FILE", str(tmp_path / "own.key"))
    with _open(api_dir, tmp_path) as engine, TestClient(create_app(engine=engine)) as client:
        api = _api(engine, client.app, client)  # type: ignore[arg-type]
        admin = api.as_("admin")
        made = client.post(
            "/v1/keys", json={"name": "ci", "role": "auditor", "expires_days": 30}, headers=admin
        )
        assert made.status_code == 201
        secret = made.json()["secret"]
        assert secret.startswith("vk_") and made.json()["key"]["expires_at"]
        bearer = {"Authorization": f"Bearer {secret}"}
        assert client.get("/v1/audit/verify", headers=bearer).is_success
        names = {k["name"]: k for k in client.get("/v1/keys", headers=admin).json()}
        assert set(names) == {*ROLES, "ci"} and names["ci"]["last_used_at"]
        assert secret not in json.dumps(names)
        bad_role = client.post("/v1/keys", json={"name": "x", "role": "root"}, headers=admin)
        assert bad_role.status_code == 422 and bad_role.json()["code"] == "invalid_request"
        assert client.delete("/v1/keys/ci", headers=admin).json()["revoked_at"]
        refused = client.get("/v1/audit/verify", headers=bearer)
        assert refused.status_code == 401 and refused.json()["code"] == "key_revoked"
        assert client.delete("/v1/keys/nobody", headers=admin).status_code == 404
        # The last admin key stays: without one, keys could be managed only at the machine.
        last = client.delete("/v1/keys/admin", headers=admin)
        assert last.status_code == 403 and last.json()["code"] == "last_admin_key"
        changes = engine.audit.entries(action="key_change", actor="key:admin")
        assert [e.details["event"] for e in changes] == ["created", "revoked"]

        # The master key is rotated in the background; every search answers as before.
        body = {"face_id": api.face_of("Katy_Perry"), "purpose": PURPOSE}
        inv = api.as_("investigator")
        before = client.post("/v1/search/face", json=body, headers=inv).json()["matches"]
        old_key = engine.keyring.active_id
        job = client.post("/v1/jobs/rotate-keys", headers=admin)
        assert job.status_code == 202
        done = wait_for(client, job.json()["id"], admin)
        assert done["status"] == "done", done
        assert done["result"]["templates"] == 17 and done["result"]["key"] != old_key
        after = client.post("/v1/search/face", json=body, headers=inv).json()["matches"]
        assert after == before
        assert client.get("/v1/audit/verify", headers=api.as_("auditor")).json()["ok"]
        _record(api, request)


def test_a_folder_ingest_job_runs_beside_searches_and_is_polled_to_completion(
    api_dir: Path,
    tmp_path: Path,
    gallery_split: tuple[list[Path], list[tuple[Path, str]]],
    request: pytest.FixtureRequest,
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    probes = gallery_split[1][:8]
    for i, (photo, _) in enumerate(probes):
        shutil.copy(photo, incoming / f"{i:02d}{photo.suffix}")
    # Two workers: analysis runs in worker processes, the engine lock only guards the writes.
    with _open(api_dir, tmp_path, workers=2) as engine, TestClient(create_app(engine=engine)) as c:
        api = _api(engine, c.app, c)  # type: ignore[arg-type]
        op, inv = api.as_("operator"), api.as_("investigator")
        katy = api.face_of("Katy_Perry")
        nowhere = {"path": str(tmp_path / "nope"), "source": "test"}
        bad = c.post("/v1/jobs/ingest", json=nowhere, headers=op)
        assert bad.status_code == 404 and bad.json()["code"] == "path_not_found"
        unknown = c.post("/v1/jobs/ingest", json={"path": str(incoming), "source": "x"}, headers=op)
        assert unknown.status_code == 422 and unknown.json()["code"] == "source_unknown"

        started = c.post(
            "/v1/jobs/ingest", json={"path": str(incoming), "source": "test"}, headers=op
        )
        assert started.status_code == 202 and started.json()["status"] in {"queued", "running"}
        job_id = started.json()["id"]
        deadline = time.monotonic() + 180
        while True:
            job = c.get(f"/v1/jobs/{job_id}", headers=op).json()
            if job["status"] in {"done", "failed"} or time.monotonic() > deadline:
                break
            # Searches go on while the job writes: neither waits for the other to finish.
            body = {"face_id": katy, "purpose": PURPOSE}
            assert c.post("/v1/search/face", json=body, headers=inv).status_code == 200
            time.sleep(0.2)
        assert job["status"] == "done", job
        assert job["done"] == job["total"] == 8 and job["attempts"] == 1
        assert job["result"]["images_added"] == 8 and job["actor"] == "key:operator"
        assert len(api.image_ids()) == 25
        katy_probes = sum(who == "Katy_Perry" for _, who in probes)
        found = c.post("/v1/search/face", json={"face_id": katy, "purpose": PURPOSE}, headers=inv)
        assert sum(m["is_match"] for m in found.json()["matches"]) == katy_probes

        flat = {"factory": "IDMap2,Flat"}
        rebuild = c.post("/v1/jobs/rebuild-index", json=flat, headers=api.as_("admin"))
        assert rebuild.status_code == 202
        done = wait_for(c, rebuild.json()["id"], op)
        assert done["status"] == "done" and done["result"] == {
            "factory": "IDMap2,Flat",
            "faces": 25,
        }
        listed = c.get("/v1/jobs", headers=api.as_("admin")).json()
        assert [j["kind"] for j in listed] == ["rebuild_index", "ingest"]
        _record(api, request)


def wait_for(client: TestClient, job_id: int, headers: dict[str, str]) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = dict(client.get(f"/v1/jobs/{job_id}", headers=headers).json())
        if job["status"] in {"done", "failed"}:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_health_readiness_and_metrics(api: Api) -> None:
    client = api.client
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["index_size"] == ready["faces_indexed"] == 17
    client.get("/v1/sources", headers=api.as_("operator"))
    client.get("/v1/sources")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=api.as_("investigator")).status_code == 403
    metrics = client.get("/metrics", headers=api.as_("auditor"))
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = metrics.text
    assert 'vultus_http_requests_total{method="GET",route="/v1/sources",status="200"} 1' in text
    assert 'vultus_http_requests_total{method="GET",route="/v1/sources",status="401"} 1' in text
    assert "# TYPE vultus_http_request_duration_seconds histogram" in text
    assert (
        'vultus_http_request_duration_seconds_bucket{method="GET",route="/v1/sources",le="+Inf"} 2'
        in text
    )
    assert "vultus_faces_indexed 17" in text


def test_bad_uploads_are_refused_with_the_error_model_and_write_nothing(
    api_dir: Path, tmp_path: Path, faces_dir: Path, request: pytest.FixtureRequest
) -> None:
    with _open(api_dir, tmp_path) as engine:
        settings = dataclasses.replace(engine.settings, max_upload_bytes=200_000)
        app = create_app(settings, engine=engine)
        api = _api(engine, app, TestClient(app))
        client, op = api.client, api.as_("operator")
        ingests = len(engine.audit.entries(action="ingest"))
        good = dev(faces_dir, "Katy_Perry", 1).read_bytes()
        big = (faces_dir / "dev" / "extra" / "couple.jpg").read_bytes()
        ico = io.BytesIO()
        PILImage.new("RGB", (32, 32)).save(ico, format="ICO")
        cases = {
            "too large": (big, 413, {"upload_too_large"}),
            "corrupt": (good[: len(good) // 2], 422, {"corrupt_image"}),
            "pdf": (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", 422, {"not_an_image"}),
            "icon": (ico.getvalue(), 422, {"unsupported_format"}),
            "empty": (b"", 422, {"empty_file"}),
        }
        for name, (data, status, codes) in cases.items():
            response = client.post(
                "/v1/images", files=upload(data, f"{name}.jpg"), data={"source": "test"}, headers=op
            )
            assert response.status_code == status, (name, response.text)
            assert set(response.json()) == {"code", "message"}
            assert response.json()["code"] in codes, (name, response.json())
        # In JSON, in base64, the same limit and the same decoder.
        for data, status, code in (
            (big, 413, "upload_too_large"),
            (good[:1000], 422, "corrupt_image"),
        ):
            body = {"file": base64.b64encode(data).decode(), "source": "test"}
            response = client.post("/v1/images", json=body, headers=op)
            assert (response.status_code, response.json()["code"]) == (status, code)
        search = client.post(
            "/v1/search",
            files={"photo": ("c.jpg", good[:1000], "image/jpeg")},
            data={"purpose": PURPOSE},
            headers=api.as_("investigator"),
        )
        assert search.status_code == 422 and search.json()["code"] == "corrupt_image"
        # Nothing was written: no stored copy, no image, no ingest.
        stored = engine.settings.data_dir / "images"
        assert not stored.exists() or list(stored.iterdir()) == []
        assert len(api.image_ids()) == 17
        assert len(engine.audit.entries(action="ingest")) == ingests
        _record(api, request)


def test_a_consent_source_takes_photos_only_with_their_consent(api: Api, faces_dir: Path) -> None:
    client, op = api.client, api.as_("operator")
    source = {
        "name": "event",
        "lawful_basis": "consent",
        "special_condition": "explicit_consent",
        "purpose": "event photos",
        "retention_days": 30,
    }
    assert client.post("/v1/sources", json=source, headers=op).status_code == 201
    photo = dev(faces_dir, "Katy_Perry", 1)
    refused = client.post("/v1/images", files=upload(photo), data={"source": "event"}, headers=op)
    assert refused.status_code == 422 and refused.json()["code"] == "consent_required"
    job = client.post(
        "/v1/jobs/ingest", json={"path": str(photo.parent), "source": "event"}, headers=op
    )
    assert job.status_code == 422 and job.json()["code"] == "consent_required"
    registered = client.post(
        "/v1/images/register", json={"path": str(photo), "source": "event"}, headers=op
    )
    assert registered.status_code == 422 and registered.json()["code"] == "consent_required"
    assert len(api.image_ids()) == 17  # nothing entered

    consent = api.engine.add_consent("event", "Katy", notice_version="v1")
    added = client.post(
        "/v1/images",
        files=upload(photo),
        data={"source": "event", "consent": str(consent)},
        headers=op,
    )
    assert added.status_code == 201, added.text
    assert added.json()["summary"]["images_added"] == 1


def b64(photo: Path) -> str:
    return base64.b64encode(photo.read_bytes()).decode()


def test_photos_come_as_multipart_or_as_base64_json_with_the_same_answers(
    api: Api, faces_dir: Path
) -> None:
    client, op, inv = api.client, api.as_("operator"), api.as_("investigator")
    # Given an integrator whose HTTP library makes JSON easier than multipart: the photo goes
    # in base64, with its file name and the integrator's own id for it ...
    elon = dev(faces_dir, "Elon_Musk", 1)
    body = {"file": b64(elon), "filename": "elon.jpg", "source": "test", "external_id": "E-1"}
    added = client.post("/v1/images", json=body, headers=op)
    assert added.status_code == 201, added.text
    assert added.json()["image"]["file_name"] == "elon.jpg"
    assert added.json()["image"]["external_id"] == "E-1"

    # ... when they search the same way, the answer is the multipart search's, to the byte.
    query = dev(faces_dir, "Elon_Musk", 2)
    as_json = client.post(
        "/v1/search", json={"photo": b64(query), "purpose": PURPOSE, "top_k": 3}, headers=inv
    )
    assert as_json.status_code == 200, as_json.text
    files = {"photo": ("q.jpg", query.read_bytes(), "image/jpeg")}
    as_form = client.post(
        "/v1/search", files=files, data={"purpose": PURPOSE, "top_k": "3"}, headers=inv
    )

    def answer(response: Any) -> dict[str, Any]:
        """The answer, less the id of its own audit entry (each search has one)."""
        out = dict(response.json())
        assert isinstance(out.pop("search_id"), int)
        return out

    assert answer(as_json) == answer(as_form)
    found = [(m["file_name"], m["external_id"]) for m in as_json.json()["matches"] if m["is_match"]]
    assert ("elon.jpg", "E-1") in found
    # A data: URL, as a browser's FileReader makes one, is taken as it is.
    data_url = {"photo": f"data:image/jpeg;base64,{b64(query)}", "purpose": PURPOSE, "top_k": 3}
    assert answer(client.post("/v1/search", json=data_url, headers=inv)) == answer(as_json)
    # Verification takes both photos in JSON too.
    pair = {"photo_a": b64(elon), "photo_b": b64(query), "purpose": PURPOSE}
    verified = client.post("/v1/verify", json=pair, headers=inv)
    assert verified.status_code == 200 and verified.json()["same_person"] is True

    # What cannot be read is refused with the error model, and no search is made of it.
    searches = len(api.engine.audit.entries(action="search"))
    refusals = [
        ({"json": {"photo": "not base64!", "purpose": PURPOSE}}, 422, "invalid_request"),
        ({"json": {"purpose": PURPOSE}}, 422, "invalid_request"),
        ({"json": {"photo": b64(query)}}, 422, "purpose_required"),
        ({"json": [b64(query)]}, 422, "invalid_request"),
        ({"json": {"photo": 42, "purpose": PURPOSE}}, 422, "invalid_request"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, None),
        ({"content": b64(query), "headers": {"content-type": "text/plain"}}, 415, None),
    ]
    for kwargs, status, code in refusals:
        headers = {**inv, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        response = client.post("/v1/search", headers=headers, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == status, (kwargs, response.text)
        assert set(response.json()) == {"code", "message"}
        assert code is None or response.json()["code"] == code, response.json()
    assert "photo" in client.post("/v1/search", json={"purpose": PURPOSE}, headers=inv).text
    assert len(api.engine.audit.entries(action="search")) == searches

    # The OpenAPI document offers both ways, each with exactly the fields the server takes.
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for path, photos in {
        "/v1/images": ["file"],
        "/v1/search": ["photo"],
        "/v1/verify": ["photo_a", "photo_b"],
    }.items():
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        assert set(content) == {"multipart/form-data", "application/json"}
        form, as_json = (schemas[c["schema"]["$ref"].rsplit("/", 1)[-1]] for c in content.values())
        assert set(form["properties"]) == set(as_json["properties"])
        assert form["required"][: len(photos)] == as_json["required"][: len(photos)] == photos
        assert all(form["properties"][p]["contentMediaType"] for p in photos)
        assert all(as_json["properties"][p]["contentEncoding"] == "base64" for p in photos)
        assert form["additionalProperties"] is as_json["additionalProperties"] is False
    assert "external_id" in schemas["ImageUploadJson"]["properties"]


def test_a_field_the_endpoint_does_not_take_is_refused_not_ignored(
    api: Api, faces_dir: Path
) -> None:
    """`top=3` and a typo'd `tpo_k=2` used to be dropped in silence: ten results came back."""
    client, op, inv, dpo = (api.client, *(api.as_(r) for r in ("operator", "investigator", "dpo")))
    photo = dev(faces_dir, "Katy_Perry", 2).read_bytes()
    searches = len(api.engine.audit.entries(action="search"))

    def refused(response: object, *names: str) -> str:
        assert response.status_code == 422, response.text  # type: ignore[attr-defined]
        body = response.json()  # type: ignore[attr-defined]
        assert body["code"] == "unknown_field", body
        assert all(f"`{n}`" in body["message"] for n in names), body
        return str(body["message"])

    files = {"photo": ("q.jpg", photo, "image/jpeg")}
    for typo in ("top", "tpo_k"):
        form = {"purpose": PURPOSE, typo: "2"}
        empty = client.post("/v1/search", files=files, data={**form, typo: ""}, headers=inv)
        assert empty.json()["code"] == "unknown_field"  # even empty, as a browser sends it
        message = refused(client.post("/v1/search", files=files, data=form, headers=inv), typo)
        assert "did you mean `top_k`?" in message and "takes photo, purpose" in message
    as_json = {"photo": base64.b64encode(photo).decode(), "purpose": PURPOSE, "tpo_k": 2}
    refused(client.post("/v1/search", json=as_json, headers=inv), "tpo_k")
    by_face = {"face_id": api.face_of("Katy_Perry"), "purpose": PURPOSE, "top": 2}
    refused(client.post("/v1/search/face", json=by_face, headers=inv), "top")
    two = {"photo_a": files["photo"], "photo_b": files["photo"]}
    verify = {"purpose": PURPOSE, "fmr": "0.001", "threshold": "0.6"}
    refused(client.post("/v1/verify", files=two, data=verify, headers=inv), "threshold")
    assert len(api.engine.audit.entries(action="search")) == searches  # nothing was searched

    # An upload with a misspelt field is not filed under a default: nothing is written.
    message = refused(
        client.post(
            "/v1/images",
            files=upload(photo),
            data={"source": "test", "externalid": "X-1"},
            headers=op,
        ),
        "externalid",
    )
    assert "did you mean `external_id`?" in message
    assert len(api.image_ids()) == 17
    # Endpoints whose form FastAPI reads refuse the same way, once the key is admitted.
    request = {"kind": "access", "contcat": "someone@example.org"}
    selfie = {"selfie": ("s.jpg", photo, "image/jpeg")}
    refused(client.post("/v1/rights/requests", data=request, files=selfie, headers=dpo), "contcat")
    anonymous = client.post("/v1/rights/requests", data=request, files=selfie)
    assert anonymous.status_code == 401
    wrong_role = client.post("/v1/search", files=files, data={"top": "2"}, headers=op)
    assert wrong_role.status_code == 403

    # A value where the file belongs, a field twice: refused. A second file is not even read.
    text = {"photo": ("q.jpg", b"x", "text/plain"), "case_ref": ("c.txt", b"x", "text/plain")}
    cases: list[tuple[dict, object, int, str]] = [
        ({}, {"purpose": PURPOSE, "photo": "q.jpg"}, 422, "invalid_request"),
        (files, {"purpose": [PURPOSE, "legal claim"]}, 422, "invalid_request"),
        (text, {"purpose": PURPOSE}, 400, "bad_request"),
    ]
    for sent, data, status, code in cases:
        response = client.post("/v1/search", files=sent, data=data, headers=inv)  # type: ignore[arg-type]
        assert (response.status_code, response.json()["code"]) == (status, code), (
            data,
            response.text,
        )

    # Spelt right, the field is obeyed.
    ok = client.post(
        "/v1/search", files=files, data={"purpose": PURPOSE, "top_k": "2"}, headers=inv
    )
    assert ok.status_code == 200 and len(ok.json()["matches"]) <= 2


def test_a_search_result_has_one_shape_in_the_api_the_command_line_and_python(
    api_dir: Path, tmp_path: Path, faces_dir: Path, request: pytest.FixtureRequest
) -> None:
    query = dev(faces_dir, "Kit_Harington", 1)
    with _open(api_dir, tmp_path) as engine:
        app = create_app(engine=engine)
        api = _api(engine, app, TestClient(app))
        files = {"photo": ("q.jpg", query.read_bytes(), "image/jpeg")}
        form = {"purpose": PURPOSE, "top_k": "5"}
        answered = api.client.post(
            "/v1/search", files=files, data=form, headers=api.as_("investigator")
        )
        assert answered.status_code == 200, answered.text
        from_api = answered.json()
        result = engine.search(query, purpose=PURPOSE, top_k=5)
        from_python = result.to_json()
        _record(api, request)
    run = CliRunner().invoke(
        cli_app,
        [
            "--data-dir",
            str(tmp_path / "data"),
            "search",
            str(query),
            "-p",
            PURPOSE,
            "--top",
            "5",
            "--json",
        ],
    )
    assert run.exit_code == 0, run.output
    from_cli = json.loads(run.output)

    # The command line and Python see where each photo lies; the investigator's key does not.
    paths = [m["image_path"] for m in from_python["matches"]]
    assert all(paths) and [m["image_path"] for m in from_cli["matches"]] == paths
    assert [m["image_path"] for m in from_api["matches"]] == [None] * len(paths)
    for answer in (from_api, from_cli, from_python):
        for m in answer["matches"]:
            m.pop("image_path")
        # Three searches, three entries in the audit log.
        assert isinstance(answer.pop("search_id"), int)
    # Otherwise one shape, value for value: boxes are objects, tiers and odds are there.
    assert from_api == from_cli == from_python
    assert json.loads(json.dumps(from_python, allow_nan=False)) == from_python
    best = from_api["matches"][0]
    assert set(best["box"]) == {"left", "top", "right", "bottom"}
    assert best["tier"] == "match" and best["pair_fmr"] > 0 and best["odds"]
    assert best["file_name"] == Path(paths[0]).name and "Kit_Harington" in best["file_name"]
    # The Python objects carry the same names: a box has sides, a match its photo's names.
    m = result.matches[0]
    assert m.box.left == best["box"]["left"] and tuple(m.box) == tuple(best["box"].values())
    assert (m.file_name, m.external_id, m.tier) == (best["file_name"], None, "match")
    assert (
        result.query_face is not None
        and result.query_face.box.top == from_cli["query_face"]["box"]["top"]
    )


def readme_block(marker: str) -> str:
    """The Python code block that follows `<!-- marker: ... -->` in the README."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return text.split(f"<!-- {marker}:", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def test_the_smallest_integration_in_the_readme_uploads_and_finds_a_photo(
    api: Api,
    faces_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = readme_block("smallest-integration")
    lines = code.strip().splitlines()
    assert lines[0] == "import httpx" and len(lines) <= 5
    # Given the server the README sets up: a source for uploads, an operator's and an
    # investigator's key, and two photos of one person beside the program ...
    source = {
        "name": "uploads",
        "lawful_basis": "legitimate_interests",
        "special_condition": "archiving_research",
        "purpose": "photos sent in by the newsroom",
        "retention_days": 30,
    }
    assert api.client.post("/v1/sources", json=source, headers=api.as_("operator")).is_success
    shutil.copy(dev(faces_dir, "Katy_Perry", 1), tmp_path / "ada.jpg")
    shutil.copy(dev(faces_dir, "Katy_Perry", 2), tmp_path / "query.jpg")
    monkeypatch.chdir(tmp_path)

    def client(base_url: str) -> TestClient:
        assert base_url == "http://127.0.0.1:8000/v1"
        return TestClient(api.app, base_url="http://testserver/v1")

    # ... when the program runs, then it prints the uploaded photo, named the integrator's way.
    exec(
        code.replace("import httpx\n", ""),
        {
            "httpx": SimpleNamespace(Client=client),
            "OPERATOR_KEY": api.secrets["operator"],
            "INVESTIGATOR_KEY": api.secrets["investigator"],
        },
    )
    printed = ast.literal_eval(capsys.readouterr().out)
    assert ("crm-42", "ada.jpg", "match") in [p[:3] for p in printed]
    assert all(isinstance(odds, str) and odds for *_, odds in printed)


def test_the_documentation_pages_load_from_the_server_alone(api: Api) -> None:
    """On a machine without internet /docs and /redoc still work, and a visit tells no third
    party: every script, style and icon they load is served by Vultus itself."""
    client = api.client
    spec = client.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "Vultus"
    loaded: dict[str, str] = {}
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"]
        html = response.text
        # No host named anywhere: not as a link, not as a font, not as the online validator.
        assert not re.search(r"https?:|//[\w-]+\.", html), html
        refs = re.findall(r'(?:src|href|spec-url)="([^"]*)"|url: \'([^\']*)\'', html)
        urls = [a or b for a, b in refs]
        assert "/openapi.json" in urls and len(urls) >= 3
        # ... and the browser is told to fetch from nowhere else (ReDoc's bundle would show
        # its maker's logo from their CDN).
        policy = response.headers["content-security-policy"]
        sources = {s for d in policy.split(";") for s in d.split()[1:]}
        assert sources and all(
            s in {"'self'", "'none'", "data:", "blob:", "'unsafe-inline'"}
            or re.fullmatch(r"'sha256-[A-Za-z0-9+/]+=*'", s)
            for s in sources
        ), policy
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 100, url
            loaded[url] = asset.headers["content-type"]
    assert '"validatorUrl": null' in client.get("/docs").text
    assert {t.split(";")[0] for u, t in loaded.items() if u.endswith(".js")} == {"text/javascript"}
    assert any(u.endswith(".css") and t.startswith("text/css") for u, t in loaded.items())
    # The copied files' licences are served beside them.
    notice = client.get("/docs/assets/NOTICE")
    assert "Apache License" in notice.text and "MIT License" in notice.text


def test_vultus_serve_is_a_command() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output


def test_people_are_proposed_named_set_apart_hidden_and_suggested(
    api: Api, faces_dir: Path
) -> None:
    client, op = api.client, api.as_("operator")
    images: dict[str, list[int]] = {}
    for who in ("Barack_Obama", "Mark_Zuckerberg"):
        images[who] = [api.image_ids()[who]]
        for n in (1, 2, 3):
            sent = client.post(
                "/v1/images",
                files=upload(dev(faces_dir, who, n)),
                data={"source": "test"},
                headers=op,
            )
            images[who].append(sent.json()["image_id"])
    refused = client.get("/v1/people/proposals", headers=api.as_("investigator"))
    assert refused.status_code == 403

    def proposed() -> dict[str, list[int]]:
        found = client.get("/v1/people/proposals", params={"min_faces": 2}, headers=op).json()
        by_image = {i: who for who, ids in images.items() for i in ids}
        out: dict[str, list[int]] = {}
        for p in found:
            (who,) = {by_image.get(f["image_id"], "someone else") for f in p["faces"]}
            out[who] = [f["id"] for f in p["faces"]]
        return out

    people = proposed()
    obama, mark = people["Barack_Obama"], people["Mark_Zuckerberg"]
    assert len(obama) == 4 and len(mark) == 4
    assert (
        client.get("/v1/people/proposals", params={"min_faces": 1}, headers=op).status_code == 422
    )

    # Not this person: remembered, so the next discovery proposes the other three only.
    stray = obama[0]
    apart = {"face_ids": [stray], "from_face_ids": obama}
    assert client.post("/v1/people/apart", json=apart, headers=op).json() == {"count": 1}
    assert proposed()["Barack_Obama"] == obama[1:]

    both = {"face_ids": obama[1:], "name": "Barack Obama", "subject": "Barack Obama"}
    assert client.post("/v1/people/accept", json=both, headers=op).status_code == 422
    named = client.post(
        "/v1/people/accept", json={"face_ids": obama[1:], "name": "Barack Obama"}, headers=op
    ).json()
    assert named["subject"]["faces"] == 3 and "Barack_Obama" not in proposed()

    # His page suggests the face set apart from the proposal, with its odds in words.
    suggested = client.get("/v1/people/Barack Obama/suggestions", headers=op).json()
    assert [s["face"]["id"] for s in suggested] == [stray]
    assert suggested[0]["tier"] in ("match", "possible, check by eye")
    assert "strangers' faces come this close" in suggested[0]["odds"]
    said = client.post("/v1/people/Barack Obama/not", json={"face_ids": [stray]}, headers=op)
    assert said.json() == {"count": 1}
    assert client.get("/v1/people/Barack Obama/suggestions", headers=op).json() == []
    assert client.get("/v1/people/Nobody/suggestions", headers=op).status_code == 404

    # Hidden faces leave the proposals and have their own list, until brought back.
    assert client.post("/v1/people/hide", json={"face_ids": mark}, headers=op).json()["count"] == 4
    assert "Mark_Zuckerberg" not in proposed()
    hidden = client.get("/v1/people/unnamed", params={"hidden": True}, headers=op).json()
    assert hidden["total"] == 4 and {f["id"] for f in hidden["faces"]} == set(mark)
    unnamed = client.get("/v1/people/unnamed", headers=op).json()
    assert unnamed["total"] == 17 + 6 - 3 - 4 and stray in {f["id"] for f in unnamed["faces"]}
    assert (
        client.post("/v1/people/unhide", json={"face_ids": mark}, headers=op).json()["count"] == 4
    )
    assert proposed()["Mark_Zuckerberg"] == mark
    events = [e.details["event"] for e in api.engine.audit.entries(action="subject")]
    assert events == ["set_apart", "created", "not_subject", "hidden", "unhidden"]


def test_every_route_was_exercised(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Runs last: every /v1 route and probe was called by the stories above."""
    stories = {n for n in dir(request.module) if n.startswith("test_")} - {
        request.node.name,
        "test_vultus_serve_is_a_command",
    }
    if not stories <= RAN:
        pytest.skip("run the whole module to check that every route is exercised")
    with Engine.open(tmp_path / "data", workers=1) as engine:
        app = create_app(engine=engine)
    routes = {
        (method, ctx.path_format)
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute)
        and ctx.path_format.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))
        for method in ctx.methods or ()
    }
    assert sorted(routes - HITS) == []
