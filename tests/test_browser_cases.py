"""The investigator's and the operator's daily work in a real browser (Debian's Chromium through
Playwright) against a real uvicorn server over the dev photos: choosing a face in a group
photo by clicking it, looking harder for a face the detector missed, opening a result's whole
photo, the case sheet, 1:1 verification, the library's order and filters, and the phone
layouts. One server and one browser for the module; screenshots under test-artifacts/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The helpers of the first browser story: one way to start a server and sign in.
import test_browser as story
from conftest import PURPOSE, add_test_source, name_controller
from vultus.engine import Engine

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = story.pytestmark
GROUP = "extra/selfie-many-people.jpg"
SELFIE = "images/Kit_Harington/Kit_Harington_1.jpeg"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[story.Server]:
    """Every dev photo but Kit's selfie, plus Kit and Rose together."""
    data_dir = name_controller(tmp_path_factory.mktemp("cases"))
    dev = faces_dir / "dev"
    stored = data_dir / "images"
    stored.mkdir()
    shutil.copy(dev / "extra" / "kit_with_rose.jpg", stored / "kit_with_rose.jpg")
    photos = [p for p in sorted((dev / "images").rglob("*.*")) if p != dev / SELFIE]
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        summary = engine.add([*photos, stored / "kit_with_rose.jpg"], source="test")
        assert summary.errors == []
    yield from story._serve(data_dir, dev)


@pytest.fixture(scope="module")
def browser(server: story.Server) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=story.CHROMIUM, args=story.CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def investigator(browser: Browser, server: story.Server, width: int = 1280) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(30_000)
    story.sign_in(page, server, "investigator")
    return page


