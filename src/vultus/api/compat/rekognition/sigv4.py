"""AWS Signature Version 4, checked by the server: the request is signed with an HMAC chain
keyed by the secret, over a canonical form of the method, path, query, signed headers and the
SHA-256 of the body (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html).

Refusals are AWS's own, so that clients handle them as they do AWS's: no signature
(`MissingAuthenticationTokenException`), a malformed one (`IncompleteSignatureException`), an
unknown access key (`UnrecognizedClientException`), a timestamp more than 15 minutes off or a
signature that does not match (`InvalidSignatureException`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "rekognition"
# AWS refuses a request signed more than 15 minutes before or after its own clock.
MAX_SKEW = timedelta(minutes=15)
AMZ_DATE = "%Y%m%dT%H%M%SZ"
_FIELDS = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]+)")


class SignatureError(Exception):
    """A refused signature: AWS's error type and message."""

    def __init__(self, aws_type: str, message: str) -> None:
        super().__init__(message)
        self.aws_type = aws_type
        self.message = message


@dataclass(frozen=True)
class Signed:
    """Who signed, and where they said they were sending it."""

    access_key_id: str
    region: str


def verify(
    *,
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    secret_for: Callable[[str], str | None],
    at: datetime | None = None,
) -> Signed:
    """Check a request's signature; `secret_for(access_key_id)` gives the secret, None when the
    key is unknown. Raises `SignatureError`."""
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    auth = ",".join(by_name.get("authorization", []))
    if not auth:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    if not auth.startswith(ALGORITHM + " "):
        raise SignatureError(
            "IncompleteSignatureException",
            f"Authorization header requires the {ALGORITHM} algorithm",
        )
    fields = dict(_FIELDS.findall(auth))
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if f not in fields]
    if missing:
        raise SignatureError(
            "IncompleteSignatureException",
            f"Authorization header requires '{missing[0]}' parameter. Authorization={auth[:120]}",
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise SignatureError(
            "IncompleteSignatureException",
            "Credential should be scoped to a valid region, like 'us-east-1'. "
            f"Credential={fields['Credential'][:120]}",
        )
    access_key_id, day, region, service, _ = scope
    if service != SERVICE:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SERVICE}'.",
        )
    stamp_text = (by_name.get("x-amz-date") or [""])[0]
    try:
        stamp = datetime.strptime(stamp_text, AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ) from None
    if day != stamp_text[:8]:
        raise SignatureError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{day}' != '{stamp_text[:8]}', from '{stamp_text}'.",
        )
    clock = (at or datetime.now(UTC)).astimezone(UTC)
    if stamp < clock - MAX_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {stamp_text} is now earlier than "
            f"{(clock - MAX_SKEW).strftime(AMZ_DATE)} ({clock.strftime(AMZ_DATE)} - 15 min.)",
        )
    if stamp > clock + MAX_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature not yet current: {stamp_text} is still later than "
            f"{(clock + MAX_SKEW).strftime(AMZ_DATE)} ({clock.strftime(AMZ_DATE)} + 15 min.)",
        )
    signed_headers = fields["SignedHeaders"].split(";")
    if "host" not in signed_headers:
        raise SignatureError(
            "InvalidSignatureException", "'Host' must be a 'SignedHeader' in the Authorization."
        )
    secret = secret_for(access_key_id)
    if secret is None:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    canonical = "\n".join(
        [
            method.upper(),
            _canonical_path(raw_path),
            _canonical_query(query),
            "".join(
                f"{h}:{','.join(' '.join(v.split()) for v in by_name.get(h, []))}\n"
                for h in signed_headers
            ),
            fields["SignedHeaders"],
            hashlib.sha256(body).hexdigest(),
        ]
    )
    credential_scope = "/".join(scope[1:])  # the scope without the access key id
    to_sign = "\n".join(
        [ALGORITHM, stamp_text, credential_scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _signing_key(secret, day, region, service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.",
        )
    return Signed(access_key_id, region)


def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical_path(raw_path: bytes) -> str:
    # Encoded once more as botocore does (every byte but unreserved characters and '/').
    path = unquote(raw_path.decode("latin-1")) or "/"
    return quote(path, safe="/~")


def _canonical_query(query: bytes) -> str:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs))
