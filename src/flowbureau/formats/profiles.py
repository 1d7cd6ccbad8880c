"""Bank export profiles: how one bank's online-banking CSV/XLSX statement export is laid out.

A profile is data, not code: a TOML file in ``flowbureau/formats/bank_profiles/`` (shipped) or in a
directory the user names. The same profile drives reading (``formats.tabular``) and writing
(``synth``), so generated files are exactly what a reader expects.

TOML keys (all lists are candidates, the first is canonical and used when writing):

```toml
name = "icbc"                      # id used by --profile
title = "..."                      # human description
encodings = ["gb18030", "utf-8-sig"]
delimiter = ","
match = ["交易时间", "借方发生额"]    # headers that must all be present for the profile to apply
date_formats = ["%Y-%m-%d", "%Y%m%d"]
time_formats = ["%H:%M:%S"]
summary_markers = ["合计", "总计"]   # a row whose first non-empty cell starts with one is a summary
default_currency = "CNY"           # when neither a currency column nor the preamble states one

[columns]                          # canonical field -> header names
date = ["交易日期"]
time = ["交易时间"]                 # optional; or a combined date+time column under ``date``
debit = ["借方发生额"]              # debit/credit pair ...
credit = ["贷方发生额"]
amount = ["交易金额"]               # ... or one amount plus a direction column
direction = ["借贷标志"]
balance = ["余额"]
counterparty_name = ["对方户名"]
counterparty_account = ["对方账号"]
counterparty_bank = ["对方开户行"]
description = ["摘要", "用途"]      # every present one is kept; joined with " | " in that order
reference = ["流水号"]
currency = ["币种"]

[direction_values]                 # how the direction column spells debit and credit
debit = ["借", "支出", "D"]
credit = ["贷", "收入", "C"]

[preamble]                         # "key: value" lines above the header row -> statement facts
account = ["账号"]
owner = ["户名"]
credit_code = ["统一社会信用代码"]
currency = ["币种"]
period = ["起止日期"]
```
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from flowbureau.errors import InputError
from flowbureau.schema import CURRENCY_EXPONENTS

COLUMN_FIELDS = (
    "date",
    "time",
    "debit",
    "credit",
    "amount",
    "direction",
    "balance",
    "counterparty_name",
    "counterparty_account",
    "counterparty_bank",
    "description",
    "reference",
    "currency",
)
"""Canonical fields a profile may map header names to."""

PREAMBLE_FIELDS = ("account", "owner", "credit_code", "currency", "period")


@dataclass(frozen=True, slots=True)
class Profile:
    """One bank's export layout; see the module docstring for the meaning of each field."""

    name: str
    title: str
    encodings: tuple[str, ...]
    delimiter: str
    match: tuple[str, ...]
    date_formats: tuple[str, ...]
    columns: Mapping[str, tuple[str, ...]]
    time_formats: tuple[str, ...] = ()
    summary_markers: tuple[str, ...] = ("合计", "总计")
    direction_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    preamble: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = "<builtin>"
    default_currency: str = "CNY"

    def headers(self, canonical: str) -> tuple[str, ...]:
        """Header names that map to canonical field ``canonical`` (empty if unmapped)."""
        return self.columns.get(canonical, ())


def _strings(value: Any, *, key: str, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InputError("expected a string or a list of strings", file=source, field=key)


def parse_profile(data: Mapping[str, Any], *, source: str) -> Profile:
    """Build a :class:`Profile` from parsed TOML, validating keys; raises ``InputError``."""
    for required in ("name", "encodings", "date_formats", "columns"):
        if required not in data:
            raise InputError("missing required key", file=source, field=required)
    columns_raw = data["columns"]
    if not isinstance(columns_raw, Mapping):
        raise InputError("must be a table", file=source, field="columns")
    unknown = set(columns_raw) - set(COLUMN_FIELDS)
    if unknown:
        raise InputError(
            f"unknown column field(s) {sorted(unknown)}; known: {list(COLUMN_FIELDS)}",
            file=source,
            field="columns",
        )
    columns = {k: _strings(v, key=f"columns.{k}", source=source) for k, v in columns_raw.items()}
    if "date" not in columns:
        raise InputError("a profile must map the date column", file=source, field="columns.date")
    has_pair = "debit" in columns and "credit" in columns
    has_signed = "amount" in columns
    if not (has_pair or has_signed):
        raise InputError(
            "a profile needs debit+credit columns or an amount column",
            file=source,
            field="columns",
        )
    preamble_raw = data.get("preamble", {})
    unknown_pre = set(preamble_raw) - set(PREAMBLE_FIELDS)
    if unknown_pre:
        raise InputError(
            f"unknown preamble field(s) {sorted(unknown_pre)}", file=source, field="preamble"
        )
    direction_raw = data.get("direction_values", {})
    default_currency = str(data.get("default_currency", "CNY"))
    if default_currency not in CURRENCY_EXPONENTS:
        raise InputError(
            f"{default_currency!r} is not an ISO 4217 currency code",
            file=source,
            field="default_currency",
        )
    return Profile(
        name=str(data["name"]),
        title=str(data.get("title", data["name"])),
        encodings=_strings(data["encodings"], key="encodings", source=source),
        delimiter=str(data.get("delimiter", ",")),
        match=_strings(data.get("match", []), key="match", source=source),
        date_formats=_strings(data["date_formats"], key="date_formats", source=source),
        time_formats=_strings(data.get("time_formats", []), key="time_formats", source=source),
        summary_markers=_strings(
            data.get("summary_markers", ["合计", "总计"]), key="summary_markers", source=source
        ),
        columns=columns,
        direction_values={
            k: _strings(v, key=f"direction_values.{k}", source=source)
            for k, v in direction_raw.items()
        },
        preamble={
            k: _strings(v, key=f"preamble.{k}", source=source) for k, v in preamble_raw.items()
        },
        source=source,
        default_currency=default_currency,
    )


def load_profile_file(path: Path) -> Profile:
    """Load one profile TOML file (parsed once per file version: cached by mtime and size)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read the profile: {exc.strerror or exc}", file=path) from None
    return _load_profile_file(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _load_profile_file(path: str, mtime_ns: int, size: int) -> Profile:
    del mtime_ns, size  # only part of the cache key: an edited file is parsed again
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=path) from None
    return parse_profile(data, source=path)


@functools.cache
def _builtin_profiles() -> dict[str, Profile]:
    found: dict[str, Profile] = {}
    for entry in resources.files("flowbureau.formats.bank_profiles").iterdir():
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text("utf-8"))
            profile = parse_profile(data, source=f"flowbureau/formats/bank_profiles/{entry.name}")
            found[profile.name] = profile
    return found


def builtin_profiles() -> dict[str, Profile]:
    """The profiles shipped with flowbureau, by name (``generic`` included).

    The TOML files are parsed once per process; profiles are shared, immutable data (do not
    modify their mappings; use ``dataclasses.replace`` to derive a variant).
    """
    return dict(_builtin_profiles())


def load_profiles(extra_dirs: Iterable[Path] = ()) -> dict[str, Profile]:
    """Built-in profiles plus user profiles from ``extra_dirs`` (a user file overrides by name)."""
    profiles = builtin_profiles()
    for directory in extra_dirs:
        for path in sorted(Path(directory).glob("*.toml")):
            profile = load_profile_file(path)
            profiles[profile.name] = profile
    return profiles
