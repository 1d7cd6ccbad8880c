"""End-to-end properties of a generated consortium: determinism, files the readers accept,
ground truth that matches the files, planted problems, and a sane credit-risk model."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from stdnum.cn import uscc

from flowbureau.errors import InputError
from flowbureau.formats import read_file, reconcile
from flowbureau.synth import SynthConfig, generate, resolve_formats
from flowbureau.synth.calendar import Calendar
from flowbureau.synth.flows import FLOW, FlowSimulator, MonthEntries
from flowbureau.synth.health import (
    MIN_IMPACT,
    RECEIVABLE_LOSS,
    HealthPanel,
    simulate_health,
    unpaid_share,
)
from flowbureau.synth.world import DIVISIONS, INDUSTRY_PROFILES, KIND_MEMBER, World, build_world

SMALL = {"enterprises": 30, "banks": 6, "months": 6, "seed": 11}


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "consortium"
    generate(out, **SMALL)
    return out


def _table(root: Path, name: str) -> list[dict[str, object]]:
    return pq.read_table(root / "ground_truth" / f"{name}.parquet").to_pylist()


def test_same_seed_same_bytes_other_seed_other_bytes(consortium: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, **SMALL)
    assert _tree_digest(again) == _tree_digest(consortium)
    other = tmp_path / "other"
    generate(other, **{**SMALL, "seed": 12})
    assert _tree_digest(other) != _tree_digest(consortium)


def test_layout_and_manifest(consortium: Path) -> None:
    manifest = json.loads((consortium / "manifest.json").read_text("utf-8"))
    formats = {b["format"] for b in manifest["banks"]}
    assert formats == {"csv", "mt940", "camt053.001.02", "camt053.001.08"}
    for bank in manifest["banks"]:
        assert (consortium / bank["register"]).is_file()
        assert (consortium / bank["statements"]).is_dir()
    for name in ("enterprises", "shareholders", "executives", "guarantees"):
        assert (consortium / "registry" / f"{name}.csv").is_file()
    for name in ("penalties", "inspections", "online_lending", "judgments", "macro"):
        assert (consortium / "public_records" / f"{name}.csv").is_file()
    counts = manifest["counts"]
    assert counts["entries"] == len(_table(consortium, "transactions"))
    assert counts["statement_files"] == len(_table(consortium, "statements"))


def test_every_statement_file_parses_and_reconciles(consortium: Path) -> None:
    transactions = _table(consortium, "transactions")
    broken: dict[str, int] = defaultdict(int)
    for tx in transactions:
        if tx["problem"] in ("typo_x10", "typo_x100", "missing_date"):
            broken[str(tx["file"])] += 1
    reconciled = 0
    for row in _table(consortium, "statements"):
        result = read_file(consortium / str(row["file"]))
        (statement,) = result.statements
        assert statement.entries.num_rows == row["entries"]
        assert statement.facts.account_number == row["account_number"]
        difference = reconcile(statement)
        if row["file"] not in broken and row["kind"] == "monthly" and row["entries"]:
            assert difference == 0, row["file"]
            reconciled += 1
    assert reconciled > 100


def test_registers_map_every_account_to_its_enterprise(consortium: Path) -> None:
    truth = {
        (a["bank_id"], a["account_number"]): a["enterprise_id"]
        for a in _table(consortium, "accounts")
    }
    seen = {}
    for register in sorted((consortium / "banks").glob("*/account_register.csv")):
        for record in read_file(register, format="register").accounts:
            seen[(register.parent.name, record.account_number)] = record.credit_code
    assert seen == truth


def test_truth_balances_and_statements_are_consistent(consortium: Path) -> None:
    transactions = sorted(_table(consortium, "transactions"), key=lambda r: r["entry_id"])
    last: dict[object, int] = {}
    for tx in transactions:
        account = tx["account_number"]
        if account in last:
            assert last[account] + tx["amount_minor"] == tx["balance_after_minor"]
        assert tx["balance_after_minor"] >= 0
        last[account] = tx["balance_after_minor"]
    per_file: dict[object, int] = defaultdict(int)
    for tx in transactions:
        per_file[tx["file"]] += tx["amount_minor"]
    for row in _table(consortium, "statements"):
        if row["kind"] == "monthly":
            assert (
                row["opening_balance_minor"] + per_file[row["file"]] == row["closing_balance_minor"]
            )


def test_a_payment_between_members_has_one_payment_id_at_both_banks(consortium: Path) -> None:
    by_key = {(t["bank_id"], t["reference"]): t for t in _table(consortium, "transactions")}
    links = _table(consortium, "payment_links")
    assert links
    cross_bank = 0
    for link in links:
        payer = by_key[(link["payer_bank_id"], link["payer_reference"])]
        payee = by_key[(link["payee_bank_id"], link["payee_reference"])]
        assert payer["payment_id"] == payee["payment_id"] == link["payment_id"]
        assert payer["amount_minor"] < 0 < payee["amount_minor"]
        assert payer["counterparty_account"] == payee["account_number"]
        assert payee["counterparty_account"] == payer["account_number"]
        if link["flow"] != "fx_sell":
            assert -payer["amount_minor"] == payee["amount_minor"]
            assert payer["end_to_end_id"] == payee["end_to_end_id"]
        assert 0 <= link["lag_days"] <= 3
        cross_bank += link["payer_bank_id"] != link["payee_bank_id"]
    assert cross_bank > 0


def _entry_at(consortium: Path, file: str, location: str) -> dict[str, object]:
    (statement,) = read_file(consortium / file).statements
    return next(e for e in statement.entries.to_pylist() if e["location"] == location)


def test_planted_problems_are_in_the_truth_and_in_the_files(consortium: Path) -> None:
    problems = _table(consortium, "problems")
    kinds = defaultdict(list)
    for p in problems:
        kinds[p["type"]].append(p)
    for kind in (
        "typo_x10",
        "typo_x100",
        "date_shift",
        "missing_counterparty",
        "missing_balance",
        "missing_date",
        "duplicate_file",
        "overlap",
        "outlier",
        "circular_flow",
        "round_burst",
    ):
        assert len(kinds[kind]) >= SynthConfig().min_planted, kind
    for p in kinds["typo_x10"] + kinds["typo_x100"]:
        factor = 10 if p["type"] == "typo_x10" else 100
        assert int(p["written_value"]) == factor * int(p["true_value"])
        assert _entry_at(consortium, p["file"], p["location"])["amount_minor"] == int(
            p["written_value"]
        )
    for p in kinds["date_shift"]:
        entry = _entry_at(consortium, p["file"], p["location"])
        assert str(entry["booked_local"].date()) == p["written_value"] != p["true_value"]
    for p in kinds["missing_counterparty"]:
        assert _entry_at(consortium, p["file"], p["location"])["counterparty_name"] is None
    for p in kinds["missing_balance"]:
        assert _entry_at(consortium, p["file"], p["location"])["balance_after_minor"] is None
    for p in kinds["missing_date"]:
        assert str(_entry_at(consortium, p["file"], p["location"])["status"]).startswith("INVALID:")
    for p in kinds["duplicate_file"]:
        assert (consortium / p["file"]).read_bytes() == (consortium / p["true_value"]).read_bytes()


def test_overlapping_exports_repeat_the_second_half_of_the_previous_month(consortium: Path) -> None:
    pairs = [p for p in _table(consortium, "file_pairs") if p["kind"] == "overlap"]
    assert pairs
    for pair in pairs:
        (statement,) = read_file(consortium / pair["file"]).statements
        references = set(statement.entries.column("reference").to_pylist())
        (previous,) = read_file(consortium / pair["other_file"]).statements
        repeated = {
            e["reference"]
            for e in previous.entries.to_pylist()
            if e["status"] == "BOOK" and e["booked_local"].date() >= pair["overlap_start"]
        }
        assert repeated <= references
        assert statement.facts.period_start == pair["overlap_start"]


def test_planted_flow_anomalies_look_like_what_they_are(consortium: Path) -> None:
    transactions = _table(consortium, "transactions")
    groups: dict[object, list[dict[str, object]]] = defaultdict(list)
    for tx in transactions:
        if tx["anomaly"] in ("circular_flow", "round_burst"):
            groups[(tx["anomaly"], tx["anomaly_group"])].append(tx)
    assert groups
    for (kind, _), rows in groups.items():
        days = [r["booked_at"].date() for r in rows]
        if kind == "circular_flow":
            assert len(rows) >= 6  # three legs, each seen at the payer's and the payee's bank
            payers = {r["enterprise_id"] for r in rows if r["amount_minor"] < 0}
            payees = {r["enterprise_id"] for r in rows if r["amount_minor"] > 0}
            assert len(payers) == 3
            assert payers == payees
            assert (max(days) - min(days)).days <= 8
        else:
            assert len(rows) >= 8
            assert all(r["amount_minor"] % 1_000_000 == 0 for r in rows)
            assert (max(days) - min(days)).days <= 3


def test_registry_codes_are_valid(consortium: Path) -> None:
    import csv

    with (consortium / "registry" / "enterprises.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == SMALL["enterprises"]
    assert all(uscc.is_valid(r["credit_code"]) for r in rows)
    assert len({r["credit_code"] for r in rows}) == len(rows)
    assert all(r["division"] in DIVISIONS for r in rows)
    with (consortium / "registry" / "shareholders.csv").open(encoding="utf-8") as handle:
        holders = list(csv.DictReader(handle))
    totals: dict[str, float] = defaultdict(float)
    for h in holders:
        totals[h["credit_code"]] += float(h["share_pct"])
    assert all(abs(v - 100.0) < 1e-9 for v in totals.values())


# -- the model, without files -------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_world() -> tuple[World, Calendar]:
    calendar = Calendar(date(2024, 1, 1), 24)
    world = build_world(
        seed=5,
        start=calendar.start,
        months=24,
        enterprises=4000,
        banks=resolve_formats(None, 5, 5),
        config=SynthConfig(),
    )
    return world, calendar


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    order = np.argsort(score)
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    positives = label.sum()
    return float(
        (ranks[label].sum() - positives * (positives + 1) / 2)
        / (positives * (len(label) - positives))
    )


def test_defaults_are_driven_by_health(large_world: tuple[World, Calendar]) -> None:
    world, calendar = large_world
    health = simulate_health(world, calendar)
    n = world.enterprises.n
    defaulted = health.default_month >= 0
    annual_rate = defaulted.sum() / n / 2
    assert 0.03 <= annual_rate <= 0.12
    before = np.array(
        [
            np.nanmean(health.pd[i, : max(1, m)])
            for i, m in enumerate(np.where(defaulted, health.default_month, 24))
        ]
    )
    assert before[defaulted].mean() > 1.5 * before[~defaulted].mean()
    alive = np.ones(n, dtype=bool)
    within = defaulted & (health.default_month < 12)
    assert _auc(health.pd_12m[alive, 0], within[alive]) > 0.72
    assert abs(health.pd_12m[:, 0].mean() - within.mean()) < 0.35 * within.mean()
    assert set(health.shocks.column("kind")) >= {
        "planted",
        "contagion",
        "default_contagion",
        "receivable",
    }


def test_supply_chain_is_industry_aware_with_a_heavy_tail(
    large_world: tuple[World, Calendar],
) -> None:
    world, _ = large_world
    links = world.links
    degree = np.bincount(links.supplier, minlength=world.enterprises.n)
    assert degree.max() >= 8 * degree.mean()
    allowed = 0
    for s, c in zip(links.supplier.tolist(), links.customer.tolist(), strict=True):
        buys_from = {
            d for d, _ in INDUSTRY_PROFILES[DIVISIONS[world.enterprises.division[c]]].suppliers
        }
        allowed += DIVISIONS[world.enterprises.division[s]] in buys_from
    assert allowed / len(links.supplier) > 0.95


@pytest.fixture(scope="module")
def simulated() -> tuple[World, HealthPanel, list[MonthEntries]]:
    """600 enterprises x 12 months simulated in memory (no files)."""
    world = build_world(
        seed=6,
        start=date(2024, 1, 1),
        months=12,
        enterprises=600,
        banks=resolve_formats(None, 5, 6),
        config=SynthConfig(),
    )
    calendar = Calendar(date(2024, 1, 1), 12)
    health = simulate_health(world, calendar)
    flows = FlowSimulator(world, health, calendar, anomalies=False)
    return world, health, [flows.month(t) for t in range(12)]


def test_observable_flows_carry_the_health_signal(
    simulated: tuple[World, HealthPanel, list[MonthEntries]],
) -> None:
    small, health, months = simulated
    owner = small.accounts.owner
    weak_months = strong_months = weak_online = strong_online = 0
    sales = [[], []]
    for t in range(12):
        events = months[t].events
        h = health.health[:, t]
        weak = (h < -1.0) & health.active[:, t]
        strong = (h > 0.5) & health.active[:, t]
        drawn = np.bincount(
            owner[events.acct[events.flow == FLOW["online_drawdown"]]],
            minlength=small.enterprises.n,
        )
        weak_online += drawn[weak].sum()
        strong_online += drawn[strong].sum()
        weak_months += weak.sum()
        strong_months += strong.sum()
        income = np.bincount(
            owner[events.acct],
            weights=np.where(events.flow == FLOW["sales"], events.amount, 0),
            minlength=small.enterprises.n,
        )
        base = small.enterprises.revenue / 12 * 100
        sales[0].extend((income / base)[weak].tolist())
        sales[1].extend((income / base)[strong].tolist())
    assert weak_online / weak_months > 10 * max(strong_online / strong_months, 1e-4)
    assert np.median(sales[0]) < np.median(sales[1])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_health_shows_in_levels_of_cash_and_borrowing(
    simulated: tuple[World, HealthPanel, list[MonthEntries]],
) -> None:
    """Healthier firms hold more cash relative to their own outgoings (a level, comparable
    across firms of any size) and borrow less online; the weakest run near-empty accounts."""
    world, health, months = simulated
    n = world.enterprises.n
    owner = world.accounts.owner
    cny = ~world.accounts.usd
    outflow = np.zeros(n)
    online = np.zeros(n)
    for month in months[6:]:
        ev = month.events
        real = (
            (ev.amount < 0)
            & ~np.isin(ev.flow, [FLOW["internal_out"], FLOW["fx_sell"]])
            & cny[ev.acct]
        )
        outflow -= np.bincount(owner[ev.acct], weights=np.where(real, ev.amount, 0), minlength=n)
        online += np.bincount(
            owner[ev.acct], weights=ev.flow == FLOW["online_drawdown"], minlength=n
        )
    cash = np.bincount(owner[cny], weights=months[-1].closing[cny], minlength=n)
    alive = health.active[:, -1] & (outflow > 0)
    cover = cash[alive] / (outflow[alive] / 6)
    h = health.health[alive, -1]
    assert _spearman(cover, h) > 0.5
    terciles = np.quantile(h, [1 / 3, 2 / 3])
    group = np.searchsorted(terciles, h)
    medians = [float(np.median(cover[group == g])) for g in range(3)]
    assert medians[0] < medians[1] < medians[2]
    borrowing = [float(online[alive][group == g].mean()) for g in range(3)]
    assert borrowing[0] > 2 * borrowing[1] > 0
    assert borrowing[1] > borrowing[2]


def test_distressed_customers_leave_receivables_unpaid(
    simulated: tuple[World, HealthPanel, list[MonthEntries]],
) -> None:
    world, health, months = simulated
    links = world.links
    shocks = {name: health.shocks.column(name) for name in ("kind", "source", "target", "month")}
    impacts = health.shocks.column("impact")
    rows = np.flatnonzero(shocks["kind"] == "receivable")
    assert len(rows) > 50
    edges = set(zip(links.customer.tolist(), links.supplier.tolist(), strict=True))
    per_edge: dict[tuple[int, int], list[float]] = defaultdict(list)
    for i in rows.tolist():
        source, target = int(shocks["source"][i]), int(shocks["target"][i])
        t = int(shocks["month"][i])
        assert (source, target) in edges
        assert health.active[source, t]
        assert impacts[i] <= -MIN_IMPACT
        # impact = -RECEIVABLE_LOSS x dependence(edge) x unpaid_share(customer's last health)
        unpaid = float(unpaid_share(health.health[source, t - 1]))
        per_edge[(source, target)].append(-float(impacts[i]) / (RECEIVABLE_LOSS * unpaid))
    for ratios in per_edge.values():
        assert max(ratios) - min(ratios) < 1e-3 * max(ratios)  # the edge's dependence
        assert 0 < ratios[0] <= 0.8 * (1 + 1e-3)  # dependence is capped at 0.8
    # in the flows: member purchases (dropped when unpaid) against external ones (always paid)
    owner = world.accounts.owner
    member = world.counterparties.kind == KIND_MEMBER
    paid = {"weak": [0.0, 0.0], "healthy": [0.0, 0.0]}
    for t, month in enumerate(months[1:], start=1):
        ev = month.events
        buy = (ev.flow == FLOW["purchase"]) & (ev.amount < 0) & (ev.anomaly == 0)
        to_member = buy & member[np.maximum(ev.cp, 0)]
        n = world.enterprises.n
        inside = -np.bincount(
            owner[ev.acct], weights=np.where(to_member, ev.amount, 0), minlength=n
        )
        outside = -np.bincount(
            owner[ev.acct], weights=np.where(buy & ~to_member, ev.amount, 0), minlength=n
        )
        previous = health.health[:, t - 1]
        solvent = health.default_month < 0
        for name, chosen in (("weak", previous < -1.5), ("healthy", previous > 0.0)):
            has = chosen & solvent & (links.member_purchase_share > 0)
            paid[name][0] += inside[has].sum()
            paid[name][1] += outside[has].sum()
    weak = paid["weak"][0] / paid["weak"][1]
    healthy = paid["healthy"][0] / paid["healthy"][1]
    assert weak < 0.8 * healthy
    # a defaulted customer pays its member suppliers nothing after its default day
    for month in months:
        ev = month.events
        payer = owner[ev.acct]
        day = ev.ts // 86_400
        late = (health.default_day[payer] >= 0) & (day >= health.default_day[payer])
        to_member = (ev.flow == FLOW["purchase"]) & (ev.amount < 0) & member[np.maximum(ev.cp, 0)]
        assert not (late & to_member & (ev.anomaly == 0)).any()


# -- formats and parameters ---------------------------------------------------------------------


def test_default_formats_mix_every_native_format() -> None:
    banks = resolve_formats(None, 5, 0)
    assert [b.format for b in banks] == ["csv", "mt940", "camt053.001.08", "csv", "camt053.001.02"]
    for bank in banks:
        if bank.format == "csv":
            assert bank.bank_id == bank.profile
            assert bank.encoding in ("gbk", "gb18030")
    assert len({b.bank_id for b in resolve_formats(None, 30, 0)}) == 30


def test_forced_formats() -> None:
    utf8 = resolve_formats("csv-utf8", 4, 0)
    assert {b.preamble_style for b in utf8} == {"colon"}
    assert all(
        b.format == "csv" and b.encoding in ("utf-8", "utf-8-sig") and not b.summary_row
        for b in utf8
    )
    forced = resolve_formats("csv:icbc@utf-8-sig,mt940", 3, 0)
    assert [(b.format, b.profile, b.encoding) for b in forced] == [
        ("csv", "icbc", "utf-8-sig"),
        ("mt940", None, None),
        ("csv", "icbc", "utf-8-sig"),
    ]
    for bad in ("xml", "csv:nosuchbank", "csv:icbc@latin-1"):
        with pytest.raises(InputError) as caught:
            resolve_formats(bad, 2, 0)
        assert caught.value.field == "formats"


def test_bad_parameters_fail_before_anything_is_written(tmp_path: Path) -> None:
    for kwargs, field in (
        ({"months": 0}, "months"),
        ({"enterprises": 2}, "enterprises"),
        ({"start": date(2050, 1, 1)}, "start"),
        ({"config": SynthConfig(typo_rate=2.0)}, "typo_rate"),
    ):
        with pytest.raises(InputError) as caught:
            generate(tmp_path / "out", **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(InputError):
        generate(tmp_path / "full", enterprises=5, months=1)
    assert (tmp_path / "full" / "x").read_text() == "keep"
