"""The consortium contract: deterministic admission rules every node runs on a batch.

Rules:
- A contract is a name, a semantic version and an ordered list of rules, each a rule id plus
  parameters. Its *description* is that data as canonical JSON and its *hash* is the SHA-256 of
  the description. Every batch entry carries the hash of the contract it was checked against;
  the log admits a batch only under the contract currently in force, and changing it
  (``upgrade_contract``) needs a member quorum.
- Why the hash is the same on every node: it covers only data (names, versions, parameters,
  including the full list of accepted currency codes), never source code, paths or memory
  addresses; a rule id names one fixed behaviour (``balance/v1`` never changes meaning - a new
  behaviour is a new id such as ``balance/v2``); and a rule's verdict depends only on the batch,
  its manifest and the bank's history of tx ids - no clock, locale, randomness or floats. The
  test suite pins the default contract's hash, so an accidental change cannot slip through.
- Rules are plain functions ``rule(batch, params) -> list[ContractViolation]`` returning errors
  as data (record reference, rule id, message); they never raise for bad data. At most
  :data:`MAX_VIOLATIONS_PER_RULE` are listed per rule, then one line counting the rest.
- The schema rule runs first; when it fails the other rules are skipped (they read columns).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowbureau.errors import InputError
from flowbureau.ledger.canonical import canonical_json
from flowbureau.ledger.manifest import Manifest
from flowbureau.ledger.merkle import merkle_root
from flowbureau.ledger.records import RECORD_LEAF, STATEMENT_LEAF, RecordSchemaError
from flowbureau.schema import (
    CURRENCY_EXPONENTS,
    STATEMENT_SCHEMA,
    STORED_TRANSACTION_SCHEMA,
    TxType,
    is_valid_credit_code,
)

__all__ = [
    "DEFAULT_CONTRACT",
    "MAX_VIOLATIONS_PER_RULE",
    "RULES",
    "Batch",
    "Contract",
    "ContractRejectedError",
    "ContractViolation",
    "RuleSpec",
    "TxHistory",
    "UnknownContractError",
]

MAX_VIOLATIONS_PER_RULE = 50
"""Violations listed per rule before they are summarised in one line."""


@dataclass(frozen=True, slots=True)
class ContractViolation:
    """One broken rule: which record (or statement, or manifest field), which rule, why."""

    record_ref: str
    rule: str
    message: str

    def to_json(self) -> dict[str, str]:
        """``{"record", "rule", "message"}``."""
        return {"record": self.record_ref, "rule": self.rule, "message": self.message}


class ContractRejectedError(InputError):
    """A batch breaks the contract; ``violations`` lists every problem found (as data)."""

    def __init__(self, violations: Sequence[ContractViolation], *, source: str) -> None:
        self.violations = tuple(violations)
        shown = "; ".join(f"{v.record_ref}: {v.rule}: {v.message}" for v in self.violations[:5])
        more = len(self.violations) - 5
        super().__init__(
            f"batch rejected by the contract: {shown}"
            + (f" (and {more} more)" if more > 0 else ""),
            file=source,
            field=self.violations[0].rule if self.violations else None,
        )


class UnknownContractError(InputError):
    """A contract description names a rule this node does not implement (upgrade needed)."""


class TxHistory(Protocol):
    """What the contract knows of earlier batches: the tx ids a bank already contributed."""

    def seen(self, bank_id: str, tx_ids: pa.Array) -> set[str]:
        """The subset of ``tx_ids`` (a string array) already in the log for ``bank_id``."""
        ...


@dataclass(frozen=True)
class Batch:
    """What the rules look at: records, statements, the manifest and the bank's history."""

    records: pa.Table
    statements: pa.Table
    manifest: Manifest
    history: TxHistory
    record_leaf_hashes: bytes | None = field(default=None, repr=False)

    @cached_property
    def record_leaves(self) -> bytes:
        """Concatenated leaf hashes of the records (computed once)."""
        if self.record_leaf_hashes is not None:
            return self.record_leaf_hashes
        return RECORD_LEAF.leaf_hashes(self.records)


