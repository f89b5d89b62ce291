"""What an investigator does with a search's results after seeing them: open a result's whole
photo (for the search's purpose, audited with it), and take the case sheet for the case file.

The results of the last searches are kept in this process's memory for as long as their face
links hold (an hour), so that the case sheet shows exactly what the results page showed: the
same matches, verdicts and odds, without searching again (which would be another search in
the audit log). The query photo itself is not kept, only the small tile of the face searched
with that the sheet shows. Nothing of it is written to disk; a restart forgets it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from vultus.engine.apikeys import Principal
from vultus.errors import ForbiddenError, NotFoundError
from vultus.search.results import SearchResult
from vultus.search.sheet import CaseFacts, case_sheet_html
from vultus.web import media
from vultus.web.forms import EngineDep, settings_of
from vultus.web.render import UI, page
from vultus.web.session import FACE_TOKEN_SECONDS, Forbidden, Role, face_token, face_token_search

router = APIRouter(prefix="/search")
Investigator = Annotated[Principal, Depends(Role("investigator"))]
PHOTO_SIDE = 1280
# The case sheet is a page of its own, opened and saved apart from the UI: its styles are
# inline and its pictures data URIs, and it may load nothing else.
SHEET_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Kept:
    key_id: int
    expires: float
    result: SearchResult
    query_tile: str | None
    facts: CaseFacts
    # The query photo's small preview (a data URL and the photo's size) the results show.
    preview: dict[str, Any]


class RecentSearches:
    """The results of recent searches, by search id, each for the key that searched."""

    def __init__(self, limit: int = 200, seconds: float = FACE_TOKEN_SECONDS) -> None:
        self.limit = limit
        self.seconds = seconds
        self._kept: dict[int, Kept] = {}
        self._lock = threading.Lock()

    def keep(
        self,
        principal: Principal,
        result: SearchResult,
        query_tile: str | None,
        facts: CaseFacts,
        preview: dict[str, Any],
    ) -> None:
        assert result.search_id is not None
        stamp = time.monotonic()
        with self._lock:
            self._kept = {k: v for k, v in self._kept.items() if v.expires > stamp}
            while len(self._kept) >= self.limit:  # the oldest go first
                self._kept.pop(next(iter(self._kept)))
            self._kept[result.search_id] = Kept(
                principal.key_id, stamp + self.seconds, result, query_tile, facts, preview
            )

    def get(self, search_id: int, principal: Principal) -> Kept | None:
        with self._lock:
            kept = self._kept.get(search_id)
        if kept is None or kept.key_id != principal.key_id or kept.expires < time.monotonic():
            return None
        return kept


def recent(request: Request) -> RecentSearches:
    searches: RecentSearches = request.app.state.recent
    return searches


def _kept(request: Request, search_id: int, principal: Principal) -> Kept:
    kept = recent(request).get(search_id, principal)
    if kept is None:
        raise NotFoundError(
            f"the results of search {search_id} are not held any more (they are kept for an "
            "hour after the search, in this server's memory, for the key that searched): "
            "search again",
            code="results_expired",
        )
    return kept


def _gone(request: Request, engine: EngineDep, search_id: int, principal: Principal) -> Response:
    """The page for results no longer held (an hour passed, or the server restarted): why,
    and the search form again with the purpose and case of one's own search filled in. The
    photo must be chosen again: query photos are never kept."""
    asked = engine.search_purpose(search_id, actor=principal.actor)
    again = f"{UI}/search"
    if asked is not None:
        purpose, case_ref = asked
        again += "?" + urlencode({"purpose": purpose, "case_ref": case_ref or ""})
    return page(
        request,
        "results_gone.html",
        status=410,
        title="Results no longer held",
        search_id=search_id,
        asked=asked,
        again=again,
    )


@router.get("/{search_id}")
def results_page(
    request: Request, search_id: int, engine: EngineDep, principal: Investigator
) -> Response:
    """A search's results, as the search that just ran found them."""
    kept = recent(request).get(search_id, principal)
    if kept is None:
        return _gone(request, engine, search_id, principal)
    secret: bytes = request.app.state.secret
    tokens = {
        m.face_id: face_token(secret, m.face_id, principal, search_id) for m in kept.result.matches
    }
    # One audit entry for the page's pictures, for the search's purpose (engine.view_page).
    view = engine.view_page(
        [m.image_id for m in kept.result.matches],
        actor=principal.actor,
        page="search results",
        faces=[m.face_id for m in kept.result.matches],
        via_search=search_id,
    )
    return page(
        request,
        "results.html",
        title="Search results",
        result=kept.result,
        tokens=tokens,
        preview=kept.preview,
        query_faces=kept.result.faces,
        purpose=kept.facts.purpose,
        case_ref=kept.facts.case_ref or "",
        view=view,
    )


@router.get("/results/{face_id}")
def result_photo(
    request: Request, face_id: int, engine: EngineDep, principal: Investigator, t: str = ""
) -> Response:
    """One result's whole photo, the face outlined, with where it came from: only from the
    investigator's own results (the signed link names the search), audited as a view for
    that search's purpose and case."""
    search = face_token_search(request.app.state.secret, t, face_id, principal)
    if search is None:
        raise Forbidden(principal, frozenset({"operator", "dpo"}), "a face not in your results")
    record = engine.face(face_id)
    if record.restricted:
        raise ForbiddenError(
            "this face is restricted (a data subject's request): it is not shown",
            code="restricted",
        )
    data, _ = engine.image_data(record.image_id, actor=principal.actor, via_search=search)
    kept = recent(request).get(search, principal)
    match = next((m for m in kept.result.matches if m.face_id == face_id), None) if kept else None
    is_match = match is not None and match.is_match
    colour = media.MATCH if is_match or match is None else media.OTHER
    picture = media.photo_with_boxes(
        data,
        [(record.box, "", colour)],
        max_side=PHOTO_SIDE,
        max_pixels=settings_of(request).max_pixels,
    )
    return page(
        request,
        "result_photo.html",
        title="A result's photo",
        record=record,
        match=match,
        picture=media.data_uri(picture),
        exif=media.photo_facts(data),
        search_id=search,
        facts=kept.facts if kept else None,
    )


@router.get("/{search_id}/sheet")
def case_sheet(
    request: Request,
    search_id: int,
    engine: EngineDep,
    principal: Investigator,
    download: int = 0,
) -> Response:
    """The search as one self-contained HTML page for the case file (search/sheet.py, as
    `vultus search --sheet case.html` writes it); its photos are read once, audited as an
    export for the search's purpose."""
    kept = recent(request).get(search_id, principal)
    if kept is None:
        return _gone(request, engine, search_id, principal)
    photos = engine.search_photos(search_id, actor=principal.actor)
    html = case_sheet_html(kept.result, kept.query_tile, photos, kept.facts)
    response = HTMLResponse(html)
    response.headers["Content-Security-Policy"] = SHEET_CSP
    if download:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", kept.facts.case_ref or "")[:60].strip("-")
        filename = f"case-sheet-{name or search_id}.html"
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
