"""Monthly transaction flows: what happens on every account, month by month, vectorised.

Rules:
- One month is generated at a time for all enterprises (bounded memory: one month of entries
  plus the events already scheduled for later months). Every random draw of month ``t``
  comes from its own stream, so a month's content does not depend on chunking.
- Revenue of enterprise ``i`` in month ``t`` is ``revenue_i / 12 * season * trend * exp(0.3 h)
  * noise`` (noise lognormal sd 0.1); it falls to a quarter after a default and keeps fading.
  A month's external sales and purchases are that volume split over the month's payments (the
  count sets how lumpy it is, not how much). Purchases are the industry's cost-of-goods ratio of
  revenue times ``exp(-0.15 h)`` (:func:`cost_factor`: pricing power and input costs, smooth
  over the whole health range); payroll and overheads follow the enterprise's size (base
  revenue x trend), rent is fixed: the cash margin rises with health at every level, and weak
  firms lose money (operating leverage). When an account would go below zero it is funded
  just before its first entry of the month: from a sibling account of the same enterprise
  with spare cash (资金调拨), else by an online loan with probability ``sigmoid(-3 (h + 0.6))``,
  else by a shareholder loan from the legal representative. Balances never go negative.
- Cash buffer: an enterprise aims at ``buffer_months(h) = exp(0.8 h)`` months of its
  expected outgoings (0.45 at h = -1, 2.2 at h = 1; clipped to 0.1 .. 8); it opens the run with
  that buffer (x lognormal sd 0.3), and each month cash above 1.3 x the target is partly
  (50-100 %) paid out to the owner (``dividend``: profit distributions of healthy firms, and
  owners taking cash out of firms whose health, and target, fell). Healthy firms accumulate
  cash up to that band, weak ones drain towards zero and live on funding.
- A payment between two consortium accounts is two entries (payer's debit, payee's credit)
  sharing ``payment_id``; the credit is booked the same day (75 %), the next day (20 %) or
  two to three days later. Supplier payments are made on the edge's contract day plus a delay
  with mean :func:`delay_days` ``= 1 + 3 exp(-0.9 h)`` days (2.2 at h = 1, 4 at 0, 8.4 at -1,
  19 at -2, at most 45).
- Receivables: a member customer leaves a share ``health.unpaid_share(h last month)`` of its
  trade payments unpaid (each payment dropped with that probability; 0.03 at h = 0, 0.23 at
  h = -1), and pays nothing due on or after its default day; its suppliers' inflows fall and
  their health takes the matching ``receivable`` loss in :mod:`flowbureau.synth.health`.
- Distress also shows, with smooth dependence on health, as: returned payments (退汇/退票,
  ``0.003 + 0.03 sigmoid(-1.5 h - 1.5)`` of supplier payments), late payroll (split in two;
  ``0.6 sigmoid(-3 (h + 1))``), late tax with a late fee (``0.5 sigmoid(-3 (h + 1.2))``), late
  rent (``0.5 sigmoid(-3 (h + 1))``), online borrowing (odds ``0.003 exp(-1.3 h)`` a month)
  and missed online repayments (``sigmoid(-3.5 - 2 h)``), non-renewal of bank loans; after a
  default, loan repayments stop or bounce (debit and same-day reversal).
- Real-flow anomalies planted here (``anomaly`` column): rare huge amounts (``outlier``),
  circular flows A->B->C->A within days (``circular_flow``) and bursts of round amounts
  (``round_burst``). Data-quality problems are planted later, when files are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

import numpy as np

from flowbureau.schema import TxType
from flowbureau.synth.calendar import SECONDS_PER_DAY, Calendar
from flowbureau.synth.health import HealthPanel, sigmoid, unpaid_share
from flowbureau.synth.reference import CHINESE_NEW_YEAR, INDUSTRY_PROFILES, gbt4754
from flowbureau.synth.world import DIVISIONS, KIND_MEMBER, World, stream


class Flow(NamedTuple):
    """A kind of flow: its standard category and the descriptions banks print for it."""

    name: str
    tx_type: TxType
    texts: tuple[tuple[str, str], ...]


T = TxType
FLOWS: tuple[Flow, ...] = (
    Flow(
        "sales",
        T.SALES_RECEIPT,
        (
            ("货款", "PAYMENT FOR GOODS"),
            ("销售货款", "SALES PROCEEDS"),
            ("收货款", "PAYMENT FOR GOODS"),
            ("回款", "PAYMENT RECEIVED"),
            ("合同款", "CONTRACT PAYMENT"),
        ),
    ),
    Flow(
        "purchase",
        T.SUPPLIER_PAYMENT,
        (
            ("货款", "PAYMENT FOR GOODS"),
            ("支付货款", "PAYMENT FOR GOODS"),
            ("采购款", "PURCHASE"),
            ("材料款", "MATERIALS"),
            ("预付货款", "PREPAYMENT FOR GOODS"),
        ),
    ),
    Flow(
        "services",
        T.SUPPLIER_PAYMENT,
        (
            ("服务费", "SERVICE FEE"),
            ("技术服务费", "TECHNICAL SERVICE FEE"),
            ("运费", "FREIGHT"),
            ("咨询费", "CONSULTING FEE"),
        ),
    ),
    Flow(
        "export_receipt",
        T.SALES_RECEIPT,
        (("出口收汇", "EXPORT PROCEEDS"), ("货款", "PAYMENT FOR GOODS")),
    ),
    Flow(
        "card_settlement",
        T.SALES_RECEIPT,
        (
            ("POS结算", "CARD SETTLEMENT"),
            ("银行卡收单结算", "CARD SETTLEMENT"),
            ("商户结算款", "MERCHANT SETTLEMENT"),
        ),
    ),
    Flow("cash_deposit", T.CASH, (("现金存入", "CASH DEPOSIT"), ("现金缴款", "CASH DEPOSIT"))),
    Flow("cash_withdrawal", T.CASH, (("现金支取", "CASH WITHDRAWAL"), ("备用金", "PETTY CASH"))),
    Flow(
        "payroll", T.PAYROLL, (("代发工资", "SALARY"), ("工资", "SALARY"), ("发放工资", "SALARY"))
    ),
    Flow("bonus", T.PAYROLL, (("年终奖", "ANNUAL BONUS"), ("代发奖金", "BONUS"))),
    Flow(
        "social_insurance",
        T.PAYROLL,
        (("社会保险费", "SOCIAL INSURANCE"), ("社保费", "SOCIAL INSURANCE")),
    ),
    Flow(
        "housing_fund", T.PAYROLL, (("住房公积金", "HOUSING FUND"), ("公积金汇缴", "HOUSING FUND"))
    ),
    Flow("vat", T.TAX, (("增值税", "VAT"),)),
    Flow(
        "surtax",
        T.TAX,
        (("城市维护建设税", "URBAN MAINTENANCE TAX"), ("教育费附加", "EDUCATION SURCHARGE")),
    ),
    Flow("cit", T.TAX, (("企业所得税", "CORPORATE INCOME TAX"),)),
    Flow("iit", T.TAX, (("个人所得税", "INDIVIDUAL INCOME TAX"),)),
    Flow("tax_late_fee", T.TAX, (("税款滞纳金", "TAX LATE FEE"), ("滞纳金", "LATE FEE"))),
    Flow("electricity", T.UTILITIES, (("电费", "ELECTRICITY"),)),
    Flow("water", T.UTILITIES, (("水费", "WATER"),)),
    Flow("gas", T.UTILITIES, (("燃气费", "GAS"),)),
    Flow(
        "rent",
        T.RENT,
        (
            ("房租", "RENT"),
            ("租金", "RENT"),
            ("厂房租金", "FACTORY RENT"),
            ("办公室租金", "OFFICE RENT"),
        ),
    ),
    Flow(
        "loan_drawdown",
        T.LOAN_DISBURSEMENT,
        (("贷款发放", "LOAN DRAWDOWN"), ("流动资金贷款放款", "WORKING CAPITAL LOAN")),
    ),
    Flow(
        "loan_principal",
        T.LOAN_REPAYMENT,
        (("归还贷款本金", "LOAN REPAYMENT"), ("贷款还款", "LOAN REPAYMENT")),
    ),
    Flow("loan_interest", T.INTEREST, (("贷款利息", "LOAN INTEREST"), ("利息", "INTEREST"))),
    Flow("deposit_interest", T.INTEREST, (("结息", "INTEREST"), ("活期利息", "DEPOSIT INTEREST"))),
    Flow(
        "online_drawdown",
        T.ONLINE_LENDING,
        (("借款", "LOAN"), ("网贷放款", "ONLINE LOAN"), ("借款发放", "LOAN")),
    ),
    Flow(
        "online_repayment",
        T.ONLINE_LENDING,
        (
            ("还款", "LOAN REPAYMENT"),
            ("网贷还款", "ONLINE LOAN REPAYMENT"),
            ("借款还款", "LOAN REPAYMENT"),
        ),
    ),
    Flow(
        "transfer_fee",
        T.FEES,
        (
            ("手续费", "BANK CHARGES"),
            ("转账手续费", "TRANSFER FEE"),
            ("跨行汇款手续费", "TRANSFER FEE"),
        ),
    ),
    Flow(
        "account_fee",
        T.FEES,
        (("账户管理费", "ACCOUNT FEE"), ("网银年费", "E-BANKING FEE"), ("短信服务费", "SMS FEE")),
    ),
    Flow(
        "internal_out",
        T.INTERNAL_TRANSFER,
        (
            ("资金调拨", "INTERNAL TRANSFER"),
            ("内部转账", "INTERNAL TRANSFER"),
            ("资金归集", "CASH POOLING"),
        ),
    ),
    Flow(
        "internal_in",
        T.INTERNAL_TRANSFER,
        (
            ("资金调拨", "INTERNAL TRANSFER"),
            ("内部转账", "INTERNAL TRANSFER"),
            ("资金归集", "CASH POOLING"),
        ),
    ),
    Flow("fx_sell", T.INTERNAL_TRANSFER, (("结汇", "FX SETTLEMENT"),)),
    Flow("fx_buy", T.INTERNAL_TRANSFER, (("结汇", "FX SETTLEMENT"),)),
    Flow(
        "shareholder_loan",
        T.OTHER,
        (("股东借款", "SHAREHOLDER LOAN"), ("借款", "LOAN FROM SHAREHOLDER")),
    ),
    Flow(
        "payment_return",
        T.SUPPLIER_PAYMENT,
        (
            ("退汇", "RETURNED PAYMENT"),
            ("退票", "RETURNED PAYMENT"),
            ("退汇 收款账户户名不符", "RETURNED NAME MISMATCH"),
            ("退汇 账户已销户", "RETURNED ACCOUNT CLOSED"),
        ),
    ),
    Flow(
        "repayment_reversal",
        T.LOAN_REPAYMENT,
        (("还款冲正", "REVERSAL"), ("扣款失败冲正", "REVERSAL")),
    ),
    Flow("transfer_out", T.OTHER, (("往来款", "TRANSFER"), ("转账", "TRANSFER"), ("借款", "LOAN"))),
    Flow(
        "dividend",
        T.OTHER,
        (("股东分红", "DIVIDEND"), ("利润分配", "PROFIT DISTRIBUTION"), ("分红款", "DIVIDEND")),
    ),
)
"""Every kind of flow the generator emits (``flow`` column of the ground truth)."""

FLOW = {f.name: i for i, f in enumerate(FLOWS)}
DESCRIPTIONS: tuple[tuple[str, str], ...] = tuple(text for f in FLOWS for text in f.texts)
"""All descriptions (Chinese, ASCII English); ``desc`` indexes into it."""
_DESC_BASE = np.cumsum([0, *(len(f.texts) for f in FLOWS)])
NO_END_TO_END = frozenset(
    FLOW[n]
    for n in (
        "transfer_fee",
        "account_fee",
        "deposit_interest",
        "loan_interest",
        "cash_deposit",
        "cash_withdrawal",
    )
)
"""Flows without an end-to-end reference (bank-internal postings)."""

ANOMALIES = ("", "outlier", "circular_flow", "round_burst")
"""Real-flow anomaly codes (index = code; 0 = none)."""

_ROUND_BUSINESS = (0.45, 0.1)  # share of payments rounded to whole yuan, to 100 yuan
REVENUE_SENSITIVITY = 0.3
"""Revenue scales with ``exp(0.3 h)``."""
COST_SLOPE = 0.15
"""Purchases per unit of revenue are ``exp(-0.15 h)`` times the industry's cost-of-goods ratio
(pricing power, input costs): 16 % dearer per unit of health lost, over the whole range."""
BUFFER_MONTHS = 1.0
BUFFER_SLOPE = 0.8
"""Target cash buffer: ``1.0 x exp(0.8 h)`` months of expected outgoings (0.45 at h = -1, 2.2
at h = 1), clipped to 0.1 .. 8."""
DIVIDEND_ABOVE = 1.3
"""Each month, cash above 1.3 x the target buffer is partly paid out to the owner."""


def cost_factor(h: np.ndarray) -> np.ndarray:
    """Purchases per unit of revenue relative to the industry's ratio, given health ``h``."""
    return np.asarray(np.exp(-COST_SLOPE * np.asarray(h, dtype=np.float64)))


