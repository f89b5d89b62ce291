"""Every protected route refuses who it must: no key, a wrong key, an expired or revoked key,
and a key of every role the route does not admit. The table of admitted roles is read from the
routes' own dependency declarations, so a new route cannot slip through unlisted."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import update

from conftest import add_test_source
from vultus import audit as actions
from vultus.api import create_app
from vultus.api.deps import Require
from vultus.catalog.models import ApiKey
from vultus.clock import now
from vultus.engine import Engine
from vultus.engine.apikeys import ROLES

# Routes anyone may call: probes for the orchestrator and the API's own documentation.
# (`/metrics` is not one: it takes an admin or auditor key.)
PUBLIC = {
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/docs",
    "/redoc",
}


@dataclasses.dataclass
class Guarded:
    method: str
    path: str
    roles: frozenset[str]

    @property
    def url(self) -> str:
        # Any value will do: the key is checked before the path is.
        return re.sub(r"\{[^}]+\}", "1", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def declared_roles(route: APIRoute) -> frozenset[str] | None:
    """The roles of the route's `Require` dependency, however deep it is declared."""
    stack = list(route.dependant.dependencies)
    found: list[frozenset[str]] = []
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Require):
            found.append(dep.call.roles)
        stack.extend(dep.dependencies)
    assert len(found) <= 1, f"{route.path} declares roles twice: {found}"
    return found[0] if found else None


def guarded_routes(app: FastAPI) -> list[Guarded]:
    out: list[Guarded] = []
    undeclared: list[str] = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        path = ctx.path_format or ctx.path or ""
        if not isinstance(route, APIRoute):
            continue
        roles = declared_roles(route)
        if roles is None:
            if path.startswith("/v1/") or path not in PUBLIC:
                undeclared.append(f"{sorted(ctx.methods or [])} {path}")
            continue
        for method in sorted(ctx.methods or []):
            out.append(Guarded(method, path, roles))
    assert not undeclared, f"routes that declare no role: {undeclared}"
    return out


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "data", workers=1, requests_per_minute=100_000) as engine:
        add_test_source(engine)
        yield engine


@pytest.fixture
def app(engine: Engine) -> FastAPI:
    return create_app(engine=engine)


@pytest.fixture
def keys(engine: Engine) -> dict[str, str]:
    """A key of every role."""
    return {role: engine.keys.create(f"{role}-key", role)[1] for role in ROLES}


def test_every_v1_route_declares_roles_and_there_are_many(app: FastAPI) -> None:
    routes = guarded_routes(app)
    paths = {r.path for r in routes}
    assert len(routes) >= 40
    assert all(p.startswith("/v1/") for p in paths - {"/metrics"})
    # Separate duties, as documented: spot-check the table read from the declarations.
    table = {str(r): r.roles for r in routes}
    assert table["POST /v1/search"] == {"investigator"}
    assert table["POST /v1/keys"] == {"admin"}
    assert table["GET /v1/audit"] == {"dpo", "auditor"}
    assert table["POST /v1/rights/requests/{ref}/erasure"] == {"dpo"}
    assert table["POST /v1/images"] == {"operator"}
    # Naming people is the operator's work, reviewing proposals included.
    for route in (
        "DELETE /v1/subjects/{name}",
        "GET /v1/people/proposals",
        "POST /v1/people/accept",
        "POST /v1/people/apart",
        "POST /v1/people/hide",
        "POST /v1/people/unhide",
        "GET /v1/people/unnamed",
        "GET /v1/people/{name}/suggestions",
        "POST /v1/people/{name}/not",
    ):
        assert table[route] == {"operator"}, route
    assert table["GET /metrics"] == {"admin", "auditor"}


def test_every_route_refuses_a_missing_or_wrong_key_and_every_role_it_does_not_admit(
    app: FastAPI, keys: dict[str, str]
) -> None:
    client = TestClient(app)
    wrong = "vk_deadbeef_" + "x" * 32
    failures: list[str] = []
    checked = 0
    for route in guarded_routes(app):
        attempts: list[tuple[str, dict[str, str], int, str | None]] = [
            ("no key", {}, 401, "unauthenticated"),
            ("wrong key", {"X-API-Key": wrong}, 401, "key_invalid"),
            ("wrong bearer", {"Authorization": f"Bearer {wrong}"}, 401, "key_invalid"),
            ("not a key", {"X-API-Key": "hunter2"}, 401, "key_invalid"),
        ]
        for role in sorted(set(ROLES) - route.roles):
            attempts.append((role, {"X-API-Key": keys[role]}, 403, "forbidden"))
        for who, headers, status, code in attempts:
            response = client.request(route.method, route.url, headers=headers)
            body = response.json()
            checked += 1
            if response.status_code != status or body.get("code") != code:
                failures.append(f"{route} as {who}: {response.status_code} {body}")
            elif set(body) != {"code", "message"}:
                failures.append(f"{route} as {who}: not the error model: {body}")
    assert failures == []
    assert checked > 200


def test_an_admitted_role_gets_past_the_door(app: FastAPI, keys: dict[str, str]) -> None:
    """The same key that a forbidden route refuses is let in where its role is admitted
    (and as a bearer token too): the 403s above are about roles, not broken keys."""
    client = TestClient(app)
    for role in ROLES:
        for route in guarded_routes(app):
            if role in route.roles and route.method == "GET" and "{" not in route.path:
                for headers in (
                    {"X-API-Key": keys[role]},
                    {"Authorization": f"Bearer {keys[role]}"},
                ):
                    response = client.get(route.url, headers=headers)
                    assert response.status_code not in {401, 403}, (role, str(route), response.text)


