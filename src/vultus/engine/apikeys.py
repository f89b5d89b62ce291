"""API keys and roles. Only a hash of each secret is stored; keys expire and can be revoked.

Roles are separate duties, not a ladder: an admin manages keys and configuration but does not
search; an investigator searches but does not read the audit log. Each endpoint names the roles
it admits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from vultus import audit as actions
from vultus.audit import AuditLog
from vultus.catalog import Catalog
from vultus.catalog.models import ApiKey
from vultus.clock import now
from vultus.engine.roles import MAX_EXPIRES_DAYS, ROLES
from vultus.errors import AuthError, ConfigError, NotFoundError

# Who sees where photos lie on the server (a search result's `image_path`): those who manage
# the library. The others know a photo by its id, file name and external id, and see it through
# the API, which audits each view.
SEES_PATHS = frozenset({"operator"})
SECRET_PREFIX = "vk_"


def _hash(secret: str) -> str:
    # Secrets are 192 random bits: a plain SHA-256 is enough, no slow password hash needed.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: what the audit log records as the actor."""

    key_id: int
    name: str
    role: str
    searches_per_day: int | None

    @property
    def actor(self) -> str:
        return f"key:{self.name}"


class KeyStore:
    def __init__(self, catalog: Catalog, audit: AuditLog) -> None:
        self.catalog = catalog
        self.audit = audit

    def create(
        self,
        name: str,
        role: str,
        *,
        expires_days: int | None = None,
        searches_per_day: int | None = None,
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; the secret is returned once and never stored."""
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
        if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRES_DAYS:
            # 0 once made a key that never expired, and a negative count one born expired.
            raise ConfigError(
                f"a key expires after 1 to {MAX_EXPIRES_DAYS} days, not {expires_days}; leave "
                "the expiry out for a key that never expires",
                code="expires_invalid",
            )
        prefix = secrets.token_hex(4)
        secret = f"{SECRET_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
        stamp = now()
        with self.catalog.session() as s, s.begin():
            if s.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
                raise ConfigError(f"a key named {name!r} already exists", code="key_exists")
            key = ApiKey(
                name=name,
                role=role,
                prefix=prefix,
                secret_hash=_hash(secret),
                created_at=stamp,
                expires_at=stamp + timedelta(days=expires_days) if expires_days else None,
                searches_per_day=searches_per_day,
            )
            s.add(key)
            self.audit.append(
                actions.KEY_CHANGE,
                actor=actor,
                details={"api_key": name, "role": role, "event": "created"},
                session=s,
            )
        return key, secret

    def authenticate(self, secret: str | None, *, at: datetime | None = None) -> Principal:
        if not secret:
            raise AuthError("an API key is required (header X-API-Key or Authorization: Bearer)")
        parts = secret.split("_")
        if not secret.startswith(SECRET_PREFIX) or len(parts) < 3:
            raise AuthError("that is not a Vultus API key", code="key_invalid")
        stamp = at or now()
        with self.catalog.session() as s, s.begin():
            key = s.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
            if key is None or not hmac.compare_digest(key.secret_hash, _hash(secret)):
                raise AuthError("unknown API key", code="key_invalid")
            if key.revoked_at is not None:
                raise AuthError(f"API key {key.name!r} was revoked", code="key_revoked")
            if key.expires_at is not None and key.expires_at <= stamp:
                raise AuthError(f"API key {key.name!r} has expired", code="key_expired")
            s.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=stamp))
            return Principal(key.id, key.name, key.role, key.searches_per_day)

    def principal_of(self, name: str, *, at: datetime | None = None) -> Principal:
        """The caller behind a key whose credential was checked another way (an AWS-style
        signature): the key must still be in force."""
        stamp = at or now()
        with self.catalog.session() as s, s.begin():
            key = s.scalar(select(ApiKey).where(ApiKey.name == name))
            if key is None:
                raise AuthError("unknown API key", code="key_invalid")
            if key.revoked_at is not None:
                raise AuthError(f"API key {key.name!r} was revoked", code="key_revoked")
            if key.expires_at is not None and key.expires_at <= stamp:
                raise AuthError(f"API key {key.name!r} has expired", code="key_expired")
            s.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=stamp))
            return Principal(key.id, key.name, key.role, key.searches_per_day)

    def revoke(self, name: str, *, actor: str | None = None) -> None:
        with self.catalog.session() as s, s.begin():
            key = s.scalar(select(ApiKey).where(ApiKey.name == name))
            if key is None:
                raise NotFoundError(f"no API key named {name!r}")
            key.revoked_at = now()
            self.audit.append(
                actions.KEY_CHANGE,
                actor=actor,
                details={"api_key": name, "event": "revoked"},
                session=s,
            )

    def list(self) -> list[ApiKey]:
        with self.catalog.session() as s:
            return list(s.scalars(select(ApiKey).order_by(ApiKey.name)))
