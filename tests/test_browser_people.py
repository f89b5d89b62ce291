"""Naming people in a real browser (Debian's Chromium, driven by Playwright) against a real
uvicorn server over a data directory holding every dev photo.

The story: an operator opens the proposed people, says one face of Barack Obama's proposal is
not him (and discovery, run again, remembers it), names the rest, finds the face set apart
among the suggestions on his page with its odds and links it; splits Mark Zuckerberg's
proposal by mistake and merges the two halves back under his name; hides a proposal; and
every page view is one audit entry, however many faces it shows. Screenshots, at desktop
size and at 375 px, go under test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import add_test_source, name_controller
from test_browser import CHROMIUM, CHROMIUM_ARGS, Server, _serve, fits, images_load, shot, sign_in
from vultus.engine import Engine

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`)",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")

PROPOSALS = "/ui/people/proposals?min_faces=2"
# Some people's photos are named img13.jpg and so on: their faces are found by file name.
MARK = ("img13.jpg", "img14.jpg", "img15.jpg", "img57.jpg")
SCARLETT = ("img48.jpg", "img50.jpg", "img51.jpg", "img8.jpg")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[Server]:
    data_dir = name_controller(tmp_path_factory.mktemp("people"))
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        summary = engine.add([faces_dir / "dev" / "images"], source="test")
        assert summary.errors == []
    yield from _serve(data_dir, faces_dir / "dev")


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def photos_of(files: tuple[str, ...]) -> str:
    """A selector for the face pictures from these photos (alt texts name the files)."""
    return ", ".join(f"img[alt$=' in {f}']" for f in files)


def proposal_of(page: Page, who: str | tuple[str, ...]) -> Locator:
    """The one proposal whose faces come from `who`'s photos."""
    pictures = f"img[alt*='{who}']" if isinstance(who, str) else photos_of(who)
    found = page.locator("li.proposal").filter(has=page.locator(pictures))
    assert found.count() == 1, f"{found.count()} proposals hold {who}'s faces"
    return found.first


def face_ids(proposal: Locator) -> list[int]:
    return [
        int(v)
        for v in proposal.locator("input[name=face]").evaluate_all(
            "boxes => boxes.map(b => b.value)"
        )
    ]