def buffer_months(h: np.ndarray) -> np.ndarray:
    """The cash an enterprise aims to hold, in months of its expected outgoings."""
    return np.asarray(
        np.clip(BUFFER_MONTHS * np.exp(BUFFER_SLOPE * np.asarray(h, dtype=np.float64)), 0.1, 8.0)
    )


def delay_days(h: np.ndarray) -> np.ndarray:
    """Mean delay (days) of a supplier payment past its contract day: ``1 + 3 exp(-0.9 h)``,
    at most 45 (2.2 at h = 1, 4 at h = 0, 8.4 at h = -1, 19 at h = -2)."""
    return np.asarray(np.minimum(45.0, 1.0 + 3.0 * np.exp(-0.9 * np.asarray(h, dtype=np.float64))))


def late_probability(h: np.ndarray, most: float, centre: float) -> np.ndarray:
    """Probability of paying payroll, tax or rent late: ``most x sigmoid(-3 (h - centre))``."""
    return most * sigmoid(-3.0 * (np.asarray(h, dtype=np.float64) - centre))


@dataclass(slots=True)
class Events:
    """Columnar entries: one element per booked entry."""

    acct: np.ndarray
    amount: np.ndarray
    ts: np.ndarray
    cp: np.ndarray
    flow: np.ndarray
    desc: np.ndarray
    pid: np.ndarray
    anomaly: np.ndarray
    group: np.ndarray
    order: np.ndarray

    def __len__(self) -> int:
        return len(self.acct)

    @staticmethod
    def empty() -> Events:
        """No entries."""
        i = np.zeros(0, dtype=np.int64)
        return Events(
            i,
            i,
            i,
            i,
            i.astype(np.int16),
            i.astype(np.int32),
            i,
            i.astype(np.int8),
            i,
            i.astype(np.int32),
        )

    @staticmethod
    def concat(parts: list[Events]) -> Events:
        """All ``parts`` one after another."""
        if not parts:
            return Events.empty()
        return Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def take(self, index: np.ndarray) -> Events:
        """The entries at ``index`` (an index array or a boolean mask)."""
        return Events(*(getattr(self, f)[index] for f in _FIELDS))


_FIELDS = ("acct", "amount", "ts", "cp", "flow", "desc", "pid", "anomaly", "group", "order")


@dataclass(slots=True)
class OnlineLoans:
    """Online (microcredit) loans: state for repayments and the public record."""

    enterprise: list[int] = field(default_factory=list)
    account: list[int] = field(default_factory=list)
    platform: list[int] = field(default_factory=list)
    principal: list[int] = field(default_factory=list)
    term: list[int] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    """Day number of the drawdown."""
    paid: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    first_overdue: list[int] = field(default_factory=list)
    """Day number of the first missed instalment, or -1."""
    closed: list[int] = field(default_factory=list)
    """Day number of the last instalment paid when all were paid, or -1."""
    emergency: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.enterprise)


@dataclass(slots=True)
class BankLoans:
    """Working-capital loans drawn under the facilities, tranche by tranche."""

    facility: list[int] = field(default_factory=list)
    drawn_month: list[int] = field(default_factory=list)
    drawn_day: list[int] = field(default_factory=list)
    amount: list[int] = field(default_factory=list)
    outstanding: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    """``active``, ``repaid``, ``defaulted``."""


@dataclass(slots=True)
class MonthEntries:
    """The entries booked in one month, sorted by account and time, with running balances."""

    month: int
    events: Events
    balance_after: np.ndarray
    opening: np.ndarray
    """Per account: balance at the start of the month."""
    closing: np.ndarray
    """Per account: balance at the end of the month."""


