"""Categorisation rules: data (TOML), compiled into one vectorised SQL ``CASE``.

A rules file holds an ordered list of ``[[rules]]`` and optionally one ``[returned]`` table::

    [[rules]]
    name = "tax"                  # shown in errors
    tx_type = "tax"               # a flowbureau.schema.TxType value
    direction = "out"             # optional: "in" (credit) or "out" (debit)
    own_account = false           # optional: counterparty is / is not an account of the same
                                  # enterprise (or bears the account owner's name)
    description = ["税款", "增值税"]        # keywords, case- and width-insensitive substrings
    description_regex = ['\\bVAT\\b']       # RE2 patterns on the width-folded description
    counterparty = ["税务局", "国库"]        # keywords on the normalised counterparty name
    counterparty_regex = []
    tx_code = ["TAX"]             # bank transaction codes, exact, case-insensitive
    match = "any"                 # "any" (default): one text condition suffices; "all": every
                                  # listed kind (description, counterparty, tx_code) must hit

    [returned]                    # entries flagged returned_payment
    description = ["退票", "退汇", "冲正", "退回"]
    description_regex = ['\\bRETURN(ED)?\\b']
    tx_code = ["RTI"]

Rules:
- The first rule that matches decides ``tx_type``; no match -> ``other``. A rule with no
  text condition matches on ``direction`` / ``own_account`` alone.
- User rules come first: ``--rules FILE``, then ``data_dir/rules/*.toml`` (by name), then the
  built-in ``flowbureau/cleaning/categories.toml``. ``[returned]`` lists of every file are
  merged.
- The raw description is never changed; rules only read it.
- Bad rules are an :class:`~flowbureau.errors.InputError` naming the file and the rule field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from flowbureau.cleaning.normalise import fold_width, normalise_name
from flowbureau.errors import InputError
from flowbureau.schema import TxType

__all__ = [
    "BUILTIN_RULES",
    "CategoryRule",
    "RuleSet",
    "categorise_sql",
    "load_rules",
    "parse_rules",
    "returned_sql",
    "rule_files",
]

BUILTIN_RULES = "flowbureau/cleaning/categories.toml"
_RULE_KEYS = {
    "name",
    "tx_type",
    "direction",
    "own_account",
    "description",
    "description_regex",
    "counterparty",
    "counterparty_regex",
    "tx_code",
    "match",
}
_RETURNED_KEYS = {"description", "description_regex", "tx_code"}
_UNSUPPORTED_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]")


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """One compiled rule: regexes (None when absent) and conditions."""

    name: str
    tx_type: TxType
    source: str
    direction: str | None = None
    own_account: bool | None = None
    description: str | None = None
    counterparty: str | None = None
    tx_codes: tuple[str, ...] = ()
    match_all: bool = False


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Ordered category rules plus the returned-payment detector."""

    rules: tuple[CategoryRule, ...]
    returned_description: str | None = None
    returned_tx_codes: tuple[str, ...] = ()


