"""The web UI over HTTP, as people use it: sign in with a key, see only what the role admits,
search with a photo and a purpose, erase a person after a preview, and ask for one's rights
through the portal, which never shows what is held."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from conftest import CONTROLLER, HARD_TO_FIND, PURPOSE, hard_to_find
from vultus import audit as actions
from vultus.api import create_app
from vultus.cli import app as cli_app
from vultus.engine import Engine
from vultus.engine.apikeys import ROLES
from vultus.errors import ConfigError
from vultus.rights import requests as req

# Every page and the roles it admits.
PAGES: dict[str, set[str]] = {
    "/ui/search": {"investigator"},
    "/ui/verify": {"investigator"},
    "/ui/library": {"operator"},
    "/ui/ingest": {"operator"},
    "/ui/people": {"operator"},
    "/ui/rights": {"dpo"},
    "/ui/audit": {"dpo", "auditor"},
    "/ui/reports": {"dpo"},
    "/ui/keys": {"admin"},
    "/ui/settings": {"admin"},
}


@dataclasses.dataclass
class Web:
    client: TestClient
    engine: Engine
    keys: dict[str, str]

    def sign_in(self, role: str) -> None:
        self.client.cookies.clear()
        response = self.client.post(
            "/ui/login", data={"api_key": self.keys[role]}, follow_redirects=False
        )
        assert response.status_code == 303, response.text


def _web(engine: Engine, **settings: object) -> Web:
    keys = {role: engine.keys.create(f"{role}-key", role)[1] for role in ROLES}
    app = create_app(dataclasses.replace(engine.settings, **settings), engine=engine)
    return Web(TestClient(app), engine, keys)


@pytest.fixture
def web(empty_engine: Engine) -> Web:
    return _web(empty_engine)


@pytest.fixture
def gallery_web(gallery: Engine) -> Web:
    return _web(gallery)


@pytest.fixture
def portal(empty_engine: Engine) -> Iterator[Web]:
    yield _web(empty_engine, portal_enabled=True)


def jpeg(colour: tuple[int, int, int] = (200, 180, 160)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "JPEG")
    return out.getvalue()


# -- signing in and out ----------------------------------------------------------------------
def test_sign_in_keeps_the_key_in_a_strict_httponly_cookie_and_sign_out_drops_it(
    web: Web,
) -> None:
    response = web.client.post(
        "/ui/login", data={"api_key": web.keys["dpo"]}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/rights"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("vultus_session=vk_")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS the cookie is Secure too

    page = web.client.get("/ui/rights")
    assert page.status_code == 200 and "dpo-key" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    out = web.client.post("/ui/logout", follow_redirects=False)
    assert out.status_code == 303 and 'vultus_session=""' in out.headers["set-cookie"]
    web.client.cookies.clear()
    assert web.client.get("/ui/rights", follow_redirects=False).status_code == 303


def test_a_wrong_key_is_refused_and_no_session_sends_you_to_sign_in(web: Web) -> None:
    response = web.client.post("/ui/login", data={"api_key": "vk_deadbeef_nope"})
    assert response.status_code == 401 and "unknown API key" in response.text
    assert "vultus_session" not in response.headers.get("set-cookie", "")
    for path in PAGES:
        response = web.client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/ui/login?next={path}"


def test_each_page_admits_only_its_roles_and_refuses_the_others_with_a_403_page(
    web: Web,
) -> None:
    for role in ROLES:
        web.sign_in(role)
        home = web.client.get("/ui/", follow_redirects=False).headers["location"]
        assert web.client.get(home).status_code == 200
        for path, admitted in PAGES.items():
            response = web.client.get(path)
            if role in admitted:
                assert response.status_code == 200, (role, path, response.text[:300])
                assert 'aria-current="page"' in response.text
            else:
                assert response.status_code == 403, (role, path)
                assert "This page is not for your role" in response.text
                assert f"the role <strong>{role}</strong>" in response.text
        # The menu offers only the role's own pages.
        menu = re.findall(r'<nav aria-label="Main">(.*?)</nav>', web.client.get(home).text, re.S)
        links = set(re.findall(r'href="(/ui/[a-z]+)"', menu[0]))
        assert links == {p for p, roles in PAGES.items() if role in roles}


def test_sign_in_returns_to_the_page_asked_for_and_never_leaves_the_site(web: Web) -> None:
    for target, landing in (
        ("/ui/people", "/ui/people"),
        ("//evil.example/ui/x", "/ui/library"),
        ("https://evil.example/", "/ui/library"),
    ):
        response = web.client.post(
            "/ui/login",
            data={"api_key": web.keys["operator"], "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == landing


def test_errors_are_pages_not_json(web: Web) -> None:
    missing = web.client.get("/ui/nowhere")
    assert missing.status_code == 404 and "There is no page at this address" in missing.text
    web.sign_in("operator")
    bad = web.client.get("/ui/library", params={"page_no": "first"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    gone = web.client.get("/ui/library/images/999")
    assert gone.status_code == 404 and "no image with id 999" in gone.text


def test_a_revoked_key_is_signed_out_at_its_next_request(web: Web) -> None:
    web.sign_in("auditor")
    assert web.client.get("/ui/audit").status_code == 200
    web.engine.keys.revoke("auditor-key")
    response = web.client.get("/ui/audit", follow_redirects=False)
    assert response.status_code == 303
    assert "/ui/login" in response.headers["location"] and "revoked" in response.headers["location"]
    assert 'vultus_session=""' in response.headers["set-cookie"]


def test_a_form_sent_from_another_site_is_refused(web: Web) -> None:
    web.sign_in("admin")
    response = web.client.post(
        "/ui/keys",
        data={"name": "sneaky", "role": "investigator"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "sneaky" not in {k.name for k in web.engine.keys.list()}
    same = web.client.post(
        "/ui/keys",
        data={"name": "fine", "role": "investigator"},
        headers={"Origin": "http://testserver"},
    )
    assert same.status_code == 200 and re.search(r'value="vk_[0-9a-f]{8}_', same.text)


# -- search ------------------------------------------------------------------------------------
def test_searching_with_a_photo_and_a_purpose_shows_that_persons_photos(
    gallery_web: Web, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    gallery_photos, probes = gallery_split
    probe, who = next((p, w) for p, w in probes if w == "Barack_Obama")
    expected = next(p for p in gallery_photos if p.parent.name == who).name
    web = gallery_web
    web.sign_in("investigator")
    form = {"purpose": PURPOSE, "case_ref": "CASE-9", "face": "1", "top": "10"}
    photo = {"photo": (probe.name, probe.read_bytes(), "image/jpeg")}

    response = web.client.post("/ui/search", data=form, files=photo)
    assert response.status_code == 200
    cards = re.findall(r'<li class="card (match|near)">(.*?)</li>', response.text, re.S)
    matches = [
        re.search(r'class="path photo-name"[^>]*>([^<]+)<', body)[1]  # type: ignore[index]
        for kind, body in cards
        if kind == "match"
    ]
    assert matches == [expected]
    assert "This person appears in the gallery" in response.text
    # Only the match and the possible ones (check by eye) are shown, never the nearest ten
    # strangers; the possible ones carry their odds in words.
    possible = [body for kind, body in cards if kind == "near"]
    assert len(cards) < 10
    assert all("Possible, check by eye" in body for body in possible)
    assert "faces come this close" in response.text
    entry = web.engine.audit.entries(action="search")[-1]
    assert (entry.actor, entry.purpose, entry.case_ref) == (
        "key:investigator-key",
        PURPOSE,
        "CASE-9",
    )

    # The pictures of the results open for this investigator, and only them.
    src = re.search(r'src="(/ui/media/faces/(\d+)\.jpg\?t=[^"]+)"', response.text)
    assert src is not None
    picture = web.client.get(src[1].replace("&amp;", "&"))
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert picture.headers["cache-control"] == "private, no-store"
    assert Image.open(io.BytesIO(picture.content)).size == (240, 240)
    # The view is in the audit log with the search it came from, and that search's purpose.
    view = web.engine.audit.entries(action="view", actor="key:investigator-key")[-1]
    assert (view.details["search"], view.purpose, view.case_ref) == (entry.id, PURPOSE, "CASE-9")
    shown = {int(i) for i in re.findall(r"/ui/media/faces/(\d+)\.jpg", response.text)}
    hidden = next(i for i in range(1, 100) if i not in shown)
    assert web.client.get(f"/ui/media/faces/{hidden}.jpg").status_code == 403
    assert web.client.get(f"/ui/media/faces/{src[2]}.jpg").status_code == 403  # no token


def test_a_search_without_a_purpose_is_refused_and_not_run(
    gallery_web: Web, gallery_split: tuple[list[Path], list]
) -> None:
    web = gallery_web
    web.sign_in("investigator")
    probe = gallery_split[0][0]
    before = len(web.engine.audit.entries(action="search"))
    for purpose, message in (("", "must state its purpose"), ("curiosity", "not a configured")):
        response = web.client.post(
            "/ui/search",
            data={"purpose": purpose},
            files={"photo": (probe.name, probe.read_bytes(), "image/jpeg")},
        )
        assert response.status_code == 422 and message in response.text
    assert len(web.engine.audit.entries(action="search")) == before


def test_a_key_over_its_daily_search_cap_cannot_search_from_the_page(web: Web) -> None:
    """The page counts the same cap as the API: searches and verifies in today's audit log."""
    web.keys["capped"] = web.engine.keys.create("capped", "investigator", searches_per_day=2)[1]
    web.sign_in("capped")
    web.engine.audit.append(actions.SEARCH, actor="key:capped", purpose=PURPOSE)
    web.engine.audit.append(actions.VERIFY, actor="key:capped", purpose=PURPOSE)
    before = len(web.engine.audit.entries())
    response = web.client.post(
        "/ui/search",
        data={"purpose": PURPOSE},
        files={"photo": ("probe.jpg", b"never decoded: the cap comes first", "image/jpeg")},
    )
    assert response.status_code == 422, response.text
    assert "has used its 2 searches for today" in response.text
    assert len(web.engine.audit.entries()) == before


