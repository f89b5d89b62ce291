"""API keys and roles. Only a hash of each secret is stored; keys expire and can be revoked.

Roles are separate duties, not a ladder: an admin manages keys and configuration but does not
search; an investigator searches but does not read the audit log. Each endpoint names the roles
it admits. A key may hold operator and investigator together (engine/roles.py says why the
others stay alone), and may be bound to a purpose, a case reference and a source, which clients
that cannot state them on each call (CompreFace, Rekognition) then use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vultus import audit as actions
from vultus.audit import AuditLog
from vultus.catalog import Catalog
from vultus.catalog.models import ApiKey, Source
from vultus.clock import now
from vultus.engine.roles import JOIN, MAX_EXPIRES_DAYS, ROLES, canonical, role_problem
from vultus.errors import (
    AuthError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
    PurposeError,
    RateLimitError,
)

__all__ = ["ROLES", "SEES_PATHS", "KeyStore", "Principal"]

# Who sees where photos lie on the server (a search result's `image_path`): those who manage
# the library. The others know a photo by its id, file name and external id, and see it through
# the API, which audits each view.
SEES_PATHS = frozenset({"operator"})
SECRET_PREFIX = "vk_"
# What the daily search cap counts: a 1:1 verify compares faces as a search does, so it counts.
CAPPED_ACTIONS = (actions.SEARCH, actions.VERIFY)


def _hash(secret: str) -> str:
    # Secrets are 192 random bits: a plain SHA-256 is enough, no slow password hash needed.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: what the audit log records as the actor.

    `acting` is the role a route admitted the key in (set by the route's role check); a key
    of several roles is recorded as `key:NAME as ROLE`, so the audit log shows which duty each
    call was made under. A key of one role stays `key:NAME`.
    """

    key_id: int
    name: str
    roles: tuple[str, ...]
    searches_per_day: int | None
    purpose: str | None = None
    case_ref: str | None = None
    source: str | None = None
    acting: str | None = None

    @property
    def role(self) -> str:
        """The role in use: the one a route admitted, else the key's first."""
        return self.acting or self.roles[0]

    @property
    def actor(self) -> str:
        if len(self.roles) > 1 and self.acting:
            return f"key:{self.name} as {self.acting}"
        return f"key:{self.name}"

    def holds(self, role: str) -> bool:
        return role in self.roles

    @property
    def sees_paths(self) -> bool:
        """Whether results name where photos lie on the server: for a key that manages the
        library, whichever of its roles the call is made in."""
        return any(r in SEES_PATHS for r in self.roles)

    def admitted(self, allowed: Collection[str]) -> Principal | None:
        """This principal acting in the first of its roles (in the order of ROLES) that
        `allowed` admits; None when none does. Operator comes before investigator: a key that
        holds both sees the library as its operator, free of the investigator's binding to its
        own search results."""
        for role in canonical(self.roles):
            if role in allowed:
                return dataclasses.replace(self, acting=role)
        return None

    def bound_purpose(self, purpose: str | None) -> str | None:
        """The purpose a search runs under: the key's bound one, which a caller may repeat but
        not change; the caller's own where the key is bound to none."""
        return _bound(self.name, self.purpose, purpose, "purpose", "search for")

    def bound_case(self, case_ref: str | None) -> str | None:
        """As bound_purpose, for the case reference."""
        return _bound(self.name, self.case_ref, case_ref, "case", "search for")

    def bound_source(self, source: str | None) -> str | None:
        """As bound_purpose, for the source of the photos the key adds."""
        return _bound(self.name, self.source, source, "source", "add photos to")


def _bound(key: str, bound: str | None, asked: str | None, what: str, act: str) -> str | None:
    if bound is None:
        return asked
    if asked and asked != bound:
        raise ForbiddenError(
            f"key {key!r} is bound to the {what} {bound!r}; it cannot {act} {asked!r}",
            code=f"{what}_bound",
        )
    return bound


