"""What endpoints depend on: the engine, the job queue, and who is calling with which role.

Every protected endpoint declares the roles it admits with `Depends(require(...))`. The
dependency authenticates the key (header `X-API-Key` or `Authorization: Bearer`), applies the
key's rate limit, refuses a key none of whose roles the endpoint admits, and returns the
`Principal`, acting in the role that admitted it, whose `actor` the audit log records. The
admitted roles stay readable on the dependency (`Require.roles`), so the OpenAPI document and
the tests can list them without a second table to keep in step.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile

from vultus.api.errors import UnknownFieldError, UploadTooLargeError
from vultus.api.schemas.common import MAX_ID
from vultus.engine import Engine
from vultus.engine.apikeys import ROLES, Principal
from vultus.engine.jobs import JobQueue
from vultus.errors import ForbiddenError, RateLimitError

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (`vultus keys create`)."
)
bearer = HTTPBearer(auto_error=False, description="The same API key, as a bearer token.")


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue = request.app.state.jobs
    return jobs


EngineDep = Annotated[Engine, Depends(get_engine)]
# Ids in paths and queries: SQLite integers, so at most 64 bits.
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]


class RateLimiter:
    """A sliding window per key: at most `per_minute` requests in any 60 seconds. In memory:
    a restart forgets it, and each server process counts for itself."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[int, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, principal: Principal, at: float | None = None) -> None:
        stamp = time.monotonic() if at is None else at
        with self._lock:
            window = self._hits.setdefault(principal.key_id, deque())
            while window and window[0] <= stamp - 60.0:
                window.popleft()
            if len(window) >= self.per_minute:
                wait = int(window[0] + 60.0 - stamp) + 1
                raise RateLimitError(
                    f"key {principal.name!r} made {self.per_minute} requests in the last minute, "
                    f"its limit; retry in {wait} s"
                )
            window.append(stamp)


class Require:
    """The dependency that admits a request: a valid key, within its rate limit, of one of
    `roles`. With `counts_search`, also within the key's daily search cap."""

    def __init__(self, *roles: str, counts_search: bool = False) -> None:
        unknown = set(roles) - set(ROLES)
        if not roles or unknown:
            raise ValueError(f"roles must be some of {', '.join(ROLES)}; got {roles}")
        self.roles: frozenset[str] = frozenset(roles)
        self.counts_search = counts_search

    def __repr__(self) -> str:
        return f"require({', '.join(sorted(self.roles))})"

    def __call__(
        self,
        request: Request,
        api_key: Annotated[str | None, Security(api_key_header)] = None,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
    ) -> Principal:
        engine = get_engine(request)
        secret = api_key or (credentials.credentials if credentials else None)
        principal = engine.keys.authenticate(secret)
        request.state.principal = principal
        request.app.state.limiter.hit(principal)
        acting = principal.admitted(self.roles)
        if acting is None:
            held = " and ".join(repr(r) for r in principal.roles)
            raise ForbiddenError(
                f"key {principal.name!r} has role {held}; this needs "
                + " or ".join(repr(r) for r in sorted(self.roles))
            )
        principal = acting
        request.state.principal = principal
        if self.counts_search:
            engine.keys.check_search_cap(principal)
        # A form field the endpoint does not take, found before the key was checked.
        refused: UnknownFieldError | None = getattr(request.state, "refused", None)
        if refused is not None:
            raise refused
        return principal


def require(*roles: str, counts_search: bool = False) -> Require:
    """`Depends(require("operator"))`: the roles an endpoint admits."""
    return Require(*roles, counts_search=counts_search)


# Roles that see a photo or a face only from their own search's results.
SEARCH_BOUND = frozenset({"investigator"})
SearchQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ID,
        description="The search (its `search_id`) whose results hold this photo or face: "
        "required of an investigator, who sees only their own results; the view is audited "
        "with that search and its purpose.",
    ),
]


def via_search(principal: Principal, search: int | None) -> int | None:
    """The search a view must come from: an investigator's names one, others' need none."""
    if principal.role not in SEARCH_BOUND:
        return None
    if search is None:
        raise ForbiddenError(
            f"key {principal.name!r} has role {principal.role!r}: it sees a photo or face only "
            "from the results of its own search; name that search (`search=<search_id>`)",
            code="search_required",
        )
    return search


def roles_of(route: APIRoute) -> frozenset[str] | None:
    """The roles a route admits, read from its `Require` dependency; None for a public one."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Require):
            return dep.call.roles
        stack.extend(dep.dependencies)
    return None


def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refused past `limit` (read one byte more to know)."""
    upload.file.seek(0)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLargeError(
            f"{upload.filename or 'the upload'} is over the limit of {limit:,} bytes "
            "(setting max_upload_bytes)"
        )
    return data


def check_known(values: Iterable[str], known: Collection[str], request: Request) -> None:
    """Refuse fields the endpoint does not know, naming the nearest known one."""
    unknown = [name for name in values if name not in known]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hints.append(f"`{name}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
    raise UnknownFieldError(
        f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(hints)}: "
        f"{request.method} {request.url.path} takes {', '.join(known)}"
    )
