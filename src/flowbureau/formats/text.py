"""Turning a statement file's bytes into text, and byte offsets into line numbers.

Rules:
- A UTF-8 byte-order mark decides: the file is UTF-8 (the mark is dropped).
- Otherwise strict UTF-8 is tried first: Chinese text in GBK / GB18030 is practically never
  valid UTF-8, while UTF-8 bytes often *do* decode as GB18030 into nonsense, so trying UTF-8
  first is what makes the choice safe. Then each encoding the caller allows, in order.
- Nothing is decoded with replacement characters: bytes that no allowed encoding accepts
  raise :class:`~flowbureau.errors.InputError` naming the line of the first bad byte.
- Line numbers are 1-based and count ``\\n``; a ``\\r\\n`` file counts the same.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path

from flowbureau.errors import InputError

UTF8_BOM = codecs.BOM_UTF8


def is_utf8(name: str) -> bool:
    """True when ``name`` is a spelling of UTF-8 (with or without BOM handling)."""
    try:
        return codecs.lookup(name).name in {"utf-8", "utf-8-sig"}
    except LookupError:
        return False


def line_at(data: bytes, offset: int) -> int:
    """1-based line number of byte ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


def valid_utf8_prefix(data: bytes, *, truncated: bool) -> bool:
    """True when ``data`` is valid UTF-8; with ``truncated``, a cut last character is allowed."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A sample cut in the middle of a multi-byte character fails only at its very end.
        return truncated and exc.reason == "unexpected end of data" and exc.end == len(data)
    return True


def choose_encoding(
    head: bytes, encodings: Sequence[str], *, truncated: bool = True
) -> tuple[str, str | None]:
    """Pick the encoding of a file from its first bytes.

    Returns ``(encoding, None)`` or ``("", why not)`` when no allowed encoding decodes
    ``head``. ``utf-8`` is returned for BOM-marked and for valid UTF-8 content.
    """
    if head.startswith(UTF8_BOM) or valid_utf8_prefix(head, truncated=truncated):
        return "utf-8", None
    tried: list[str] = []
    for name in encodings:
        if is_utf8(name):
            continue
        sample = head
        for _ in range(4):  # a sample may end inside a multi-byte character
            try:
                sample.decode(name)
            except UnicodeDecodeError as exc:
                if truncated and exc.end >= len(sample) - 3 and sample:
                    sample = sample[:-1]
                    continue
                tried.append(f"{name} fails at byte {exc.start}")
                break
            except LookupError:
                tried.append(f"{name} is not a known encoding")
                break
            return name, None
        else:
            tried.append(f"{name} fails near the end of the sample")
    allowed = ", ".join(encodings) or "none"
    return "", f"not valid UTF-8 and not decodable with the allowed encodings ({allowed})" + (
        f": {'; '.join(tried)}" if tried else ""
    )


def decode(data: bytes, encoding: str, *, file: Path | str) -> str:
    """Decode the whole file with ``encoding`` (BOM dropped) or raise naming the bad line."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"byte {data[exc.start : exc.start + 1]!r} at offset {exc.start} is not valid "
            f"{encoding} ({exc.reason}); the file is in another encoding or damaged",
            file=file,
            line=line_at(data, exc.start),
            field="encoding",
        ) from None


def first_bad_utf8_line(data: bytes) -> int:
    """Line of the first byte that is not valid UTF-8 (1 when the data is valid)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return line_at(data, exc.start)
    return 1