def test_the_faces_of_a_photo_are_found_before_searching(gallery_web: Web, faces_dir: Path) -> None:
    web = gallery_web
    web.sign_in("investigator")
    two = faces_dir / "dev" / "extra" / "two_people.jpg"
    response = web.client.post(
        "/ui/search/faces", files={"photo": (two.name, two.read_bytes(), "image/jpeg")}
    )
    data = response.json()
    assert response.status_code == 200 and [f["number"] for f in data["faces"]] == [1, 2]
    assert data["src"].startswith("data:image/jpeg;base64,")
    first, second = (f["box"] for f in data["faces"])
    assert (first[2] - first[0]) >= (second[2] - second[0])  # largest first
    assert len(web.engine.audit.entries(action="search")) == 0  # nothing searched
    bad = web.client.post("/ui/search/faces", files={"photo": ("x.txt", b"hello", "text/plain")})
    assert bad.status_code == 422 and "not" in bad.json()["error"]


# -- rights: every act by selfie starts from a review of the candidates ------------------------
@dataclasses.dataclass
class ReviewPage:
    """The review screen as a reviewer sees it: the form's version, the faces shown and ticked."""

    text: str
    version: str
    shown: list[int]
    ticked: list[int]

    def form(self, include: list[int] | None = None, **extra: object) -> dict[str, object]:
        """The form as sent, with `include` ticked (as shown when None)."""
        ticked = self.ticked if include is None else include
        return {
            "version": self.version,
            "shown": [str(i) for i in self.shown],
            "include": [str(i) for i in ticked],
            **extra,
        }


def review_page(web: Web, ref: str) -> ReviewPage:
    response = web.client.get(f"/ui/rights/requests/{ref}/review")
    assert response.status_code == 200, response.text
    text = response.text
    version = re.search(r'name="version" value="([0-9a-f]+)"', text)
    assert version is not None
    return ReviewPage(
        text,
        version[1],
        [int(i) for i in re.findall(r'name="shown" value="(\d+)"', text)],
        [int(i) for i in re.findall(r'name="include" value="(\d+)" checked', text)],
    )


def flash(response: object) -> str:
    text = getattr(response, "text", "")
    found = re.search(r'<div class="flash (?:ok|error)"[^>]*>(.*?)</div>', text, re.S)
    return found[1].strip() if found else ""