RuleFn = Callable[[Batch, Mapping[str, Any]], list[ContractViolation]]


class _Collector:
    """Builds a rule's violation list, capped at :data:`MAX_VIOLATIONS_PER_RULE`."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.items: list[ContractViolation] = []
        self.extra = 0

    def add(self, ref: str, message: str) -> None:
        if len(self.items) < MAX_VIOLATIONS_PER_RULE:
            self.items.append(ContractViolation(ref, self.rule, message))
        else:
            self.extra += 1

    def rows(self, table: pa.Table, mask: Any, template: str, *values: Any, kind: str) -> None:
        """Add one violation per row where ``mask`` is true (null counts as false).

        ``template`` is formatted with each of ``values`` (columns) at that row.
        """
        flags = np.asarray(pc.fill_null(mask, False))
        indices = np.flatnonzero(flags)
        for i in indices[:MAX_VIOLATIONS_PER_RULE]:
            row = int(i)
            message = template.format(*(v[row].as_py() for v in values)) if values else template
            self.add(_ref(table, row, kind), message)
        self.extra += max(0, len(indices) - MAX_VIOLATIONS_PER_RULE)

    def done(self) -> list[ContractViolation]:
        if self.extra:
            self.items.append(
                ContractViolation("batch", self.rule, f"... and {self.extra} more violations")
            )
        return self.items


def _ref(table: pa.Table, i: int, kind: str) -> str:
    key = "tx_id" if kind == "records" else "statement_id"
    ident = table.column(key)[i].as_py() if key in table.column_names else None
    return f"{kind}[{i}] {key}={ident}"


# --- rules -----------------------------------------------------------------------------------


def _schema(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Columns and types are exactly the canonical stored schemas."""
    out = _Collector("schema/v1")
    for fmt, table, kind in (
        (RECORD_LEAF, batch.records, "records"),
        (STATEMENT_LEAF, batch.statements, "statements"),
    ):
        if fmt.tag != params[f"{kind}_format"]:
            out.add(
                kind, f"this node encodes {fmt.tag}, the contract wants {params[kind + '_format']}"
            )
            continue
        try:
            fmt.check(table, what=kind)
        except RecordSchemaError as exc:
            out.add(f"{kind}.{exc.field}", exc.message)
    return out.done()