def test_an_expired_or_revoked_key_is_refused(
    app: FastAPI, engine: Engine, keys: dict[str, str]
) -> None:
    client = TestClient(app)
    headers = {"X-API-Key": keys["operator"]}
    assert client.get("/v1/sources", headers=headers).status_code == 200

    with engine.catalog.session() as s, s.begin():
        s.execute(
            update(ApiKey)
            .where(ApiKey.name == "operator-key")
            .values(expires_at=now() - timedelta(seconds=1))
        )
    response = client.get("/v1/sources", headers=headers)
    assert response.status_code == 401 and response.json()["code"] == "key_expired"

    auditor = {"X-API-Key": keys["auditor"]}
    assert client.get("/v1/audit", headers=auditor).status_code == 200
    admin = {"X-API-Key": keys["admin"]}
    assert client.delete("/v1/keys/auditor-key", headers=admin).json()["revoked_at"]
    response = client.get("/v1/audit", headers=auditor)
    assert response.status_code == 401 and response.json()["code"] == "key_revoked"


def test_a_key_over_its_rate_limit_is_refused_and_others_are_not(engine: Engine) -> None:
    settings = dataclasses.replace(engine.settings, requests_per_minute=3)
    client = TestClient(create_app(settings, engine=engine))
    busy = {"X-API-Key": engine.keys.create("busy", "operator")[1]}
    calm = {"X-API-Key": engine.keys.create("calm", "operator")[1]}
    assert [client.get("/v1/sources", headers=busy).status_code for _ in range(3)] == [200] * 3
    response = client.get("/v1/sources", headers=busy)
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert "3 requests" in response.json()["message"]
    assert client.get("/v1/sources", headers=calm).status_code == 200


def test_a_key_over_its_daily_search_cap_is_refused(app: FastAPI, engine: Engine) -> None:
    client = TestClient(app)
    key, secret = engine.keys.create("capped", "investigator", searches_per_day=2)
    headers = {"X-API-Key": secret}
    body = {"face_id": 1, "purpose": "archive research"}
    # Given one search already made today with this key (as the audit log records it) ...
    engine.audit.append(actions.SEARCH, actor="key:capped", purpose="archive research")
    # ... a second search is let in (this gallery is empty: no face 1) ...
    response = client.post("/v1/search/face", json=body, headers=headers)
    assert response.status_code == 404
    # ... and once the log holds two, the third is refused, while another key still searches.
    engine.audit.append(actions.SEARCH, actor="key:capped", purpose="archive research")
    response = client.post("/v1/search/face", json=body, headers=headers)
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert "2 searches" in response.json()["message"]
    other = {"X-API-Key": engine.keys.create("uncapped", "investigator")[1]}
    assert client.post("/v1/search/face", json=body, headers=other).status_code == 404
    assert key.searches_per_day == 2


def test_the_openapi_document_states_roles_and_errors_for_every_operation(app: FastAPI) -> None:
    doc = TestClient(app).get("/openapi.json").json()
    problems: list[str] = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            if not op.get("summary"):
                problems.append(f"{where}: no summary")
            for status, response in op["responses"].items():
                if status[0] in "45" and response["content"]["application/json"]["schema"] != {
                    "$ref": "#/components/schemas/Error"
                }:
                    problems.append(f"{where}: {status} is not the error model")
            if path.startswith("/v1/"):
                if not op.get("x-roles") or not op.get("security"):
                    problems.append(f"{where}: roles or security scheme not stated")
                if not {"401", "403", "429"} <= set(op["responses"]):
                    problems.append(f"{where}: 401/403/429 not documented")
    assert problems == []
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert set(doc["components"]["schemas"]["Error"]["properties"]) == {"code", "message"}


def test_a_verify_counts_against_the_daily_search_cap(app: FastAPI, engine: Engine) -> None:
    client = TestClient(app)
    _, secret = engine.keys.create("verifier", "investigator", searches_per_day=2)
    headers = {"X-API-Key": secret}
    photo = {"photo_a": ("a.jpg", b"not a photo"), "photo_b": ("b.jpg", b"not a photo")}
    form = {"purpose": "archive research"}
    # Given one search and one verify made today with this key, the cap of two is spent ...
    engine.audit.append(actions.SEARCH, actor="key:verifier", purpose="archive research")
    engine.audit.append(actions.VERIFY, actor="key:verifier", purpose="archive research")
    # ... so a search is refused, and so is a verify, before the photos are even read.
    search = client.post("/v1/search/face", json={"face_id": 1, **form}, headers=headers)
    assert search.status_code == 429 and "2 searches" in search.json()["message"]
    verify = client.post("/v1/verify", files=photo, data=form, headers=headers)
    assert verify.status_code == 429 and verify.json()["code"] == "rate_limited"


def test_metrics_take_an_admin_or_auditor_key(app: FastAPI, keys: dict[str, str]) -> None:
    client = TestClient(app)
    assert client.get("/metrics").status_code == 401
    for role in ("operator", "investigator", "dpo"):
        assert client.get("/metrics", headers={"X-API-Key": keys[role]}).status_code == 403
    for role in ("admin", "auditor"):
        answered = client.get("/metrics", headers={"X-API-Key": keys[role]})
        assert answered.status_code == 200 and "vultus_http_requests_total" in answered.text