class FlowSimulator:
    """Generates the months of a run in order; keeps balances and scheduled events between them."""

    def __init__(
        self, world: World, health: HealthPanel, calendar: Calendar, *, anomalies: bool
    ) -> None:
        self.world = world
        self.health = health
        self.cal = calendar
        self.anomalies = anomalies
        ent = world.enterprises
        acc = world.accounts
        self.n = ent.n
        profiles = [INDUSTRY_PROFILES[DIVISIONS[d]] for d in ent.division.tolist()]
        self.cogs = np.array([p.cogs for p in profiles])
        self.payroll_ratio = np.array([p.payroll for p in profiles])
        self.util_ratio = np.array([p.utilities for p in profiles])
        self.cash_ratio = np.array([p.cash for p in profiles])
        table = gbt4754()
        self.section = [table.divisions[DIVISIONS[d]].section for d in ent.division.tolist()]
        self.base = ent.revenue / 12.0
        self.rent_ratio = ent.rent / self.base
        self.other_ratio = np.clip(
            1.0 - 0.04 - 0.03 - self.cogs - self.payroll_ratio - self.rent_ratio - self.util_ratio,
            0.0,
            0.3,
        )
        links = world.links
        expected_member_sales = np.bincount(
            links.supplier,
            weights=links.share * self.cogs[links.customer] * self.base[links.customer],
            minlength=self.n,
        )
        self.external_sales_share = np.clip(1.0 - expected_member_sales / self.base, 0.1, 1.0)
        rng = stream(world.seed, "flows", 1_000_000)
        self.small_taxpayer = ent.revenue < 5.0e6
        self.pays_fund = rng.random(self.n) < 0.5
        self.quarterly_rent = rng.random(self.n) < 0.3
        self.processor = links.processors[rng.integers(0, len(links.processors), self.n)]
        self.fx_day = rng.integers(3, 26, self.n)
        self.acct_owner = acc.owner
        sizes = np.array([len(a) for a in acc.by_enterprise])
        self.acct_ptr = np.concatenate([[0], np.cumsum(sizes)])
        self.acct_list = np.array(
            [a for accounts in acc.by_enterprise for a in accounts], dtype=np.int64
        )
        self.acct_bank = acc.bank
        self.acct_usd = acc.usd
        self.cp_bank_index = self._cp_bank_index()
        # opening balances: the target buffer (months of expected outgoings, rising with health)
        h0 = health.health[:, 0]
        cash = (
            buffer_months(h0) * self.outgoings(h0, np.exp(REVENUE_SENSITIVITY * h0), self.base)
        ) * rng.lognormal(0.0, 0.3, self.n)
        balance = np.zeros(acc.n, dtype=np.int64)
        for i in range(self.n):
            accounts = acc.by_enterprise[i]
            split = np.array([0.7] + [0.3 / max(1, len(accounts) - 1)] * (len(accounts) - 1))
            balance[accounts] = np.round(cash[i] * split * 100).astype(np.int64)
        usd_rows = np.flatnonzero(acc.usd)
        balance[usd_rows] = np.round(0.1 * self.base[acc.owner[usd_rows]] / 7.1 * 100).astype(
            np.int64
        )
        self.balance = balance
        self.next_pid = 1
        self.scheduled: dict[int, list[Events]] = {}
        self.online = OnlineLoans()
        self.loans = BankLoans()
        self._init_loans()
        self.planted: dict[str, int] = dict.fromkeys(ANOMALIES[1:], 0)
        self.fx_rate = 7.1 + 0.15 * np.sin(np.arange(world.months) / 5.0 + world.seed % 7)

    # -- helpers ----------------------------------------------------------------------------

    def outgoings(self, h: np.ndarray, activity: np.ndarray, size: np.ndarray) -> np.ndarray:
        """Expected monthly outgoings (yuan) at health ``h``, activity (revenue / base) and
        size (the grown base revenue, which payroll and overheads follow)."""
        variable = (self.cogs * cost_factor(h) + self.util_ratio + 0.03) * activity * self.base
        return np.asarray(
            variable + size * (self.payroll_ratio + self.other_ratio) + self.base * self.rent_ratio
        )

    def _cp_bank_index(self) -> np.ndarray:
        """Per counterparty: the consortium bank index of a member account, else -1."""
        cps = self.world.counterparties
        out = np.full(cps.n, -1, dtype=np.int64)
        members = np.flatnonzero(cps.kind == KIND_MEMBER)
        out[members] = self.acct_bank[members]
        return out

    def pids(self, k: int) -> np.ndarray:
        """``k`` new payment ids."""
        out = np.arange(self.next_pid, self.next_pid + k, dtype=np.int64)
        self.next_pid += k
        return out

    def desc(self, flow: int, acct: np.ndarray, salt: np.ndarray | int = 0) -> np.ndarray:
        """Description index: each enterprise keeps its habitual wording for a flow."""
        n_texts = len(FLOWS[flow].texts)
        owner = self.acct_owner[acct]
        return np.asarray(
            _DESC_BASE[flow] + (owner * 31 + flow * 7 + salt) % n_texts, dtype=np.int32
        )

    def events(
        self,
        acct: np.ndarray,
        amount: np.ndarray,
        ts: np.ndarray,
        cp: np.ndarray | int,
        flow: int,
        *,
        pid: np.ndarray | None = None,
        desc: np.ndarray | None = None,
        anomaly: int = 0,
        group: np.ndarray | None = None,
        order: int = 0,
    ) -> Events:
        """Build entries of one flow."""
        k = len(acct)
        acct = np.asarray(acct, dtype=np.int64)
        return Events(
            acct=acct,
            amount=np.asarray(amount, dtype=np.int64),
            ts=np.asarray(ts, dtype=np.int64),
            cp=np.broadcast_to(np.asarray(cp, dtype=np.int64), (k,)).copy(),
            flow=np.full(k, flow, dtype=np.int16),
            desc=self.desc(flow, acct) if desc is None else desc.astype(np.int32),
            pid=self.pids(k) if pid is None else pid,
            anomaly=np.full(k, anomaly, dtype=np.int8),
            group=np.full(k, -1, dtype=np.int64) if group is None else group,
            order=np.full(k, order, dtype=np.int32),
        )

    def transfer(
        self,
        payer: np.ndarray,
        payee: np.ndarray,
        amount: np.ndarray,
        ts: np.ndarray,
        rng: np.random.Generator,
        *,
        payer_flow: int,
        payee_flow: int,
        anomaly: int = 0,
        group: np.ndarray | None = None,
    ) -> tuple[Events, Events]:
        """A payment between two consortium accounts: the payer's debit and the payee's credit
        (booked the same day or up to three days later), sharing one payment id and wording."""
        k = len(payer)
        pid = self.pids(k)
        desc = self.desc(payer_flow, payer)
        lag_days = np.select(
            [rng.random(k) < 0.75, rng.random(k) < 0.8], [0, 1], default=rng.integers(2, 4, k)
        )
        seconds = ts % SECONDS_PER_DAY
        later = np.minimum(seconds + rng.integers(60, 3 * 3600, k), SECONDS_PER_DAY - 1)
        payee_ts = (
            ts
            - seconds
            + lag_days * SECONDS_PER_DAY
            + np.where(lag_days == 0, later, _business_seconds(rng, k))
        )
        debit = self.events(
            payer, -amount, ts, payee, payer_flow, pid=pid, desc=desc, anomaly=anomaly, group=group
        )
        credit = self.events(
            payee,
            amount,
            payee_ts,
            payer,
            payee_flow,
            pid=pid,
            desc=desc,
            anomaly=anomaly,
            group=group,
        )
        return debit, credit

    def days(self, t: int, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """``k`` day numbers of month ``t`` drawn with per-day ``weights``."""
        cdf = np.cumsum(weights)
        index = np.minimum(
            np.searchsorted(cdf / cdf[-1], rng.random(k), side="right"), len(weights) - 1
        )
        return np.asarray(self.cal.first_day[t] + index)

    # -- the month ----------------------------------------------------------------------------

    def month(self, t: int) -> MonthEntries:
        """Generate month ``t`` (months must be generated in order)."""
        rng = stream(self.world.seed, "flows", t)
        world = self.world
        hp = self.health
        h = hp.health[:, t]
        alive = hp.active[:, t]
        defaulted_before = (hp.default_month >= 0) & (hp.default_month < t)
        since = np.where(defaulted_before, t - hp.default_month, 0)
        fade = np.where(
            defaulted_before,
            0.25 * np.exp(-(since - 1) / 2.0),
            np.where(hp.default_month == t, 0.7, 1.0),
        )
        season = np.array([self.cal.season(s, t) for s in self.section])
        trend = np.exp(world.enterprises.growth * t / 12.0)
        act = (
            season
            * trend
            * np.exp(REVENUE_SENSITIVITY * h)
            * rng.lognormal(0.0, 0.1, self.n)
            * fade
        )
        revenue = self.base * act
        solvent = (hp.default_month < 0) | (hp.default_month > t)
        ctx = _Month(
            t=t,
            rng=rng,
            h=h,
            alive=alive,
            solvent=solvent,
            fade=fade,
            revenue=revenue,
            size=self.base * trend,
        )
        parts: list[Events] = []
        parts += self._trade(ctx)
        parts += self._external_sales(ctx)
        parts += self._external_purchases(ctx)
        parts += self._retail(ctx)
        parts += self._payroll(ctx)
        parts += self._taxes(ctx)
        parts += self._utilities_and_rent(ctx)
        parts += self._bank_loans(ctx)
        parts += self._online_repayments(ctx)
        parts += self._new_online_loans(ctx)
        parts += self._treasury(ctx)
        parts += self._dividends(ctx)
        if self.anomalies:
            parts += self._circular(ctx)
            parts += self._bursts(ctx)
        events = Events.concat(parts)
        if self.anomalies:
            self._outliers(ctx, events)
        events = Events.concat([events, *self._returns(ctx, events)])
        events = Events.concat([events, *self._fees(ctx, events)])
        events = self._schedule(t, events)
        return self._settle(ctx, events)

    def _schedule(self, t: int, events: Events) -> Events:
        """Keep this month's entries; file later ones under their month; drop any after the run."""
        bounds = self.cal.first_day * SECONDS_PER_DAY
        month_of = np.searchsorted(bounds, events.ts, side="right") - 1
        current = [events.take(month_of == t)]
        for m in np.unique(month_of[month_of > t]).tolist():
            if m < self.world.months:
                self.scheduled.setdefault(m, []).append(events.take(month_of == m))
        return Events.concat(self.scheduled.pop(t, []) + current)

    # -- flows --------------------------------------------------------------------------------

    def _trade(self, c: _Month) -> list[Events]:
        """Member-to-member purchases along the supply chain (both sides)."""
        links = self.world.links
        rng = c.rng
        customer = links.customer
        payer_h = c.h[customer]
        value = links.share * self.cogs[customer] * c.revenue[customer] * cost_factor(payer_h)
        freq = np.maximum(
            0.35,
            _frequency(self.world.enterprises.revenue[customer])
            * links.share
            * 1.3
            * self.world.config.activity,
        )
        count = rng.poisson(freq)
        count[~c.alive[customer]] = 0  # a defaulted customer pays its suppliers nothing
        edge = np.repeat(np.arange(len(customer)), count)
        if not len(edge):
            return []
        k = len(edge)
        amount = value[edge] / freq[edge] * rng.lognormal(-0.06125, 0.35, k)
        delay = rng.gamma(2.0, delay_days(payer_h[edge]) / 2.0)
        day = (
            self.cal.first_day[c.t]
            + np.clip(links.pay_day[edge] - 1 + rng.normal(0, 2, k), 0, 27).astype(np.int64)
            + delay.astype(np.int64)
        )
        day = self.cal.next_business_day(day)
        ts = day * SECONDS_PER_DAY + _business_seconds(rng, k)
        minor = _business_amount(rng, amount)
        # receivables a distressed customer never settles (health.unpaid_share of last month's
        # health: the supplier's health took the matching loss); payments due after the
        # customer's default day are not made
        previous = self.health.health[customer[edge], max(c.t - 1, 0)]
        unpaid = rng.random(k) < (unpaid_share(previous) if c.t > 0 else 0.0)
        default_day = self.health.default_day[customer[edge]]
        unpaid |= (default_day >= 0) & (day >= default_day)
        keep = (minor > 0) & ~unpaid
        debit, credit = self.transfer(
            links.payer_account[edge][keep],
            links.payee_account[edge][keep],
            minor[keep],
            ts[keep],
            rng,
            payer_flow=FLOW["purchase"],
            payee_flow=FLOW["sales"],
        )
        return [debit, credit]

    def _external_sales(self, c: _Month) -> list[Events]:
        ent = self.world.enterprises
        links = self.world.links
        acc = self.world.accounts
        rng = c.rng
        share = self.external_sales_share * (1.0 - 2.2 * self.cash_ratio)
        rate = (
            _frequency(ent.revenue)
            * 1.4
            * self.world.config.activity
            * np.where(c.alive, 1.0, c.fade)
        )
        count = rng.poisson(rate)
        owner = np.repeat(np.arange(self.n), count)
        parts: list[Events] = []
        if len(owner):
            k = len(owner)
            amount = _split(share * c.revenue, owner, rng.lognormal(0.0, 0.5, k), self.n)
            n_cust = links.ext_customer_ptr[owner + 1] - links.ext_customer_ptr[owner]
            pick = (n_cust * rng.random(k) ** 2).astype(np.int64)
            cp = links.ext_customer[links.ext_customer_ptr[owner] + pick]
            accts = self.acct_list[
                self.acct_ptr[owner] + cp % (self.acct_ptr[owner + 1] - self.acct_ptr[owner])
            ]
            day = self.days(c.t, self.cal.sales_day_weights(c.t), k, rng)
            ts = day * SECONDS_PER_DAY + _business_seconds(rng, k)
            parts.append(self.events(accts, _business_amount(rng, amount), ts, cp, FLOW["sales"]))
        # export receipts into USD accounts
        usd = np.flatnonzero(acc.usd_account >= 0)
        if len(usd):
            rate = 1.5 * self.world.config.activity * np.maximum(c.fade[usd], 0.01)
            count = rng.poisson(rate)
            owner = np.repeat(usd, count)
            k = len(owner)
            if k:
                per = 0.4 * share[owner] * c.revenue[owner] / np.repeat(rate, count)
                usd_amount = per / self.fx_rate[c.t] * rng.lognormal(-0.08, 0.4, k)
                day = self.days(c.t, self.cal.business_day_weights(c.t), k, rng)
                ts = day * SECONDS_PER_DAY + _business_seconds(rng, k)
                parts.append(
                    self.events(
                        acc.usd_account[owner],
                        _business_amount(rng, usd_amount),
                        ts,
                        links.foreign_customer[owner],
                        FLOW["export_receipt"],
                    )
                )
        return parts

    def _external_purchases(self, c: _Month) -> list[Events]:
        ent = self.world.enterprises
        links = self.world.links
        acc = self.world.accounts
        rng = c.rng
        purchases = self.cogs * c.revenue * cost_factor(c.h) * (1.0 - links.member_purchase_share)
        overhead = self.other_ratio * c.size * np.where(c.alive, 1.0, c.fade)
        parts: list[Events] = []
        for flow, total, freq in (
            (FLOW["purchase"], purchases, _frequency(ent.revenue) * 1.0),
            (FLOW["services"], overhead, np.full(self.n, 1.5)),
        ):
            rate = np.maximum(
                0.3, freq * self.world.config.activity * np.where(c.alive, 1.0, c.fade)
            )
            count = rng.poisson(rate)
            owner = np.repeat(np.arange(self.n), count)
            if not len(owner):
                continue
            k = len(owner)
            amount = _split(total, owner, rng.lognormal(0.0, 0.45, k), self.n)
            n_supp = links.ext_supplier_ptr[owner + 1] - links.ext_supplier_ptr[owner]
            cp = links.ext_supplier[
                links.ext_supplier_ptr[owner] + (n_supp * rng.random(k) ** 1.5).astype(np.int64)
            ]
            payer = np.where(
                rng.random(k) < 0.85,
                acc.primary[owner],
                self.acct_list[self.acct_ptr[owner + 1] - 1],
            )
            delay = rng.gamma(2.0, delay_days(c.h[owner]) / 2.0)
            day = self.days(c.t, self.cal.business_day_weights(c.t), k, rng) + delay.astype(
                np.int64
            )
            ts = day * SECONDS_PER_DAY + _business_seconds(rng, k)
            parts.append(self.events(payer, -_business_amount(rng, amount), ts, cp, flow))
        return parts

    def _retail(self, c: _Month) -> list[Events]:
        """Card settlements (daily, overnight batch) and cash deposits of shops and restaurants."""
        acc = self.world.accounts
        rng = c.rng
        shops = np.flatnonzero(self.cash_ratio > 0)
        if not len(shops):
            return []
        days = self.cal.month_days(c.t)
        n_days = days.stop - days.start
        parts: list[Events] = []
        daily = np.repeat(shops, n_days)
        day = np.tile(np.arange(n_days), len(shops)) + self.cal.first_day[c.t]
        card = (
            1.2
            * self.cash_ratio[daily]
            * c.revenue[daily]
            / n_days
            * rng.lognormal(-0.045, 0.3, len(daily))
        )
        keep = (rng.random(len(daily)) < np.minimum(1.0, self.world.config.activity)) & (
            c.fade[daily] > 0.1
        )
        ts = day * SECONDS_PER_DAY + rng.integers(2 * 3600, 6 * 3600, len(daily))
        parts.append(
            self.events(
                acc.primary[daily][keep],
                _business_amount(rng, card[keep]),
                ts[keep],
                self.processor[daily][keep],
                FLOW["card_settlement"],
            )
        )
        rate = 5.0 * np.maximum(c.fade[shops], 0.01)
        count = rng.poisson(rate)
        owner = np.repeat(shops, count)
        if len(owner):
            amount = (
                self.cash_ratio[owner]
                * c.revenue[owner]
                / np.repeat(rate, count)
                * rng.lognormal(-0.045, 0.3, len(owner))
            )
            day = self.days(c.t, self.cal.business_day_weights(c.t), len(owner), rng)
            ts = day * SECONDS_PER_DAY + rng.integers(10 * 3600, 16 * 3600, len(owner))
            parts.append(
                self.events(
                    acc.primary[owner],
                    np.round(amount, -2).astype(np.int64) * 100,
                    ts,
                    -1,
                    FLOW["cash_deposit"],
                )
            )
        # petty cash, everyone now and then
        count = rng.poisson(0.4 * c.fade)
        owner = np.repeat(np.arange(self.n), count)
        if len(owner):
            amount = np.round(rng.uniform(2_000, 30_000, len(owner)), -2)
            day = self.days(c.t, self.cal.business_day_weights(c.t), len(owner), rng)
            parts.append(
                self.events(
                    acc.primary[owner],
                    -(amount * 100).astype(np.int64),
                    day * SECONDS_PER_DAY + _business_seconds(rng, len(owner)),
                    -1,
                    FLOW["cash_withdrawal"],
                )
            )
        return parts

    def _payroll(self, c: _Month) -> list[Events]:
        ent = self.world.enterprises
        links = self.world.links
        acc = self.world.accounts
        rng = c.rng
        months_after = np.where(self.health.default_month >= 0, c.t - self.health.default_month, -1)
        paying = (self.health.default_month < 0) | (months_after < 2)
        who = np.flatnonzero(paying)
        cost = (
            self.payroll_ratio
            * c.size
            * np.where(months_after > 0, 0.4, 1.0)
            * rng.lognormal(0.0, 0.03, self.n)
        )
        net = cost * 0.65
        late = rng.random(self.n) < late_probability(c.h, 0.6, -1.0)
        split = late & (rng.random(self.n) < 0.4)
        day = (
            self.cal.first_day[c.t]
            + ent.pay_day
            - 1
            + np.where(late, rng.integers(5, 16, self.n), 0)
        )
        day = self.cal.next_business_day(day)
        parts: list[Events] = []
        branch = links.bank_branch[acc.primary]
        first = np.where(split, 0.6, 1.0)
        ts = day * SECONDS_PER_DAY + rng.integers(9 * 3600, 11 * 3600, self.n)
        parts.append(
            self.events(
                acc.primary[who],
                -np.round(net * first * 100)[who].astype(np.int64),
                ts[who],
                branch[who],
                FLOW["payroll"],
            )
        )
        second = np.flatnonzero(split & paying)
        if len(second):
            ts2 = (day[second] + rng.integers(5, 12, len(second))) * SECONDS_PER_DAY + rng.integers(
                9 * 3600, 11 * 3600, len(second)
            )
            parts.append(
                self.events(
                    acc.primary[second],
                    -np.round(net[second] * 0.4 * 100).astype(np.int64),
                    ts2,
                    branch[second],
                    FLOW["payroll"],
                )
            )
        # annual bonus in the month whose 15th falls within the month before Spring Festival
        if self._bonus_month(c.t):
            paid = who[c.h[who] > -0.8]
            bonus = net[paid] * rng.uniform(0.5, 1.5, len(paid)) * sigmoid(c.h[paid] * 2)
            bday = self.days(c.t, self.cal.business_day_weights(c.t), len(paid), rng)
            parts.append(
                self.events(
                    acc.primary[paid],
                    -np.round(bonus * 100).astype(np.int64),
                    bday * SECONDS_PER_DAY + rng.integers(9 * 3600, 12 * 3600, len(paid)),
                    branch[paid],
                    FLOW["bonus"],
                )
            )
        si_day = self.cal.first_day[c.t] + rng.integers(14, 24, len(who))
        parts.append(
            self.events(
                acc.primary[who],
                -np.round(cost[who] * 0.27 * 100).astype(np.int64),
                si_day * SECONDS_PER_DAY + rng.integers(1 * 3600, 6 * 3600, len(who)),
                links.tax[who],
                FLOW["social_insurance"],
            )
        )
        fund = who[self.pays_fund[who]]
        f_day = self.cal.next_business_day(self.cal.first_day[c.t] + rng.integers(4, 14, len(fund)))
        parts.append(
            self.events(
                acc.primary[fund],
                -np.round(cost[fund] * 0.05 * 100).astype(np.int64),
                f_day * SECONDS_PER_DAY + _business_seconds(rng, len(fund)),
                links.fund[fund],
                FLOW["housing_fund"],
            )
        )
        return parts

    def _bonus_month(self, t: int) -> bool:
        """True when the annual bonus (paid 20 days before Spring Festival) falls in month ``t``."""
        first = self.cal.month_first[t]
        end = self.cal.month_first[t + 1]
        for year in (first.year, first.year + 1):
            pay_day = CHINESE_NEW_YEAR[year] - timedelta(days=20)
            if first <= pay_day < end:
                return True
        return False

    def _taxes(self, c: _Month) -> list[Events]:
        links = self.world.links
        acc = self.world.accounts
        rng = c.rng
        moy = self.cal.month_first[c.t].month
        quarter_start = moy in (1, 4, 7, 10)
        months_after = np.where(self.health.default_month >= 0, c.t - self.health.default_month, -1)
        paying = (self.health.default_month < 0) | (months_after < 1)
        vat_months = np.where(self.small_taxpayer, 3 if quarter_start else 0, 1)
        vat = np.where(self.small_taxpayer, 0.01, 0.025) * c.revenue * vat_months
        who = np.flatnonzero(paying & (vat > 0))
        if not len(who):
            return []
        late = rng.random(len(who)) < late_probability(c.h[who], 0.5, -1.2)
        late_days = np.where(late, rng.integers(3, 21, len(who)), 0)
        day = (
            self.cal.next_business_day(self.cal.first_day[c.t] + rng.integers(7, 14, len(who)))
            + late_days
        )
        ts = day * SECONDS_PER_DAY + rng.integers(8 * 3600, 17 * 3600, len(who))
        parts: list[Events] = []
        tax_cp = links.tax[who]
        payer = acc.primary[who]
        amount = np.round(vat[who] * 100).astype(np.int64)
        parts.append(self.events(payer, -amount, ts, tax_cp, FLOW["vat"]))
        base = FLOW["surtax"]
        for variant, share in ((0, 0.07), (1, 0.05)):
            parts.append(
                self.events(
                    payer,
                    -np.round(amount * share).astype(np.int64),
                    ts + 1 + variant,
                    tax_cp,
                    base,
                    desc=np.full(len(who), _DESC_BASE[base] + variant),
                )
            )
        iit = np.round(self.payroll_ratio[who] * c.size[who] * 0.03 * 100).astype(np.int64)
        parts.append(self.events(payer, -iit, ts + 3, tax_cp, FLOW["iit"]))
        fee_rows = np.flatnonzero(late)
        if len(fee_rows):
            fee = np.maximum(
                1, np.round((amount[fee_rows] + iit[fee_rows]) * 0.0005 * late_days[fee_rows])
            ).astype(np.int64)
            parts.append(
                self.events(
                    payer[fee_rows], -fee, ts[fee_rows] + 5, tax_cp[fee_rows], FLOW["tax_late_fee"]
                )
            )
        if quarter_start:
            profitable = who[c.h[who] > -0.5]
            cit = np.round(0.25 * 0.04 * 3 * c.revenue[profitable] * 100).astype(np.int64)
            cday = self.cal.next_business_day(
                self.cal.first_day[c.t] + rng.integers(7, 14, len(profitable))
            )
            parts.append(
                self.events(
                    acc.primary[profitable],
                    -cit,
                    cday * SECONDS_PER_DAY + rng.integers(8 * 3600, 17 * 3600, len(profitable)),
                    links.tax[profitable],
                    FLOW["cit"],
                )
            )
        return parts

    def _utilities_and_rent(self, c: _Month) -> list[Events]:
        ent = self.world.enterprises
        links = self.world.links
        acc = self.world.accounts
        rng = c.rng
        parts: list[Events] = []
        util = self.util_ratio * c.revenue
        has_gas = np.isin(np.array(self.section), ["C", "H"])
        for column, (name, share, lo, hi) in enumerate(
            (("electricity", 0.7, 7, 12), ("water", 0.1, 14, 20), ("gas", 0.2, 9, 16))
        ):
            who = np.flatnonzero((c.fade > 0.05) & (has_gas if name == "gas" else True))
            amount = np.round(util[who] * share * rng.lognormal(0.0, 0.1, len(who)) * 100).astype(
                np.int64
            )
            day = self.cal.first_day[c.t] + rng.integers(lo, hi, len(who))
            ts = day * SECONDS_PER_DAY + rng.integers(1 * 3600, 6 * 3600, len(who))
            keep = amount > 0
            parts.append(
                self.events(
                    acc.primary[who][keep],
                    -amount[keep],
                    ts[keep],
                    links.utilities[who, column][keep],
                    FLOW[name],
                )
            )
        moy = self.cal.month_first[c.t].month
        monthly = ~self.quarterly_rent
        quarterly = self.quarterly_rent & (moy in (1, 4, 7, 10))
        paying = (monthly | quarterly) & (c.fade > 0.2)
        who = np.flatnonzero(paying)
        periods = np.where(self.quarterly_rent[who], 3, 1)
        late = rng.random(len(who)) < late_probability(c.h[who], 0.5, -1.0)
        day = self.cal.next_business_day(
            self.cal.first_day[c.t] + rng.integers(0, 5, len(who))
        ) + np.where(late, rng.integers(5, 20, len(who)), 0)
        ts = day * SECONDS_PER_DAY + _business_seconds(rng, len(who))
        amount = (np.round(ent.rent[who] * periods, -2) * 100).astype(np.int64)
        keep = amount > 0
        parts.append(
            self.events(
                acc.primary[who][keep],
                -amount[keep],
                ts[keep],
                links.landlord[who][keep],
                FLOW["rent"],
            )
        )
        return parts

    # -- loans ---------------------------------------------------------------------------------

    def _init_loans(self) -> None:
        fac = self.world.facilities
        for f in range(len(fac.enterprise)):
            first = int(fac.first_month[f])
            term = int(fac.term[f])
            drawn = first
            while drawn + term <= 0:
                drawn += term
            limit = int(fac.limit_minor[f])
            if drawn < 0:
                elapsed = -drawn
                outstanding = limit - (limit * elapsed // term if fac.amortising[f] else 0)
                self._add_loan(f, drawn, -1, limit, outstanding)
            else:
                self._add_loan(f, drawn, -1, limit, 0)

    def _add_loan(self, facility: int, month: int, day: int, amount: int, outstanding: int) -> None:
        loans = self.loans
        loans.facility.append(facility)
        loans.drawn_month.append(month)
        loans.drawn_day.append(day)
        loans.amount.append(amount)
        loans.outstanding.append(outstanding)
        loans.status.append("active")

    def _bank_loans(self, c: _Month) -> list[Events]:
        """Drawdowns, monthly interest on the 21st, instalments, maturity and renewal (借新还旧)."""
        fac = self.world.facilities
        links = self.world.links
        hp = self.health
        rng = c.rng
        t = c.t
        first = self.cal.first_day[t]
        rows: list[tuple[int, int, int, int, int]] = []  # account, amount, day, flow, seconds
        bounce: list[tuple[int, int, int, int]] = []
        loans = self.loans
        for k in range(len(loans.facility)):
            if loans.status[k] != "active":
                continue
            f = loans.facility[k]
            i = int(fac.enterprise[f])
            acct = int(fac.account[f])
            term = int(fac.term[f])
            drawn = loans.drawn_month[k]
            dead = hp.default_month[i] >= 0 and (
                hp.default_month[i] < t or hp.default_month[i] == t
            )
            draw_day = first + int(rng.integers(4, 25))
            if drawn == t and loans.outstanding[k] == 0:
                if dead:
                    loans.status[k] = "cancelled"
                    continue
                loans.outstanding[k] = loans.amount[k]
                loans.drawn_day[k] = draw_day
                rows.append((acct, loans.amount[k], draw_day, FLOW["loan_drawdown"], 10 * 3600))
                continue
            if drawn >= t or loans.outstanding[k] <= 0:
                continue
            interest = round(loans.outstanding[k] * float(fac.rate[f]) / 12)
            principal = 0
            matured = drawn + term == t
            if matured:
                principal = loans.outstanding[k]
            elif fac.amortising[f]:
                principal = min(loans.outstanding[k], loans.amount[k] // term)
            if dead:
                if rng.random() < 0.5:
                    flow = FLOW["loan_principal"] if principal else FLOW["loan_interest"]
                    bounce.append((acct, interest + principal, first + 20, flow))
                if t - int(hp.default_month[i]) >= 2 or matured:
                    loans.status[k] = "defaulted"
                continue
            rows.append((acct, -interest, first + 20, FLOW["loan_interest"], 30 * 60))
            if principal:
                pay_day = first + (
                    20 if fac.amortising[f] and not matured else int(rng.integers(4, 25))
                )
                rows.append((acct, -principal, pay_day, FLOW["loan_principal"], 9 * 3600))
                loans.outstanding[k] -= principal
            if matured:
                loans.status[k] = "repaid"
                if c.h[i] > -0.8 and rng.random() < 0.9:
                    scale = 1 + 0.1 * float(np.clip(c.h[i], -1, 1))
                    amount = max(
                        1_000_000, round(int(fac.limit_minor[f]) * scale / 1_000_000) * 1_000_000
                    )
                    new_day = pay_day + int(rng.integers(0, 3))
                    self._add_loan(f, t, new_day, amount, amount)
                    rows.append((acct, amount, new_day, FLOW["loan_drawdown"], 14 * 3600))
        parts: list[Events] = []
        if rows:
            arr = np.array(rows, dtype=np.int64)
            for flow in np.unique(arr[:, 3]).tolist():
                sel = arr[arr[:, 3] == flow]
                ts = sel[:, 2] * SECONDS_PER_DAY + sel[:, 4] + rng.integers(0, 1800, len(sel))
                cp = links.bank_branch[sel[:, 0]]
                parts.append(self.events(sel[:, 0], sel[:, 1], ts, cp, int(flow)))
        if bounce:
            arr = np.array(bounce, dtype=np.int64)
            ts = arr[:, 2] * SECONDS_PER_DAY + 3600 + rng.integers(0, 1800, len(arr))
            cp = links.bank_branch[arr[:, 0]]
            for flow in np.unique(arr[:, 3]).tolist():
                sel = arr[:, 3] == flow
                pid = self.pids(int(sel.sum()))
                parts.append(
                    self.events(arr[sel, 0], -arr[sel, 1], ts[sel], cp[sel], int(flow), pid=pid)
                )
                parts.append(
                    self.events(
                        arr[sel, 0],
                        arr[sel, 1],
                        ts[sel] + 300,
                        cp[sel],
                        FLOW["repayment_reversal"],
                        pid=pid,
                    )
                )
        return parts

    def _open_online(
        self,
        i: np.ndarray,
        acct: np.ndarray,
        principal: np.ndarray,
        day: np.ndarray,
        rng: np.random.Generator,
        *,
        emergency: bool,
    ) -> None:
        ol = self.online
        platforms = self.world.links.platforms
        for j in range(len(i)):
            ol.enterprise.append(int(i[j]))
            ol.account.append(int(acct[j]))
            ol.platform.append(int(platforms[int(rng.integers(0, len(platforms)))]))
            ol.principal.append(int(principal[j]))
            ol.term.append(int(rng.choice([3, 6, 12])))
            ol.rate.append(float(rng.uniform(0.12, 0.24)))
            ol.opened.append(int(day[j]))
            ol.paid.append(0)
            ol.missed.append(0)
            ol.first_overdue.append(-1)
            ol.closed.append(-1)
            ol.emergency.append(emergency)

    def _new_online_loans(self, c: _Month) -> list[Events]:
        rng = c.rng
        acc = self.world.accounts
        p = np.minimum(0.12, 0.003 * np.exp(-1.3 * c.h)) * c.alive
        who = np.flatnonzero(rng.random(self.n) < p)
        if not len(who):
            return []
        principal = _online_principal(self.world.enterprises.revenue[who], rng)
        day = self.days(c.t, self.cal.day_weight[self.cal.month_days(c.t)], len(who), rng)
        start = len(self.online)
        self._open_online(who, acc.primary[who], principal, day, rng, emergency=False)
        cp = np.array(self.online.platform[start:], dtype=np.int64)
        return [
            self.events(
                acc.primary[who],
                principal,
                day * SECONDS_PER_DAY + _business_seconds(rng, len(who)),
                cp,
                FLOW["online_drawdown"],
            )
        ]

    def _online_repayments(self, c: _Month) -> list[Events]:
        """Instalments of open online loans due this month: paid, or missed when distressed."""
        ol = self.online
        if not len(ol):
            return []
        rng = c.rng
        hp = self.health
        first = int(self.cal.first_day[c.t])
        nxt = int(self.cal.first_day[c.t + 1])
        accts: list[int] = []
        amounts: list[int] = []
        days: list[int] = []
        cps: list[int] = []
        for k in range(len(ol)):
            if ol.closed[k] >= 0 or ol.paid[k] + ol.missed[k] >= ol.term[k]:
                continue
            due_day = ol.opened[k] + 30 * (ol.paid[k] + ol.missed[k] + 1)
            if not first <= due_day < nxt:
                continue
            i = ol.enterprise[k]
            dead = hp.default_month[i] >= 0 and hp.default_day[i] <= due_day
            miss = dead or rng.random() < float(sigmoid(-3.5 - 2.0 * c.h[i]))
            if miss:
                ol.missed[k] += 1
                if ol.first_overdue[k] < 0:
                    ol.first_overdue[k] = due_day
                continue
            remaining = ol.term[k] - ol.paid[k] - ol.missed[k]
            outstanding = ol.principal[k] * remaining // ol.term[k]
            instalment = ol.principal[k] // ol.term[k] + round(outstanding * ol.rate[k] / 12)
            ol.paid[k] += 1
            if ol.paid[k] == ol.term[k]:
                ol.closed[k] = due_day
            accts.append(ol.account[k])
            amounts.append(-instalment)
            days.append(due_day)
            cps.append(ol.platform[k])
        if not accts:
            return []
        day = np.array(days, dtype=np.int64)
        ts = day * SECONDS_PER_DAY + rng.integers(6 * 3600, 10 * 3600, len(day))
        return [
            self.events(
                np.array(accts), np.array(amounts), ts, np.array(cps), FLOW["online_repayment"]
            )
        ]

    # -- treasury ------------------------------------------------------------------------------

    def _treasury(self, c: _Month) -> list[Events]:
        """Sweeps from secondary accounts to the main one, FX settlement of USD, deposit interest,
        account fees."""
        acc = self.world.accounts
        rng = c.rng
        parts: list[Events] = []
        secondary = np.flatnonzero((~acc.usd) & (np.arange(acc.n) != acc.primary[acc.owner]))
        rich = secondary[self.balance[secondary] > 5_000_000]
        if len(rich):
            amount = (
                np.round(self.balance[rich] * rng.uniform(0.3, 0.6, len(rich)) / 100_000) * 100_000
            ).astype(np.int64)
            day = self.days(c.t, self.cal.business_day_weights(c.t), len(rich), rng)
            ts = day * SECONDS_PER_DAY + _business_seconds(rng, len(rich))
            debit, credit = self.transfer(
                rich,
                acc.primary[acc.owner[rich]],
                amount,
                ts,
                rng,
                payer_flow=FLOW["internal_out"],
                payee_flow=FLOW["internal_in"],
            )
            credit.ts = debit.ts + 1
            parts += [debit, credit]
        usd = np.flatnonzero(acc.usd)
        usd = usd[self.balance[usd] > 100_000]
        if len(usd):
            sell = (self.balance[usd] * rng.uniform(0.6, 0.95, len(usd))).astype(np.int64)
            owner = acc.owner[usd]
            day = self.cal.next_business_day(self.cal.first_day[c.t] + self.fx_day[owner] - 1)
            ts = day * SECONDS_PER_DAY + _business_seconds(rng, len(usd))
            pid = self.pids(len(usd))
            cny = np.round(sell * self.fx_rate[c.t]).astype(np.int64)
            parts.append(self.events(usd, -sell, ts, acc.primary[owner], FLOW["fx_sell"], pid=pid))
            parts.append(self.events(acc.primary[owner], cny, ts + 2, usd, FLOW["fx_buy"], pid=pid))
        if self.cal.month_first[c.t].month in (3, 6, 9, 12):
            holders = np.flatnonzero(self.balance > 100_000)
            interest = np.round(self.balance[holders] * 0.0035 / 4).astype(np.int64)
            keep = interest > 0
            day = np.full(keep.sum(), self.cal.first_day[c.t] + 20)
            parts.append(
                self.events(
                    holders[keep],
                    interest[keep],
                    day * SECONDS_PER_DAY + rng.integers(0, 3600, len(day)),
                    -1,
                    FLOW["deposit_interest"],
                )
            )
        charging = np.array([b.fee_probability > 0 for b in self.world.banks])[self.acct_bank]
        who = np.flatnonzero(charging & ~acc.usd & (c.fade[acc.owner] > 0.05))
        if len(who):
            amount = np.where(rng.random(len(who)) < 0.7, 300, 1000)
            day = self.cal.first_day[c.t] + rng.integers(0, 5, len(who))
            parts.append(
                self.events(
                    who,
                    -amount,
                    day * SECONDS_PER_DAY + rng.integers(3600, 7200, len(who)),
                    -1,
                    FLOW["account_fee"],
                )
            )
        return parts

    def _dividends(self, c: _Month) -> list[Events]:
        """Cash above ``DIVIDEND_ABOVE`` times the target buffer (see :func:`buffer_months`) at
        the start of a month is partly (50-100 %) paid out to the owner from the main account
        (at most 90 % of that account's balance), so that cash holdings stay in line with the
        enterprise's health: profit distributions of healthy firms, and, when health falls and
        the target with it, the owner taking cash out of a deteriorating firm (a common prelude
        to SME failures)."""
        acc = self.world.accounts
        rng = c.rng
        cny = ~acc.usd
        cash = np.bincount(acc.owner[cny], weights=self.balance[cny], minlength=self.n) / 100.0
        target = buffer_months(c.h) * self.outgoings(c.h, c.revenue / self.base, c.size)
        excess = cash - DIVIDEND_ABOVE * target
        payout = np.minimum(
            excess * rng.uniform(0.5, 1.0, self.n), 0.9 * self.balance[acc.primary] / 100.0
        )
        who = np.flatnonzero(c.solvent & (c.fade >= 1.0) & (payout >= 10_000.0))
        if not len(who):
            return []
        amount = (np.floor(payout[who] / 1_000.0) * 100_000).astype(np.int64)
        day = self.cal.next_business_day(self.cal.first_day[c.t] + rng.integers(9, 20, len(who)))
        return [
            self.events(
                acc.primary[who],
                -amount,
                day * SECONDS_PER_DAY + _business_seconds(rng, len(who)),
                self.world.links.owner_person[who],
                FLOW["dividend"],
            )
        ]

    def _returns(self, c: _Month, events: Events) -> list[Events]:
        """Some outgoing supplier payments come back (退汇/退票), more often when distressed.
        A returned payment between members never reaches the payee: its credit is removed."""
        rng = c.rng
        candidates = np.flatnonzero(
            ((events.flow == FLOW["purchase"]) | (events.flow == FLOW["services"]))
            & (events.amount < 0)
        )
        if not len(candidates):
            return []
        owner = self.acct_owner[events.acct[candidates]]
        p = 0.003 + 0.03 * sigmoid(-1.5 * c.h[owner] - 1.5)
        chosen = candidates[rng.random(len(candidates)) < p]
        if not len(chosen):
            return []
        ret = events.take(chosen)
        payee_side = np.isin(events.pid, ret.pid) & (events.amount > 0)
        events.amount[payee_side] = 0  # dropped in _settle
        back = self.events(
            ret.acct,
            -ret.amount,
            ret.ts + rng.integers(2 * 3600, 48 * 3600, len(ret)),
            ret.cp,
            FLOW["payment_return"],
            pid=ret.pid,
        )
        return [back]

    def _fees(self, c: _Month, events: Events) -> list[Events]:
        """Cross-bank transfer fees, by the paying bank's tariff (2 / 5 / 10 / 15 yuan, 0.002 %
        above 1 million capped at 200 yuan)."""
        rng = c.rng
        outgoing = (events.amount < 0) & (events.cp >= 0) & ~np.isin(events.flow, _NO_FEE_FLOWS)
        rows = np.flatnonzero(outgoing)
        if not len(rows):
            return []
        bank = self.acct_bank[events.acct[rows]]
        other = self.cp_bank_index[events.cp[rows]] != bank
        prob = np.array([b.fee_probability for b in self.world.banks])[bank]
        rows = rows[other & (rng.random(len(rows)) < prob)]
        if not len(rows):
            return []
        amount = -events.amount[rows]
        fee = np.select(
            [
                amount <= 1_000_000,
                amount <= 10_000_000,
                amount <= 50_000_000,
                amount <= 100_000_000,
            ],
            [200, 500, 1_000, 1_500],
            default=np.minimum(20_000, amount // 50_000),
        )
        return [
            self.events(
                events.acct[rows], -fee, events.ts[rows] + 1, -1, FLOW["transfer_fee"], order=1
            )
        ]

    # -- planted real-flow anomalies -----------------------------------------------------------

    def _planted_count(self, expected: float, kind: str, t: int, rng: np.random.Generator) -> int:
        """How many of ``kind`` to plant in month ``t``: Poisson(``expected``), raised so that
        ``min_planted`` are reached by the end of the run."""
        k = int(rng.poisson(expected))
        remaining = self.world.months - t
        short = self.world.config.min_planted - self.planted[kind]
        if short > 0:
            k = max(k, -(-short // remaining))
        self.planted[kind] += k
        return k

    def _circular(self, c: _Month) -> list[Events]:
        """A->B->C->A within days, similar amounts (each leg a member-to-member payment)."""
        rng = c.rng
        alive = np.flatnonzero(c.solvent)
        if len(alive) < 3:
            return []
        k = self._planted_count(
            self.world.config.circular_rate * len(alive) / 12, "circular_flow", c.t, rng
        )
        acc = self.world.accounts
        parts: list[Events] = []
        for _ in range(k):
            trio = rng.choice(alive, 3, replace=False)
            group_id = self.pids(1)
            amount = float(np.round(rng.uniform(1.0e5, 2.0e6), -4))
            start = self.days(c.t, self.cal.business_day_weights(c.t), 1, rng)[0]
            legs: list[Events] = []
            day = start
            for leg in range(3):
                payer = acc.primary[trio[leg]]
                payee = acc.primary[trio[(leg + 1) % 3]]
                minor = int(round(amount * (1 - leg * rng.uniform(0.0, 0.01)), -2)) * 100
                ts = np.array([day * SECONDS_PER_DAY + int(_business_seconds(rng, 1)[0])])
                legs += self.transfer(
                    np.array([payer]),
                    np.array([payee]),
                    np.array([minor]),
                    ts,
                    rng,
                    payer_flow=FLOW["purchase"],
                    payee_flow=FLOW["sales"],
                    anomaly=2,
                    group=np.array(group_id),
                )
                day += int(rng.integers(0, 3))
            parts += legs
        return parts

    def _bursts(self, c: _Month) -> list[Events]:
        """Many round amounts (multiples of 10 000 yuan) paid out within three days."""
        rng = c.rng
        alive = np.flatnonzero(c.solvent)
        if not len(alive):
            return []
        k = self._planted_count(
            self.world.config.burst_rate * len(alive) / 12, "round_burst", c.t, rng
        )
        acc = self.world.accounts
        links = self.world.links
        parts: list[Events] = []
        for who in rng.choice(alive, k, replace=True).tolist():
            m = int(rng.integers(8, 21))
            start = self.days(c.t, self.cal.business_day_weights(c.t), 1, rng)[0]
            day = start + rng.integers(0, 3, m)
            ts = day * SECONDS_PER_DAY + _business_seconds(rng, m)
            amount = rng.choice(np.array([10_000, 20_000, 30_000, 50_000, 100_000]), m) * 100
            pool = np.concatenate([links.ext_supplier, links.owner_person])
            cp = pool[rng.integers(0, len(pool), m)]
            group = np.full(m, self.pids(1)[0])
            parts.append(
                self.events(
                    np.full(m, acc.primary[who]),
                    -amount,
                    ts,
                    cp,
                    FLOW["transfer_out"],
                    anomaly=3,
                    group=group,
                )
            )
        return parts

    def _outliers(self, c: _Month, events: Events) -> None:
        """A few one-sided sales or purchases become huge (x20 .. x80): real, rare amounts."""
        rng = c.rng
        eligible = np.flatnonzero(
            np.isin(events.flow, [FLOW["sales"], FLOW["purchase"]])
            & (events.anomaly == 0)
            & (self.world.counterparties.kind[np.maximum(events.cp, 0)] != KIND_MEMBER)
        )
        if not len(eligible):
            return
        expected = self.world.config.outlier_rate * len(events)
        k = min(len(eligible), self._planted_count(expected, "outlier", c.t, rng))
        chosen = rng.choice(eligible, k, replace=False)
        events.amount[chosen] = events.amount[chosen] * rng.integers(20, 81, k)
        events.anomaly[chosen] = 1

    # -- balances ------------------------------------------------------------------------------

    def _settle(self, c: _Month, events: Events) -> MonthEntries:
        """Sort, fund accounts that would go negative, and compute running balances."""
        events = events.take(events.amount != 0)
        order = np.lexsort((events.pid, events.order, events.ts, events.acct))
        events = events.take(order)
        n_acc = self.world.accounts.n
        starts = np.searchsorted(events.acct, np.arange(n_acc))
        ends = np.searchsorted(events.acct, np.arange(n_acc), side="right")
        prefix = np.cumsum(events.amount)
        base = np.concatenate([[0], prefix])[starts]
        running = prefix - np.repeat(base, ends - starts)
        has = ends > starts
        lowest = np.zeros(n_acc, dtype=np.int64)
        lowest[has] = np.minimum.reduceat(running, starts[has])
        lowest = np.minimum(lowest, 0)
        short = np.flatnonzero(self.balance + lowest < 0)
        if len(short):
            events = Events.concat([events, self._fund(c, short, events, starts)])
            order = np.lexsort((events.pid, events.order, events.ts, events.acct))
            events = events.take(order)
            starts = np.searchsorted(events.acct, np.arange(n_acc))
            ends = np.searchsorted(events.acct, np.arange(n_acc), side="right")
            prefix = np.cumsum(events.amount)
            base = np.concatenate([[0], prefix])[starts]
            running = prefix - np.repeat(base, ends - starts)
        opening = self.balance.copy()
        balance_after = np.repeat(opening, ends - starts) + running
        has = ends > starts
        closing = opening.copy()
        closing[has] = balance_after[ends[has] - 1]
        self.balance = closing
        return MonthEntries(
            month=c.t, events=events, balance_after=balance_after, opening=opening, closing=closing
        )

    def _fund(self, c: _Month, short: np.ndarray, events: Events, starts: np.ndarray) -> Events:
        """Funding booked just before the account's first entry of the month (see the module
        rules): a sibling account's spare cash first, then an online or a shareholder loan."""
        rng = c.rng
        acc = self.world.accounts
        links = self.world.links
        n_acc = acc.n
        ends = np.searchsorted(events.acct, np.arange(n_acc), side="right")
        prefix = np.cumsum(events.amount)
        base = np.concatenate([[0], prefix])
        has = ends > starts
        lowest = np.zeros(n_acc, dtype=np.int64)
        running = prefix - np.repeat(base[starts], ends - starts)
        lowest[has] = np.minimum.reduceat(running, starts[has])
        lowest = np.minimum(lowest, 0)
        spare = self.balance + lowest  # lowest balance of the month without funding
        deficit = -spare[short]
        buffer = rng.uniform(0.02, 0.15, len(short)) * self.base[acc.owner[short]] * 100
        amount = (np.ceil((deficit + buffer) / 1_000_000) * 1_000_000).astype(np.int64)
        first_ts = events.ts[np.minimum(starts[short], len(events) - 1)]
        ts = np.maximum(first_ts - 60, self.cal.first_day[c.t] * SECONDS_PER_DAY)
        owner = acc.owner[short]
        sibling = np.full(len(short), -1, dtype=np.int64)
        available = np.maximum(spare, 0)
        for j, a in enumerate(short.tolist()):
            if acc.usd[a]:
                continue
            best = max(
                (s for s in self.world.accounts.by_enterprise[int(owner[j])] if s != a),
                key=lambda s: available[s],
                default=-1,
            )
            if best >= 0 and available[best] >= amount[j] + 1_000_000:
                sibling[j] = best
                available[best] -= amount[j]
        parts: list[Events] = []
        sel = np.flatnonzero(sibling >= 0)
        if len(sel):
            pid = self.pids(len(sel))
            desc = self.desc(FLOW["internal_out"], sibling[sel])
            parts.append(
                self.events(
                    sibling[sel],
                    -amount[sel],
                    ts[sel],
                    short[sel],
                    FLOW["internal_out"],
                    pid=pid,
                    desc=desc,
                    order=-1,
                )
            )
            parts.append(
                self.events(
                    short[sel],
                    amount[sel],
                    ts[sel],
                    sibling[sel],
                    FLOW["internal_in"],
                    pid=pid,
                    desc=desc,
                    order=-1,
                )
            )
        external = sibling < 0
        online = (
            external
            & (rng.random(len(short)) < sigmoid(-3.0 * (c.h[owner] + 0.6)))
            & c.solvent[owner]
            & ~acc.usd[short]
        )
        sel = np.flatnonzero(online)
        if len(sel):
            start = len(self.online)
            self._open_online(
                owner[sel], short[sel], amount[sel], ts[sel] // SECONDS_PER_DAY, rng, emergency=True
            )
            cp = np.array(self.online.platform[start:], dtype=np.int64)
            parts.append(
                self.events(short[sel], amount[sel], ts[sel], cp, FLOW["online_drawdown"], order=-1)
            )
        sel = np.flatnonzero(external & ~online)
        if len(sel):
            parts.append(
                self.events(
                    short[sel],
                    amount[sel],
                    ts[sel],
                    links.owner_person[owner[sel]],
                    FLOW["shareholder_loan"],
                    order=-1,
                )
            )
        return Events.concat(parts)


_NO_FEE_FLOWS = np.array(
    [
        FLOW[n]
        for n in (
            "vat",
            "surtax",
            "cit",
            "iit",
            "tax_late_fee",
            "social_insurance",
            "housing_fund",
            "loan_interest",
            "loan_principal",
            "transfer_fee",
            "account_fee",
            "payroll",
            "bonus",
            "electricity",
            "water",
            "gas",
            "online_repayment",
            "fx_sell",
            "internal_out",
        )
    ]
)


@dataclass(slots=True)
class _Month:
    t: int
    rng: np.random.Generator
    h: np.ndarray
    alive: np.ndarray
    """Not defaulted before this month (the default month itself included)."""
    solvent: np.ndarray
    """Not defaulted by the end of this month."""
    fade: np.ndarray
    revenue: np.ndarray
    size: np.ndarray
    """Base monthly revenue grown by the enterprise's trend: payroll and overheads follow it."""


def _frequency(revenue: np.ndarray) -> np.ndarray:
    """Typical number of payments a month for a firm of this annual revenue (CNY)."""
    return np.clip(2.0 * (revenue / 1.0e6) ** 0.45, 1.0, 80.0)


def _split(total: np.ndarray, owner: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Split each enterprise's monthly ``total`` over its payments (``owner`` per payment) in
    proportion to ``weight``: the month's total is the business volume, not a count draw."""
    per_owner = np.bincount(owner, weights=weight, minlength=n)
    return np.asarray(total[owner] * weight / per_owner[owner])


def _business_seconds(rng: np.random.Generator, k: int) -> np.ndarray:
    """Seconds after midnight in banking hours: mornings, afternoons, some early/late."""
    which = rng.random(k)
    morning = rng.integers(9 * 3600, 11 * 3600 + 1800, k)
    afternoon = rng.integers(13 * 3600 + 1800, 17 * 3600, k)
    other = rng.integers(8 * 3600, 20 * 3600, k)
    return np.where(which < 0.45, morning, np.where(which < 0.9, afternoon, other))


def _business_amount(rng: np.random.Generator, yuan: np.ndarray) -> np.ndarray:
    """Amounts in fen: some rounded to the yuan, some to 100 yuan, the rest to the fen."""
    draw = rng.random(len(yuan))
    fen = np.round(yuan * 100)
    whole = np.round(yuan) * 100
    hundred = np.round(yuan, -2) * 100
    out = np.where(
        draw < _ROUND_BUSINESS[0], whole, np.where(draw < sum(_ROUND_BUSINESS), hundred, fen)
    )
    return np.maximum(out, 0).astype(np.int64)


def _online_principal(revenue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    principal = np.clip(0.03 * revenue * rng.lognormal(0.0, 0.4, len(revenue)), 3.0e4, 1.0e6)
    return (np.round(principal, -3) * 100).astype(np.int64)
