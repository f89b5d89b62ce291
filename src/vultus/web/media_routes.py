"""Face crops and photo thumbnails, drawn per request from the stored photo through
`engine.image_data`, which audits each view (a picture of a face discloses it).

Who sees what: operators and the DPO any face (the DPO restricted ones too: rights requests
need them); an investigator only the faces their own searches returned, by the signed link the
results page holds (it names the search, with which each view is audited); operators see a
restricted face as a grey tile.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from vultus.engine.apikeys import Principal
from vultus.web import media
from vultus.web.forms import EngineDep, settings_of
from vultus.web.session import Forbidden, Role, face_token_search

router = APIRouter(prefix="/media")
FaceViewer = Annotated[Principal, Depends(Role("operator", "dpo", "investigator"))]
Operator = Annotated[Principal, Depends(Role("operator"))]
Dpo = Annotated[Principal, Depends(Role("dpo"))]
TILE_SIZES = (120, 240, 480)
THUMB_SIDES = (320, 640, 1280)


def _jpeg(data: bytes) -> Response:
    # no-store: after an erasure, no copy of the face may linger in a browser cache.
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


def _pick(value: int, choices: tuple[int, ...]) -> int:
    return min(choices, key=lambda c: abs(c - value))


@router.get("/faces/{face_id}.jpg")
def face_picture(
    request: Request,
    face_id: int,
    engine: EngineDep,
    principal: FaceViewer,
    t: str = "",
    size: int = 240,
    o: str = "match",
    v: int | None = None,
) -> Response:
    search: int | None = None
    if principal.role == "investigator":
        search = face_token_search(request.app.state.secret, t, face_id, principal)
        if search is None:
            raise Forbidden(principal, frozenset({"operator", "dpo"}), "a face not in your results")
    size = _pick(size, TILE_SIZES)
    record = engine.face(face_id)
    if record.restricted and principal.role != "dpo":
        return _jpeg(media.placeholder("restricted", size))
    # Audited with the search it came from and its purpose; or covered by the view of the
    # page showing it (`v`, engine.view_page: for an investigator, a view for this search).
    # A face track of a video shows its best frame.
    data, box = engine.face_still(
        face_id,
        actor=principal.actor,
        via_search=None if v is not None else search,
        via_view=v,
    )
    colour = media.OUTLINES.get(o, media.MATCH)
    max_pixels = settings_of(request).max_pixels
    return _jpeg(media.face_tile(data, box, size=size, colour=colour, max_pixels=max_pixels))


@router.get("/faces/{face_id}/video")
def face_video(
    request: Request, face_id: int, engine: EngineDep, principal: FaceViewer, t: str = ""
) -> Response:
    """The video a face track lies in, for the page's player to start at the track's best
    frame (`#t=`). Each request is audited like a face picture, with the search it came from
    (a player asks for the file in ranges: each range is a view)."""
    search: int | None = None
    if principal.role == "investigator":
        search = face_token_search(request.app.state.secret, t, face_id, principal)
        if search is None:
            raise Forbidden(principal, frozenset({"operator", "dpo"}), "a face not in your results")
    record = engine.face(face_id)
    if record.track is None or (record.restricted and principal.role != "dpo"):
        return Response(status_code=404, headers={"Cache-Control": "private, no-store"})
    path, media_type = engine.image_file(record.image_id, actor=principal.actor, via_search=search)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, no-store"})


@router.get("/images/{image_id}.jpg")
def image_picture(
    request: Request,
    image_id: int,
    engine: EngineDep,
    principal: Operator,
    side: int = 320,
    v: int | None = None,
) -> Response:
    """The photo with every face outlined and numbered by its face id; a video's frame at
    its first second, without boxes (its faces are tracks, each at its own moment). `v`: the
    audit entry of the page showing it, which logged this view already (engine.view_page)."""
    summary, faces = engine.image(image_id)
    if summary.kind == "video":
        side = _pick(side, THUMB_SIDES)
        return _jpeg(engine.thumbnail(image_id, max_side=side, actor=principal.actor))
    data, _ = engine.image_data(image_id, actor=principal.actor, via_view=v)
    boxes = [(f.box, f"#{f.face_id}", media.OTHER if f.restricted else media.QUERY) for f in faces]
    return _jpeg(
        media.photo_with_boxes(
            data,
            boxes if side > THUMB_SIDES[0] else [(b, "", c) for b, _, c in boxes],
            max_side=_pick(side, THUMB_SIDES),
            max_pixels=settings_of(request).max_pixels,
        )
    )


@router.get("/requests/{ref}/selfie.jpg")
def request_selfie(request: Request, ref: str, engine: EngineDep, principal: Dpo) -> Response:
    """The photo a data subject sent with their request, for the DPO comparing candidates;
    each view is in the request's history."""
    data = engine.view_request_photo(ref, actor=principal.actor)
    return _jpeg(
        media.photo_with_boxes(data, [], max_side=480, max_pixels=settings_of(request).max_pixels)
    )
