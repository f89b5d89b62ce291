"""The OpenAPI document is true. Whatever a client sends that the document allows (and much
that it does not), the server answers without a server error, with a status the document
lists, in the content type and the schema it gives; a request the document refuses is
refused, and one it allows is never refused as malformed. Schemathesis generates the requests
from the document, with a key of a role each operation admits, against the real app on a small
real gallery."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
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
APP: dict[str, Any] = {}  # the app under test, for the requests written by hand


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
            # No job worker: a generated request may queue an ingest of `/`.
            app = create_app(engine=engine, run_jobs=False)
            APP["app"] = app
            yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


# Every response, valid request or not.
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# A request the document allows may still be refused for what no schema can say (a source that
# is not registered, a file that is not a photo, a purpose not configured): with 404 or 422 and
# that reason's code. What it must never get is a refusal as malformed: these codes.
MALFORMED = {"bad_request", "invalid_request", "unknown_field", "purpose_required"}


class RefusedAsMalformed(AssertionError):
    """schemathesis's positive_data_acceptance, minus the refusals no schema can express."""


def valid_data_is_not_refused_as_malformed(response: Any) -> None:
    if response.status_code not in {400, 422}:
        return
    code = response.json().get("code")
    if code in MALFORMED:
        raise RefusedAsMalformed(f"a request the document allows, refused: {response.text}")


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str], examples: int) -> Any:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        if mode is GenerationMode.POSITIVE:
            valid_data_is_not_refused_as_malformed(response)
            case.validate_response(response, checks=CONFORMANCE)
        else:
            case.validate_response(response, checks=[*CONFORMANCE, negative_data_rejection])

    return run


def test_the_api_answers_as_its_document_says(api_schema: Any) -> None:
    """Valid and invalid requests for every operation (half a dozen of each), with a key of a
    role the operation admits. (Schemathesis's lazy pytest fixture does not run under pytest
    9, so the operations are walked here, each with its own Hypothesis test.)"""
    failures: list[str] = []
    operations = 0
    for result in api_schema.include(
        path_regex=r"^/(v1/|healthz|readyz|metrics)"
    ).get_all_operations():
        operation = result.ok()
        operations += 1
        roles = operation.definition.raw.get("x-roles") or []
        headers = {"X-API-Key": KEYS[roles[0]]} if roles else {}
        takes_input = bool(operation.definition.raw.get("parameters")) or bool(
            operation.definition.raw.get("requestBody")
        )
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if takes_input else [])
        for mode in modes:
            try:
                _fuzz(operation, mode, headers, examples=6)()
            except BaseException as exc:  # collect them all: one report names every failure
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 45
    assert failures == [], "\n\n".join(failures)


def test_a_method_a_path_does_not_take_is_refused_with_the_methods_it_does(
    api_schema: Any,
) -> None:
    document = api_schema.raw_schema
    client = TestClient(APP["app"])
    headers = {"X-API-Key": KEYS["admin"]}
    checked = 0
    for path, item in document["paths"].items():
        if not path.startswith(("/v1/", "/healthz", "/readyz", "/metrics")):
            continue
        documented = {m.upper() for m in item if m in {"get", "post", "put", "patch", "delete"}}
        other = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in documented)
        url = path.replace("{", "").replace("}", "")  # any value: the method is refused first
        response = client.request(other, url, headers=headers)
        assert response.status_code == 405, (other, path, response.text)
        allowed = {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"}
        assert allowed == documented, (path, response.headers["allow"])
        checked += 1
    assert checked >= 35