class KeyStore:
    def __init__(self, catalog: Catalog, audit: AuditLog, purposes: Sequence[str] = ()) -> None:
        self.catalog = catalog
        self.audit = audit
        # The configured search purposes: a key is bound only to one of them.
        self.purposes = tuple(purposes)

    def create(
        self,
        name: str,
        role: str | Iterable[str],
        *,
        expires_days: int | None = None,
        searches_per_day: int | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        source: str | None = None,
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; the secret is returned once and never stored.

        >>> keys.create("compreface", ["operator", "investigator"],
        ...             purpose="archive research", source="press-archive")
        """
        roles = [role] if isinstance(role, str) else list(role)
        problem = role_problem(roles)
        if problem is not None:
            raise ConfigError(problem, code="role_invalid")
        joined = JOIN.join(canonical(roles))
        if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRES_DAYS:
            # 0 once made a key that never expired, and a negative count one born expired.
            raise ConfigError(
                f"a key expires after 1 to {MAX_EXPIRES_DAYS} days, not {expires_days}; leave "
                "the expiry out for a key that never expires",
                code="expires_invalid",
            )
        purpose, case_ref, source = (_blank_none(v) for v in (purpose, case_ref, source))
        if purpose is not None and self.purposes and purpose not in self.purposes:
            allowed = ", ".join(repr(p) for p in self.purposes)
            raise PurposeError(
                f"{purpose!r} is not a configured purpose; bind the key to one of: {allowed}",
                code="purpose_unknown",
            )
        if source is not None and "operator" not in roles:
            raise ConfigError(
                "a source binds the photos a key adds: only a key with the operator role adds",
                code="binding_invalid",
            )
        prefix = secrets.token_hex(4)
        secret = f"{SECRET_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
        stamp = now()
        with self.catalog.session() as s, s.begin():
            if s.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
                raise ConfigError(f"a key named {name!r} already exists", code="key_exists")
            if source is not None and s.scalar(select(Source).where(Source.name == source)) is None:
                raise NotFoundError(
                    f"no source named {source!r}; register it first (`vultus sources add`)"
                )
            key = ApiKey(
                name=name,
                role=joined,
                prefix=prefix,
                secret_hash=_hash(secret),
                created_at=stamp,
                expires_at=stamp + timedelta(days=expires_days) if expires_days else None,
                searches_per_day=searches_per_day,
                purpose=purpose,
                case_ref=case_ref,
                source=source,
            )
            s.add(key)
            details: dict[str, object] = {"api_key": name, "role": joined, "event": "created"}
            if source is not None:
                details["source"] = source
            self.audit.append(
                actions.KEY_CHANGE,
                actor=actor,
                purpose=purpose,
                case_ref=case_ref,
                details=details,
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
            return _in_force(s, key, stamp)

    def principal_of(self, name: str, *, at: datetime | None = None) -> Principal:
        """The caller behind a key whose credential was checked another way (an AWS-style
        signature): the key must still be in force."""
        with self.catalog.session() as s, s.begin():
            key = s.scalar(select(ApiKey).where(ApiKey.name == name))
            if key is None:
                raise AuthError("unknown API key", code="key_invalid")
            return _in_force(s, key, at or now())

    def revoke(self, name: str, *, actor: str | None = None) -> None:
        with self.catalog.session() as s, s.begin():
            key = s.scalar(select(ApiKey).where(ApiKey.name == name))
            if key is None:
                raise NotFoundError(f"no API key named {name!r}")
            if key.role == "admin" and key.revoked_at is None and not self._other_admins(s, key):
                # With no admin key left, no one could make or revoke keys but at the machine.
                raise ForbiddenError(
                    f"{name!r} is the last active admin key: create another admin key first",
                    code="last_admin_key",
                )
            key.revoked_at = now()
            self.audit.append(
                actions.KEY_CHANGE,
                actor=actor,
                details={"api_key": name, "event": "revoked"},
                session=s,
            )

    @staticmethod
    def _other_admins(s: Session, key: ApiKey) -> int:
        stamp = now()
        return len(
            [
                k
                for k in s.scalars(
                    select(ApiKey).where(
                        ApiKey.role == "admin", ApiKey.revoked_at.is_(None), ApiKey.id != key.id
                    )
                )
                if k.expires_at is None or k.expires_at > stamp
            ]
        )

    def list(self) -> list[ApiKey]:
        with self.catalog.session() as s:
            return list(s.scalars(select(ApiKey).order_by(ApiKey.name)))

    def check_search_cap(self, principal: Principal) -> None:
        """Refuse a search past the key's daily cap (none set: no check). The audit log is the
        count: every search and verify is in it, so the cap survives restarts and is the same
        for the API and the web pages."""
        cap = principal.searches_per_day
        if cap is None:
            return
        midnight = datetime.combine(now().date(), datetime.min.time())
        used = 0
        for action in CAPPED_ACTIONS:
            used += len(
                self.audit.entries(
                    since=midnight, action=action, actor=principal.actor, limit=cap - used
                )
            )
        if used >= cap:
            raise RateLimitError(
                f"key {principal.name!r} has used its {cap} searches for today (UTC); "
                "the cap resets at midnight"
            )


def _blank_none(value: str | None) -> str | None:
    """A binding left empty (a blank form field) is no binding."""
    return value.strip() or None if value is not None else None


def _in_force(s: Session, key: ApiKey, stamp: datetime) -> Principal:
    """The key's principal, once it is known neither revoked nor expired; its use recorded."""
    if key.revoked_at is not None:
        raise AuthError(f"API key {key.name!r} was revoked", code="key_revoked")
    if key.expires_at is not None and key.expires_at <= stamp:
        raise AuthError(f"API key {key.name!r} has expired", code="key_expired")
    s.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=stamp))
    return Principal(
        key.id,
        key.name,
        key.roles,
        key.searches_per_day,
        purpose=key.purpose,
        case_ref=key.case_ref,
        source=key.source,
    )