def click_centre(page: Page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def search_with_face(page: Page, server: story.Server, photo: Path, number: int) -> None:
    """Choose `photo`, click inside face `number`'s box, state the purpose and search."""
    page.goto(f"{server.url}/ui/search")
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("#faces fieldset input[name=face]")
    click_centre(page, f"#faces svg rect.pick >> nth={number - 1}")
    assert page.is_checked(f"#face-{number}")
    page.select_option("#purpose", PURPOSE)
    page.fill("#case_ref", "CASE-7")


def test_clicking_inside_a_face_box_searches_that_face_on_desktop_and_phone(
    server: story.Server, browser: Browser
) -> None:
    group = server.dev / GROUP
    for width in (1280, 375):
        page = investigator(browser, server, width)
        search_with_face(page, server, group, 3)
        # The box is outlined as chosen, and the picker fits a phone's screen.
        assert page.locator("#faces svg rect.box.chosen").count() == 1
        assert story.fits(page)
        story.shot(page, f"search-pick-face-3-{width}")
        page.click("button:has-text('Search')")
        page.wait_for_selector("h1:has-text('Search results')")
        caption = page.inner_text("#query-caption")
        assert caption.startswith("Your photo. Face 3 of 5 was searched"), caption
        page.close()


def test_looking_harder_finds_the_face_the_detector_missed(
    server: story.Server, browser: Browser
) -> None:
    page = investigator(browser, server)
    page.goto(f"{server.url}/ui/search")
    page.set_input_files("#photo", str(server.dev / GROUP))
    page.wait_for_selector("#faces fieldset input[name=face]")
    # Query photos are detected by HOG and MMOD together: five faces, where ingest's HOG sees 4.
    assert page.locator("#faces svg rect.pick").count() == 5
    page.click("#look-harder")
    page.wait_for_selector("#faces svg rect.pick >> nth=5")
    assert page.locator("#look-harder").count() == 0
    story.shot(page, "search-look-harder")
    # The sixth face (the nearest, largest, found only by looking harder) is searched.
    click_centre(page, "#faces svg rect.pick >> nth=0")
    assert page.is_checked("#face-1")
    page.select_option("#purpose", PURPOSE)
    page.click("button:has-text('Search')")
    page.wait_for_selector("h1:has-text('Search results')")
    assert page.inner_text("#query-caption").startswith("Your photo. Face 1 of 6 was searched")
    page.close()


def test_a_result_leads_with_its_verdict_opens_its_whole_photo_and_goes_into_a_case_sheet(
    server: story.Server, browser: Browser, tmp_path: Path
) -> None:
    page = investigator(browser, server)
    story.search(page, server, server.dev / SELFIE)
    page.click("button:has-text('Search')")
    page.wait_for_selector("h1:has-text('Search results')")
    search_id = server.engine.audit.entries(action="search", newest_first=True, limit=1)[0].id

    # Each card leads with its verdict and the odds in words; no raw cosine similarity.
    cards = page.locator(".results .card.match")
    assert cards.count() == 3
    first = cards.first.inner_text()
    assert first.startswith("Match") and "strangers' faces come this close" in first
    assert "Similarity" not in page.inner_text("main")
    # The page's three pictures are one view in the audit log, for the search's purpose.
    assert story.images_load(page, ".results .card.match img")
    views = [e for e in server.engine.audit.entries(action="view") if e.id > search_id]
    assert len(views) == 1 and len(views[0].result_ids) == 3
    assert (views[0].purpose, views[0].details["search"]) == (PURPOSE, search_id)
    story.shot(page, "results-verdicts")

    # The picture opens the whole photo, the face outlined, with where it came from.
    name = cards.first.locator(".photo-name").inner_text()
    cards.first.locator("img").click()
    page.wait_for_selector("#photo-facts")
    assert page.inner_text("h1") == name
    facts = page.inner_text("#photo-facts")
    for line in ("Source\ttest", "Taken", "Place", "Added", f"Viewed for\t{PURPOSE} (case CASE-7)"):
        assert line.replace("\t", "") in facts.replace("\t", "").replace("\n", ""), line
    assert story.images_load(page, ".photo-large img")
    story.shot(page, "result-photo")
    view = server.engine.audit.entries(action="view", newest_first=True, limit=1)[0]
    assert (view.purpose, view.case_ref, view.details["search"]) == (PURPOSE, "CASE-7", search_id)

    # The case sheet: one self-contained page with the query, matches, odds, purpose, case,
    # who and when; its photos read once, audited as one export.
    page.go_back()
    page.wait_for_selector("h1:has-text('Search results')")
    with page.expect_download() as info:
        page.click("#sheet-download")
    sheet = tmp_path / "sheet.html"
    info.value.save_as(sheet)
    text = sheet.read_text()
    for needed in (PURPOSE, "CASE-7", "key:investigator", "Query: face 1 of 1", "Controller"):
        assert needed in text, needed
    assert text.count("#1 Match") == 1 and text.count(" Match</p>") == 3
    assert 'src="http' not in text and text.count("data:image/jpeg;base64,") >= 4
    export = server.engine.audit.entries(action="export", newest_first=True, limit=1)[0]
    assert export.details["search"] == search_id and export.purpose == PURPOSE
    sheet_page = browser.new_page()
    sheet_page.goto(sheet.as_uri())
    story.shot(sheet_page, "case-sheet")
    sheet_page.close()
    page.close()


def test_verifying_two_photos_says_same_person_or_not_with_odds(
    server: story.Server, browser: Browser
) -> None:
    kit = server.dev / "images" / "Kit_Harington"
    rose = next((server.dev / "images" / "Rose_Leslie").iterdir())
    page = investigator(browser, server, 375)
    page.click("nav a:has-text('Verify')")
    for other, verdict in ((kit / "Kit_Harington_2.jpeg", "Same person"), (rose, "Not the same")):
        page.set_input_files("#first", str(server.dev / SELFIE))
        page.set_input_files("#second", str(other))
        page.select_option("#purpose", PURPOSE)
        page.fill("#case_ref", "CASE-8")
        page.click("button:has-text('Compare')")
        page.wait_for_selector("#verdict")
        text = page.inner_text("#verdict")
        assert text.startswith(verdict), text
        assert "strangers' faces" in text or "no stranger" in text
        assert story.fits(page)
        story.shot(page, f"verify-{verdict.split()[0].lower()}")
    entry = server.engine.audit.entries(action="verify", newest_first=True, limit=1)[0]
    assert (entry.purpose, entry.case_ref, entry.details["same_person"]) == (
        PURPOSE,
        "CASE-8",
        False,
    )
    page.close()


def test_verify_outlines_the_faces_compared_and_lets_the_investigator_pick_one(
    server: story.Server, browser: Browser
) -> None:
    rose = next((server.dev / "images" / "Rose_Leslie").iterdir())
    couple = server.dev / "extra" / "kit_with_rose.jpg"
    verdicts = {}
    for width, number in ((1280, 1), (375, 2)):
        page = investigator(browser, server, width)
        page.goto(f"{server.url}/ui/verify")
        page.set_input_files("#first", str(rose))
        page.set_input_files("#second", str(couple))
        # The second photo holds Kit and Rose: its faces are boxed, the largest chosen first.
        page.wait_for_selector("#faces-second fieldset input[name=face_second]")
        page.wait_for_selector("#faces-first fieldset input[name=face_first]")
        assert page.locator("#faces-second svg rect.pick").count() == 2
        assert page.is_checked("#face_second-1")
        chosen = f"#faces-second svg rect.pick >> nth={number - 1}"
        page.locator(chosen).scroll_into_view_if_needed()
        click_centre(page, chosen)
        assert page.is_checked(f"#face_second-{number}")
        assert story.fits(page)
        page.select_option("#purpose", PURPOSE)
        page.click("button:has-text('Compare')")
        page.wait_for_selector("#verdict")
        # Each photo outlines the face compared; the photo of two says which of them.
        assert page.locator("#compared-1 rect.box.chosen").count() == 1
        assert page.locator("#compared-2 rect.box").count() == 2
        assert page.locator("#compared-2 rect.box.chosen").count() == 1
        caption = page.inner_text("#compared-2 figcaption")
        largest = " (the largest)" if number == 1 else ""
        assert caption == f"Photo 2: face {number} of 2 compared{largest}, outlined.", caption
        assert page.inner_text("#compared-1 figcaption") == "Photo 1: its face, outlined."
        assert story.fits(page)
        story.shot(page, f"verify-face-{number}-{width}")
        verdicts[number] = page.inner_text("#verdict").split("\n")[0]
        page.close()
    # One of the two faces is Rose: choosing the face changes the answer.
    assert sorted(verdicts.values()) == ["Not the same person", "Same person"], verdicts


def test_the_library_shows_an_upload_first_filters_and_logs_one_entry_per_page(
    server: story.Server, browser: Browser
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    story.sign_in(page, server, "operator")

    # An upload lands on page 1, first: the newest photo leads.
    page.goto(f"{server.url}/ui/library")
    page.set_input_files("#photos", str(server.dev / "extra" / "couple.jpg"))
    page.select_option("#upload-source", "test")
    page.click("button:has-text('Upload')")
    page.wait_for_selector(".flash.ok:has-text('1 photo(s) added')")
    assert page.locator(".thumbs .card .path").first.inner_text() == "couple.jpg"

    # One audit entry for the page's 24 pictures, listing every face shown.
    views = len(server.engine.audit.entries(action="view"))
    page.goto(f"{server.url}/ui/library")
    assert story.images_load(page, ".thumbs img")
    logged = server.engine.audit.entries(action="view")[views:]
    assert len(logged) == 1 and len(logged[0].details["images"]) == 24
    assert len(logged[0].result_ids) >= 24
    story.shot(page, "library-newest-first")

    # Filters: part of the file name, the person, the day added.
    page.fill("#f-q", "rose")
    page.click("#library-filters button:has-text('Filter')")
    names = page.locator(".thumbs .card .path").all_inner_texts()
    assert sorted(names) == ["Rose_Leslie_1.jpg", "Rose_Leslie_2.jpg", "kit_with_rose.jpg"]
    kit = [
        f.face_id
        for f in server.engine.list_faces(limit=1000)
        if Path(f.image_path).name.startswith("Kit_Harington")
    ]
    server.engine.create_subject("Kit Harington", kit)
    page.goto(f"{server.url}/ui/library")
    page.select_option("#f-person", "Kit Harington")
    page.click("#library-filters button:has-text('Filter')")
    names = page.locator(".thumbs .card .path").all_inner_texts()
    assert sorted(names) == ["Kit_Harington_2.jpeg", "Kit_Harington_3.jpg"]
    page.fill("#f-from", "2099-01-01")
    page.click("#library-filters button:has-text('Filter')")
    assert "No photo matches these filters" in page.inner_text("main")
    story.shot(page, "library-filtered")

    # On a phone, photos two to a row: 24 photos in a page a few screens tall.
    phone = browser.new_page(viewport={"width": 375, "height": 800})
    story.sign_in(phone, server, "operator")
    phone.goto(f"{server.url}/ui/library")
    assert phone.locator(".thumbs .card").count() == 24
    assert story.fits(phone)
    height = phone.evaluate("document.querySelector('.thumbs').getBoundingClientRect().height")
    assert height < 3600, height
    story.shot(phone, "library-mobile")
    phone.close()

    # The audit log reads as sentences, the raw details folded away.
    story.sign_out(page)
    story.sign_in(page, server, "dpo")
    page.goto(f"{server.url}/ui/audit")
    rows = page.locator("table.log tbody tr td.what").all_inner_texts()
    assert "Saw a library page: 24 photos" in "\n".join(rows)
    assert not [r for r in rows if r.lstrip().startswith("{")]
    story.shot(page, "audit-readable")
    page.close()


def test_the_rights_queue_fits_a_phone(server: story.Server, browser: Browser) -> None:
    for kind in ("access", "erasure"):
        server.engine.create_request(kind, contact=f"{kind}@example.org", actor="test")
    phone = browser.new_page(viewport={"width": 375, "height": 800})
    phone.set_default_timeout(30_000)
    story.sign_in(phone, server, "dpo")
    phone.goto(f"{server.url}/ui/rights")
    assert phone.locator("table.queue tbody tr").count() >= 2
    wrap = "document.querySelector('.table-wrap')"
    assert phone.evaluate(f"{wrap}.scrollWidth <= {wrap}.clientWidth")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    deadline = phone.locator("table.queue td.deadline").first.bounding_box()
    assert deadline is not None and deadline["x"] + deadline["width"] <= 375
    story.shot(phone, "rights-queue-mobile")
    phone.close()


def test_deleting_a_face_or_a_photo_goes_through_a_review(
    server: story.Server, browser: Browser
) -> None:
    held = {Path(im.path).name: im for im in server.engine.list_images(limit=1000)}
    pair = held["kit_with_rose.jpg"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    story.sign_in(page, server, "operator")

    # One face of a photo of two: only that face is ticked; the photo stays for the other.
    page.goto(f"{server.url}/ui/library/images/{pair.id}")
    page.locator("a:has-text('Delete this face')").first.click()
    page.wait_for_selector("h1:has-text('Delete from kit_with_rose.jpg')")
    assert page.locator("#review-form input[name=include]:checked").count() == 1
    assert page.inner_text("button.danger") == "Delete 1 face"
    assert story.images_load(page, "#review-form img")
    story.shot(page, "delete-review")
    page.click("button.danger")  # not confirmed: the form says so, nothing is deleted
    assert len(server.engine.image(pair.id)[1]) == 2
    page.check("#confirm")
    page.click("button.danger")
    page.wait_for_selector(".flash.ok:has-text('Deleted 1 face(s)')")
    assert len(server.engine.image(pair.id)[1]) == 1

    # The whole photo: every face ticked, and it leaves the catalog.
    page.click("#delete-photo")
    page.check("#confirm")
    page.click("button.danger")
    page.wait_for_selector(".flash.ok:has-text('Deleted photo kit_with_rose.jpg')")
    assert "kit_with_rose.jpg" not in {
        Path(im.path).name for im in server.engine.list_images(limit=1000)
    }
    deletes = server.engine.audit.entries(action="delete")
    assert len(deletes) >= 2
    page.close()


def test_an_admin_changes_settings_without_a_restart_and_keeps_an_admin_key(
    server: story.Server, browser: Browser
) -> None:
    engine = server.engine
    server.keys["admin"] = engine.keys.create("admin", "admin")[1]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    story.sign_in(page, server, "admin")
    page.click("nav a:has-text('Settings')")
    assert "overrides vultus.toml" in page.inner_text(".lead").replace("\n", " ")
    purposes = page.input_value("#s-purposes")
    page.fill("#s-purposes", purposes + "\nmissing person")
    page.fill("#s-search_fmr", "0.0001")
    page.click("button:has-text('Save')")
    page.wait_for_selector(".flash.ok:has-text('Saved')")
    assert engine.settings.search_fmr == 1e-4
    assert "missing person" in engine.settings.purposes
    assert "set here" in page.inner_text("#settings-form")
    change = engine.audit.entries(action="config", newest_first=True, limit=1)[0]
    assert change.details["settings"]["search_fmr"] == {"from": 0.001, "to": 0.0001}
    page.fill("#s-search_fmr", "2")
    page.click("button:has-text('Save')")
    page.wait_for_selector(".flash.error:has-text('a rate between 0 and 1')")
    assert engine.settings.search_fmr == 1e-4
    story.shot(page, "admin-settings")
    # A value saved here goes back to vultus.toml's with one click, audited.
    page.click("button[aria-label='Reset Search false-match rate to vultus.toml']")
    page.wait_for_selector(".flash.ok:has-text('back to vultus.toml')")
    assert engine.settings.search_fmr == 0.001  # as the other tests expect
    reset = engine.audit.entries(action="config", newest_first=True, limit=1)[0]
    assert reset.details["change"] == "settings_reset"

    # The new purpose is offered to investigators at once.
    other = investigator(browser, server)
    other.goto(f"{server.url}/ui/search")
    assert "missing person" in other.locator("#purpose option").all_inner_texts()
    other.close()

    # Keys: the form does not default to admin, and the last admin key stays.
    page.click("nav a:has-text('Keys')")
    assert page.locator("input[name=role]:checked").count() == 0
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button[aria-label='Revoke key admin']")
    page.wait_for_selector(".flash.error:has-text('last active admin key')")
    assert engine.keys.authenticate(server.keys["admin"]).role == "admin"
    story.shot(page, "admin-keys")

    # Sources are registered in the UI, with their lawful basis.
    story.sign_out(page)
    story.sign_in(page, server, "operator")
    page.click("#new-source summary")
    page.fill("#src-name", "press-archive")
    page.select_option("#src-basis", "legitimate_interests")
    page.select_option("#src-condition", "archiving_research")
    page.fill("#src-purpose", "newsroom photo archive")
    page.fill("#src-days", "3650")
    page.click("button:has-text('Register')")
    page.wait_for_selector(".flash.ok:has-text('Source press-archive registered')")
    assert "press-archive" in [s.name for s, _, _ in engine.sources()]
    page.close()
