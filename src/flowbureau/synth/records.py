"""The public business registry, public records correlated with health, and truth tables.

Rules:
- Registry (public): enterprises (name, unified social credit code, GB/T 4754 division,
  registration date, registered capital in fen, legal representative, address, phone),
  shareholders (persons ``P0000001`` and enterprises, percentages summing to exactly 100.00),
  executives, and guarantees (a group member or trading partner guaranteeing a working-capital
  facility: a maximum-amount guarantee for three years from the first drawdown).
- Public records (public), month by month from the latent health ``h``:
  administrative penalties at ``0.002 exp(-0.9 h)`` a month (x1.5 in manufacturing, catering
  and construction); quality inspections of manufacturers, retailers and restaurants at 0.03 a
  month, failing with probability ``sigmoid(-2.2 - h)``; court judgments as defendant at
  ``0.003 exp(-h)`` a month and at 0.25 a month in the six months after a default, as
  plaintiff at 0.0015; the online loans the flows drew, with their overdue history as at the
  end of the run; and the macro series each month was mapped to.
- Every table is returned as an Arrow table; the caller writes CSV (public) or Parquet (truth).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa

from flowbureau.synth.calendar import Calendar, day_number
from flowbureau.synth.flows import FlowSimulator
from flowbureau.synth.health import HealthPanel, sigmoid
from flowbureau.synth.reference import INDUSTRY_PROFILES, PREFECTURES, gbt4754
from flowbureau.synth.world import DIVISIONS, KIND_NAMES, World, stream

EPOCH = date(1970, 1, 1)


def _day(n: int) -> date:
    return EPOCH + timedelta(days=int(n))


def _person_id(index: int) -> str:
    return f"P{index + 1:07d}"


# -- registry ----------------------------------------------------------------------------------


def registry_tables(world: World) -> dict[str, pa.Table]:
    """``enterprises``, ``shareholders``, ``executives``, ``guarantees``."""
    ent = world.enterprises
    persons = world.persons
    table = gbt4754()
    n = ent.n
    rng = stream(world.seed, "records", 1)
    divisions = [DIVISIONS[d] for d in ent.division.tolist()]
    enterprises = pa.table(
        {
            "credit_code": ent.credit_code,
            "name": ent.name,
            "name_en": ent.name_en,
            "division": divisions,
            "section": [table.divisions[d].section for d in divisions],
            "region_code": ent.district_code,
            "registration_date": [_day(d) for d in ent.registered.tolist()],
            "registered_capital_minor": ent.capital_minor,
            "legal_representative": [persons.name[p] for p in ent.legal_rep.tolist()],
            "address": ent.address,
            "phone": ent.phone,
        }
    )
    holders: dict[str, list[object]] = {
        k: []
        for k in (
            "credit_code",
            "shareholder_name",
            "shareholder_type",
            "shareholder_id",
            "share_pct",
            "since",
        )
    }
    officers: dict[str, list[object]] = {
        k: [] for k in ("credit_code", "person_id", "name", "role")
    }
    n_groups = len(world.group_anchor)
    second = n + n_groups
    finance = n + n_groups + n
    joint = np.array([name.endswith("股份有限公司") for name in ent.name])
    for i in range(n):
        code = ent.credit_code[i]
        since = _day(int(ent.registered[i]))
        names: list[tuple[str, str, str]] = []
        g = int(ent.group[i])
        rep = int(ent.legal_rep[i])
        if g >= 0:
            controller = int(world.group_controller[g])
            names.append((persons.name[controller], "person", _person_id(controller)))
            anchor = int(world.group_anchor[g])
            if anchor != i and rng.random() < 0.5:
                names.append((ent.name[anchor], "enterprise", ent.credit_code[anchor]))
        if all(pid != _person_id(rep) for _, _, pid in names):
            names.append((persons.name[rep], "person", _person_id(rep)))
        if rng.random() < 0.5:
            names.append((persons.name[second + i], "person", _person_id(second + i)))
        for (holder, kind, pid), pct in zip(names, _percentages(rng, len(names)), strict=True):
            for key, value in zip(holders, (code, holder, kind, pid, pct, since), strict=True):
                holders[key].append(value)
        top_role = "董事长" if joint[i] else "执行董事兼总经理"
        roles = [(rep, top_role), (second + i, "监事"), (finance + i, "财务负责人")]
        if joint[i]:
            roles.append((finance + i, "总经理"))
        for person, role in roles:
            for key, value in zip(
                officers, (code, _person_id(person), persons.name[person], role), strict=True
            ):
                officers[key].append(value)
    fac = world.facilities
    guaranteed = np.flatnonzero(fac.guarantor >= 0)
    start = [
        _day(int(world_first_day(world, int(fac.first_month[f])))) for f in guaranteed.tolist()
    ]
    guarantees = pa.table(
        {
            "guarantee_id": [f"G{k + 1:06d}" for k in range(len(guaranteed))],
            "guarantor_credit_code": [
                ent.credit_code[int(fac.guarantor[f])] for f in guaranteed.tolist()
            ],
            "borrower_credit_code": [
                ent.credit_code[int(fac.enterprise[f])] for f in guaranteed.tolist()
            ],
            "lender_bank_id": [
                world.banks[int(world.accounts.bank[int(fac.account[f])])].export.bank_id
                for f in guaranteed.tolist()
            ],
            "amount_minor": pa.array(fac.limit_minor[guaranteed], pa.int64()),
            "start_date": start,
            "end_date": [
                d.replace(year=d.year + 3)
                if not (d.month == 2 and d.day == 29)
                else d.replace(year=d.year + 3, day=28)
                for d in start
            ],
        }
    )
    return {
        "enterprises": enterprises,
        "shareholders": pa.table(holders),
        "executives": pa.table(officers),
        "guarantees": guarantees,
    }


def world_first_day(world: World, month: int) -> int:
    """Day number of the 5th of simulated month ``month`` (negative months count back)."""
    start = world.start
    index = start.year * 12 + start.month - 1 + month
    return day_number(date(index // 12, index % 12 + 1, 5))


def _percentages(rng: np.random.Generator, k: int) -> list[str]:
    """``k`` shares in percent with two decimals, summing to exactly 100.00."""
    raw = rng.dirichlet(np.full(k, 1.5)) * 10_000
    cents = np.floor(raw).astype(np.int64)
    cents[np.argmax(raw)] += 10_000 - int(cents.sum())
    return [str(Decimal(int(c)).scaleb(-2)) for c in cents]


# -- public records ----------------------------------------------------------------------------

_PENALTY_AUTHORITIES = (
    ("市场监督管理局", "市监", ("销售不合格产品", "虚假宣传", "未按规定明码标价")),
    ("生态环境局", "环", ("超标排放大气污染物", "未批先建", "危险废物贮存不规范")),
    ("应急管理局", "应急", ("未按规定开展安全生产教育培训", "安全设施不符合要求")),
    ("税务局", "税", ("逾期申报", "未按规定开具发票")),
)
_CAUSES_DEFENDANT = ("买卖合同纠纷", "借款合同纠纷", "金融借款合同纠纷", "劳动争议", "租赁合同纠纷")


def public_record_tables(
    world: World, health: HealthPanel, flows: FlowSimulator, calendar: Calendar
) -> dict[str, pa.Table]:
    """``penalties``, ``inspections``, ``online_lending``, ``judgments``, ``macro``."""
    ent = world.enterprises
    n = ent.n
    months = world.months
    sections = [gbt4754().divisions[DIVISIONS[d]].section for d in ent.division.tolist()]
    risky = np.isin(np.array(sections), ["C", "H", "E"])
    inspected = np.array(
        [
            s == "C" or DIVISIONS[d] in ("52", "62")
            for s, d in zip(sections, ent.division.tolist(), strict=True)
        ]
    )
    penalties: dict[str, list[object]] = {
        k: []
        for k in (
            "record_id",
            "credit_code",
            "date",
            "authority",
            "decision_no",
            "severity",
            "fine_minor",
            "reason",
        )
    }
    inspections: dict[str, list[object]] = {
        k: [] for k in ("record_id", "credit_code", "date", "authority", "product", "result")
    }
    judgments: dict[str, list[object]] = {
        k: []
        for k in (
            "case_no",
            "court",
            "date",
            "credit_code",
            "role",
            "cause",
            "amount_minor",
            "counterparty_name",
        )
    }
    for t in range(months):
        rng = stream(world.seed, "records", 100 + t)
        h = health.health[:, t]
        alive = health.active[:, t]
        days = calendar.month_days(t)
        first = int(calendar.first_day[t])
        span = days.stop - days.start
        year = calendar.month_first[t].year
        rate = 0.002 * np.exp(-0.9 * h) * np.where(risky, 1.5, 1.0) * alive
        for i in np.flatnonzero(rng.random(n) < rate).tolist():
            pref = PREFECTURES[int(ent.prefecture[i])]
            kind = int(rng.integers(0, len(_PENALTY_AUTHORITIES)))
            if sections[i] not in ("C", "E") and kind in (1, 2):
                kind = 0
            office, short, reasons = _PENALTY_AUTHORITIES[kind]
            authority = (
                f"国家税务总局{pref.city}市税务局" if kind == 3 else f"{pref.city}市{office}"
            )
            severe = h[i] < -1.0 and rng.random() < 0.2
            warning = not severe and rng.random() < 0.45
            fine = 0 if warning else int(np.round(rng.uniform(5_000, 200_000), -2)) * 100
            seq = len(penalties["record_id"]) + 1
            penalty = (
                f"PEN{seq:07d}",
                ent.credit_code[i],
                _day(first + int(rng.integers(0, span))),
                authority,
                f"{pref.city}{short}罚〔{year}〕{int(rng.integers(1, 2000))}号",
                "suspension" if severe else "warning" if warning else "fine",
                fine,
                reasons[int(rng.integers(0, len(reasons)))],
            )
            for key, value in zip(penalties, penalty, strict=True):
                penalties[key].append(value)
        for i in np.flatnonzero(inspected & alive & (rng.random(n) < 0.03)).tolist():
            pref = PREFECTURES[int(ent.prefecture[i])]
            division = DIVISIONS[int(ent.division[i])]
            product = {"52": "预包装食品", "62": "餐饮食品"}.get(
                division, INDUSTRY_PROFILES[division].words[0][0] + "产品"
            )
            failed = rng.random() < float(sigmoid(-2.2 - h[i]))
            seq = len(inspections["record_id"]) + 1
            inspection = (
                f"INS{seq:07d}",
                ent.credit_code[i],
                _day(first + int(rng.integers(0, span))),
                f"{pref.city}市市场监督管理局",
                product,
                "fail" if failed else "pass",
            )
            for key, value in zip(inspections, inspection, strict=True):
                inspections[key].append(value)
        since_default = np.where(health.default_month >= 0, t - health.default_month, -1)
        defendant = 0.003 * np.exp(-h) * alive + np.where(
            (since_default >= 0) & (since_default < 6), 0.25, 0.0
        )
        plaintiff = 0.0015 * alive
        for role, chance in (("defendant", defendant), ("plaintiff", plaintiff)):
            for i in np.flatnonzero(rng.random(n) < chance).tolist():
                pref = PREFECTURES[int(ent.prefecture[i])]
                district = ent.district_name[i]
                court = (
                    f"{district}人民法院"
                    if district.endswith(("市", "县"))
                    else f"{pref.city}市{district}人民法院"
                )
                cause = (
                    _CAUSES_DEFENDANT[int(rng.integers(0, len(_CAUSES_DEFENDANT)))]
                    if role == "defendant"
                    else "买卖合同纠纷"
                )
                other = _opponent(world, i, cause, role, rng)
                amount = int(np.round(ent.revenue[i] * rng.lognormal(np.log(0.02), 0.8), -2)) * 100
                seq = len(judgments["case_no"]) + 1
                judgment = (
                    f"（{year}）{pref.city}民初{seq}号",
                    court,
                    _day(first + int(rng.integers(0, span))),
                    ent.credit_code[i],
                    role,
                    cause,
                    max(amount, 100_000),
                    other,
                )
                for key, value in zip(judgments, judgment, strict=True):
                    judgments[key].append(value)
    return {
        "penalties": pa.table(
            penalties, schema=_schema(penalties, {"fine_minor": pa.int64(), "date": pa.date32()})
        ),
        "inspections": pa.table(inspections, schema=_schema(inspections, {"date": pa.date32()})),
        "online_lending": _online_lending(world, health, flows, calendar),
        "judgments": pa.table(
            judgments, schema=_schema(judgments, {"amount_minor": pa.int64(), "date": pa.date32()})
        ),
        "macro": pa.table(
            {
                "month": [calendar.month_first[m] for m in range(months)],
                "quarter": [m.quarter for m in health.macro],
                "realgdp_growth_pct": [round(m.realgdp_growth, 6) for m in health.macro],
                "unemployment_pct": [m.unemp for m in health.macro],
                "inflation_pct": [m.infl for m in health.macro],
            }
        ),
    }


def _schema(columns: dict[str, list[object]], types: dict[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(k, types.get(k, pa.string())) for k in columns])


def _opponent(world: World, i: int, cause: str, role: str, rng: np.random.Generator) -> str:
    links = world.links
    cps = world.counterparties
    if cause == "金融借款合同纠纷":
        bank = world.banks[int(world.accounts.bank[world.accounts.primary[i]])].entry
        return bank.name_zh
    if cause == "劳动争议":
        return world.persons.name[int(rng.integers(0, world.persons.n))]
    if cause == "租赁合同纠纷":
        return cps.name[int(links.landlord[i])]
    pool_ptr = links.ext_supplier_ptr if role == "defendant" else links.ext_customer_ptr
    pool = links.ext_supplier if role == "defendant" else links.ext_customer
    lo, hi = int(pool_ptr[i]), int(pool_ptr[i + 1])
    return cps.name[int(pool[lo + int(rng.integers(0, hi - lo))])]


def _online_lending(
    world: World, health: HealthPanel, flows: FlowSimulator, calendar: Calendar
) -> pa.Table:
    ol = flows.online
    end_day = int(calendar.first_day[-1]) - 1
    ent = world.enterprises
    cps = world.counterparties
    status: list[str] = []
    max_overdue: list[int] = []
    overdue_amount: list[int] = []
    for k in range(len(ol)):
        i = ol.enterprise[k]
        instalment = ol.principal[k] // ol.term[k]
        if ol.closed[k] >= 0:
            status.append("settled")
            max_overdue.append(0)
            overdue_amount.append(0)
        elif ol.missed[k]:
            status.append("written_off" if health.default_month[i] >= 0 else "overdue")
            max_overdue.append(max(0, end_day - ol.first_overdue[k]))
            overdue_amount.append(instalment * ol.missed[k])
        else:
            status.append("normal")
            max_overdue.append(0)
            overdue_amount.append(0)
    return pa.table(
        {
            "loan_id": [f"OL{k + 1:07d}" for k in range(len(ol))],
            "credit_code": [ent.credit_code[i] for i in ol.enterprise],
            "platform": [cps.name[p] for p in ol.platform],
            "opened_on": pa.array([_day(d) for d in ol.opened], pa.date32()),
            "principal_minor": pa.array(ol.principal, pa.int64()),
            "term_months": pa.array(ol.term, pa.int32()),
            "closed_on": pa.array([_day(d) if d >= 0 else None for d in ol.closed], pa.date32()),
            "first_overdue_on": pa.array(
                [_day(d) if d >= 0 else None for d in ol.first_overdue], pa.date32()
            ),
            "max_overdue_days": pa.array(max_overdue, pa.int32()),
            "overdue_amount_minor": pa.array(overdue_amount, pa.int64()),
            "status": status,
        }
    )


# -- ground truth ------------------------------------------------------------------------------


def truth_tables(
    world: World, health: HealthPanel, flows: FlowSimulator, calendar: Calendar
) -> dict[str, pa.Table]:
    """``enterprises``, ``panel``, ``shocks``, ``counterparties``, ``accounts``,
    ``supply_chain``, ``bank_loans``, ``online_loans``."""
    ent = world.enterprises
    acc = world.accounts
    cps = world.counterparties
    n, months = ent.n, world.months
    table = gbt4754()
    divisions = [DIVISIONS[d] for d in ent.division.tolist()]
    month_dates = [calendar.month_first[m] for m in range(months)]
    dm = health.default_month
    facility_of = np.full(n, False)
    facility_of[world.facilities.enterprise] = True
    bank_ids = [b.export.bank_id for b in world.banks]
    enterprises = pa.table(
        {
            "enterprise_id": ent.credit_code,
            "name": ent.name,
            "name_en": ent.name_en,
            "division": divisions,
            "section": [table.divisions[d].section for d in divisions],
            "prefecture_code": [PREFECTURES[p].code for p in ent.prefecture.tolist()],
            "group_id": pa.array(
                np.where(ent.group >= 0, ent.group, 0), pa.int64(), mask=ent.group < 0
            ),
            "annual_revenue_minor": (np.round(ent.revenue) * 100).astype(np.int64),
            "employees": ent.employees,
            "base_health": np.round(health.base, 6),
            "defaulted": dm >= 0,
            "default_month": pa.array(
                [month_dates[m] if m >= 0 else None for m in dm.tolist()], pa.date32()
            ),
            "default_date": pa.array(
                [_day(d) if d >= 0 else None for d in health.default_day.tolist()], pa.date32()
            ),
            "main_bank_id": [bank_ids[int(acc.bank[a])] for a in acc.primary.tolist()],
            "exporter": ent.exporter,
            "has_loan_facility": facility_of,
        }
    )
    section_index = {s: k for k, s in enumerate(health.sections)}
    rows = [section_index[table.divisions[d].section] for d in divisions]
    panel = pa.table(
        {
            "enterprise_id": np.repeat(np.array(ent.credit_code, dtype=object), months),
            "month": pa.array(
                np.tile(np.array(month_dates, dtype="datetime64[D]"), n), pa.date32()
            ),
            "health": np.round(health.health.ravel(), 6),
            "pd_month": pa.array(np.round(health.pd.ravel(), 8), pa.float64(), from_pandas=True),
            "pd_12m": pa.array(np.round(health.pd_12m.ravel(), 8), pa.float64(), from_pandas=True),
            "active": health.active.ravel(),
            "defaults_this_month": (dm[:, None] == np.arange(months)[None, :]).ravel(),
            "macro_index": np.tile(np.round([m.index for m in health.macro], 6), n),
            "section_factor": np.round(health.section_factor[rows, :].ravel(), 6),
        }
    )
    log = health.shocks
    codes = np.array([*ent.credit_code, None], dtype=object)
    shocks = pa.table(
        {
            "shock_id": pa.array(log.column("shock_id"), pa.int64()),
            "month": pa.array([month_dates[m] for m in log.column("month").tolist()], pa.date32()),
            "kind": pa.array(log.column("kind").tolist(), pa.string()),
            "origin_enterprise_id": pa.array(codes[log.column("origin")].tolist(), pa.string()),
            "source_enterprise_id": pa.array(codes[log.column("source")].tolist(), pa.string()),
            "target_enterprise_id": pa.array(codes[log.column("target")].tolist(), pa.string()),
            "hop": pa.array(log.column("hop").astype(np.int32), pa.int32()),
            "impact": pa.array(log.column("impact"), pa.float64()),
        }
    )
    counterparties = pa.table(
        {
            "counterparty_id": np.arange(cps.n, dtype=np.int64),
            "name": cps.name,
            "name_ascii": cps.name_en,
            "account": cps.account,
            "bank": cps.bank,
            "bic": cps.bic,
            "kind": [KIND_NAMES[k] for k in cps.kind.tolist()],
            "enterprise_id": pa.array(
                [ent.credit_code[e] if e >= 0 else None for e in cps.enterprise.tolist()],
                pa.string(),
            ),
        }
    )
    accounts = pa.table(
        {
            "account_number": acc.number,
            "bank_id": [bank_ids[b] for b in acc.bank.tolist()],
            "enterprise_id": [ent.credit_code[o] for o in acc.owner.tolist()],
            "currency": np.where(acc.usd, "USD", "CNY"),
            "opened_on": pa.array([_day(d) for d in acc.opened.tolist()], pa.date32()),
            "main": np.arange(acc.n) == acc.primary[acc.owner],
        }
    )
    links = world.links
    supply = pa.table(
        {
            "supplier_id": [ent.credit_code[s] for s in links.supplier.tolist()],
            "customer_id": [ent.credit_code[c] for c in links.customer.tolist()],
            "purchase_share": np.round(links.share, 6),
            "payer_account": [acc.number[a] for a in links.payer_account.tolist()],
            "payee_account": [acc.number[a] for a in links.payee_account.tolist()],
        }
    )
    loans = flows.loans
    fac = world.facilities
    bank_loans = pa.table(
        {
            "enterprise_id": [ent.credit_code[int(fac.enterprise[f])] for f in loans.facility],
            "account_number": [acc.number[int(fac.account[f])] for f in loans.facility],
            "drawn_on": pa.array(
                [
                    _day(d if d >= 0 else world_first_day(world, m))
                    for d, m in zip(loans.drawn_day, loans.drawn_month, strict=True)
                ],
                pa.date32(),
            ),
            "amount_minor": pa.array(loans.amount, pa.int64()),
            "outstanding_minor": pa.array(loans.outstanding, pa.int64()),
            "annual_rate": [round(float(fac.rate[f]), 6) for f in loans.facility],
            "term_months": [int(fac.term[f]) for f in loans.facility],
            "amortising": [bool(fac.amortising[f]) for f in loans.facility],
            "status": loans.status,
        }
    )
    ol = flows.online
    online = pa.table(
        {
            "loan_id": [f"OL{k + 1:07d}" for k in range(len(ol))],
            "enterprise_id": [ent.credit_code[i] for i in ol.enterprise],
            "account_number": [acc.number[a] for a in ol.account],
            "emergency": pa.array(ol.emergency, pa.bool_()),
            "instalments_paid": pa.array(ol.paid, pa.int32()),
            "instalments_missed": pa.array(ol.missed, pa.int32()),
        }
    )
    return {
        "enterprises": enterprises,
        "panel": panel,
        "shocks": shocks,
        "counterparties": counterparties,
        "accounts": accounts,
        "supply_chain": supply,
        "bank_loans": bank_loans,
        "online_loans": online,
    }
