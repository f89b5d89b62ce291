"""CompreFace's official Python client, `compreface-sdk`, drives a live Vultus server as its
users' code does: `CompreFace("http://127.0.0.1", PORT)` with a Vultus key as the service key.

Given a key of operator and investigator bound to a purpose, a case and a source, when the
client adds examples of people, recognises, verifies, detects and deletes, then it gets
CompreFace's answers (shapes, status codes, error bodies), Vultus keeps every photo under the
key's source, audits every comparison with the key's purpose and case, and never shows a
restricted face."""

from __future__ import annotations

import base64
import sys
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from conftest import PURPOSE, add_test_source, name_controller
from serving import serving
from vultus import audit as actions
from vultus.api import create_app
from vultus.api.compat import compreface
from vultus.api.compat.similarity import MATCH, POSSIBLE, similarity
from vultus.api.deps import Require
from vultus.engine import Engine

# compreface-sdk 0.6.0, its latest release, pins requests-toolbelt 0.9.1, which imports urllib3's
# App Engine module, gone since urllib3 2. The SDK uses only the toolbelt's multipart encoder:
# an empty stand-in for the App Engine module lets it load, as its users' code must do today.
sys.modules.setdefault("urllib3.contrib.appengine", types.ModuleType("urllib3.contrib.appengine"))
compreface_sdk = pytest.importorskip("compreface", reason="compreface-sdk is not installed")


