"""Where image bytes lie: a local path, a `file://` URI or an `s3://bucket/key` object.

S3 goes through boto3, imported only when an `s3://` location is used, so that a plain
install never needs it. Endpoint and credentials come from the standard AWS environment
variables and config files (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`...); the
`s3_endpoint_url` setting points at an S3-compatible store (MinIO, Ceph, moto) instead.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from vultus.errors import SourceError

S3_SCHEME = "s3://"
FILE_SCHEME = "file://"

# One client per endpoint for the process: boto3 clients are thread-safe once made, but
# making one is not (it goes through a shared default session), hence the lock.
_client_lock = threading.Lock()


def is_uri(location: str) -> bool:
    """True for a location with a scheme (`s3://`, `file://`, `http://`...), not a plain path."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.isalpha() and len(scheme) > 1


def is_s3(location: str) -> bool:
    return location.startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key.jpg` -> ("bucket", "some/key.jpg"); the key may be empty."""
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise SourceError(f"{uri}: an s3:// URI names a bucket, as s3://bucket/key", code="bad_uri")
    return bucket, key


def local_path(location: str) -> Path | None:
    """The file a location names on this machine; None for an object in a bucket."""
    if location.startswith(FILE_SCHEME):
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise SourceError(
                f"{location}: only local file:// URIs are read (file:///path)", code="bad_uri"
            )
        return Path(unquote(parts.path))
    if is_s3(location):
        return None
    if is_uri(location):
        raise SourceError(
            f"{location}: unsupported location; use a local path, file:// or s3://",
            code="unsupported_uri",
        )
    return Path(location)


def read_location(location: str, *, endpoint_url: str | None = None) -> bytes:
    """The bytes at a location. Raises `SourceError` with code `file_not_found`,
    `object_not_found`, `access_denied`, `s3_unavailable` or `unreadable`."""
    path = local_path(location)
    if path is not None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise SourceError(f"{location}: no such file", code="file_not_found") from None
        except OSError as exc:
            raise SourceError(f"{location}: {exc.strerror or exc}", code="unreadable") from None
    bucket, key = split_s3(location)
    client = s3_client(endpoint_url)
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        return bytes(response["Body"].read())
    except Exception as exc:
        raise _s3_error(location, exc) from None


def write_object(uri: str, data: bytes, *, endpoint_url: str | None = None) -> None:
    """Replace an object's bytes, keeping its content type."""
    bucket, key = split_s3(uri)
    client = s3_client(endpoint_url)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType=head.get("ContentType", "application/octet-stream"),
        )
    except Exception as exc:
        raise _s3_error(uri, exc) from None


def delete_object(uri: str, *, endpoint_url: str | None = None) -> None:
    """Delete an object. In a bucket that keeps versions this only adds a delete marker and the
    bytes stay as an older version: check `bucket_keeps_versions` first."""
    bucket, key = split_s3(uri)
    client = s3_client(endpoint_url)
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise _s3_error(uri, exc) from None


def bucket_keeps_versions(uri: str, *, endpoint_url: str | None = None) -> bool:
    """Whether overwriting an object leaves the old bytes behind as an older version."""
    bucket, _ = split_s3(uri)
    try:
        status = s3_client(endpoint_url).get_bucket_versioning(Bucket=bucket).get("Status")
    except Exception as exc:
        raise _s3_error(uri, exc) from None
    return status in ("Enabled", "Suspended")


def list_objects(
    uri: str, *, suffixes: frozenset[str], endpoint_url: str | None = None
) -> Iterator[str]:
    """The `s3://` URIs under a prefix whose names end in one of `suffixes`, page by page
    (S3 returns keys in UTF-8 byte order, so reruns list them in the same order)."""
    bucket, prefix = split_s3(uri)
    client = s3_client(endpoint_url)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if Path(key).suffix.lower() in suffixes:
                    yield f"{S3_SCHEME}{bucket}/{key}"
    except SourceError:
        raise
    except Exception as exc:
        raise _s3_error(uri, exc) from None


def s3_client(endpoint_url: str | None) -> Any:
    with _client_lock:
        return _make_client(endpoint_url)


@functools.lru_cache(maxsize=8)
def _make_client(endpoint_url: str | None) -> Any:
    try:
        import boto3
    except ImportError:
        raise SourceError(
            "reading s3:// locations needs boto3: pip install 'vultus[s3]'",
            code="s3_unavailable",
        ) from None
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None)


def _s3_error(location: str, exc: Exception) -> SourceError:
    """boto3's errors, in words a person can act on."""
    response = getattr(exc, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", ""))
    if code in ("NoSuchKey", "404", "NotFound"):
        return SourceError(f"{location}: no such object", code="object_not_found")
    if code == "NoSuchBucket":
        return SourceError(f"{location}: no such bucket", code="object_not_found")
    if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return SourceError(
            f"{location}: access denied ({code}); check the AWS credentials", code="access_denied"
        )
    if type(exc).__name__ == "NoCredentialsError":
        return SourceError(
            f"{location}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)",
            code="access_denied",
        )
    return SourceError(f"{location}: cannot read it ({code or exc})", code="unreadable")
