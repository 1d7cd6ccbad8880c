"""Validation and normal forms of identifiers people type: phone numbers and industry codes.

Rules:
- Phones are kept in E.164 (``+8613800138000``). A number without a country code is read as a
  mainland China mobile (11 digits, ``1[3-9]...``); other countries need ``+`` or ``00``.
- Industry codes follow GB/T 4754-2017 (国民经济行业分类): a section letter A-T and/or a
  division (2 digits), group (3) or class (4). The normal form is letter + digits
  (``C3511``); a digits-only code gets its letter from the division, and a letter that does not
  own the division is an error.
- Unified social credit codes are validated by :func:`flowbureau.schema.validate_credit_code`.
- Bad values raise :class:`~flowbureau.errors.InputError` naming the field.
"""

from __future__ import annotations

import csv
import re
from functools import cache
from importlib import resources

from flowbureau.errors import InputError

__all__ = ["division_sections", "normalize_industry_code", "normalize_phone"]


@cache
def division_sections() -> dict[int, str]:
    """GB/T 4754-2017 divisions (大类, 1-97) and their section letters (门类), read from the
    shared table ``flowbureau/data/gbt4754_2017.csv``."""
    text = resources.files("flowbureau.data").joinpath("gbt4754_2017.csv").read_text("utf-8")
    lines = (line for line in text.splitlines() if line and not line.startswith("#"))
    return {
        int(row["code"]): row["section"]
        for row in csv.DictReader(lines)
        if row["level"] == "division"
    }


_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_CN_MOBILE = re.compile(r"1[3-9]\d{9}")
_INDUSTRY = re.compile(r"([A-T])?(\d{2,4})?")


def normalize_phone(text: str, *, field: str = "phone") -> str:
    """Return ``text`` as an E.164 phone number, or raise :class:`InputError` naming ``field``."""
    raw = _PHONE_SEPARATORS.sub("", text.strip())
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        if not _CN_MOBILE.fullmatch(raw):
            raise InputError(
                f"{text!r} is not a mainland China mobile number (11 digits starting 13-19); "
                "write other numbers with their country code, e.g. +852...",
                field=field,
            )
        return "+86" + raw
    digits = raw[1:]
    if not digits.isdigit() or not 8 <= len(digits) <= 15 or digits.startswith("0"):
        raise InputError(f"{text!r} is not an international phone number (E.164)", field=field)
    if digits.startswith("86") and not _CN_MOBILE.fullmatch(digits[2:]):
        raise InputError(f"{text!r} is not a mainland China mobile number", field=field)
    return raw


def normalize_industry_code(text: str, *, field: str = "industry_code") -> str:
    """Return a GB/T 4754-2017 code in its normal form (``C3511``), or raise naming ``field``."""
    code = text.strip().upper()
    match = _INDUSTRY.fullmatch(code)
    if not code or match is None:
        raise InputError(
            f"{text!r} is not a GB/T 4754-2017 industry code (e.g. C3511, C35 or F)", field=field
        )
    letter, digits = match.group(1), match.group(2)
    if digits is None:
        return str(letter)
    owner = division_sections().get(int(digits[:2]))
    if owner is None:
        raise InputError(
            f"{text!r}: division {digits[:2]} does not exist in GB/T 4754-2017", field=field
        )
    if letter is not None and letter != owner:
        raise InputError(
            f"{text!r}: division {digits[:2]} belongs to section {owner}, not {letter}",
            field=field,
        )
    return owner + digits
