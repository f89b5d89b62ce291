"""Keys of several roles, bound to a purpose, a case and a source: what a CompreFace or
Rekognition client needs, since it adds and searches with one key and cannot state a purpose.

Given an admin who makes such a key, when its holder adds a photo and searches with it, then
both are admitted, the search runs under the bound purpose and case, the photo lands in the
bound source, and the audit log names the key and the role each call was made in. Keys that
would break the separation of duties are refused, and one-role keys work as before."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import add_test_source, name_controller
from vultus import audit as actions
from vultus.api import create_app
from vultus.cli import app as cli_app
from vultus.engine import Engine
from vultus.errors import ConfigError, NotFoundError, PurposeError

PURPOSE = "archive research"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(
        name_controller(tmp_path / "data"), workers=1, requests_per_minute=100_000
    ) as engine:
        add_test_source(engine)
        yield engine


@pytest.fixture
def client(engine: Engine) -> TestClient:
    return TestClient(create_app(engine=engine))


@pytest.mark.parametrize(
    "roles",
    [
        ["admin", "investigator"],
        ["admin", "operator"],
        ["dpo", "investigator"],
        ["dpo", "operator"],
        ["auditor", "investigator"],
        ["auditor", "dpo"],
    ],
)
def test_roles_that_oversee_the_others_are_held_alone(engine: Engine, roles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        engine.keys.create("both", roles)
    assert err.value.code == "role_invalid"
    assert "separation of duties" in err.value.message
    assert engine.keys.list() == []


def test_bindings_are_checked_when_the_key_is_made(engine: Engine) -> None:
    both = ["operator", "investigator"]
    with pytest.raises(PurposeError):
        engine.keys.create("k", both, purpose="curiosity")
    with pytest.raises(NotFoundError, match="no source named 'nowhere'"):
        engine.keys.create("k", both, purpose=PURPOSE, source="nowhere")
    # A source binds what is added: only on a key that adds. (A purpose may bind any key: a
    # compatibility client's key must have one, whatever it does.)
    with pytest.raises(ConfigError, match="operator"):
        engine.keys.create("k", "investigator", source="test")
    with pytest.raises(ConfigError, match="unknown role 'root'"):
        engine.keys.create("k", ["operator", "root"])
    assert engine.keys.list() == []

    key, _ = engine.keys.create("k", both, purpose=PURPOSE, case_ref="C-7", source="test")
    assert (key.role, key.roles) == ("operator+investigator", ("operator", "investigator"))
    assert (key.purpose, key.case_ref, key.source) == (PURPOSE, "C-7", "test")
    created = engine.audit.entries(action=actions.KEY_CHANGE)[-1]
    assert created.details["role"] == "operator+investigator"
    assert (created.purpose, created.case_ref, created.details["source"]) == (
        PURPOSE,
        "C-7",
        "test",
    )


def test_a_one_role_key_works_and_is_recorded_as_before(engine: Engine, client: TestClient) -> None:
    _, secret = engine.keys.create("ops", "operator")
    principal = engine.keys.authenticate(secret)
    assert (principal.roles, principal.role, principal.actor) == (
        ("operator",),
        "operator",
        "key:ops",
    )
    assert client.get("/v1/sources", headers={"X-API-Key": secret}).status_code == 200
    refused = client.post(
        "/v1/search/subject",
        json={"subject": "x", "purpose": PURPOSE},
        headers={"X-API-Key": secret},
    )
    assert refused.status_code == 403
    assert "has role 'operator'; this needs 'investigator'" in refused.json()["message"]


def test_a_key_of_two_roles_adds_and_searches_under_its_bindings(
    engine: Engine, client: TestClient, dev_photos: list[tuple[Path, str]]
) -> None:
    _, secret = engine.keys.create(
        "compreface-app",
        ["operator", "investigator"],
        purpose=PURPOSE,
        case_ref="CASE-17",
        source="test",
        searches_per_day=1,
    )
    headers = {"X-API-Key": secret}
    (first, who), (second, _) = (
        dev_photos[0],
        next(p for p in dev_photos[1:] if p[1] == dev_photos[0][1]),
    )

    # Adding: the bound source stands; another source is refused.
    upload = client.post(
        "/v1/images",
        data={"source": "test"},
        files={"file": (first.name, first.read_bytes(), "image/jpeg")},
        headers=headers,
    )
    assert upload.status_code == 201, upload.text
    add_test_source(engine, "other")
    elsewhere = client.post(
        "/v1/images",
        data={"source": "other"},
        files={"file": (second.name, second.read_bytes(), "image/jpeg")},
        headers=headers,
    )
    assert elsewhere.status_code == 403
    assert elsewhere.json()["code"] == "source_bound"

    # Searching: stating another purpose is refused; the bound purpose and case stand.
    other = client.post(
        "/v1/search",
        data={"purpose": "legal claim"},
        files={"photo": (second.name, second.read_bytes(), "image/jpeg")},
        headers=headers,
    )
    assert other.status_code == 403
    assert other.json()["code"] == "purpose_bound"
    found = client.post(
        "/v1/search",
        data={"purpose": PURPOSE},
        files={"photo": (second.name, second.read_bytes(), "image/jpeg")},
        headers=headers,
    )
    assert found.status_code == 200, found.text
    assert found.json()["matches"], f"{who}'s second photo finds the first"
    # The daily cap counts the key's searches, whatever role it holds beside.
    capped = client.post(
        "/v1/search",
        data={"purpose": PURPOSE},
        files={"photo": (second.name, second.read_bytes(), "image/jpeg")},
        headers=headers,
    )
    assert capped.status_code == 429, capped.text

    # The audit log: who, in which role, for which purpose and case.
    ingest = engine.audit.entries(action=actions.INGEST)[-1]
    assert ingest.actor == "key:compreface-app as operator"
    search = engine.audit.entries(action=actions.SEARCH)[-1]
    assert search.actor == "key:compreface-app as investigator"
    assert (search.purpose, search.case_ref) == (PURPOSE, "CASE-17")


def test_a_key_of_two_roles_is_refused_what_neither_role_may_do(
    engine: Engine, client: TestClient
) -> None:
    _, secret = engine.keys.create("app", ["operator", "investigator"], purpose=PURPOSE)
    for method, path in (("GET", "/v1/audit"), ("GET", "/v1/keys"), ("GET", "/v1/rights/requests")):
        answer = client.request(method, path, headers={"X-API-Key": secret})
        assert answer.status_code == 403, path
        assert "has role 'operator' and 'investigator'" in answer.json()["message"]


def test_the_api_and_the_command_line_make_the_same_key(engine: Engine, client: TestClient) -> None:
    _, admin = engine.keys.create("root", "admin")
    made = client.post(
        "/v1/keys",
        json={
            "name": "api-made",
            "roles": ["investigator", "operator"],
            "purpose": PURPOSE,
            "case_ref": "C-1",
            "source": "test",
        },
        headers={"X-API-Key": admin},
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert key["roles"] == ["operator", "investigator"]
    assert (key["role"], key["purpose"], key["case_ref"], key["source"]) == (
        "operator+investigator",
        PURPOSE,
        "C-1",
        "test",
    )
    refused = client.post(
        "/v1/keys",
        json={"name": "bad", "roles": ["admin", "investigator"]},
        headers={"X-API-Key": admin},
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "role_invalid"
    neither = client.post("/v1/keys", json={"name": "bad"}, headers={"X-API-Key": admin})
    assert neither.status_code == 422
    # The old shape, one `role`, still makes a one-role key.
    old = client.post(
        "/v1/keys", json={"name": "old", "role": "auditor"}, headers={"X-API-Key": admin}
    )
    assert old.status_code == 201
    assert old.json()["key"]["roles"] == ["auditor"]


def test_keys_create_on_the_command_line_binds_roles_purpose_case_and_source(
    engine: Engine,
) -> None:
    data_dir = engine.settings.data_dir
    engine.close()
    args = ["--data-dir", str(data_dir), "keys", "create", "--name", "cli-app"]
    args += ["--role", "operator", "--role", "investigator", "--purpose", PURPOSE]
    args += ["--case", "REF-9", "--source", "test"]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert "operator+investigator" in result.output and "bound to purpose" in result.output
    refused = CliRunner().invoke(
        cli_app,
        [
            "--data-dir",
            str(data_dir),
            "keys",
            "create",
            "--name",
            "x",
            "--role",
            "admin",
            "--role",
            "investigator",
        ],
    )
    assert refused.exit_code != 0
    assert "separation of duties" in refused.output
    with Engine.open(data_dir, workers=1) as reopened:
        (key,) = reopened.keys.list()
        assert (key.roles, key.purpose, key.case_ref, key.source) == (
            ("operator", "investigator"),
            PURPOSE,
            "REF-9",
            "test",
        )


def test_the_web_key_form_makes_a_bound_key_of_two_roles_whose_holder_sees_both_menus(
    engine: Engine, client: TestClient
) -> None:
    _, admin = engine.keys.create("root", "admin")
    client.post("/ui/login", data={"api_key": admin}, follow_redirects=False)
    form = client.get("/ui/keys")
    assert 'name="role" value="investigator"' in form.text and 'id="k-source"' in form.text
    made = client.post(
        "/ui/keys",
        data={
            "name": "web-app",
            "role": ["operator", "investigator"],
            "purpose": PURPOSE,
            "case_ref": "",
            "source": "test",
        },
    )
    assert made.status_code == 200
    secret = re.search(r'value="(vk_[0-9a-f]{8}_[^"]+)"', made.text)
    assert secret is not None
    assert "operator+investigator" in made.text and f"purpose {PURPOSE}" in made.text
    refused = client.post(
        "/ui/keys", data={"name": "bad", "role": ["dpo", "investigator"]}, follow_redirects=True
    )
    assert "separation of duties" in refused.text
    assert {k.name for k in engine.keys.list()} == {"root", "web-app"}

    client.post("/ui/logout")
    client.cookies.clear()
    home = client.post("/ui/login", data={"api_key": secret.group(1)}, follow_redirects=True)
    assert 'href="/ui/library"' in home.text and 'href="/ui/search"' in home.text
    assert client.get("/ui/search").status_code == 200
    assert client.get("/ui/audit", follow_redirects=False).status_code == 403
    # Bound to the source "test": an upload to another is refused, and nothing is added.
    elsewhere = client.post(
        "/ui/library/upload",
        data={"source": "other"},
        files={"photos": ("a.jpg", b"not read", "image/jpeg")},
        follow_redirects=True,
    )
    assert "bound to the source" in elsewhere.text
    assert engine.list_images() == []


def test_a_key_made_before_keys_had_bindings_works_after_the_upgrade(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from vultus.catalog.connect import MIGRATIONS

    data_dir = name_controller(tmp_path / "data")
    with Engine.open(data_dir, workers=1) as engine:
        _, secret = engine.keys.create("old", "investigator", searches_per_day=5)
        url = engine.settings.catalog_url
    # Back to the catalog as it was before (one role a key, no bindings), then open it.
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with create_engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    with Engine.open(data_dir, workers=1) as engine:
        principal = engine.keys.authenticate(secret)
        assert (principal.roles, principal.actor, principal.searches_per_day) == (
            ("investigator",),
            "key:old",
            5,
        )
        assert (principal.purpose, principal.case_ref, principal.source) == (None, None, None)


def test_every_way_of_making_a_key_can_give_it_an_aws_credential(
    engine: Engine, client: TestClient
) -> None:
    """`aws: true` on the API, the form's checkbox, `--aws` on the command line: the access key
    id and secret are answered once, the server holds the secret to check signatures with, and
    every list of keys says which keys have a credential."""
    _, admin = engine.keys.create("root", "admin")
    bound = {"roles": ["operator", "investigator"], "purpose": PURPOSE, "source": "test"}
    made = client.post(
        "/v1/keys", json={"name": "api-app", **bound, "aws": True}, headers={"X-API-Key": admin}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    access, secret = body["aws_access_key_id"], body["aws_secret_access_key"]
    assert re.fullmatch(r"AKIA[A-Z2-7]{16}", access) and len(secret) == 40
    assert body["key"]["aws_access_key_id"] == access
    assert engine.aws_credentials.secret_of(access) == ("api-app", secret)
    plain = client.post(
        "/v1/keys", json={"name": "plain", "role": "auditor"}, headers={"X-API-Key": admin}
    ).json()
    assert plain["aws_access_key_id"] is None and plain["aws_secret_access_key"] is None
    listed = client.get("/v1/keys", headers={"X-API-Key": admin}).json()
    assert {k["name"]: k["aws_access_key_id"] for k in listed} == {
        "root": None,
        "api-app": access,
        "plain": None,
    }

    client.post("/ui/login", data={"api_key": admin}, follow_redirects=False)
    assert 'name="aws"' in client.get("/ui/keys").text
    form = client.post(
        "/ui/keys",
        data={"name": "web-app", "role": bound["roles"], "source": "test", "aws": "true"},
    )
    assert form.status_code == 200
    shown = dict(
        re.findall(r"^(AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY)=([\w-]+)", form.text, re.M)
    )
    web_access = shown["AWS_ACCESS_KEY_ID"]
    assert engine.aws_credentials.secret_of(web_access) == (
        "web-app",
        shown["AWS_SECRET_ACCESS_KEY"],
    )
    again = client.get("/ui/keys").text  # the secret once; the access key id in the table
    assert shown["AWS_SECRET_ACCESS_KEY"] not in again and web_access in again
    without = client.post("/ui/keys", data={"name": "web-plain", "role": "auditor"})
    assert "AWS_ACCESS_KEY_ID" not in without.text

    data_dir = str(engine.settings.data_dir)
    engine.close()
    runner = CliRunner()
    made_cli = runner.invoke(
        cli_app,
        ["--data-dir", data_dir, "keys", "create", "--name", "cli-app", "--role", "operator",
         "--source", "test", "--aws"],
    )  # fmt: skip
    assert made_cli.exit_code == 0, made_cli.output
    cli_access = re.search(r"^AWS_ACCESS_KEY_ID=(\S+)$", made_cli.output, re.M)
    assert cli_access is not None
    listing = runner.invoke(
        cli_app, ["--data-dir", data_dir, "keys", "list"], env={"COLUMNS": "250"}
    )
    assert listing.exit_code == 0, listing.output
    rows = {line.split("│")[1].strip(): line for line in listing.output.splitlines() if "│" in line}
    assert access in rows["api-app"] and web_access in rows["web-app"]
    assert cli_access.group(1) in rows["cli-app"] and "AKIA" not in rows["plain"]
