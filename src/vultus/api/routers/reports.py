"""The Art. 30 record of processing and the Art. 35 DPIA draft, from the facts Vultus knows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from vultus.api.deps import EngineDep, require
from vultus.api.errors import responses
from vultus.engine.apikeys import Principal

router = APIRouter(prefix="/reports", tags=["reports"], responses=responses(401, 403, 429))

MEDIA = {"markdown": ("md", "text/markdown; charset=utf-8"), "html": ("html", "text/html")}


@router.get(
    "/{kind}",
    summary="The record of processing (ropa) or the DPIA draft (dpia), as Markdown or HTML",
    response_class=Response,
    responses={
        200: {"content": {"text/markdown": {}, "text/html": {}}, "description": "The report."},
        **responses(422),
    },
)
def report(
    kind: Literal["ropa", "dpia"],
    engine: EngineDep,
    principal: Annotated[Principal, Depends(require("dpo"))],
    format: Annotated[Literal["markdown", "html"], Query()] = "markdown",
) -> Response:
    suffix, media_type = MEDIA[format]
    with tempfile.TemporaryDirectory(prefix="vultus-report-") as folder:
        engine.report(kind, Path(folder), actor=principal.actor)
        text = (Path(folder) / f"{kind}.{suffix}").read_text(encoding="utf-8")
    return Response(text, media_type=media_type)
