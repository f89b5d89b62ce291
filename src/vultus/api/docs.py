"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), with their scripts,
styles and icon served from the package (`static/`, licences in `static/NOTICE`).

FastAPI's own pages load these from a CDN, so they are blank on a machine without internet,
and elsewhere every visit tells a third party who reads the documentation of which server
(ReDoc's page adds Google Fonts, Swagger UI its online validator). These name no other host,
and their Content-Security-Policy lets the browser fetch from no other host either: ReDoc's
bundle shows its maker's logo from their CDN, and that request is refused rather than made.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
ASSETS = "/docs/assets"
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
# Swagger UI checks the document with an online validator unless told not to.
SWAGGER_PARAMETERS = {"validatorUrl": None}
# This origin only. Swagger UI's one inline script is allowed by its hash; both pages style
# themselves inline, draw icons from data: URIs, and ReDoc searches in a blob: worker.
POLICY = (
    "default-src 'none'; script-src 'self' {scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install(app: FastAPI) -> None:
    """Serve `/docs`, `/redoc` and their assets. The app must be made with `docs_url=None,
    redoc_url=None`, so that FastAPI's own pages do not shadow these."""
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{ASSETS}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{ASSETS}/{FAVICON}",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
        return _with_policy(page)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            redoc_js_url=f"{root}{ASSETS}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{ASSETS}/{FAVICON}",
            with_google_fonts=False,
        )
        return _with_policy(page)


def _root(request: Request) -> str:
    """Behind a proxy that serves the API under a prefix, the pages' links carry it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    html = bytes(page.body).decode()
    scripts = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'"
        for code in INLINE_SCRIPT.findall(html)
    )
    page.headers["Content-Security-Policy"] = POLICY.format(scripts=scripts).replace("  ", " ")
    return page