def _strings(value: Any, *, source: str, field: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InputError("expected a non-empty string or a list of them", file=source, field=field)
    return list(value)


def _pattern(
    keywords: Sequence[str], regexes: Sequence[str], *, source: str, field: str
) -> str | None:
    for regex in regexes:
        if _UNSUPPORTED_RE2.search(regex):
            raise InputError(
                f"pattern {regex!r} uses look-around or back-references, which RE2 lacks",
                file=source,
                field=field,
            )
        try:
            re.compile(regex)
        except re.error as exc:
            raise InputError(f"bad pattern {regex!r}: {exc}", file=source, field=field) from None
    parts = [re.escape(k) for k in keywords] + [f"(?:{r})" for r in regexes]
    return "(?:" + "|".join(parts) + ")" if parts else None


def parse_rules(data: Mapping[str, Any], *, source: str) -> RuleSet:
    """Compile one parsed rules file; raises :class:`InputError` naming the bad field."""
    unknown_top = set(data) - {"rules", "returned", "version"}
    if unknown_top:
        raise InputError(f"unknown key(s) {sorted(unknown_top)}", file=source, field="(top)")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise InputError("must be an array of tables ([[rules]])", file=source, field="rules")
    rules: list[CategoryRule] = []
    for index, raw in enumerate(raw_rules):
        where = f"rules[{index}]"
        if not isinstance(raw, dict):
            raise InputError("must be a table", file=source, field=where)
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise InputError(f"unknown key(s) {sorted(unknown)}", file=source, field=where)
        name = str(raw.get("name", where))
        try:
            tx_type = TxType(str(raw.get("tx_type")))
        except ValueError:
            raise InputError(
                f"tx_type must be one of {[t.value for t in TxType]}",
                file=source,
                field=f"{where}.tx_type",
            ) from None
        direction = raw.get("direction")
        if direction not in (None, "in", "out"):
            raise InputError('must be "in" or "out"', file=source, field=f"{where}.direction")
        own = raw.get("own_account")
        if own is not None and not isinstance(own, bool):
            raise InputError("must be true or false", file=source, field=f"{where}.own_account")
        match = raw.get("match", "any")
        if match not in ("any", "all"):
            raise InputError('must be "any" or "all"', file=source, field=f"{where}.match")

        def lists(key: str, where: str = where, raw: dict[str, Any] = raw) -> list[str]:
            return _strings(raw[key], source=source, field=f"{where}.{key}") if key in raw else []

        description = _pattern(
            [fold_width(k) for k in lists("description")],
            lists("description_regex"),
            source=source,
            field=f"{where}.description_regex",
        )
        counterparty = _pattern(
            [normalise_name(k) or k for k in lists("counterparty")],
            lists("counterparty_regex"),
            source=source,
            field=f"{where}.counterparty_regex",
        )
        rules.append(
            CategoryRule(
                name=name,
                tx_type=tx_type,
                source=source,
                direction=direction,
                own_account=own,
                description=description,
                counterparty=counterparty,
                tx_codes=tuple(c.upper() for c in lists("tx_code")),
                match_all=match == "all",
            )
        )
    returned = data.get("returned", {})
    if not isinstance(returned, dict) or set(returned) - _RETURNED_KEYS:
        raise InputError(
            f"must be a table with keys {sorted(_RETURNED_KEYS)}", file=source, field="returned"
        )

    def returned_list(key: str) -> list[str]:
        if key not in returned:
            return []
        return _strings(returned[key], source=source, field=f"returned.{key}")

    return RuleSet(
        rules=tuple(rules),
        returned_description=_pattern(
            [fold_width(k) for k in returned_list("description")],
            returned_list("description_regex"),
            source=source,
            field="returned.description_regex",
        ),
        returned_tx_codes=tuple(c.upper() for c in returned_list("tx_code")),
    )


def _load_file(path: Path) -> RuleSet:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read rules file: {exc}", file=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=path) from None
    return parse_rules(data, source=str(path))


def rule_files(user_file: Path | None, data_dir: Path) -> list[Path]:
    """User rule files in evaluation order (the built-in rules follow them)."""
    files = [user_file] if user_file is not None else []
    rules_dir = data_dir / "rules"
    if rules_dir.is_dir():
        files.extend(sorted(rules_dir.glob("*.toml")))
    return files


def load_rules(user_files: Iterable[Path] = ()) -> RuleSet:
    """User rule files (first) followed by the built-in rules, merged into one set."""
    sets = [_load_file(Path(p)) for p in user_files]
    text = resources.files("flowbureau.cleaning").joinpath("categories.toml").read_text("utf-8")
    sets.append(parse_rules(tomllib.loads(text), source=BUILTIN_RULES))
    descriptions = [s.returned_description for s in sets if s.returned_description]
    return RuleSet(
        rules=tuple(r for s in sets for r in s.rules),
        returned_description="|".join(descriptions) if descriptions else None,
        returned_tx_codes=tuple(c for s in sets for c in s.returned_tx_codes),
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _matches(column: str, pattern: str) -> str:
    return f"regexp_matches({column}, {_literal('(?i)' + pattern)})"


def _codes(codes: Sequence[str]) -> str:
    return f"upper(tx_code) IN ({', '.join(_literal(c) for c in codes)})"


def categorise_sql(rules: RuleSet) -> str:
    """SQL ``CASE`` giving ``tx_type``, over columns ``desc_fold`` (width-folded
    description), ``counterparty_name_norm``, ``amount_minor``, ``tx_code``, ``cp_is_own``."""
    branches: list[str] = []
    for rule in rules.rules:
        texts: list[str] = []
        if rule.description:
            texts.append(_matches("desc_fold", rule.description))
        if rule.counterparty:
            texts.append(_matches("coalesce(counterparty_name_norm, '')", rule.counterparty))
        if rule.tx_codes:
            texts.append(f"coalesce({_codes(rule.tx_codes)}, false)")
        conditions: list[str] = []
        if texts:
            conditions.append("(" + (" AND " if rule.match_all else " OR ").join(texts) + ")")
        if rule.direction == "in":
            conditions.append("amount_minor > 0")
        elif rule.direction == "out":
            conditions.append("amount_minor < 0")
        if rule.own_account is not None:
            conditions.append("cp_is_own" if rule.own_account else "NOT cp_is_own")
        condition = " AND ".join(conditions) or "true"
        branches.append(f"WHEN {condition} THEN {_literal(rule.tx_type.value)}")
    if not branches:
        return _literal(TxType.OTHER.value)
    return f"CASE {' '.join(branches)} ELSE {_literal(TxType.OTHER.value)} END"


def returned_sql(rules: RuleSet) -> str:
    """SQL boolean: the entry is a returned / failed payment (same columns as above)."""
    tests: list[str] = []
    if rules.returned_description:
        tests.append(_matches("desc_fold", rules.returned_description))
    if rules.returned_tx_codes:
        tests.append(f"coalesce({_codes(rules.returned_tx_codes)}, false)")
    return "(" + " OR ".join(tests) + ")" if tests else "false"
