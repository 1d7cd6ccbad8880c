"""Cursor pagination: ``?limit=&cursor=`` in, ``{"items", "next_cursor"}`` out.

Rules:
- Services fetch ``limit + 1`` rows; :func:`page` keeps ``limit`` and makes the cursor only
  when there is more.
- Lists are ordered by a unique key (``created_at, id``, or the audit ``seq``) and a page
  continues strictly after the last item of the previous one (keyset pagination), so pages
  neither skip nor repeat rows when new rows arrive meanwhile.
- A cursor is opaque to clients (base64url of the last item's key); a forged or corrupt one is
  bad input naming the ``cursor`` field.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from flowbureau.errors import InputError

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "decode_cursor",
    "encode_cursor",
    "page",
    "time_id_cursor",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

T = TypeVar("T")


def encode_cursor(*parts: str | int) -> str:
    """An opaque cursor holding ``parts``."""
    raw = json.dumps(list(parts), separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, *kinds: type) -> list[str | int]:
    """The parts of a cursor made by :func:`encode_cursor`, checked against ``kinds``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        parts = None
    if (
        not isinstance(parts, list)
        or len(parts) != len(kinds)
        or not all(type(p) is k for p, k in zip(parts, kinds, strict=True))
    ):
        raise InputError("not a cursor this list returned", field="cursor")
    return parts


def time_id_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """Decode a ``(created_at, id)`` cursor (``None`` for the first page)."""
    if cursor is None:
        return None
    stamp, row_id = decode_cursor(cursor, str, str)
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        raise InputError("not a cursor this list returned", field="cursor") from None
    if when.tzinfo is None:
        raise InputError("not a cursor this list returned", field="cursor")
    return when, str(row_id)


def page(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[str | int, ...]]
) -> tuple[list[T], str | None]:
    """Split rows fetched with ``limit + 1`` into the page and the cursor after it (or None)."""
    items = list(rows[:limit])
    if len(rows) <= limit:
        return items, None
    return items, encode_cursor(*key(items[-1]))
