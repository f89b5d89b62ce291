"""Every request checked against Rekognition's own input shapes: types, required members,
lengths, ranges, patterns and enums. botocore checks only types and required members on the
client, so a pattern or a limit is the server's to enforce.

The shapes are those of botocore's service model (`inputs.json`, extracted from botocore's
`rekognition/2016-06-27/service-2.json`, Apache-2.0; tests/test_rekognition.py checks that it
still matches the botocore installed)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from functools import cache
from importlib import resources
from typing import Any


class ShapeError(Exception):
    """A request that breaks its shape; the message is AWS's style of saying which value."""


@cache
def model() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("inputs.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def operations() -> dict[str, str]:
    """Operation name -> its input shape's name."""
    ops: dict[str, str] = model()["operations"]
    return ops


def check(operation: str, body: Any) -> dict[str, Any]:
    """The request `body` of `operation`, checked; blobs come back decoded to bytes."""
    shape = operations()[operation]
    if not isinstance(body, dict):
        raise ShapeError("the request body must be a JSON object")
    checked: dict[str, Any] = _value(shape, body, "")
    return checked


def _value(shape_name: str, value: Any, where: str) -> Any:
    shape = model()["shapes"][shape_name]
    kind = shape["type"]
    at = where or "the request"
    if kind == "structure":
        if not isinstance(value, dict):
            raise ShapeError(f"Value at '{at}' must be an object")
        members = shape["members"]
        unknown = sorted(set(value) - set(members))
        if unknown:
            raise ShapeError(
                f"Unknown parameter '{_join(where, unknown[0])}'; {at} takes: " + ", ".join(members)
            )
        for name in shape.get("required", []):
            if value.get(name) is None:
                raise ShapeError(
                    f"1 validation error detected: Value null at '{_lower(_join(where, name))}' "
                    "failed to satisfy constraint: Member must not be null"
                )
        return {
            name: _value(members[name]["shape"], v, _join(where, name))
            for name, v in value.items()
            if v is not None
        }
    if kind == "list":
        if not isinstance(value, list):
            raise ShapeError(f"Value at '{at}' must be a list")
        _length(shape, len(value), at, "length")
        return [
            _value(shape["member"]["shape"], v, f"{where}.{i + 1}") for i, v in enumerate(value)
        ]
    if kind == "map":
        if not isinstance(value, dict):
            raise ShapeError(f"Value at '{at}' must be an object")
        _length(shape, len(value), at, "length")
        return {
            _value(shape["key"]["shape"], k, f"{where}.key"): _value(
                shape["value"]["shape"], v, f"{where}.{k}"
            )
            for k, v in value.items()
        }
    if kind == "string":
        if not isinstance(value, str):
            raise ShapeError(f"Value at '{at}' must be a string")
        _length(shape, len(value), at, "length", value)
        if "enum" in shape and value not in shape["enum"]:
            allowed = ", ".join(shape["enum"])
            raise ShapeError(
                f"1 validation error detected: Value '{_clip(value)}' at '{_lower(at)}' failed to "
                f"satisfy constraint: Member must satisfy enum value set: [{allowed}]"
            )
        pattern = shape.get("pattern")
        if pattern and re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is None:
            raise ShapeError(
                f"1 validation error detected: Value '{_clip(value)}' at '{_lower(at)}' failed to "
                f"satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
            )
        return value
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeError(f"Value at '{at}' must be an integer")
        _length(shape, value, at, "value", value)
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ShapeError(f"Value at '{at}' must be a number")
        _length(shape, value, at, "value", value)
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ShapeError(f"Value at '{at}' must be true or false")
        return value
    if kind == "blob":
        if not isinstance(value, str):
            raise ShapeError(f"Value at '{at}' must be base64 text")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ShapeError(f"Value at '{at}' is not valid base64") from None
        _length(shape, len(data), at, "length", f"{len(data)} bytes")
        return data
    raise ShapeError(f"Value at '{at}' has a type this server does not read ({kind})")


def _length(shape: dict[str, Any], size: float, at: str, what: str, shown: Any = None) -> None:
    low, high = shape.get("min"), shape.get("max")
    value = f"Value '{_clip(str(shown))}'" if shown is not None else "Value"
    if low is not None and size < low:
        op = "greater than or equal to"
        raise ShapeError(
            f"1 validation error detected: {value} at '{_lower(at)}' failed to satisfy "
            f"constraint: Member must have {what} {op} {low}"
        )
    if high is not None and size > high:
        op = "less than or equal to"
        raise ShapeError(
            f"1 validation error detected: {value} at '{_lower(at)}' failed to satisfy "
            f"constraint: Member must have {what} {op} {high}"
        )


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _lower(path: str) -> str:
    """AWS names a member in camel case from a lower-case letter: `collectionId`."""
    return ".".join(p[:1].lower() + p[1:] for p in path.split("."))


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."
