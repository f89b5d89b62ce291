"""One error hierarchy: every error has a stable machine code and a human message.

The CLI prints `message`; the REST API returns `{"code": ..., "message": ...}`.
"""

from __future__ import annotations


class VultusError(Exception):
    """Base of every error Vultus raises on purpose."""

    code: str = "vultus_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(VultusError):
    code = "config_error"


class DecodeError(VultusError):
    """An input file is not a usable image. Codes say why:

    `empty_file`, `not_an_image`, `unsupported_format`, `corrupt_image`, `image_too_large`.
    """

    code = "decode_error"


class NotFoundError(VultusError):
    code = "not_found"


class SourceError(VultusError):
    """A source is missing, unknown, or has no lawful basis."""

    code = "source_error"


class ManifestError(VultusError):
    """A manifest that cannot be read at all: neither CSV with a header nor JSONL, or with
    columns Vultus does not know. Bad rows in a good manifest are per-row ingest errors."""

    code = "manifest_invalid"


class ModelMismatchError(VultusError):
    """Templates of different face models would be mixed in one index."""

    code = "model_mismatch"


class NoFaceError(VultusError):
    """A query photo holds no usable face, or not the one asked for."""

    code = "no_face"


class VectorIndexError(VultusError):
    """The vector index could not be opened, saved or queried."""

    code = "index_error"


class ModelError(VultusError):
    """A face model file is missing, invalid, or failed to convert."""

    code = "model_error"


class PurposeError(VultusError):
    """A search without a stated purpose, or with one outside the configured list."""

    code = "purpose_required"


class RightsError(VultusError):
    """A data-subject request that cannot go ahead as asked (a failed identity check, a
    missing reason, a closed request)."""

    code = "rights_error"


class ConsentRequiredError(RightsError):
    """Photos offered under a consent-based source without the consent record they rest on."""

    code = "consent_required"


class AuthError(VultusError):
    """No key, an unknown key, or an expired or revoked one (HTTP 401)."""

    code = "unauthenticated"


class ForbiddenError(VultusError):
    """A valid key whose role may not do this (HTTP 403)."""

    code = "forbidden"


class RateLimitError(VultusError):
    """Too many requests, or the daily search cap of a key is reached (HTTP 429)."""

    code = "rate_limited"