def test_the_dpo_erases_a_person_after_reviewing_the_candidates(
    gallery_web: Web, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    web = gallery_web
    selfie, who = next((p, w) for p, w in gallery_split[1] if w == "Kit_Harington")
    web.sign_in("dpo")
    created = web.client.post(
        "/ui/rights/requests",
        data={"kind": "erasure", "contact": "kit@example.org"},
        files={"selfie": (selfie.name, selfie.read_bytes(), "image/jpeg")},
    )
    assert created.status_code == 200
    (request,) = web.engine.requests()
    assert f"<h1>Request <code>{request.ref}</code></h1>" in created.text
    assert "Review the candidates" in created.text and "received" in created.text
    # The old preview address leads to the review.
    old = web.client.get(f"/ui/rights/requests/{request.ref}/erasure", follow_redirects=False)
    assert old.headers["location"] == f"/ui/rights/requests/{request.ref}/review"

    review = review_page(web, request.ref)
    assert review.shown == review.ticked and len(review.ticked) == 1  # the match, pre-ticked
    (kit,) = review.ticked
    assert re.search(r'class="lead headline"[^>]*>1 match\.<', review.text)
    assert "strangers&#39; faces come this close" in review.text  # the odds, in words
    assert web.engine.request(request.ref).status == "in_review"
    assert web.client.get(f"/ui/media/faces/{kit}.jpg?o=erase").status_code == 200

    # A Rekognition client holds the face in a collection: the receipt names the membership.
    web.engine.create_collection("crm", source=web.engine.face(kit).source)
    (member,) = web.engine.catalog.add_members("crm", [kit], external_image_id=None).values()

    erase = f"/ui/rights/requests/{request.ref}/erasure"
    unconfirmed = web.client.post(erase, data=review.form())
    assert "Tick the confirmation" in flash(unconfirmed)
    stale = web.client.post(erase, data={**review.form(confirm="yes"), "version": "0" * 16})
    assert "changed since it was shown" in flash(stale) and web.engine.face(kit)

    done = web.client.post(erase, data=review.form(confirm="yes"))
    assert done.status_code == 200 and f"Erased: {request.ref}" in done.text
    assert "Faces removed from Vultus" in done.text
    assert (
        "Collection memberships removed" in done.text and f"crm: FaceId <code>{member}" in done.text
    )
    # The gallery's photo is the operator's original: the page says it stays, and where.
    original = next(p for p in gallery_split[0] if p.parent.name == who)
    assert "Photos deleted" not in done.text and "Left in place" in done.text
    assert str(original) in done.text and original.exists()
    assert len(web.engine.suppression_list()) == 1
    result = web.engine.search(selfie, purpose=PURPOSE)
    assert not result.found
    assert who not in {Path(m.image_path).parent.name for m in result.matches}

    # The request is done: its photo is destroyed, its receipt kept, nothing offered again.
    closed = web.engine.request(request.ref)
    assert closed.status == "done" and closed.selfie is None and closed.receipt_id
    page = web.client.get(f"/ui/rights/requests/{request.ref}").text
    assert "The photo was destroyed when the request closed" in page
    assert closed.receipt_id in page and "Erasure receipt" in page
    assert "Review the candidates" not in page and "Continue the review" not in page
    assert 'action="/ui/rights/requests/' + request.ref + '/update"' not in page
    again = web.client.post(erase, data=review.form(confirm="yes"))
    assert "is done: nothing more is done for it" in flash(again)
    # The button the receipt page offers changes nothing now.
    marked = web.client.post(f"/ui/rights/requests/{request.ref}/update", data={"status": "done"})
    assert "already done" in flash(marked)


@pytest.fixture(scope="module")
def hard_dir(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    return hard_to_find(tmp_path_factory.mktemp("hard"), faces_dir)


@pytest.fixture
def hard_web(hard_dir: Path, tmp_path: Path) -> Iterator[Web]:
    copy = tmp_path / "data"
    shutil.copytree(hard_dir, copy)
    with Engine.open(copy, workers=1) as engine:
        yield _web(engine)


def hers(web: Web) -> set[int]:
    return {
        f.face_id
        for f in web.engine.list_faces(limit=1000)
        if Path(f.image_path).parent.name == HARD_TO_FIND
    }


def test_an_access_package_comes_from_a_review_with_possible_matches_expansion_and_an_id_check(
    hard_web: Web, faces_dir: Path
) -> None:
    web = hard_web
    photos = sorted((faces_dir / "dev" / "images" / HARD_TO_FIND).iterdir())
    selfie = photos[0].read_bytes()
    web.sign_in("dpo")
    web.client.post(
        "/ui/rights/requests",
        data={"kind": "access", "contact": "katy@example.org"},
        files={"selfie": ("me.jpg", selfie, "image/jpeg")},
    )
    (request,) = web.engine.requests()
    ref = request.ref
    her_faces = hers(web)
    assert len(her_faces) == 3

    # No certain match, two possible: shown, not ticked, and never "nothing held".
    first = review_page(web, ref)
    assert "No certain match; 2 possible matches to check." in first.text
    headline = re.search(r'headline"[^>]*>([^<]*)<', first.text)
    assert headline is not None and "nothing" not in headline[1].lower()
    assert len(first.shown) == 2 and first.ticked == []
    assert "possible, check by eye" in first.text and "to check" in first.text
    assert set(first.shown) < her_faces

    # Nothing leaves while a possible match is undecided.
    early = web.client.post(f"/ui/rights/requests/{ref}/access", data={"version": first.version})
    assert "not yet decided" in flash(early)

    # Confirming her faces searches again from them, which finds her third photo.
    saved = web.client.post(
        f"/ui/rights/requests/{ref}/review", data=first.form(include=first.shown)
    )
    assert "Decisions saved." in flash(saved) and "found 1 new candidate" in flash(saved)
    second = review_page(web, ref)
    assert set(second.ticked) == set(first.shown) and len(second.shown) == 3
    assert "search 1 from the confirmed faces" in second.text
    (found,) = set(second.shown) - set(first.shown)
    assert found in her_faces and found not in second.ticked
    stale = web.client.post(f"/ui/rights/requests/{ref}/review", data=first.form(first.shown))
    assert "changed since it was shown" in flash(stale)

    # The identity check: a stranger's photo is refused and nothing is disclosed ...
    stranger = next((faces_dir / "dev" / "images" / "Kit_Harington").iterdir()).read_bytes()
    refused = web.client.post(
        f"/ui/rights/requests/{ref}/review",
        data=second.form(include=second.shown),
        files={"verify_with": ("id.jpg", stranger, "image/jpeg")},
    )
    assert "identity check failed" in flash(refused)
    failed = web.engine.audit.entries(action="access")[-1]
    assert failed.details == {"request": ref, "identity_check": "failed"}

    # ... and her own ID photo passes; the check shows on the review.
    verified = web.client.post(
        f"/ui/rights/requests/{ref}/review",
        data=second.form(include=sorted(her_faces)),
        files={"verify_with": ("id.jpg", photos[1].read_bytes(), "image/jpeg")},
    )
    assert "Identity check passed." in flash(verified)
    final = review_page(web, ref)
    assert set(final.ticked) == her_faces
    assert re.search(
        r'class="identity"><span class="badge ok">passed</span> The selfie matched', final.text
    )

    package = web.client.post(f"/ui/rights/requests/{ref}/access", data=final.form())
    assert package.status_code == 200, flash(package)
    assert package.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(package.content)) as z:
        crops = [n for n in z.namelist() if n.startswith("crops/")]
        data = json.loads(z.read("data.json"))
    assert len(crops) == 3
    assert {f["face_id"] for img in data["images"] for f in img["faces"]} == her_faces
    assert "matched the second photo" in json.dumps(data)

    # The request's page tells its life; marked done, its photo goes and nothing more is done.
    assert web.client.get(f"/ui/media/requests/{ref}/selfie.jpg").status_code == 200
    page = web.client.get(f"/ui/rights/requests/{ref}").text
    for line in (
        "Request received (access)",
        "Review kept",
        "identity check passed",
        "Identity check failed: nothing disclosed",
        "Access package made: 3 face(s)",
        "The request&#39;s photo viewed",
    ):
        assert line in page, line
    web.client.post(f"/ui/rights/requests/{ref}/update", data={"status": "done", "back": "request"})
    assert web.engine.request(ref).selfie is None
    after = web.client.post(f"/ui/rights/requests/{ref}/access", data=final.form())
    assert "is done: nothing more is done for it" in flash(after)
    assert (
        web.client.get(f"/ui/rights/requests/{ref}/review", follow_redirects=False).headers[
            "location"
        ]
        == f"/ui/rights/requests/{ref}"
    )


def test_the_queue_shows_deadlines_with_overdue_requests_in_red(web: Web) -> None:
    late = web.engine.create_request(
        "access", contact="late@example.org", received_at=datetime(2020, 1, 31)
    )
    fresh = web.engine.create_request("erasure", contact="new@example.org")
    web.sign_in("dpo")
    page = web.client.get("/ui/rights").text
    late_row = re.search(rf'<tr id="req-{late.ref}" class="([^"]*)">(.*?)</tr>', page, re.S)
    fresh_row = re.search(rf'<tr id="req-{fresh.ref}" class="([^"]*)">(.*?)</tr>', page, re.S)
    assert late_row and fresh_row
    assert late_row[1] == "overdue" and "2020-02-29" in late_row[2]  # 31 Jan + 1 month
    assert re.search(r'class="late">overdue by [\d,]+ days', late_row[2])
    assert fresh_row[1] == "" and "days left" in fresh_row[2]
    assert "no photo with this request" in fresh_row[2]  # nothing to find the person with

    web.client.post(
        f"/ui/rights/requests/{late.ref}/update",
        data={"status": "in_review", "extend": "2", "reason": "many sources"},
    )
    assert web.engine.request(late.ref).extended_until == datetime(2020, 4, 29)
    web.client.post(f"/ui/rights/requests/{late.ref}/update", data={"status": "done"})
    assert late.ref not in web.client.get("/ui/rights").text
    assert late.ref in web.client.get("/ui/rights?closed=true").text


def test_the_audit_log_filters_verifies_and_exports(web: Web) -> None:
    web.engine.audit.append("search", actor="key:someone", purpose=PURPOSE, case_ref="C-1")
    web.engine.audit.append("search", actor="key:other", purpose="legal claim")
    web.sign_in("auditor")
    page = web.client.get("/ui/audit").text
    assert "Chain intact" in page and "key:someone" in page and "key:other" in page
    filtered = web.client.get("/ui/audit", params={"action": "search", "actor": "key:someone"})
    assert "C-1" in filtered.text and "key:other" not in filtered.text
    by_purpose = web.client.get("/ui/audit", params={"purpose": "legal claim"}).text
    assert "key:other" in by_purpose and "key:someone" not in by_purpose
    assert "key:someone" not in web.client.get("/ui/audit", params={"since": "2999-01-01"}).text
    assert "not a date" in web.client.get("/ui/audit", params={"since": "soon"}).text

    jsonl = web.client.get("/ui/audit/export.jsonl")
    assert jsonl.status_code == 200 and "attachment" in jsonl.headers["content-disposition"]
    rows = [json.loads(line) for line in jsonl.text.splitlines()]
    assert {"seq", "hash", "prev_hash"} <= set(rows[0]) and len(rows) >= 2
    csv_export = web.client.get("/ui/audit/export.csv")
    assert csv_export.text.startswith("id,seq,at,actor,action")
    exports = web.engine.audit.entries(action="export", actor="key:auditor-key")
    assert [e.details["audit_export"] for e in exports] == ["jsonl", "csv"]
    assert web.client.get("/ui/reports/ropa.html").status_code == 403  # reports are the DPO's

    web.sign_in("dpo")
    report = web.client.get("/ui/reports/ropa.html")
    assert report.status_code == 200 and "<html" in report.text.lower()
    assert web.client.get("/ui/reports/dpia.md").status_code == 200


def test_the_dpo_restricts_the_reviewed_faces_of_a_restriction_request_and_lifts_them(
    gallery_web: Web, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    web = gallery_web
    selfie = next(p for p, w in gallery_split[1] if w == "Jack_Dorsey")
    web.sign_in("dpo")
    photo = {"selfie": (selfie.name, selfie.read_bytes(), "image/jpeg")}
    web.client.post("/ui/rights/requests", data={"kind": "restriction"}, files=photo)
    (request,) = web.engine.requests()
    review = review_page(web, request.ref)
    (jack,) = review.ticked
    # Every possible candidate is decided on the form: unticked ones are struck.
    restricted = web.client.post(
        f"/ui/rights/requests/{request.ref}/restrict", data=review.form(action="restrict")
    )
    assert "Restriction placed on 1 face(s)" in flash(restricted)
    assert not web.engine.search(selfie, purpose=PURPOSE).found

    # The DPO's page lists the restricted face, with its lifting.
    rights = web.client.get("/ui/rights").text
    assert f'id="restricted-{jack}"' in rights and f"/ui/media/faces/{jack}.jpg" in rights
    again = review_page(web, request.ref)
    assert "restricted" in again.text
    lifted = web.client.post(
        f"/ui/rights/requests/{request.ref}/restrict", data=again.form(action="lift")
    )
    assert "Restriction lifted for 1 face(s)" in flash(lifted)
    assert web.engine.search(selfie, purpose=PURPOSE).found
    entries = web.engine.request_history(request.ref)
    assert [e.details["lifted"] for e in entries if e.action == "restriction"] == [False, True]

    # A face restricted by hand is lifted from the list, with a reason.
    web.client.post("/ui/rights/restrictions", data={"faces": str(jack), "reason": "contested"})
    assert f'id="restricted-{jack}"' in web.client.get("/ui/rights").text
    web.client.post(
        "/ui/rights/restrictions",
        data={"faces": str(jack), "action": "lift", "reason": "settled"},
    )
    assert f'id="restricted-{jack}"' not in web.client.get("/ui/rights").text


def test_a_photo_with_no_face_is_refused_and_one_of_several_people_opens_a_picker(
    gallery_web: Web, faces_dir: Path
) -> None:
    web = gallery_web
    extra = faces_dir / "dev" / "extra"
    web.sign_in("dpo")
    dogs = web.client.post(
        "/ui/rights/requests",
        data={"kind": "erasure", "contact": "a@example.org"},
        files={"selfie": ("dogs.jpg", (extra / "dogs.jpg").read_bytes(), "image/jpeg")},
    )
    assert "Nothing was recorded: no usable face in the photo" in flash(dogs)
    assert web.engine.requests() == []

    two = (extra / "kit_with_rose.jpg").read_bytes()
    picker = web.client.post(
        "/ui/rights/requests",
        data={"kind": "erasure", "contact": "kit@example.org", "notes": "by letter"},
        files={"selfie": ("kit_with_rose.jpg", two, "image/jpeg")},
    )
    assert picker.status_code == 200 and "Which face is the person" in picker.text
    assert web.engine.requests() == []  # nothing stored while the person is chosen
    faces = re.findall(r'name="face" value="(\d+)"', picker.text)
    assert faces == ["1", "2"] and picker.text.count('class="box pick"') == 2
    photo = re.search(r'name="photo" value="([^"]+)"', picker.text)
    assert photo is not None
    hidden = dict(
        re.findall(r'type="hidden" name="(kind|contact|notes)" value="([^"]*)"', picker.text)
    )
    assert hidden == {"kind": "erasure", "contact": "kit@example.org", "notes": "by letter"}

    chosen = web.client.post("/ui/rights/requests", data={**hidden, "photo": photo[1], "face": "1"})
    assert "recorded" in flash(chosen)
    (request,) = web.engine.requests()
    kept = web.engine.request_selfie(request.ref)
    assert kept != two and len(web.engine.photo_faces(kept).faces) == 1
    assert "by letter" in (request.notes or "")
    # The crop is Kit alone, and finds his photos.
    review = review_page(web, request.ref)
    kit = {f.face_id for f in web.engine.list_faces(limit=100) if "Kit_Harington" in f.image_path}
    assert set(review.ticked) == kit

    # The photo is replaced (a photo of one person is kept as sent); the review starts again.
    rose = next((faces_dir / "dev" / "images" / "Rose_Leslie").iterdir()).read_bytes()
    replaced = web.client.post(
        f"/ui/rights/requests/{request.ref}/photo",
        files={"selfie": ("rose.jpg", rose, "image/jpeg")},
    )
    assert "Photo replaced" in flash(replaced)
    assert web.engine.request_selfie(request.ref) == rose
    assert web.engine.request(request.ref).review is None
    refused = web.client.post(
        f"/ui/rights/requests/{request.ref}/photo",
        files={"selfie": ("dogs.jpg", (extra / "dogs.jpg").read_bytes(), "image/jpeg")},
    )
    assert "The photo was not replaced: no usable face" in flash(refused)
    assert web.engine.request_selfie(request.ref) == rose

    # A photo kept before intake checked it leads to its replacement, not to a dead end.
    old = web.engine.create_request("access", selfie=two)
    stuck = web.client.get(f"/ui/rights/requests/{old.ref}/review")
    assert stuck.url.path == f"/ui/rights/requests/{old.ref}"
    assert "cannot be reviewed: the photo shows 2 faces" in flash(stuck)
    assert "Replace the photo" in stuck.text


def test_a_requests_page_tells_its_life_notes_deadline_and_refusal(web: Web) -> None:
    created = web.engine.create_request("access", contact="p@example.org", notes="by post")
    ref = created.ref
    web.sign_in("dpo")
    page = web.client.get(f"/ui/rights/requests/{ref}")
    assert page.status_code == 200
    assert 'data-status="received">received<' in page.text
    assert "No photo with this request" in page.text and "Add a photo" in page.text
    assert "by post" in page.text and "Request received (access)" in page.text

    noted = web.client.post(f"/ui/rights/requests/{ref}/notes", data={"text": "Called back"})
    assert "Note added" in flash(noted)
    assert (
        web.client.post(f"/ui/rights/requests/{ref}/notes", data={"text": " "}).status_code == 200
    )
    extended = web.client.post(
        f"/ui/rights/requests/{ref}/update",
        data={"extend": "1", "reason": "many archives", "back": "request"},
    )
    assert "Called back" in extended.text and "key:dpo-key: Called back" in extended.text
    assert "many archives" in extended.text and "deadline extended by 1 month(s)" in extended.text
    moved = web.client.post(
        f"/ui/rights/requests/{ref}/update", data={"status": "in_review", "back": "request"}
    )
    assert 'data-status="in_review">in review<' in moved.text

    refused = web.client.post(
        f"/ui/rights/requests/{ref}/update", data={"status": "rejected", "back": "request"}
    )
    assert 'data-status="rejected">refused<' in refused.text
    assert "Status: refused" in refused.text and "Add a photo" not in refused.text
    reopened = web.client.post(
        f"/ui/rights/requests/{ref}/update", data={"status": "received", "back": "request"}
    )
    assert "a closed request stays closed" in flash(reopened)
    assert web.engine.request(ref).status == "rejected"
    assert [e.details.get("event") for e in web.engine.request_history(ref)][:2] == [
        "received",
        "note",
    ]


def test_the_suppression_list_names_the_request_behind_each_entry(
    gallery_web: Web, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    web = gallery_web
    selfie = next(p for p, w in gallery_split[1] if w == "Katy_Perry")
    request = web.engine.create_request("erasure", selfie=selfie.read_bytes())
    web.engine.request_review(request.ref)
    web.engine.erase_request(request.ref)
    ((entry_id, _, ref),) = web.engine.suppression_list()
    assert ref == request.ref
    web.sign_in("dpo")
    page = web.client.get("/ui/rights").text
    row = re.search(rf"<th scope=\"row\">{entry_id}</th>(.*?)</tr>", page, re.S)
    assert row is not None and f'href="/ui/rights/requests/{request.ref}"' in row[1]


# -- the rights portal ---------------------------------------------------------------------
def test_the_portal_is_off_unless_enabled(web: Web) -> None:
    assert web.client.get("/portal").status_code == 404
    assert web.client.post("/portal", data={"email": "a@b.org"}).status_code == 404


def test_the_portal_names_the_controller_and_will_not_start_without_one(
    portal: Web, empty_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = portal.client.get("/portal").text
    assert CONTROLLER in page
    assert "set `controller`" not in page and "the controller (" not in page

    unnamed = dataclasses.replace(empty_engine.settings, portal_enabled=True, controller="")
    with pytest.raises(ConfigError) as caught:
        create_app(unnamed, engine=empty_engine)
    assert caught.value.code == "controller_unset" and "vultus.toml" in caught.value.message
    # With the portal off, nothing names the controller to people: the server starts.
    create_app(dataclasses.replace(unnamed, portal_enabled=False), engine=empty_engine)

    # `vultus serve` says so in one line before it listens.
    data_dir = tmp_path / "served"
    data_dir.mkdir()
    (data_dir / "vultus.toml").write_text("portal_enabled = true\n")
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("the server started"))
    result = CliRunner().invoke(cli_app, ["--data-dir", str(data_dir), "serve"])
    assert result.exit_code == 2 and "controller_unset" in result.output


def _portal_form(web: Web) -> str:
    response = web.client.get("/portal")
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/portal" in cookie
    token = re.search(r'name="csrf" value="([^"]+)"', response.text)
    assert token is not None
    return token[1]


def test_a_portal_request_joins_the_dpo_queue_with_its_one_month_deadline(
    portal: Web, faces_dir: Path
) -> None:
    token = _portal_form(portal)
    me = (faces_dir / "dev" / "images" / "Kit_Harington" / "Kit_Harington_1.jpeg").read_bytes()
    response = portal.client.post(
        "/portal",
        data={"csrf": token, "email": "person@example.org", "kind": "erasure"},
        files={"selfie": ("me.jpg", me, "image/jpeg")},
    )
    assert response.status_code == 200
    (request,) = portal.engine.requests()
    assert request.ref in response.text
    assert (request.kind, request.status, request.contact) == (
        "erasure",
        "received",
        "person@example.org",
    )
    assert request.due_at == req.add_months(request.received_at, 1)
    assert portal.engine.request_selfie(request.ref) == me  # one face: kept as sent
    # Nothing held is shown to the requester: no pictures, no results, no faces.
    assert "<img" not in response.text and "/media/" not in response.text
    assert "match" not in response.text.lower() and "similarity" not in response.text.lower()
    assert portal.engine.audit.entries(action="search") == []
    # And the DPO sees it in the queue.
    portal.sign_in("dpo")
    assert request.ref in portal.client.get("/ui/rights").text


def test_the_portal_refuses_a_file_that_is_not_an_image(portal: Web) -> None:
    token = _portal_form(portal)
    response = portal.client.post(
        "/portal",
        data={"csrf": token, "email": "person@example.org", "kind": "access"},
        files={"selfie": ("me.jpg", b"%PDF-1.4 not a photo", "image/jpeg")},
    )
    assert response.status_code == 422
    assert "We cannot use that photo: the file is not an image" in response.text
    assert 'value="person@example.org"' in response.text  # what was typed is kept
    assert portal.engine.requests() == []


def test_the_portal_refuses_a_photo_without_a_face_and_stores_nothing(
    portal: Web, faces_dir: Path
) -> None:
    for photo in (jpeg(), (faces_dir / "dev" / "extra" / "dogs.jpg").read_bytes()):
        token = _portal_form(portal)
        response = portal.client.post(
            "/portal",
            data={"csrf": token, "email": "person@example.org", "kind": "access"},
            files={"selfie": ("me.jpg", photo, "image/jpeg")},
        )
        assert response.status_code == 422
        assert "We could not find a face in your photo" in response.text
        assert "Nothing was stored" in response.text
    assert portal.engine.requests() == []


def test_a_portal_photo_of_two_people_lets_the_person_choose_their_face(
    portal: Web, faces_dir: Path
) -> None:
    token = _portal_form(portal)
    two = (faces_dir / "dev" / "extra" / "two_people.jpg").read_bytes()
    picker = portal.client.post(
        "/portal",
        data={"csrf": token, "email": "joe@example.org", "kind": "erasure"},
        files={"selfie": ("us.jpg", two, "image/jpeg")},
    )
    assert picker.status_code == 200 and "Which face is yours?" in picker.text
    assert portal.engine.requests() == []
    assert re.findall(r'name="face" value="(\d+)"', picker.text) == ["1", "2"]
    fields = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', picker.text))
    assert {"csrf", "kind", "email", "photo"} <= set(fields)

    unchosen = portal.client.post("/portal", data=fields)
    assert unchosen.status_code == 422 and "choose one of the numbered faces" in unchosen.text
    done = portal.client.post("/portal", data={**fields, "face": "2"})
    assert done.status_code == 200 and "Request received" in done.text
    (request,) = portal.engine.requests()
    kept = portal.engine.request_selfie(request.ref)
    assert kept != two and len(portal.engine.photo_faces(kept).faces) == 1


def test_the_portal_refuses_a_form_without_its_token(portal: Web) -> None:
    _portal_form(portal)
    response = portal.client.post(
        "/portal",
        data={
            "csrf": "forged-token-forged-token-forged-token",
            "email": "a@b.org",
            "kind": "access",
        },
        files={"selfie": ("me.jpg", jpeg(), "image/jpeg")},
    )
    assert response.status_code == 403 and "expired" in response.text
    portal.client.cookies.clear()
    response = portal.client.post(
        "/portal",
        data={"email": "a@b.org", "kind": "access"},
        files={"selfie": ("me.jpg", jpeg(), "image/jpeg")},
    )
    assert response.status_code == 403
    assert portal.engine.requests() == []


# -- operators: uploads, people, ingest jobs -------------------------------------------------
def test_an_operator_uploads_names_merges_and_unlinks(
    gallery_web: Web, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    web = gallery_web
    web.sign_in("operator")
    photo = next(p for p, w in gallery_split[1] if w == "Elon_Musk")
    uploaded = web.client.post(
        "/ui/library/upload",
        data={"source": "test"},
        files=[
            ("photos", (photo.name, photo.read_bytes(), "image/jpeg")),
            ("photos", ("notes.txt", b"not a photo", "text/plain")),
        ],
    )
    assert "1 photo(s) added under test, 1 face(s) indexed" in uploaded.text
    assert "notes.txt" in uploaded.text  # named as refused
    image_id = max(im.id for im in web.engine.list_images(limit=1000))
    stored = Path(web.engine.image(image_id)[0].path)  # a stored copy, named by its content
    assert stored.read_bytes() == photo.read_bytes()
    page = web.client.get(f"/ui/library/images/{image_id}")
    assert page.status_code == 200 and stored.name in page.text
    (face,) = [int(i) for i in re.findall(r'name="face" value="(\d+)"', page.text)]
    thumb = web.client.get(f"/ui/media/images/{image_id}.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"

    web.client.post(
        "/ui/people/link-face", data={"face": face, "subject": "Elon", "image": image_id}
    )
    web.client.post("/ui/people", data={"name": "E. Musk", "faces": ""})
    ids = {s.name: s.id for s, _ in web.engine.subjects()}
    web.client.post("/ui/people/merge", data={"into": "E. Musk", "other": "Elon"})
    assert [f.face_id for f in web.engine.subject_faces("E. Musk")] == [face]
    web.client.post(f"/ui/people/{ids['E. Musk']}/rename", data={"name": "Elon Musk"})
    person = web.client.get(f"/ui/people/{ids['E. Musk']}")
    assert "<h1>Elon Musk" in person.text and f"/ui/people/faces/{face}.jpg" in person.text
    web.client.post(f"/ui/people/{ids['E. Musk']}/unlink", data={"face": [str(face)]})
    assert web.engine.subject_faces("Elon Musk") == []
    events = web.engine.audit.entries(action="subject", actor="key:operator-key")
    assert [e.details["event"] for e in events] == [
        "created",
        "linked",
        "created",
        "merged",
        "renamed",
        "unlinked",
    ]


def test_people_pages_are_for_operators_and_draw_only_the_faces_their_view_listed(
    gallery_web: Web,
) -> None:
    web = gallery_web
    faces = [f.face_id for f in web.engine.list_faces(limit=3)]
    for role in ("investigator", "dpo"):
        web.sign_in(role)
        for path in (
            "/ui/people/proposals",
            "/ui/people/unnamed",
            f"/ui/people/faces/{faces[0]}.jpg",
        ):
            assert web.client.get(path).status_code == 403, (role, path)
    web.sign_in("operator")
    views = len(web.engine.audit.entries(action="view"))
    page = web.client.get("/ui/people/unnamed")
    assert page.status_code == 200 and "17 faces" in page.text
    (entry,) = web.engine.audit.entries(action="view")[views:]
    assert entry.details["page"] == "people/unnamed" and len(entry.result_ids) == 17
    drawn = web.client.get(f"/ui/people/faces/{faces[0]}.jpg?v={entry.id}")
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
    assert len(web.engine.audit.entries(action="view")) == views + 1  # the picture adds none
    # A picture the page did not show, or with no page view at all, is refused.
    web.engine.hide_faces([faces[1]])
    page = web.client.get("/ui/people/unnamed")
    latest = web.engine.audit.entries(action="view")[-1]
    assert web.client.get(f"/ui/people/faces/{faces[1]}.jpg?v={latest.id}").status_code == 403
    assert web.client.get(f"/ui/people/faces/{faces[0]}.jpg").status_code == 403


def test_an_upload_under_a_consent_source_needs_its_consent(
    web: Web, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    web.engine.add_source(
        "event",
        lawful_basis_code="consent",
        special_condition="explicit_consent",
        purpose="event photos",
        retention_days=30,
    )
    photo = gallery_split[0][0]
    files = [("photos", (photo.name, photo.read_bytes(), "image/jpeg"))]
    web.sign_in("operator")
    refused = web.client.post("/ui/library/upload", data={"source": "event"}, files=files)
    assert "0 photo(s) added" in refused.text and "rests on consent" in refused.text
    job = web.client.post("/ui/ingest", data={"path": str(photo), "source": "event"})
    assert "rests on consent" in job.text
    assert web.engine.catalog.counts()["images"] == 0

    consent = web.engine.add_consent("event", "guest 1", notice_version="v1")
    form = {"source": "event", "consent": str(consent)}
    added = web.client.post("/ui/library/upload", data=form, files=files)
    assert "1 photo(s) added under event" in added.text


def test_a_folder_ingest_runs_as_a_job_whose_progress_the_page_follows(
    empty_engine: Engine, gallery_split: tuple[list[Path], list], tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for photo in gallery_split[0][:3]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    empty_engine.settings.ingest_roots = [str(tmp_path)]  # where the server may read
    web = _web(empty_engine)
    with web.client:  # runs the app's lifespan: the job queue's worker
        web.sign_in("operator")
        started = web.client.post(
            "/ui/ingest", data={"path": str(folder), "source": "test"}, follow_redirects=False
        )
        job_id = int(started.headers["location"].rsplit("=", 1)[1])
        assert f'id="job-{job_id}"' in web.client.get(started.headers["location"]).text
        deadline = time.monotonic() + 60
        status = web.client.get(f"/ui/ingest/jobs/{job_id}.json").json()
        while status["status"] not in {"done", "failed"} and time.monotonic() < deadline:
            time.sleep(0.1)
            status = web.client.get(f"/ui/ingest/jobs/{job_id}.json").json()
        assert status["status"] == "done", status
        assert (status["done"], status["total"]) == (3, 3)
        assert status["summary"]["images_added"] == 3
        missing = web.client.post(
            "/ui/ingest", data={"path": str(tmp_path / "nowhere"), "source": "test"}
        )
        assert "no file or folder" in missing.text
        assert str(tmp_path) in web.client.get("/ui/ingest").text  # the page names the roots


def test_without_a_job_queue_the_ingest_page_says_so(empty_engine: Engine) -> None:
    web = _web(empty_engine)
    del web.client.app.state.jobs  # type: ignore[attr-defined]
    web.sign_in("operator")
    response = web.client.get("/ui/ingest")
    assert response.status_code == 200 and "Background jobs are unavailable" in response.text


def test_audit_entries_read_as_sentences() -> None:
    from vultus.web.audit import summary

    assert summary("view", {"page": "library", "images": [1, 2]}, 3) == (
        "Saw a library page: 2 photos, 3 faces"
    )
    change = {"change": "settings_ui", "settings": {"search_fmr": {"from": 0.001, "to": 1e-4}}}
    assert summary("config", change, 0) == (
        "Changed settings in the UI: search fmr from 0.001 to 0.0001"
    )
    assert summary("search", {"query": "photo", "found": True, "gallery_size": 58}, 3) == (
        "Searched by photo: a match found among 58 faces, 3 results"
    )
    # An entry of a shape the page does not know still reads without braces.
    assert summary("ingest", {"run": 1, "errors": [], "source": "test"}, 0) == (
        "errors: none; run: 1; source: test"
    )


def test_results_forgotten_after_a_restart_lead_back_to_the_form_with_purpose_and_case(
    gallery_web: Web, gallery_split: tuple[list[Path], list]
) -> None:
    web = gallery_web
    web.sign_in("investigator")
    probe = gallery_split[1][0][0]
    form = {"purpose": PURPOSE, "case_ref": "CASE 9/b", "face": "1", "top": "10"}
    photo = {"photo": (probe.name, probe.read_bytes(), "image/jpeg")}
    assert web.client.post("/ui/search", data=form, files=photo).status_code == 200
    search_id = web.engine.audit.entries(action="search", newest_first=True, limit=1)[0].id

    # The server restarts: the results, held in its memory only, are gone.
    app = create_app(web.engine.settings, engine=web.engine)
    restarted = Web(TestClient(app), web.engine, web.keys)
    restarted.sign_in("investigator")
    for path in (f"/ui/search/{search_id}", f"/ui/search/{search_id}/sheet"):
        response = restarted.client.get(path)
        assert response.status_code == 410
        assert "Results no longer held" in response.text and "server was restarted" in response.text
        assert "query photos are never kept" in response.text
    link = re.search(r'id="search-again" href="([^"]+)"', response.text)
    assert link is not None
    again = restarted.client.get(link[1].replace("&amp;", "&"))
    assert again.status_code == 200
    assert re.search(rf'<option value="{re.escape(PURPOSE)}" selected>', again.text)
    assert 'id="case_ref" name="case_ref" maxlength="200" value="CASE 9/b"' in again.text

    # Another investigator's key learns nothing of that search's purpose or case.
    other = restarted.engine.keys.create("another-investigator", "investigator")[1]
    restarted.keys = {**restarted.keys, "other": other}
    restarted.sign_in("other")
    response = restarted.client.get(f"/ui/search/{search_id}")
    assert response.status_code == 410 and "CASE 9/b" not in response.text
    assert 'href="/ui/search"' in response.text


def test_a_setting_saved_in_the_ui_is_reset_to_vultus_toml_and_audited(web: Web) -> None:
    web.sign_in("admin")
    engine = web.engine
    saved = web.client.post("/ui/settings", data={"controller": "Other Ltd", "search_fmr": "1e-4"})
    assert "Saved" in saved.text and engine.settings.controller == "Other Ltd"
    assert saved.text.count("Reset to vultus.toml</button>") == 2

    page = web.client.post("/ui/settings/reset", data={"reset": "controller"})
    assert page.status_code == 200
    assert "Controller is back to vultus.toml" in page.text
    assert engine.settings.controller == CONTROLLER
    assert engine.settings_overrides() == {"search_fmr": 1e-4}  # the other stays set here
    assert page.text.count("Reset to vultus.toml</button>") == 1
    entry = engine.audit.entries(action="config", newest_first=True, limit=1)[0]
    assert entry.actor == "key:admin-key"
    assert entry.details == {
        "change": "settings_reset",
        "settings": {"controller": {"from": "Other Ltd", "to": CONTROLLER}},
    }

    # A setting not saved here has nothing to reset, and nothing changes.
    before = len(engine.audit.entries(action="config"))
    page = web.client.post("/ui/settings/reset", data={"reset": "controller"})
    assert "not set in the UI" in page.text
    assert len(engine.audit.entries(action="config")) == before
    web.sign_in("dpo")
    audit = web.client.get("/ui/audit")
    assert "Changed settings back to vultus.toml: controller from Other Ltd" in audit.text
    web.sign_in("operator")
    refused = web.client.post("/ui/settings/reset", data={"reset": "search_fmr"})
    assert refused.status_code == 403 and engine.settings.search_fmr == 1e-4