@dataclass
class Server:
    url: str
    port: int
    engine: Engine
    key: str  # operator + investigator, bound to PURPOSE, case "CF-1" and source "test"
    unbound: str  # the same roles, bound to nothing
    searcher: str  # investigator only, bound to PURPOSE

    def sdk(self, key: str | None = None):  # type: ignore[no-untyped-def]
        return compreface_sdk.CompreFace("http://127.0.0.1", str(self.port)).init_face_recognition(
            key or self.key
        )

    def call(self, method: str, path: str, key: str | None = "", **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
        headers = {} if key is None else {"x-api-key": key or self.key}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[Server]:
    data_dir = name_controller(tmp_path_factory.mktemp("compreface"))
    engine = Engine.open(data_dir, workers=1, requests_per_minute=100_000)
    add_test_source(engine)
    both = ["operator", "investigator"]
    _, key = engine.keys.create("cf-app", both, purpose=PURPOSE, case_ref="CF-1", source="test")
    _, unbound = engine.keys.create("cf-unbound", both)
    _, searcher = engine.keys.create("cf-searcher", "investigator", purpose=PURPOSE)
    with serving(create_app(engine=engine)) as port:
        yield Server(f"http://127.0.0.1:{port}", port, engine, key, unbound, searcher)
    engine.close()


def photos(faces_dir: Path, who: str) -> list[Path]:
    return sorted((faces_dir / "dev" / "images" / who).iterdir())


def test_examples_recognition_verification_detection_and_deletion_with_the_official_client(
    server: Server, faces_dir: Path
) -> None:
    recognition = server.sdk()
    collection = recognition.get_face_collection()
    subjects = recognition.get_subjects()
    obama, elon, katy = (photos(faces_dir, w) for w in ("Barack_Obama", "Elon_Musk", "Katy_Perry"))

    # -- examples, as the client adds them: one photo each, under a subject ------------------
    added = {who: collection.add(str(p[0]), who) for who, p in (("Obama", obama), ("Elon", elon))}
    for who, answer in added.items():
        assert answer["subject"] == who, answer
        uuid.UUID(answer["image_id"])  # CompreFace's ids are UUIDs
    with_status = server.call(
        "POST", "/recognition/faces?subject=Katy", files={"file": katy[0].read_bytes()}
    )
    assert with_status.status_code == 201, with_status.text
    assert subjects.list() == {"subjects": ["Elon", "Katy", "Obama"]}
    # Kept under the key's source, with the key as the actor.
    images = server.engine.list_images(source="test")
    assert len(images) == 3
    ingest = server.engine.audit.entries(action=actions.INGEST)[-1]
    assert ingest.actor == "key:cf-app as operator"

    listed = collection.list()
    assert listed["total_elements"] == 3 and listed["page_number"] == 0
    assert {f["subject"] for f in listed["faces"]} == {"Obama", "Elon", "Katy"}
    page = server.call("GET", "/recognition/faces?page=1&size=2&subject=").json()
    assert (page["page_size"], page["total_pages"], len(page["faces"])) == (2, 2, 1)

    # -- recognition: another photo of Obama is Obama, over CompreFace users' 0.8 -------------
    answer = recognition.recognize(str(obama[1]), {"prediction_count": 2, "status": "true"})
    (face,) = answer["result"]
    assert face["subjects"][0]["subject"] == "Obama", face
    assert face["subjects"][0]["similarity"] >= MATCH
    assert set(face["box"]) == {"probability", "x_max", "y_max", "x_min", "y_min"}
    assert "execution_time" in face and "plugins_versions" in answer
    # The options CompreFace's README passes to every call: the plugins Vultus does not run are
    # left out, and templates (`calculator`) are never handed out.
    readme = compreface_sdk.CompreFace(
        "http://127.0.0.1",
        str(server.port),
        {
            "limit": 0,
            "det_prob_threshold": 0.8,
            "prediction_count": 1,
            "face_plugins": "calculator,age,gender,landmarks",
            "status": "true",
        },
    ).init_face_recognition(server.key)
    (face,) = readme.recognize(str(obama[1]))["result"]
    assert face["subjects"][0]["subject"] == "Obama" and len(face["landmarks"]) == 5
    assert not {"embedding", "age", "gender"} & set(face)
    # A stranger is nobody the collection holds: no subject near enough to name.
    stranger = recognition.recognize(str(photos(faces_dir, "Jeff_Bezos")[0]))
    assert all(s["similarity"] < MATCH for s in stranger["result"][0]["subjects"])
    # Audited as a search, under the key's purpose and case, by the key as investigator.
    search = server.engine.audit.entries(action=actions.SEARCH)[-1]
    assert (search.actor, search.purpose, search.case_ref) == (
        "key:cf-app as investigator",
        PURPOSE,
        "CF-1",
    )

    # -- verification against one example, and of two photos ---------------------------------
    same = collection.verify(str(obama[2]), added["Obama"]["image_id"])
    assert same["result"][0]["similarity"] >= MATCH, same
    other = collection.verify(str(elon[1]), added["Obama"]["image_id"])
    assert other["result"][0]["similarity"] < MATCH, other
    verification = compreface_sdk.CompreFace(
        "http://127.0.0.1", str(server.port)
    ).init_face_verification(server.key)
    pair = verification.verify(str(elon[1]), str(elon[2]))
    assert pair["result"][0]["face_matches"][0]["similarity"] >= MATCH, pair
    assert "box" in pair["result"][0]["source_image_face"]
    verify = server.engine.audit.entries(action=actions.VERIFY)[-1]
    assert (verify.actor, verify.purpose, verify.case_ref) == (
        "key:cf-app as investigator",
        PURPOSE,
        "CF-1",
    )

    # -- detection: two people, with landmarks; no face is CompreFace's error 28 --------------
    detection = compreface_sdk.CompreFace("http://127.0.0.1", str(server.port)).init_face_detection(
        server.key
    )
    two = detection.detect(
        str(faces_dir / "dev" / "extra" / "two_people.jpg"), {"face_plugins": "landmarks"}
    )
    assert len(two["result"]) == 2
    assert all(len(f["landmarks"]) == 5 for f in two["result"])
    assert detection.detect(str(faces_dir / "dev" / "extra" / "dogs.jpg")) == {
        "message": "No face is found in the given image",
        "code": 28,
    }

    # -- subjects: rename, then merge by renaming onto a name in use -------------------------
    assert subjects.update("Katy", "Katy Perry") == {"updated": True}
    assert subjects.update("Elon", "Katy Perry") == {"updated": True}
    assert subjects.list() == {"subjects": ["Katy Perry", "Obama"]}

    # -- deletion: one example, a subject's examples, a subject, all --------------------------
    extra = collection.add(str(obama[3]), "Obama")
    assert collection.delete(extra["image_id"]) == {
        "image_id": extra["image_id"],
        "subject": "Obama",
    }
    assert collection.delete(extra["image_id"])["code"] == 11  # gone: not found
    assert collection.delete_all("Katy Perry") == {"deleted": 2}
    assert subjects.delete("Obama") == {"subject": "Obama"}
    assert subjects.list() == {"subjects": ["Katy Perry"]}
    assert subjects.delete_all() == {"deleted": 1}
    assert subjects.list() == {"subjects": []}
    assert server.engine.examples(source="test") == ([], 0)


def test_keys_must_be_bound_and_bad_input_gets_compreface_errors(
    server: Server, faces_dir: Path
) -> None:
    photo = photos(faces_dir, "John_Simm")[0].read_bytes()
    # No key, a key bound to no purpose, a key that may not add, a key bound to no source.
    missing = server.call("GET", "/recognition/subjects", key=None)
    assert (missing.status_code, missing.json()["code"]) == (400, compreface.MISSING_REQUEST_HEADER)
    wrong = server.call("GET", "/recognition/subjects", key="vk_deadbeef_" + "x" * 32)
    assert wrong.status_code == 401 and set(wrong.json()) == {"message", "code"}
    unbound = server.call("GET", "/recognition/subjects", key=server.unbound)
    assert unbound.status_code == 403 and "bound to no purpose" in unbound.json()["message"]
    adding = server.call(
        "POST", "/recognition/faces?subject=X", key=server.searcher, files={"file": photo}
    )
    assert adding.status_code == 403 and "'investigator'" in adding.json()["message"]

    before = len(server.engine.list_images())
    no_face = server.call(
        "POST",
        "/recognition/faces?subject=Dogs",
        files={"file": (faces_dir / "dev" / "extra" / "dogs.jpg").read_bytes()},
    )
    assert no_face.status_code == 400
    assert no_face.json() == {"message": "No face is found in the given image", "code": 28}
    broken = server.call("POST", "/recognition/recognize", files={"file": b"not a photo"})
    assert (
        broken.status_code == 400 and broken.json()["code"] == compreface.UNAVAILABLE_FILE_EXTENSION
    )
    typo = server.call("POST", "/recognition/recognize?limt=1", files={"file": photo})
    assert typo.status_code == 400 and "limt" in typo.json()["message"]
    no_file = server.call("POST", "/recognition/recognize", files={"photo": photo})
    assert no_file.status_code == 400 and set(no_file.json()) == {"message", "code"}
    assert len(server.engine.list_images()) == before  # nothing kept from any of them
    assert "Dogs" not in {s.name for s, _ in server.engine.subjects()}

    # The same calls in base64 JSON, as CompreFace takes them.
    as_json = server.call(
        "POST", "/recognition/faces?subject=Simm", json={"file": base64.b64encode(photo).decode()}
    )
    assert as_json.status_code == 201, as_json.text
    found = server.call(
        "POST",
        "/recognition/recognize",
        json={"file": base64.b64encode(photos(faces_dir, "John_Simm")[1].read_bytes()).decode()},
    )
    assert found.json()["result"][0]["subjects"][0]["subject"] == "Simm"

    # A restricted face is never listed, compared with, or shown.
    face_id = uuid.UUID(as_json.json()["image_id"]).int
    server.engine.restrict(face_ids=[face_id], reason="objection pending")
    assert server.call("GET", "/recognition/faces?subject=Simm").json()["total_elements"] == 0
    again = server.call(
        "POST",
        "/recognition/recognize",
        files={"file": photos(faces_dir, "John_Simm")[1].read_bytes()},
    )
    assert all(s["subject"] != "Simm" for s in again.json()["result"][0]["subjects"])
    image = server.call("GET", f"/recognition/faces/{as_json.json()['image_id']}/img")
    assert image.status_code == 404 and image.json()["code"] == compreface.IMAGE_NOT_FOUND


def test_every_compatibility_route_names_its_roles_and_stays_out_of_the_openapi_document(
    server: Server,
) -> None:
    app = compreface.create(create_app(engine=server.engine))
    routes = [
        c.original_route
        for c in iter_route_contexts(app.routes)
        if isinstance(c.original_route, APIRoute)
    ]
    assert len(routes) >= 18
    for route in routes:
        stack = list(route.dependant.dependencies)
        found = []
        while stack:
            dep = stack.pop()
            if isinstance(dep.call, Require):
                found.append(dep.call)
            stack.extend(dep.dependencies)
        assert len(found) == 1 and isinstance(found[0], compreface.BoundKey), route.path
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert not [p for p in schema["paths"] if p.startswith("/api/")]
    assert not [n for n in schema["components"]["schemas"] if "CompreFace" in n]


def test_similarity_pins_vultus_decisions_to_compreface_thresholds() -> None:
    match, possible = 0.4, 0.55
    assert similarity(0.0, match, possible) == 1.0
    assert similarity(match, match, possible) == MATCH
    assert similarity(possible, match, possible) == POSSIBLE
    assert similarity(2.0, match, possible) == 0.0
    values = [similarity(d / 100, match, possible) for d in range(0, 201)]
    assert values == sorted(values, reverse=True)


def test_embeddings_cropped_faces_and_subject_errors(server: Server, faces_dir: Path) -> None:
    obama = photos(faces_dir, "Barack_Obama")
    added = server.call(
        "POST", "/recognition/faces?subject=Obama E", files={"file": obama[0].read_bytes()}
    ).json()
    # An embedding the client computed with the same model finds the subject.
    analysed = server.engine.analyse(obama[1].read_bytes()).faces[0]
    assert analysed.template is not None
    template = analysed.template.tolist()
    found = server.call(
        "POST", "/recognition/embeddings/recognize", json={"embeddings": [template]}
    ).json()
    assert found["result"][0]["similarities"][0]["subject"] == "Obama E", found
    assert found["result"][0]["embedding"] == template
    same = server.call(
        "POST",
        f"/recognition/embeddings/faces/{added['image_id']}/verify",
        json={"embeddings": [template]},
    ).json()
    assert same["result"][0]["similarity"] >= MATCH, same
    short = server.call(
        "POST",
        "/verification/embeddings/verify",
        json={"source": template[:64], "targets": [template]},
    )
    assert (short.status_code, short.json()["code"]) == (400, compreface.INCORRECT_ARGUMENT)

    # dlib's aligned 150-pixel crops, taken as faces without running the detector.
    savage = photos(faces_dir, "John_Savage")
    kept = server.call(
        "POST", "/recognition/faces?subject=Savage", files={"file": savage[0].read_bytes()}
    ).json()
    cropped = server.call(
        "POST",
        "/recognition/recognize?detect_faces=false",
        files={"file": savage[1].read_bytes()},
    ).json()
    (face,) = cropped["result"]
    assert face["box"]["x_min"] == 0 and face["box"]["y_min"] == 0
    assert face["subjects"][0]["subject"] == "Savage", cropped

    taken = server.call("POST", "/recognition/subjects", json={"subject": "Savage"})
    assert (taken.status_code, taken.json()["code"]) == (400, compreface.SUBJECT_ALREADY_EXISTS)
    nobody = server.call("PUT", "/recognition/subjects/Nobody", json={"subject": "X"})
    assert (nobody.status_code, nobody.json()["code"]) == (404, compreface.SUBJECT_NOT_FOUND)
    made = server.call("POST", "/recognition/subjects", json={"subject": "Empty"})
    assert made.status_code == 201 and made.json() == {"subject": "Empty"}

    # The photo an example came from, as a view the audit log records; then a bulk delete
    # that passes over an id it does not know.
    picture = server.call("GET", f"/recognition/faces/{added['image_id']}/img")
    assert picture.status_code == 200 and picture.content == obama[0].read_bytes()
    view = server.engine.audit.entries(action=actions.VIEW)[-1]
    assert view.actor == "key:cf-app as operator"
    unknown = str(uuid.UUID(int=10**9))
    gone = server.call(
        "POST",
        "/recognition/faces/delete",
        json=[added["image_id"], kept["image_id"], unknown],
    ).json()
    assert gone == [
        {"image_id": added["image_id"], "subject": "Obama E"},
        {"image_id": kept["image_id"], "subject": "Savage"},
    ]
