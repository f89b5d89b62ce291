"""Who is signed in, and what their role admits.

The session cookie holds the API key itself (HttpOnly, SameSite=Strict, Secure over HTTPS), and
every request authenticates it again with `engine.keys.authenticate`: a revoked or expired key
is signed out at its very next request, with no session table to fall out of step. Only a hash
of the key is stored on the server; the cookie never reaches page scripts (HttpOnly) nor another
site's requests (SameSite=Strict), which is also what makes the operator forms safe from
cross-site request forgery. A check of the Origin header on every POST backs that up for
browsers that ignore SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response

from vultus.engine.apikeys import ROLES, Principal
from vultus.errors import AuthError

if TYPE_CHECKING:
    from vultus.engine import Engine

SESSION_COOKIE = "vultus_session"
# A working day; the key's own expiry and revocation are checked on every request anyway.
SESSION_SECONDS = 12 * 3600
FACE_TOKEN_SECONDS = 3600


class LoginRequired(Exception):
    """No session, or one whose key no longer authenticates (`reason`: the error code)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.reason = reason


class Forbidden(Exception):
    def __init__(self, principal: Principal | None, needed: frozenset[str], what: str) -> None:
        super().__init__(what)
        self.principal = principal
        self.needed = needed
        self.what = what


def host_state(request: Request) -> object:
    """The hosting application's state: the UI is a sub-application mounted into the API app,
    whose state holds the engine (`state.engine`) and the job queue (`state.jobs`)."""
    return request.app.state.host.state


def get_engine(request: Request) -> Engine:
    engine: Engine = host_state(request).engine  # type: ignore[attr-defined]
    return engine


def set_session(request: Request, response: Response, key: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        key,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def check_origin(request: Request) -> None:
    """Refuse a state-changing request sent from another site. Browsers send Origin with
    every POST; where it is missing (old browsers, tests) SameSite=Strict still holds."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin.rstrip("/") != expected:
            raise Forbidden(None, frozenset(), "a form sent from another site")
    elif origin == "null":
        raise Forbidden(None, frozenset(), "a form sent from an opaque origin")


def current(request: Request) -> Principal:
    """The signed-in principal, authenticated afresh; LoginRequired otherwise."""
    key = request.cookies.get(SESSION_COOKIE)
    if not key:
        raise LoginRequired()
    engine = get_engine(request)
    try:
        principal = engine.keys.authenticate(key)
    except AuthError as exc:
        raise LoginRequired(exc.code) from None
    request.state.principal = principal
    return principal


class Role:
    """`Depends(Role("dpo", "auditor"))`: admit a signed-in key of one of these roles."""

    def __init__(self, *roles: str) -> None:
        unknown = set(roles) - set(ROLES)
        if not roles or unknown:
            raise ValueError(f"roles must be some of {', '.join(ROLES)}; got {roles}")
        self.roles = frozenset(roles)

    def __call__(self, request: Request) -> Principal:
        if request.method not in {"GET", "HEAD"}:
            check_origin(request)
        principal = current(request)
        acting = principal.admitted(self.roles)
        if acting is None:
            raise Forbidden(principal, self.roles, request.url.path)
        request.state.principal = acting
        return acting


def check_search_cap(engine: Engine, principal: Principal) -> None:
    """The key's daily search cap, the same check the API makes (`KeyStore.check_search_cap`)."""
    engine.keys.check_search_cap(principal)


# -- face tokens: an investigator sees the faces their own searches returned, no others ---------
def face_token(secret: bytes, face_id: int, principal: Principal, search_id: int) -> str:
    """A signed link to one face of one search's results: the view is audited with it."""
    expires = int(time.time()) + FACE_TOKEN_SECONDS
    sig = _sign(secret, face_id, principal.key_id, expires, search_id)
    return f"{expires}.{search_id}.{sig}"


def face_token_search(
    secret: bytes, token: str | None, face_id: int, principal: Principal
) -> int | None:
    """The search a valid token names; None for a missing, expired or forged one."""
    parts = (token or "").split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    expires, search_id, sig = int(parts[0]), int(parts[1]), parts[2]
    if expires < time.time():
        return None
    good = _sign(secret, face_id, principal.key_id, expires, search_id)
    return search_id if hmac.compare_digest(sig, good) else None


def _sign(secret: bytes, face_id: int, key_id: int, expires: int, search_id: int) -> str:
    message = f"{face_id}.{key_id}.{expires}.{search_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


class SlidingWindow:
    """At most `limit` events per `seconds` for each client (the portal's abuse guard)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._hits: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        stamp = time.monotonic()
        with self._lock:
            hits = [t for t in self._hits.get(client, []) if t > stamp - self.seconds]
            if len(hits) >= self.limit:
                self._hits[client] = hits
                return False
            hits.append(stamp)
            self._hits[client] = hits
            if len(self._hits) > 10_000:  # forget idle clients; memory stays bounded
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > stamp - 60}
            return True
