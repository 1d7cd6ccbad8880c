"""Canonical JSON for everything the ledger signs or hashes (RFC 8785 for a safe subset).

Rules:
- Values are objects with ASCII keys, arrays, strings, booleans, null and integers with
  ``|n| < 2**53``. No floats: money and sizes are integers, so no number formatting question
  arises.
- Serialisation: keys sorted, no whitespace, UTF-8, only ``"``, ``\\``, and control characters
  escaped (short forms ``\\b \\f \\n \\r \\t``, else ``\\u00xx``). For this subset the output is
  byte-identical to RFC 8785 (JCS): with ASCII keys, code-point order equals its UTF-16 order,
  and integers print the same way.
- Parsing accepts only bytes that re-serialise to themselves, so one value has one encoding and
  any edit of a signed document is either a different value or a parse error.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from flowbureau.errors import InputError

__all__ = [
    "MAX_SAFE_INTEGER",
    "NonCanonicalError",
    "b64",
    "canonical_json",
    "parse_canonical",
    "require_date",
    "require_hash",
    "require_int",
    "require_object",
    "require_str",
    "unb64",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude allowed (I-JSON, RFC 7493)."""


class NonCanonicalError(InputError):
    """Bytes are not the canonical JSON encoding of a value in the allowed subset."""


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise NonCanonicalError(f"integer {value} out of the safe range", path=path)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise NonCanonicalError(f"object key {key!r} is not an ASCII string", path=path)
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    raise NonCanonicalError(f"{type(value).__name__} is not allowed in canonical JSON", path=path)


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of ``value`` (raises :class:`NonCanonicalError` outside the subset)."""
    _check(value, "$")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_canonical(data: bytes, *, what: str = "document") -> Any:
    """Parse canonical JSON bytes; refuse invalid JSON and any non-canonical encoding."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NonCanonicalError(f"{what} is not valid UTF-8 JSON: {exc}") from None
    if canonical_json(value) != data:
        raise NonCanonicalError(f"{what} is not in canonical form")
    return value


_HEX32 = re.compile(r"[0-9a-f]{64}")


def require_object(value: Any, path: str, keys: set[str]) -> Mapping[str, Any]:
    """``value`` as an object with exactly ``keys``, else :class:`NonCanonicalError` at ``path``."""
    if not isinstance(value, dict):
        raise NonCanonicalError("expected an object", path=path)
    if set(value) != keys:
        missing, extra = sorted(keys - set(value)), sorted(set(value) - keys)
        raise NonCanonicalError(f"keys differ: missing {missing}, unexpected {extra}", path=path)
    return value


def require_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    """``obj[key]`` as a non-empty string."""
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise NonCanonicalError("expected a non-empty string", path=f"{path}.{key}")
    return value


def require_int(obj: Mapping[str, Any], key: str, path: str, *, minimum: int = 0) -> int:
    """``obj[key]`` as an integer of at least ``minimum`` (booleans refused)."""
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NonCanonicalError(f"expected an integer >= {minimum}", path=f"{path}.{key}")
    return value


def require_hash(obj: Mapping[str, Any], key: str, path: str) -> bytes:
    """``obj[key]`` as a 32-byte hash written in 64 lowercase hex digits."""
    value = obj[key]
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise NonCanonicalError("expected 64 lowercase hex digits", path=f"{path}.{key}")
    return bytes.fromhex(value)


def require_date(obj: Mapping[str, Any], key: str, path: str) -> date:
    """``obj[key]`` as a ``YYYY-MM-DD`` date."""
    value = require_str(obj, key, path)
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise NonCanonicalError(f"{value!r} is not a date", path=f"{path}.{key}") from None
    if parsed.isoformat() != value:
        raise NonCanonicalError(f"{value!r} is not YYYY-MM-DD", path=f"{path}.{key}")
    return parsed


def b64(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode()


def unb64(text: str, *, size: int | None = None, what: str = "value") -> bytes:
    """Decode canonical standard base64 (optionally of exactly ``size`` bytes), else ValueError."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise ValueError(f"{what} is not canonical base64")
    if size is not None and len(raw) != size:
        raise ValueError(f"{what} is {len(raw)} bytes, not {size}")
    return raw
