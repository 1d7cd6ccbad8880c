"""Identifier generation: unified social credit codes, organisation codes, account numbers.

Rules:
- A unified social credit code (GB 32100-2015) is 18 characters: registration authority
  (``9``, market regulation), entity type (``1``, enterprise), the 6-digit administrative
  division code of the registering office, the 9-character organisation code and a check
  character. Its check character is ``stdnum.cn.uscc.calc_check_digit``.
- The organisation code (GB 11714-1997) is 8 body characters and a check character:
  ``11 - sum(value * weight) mod 11`` with weights 3 7 9 10 5 8 4 2 (digits count as their
  value, letters A..Z as 10..35); 10 prints as ``X`` and 11 as ``0``. Bodies are digits for
  enterprises registered before the 2015 reform and ``MA`` + six characters of the USCC
  alphabet after it, as issued in practice.
- Codes are unique within a run: bodies are drawn without replacement.
- Account numbers are all digits, of the bank's length, with a Luhn check digit (many
  Chinese banks use one); they are unique within a run.
"""

from __future__ import annotations

import numpy as np
from stdnum.cn import uscc

ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""Characters a unified social credit code may contain (no I, O, Z, S, V)."""

_NEW_BODY_ALPHABET = USCC_ALPHABET.replace("X", "")


def org_code_check(body: str) -> str:
    """The GB 11714 check character of an 8-character organisation code body."""
    if len(body) != len(ORG_WEIGHTS):
        raise ValueError(f"organisation code body must have 8 characters, got {body!r}")
    total = sum(_char_value(c) * w for c, w in zip(body, ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def _char_value(char: str) -> int:
    if char.isdigit():
        return int(char)
    return ord(char) - ord("A") + 10


def credit_code(region: str, org_body: str) -> str:
    """The unified social credit code of an enterprise (``9`` ``1`` region org-code check)."""
    partial = "91" + region + org_body + org_code_check(org_body)
    return partial + uscc.calc_check_digit(partial)


def org_bodies(rng: np.random.Generator, after_reform: np.ndarray) -> list[str]:
    """Unique organisation code bodies: 8 digits, or ``MA`` + 6 characters where flagged."""
    n = len(after_reform)
    n_new = int(after_reform.sum())
    old = rng.choice(90_000_000, size=n - n_new, replace=False) + 10_000_000
    base = len(_NEW_BODY_ALPHABET)
    new = rng.choice(base**6, size=n_new, replace=False)
    bodies: list[str] = []
    old_iter = iter(old.tolist())
    new_iter = iter(new.tolist())
    for flag in after_reform.tolist():
        if flag:
            value = next(new_iter)
            chars = []
            for _ in range(6):
                value, digit = divmod(value, base)
                chars.append(_NEW_BODY_ALPHABET[digit])
            bodies.append("MA" + "".join(reversed(chars)))
        else:
            bodies.append(str(next(old_iter)))
    return bodies


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to ``digits``."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def account_numbers(rng: np.random.Generator, n: int, length: int, prefix: str) -> list[str]:
    """``n`` unique account numbers of ``length`` digits starting with ``prefix``, Luhn-checked."""
    free = length - len(prefix) - 1
    if free < 6:
        raise ValueError(f"account length {length} leaves too few digits after prefix {prefix!r}")
    space = 10 ** min(free, 15)
    values = rng.choice(space, size=n, replace=False) if n <= space // 4 else _dense(rng, n, space)
    width = free
    out: list[str] = []
    for value in values.tolist():
        body = prefix + str(value).zfill(width)
        out.append(body + luhn_digit(body))
    return out


def _dense(rng: np.random.Generator, n: int, space: int) -> np.ndarray:
    if n > space:
        raise ValueError(f"cannot draw {n} unique account numbers from {space}")
    return rng.permutation(space)[:n]
