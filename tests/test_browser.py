"""The web UI in a real browser (Debian's Chromium, driven by Playwright) against a real uvicorn
server over a data directory holding the dev photos.

The story: an investigator searches with a photo of Kit Harington and sees his photos; an
operator browses the library, ingests a folder and names a face; Kit asks for erasure through
the rights portal; the DPO reviews the erasure and confirms it; the audit log shows it all; and
the investigator's next search no longer finds him. Each page is saved as a screenshot under
test-artifacts/.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import HARD_TO_FIND, PURPOSE, REPO, add_test_source, hard_to_find, name_controller
from serving import serving
from vultus.api import create_app
from vultus.engine import Engine

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"
SELFIE = "images/Kit_Harington/Kit_Harington_1.jpeg"
LATER = "images/Rose_Leslie"  # ingested during the story, from the Ingest page

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`)",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")


@dataclass
class Server:
    url: str
    engine: Engine
    keys: dict[str, str]
    dev: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[Server]:
    """Every dev photo but Kit's selfie and Rose Leslie's folder, plus Kit and Rose together
    in a stored copy; the rights portal enabled; a uvicorn server on a free local port."""
    data_dir = name_controller(tmp_path_factory.mktemp("browser"))
    dev = faces_dir / "dev"
    stored = data_dir / "images"
    stored.mkdir()
    shutil.copy(dev / "extra" / "kit_with_rose.jpg", stored / "kit_with_rose.jpg")
    photos = [
        p
        for p in sorted((dev / "images").rglob("*.*"))
        if p != dev / SELFIE and not p.is_relative_to(dev / LATER)
    ]
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        summary = engine.add([*photos, stored / "kit_with_rose.jpg"], source="test")
        assert summary.errors == []
    yield from _serve(data_dir, dev)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, server: Server, role: str) -> None:
    page.goto(f"{server.url}/ui/login")
    page.fill("#api_key", server.keys[role])
    page.click("button:has-text('Sign in')")
    page.wait_for_selector(f".who .role:has-text('{role}')")


def sign_out(page: Page) -> None:
    page.click("button:has-text('Sign out')")
    page.wait_for_selector("#api_key")


def images_load(page: Page, selector: str) -> bool:
    """Every picture matched by `selector` loads (lazy ones once scrolled to)."""
    pictures = page.locator(selector)
    assert pictures.count() > 0, selector
    for picture in pictures.all():
        picture.scroll_into_view_if_needed()
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth > 0)",
        arg=selector,
    )
    page.evaluate("window.scrollTo(0, 0)")
    return True


def search(page: Page, server: Server, photo: Path) -> None:
    page.goto(f"{server.url}/ui/search")
    page.set_input_files("#photo", str(photo))
    # The photo's faces appear, boxes drawn over it; the largest is chosen by default.
    page.wait_for_selector("#faces fieldset input[name=face]")
    page.check("#face-1")
    page.select_option("#purpose", PURPOSE)
    page.fill("#case_ref", "CASE-7")


def test_search_erasure_by_portal_request_and_audit_in_a_browser(
    server: Server, browser: Browser
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(20_000)
    selfie = server.dev / SELFIE

    # -- the investigator finds Kit's photos -----------------------------------------------
    page.goto(f"{server.url}/ui/search")
    assert "/ui/login" in page.url  # no session: sent to sign in first
    shot(page, "login")
    sign_in(page, server, "investigator")
    search(page, server, selfie)
    assert page.locator("#faces svg rect.box.chosen").count() == 1
    shot(page, "search")
    page.click("button:has-text('Search')")
    page.wait_for_selector("h1:has-text('Search results')")
    found = page.locator(".results .card.match .path").all_inner_texts()
    assert sorted(found) == ["Kit_Harington_2.jpeg", "Kit_Harington_3.jpg", "kit_with_rose.jpg"]
    assert images_load(page, ".results .card.match img")
    assert "This person appears in the gallery" in page.inner_text(".decision")
    shot(page, "search-results")
    sign_out(page)

    # -- the operator: library, an ingest job followed live, and a face named --------------
    sign_in(page, server, "operator")
    page.goto(f"{server.url}/ui/library")
    assert page.locator(".thumbs .card").count() == 24  # the first page of photos
    assert images_load(page, ".thumbs img")
    shot(page, "library")
    page.goto(f"{server.url}/ui/ingest")
    page.fill("#path", str(server.dev / LATER))
    page.select_option("#ingest-source", "test")
    page.click("button:has-text('Start')")
    page.wait_for_selector(".job.current .job-status .badge:has-text('done')")
    assert "2 photos added" in page.inner_text(".job.current .job-status")
    shot(page, "ingest")
    kit_photo = next(
        im.id
        for im in server.engine.list_images(limit=1000)
        if im.path.endswith("Kit_Harington_2.jpeg")
    )
    page.goto(f"{server.url}/ui/library/images/{kit_photo}")
    page.fill("input[name=subject]", "Kit Harington")
    page.click("form.inline button:has-text('Link')")
    page.wait_for_selector(".flash.ok:has-text('linked to Kit Harington')")
    shot(page, "library-photo")
    page.goto(f"{server.url}/ui/people")
    assert page.locator(".person h2").all_inner_texts() == ["Kit Harington"]
    assert images_load(page, ".people img")
    shot(page, "people")
    sign_out(page)

    # -- Kit asks for erasure through the portal -------------------------------------------
    portal = browser.new_page(viewport={"width": 1000, "height": 900})
    portal.goto(f"{server.url}/portal")
    shot(portal, "portal")
    portal.check("#kind-erasure")
    portal.set_input_files("#selfie", str(selfie))
    portal.fill("#email", "kit@example.org")
    portal.click("button:has-text('Send my request')")
    portal.wait_for_selector("h1:has-text('Request received')")
    ref = portal.inner_text(".ref")
    assert re.fullmatch(r"R-\d{8}-[0-9A-F]{6}", ref)
    assert portal.locator("img").count() == 0  # the portal never shows what is held
    shot(portal, "portal-done")
    portal.close()

    # -- the DPO reviews and confirms the erasure ------------------------------------------
    sign_in(page, server, "dpo")
    row = page.locator(f"#req-{ref}")
    assert "erasure" in row.inner_text() and "days left" in row.inner_text()
    shot(page, "rights")
    row.locator("a:has-text('Review the candidates')").click()
    page.wait_for_selector("h1:has-text('Review: erasure request')")
    assert page.inner_text(".headline").startswith("3 matches")
    assert page.locator("#review-form .card.candidate.tier-match.included").count() == 3
    assert images_load(page, "#review-form img")
    shot(page, "rights-preview")
    page.check("#confirm")
    page.click("button:has-text('Erase 3 faces')")
    page.wait_for_selector(f"h1:has-text('Erased: {ref}')")
    receipt = page.inner_text(".receipt")
    assert re.search(r"Faces removed from Vultus\s+3", receipt)
    assert re.search(r"Photos removed from the catalog\s+2", receipt)
    # Kit's own photos are the operator's originals: left in place, and the page says so.
    assert re.search(r"Files left in place\s+2", receipt)
    assert "Left in place" in page.inner_text("main")
    shot(page, "rights-done")
    # The erasure closed the request: its page shows the receipt and offers nothing more.
    page.goto(f"{server.url}/ui/rights/requests/{ref}")
    assert page.inner_text(".badge.status") == "done"
    assert page.locator("a:has-text('Review')").count() == 0
    assert "Erasure receipt" in page.inner_text("main")

    page.goto(f"{server.url}/ui/audit")
    assert "Chain intact" in page.inner_text(".flash")
    actions = page.locator("table.log tbody tr td:nth-child(4)").all_inner_texts()
    assert {"erasure", "search", "view", "request"} <= set(actions)
    shot(page, "audit")
    sign_out(page)

    # -- and Kit is no longer found --------------------------------------------------------
    sign_in(page, server, "investigator")
    search(page, server, selfie)
    page.click("button:has-text('Search')")
    page.wait_for_selector("h1:has-text('Search results')")
    assert page.locator(".results .card.match").count() == 0
    # Faces under the threshold sit folded away, most likely strangers: none is Kit.
    paths = page.eval_on_selector_all(".results .card .path", "els => els.map(e => e.textContent)")
    assert not [p for p in paths if "Kit_Harington" in p]
    assert "No match" in page.inner_text(".decision")
    shot(page, "search-after-erasure")
    page.close()


# -- rights by selfie: a review that finds everything, and intake that cannot dead-end ----------
@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[Server]:
    """Finding Katy Perry from her selfie takes a reviewer and expansion (see conftest)."""
    data_dir = hard_to_find(tmp_path_factory.mktemp("strict"), faces_dir)
    yield from _serve(data_dir, faces_dir / "dev")


def _serve(data_dir: Path, dev: Path) -> Iterator[Server]:
    engine = Engine.open(data_dir, workers=1, ingest_roots=[str(dev)])
    keys = {r: engine.keys.create(r, r)[1] for r in ("investigator", "operator", "dpo")}
    settings = dataclasses.replace(engine.settings, portal_enabled=True)
    with serving(create_app(settings, engine=engine)) as port:
        yield Server(f"http://127.0.0.1:{port}", engine, keys, dev)
    engine.close()


def fits(page: Page) -> bool:
    """Nothing overflows the page sideways (a phone's 375 pixels); else name what does."""
    wide = page.evaluate(
        """() => [...document.querySelectorAll("body *")]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
            .filter(e => !(e.parentElement && e.parentElement.closest(".table-wrap")))
            .filter(e => !e.closest(".sr-only, .skip"))
            .map(e => `${e.tagName}.${e.className} ${e.getBoundingClientRect().right}`)"""
    )
    assert not wide, wide[:8]
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def her_faces(server: Server) -> set[int]:
    return {
        f.face_id
        for f in server.engine.list_faces(limit=1000)
        if Path(f.image_path).parent.name == HARD_TO_FIND
    }


def decide(page: Page, hers: set[int]) -> None:
    """Tick her faces and untick the others, by clicking as a reviewer does."""
    for box in page.locator("#review-form input[name=include]").all():
        want = int(box.get_attribute("value") or 0) in hers
        if box.is_checked() != want:
            page.click(f"label[for='{box.get_attribute('id')}']")


def test_a_possible_match_confirmed_by_eye_brings_the_rest_and_an_access_package_with_an_id_check(
    strict: Server, browser: Browser, tmp_path: Path
) -> None:
    server = strict
    photos = sorted((server.dev / "images" / HARD_TO_FIND).iterdir())
    hers = her_faces(server)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    sign_in(page, server, "dpo")

    # The DPO records an access request that came by letter, with the person's photo.
    page.select_option("#kind", "access")
    page.fill("#contact", "katy@example.org")
    page.set_input_files("#selfie", str(photos[0]))
    page.fill("#notes", "by letter, with a photo")
    page.click("button:has-text('Record')")
    page.wait_for_selector("h1:has-text('Request')")
    ref = page.inner_text("h1 code")
    assert page.inner_text(".badge.status") == "received"

    # The review: no certain match, two possible matches to check by eye, not ticked.
    page.click("a:has-text('Review the candidates')")
    page.wait_for_selector("h1:has-text('Review: access request')")
    assert page.inner_text(".headline") == "No certain match; 2 possible matches to check."
    cards = page.locator(".card.candidate")
    assert cards.count() == 2 and "possible, check by eye" in cards.first.inner_text()
    assert "strangers' faces come this close" in cards.first.inner_text()
    assert not any(b.is_checked() for b in page.locator("input[name=include]").all())
    assert page.locator("button[formaction$='/access']").is_disabled()
    assert images_load(page, "#review-form img")
    shot(page, "review-possible")

    # She is recognised by eye and ticked: the page counts her faces, unsaved.
    for label in page.locator(".card.candidate label:has-text('This is the person')").all():
        label.click()
    assert "included" in (cards.first.get_attribute("class") or "")
    assert page.is_visible("[data-unsaved]")
    assert page.inner_text("button[formaction$='/access']").endswith(" 2 faces")
    shot(page, "review-ticked")

    # Saving searches again from her faces: her third photo appears, not yet ticked.
    page.click("button:has-text('Save decisions and search again')")
    page.wait_for_selector(".flash.ok:has-text('found 1 new candidate')")
    assert page.locator(".card.candidate").count() == 3
    new = page.locator(".card.candidate:not(.included)")
    assert new.count() == 1 and "search 1 from the confirmed faces" in new.inner_text()
    assert images_load(page, "#review-form img")
    shot(page, "review-expanded")
    decide(page, hers)

    # The identity check: her ID photo is uploaded and the check shows on the review.
    page.set_input_files("#verify_with", str(photos[1]))
    page.click("button:has-text('Save decisions and search again')")
    page.wait_for_selector(".flash.ok:has-text('Identity check passed.')")
    assert page.inner_text(".identity").startswith("passed")
    ticked = {
        int(b.get_attribute("value") or 0)
        for b in page.locator("#review-form input[name=include]").all()
        if b.is_checked()
    }
    assert ticked == hers
    shot(page, "review-id-check")

    # On a phone the review does not overflow sideways.
    phone = browser.new_page(viewport={"width": 375, "height": 800})
    sign_in(phone, server, "dpo")
    phone.goto(f"{server.url}/ui/rights/requests/{ref}/review")
    assert fits(phone)
    shot(phone, "review-mobile")

    # The package comes from the review: her three photos, with the check.
    with page.expect_download() as info:
        page.click("button:has-text('Download the access package')")
    path = tmp_path / "package.zip"
    info.value.save_as(path)
    with zipfile.ZipFile(path) as z:
        assert len([n for n in z.namelist() if n.startswith("crops/")]) == 3
        assert "matched the second photo" in z.read("data.json").decode()

    # The request's page: its photo, status, history, notes and deadline; then done.
    page.goto(f"{server.url}/ui/rights/requests/{ref}")
    assert page.inner_text(".badge.status") == "in review"
    history = page.inner_text("table.history")
    for line in ("Request received (access)", "identity check passed", "Access package made"):
        assert line in history, line
    page.fill("#note", "Package sent by secure email")
    page.click("button:has-text('Add the note')")
    page.wait_for_selector(".flash.ok:has-text('Note added')")
    assert "Package sent by secure email" in page.inner_text(".notes")
    assert images_load(page, ".selfie img")
    shot(page, "request-page")
    phone.goto(f"{server.url}/ui/rights/requests/{ref}")
    assert fits(phone)
    shot(phone, "request-page-mobile")
    page.select_option("#status", "done")
    page.click("#status-h ~ form button:has-text('Save')")
    page.wait_for_selector(".flash.ok:has-text('Its photo was destroyed')")
    assert page.inner_text(".badge.status") == "done"
    assert "The photo was destroyed when the request closed" in page.inner_text("main")
    assert page.locator("a:has-text('Review'), #status").count() == 0
    shot(page, "request-done")
    phone.close()
    page.close()


def test_the_portal_refuses_a_photo_without_a_face_and_lets_a_person_choose_theirs(
    strict: Server, browser: Browser
) -> None:
    server = strict
    extra = server.dev / "extra"
    before = len(server.engine.requests(open_only=False))
    portal = browser.new_page(viewport={"width": 375, "height": 800})
    portal.set_default_timeout(30_000)
    portal.goto(f"{server.url}/portal")
    assert fits(portal)
    portal.check("#kind-access")
    portal.set_input_files("#selfie", str(extra / "dogs.jpg"))
    portal.fill("#email", "someone@example.org")
    portal.click("button:has-text('Send my request')")
    portal.wait_for_selector(".flash.error")
    assert "We could not find a face in your photo" in portal.inner_text(".flash.error")
    assert "Nothing was stored" in portal.inner_text(".flash.error")
    assert len(server.engine.requests(open_only=False)) == before
    assert fits(portal)
    shot(portal, "portal-no-face")

    # A photo of two people: the person sees it with the faces numbered and picks theirs.
    portal.check("#kind-access")
    portal.set_input_files("#selfie", str(extra / "two_people.jpg"))
    portal.click("button:has-text('Send my request')")
    portal.wait_for_selector("h1:has-text('Which face is yours?')")
    assert portal.locator("svg rect.pick").count() == 2
    assert len(server.engine.requests(open_only=False)) == before  # nothing kept yet
    assert fits(portal)
    portal.click("svg rect[data-pick='face-2']")
    assert portal.is_checked("#face-2")
    shot(portal, "portal-picker")
    portal.click("button:has-text('This is me')")
    portal.wait_for_selector("h1:has-text('Request received')")
    ref = portal.inner_text(".ref")
    kept = server.engine.request_selfie(ref)
    assert len(server.engine.photo_faces(kept).faces) == 1
    assert kept != (extra / "two_people.jpg").read_bytes()
    shot(portal, "portal-picked")
    portal.close()
