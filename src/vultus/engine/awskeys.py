"""AWS-style credentials of API keys, for clients that sign their requests (boto3, SigV4).

A SigV4 signature is an HMAC keyed by the secret itself, so unlike a Vultus key's secret (only
its hash is stored) this one must be held: it is sealed under the master key, bound to its
access key id, and re-sealed by a key rotation. The credential speaks for its API key: the
key's roles, bindings, expiry and revocation apply to it unchanged.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from vultus import audit as actions
from vultus.audit import AuditLog
from vultus.catalog import Catalog
from vultus.catalog.models import ApiKey, AwsCredential
from vultus.crypto import KeyRing
from vultus.errors import AuthError, ConfigError, NotFoundError

ACCESS_KEY_PREFIX = "AKIA"  # what AWS access key ids start with; tools expect the shape


def secret_aad(access_key_id: str) -> bytes:
    """Binds a sealed secret to its row: a secret copied onto another credential opens no more."""
    return b"aws_credentials.secret|" + access_key_id.encode()


def row_aad(row: Any) -> bytes:
    """`secret_aad` of a table row, for `reencrypt_table` in a key rotation."""
    return secret_aad(row._mapping["access_key_id"])


class AwsCredentials:
    def __init__(self, catalog: Catalog, audit: AuditLog, keyring: Callable[[], KeyRing]) -> None:
        self.catalog = catalog
        self.audit = audit
        # A function: a key rotation swaps the engine's ring, and sealing must follow it.
        self.keyring = keyring

    def create(self, key_name: str, *, actor: str | None = None) -> tuple[str, str]:
        """Give an API key an AWS-style credential: (access key id, secret), the secret shown
        once (and kept sealed, see the module's docstring)."""
        access_key_id = ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()
        secret = secrets.token_urlsafe(30)  # 40 characters, as AWS's secrets are
        sealed = self.keyring().encrypt(secret.encode(), secret_aad(access_key_id))
        with self.catalog.session() as s, s.begin():
            key = s.scalar(select(ApiKey).where(ApiKey.name == key_name))
            if key is None:
                raise NotFoundError(f"no API key named {key_name!r}")
            if s.get(AwsCredential, key.id) is not None:
                raise ConfigError(
                    f"key {key_name!r} already has an AWS credential", code="key_exists"
                )
            s.add(AwsCredential(key_id=key.id, access_key_id=access_key_id, secret=sealed))
            self.audit.append(
                actions.KEY_CHANGE,
                actor=actor,
                details={"api_key": key_name, "event": "aws_credential_created"},
                session=s,
            )
        return access_key_id, secret

    def access_key_ids(self) -> dict[str, str]:
        """API key name -> the access key id of its AWS credential, for the keys that have one
        (the id is no secret: every signed request carries it)."""
        with self.catalog.session() as s:
            rows = s.execute(
                select(ApiKey.name, AwsCredential.access_key_id).join(
                    ApiKey, ApiKey.id == AwsCredential.key_id
                )
            ).all()
        return {name: access for name, access in rows}

    def secret_of(self, access_key_id: str) -> tuple[str, str]:
        """The API key's name and the secret for `access_key_id`; AuthError when unknown."""
        with self.catalog.session() as s:
            row = s.execute(
                select(ApiKey.name, AwsCredential.secret)
                .join(ApiKey, ApiKey.id == AwsCredential.key_id)
                .where(AwsCredential.access_key_id == access_key_id)
            ).one_or_none()
        if row is None:
            raise AuthError(f"unknown access key id {access_key_id!r}", code="key_invalid")
        name, sealed = row
        return name, self.keyring().decrypt(sealed, secret_aad(access_key_id)).decode()