def test_people_are_named_set_apart_merged_and_suggested_in_a_browser(
    server: Server, browser: Browser
) -> None:
    engine = server.engine
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, server, "operator")
    page.goto(f"{server.url}/ui/people")
    page.click(".tabs a:has-text('Proposed people')")
    page.wait_for_selector("#proposals-count")

    # One page view, one audit entry, listing every face shown.
    views = len(engine.audit.entries(action="view"))
    page.goto(f"{server.url}{PROPOSALS}")
    assert images_load(page, "li.proposal img")
    entries = engine.audit.entries(action="view")
    assert len(entries) == views + 1
    shown = page.locator("li.proposal img").count()
    assert len(entries[-1].result_ids) == shown > 10
    shot(page, "people-proposals")

    # -- not this person: remembered when discovery runs again ------------------------------
    obama = proposal_of(page, "Barack_Obama")
    faces = face_ids(obama)
    assert len(faces) >= 3
    stray = faces[0]
    obama.locator(f"button[name=not][value='{stray}']").click()
    page.wait_for_selector(".flash.ok:has-text('Set apart')")
    rest = face_ids(proposal_of(page, "Barack_Obama"))
    assert stray not in rest and set(rest) == set(faces) - {stray}
    rerun = engine.discover_people(min_faces=2)
    assert not any(stray in p.face_ids and set(rest) & set(p.face_ids) for p in rerun)
    page.reload()
    assert face_ids(proposal_of(page, "Barack_Obama")) == rest

    # -- accept with a name ----------------------------------------------------------------
    obama = proposal_of(page, "Barack_Obama")
    obama.locator("input[name=name]").fill("Barack Obama")
    obama.locator("button[value=accept]").click()
    page.wait_for_selector(f".flash.ok:has-text('{len(rest)} face(s) named Barack Obama')")
    assert page.locator("h1").inner_text().startswith("Barack Obama")
    assert sorted(f.face_id for f in engine.subject_faces("Barack Obama")) == sorted(rest)

    # -- his page suggests the face set apart, with its odds, for a click to link ------------
    suggestion = page.locator("li.suggestion").filter(
        has=page.locator(f"input[name=faces][value='{stray}']")
    )
    assert suggestion.count() == 1
    assert "strangers' faces come this close" in suggestion.locator(".odds").inner_text()
    assert images_load(page, "main img")
    shot(page, "people-person")
    phone = browser.new_page(viewport={"width": 375, "height": 800})
    sign_in(phone, server, "operator")
    phone.goto(page.url)
    assert images_load(phone, "main img") and fits(phone)
    shot(phone, "people-person-375")
    suggestion.locator("button:has-text('Link to Barack Obama')").click()
    page.wait_for_selector(".flash.ok:has-text('1 face(s) linked')")
    assert stray in {f.face_id for f in engine.subject_faces("Barack Obama")}
    assert page.locator(f"li.suggestion input[value='{stray}']").count() == 0

    # -- split by mistake, then merge the two halves under one name ------------------------
    page.goto(f"{server.url}{PROPOSALS}")
    mark = proposal_of(page, MARK)
    mark_faces = face_ids(mark)
    assert len(mark_faces) == 4
    for face in mark_faces[2:]:
        mark.locator(f"#f-{face}").uncheck()
    mark.locator("button[value=split]").click()
    page.wait_for_selector(".flash.ok:has-text('2 face(s) split off')")
    halves = page.locator("li.proposal").filter(has=page.locator(photos_of(MARK)))
    assert sorted(sorted(face_ids(h)) for h in halves.all()) == sorted(
        [sorted(mark_faces[:2]), sorted(mark_faces[2:])]
    )
    for half in halves.all():
        half.locator("input[name=proposal]").check()
    page.fill("#name-merge", "Mark Zuckerberg")
    page.click("#merge button:has-text('Merge and name')")
    page.wait_for_selector(".flash.ok:has-text('2 proposals merged: 4 face(s) named')")
    assert sorted(f.face_id for f in engine.subject_faces("Mark Zuckerberg")) == sorted(mark_faces)

    # -- hide: out of the proposals, listed among hidden faces ------------------------------
    page.goto(f"{server.url}{PROPOSALS}")
    scarlett = proposal_of(page, SCARLETT)
    hidden = face_ids(scarlett)
    scarlett.locator("button[value=hide]").click()
    page.wait_for_selector(".flash.ok:has-text('Hidden')")
    assert page.locator("li.proposal").filter(has=page.locator(photos_of(SCARLETT))).count() == 0
    page.click(".tabs a:has-text('Hidden')")
    page.wait_for_url("**/unnamed?hidden=true")  # not the proposals page, still loaded
    assert sorted(face_ids_in_grid(page)) == sorted(hidden)

    # -- at 375 px, every people page fits the screen: nothing sticks out, no sideways scroll
    mark_page = f"/ui/people/{engine.subject('Mark Zuckerberg').id}"
    for path, name in (
        ("/ui/people", "people-375"),
        (PROPOSALS, "people-proposals-375"),
        ("/ui/people/unnamed", "people-unnamed-375"),
        ("/ui/people/unnamed?hidden=true", "people-hidden-375"),
        (mark_page, "people-merged-375"),
    ):
        phone.goto(f"{server.url}{path}")
        assert images_load(phone, "main img") and fits(phone), path
        scroll = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll == [375, 375], (path, scroll)
        shot(phone, name)
    page.close()
    phone.close()


def face_ids_in_grid(page: Page) -> list[int]:
    return [
        int(v)
        for v in page.locator("input[name=face]").evaluate_all("boxes => boxes.map(b => b.value)")
    ]
