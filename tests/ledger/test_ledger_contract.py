"""The consortium contract: every rule with a passing and a failing batch, hash and versions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from flowbureau.ledger.canonical import canonical_json
from flowbureau.ledger.contract import (
    DEFAULT_CONTRACT,
    MAX_VIOLATIONS_PER_RULE,
    Contract,
    ContractViolation,
    RuleSpec,
    UnknownContractError,
)
from flowbureau.ledger.manifest import Manifest
from flowbureau.ledger.merkle import merkle_root
from flowbureau.ledger.records import RECORD_LEAF, STATEMENT_LEAF
from flowbureau.ledger.sample import sample_batch

# Pinned: any change to a rule's parameters (or the currency table) must be deliberate, with a
# new contract version.
DEFAULT_CONTRACT_HASH = "24f64845b88f046c0788565870c5a2d3dc1c3be1855a6379cc07df4b9f3ff5fc"


class History:
    """Tx ids a bank contributed before."""

    def __init__(self, seen: Sequence[str] = ()) -> None:
        self._seen = set(seen)

    def seen(self, bank_id: str, tx_ids: pa.Array) -> set[str]:
        return {t for t in tx_ids.to_pylist() if t in self._seen}


def manifest_for(records: pa.Table, statements: pa.Table, **changes: Any) -> Manifest:
    """A manifest that matches the batch (counts, roots, period), with ``changes`` applied."""
    manifest = Manifest(
        bank_id="BANK01",
        seq=1,
        period_start=date(2024, 1, 1),
        period_end=date(2024, 1, 31),
        record_count=records.num_rows,
        record_root=merkle_root(RECORD_LEAF.leaf_hashes(records)),
        statement_count=statements.num_rows,
        statement_root=merkle_root(STATEMENT_LEAF.leaf_hashes(statements)),
        contract_version=DEFAULT_CONTRACT.version,
        contract_hash=DEFAULT_CONTRACT.hash,
        plain_size=1,
        compressed_size=1,
        sealed_size=1,
        sealed_sha256=bytes(32),
        created_at=datetime(2024, 2, 1, tzinfo=UTC),
    )
    return replace(manifest, **changes)


def edit(table: pa.Table, row: int, **values: Any) -> pa.Table:
    rows = table.to_pylist()
    rows[row].update(values)
    return pa.Table.from_pylist(rows, schema=table.schema)


def check(
    records: pa.Table,
    statements: pa.Table,
    *,
    history: Sequence[str] = (),
    manifest: Manifest | None = None,
) -> list[ContractViolation]:
    manifest = manifest or manifest_for(records, statements)
    return DEFAULT_CONTRACT.check(records, statements, manifest, History(history))


@pytest.fixture
def batch() -> tuple[pa.Table, pa.Table]:
    return sample_batch("BANK01", records=40, accounts=3, seed=5)


def rules_of(violations: list[ContractViolation]) -> set[str]:
    return {v.rule for v in violations}


def test_a_good_batch_passes(batch: tuple[pa.Table, pa.Table]) -> None:
    assert check(*batch) == []


def test_hash_is_pinned_and_covers_parameters() -> None:
    assert DEFAULT_CONTRACT.hash.hex() == DEFAULT_CONTRACT_HASH
    assert (
        DEFAULT_CONTRACT.hash
        == hashlib.sha256(canonical_json(DEFAULT_CONTRACT.description())).digest()
    )
    rebuilt = Contract.from_description(DEFAULT_CONTRACT.description())
    assert rebuilt.hash == DEFAULT_CONTRACT.hash
    stricter = Contract(
        DEFAULT_CONTRACT.name,
        "1.1.0",
        tuple(
            RuleSpec(r.id, {"max_abs_minor": 10**12}) if r.id == "amount_range/v1" else r
            for r in DEFAULT_CONTRACT.rules
        ),
    )
    assert stricter.hash != DEFAULT_CONTRACT.hash


def test_unknown_rules_and_bad_descriptions_are_refused() -> None:
    description = DEFAULT_CONTRACT.description()
    description["rules"].append({"id": "balance/v9", "params": {}})
    with pytest.raises(UnknownContractError, match=r"balance/v9.*upgrade"):
        Contract.from_description(description)
    with pytest.raises(UnknownContractError, match="first rule"):
        Contract.from_description({**description, "rules": description["rules"][1:2]})
    with pytest.raises(UnknownContractError, match="malformed"):
        Contract.from_description({"name": "x"})


Change = Callable[[pa.Table, pa.Table], tuple[pa.Table, pa.Table]]


def _records(row: int, **values: Any) -> Change:
    return lambda r, s: (edit(r, row, **values), s)


def _statements(row: int, **values: Any) -> Change:
    return lambda r, s: (r, edit(s, row, **values))


def _closing_off_by_one(r: pa.Table, s: pa.Table) -> tuple[pa.Table, pa.Table]:
    return r, edit(s, 0, closing_balance_minor=s["closing_balance_minor"][0].as_py() + 1)


def _entries_sum_differs(r: pa.Table, s: pa.Table) -> tuple[pa.Table, pa.Table]:
    opening = s["opening_balance_minor"][2].as_py()
    return r, edit(s, 2, entries_sum_minor=5, closing_balance_minor=opening + 5)


def _declared_difference(r: pa.Table, s: pa.Table) -> tuple[pa.Table, pa.Table]:
    closing = s["closing_balance_minor"][0].as_py() + 7
    return r, edit(
        s, 0, closing_balance_minor=closing, reconciliation_diff_minor=7, reconciled=False
    )


def _duplicate_tx_id(r: pa.Table, s: pa.Table) -> tuple[pa.Table, pa.Table]:
    return edit(r, 1, tx_id=r["tx_id"][0].as_py()), s


CASES: list[tuple[str, Change, str]] = [
    ("schema/v1", lambda r, s: (r.drop_columns(["ingest_id"]), s), "lacks column 'ingest_id'"),
    ("required/v1", _records(3, tx_id=""), "'tx_id' is empty"),
    ("required/v1", _statements(0, source_location=""), "'source_location' is empty"),
    ("bank/v1", _records(2, bank_id="BANK02"), "BANK02 is not BANK01"),
    ("amount_range/v1", _records(1, amount_minor=10**15 + 1), "beyond"),
    ("currency/v2", _records(0, currency="ABC"), "ABC is not ISO 4217"),
    ("currency/v2", _records(0, currency="USD"), "differs from their statement"),
    ("period/v1", _statements(1, period_start=date(2024, 2, 1)), "after period_end"),
    ("period/v1", _records(4, booked_at=datetime(2024, 3, 5, tzinfo=UTC)), "outside"),
    ("balance/v2", _closing_off_by_one, "!= closing"),
    ("balance/v2", _entries_sum_differs, "records sum to"),
    ("balance/v2", _records(0, statement_id="nowhere"), "belong to no statement"),
    ("balance/v2", _statements(1, reconciled=False), "reconciled is False"),
    ("balance/v2", _statements(1, reconciliation_diff_minor=None), "reconciled is True"),
    ("balance/v2", _statements(1, opening_balance_minor=None), "without both balances"),
    ("duplicates/v1", _duplicate_tx_id, "appears 2 times"),
    ("pseudonym/v1", _records(5, counterparty_account="6222021234567890123"), "not a pseudonym"),
    ("credit_code/v1", _records(6, enterprise_id="91310000MA00000000"), "not a valid code"),
    ("tx_type/v1", _records(7, tx_type="gambling"), "not a standard category"),
]


@pytest.mark.parametrize(
    ("rule", "change", "message"), CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES]
)
def test_each_rule_catches_its_violation(
    batch: tuple[pa.Table, pa.Table],
    rule: str,
    change: Change,
    message: str,
) -> None:
    records, statements = change(*batch)
    found = [v for v in check(records, statements, manifest=manifest_for(*batch)) if v.rule == rule]
    assert found, f"{rule} found nothing"
    assert any(message in v.message for v in found), found
    assert all(v.record_ref for v in found)


def test_foreign_currency_records_need_an_unreconciled_statement(
    batch: tuple[pa.Table, pa.Table],
) -> None:
    records, statements = batch
    statement_id = records["statement_id"][0].as_py()
    row = statements["statement_id"].to_pylist().index(statement_id)
    usd = edit(records, 0, currency="USD")
    assert "currency/v2" in rules_of(check(usd, statements, manifest=manifest_for(*batch)))
    # the pipeline marks a statement with foreign-currency entries as not reconcilable
    unreconciled = edit(statements, row, reconciliation_diff_minor=None, reconciled=None)
    found = check(usd, unreconciled, manifest=manifest_for(usd, unreconciled))
    assert found == []
    # currency/v1 (contract 1.1.0) refuses the same batch
    v1 = Contract(
        DEFAULT_CONTRACT.name,
        "1.1.0",
        tuple(
            RuleSpec("currency/v1", r.params) if r.id == "currency/v2" else r
            for r in DEFAULT_CONTRACT.rules
        ),
    )
    refused = v1.check(usd, unreconciled, manifest_for(usd, unreconciled), History())
    assert rules_of(refused) == {"currency/v1"}


def test_schema_failure_stops_before_other_rules(batch: tuple[pa.Table, pa.Table]) -> None:
    records, statements = batch
    violations = check(records.drop_columns(["tx_id"]), statements, manifest=manifest_for(*batch))
    assert rules_of(violations) == {"schema/v1"}
    assert violations[0].record_ref == "records.tx_id"


def test_cross_batch_duplicates_use_the_bank_history(batch: tuple[pa.Table, pa.Table]) -> None:
    records, statements = batch
    earlier = records["tx_id"][9].as_py()
    violations = check(records, statements, history=[earlier])
    assert [v.record_ref for v in violations] == [f"records[9] tx_id={earlier}"]
    assert violations[0].rule == "duplicates/v1"


def test_manifest_counts_roots_and_period(batch: tuple[pa.Table, pa.Table]) -> None:
    records, statements = batch
    bad = manifest_for(
        records,
        statements,
        record_count=41,
        record_root=bytes(32),
        statement_root=bytes(32),
        period_end=date(2024, 3, 31),
    )
    violations = check(records, statements, manifest=bad)
    refs = {v.record_ref for v in violations}
    assert {"manifest.records.count", "manifest.records.root", "manifest.statements.root"} <= refs
    assert "manifest.period" in refs  # ends after the manifest was made (2024-02-01)


def test_statement_with_fewer_records_is_accepted_when_the_rest_came_before(
    batch: tuple[pa.Table, pa.Table],
) -> None:
    records, statements = batch
    first = records["statement_id"][0].as_py()
    keep = [i for i in range(records.num_rows) if i != 0]  # one entry contributed earlier
    fewer = records.take(keep)
    assert check(fewer, statements) == []
    assert first in statements["statement_id"].to_pylist()


def test_an_unreconciled_statement_passes_when_it_declares_the_difference(
    batch: tuple[pa.Table, pa.Table],
) -> None:
    records, statements = _declared_difference(*batch)
    assert check(records, statements) == []
    undeclared = edit(statements, 0, reconciliation_diff_minor=0, reconciled=True)
    assert rules_of(check(records, undeclared)) == {"balance/v2"}
    # a statement stating neither currency nor period is accepted (its records are checked)
    bare = edit(statements, 1, currency=None, period_start=None, period_end=None)
    assert check(records, bare) == []


def test_violations_are_capped_per_rule(batch: tuple[pa.Table, pa.Table]) -> None:
    records, statements = sample_batch("BANK01", records=MAX_VIOLATIONS_PER_RULE + 20, seed=2)
    wrong = records.set_column(
        records.schema.get_field_index("tx_type"),
        "tx_type",
        pa.array(["gambling"] * records.num_rows),
    )
    found = [v for v in check(wrong, statements) if v.rule == "tx_type/v1"]
    assert len(found) == MAX_VIOLATIONS_PER_RULE + 1
    assert found[-1].message == "... and 20 more violations"
