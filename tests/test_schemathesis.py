"""Whatever a client sends that the OpenAPI document allows (and much that it does not), the
server answers without a server error. Schemathesis generates the requests from the document,
with a key of a role each operation admits, against the real app on a small real gallery."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from conftest import add_test_source, name_controller
from vultus.api import create_app
from vultus.engine import Engine
from vultus.engine.apikeys import ROLES

# Bounded: about 10 generated requests per operation, no slow phases.
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20261122,
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": 10, "database": "none"},
    }
)
KEYS: dict[str, str] = {}


def without_lifespan(app: Any) -> Any:
    """The app with its start-up left out, so the job worker never runs: a generated request
    may queue an ingest of `/`, and it must stay queued."""

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, gallery_split: tuple[list[Path], list]
) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("schemathesis")
    photos = root / "photos"  # copies: nothing generated can touch the shared photos
    photos.mkdir()
    for photo in gallery_split[0][:3]:
        shutil.copy(photo, photos / photo.name)
    with pytest.MonkeyPatch.context() as mp:
        # A key file of its own: nothing generated may change the one other tests share.
        mp.setenv("VULTUS_KEY_FILE", str(root / "keys" / "master.key"))
        data_dir = name_controller(root / "data")
        with Engine.open(data_dir, workers=1, requests_per_minute=10**6) as engine:
            add_test_source(engine)
            engine.add([photos], source="test")
            # Long names: a generated DELETE /v1/keys/{name} must not revoke the test's own keys.
            KEYS.update(
                {role: engine.keys.create(f"schemathesis-{role}-key", role)[1] for role in ROLES}
            )
            app = without_lifespan(create_app(engine=engine))
            yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


def _fuzz(cases: Any, headers: dict[str, str]) -> Any:
    @settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    return run


def test_no_generated_request_makes_the_server_fail(api_schema: Any) -> None:
    """Valid and invalid requests for every operation (a dozen each), with a key of a role the
    operation admits. (Schemathesis's lazy pytest fixture does not run under pytest 9, so the
    operations are walked here, each with its own Hypothesis test.)"""
    failures: list[str] = []
    operations = 0
    for result in api_schema.include(
        path_regex=r"^/(v1/|healthz|readyz|metrics)"
    ).get_all_operations():
        operation = result.ok()
        operations += 1
        roles = operation.definition.raw.get("x-roles") or []
        headers = {"X-API-Key": KEYS[roles[0]]} if roles else {}
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        run = _fuzz(cases, headers)
        try:
            run()
        except Exception as exc:  # collect them all: one report names every failing operation
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 45
    assert failures == [], "\n\n".join(failures)