def _required(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Required fields are present: not null, and not empty where they are text."""
    out = _Collector("required/v1")
    for kind, table in (("records", batch.records), ("statements", batch.statements)):
        for name in params[kind]:
            column = table.column(name)
            missing = pc.is_null(column)
            if pa.types.is_string(column.type):
                missing = pc.or_kleene(missing, pc.equal(pc.utf8_length(column), 0))
            out.rows(table, missing, f"required field {name!r} is empty", kind=kind)
    return out.done()


def _bank(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Every record and statement belongs to the bank that signed the manifest."""
    out = _Collector("bank/v1")
    bank = batch.manifest.bank_id
    for kind, table in (("records", batch.records), ("statements", batch.statements)):
        other = pc.not_equal(table.column("bank_id"), bank)
        out.rows(table, other, f"bank_id {{}} is not {bank}", table["bank_id"], kind=kind)
    return out.done()


def _amount_range(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Amounts and balances lie within +-``max_abs_minor`` minor units."""
    out = _Collector("amount_range/v1")
    limit = int(params["max_abs_minor"])
    columns = {
        "records": ("amount_minor", "balance_after_minor"),
        "statements": ("opening_balance_minor", "closing_balance_minor", "entries_sum_minor"),
    }
    for kind, table in (("records", batch.records), ("statements", batch.statements)):
        for name in columns[kind]:
            column = table.column(name)
            bad = pc.or_(pc.greater(column, limit), pc.less(column, -limit))
            out.rows(table, bad, f"{name} {{}} beyond +-{limit}", column, kind=kind)
    return out.done()


def _currency(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Currencies are active ISO 4217 codes; a record's currency is its statement's."""
    return _currencies(batch, params, "currency/v1", foreign_if_unreconciled=False)


def _currency_v2(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """As ``currency/v1``, except that a record may be in another currency than its statement
    when that statement is declared unreconciled (``reconciliation_diff_minor`` null): a bank
    export whose rows carry their own currency column (a USD row on an account the file does
    not state a currency for) cannot be reconciled, and the pipeline keeps it flagged so."""
    return _currencies(batch, params, "currency/v2", foreign_if_unreconciled=True)


def _currencies(
    batch: Batch, params: Mapping[str, Any], rule: str, *, foreign_if_unreconciled: bool
) -> list[ContractViolation]:
    out = _Collector(rule)
    codes = pa.array(params["codes"], pa.string())
    records, statements = batch.records, batch.statements
    bad = pc.invert(pc.is_in(records.column("currency"), value_set=codes))
    out.rows(records, bad, "currency {} is not ISO 4217", records["currency"], kind="records")
    has = pc.is_valid(statements.column("currency"))
    bad = pc.and_(has, pc.invert(pc.is_in(statements.column("currency"), value_set=codes)))
    out.rows(
        statements,
        bad,
        "currency {} is not ISO 4217",
        statements["currency"],
        kind="statements",
    )
    joined = records.select(["statement_id", "currency"]).join(
        statements.select(["statement_id", "currency", "reconciliation_diff_minor"]).rename_columns(
            ["statement_id", "st_cur", "st_diff"]
        ),
        "statement_id",
        join_type="left outer",
    )
    if joined.num_rows:
        differ = pc.and_(
            pc.is_valid(joined["st_cur"]), pc.not_equal(joined["currency"], joined["st_cur"])
        )
        if foreign_if_unreconciled:
            differ = pc.and_(differ, pc.is_valid(joined["st_diff"]))
        count = pc.sum(pc.cast(pc.fill_null(differ, False), pa.int64())).as_py() or 0
        if count:
            which = ", which declares itself reconciled" if foreign_if_unreconciled else ""
            out.add("records", f"{count} records' currency differs from their statement's{which}")
    return out.done()


def _period(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Statement periods are ordered, bounded in length, inside the manifest period; records
    are booked inside it (with ``slack_days`` for time zones); nothing lies in the future."""
    out = _Collector("period/v1")
    m = batch.manifest
    earliest = date.fromisoformat(params["earliest"])
    slack = timedelta(days=int(params["slack_days"]))
    latest = m.created_at.date() + slack
    if m.period_start > m.period_end:
        out.add("manifest.period", f"period starts {m.period_start} after it ends {m.period_end}")
    if m.period_start < earliest:
        out.add("manifest.period", f"period starts {m.period_start}, before {earliest}")
    if m.period_end > latest:
        out.add("manifest.period", f"period ends {m.period_end}, after the manifest was made")
    st = batch.statements
    starts, ends = st.column("period_start"), st.column("period_end")
    out.rows(
        st,
        pc.greater(starts, ends),
        "period_start {} after period_end {}",
        starts,
        ends,
        kind="statements",
    )
    max_days = int(params["max_days"])
    length = pc.days_between(starts, ends)
    out.rows(
        st,
        pc.greater(length, max_days),
        f"period of {{}} days exceeds {max_days}",
        length,
        kind="statements",
    )
    lo, hi = pa.scalar(m.period_start), pa.scalar(m.period_end)
    outside = pc.or_(pc.less(starts, lo), pc.greater(ends, hi))
    out.rows(
        st,
        outside,
        "period {}..{} outside the manifest's",
        starts,
        ends,
        kind="statements",
    )
    booked = pc.cast(batch.records.column("booked_at"), pa.date32())
    early = pc.less(booked, pa.scalar(m.period_start - slack))
    late = pc.greater(booked, pa.scalar(m.period_end + slack))
    out.rows(
        batch.records,
        pc.or_(early, late),
        "booked on {}, outside the manifest period",
        booked,
        kind="records",
    )
    return out.done()


def _balance(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """opening + entries = closing for every statement; the batch's records of a statement
    are its entries (all of them sum to ``entries_sum_minor``; fewer only when the rest were
    contributed before); every record belongs to a statement of the batch."""
    out = _Collector("balance/v1")
    st = batch.statements
    opening, closing = st.column("opening_balance_minor"), st.column("closing_balance_minor")
    sums = st.column("entries_sum_minor")
    off = pc.not_equal(pc.add_checked(opening, sums), closing)
    out.rows(
        st,
        off,
        "opening {} + entries {} != closing {}",
        opening,
        sums,
        closing,
        kind="statements",
    )
    out.items.extend(_records_match_statements(batch, "balance/v1"))
    return out.done()


def _records_match_statements(batch: Batch, rule: str) -> list[ContractViolation]:
    """The records of each statement: no more than its entries, summing to its entries when
    all of them are in the batch; every record belongs to a statement of the batch."""
    out = _Collector(rule)
    st = batch.statements
    sums = st.column("entries_sum_minor")
    records = batch.records
    per = records.group_by("statement_id").aggregate(
        [("amount_minor", "sum"), ("amount_minor", "count")]
    )
    per_ids = per.column("statement_id").to_pylist()
    index = {sid: i for i, sid in enumerate(st.column("statement_id").to_pylist())}
    counts, totals = (
        per.column("amount_minor_count").to_pylist(),
        per.column("amount_minor_sum").to_pylist(),
    )
    entry_count, entry_sum = st.column("entry_count").to_pylist(), sums.to_pylist()
    for sid, count, total in zip(per_ids, counts, totals, strict=True):
        i = index.get(sid)
        if i is None:
            out.add(
                f"records statement_id={sid}",
                f"{count} records belong to no statement of the batch",
            )
        elif count > entry_count[i]:
            out.add(
                _ref(st, i, "statements"),
                f"{count} records but the statement has {entry_count[i]} entries",
            )
        elif count == entry_count[i] and total != entry_sum[i]:
            out.add(
                _ref(st, i, "statements"),
                f"records sum to {total}, the statement's entries to {entry_sum[i]}",
            )
    return out.done()


def _balance_v2(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Statements balance up to the discrepancy they declare: opening + entries +
    ``reconciliation_diff_minor`` = closing, ``reconciled`` exactly when that difference is 0
    (both null when the file states no balances); the batch's records of a statement are its
    entries, as in ``balance/v1``. An unreconciled statement is data, flagged, not refused."""
    out = _Collector("balance/v2")
    st = batch.statements
    opening, closing = st.column("opening_balance_minor"), st.column("closing_balance_minor")
    sums, diff = st.column("entries_sum_minor"), st.column("reconciliation_diff_minor")
    stated = pc.is_valid(diff)
    unbalanced = pc.and_(stated, pc.or_(pc.is_null(opening), pc.is_null(closing)))
    out.rows(st, unbalanced, "a difference is stated without both balances", kind="statements")
    off = pc.not_equal(pc.add_checked(pc.add_checked(opening, sums), diff), closing)
    out.rows(
        st,
        off,
        "opening {} + entries {} + stated difference {} != closing {}",
        opening,
        sums,
        diff,
        closing,
        kind="statements",
    )
    agrees = pc.fill_null(pc.equal(st.column("reconciled"), pc.equal(diff, 0)), False)
    wrong = pc.or_(
        pc.and_(stated, pc.invert(agrees)),
        pc.and_(pc.invert(stated), pc.is_valid(st.column("reconciled"))),
    )
    out.rows(
        st,
        wrong,
        "reconciled is {} but the stated difference is {}",
        st.column("reconciled"),
        diff,
        kind="statements",
    )
    out.items.extend(_records_match_statements(batch, "balance/v2"))
    return out.done()


def _duplicates(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """tx_id is unique within the batch and was not contributed by the bank before."""
    out = _Collector("duplicates/v1")
    ids = batch.records.column("tx_id")
    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    for item in repeated.to_pylist()[:MAX_VIOLATIONS_PER_RULE]:
        out.add(
            f"records tx_id={item['values']}", f"tx_id appears {item['counts']} times in the batch"
        )
    seen = batch.history.seen(batch.manifest.bank_id, pc.cast(ids, pa.string()).combine_chunks())
    if seen:
        mask = pc.is_in(ids, value_set=pa.array(sorted(seen), pa.string()))
        out.rows(
            batch.records,
            mask,
            "tx_id already contributed in an earlier batch",
            kind="records",
        )
    return out.done()


def _manifest(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Record and statement counts and Merkle roots equal the manifest's."""
    out = _Collector("manifest/v1")
    m = batch.manifest
    if batch.records.num_rows != m.record_count:
        out.add(
            "manifest.records.count",
            f"manifest says {m.record_count}, batch has {batch.records.num_rows}",
        )
    if batch.statements.num_rows != m.statement_count:
        out.add(
            "manifest.statements.count",
            f"manifest says {m.statement_count}, batch has {batch.statements.num_rows}",
        )
    if merkle_root(batch.record_leaves) != m.record_root:
        out.add("manifest.records.root", "the records' Merkle root differs from the manifest's")
    if merkle_root(STATEMENT_LEAF.leaf_hashes(batch.statements)) != m.statement_root:
        out.add(
            "manifest.statements.root", "the statements' Merkle root differs from the manifest's"
        )
    return out.done()


def _pseudonyms(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """Account columns hold keyed-HMAC pseudonyms, never clear account numbers."""
    out = _Collector("pseudonym/v1")
    pattern = str(params["pattern"])
    for name in ("account_id", "counterparty_account"):
        column = batch.records.column(name)
        bad = pc.and_(pc.is_valid(column), pc.invert(pc.match_substring_regex(column, pattern)))
        out.rows(
            batch.records,
            bad,
            f"{name} is not a pseudonym ({pattern})",
            kind="records",
        )
    column = batch.statements.column("account_id")
    bad = pc.invert(pc.match_substring_regex(column, pattern))
    out.rows(
        batch.statements,
        bad,
        f"account_id is not a pseudonym ({pattern})",
        kind="statements",
    )
    return out.done()


def _credit_code(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """enterprise_id, when present, is a unified social credit code with a valid check digit."""
    out = _Collector("credit_code/v1")
    for kind, table in (("records", batch.records), ("statements", batch.statements)):
        column = table.column("enterprise_id")
        distinct = [
            c for c in pc.unique(column.drop_null()).to_pylist() if not is_valid_credit_code(c)
        ]
        if distinct:
            bad = pc.is_in(column, value_set=pa.array(distinct, pa.string()))
            out.rows(
                table,
                bad,
                "enterprise_id {} is not a valid code",
                column,
                kind=kind,
            )
    return out.done()


def _tx_type(batch: Batch, params: Mapping[str, Any]) -> list[ContractViolation]:
    """tx_type is one of the standard categories."""
    out = _Collector("tx_type/v1")
    column = batch.records.column("tx_type")
    bad = pc.invert(pc.is_in(column, value_set=pa.array(params["values"], pa.string())))
    out.rows(
        batch.records,
        bad,
        "tx_type {} is not a standard category",
        column,
        kind="records",
    )
    return out.done()


RULES: Mapping[str, RuleFn] = {
    "schema/v1": _schema,
    "required/v1": _required,
    "bank/v1": _bank,
    "amount_range/v1": _amount_range,
    "currency/v1": _currency,
    "currency/v2": _currency_v2,
    "period/v1": _period,
    "balance/v1": _balance,
    "balance/v2": _balance_v2,
    "duplicates/v1": _duplicates,
    "manifest/v1": _manifest,
    "pseudonym/v1": _pseudonyms,
    "credit_code/v1": _credit_code,
    "tx_type/v1": _tx_type,
}
"""Every rule this node implements, by id. An id's behaviour never changes."""


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule id and its parameters (canonical-JSON values)."""

    id: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Contract:
    """A versioned rule set; see the module docstring for the hash and upgrade rules."""

    name: str
    version: str
    rules: tuple[RuleSpec, ...]

    def description(self) -> dict[str, Any]:
        """The data the hash covers."""
        return {
            "name": self.name,
            "version": self.version,
            "rules": [{"id": r.id, "params": dict(r.params)} for r in self.rules],
        }

    @cached_property
    def hash(self) -> bytes:
        """SHA-256 of the canonical JSON description."""
        return hashlib.sha256(canonical_json(self.description())).digest()

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> Contract:
        """Rebuild a contract from its description; refuse rules this node does not know."""
        try:
            rules = tuple(RuleSpec(str(r["id"]), dict(r["params"])) for r in data["rules"])
            contract = cls(str(data["name"]), str(data["version"]), rules)
        except (KeyError, TypeError, ValueError) as exc:
            raise UnknownContractError(f"contract description is malformed: {exc}") from None
        unknown = [r.id for r in rules if r.id not in RULES]
        if unknown:
            raise UnknownContractError(
                f"contract {contract.version} uses rules this node does not implement: "
                f"{', '.join(unknown)} (upgrade flowbureau)"
            )
        if not rules or rules[0].id != "schema/v1":
            raise UnknownContractError("a contract's first rule must be schema/v1")
        canonical_json(contract.description())  # parameters must be canonical-JSON values
        return contract

    def check(
        self,
        records: pa.Table,
        statements: pa.Table,
        manifest: Manifest,
        history: TxHistory,
        *,
        record_leaf_hashes: bytes | None = None,
    ) -> list[ContractViolation]:
        """Run every rule in order; an empty list means the batch is admitted."""
        batch = Batch(records, statements, manifest, history, record_leaf_hashes)
        violations: list[ContractViolation] = []
        for spec in self.rules:
            found = RULES[spec.id](batch, spec.params)
            violations.extend(found)
            if spec.id == "schema/v1" and found:
                break
            if spec.id == "schema/v1":
                batch = Batch(
                    RECORD_LEAF.check(records),
                    STATEMENT_LEAF.check(statements),
                    manifest,
                    history,
                    record_leaf_hashes,
                )
        return violations


def _required_fields(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if not f.nullable]


DEFAULT_CONTRACT = Contract(
    name="flowbureau-contract",
    version="1.2.0",
    rules=(
        RuleSpec(
            "schema/v1",
            {"records_format": RECORD_LEAF.tag, "statements_format": STATEMENT_LEAF.tag},
        ),
        RuleSpec(
            "required/v1",
            {
                "records": _required_fields(STORED_TRANSACTION_SCHEMA),
                "statements": _required_fields(STATEMENT_SCHEMA),
            },
        ),
        RuleSpec("bank/v1", {}),
        RuleSpec("amount_range/v1", {"max_abs_minor": 10**15}),
        RuleSpec("currency/v2", {"codes": sorted(CURRENCY_EXPONENTS)}),
        RuleSpec("period/v1", {"earliest": "1990-01-01", "max_days": 400, "slack_days": 1}),
        RuleSpec("balance/v2", {}),
        RuleSpec("duplicates/v1", {}),
        RuleSpec("manifest/v1", {}),
        RuleSpec("pseudonym/v1", {"pattern": "^[0-9a-f]{32}$"}),
        RuleSpec("credit_code/v1", {}),
        RuleSpec("tx_type/v1", {"values": [t.value for t in TxType]}),
    ),
)
"""The contract in force at genesis unless the founders choose another.

1.1.0 (over 1.0.0): statements need not state a currency or period (a file may state neither;
period checks then apply to the records), and ``balance/v2`` accepts a statement that does
not reconcile when it declares the difference (the pipeline keeps such statements, flagged).

1.2.0 (over 1.1.0): ``currency/v2`` accepts records in another currency than their statement's
when the statement is declared unreconciled (found by ingesting bank CSV exports whose rows
carry a currency column the preamble does not state; the pipeline keeps those rows).
"""
