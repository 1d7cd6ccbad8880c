"""Writing a month: planted data problems, one statement file per account, ground-truth rows.

Rules:
- Statement files go to ``banks/<bank_id>/statements/<YYYYMM>/``, one per account and month
  (``<account>_<YYYYMM>.sta`` for MT940, ``camt053_<account>_<YYYYMM>.xml``,
  ``<account>_<YYYYMM>.csv``). Accounts of an enterprise that defaulted more than two months
  ago stop getting statements once they have no entries.
- Data problems are planted in the *written* representation only; balances, totals and the
  ground truth keep the true values, so every problem is detectable and correctable:
  ``typo_x10`` / ``typo_x100`` (amount written 10 / 100 times too large), ``date_shift``
  (booking date written 1-5 days off), ``missing_counterparty``, ``missing_balance`` (CSV
  profiles with a balance column), ``missing_date`` (CSV and camt). An entry carries at most
  one problem, and never on top of a real-flow anomaly.
- File problems: ``duplicate_file`` (the same bytes again as ``<stem>(1)<suffix>``) and
  ``overlap`` (the month's export re-run from the 16th of the previous month, so the second
  half of that month appears in two files); both are listed in ``file_pairs``.
- Each planted kind appears at least ``min_planted`` times when possible (counts are topped up
  over the remaining months).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flowbureau.formats.profiles import Profile, builtin_profiles
from flowbureau.synth.calendar import SECONDS_PER_DAY, Calendar
from flowbureau.synth.flows import (
    ANOMALIES,
    DESCRIPTIONS,
    FLOW,
    FLOWS,
    NO_END_TO_END,
    Events,
    MonthEntries,
)
from flowbureau.synth.health import HealthPanel
from flowbureau.synth.world import KIND_NAMES, World, stream
from flowbureau.synth.writers import (
    ENTRY_SCHEMA,
    Rendered,
    StatementAccount,
    StatementData,
    WrittenFile,
    render_camt053,
    render_mt940,
    render_tabular,
    tabular_layout,
    write_camt053,
    write_mt940,
    write_tabular,
)

PROBLEMS = (
    "typo_x10",
    "typo_x100",
    "date_shift",
    "missing_counterparty",
    "missing_balance",
    "missing_date",
)
"""Entry-level data problems, in planting order (codes 1..6 of ``problem``)."""

FILE_PROBLEMS = ("duplicate_file", "overlap")

TRANSACTION_SCHEMA = pa.schema(
    [
        pa.field("entry_id", pa.int64(), nullable=False),
        pa.field("bank_id", pa.string(), nullable=False),
        pa.field("reference", pa.string(), nullable=False),
        pa.field("account_number", pa.string(), nullable=False),
        pa.field("enterprise_id", pa.string(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("booked_at", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("value_date", pa.date32(), nullable=False),
        pa.field("amount_minor", pa.int64(), nullable=False),
        pa.field("balance_after_minor", pa.int64(), nullable=False),
        pa.field("payment_id", pa.int64(), nullable=False),
        pa.field("end_to_end_id", pa.string()),
        pa.field("tx_type", pa.string(), nullable=False),
        pa.field("flow", pa.string(), nullable=False),
        pa.field("description", pa.string(), nullable=False),
        pa.field("counterparty_name", pa.string()),
        pa.field("counterparty_account", pa.string()),
        pa.field("counterparty_bank", pa.string()),
        pa.field("counterparty_kind", pa.string()),
        pa.field("counterparty_enterprise_id", pa.string()),
        pa.field("anomaly", pa.string()),
        pa.field("anomaly_group", pa.int64()),
        pa.field("problem", pa.string()),
        pa.field("written_amount_minor", pa.int64(), nullable=False),
        pa.field("written_booked_at", pa.timestamp("s", tz="UTC")),
        pa.field("file", pa.string()),
        pa.field("location", pa.string()),
    ]
)
"""``ground_truth/transactions.parquet``: every generated entry (see docs/synth.md)."""

LINK_SCHEMA = pa.schema(
    [
        pa.field("payment_id", pa.int64(), nullable=False),
        pa.field("flow", pa.string(), nullable=False),
        pa.field("payer_bank_id", pa.string(), nullable=False),
        pa.field("payer_account", pa.string(), nullable=False),
        pa.field("payer_reference", pa.string(), nullable=False),
        pa.field("payee_bank_id", pa.string(), nullable=False),
        pa.field("payee_account", pa.string(), nullable=False),
        pa.field("payee_reference", pa.string(), nullable=False),
        pa.field("payer_amount_minor", pa.int64(), nullable=False),
        pa.field("payee_amount_minor", pa.int64(), nullable=False),
        pa.field("payer_booked_at", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("payee_booked_at", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("lag_days", pa.int32(), nullable=False),
    ]
)
"""``ground_truth/payment_links.parquet``: both sides of every payment between two
consortium accounts."""

_EIGHT_HOURS = 8 * 3600
RENDER_CHUNK = 1 << 16
"""Entries rendered at once (a bank's accounts are rendered in chunks of about this many)."""
CHINA_TZ = timezone(timedelta(hours=8))


@dataclass(slots=True)
class BankRender:
    """How one bank writes files (resolved once)."""

    bank_id: str
    kind: str
    """``mt940``, ``camt`` or ``csv``."""
    version: str = ""
    profile: Profile | None = None
    encoding: str | None = None
    summary: bool = False
    preamble_style: str = "colon"
    has_balance: bool = False


_PROBLEM_COLUMNS = (
    "type",
    "bank_id",
    "reference",
    "enterprise_id",
    "file",
    "location",
    "field",
    "true_value",
    "written_value",
    "group_id",
)
_PAIR_COLUMNS = (
    "kind",
    "bank_id",
    "account_number",
    "file",
    "other_file",
    "overlap_start",
    "overlap_end",
    "shared_entries",
)
_STATEMENT_COLUMNS = (
    "file",
    "bank_id",
    "account_number",
    "enterprise_id",
    "format",
    "period_start",
    "period_end",
    "opening_balance_minor",
    "closing_balance_minor",
    "entries",
    "kind",
    "sha256",
)


@dataclass(slots=True)
class Truth:
    """Ground-truth rows gathered while writing."""

    problems: dict[str, list[Any]] = field(
        default_factory=lambda: {k: [] for k in _PROBLEM_COLUMNS}
    )
    file_pairs: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in _PAIR_COLUMNS})
    statements: dict[str, list[Any]] = field(
        default_factory=lambda: {k: [] for k in _STATEMENT_COLUMNS}
    )


@dataclass(slots=True)
class _Part:
    """One account's entries of one month as written (table) and their true values."""

    entries: pa.Table
    true_amount: np.ndarray
    true_balance: np.ndarray
    day: np.ndarray
    opening: int
    file: str = ""

    def __len__(self) -> int:
        return len(self.true_amount)


@dataclass(slots=True)
class _Written:
    """How a month's entries are written: the planted problem per entry (0 = none) and its
    effect, and the file and location each entry landed in (its first appearance)."""

    problem: np.ndarray
    amount: np.ndarray
    ts: np.ndarray
    blank_date: np.ndarray
    blank_balance: np.ndarray
    blank_cp: np.ndarray
    file: np.ndarray
    location: np.ndarray

    @staticmethod
    def truthful(ev: Events) -> _Written:
        """Every entry as it is, no file yet."""
        n = len(ev)
        return _Written(
            problem=np.zeros(n, dtype=np.int8),
            amount=ev.amount.copy(),
            ts=ev.ts.copy(),
            blank_date=np.zeros(n, dtype=bool),
            blank_balance=np.zeros(n, dtype=bool),
            blank_cp=np.zeros(n, dtype=bool),
            file=np.full(n, None, dtype=object),
            location=np.full(n, None, dtype=object),
        )


class MonthWriter:
    """Writes each month's files and ground truth under ``root``."""

    def __init__(
        self, root: Path, world: World, health: HealthPanel, calendar: Calendar, *, anomalies: bool
    ) -> None:
        self.root = root
        self.world = world
        self.health = health
        self.cal = calendar
        self.anomalies = anomalies
        self.truth = Truth()
        profiles = builtin_profiles()
        self.render: list[BankRender] = []
        for bank in world.banks:
            export = bank.export
            if export.format == "mt940":
                self.render.append(BankRender(export.bank_id, "mt940"))
            elif export.format.startswith("camt053"):
                self.render.append(
                    BankRender(
                        export.bank_id, "camt", version=export.format.removeprefix("camt053.")
                    )
                )
            else:
                profile = profiles[export.profile or "generic"]
                self.render.append(
                    BankRender(
                        export.bank_id,
                        "csv",
                        profile=profile,
                        encoding=export.encoding or profile.encodings[0],
                        summary=export.summary_row,
                        preamble_style=export.preamble_style or "colon",
                        has_balance="balance" in tabular_layout(profile).fields,
                    )
                )
        acc = world.accounts
        ent = world.enterprises
        cps = world.counterparties
        self.acct_kind = np.array([self.render[b].kind for b in acc.bank.tolist()], dtype=object)
        self.acct_has_balance = np.array(
            [self.render[b].has_balance for b in acc.bank.tolist()], dtype=bool
        )
        self.blank = cps.n
        """Index of the absent counterparty in the counterparty arrays below."""
        self.cp_name = pa.array([*cps.name, None], pa.string())
        self.cp_name_en = pa.array([*cps.name_en, None], pa.string())
        self.cp_account = pa.array([*cps.account, None], pa.string())
        self.cp_bank = pa.array([*(b or None for b in cps.bank), None], pa.string())
        self.cp_bic = pa.array([*(b or None for b in cps.bic), None], pa.string())
        self.cp_kind = pa.array([*(KIND_NAMES[k] for k in cps.kind.tolist()), None], pa.string())
        self.cp_enterprise = pa.array(
            [*(ent.credit_code[e] if e >= 0 else None for e in cps.enterprise.tolist()), None],
            pa.string(),
        )
        self.desc_zh = pa.array([d[0] for d in DESCRIPTIONS], pa.string())
        self.desc_en = pa.array([d[1] for d in DESCRIPTIONS], pa.string())
        self.flow_name = pa.array([f.name for f in FLOWS], pa.string())
        self.flow_tx = pa.array([str(f.tx_type) for f in FLOWS], pa.string())
        self.anomaly_names = pa.array([a or None for a in ANOMALIES], pa.string())
        self.problem_names = pa.array([None, *PROBLEMS], pa.string())
        self.acct_number = pa.array(acc.number, pa.string())
        self.acct_enterprise = pa.array(
            [ent.credit_code[o] for o in acc.owner.tolist()], pa.string()
        )
        self.acct_currency = pa.array(np.where(acc.usd, "USD", "CNY").tolist(), pa.string())
        self.bank_ids = pa.array([b.export.bank_id for b in world.banks], pa.string())
        self.ref_prefix = pa.array([b.export.bank_id[:2].upper() for b in world.banks], pa.string())
        self.ref_counter = np.zeros(len(world.banks), dtype=np.int64)
        self.no_e2e = np.isin(np.arange(len(FLOWS)), sorted(NO_END_TO_END))
        self.one_sided_flows = np.array([FLOW["payment_return"], FLOW["repayment_reversal"]])
        self.planted = dict.fromkeys((*PROBLEMS, *FILE_PROBLEMS), 0)
        self.entry_counter = 0
        self.files = 0
        self.previous: dict[int, _Part] = {}
        self.statement_accounts: dict[int, StatementAccount] = {}
        self.writer: pq.ParquetWriter | None = None
        self.link_writer: pq.ParquetWriter | None = None
        self.pending_links: dict[str, np.ndarray] | None = None
        self.links = 0

    # -- one month -------------------------------------------------------------------------

    def write(self, month: MonthEntries) -> None:
        """Plant problems, write the month's statement files and its ground-truth rows."""
        t = month.month
        rng = stream(self.world.seed, "problems", t)
        ev = month.events
        n = len(ev)
        bank = self.world.accounts.bank[ev.acct]
        references = self._references(bank, ev.ts, ev.acct)
        e2e = pc.if_else(
            pa.array(self.no_e2e[ev.flow]),
            pa.scalar(None, pa.string()),
            pc.binary_join_element_wise(
                "FB", pc.utf8_lpad(pc.cast(pa.array(ev.pid), pa.string()), 14, "0"), ""
            ),
        )
        written = _Written.truthful(ev)
        if self.anomalies and n:
            self._plant(t, rng, ev, written)
        cp = np.where(ev.cp >= 0, ev.cp, self.blank)
        name_cp = pa.array(np.where(written.blank_cp, self.blank, cp))
        table = pa.table(
            {
                "booked_local": pa.array(written.ts, pa.timestamp("s"), mask=written.blank_date),
                "value_date": pa.array((ev.ts // SECONDS_PER_DAY).astype(np.int32), pa.date32()),
                "amount_minor": written.amount,
                "balance_after_minor": pa.array(
                    month.balance_after, pa.int64(), mask=written.blank_balance
                ),
                "counterparty_name": pc.take(self.cp_name, name_cp),
                "counterparty_name_ascii": pc.take(self.cp_name_en, name_cp),
                "counterparty_account": pc.take(self.cp_account, pa.array(cp)),
                "counterparty_bank": pc.take(self.cp_bank, pa.array(cp)),
                "counterparty_bic": pc.take(self.cp_bic, pa.array(cp)),
                "description": pc.take(self.desc_zh, pa.array(ev.desc)),
                "description_ascii": pc.take(self.desc_en, pa.array(ev.desc)),
                "reference": references,
                "end_to_end_id": e2e,
                "tx_type": pc.take(self.flow_tx, pa.array(ev.flow)),
            },
            schema=ENTRY_SCHEMA,
        )
        self._write_files(t, rng, month, table, written)
        self._truth_rows(ev, month.balance_after, table, cp, written)
        self._problem_rows(ev, bank, references, written)
        self._links(ev, bank, references)

    def _references(self, bank: np.ndarray, ts: np.ndarray, acct: np.ndarray) -> pa.Array:
        """The bank's 流水号: a per-bank sequence in booking order (prefix + 14 digits)."""
        sequence = np.zeros(len(bank), dtype=np.int64)
        for b in range(len(self.world.banks)):
            rows = np.flatnonzero(bank == b)
            if not len(rows):
                continue
            rows = rows[np.lexsort((acct[rows], ts[rows]))]
            sequence[rows] = self.ref_counter[b] + 1 + np.arange(len(rows))
            self.ref_counter[b] += len(rows)
        digits = pc.utf8_lpad(pc.cast(pa.array(sequence), pa.string()), 14, "0")
        return pc.binary_join_element_wise(pc.take(self.ref_prefix, pa.array(bank)), digits, "")

    def _quota(
        self, kind: str, rate: float, eligible: int, t: int, rng: np.random.Generator
    ) -> int:
        """How many of ``kind`` to plant among ``eligible``: Binomial(eligible, rate), raised so
        that ``min_planted`` are reached by the end of the run."""
        if not eligible:
            return 0
        k = int(rng.binomial(eligible, rate))
        short = self.world.config.min_planted - self.planted[kind]
        if short > 0:
            k = max(k, -(-short // (self.world.months - t)))
        k = min(k, eligible)
        self.planted[kind] += k
        return k

    def _plant(self, t: int, rng: np.random.Generator, ev: Events, written: _Written) -> None:
        config = self.world.config
        free = ev.anomaly == 0
        kind = self.acct_kind[ev.acct]
        rules = {
            "typo_x10": (config.typo_rate / 2, free),
            "typo_x100": (config.typo_rate / 2, free),
            "date_shift": (config.date_shift_rate, free),
            "missing_counterparty": (config.missing_rate, free & (ev.cp >= 0)),
            "missing_balance": (config.missing_rate, free & self.acct_has_balance[ev.acct]),
            "missing_date": (config.missing_rate, free & (kind != "mt940")),
        }
        for code, name in enumerate(PROBLEMS, start=1):
            rate, eligible = rules[name]
            candidates = np.flatnonzero(eligible & (written.problem == 0))
            k = self._quota(name, rate, len(candidates), t, rng)
            if not k:
                continue
            chosen = np.sort(rng.choice(candidates, k, replace=False))
            written.problem[chosen] = code
            if name == "typo_x10":
                written.amount[chosen] *= 10
            elif name == "typo_x100":
                written.amount[chosen] *= 100
            elif name == "date_shift":
                shift = rng.integers(1, 6, k) * np.where(rng.random(k) < 0.5, -1, 1)
                written.ts[chosen] += shift * SECONDS_PER_DAY
            elif name == "missing_counterparty":
                written.blank_cp[chosen] = True
            elif name == "missing_balance":
                written.blank_balance[chosen] = True
            else:
                written.blank_date[chosen] = True

    # -- files -------------------------------------------------------------------------------

    def _write_files(
        self,
        t: int,
        rng: np.random.Generator,
        month: MonthEntries,
        table: pa.Table,
        written: _Written,
    ) -> None:
        world = self.world
        acc = world.accounts
        ev = month.events
        n_acc = acc.n
        starts = np.searchsorted(ev.acct, np.arange(n_acc))
        ends = np.searchsorted(ev.acct, np.arange(n_acc), side="right")
        first = self.cal.month_first[t]
        last = self.cal.month_first[t + 1] - timedelta(days=1)
        yyyymm = f"{first:%Y%m}"
        owner_default = self.health.default_month[acc.owner]
        dormant = (owner_default >= 0) & (owner_default < t - 2) & (ends == starts)
        writing = np.flatnonzero(~dormant)
        config = world.config
        overlap: set[int] = set()
        duplicate: set[int] = set()
        if self.anomalies:
            had_file = np.fromiter(
                (a in self.previous for a in writing.tolist()), dtype=bool, count=len(writing)
            )
            overlap_ok = writing[had_file] if t > 0 else np.zeros(0, dtype=np.int64)
            k = self._quota("overlap", config.overlap_rate, len(overlap_ok), t, rng)
            overlap = set(rng.choice(overlap_ok, k, replace=False).tolist()) if k else set()
            k = self._quota("duplicate_file", config.duplicate_file_rate, len(writing), t, rng)
            duplicate = set(rng.choice(writing, k, replace=False).tolist()) if k else set()
        created = datetime(last.year, last.month, last.day, tzinfo=CHINA_TZ) + timedelta(hours=26)
        current: dict[int, _Part] = {}
        day = ev.ts // SECONDS_PER_DAY
        for b, render in enumerate(self.render):
            directory = self.root / "banks" / render.bank_id / "statements" / yyyymm
            directory.mkdir(parents=True, exist_ok=True)
            for usd in (False, True):
                group = writing[(acc.bank[writing] == b) & (acc.usd[writing] == usd)]
                if not len(group):
                    continue
                currency = "USD" if usd else "CNY"
                for chunk in _account_chunks(group, ends - starts, RENDER_CHUNK):
                    rows = np.concatenate([np.arange(starts[a], ends[a]) for a in chunk.tolist()])
                    sub = table.take(pa.array(rows, pa.int64()))
                    text = self._render_text(render, sub, currency)
                    position = 0
                    for a in chunk.tolist():
                        s, e = int(starts[a]), int(ends[a])
                        k = e - s
                        part = _Part(
                            entries=sub.slice(position, k),
                            true_amount=ev.amount[s:e],
                            true_balance=month.balance_after[s:e],
                            day=day[s:e],
                            opening=int(month.opening[a]),
                        )
                        current[a] = part
                        self._statement(
                            t,
                            a,
                            render,
                            part,
                            text.slice(position, position + k),
                            directory=directory,
                            created=created,
                            overlapping=a in overlap,
                            duplicated=a in duplicate,
                            written=written,
                            rows=slice(s, e),
                        )
                        position += k
        self.previous = current

    def _render_text(self, render: BankRender, entries: pa.Table, currency: str) -> Rendered:
        if render.kind == "mt940":
            return render_mt940(entries, currency)
        if render.kind == "camt":
            return render_camt053(entries, currency, render.version)
        assert render.profile is not None
        return render_tabular(entries, render.profile, currency)

    def _statement(
        self,
        t: int,
        a: int,
        render: BankRender,
        part: _Part,
        text: Rendered,
        *,
        directory: Path,
        created: datetime,
        overlapping: bool,
        duplicated: bool,
        written: _Written,
        rows: slice,
    ) -> None:
        """Write account ``a``'s statement of month ``t`` (and its duplicate, if planted)."""
        acc = self.world.accounts
        number = acc.number[a]
        first = self.cal.month_first[t]
        last = self.cal.month_first[t + 1] - timedelta(days=1)
        yyyymm = f"{first:%Y%m}"
        entries = part.entries
        amounts = part.true_amount
        period_start, opening, kind, offset = first, part.opening, "monthly", 0
        if overlapping:
            prev = self.previous[a]
            end_previous = first - timedelta(days=1)
            period_start = date(end_previous.year, end_previous.month, 16)
            keep = int(np.searchsorted(prev.day, (period_start - date(1970, 1, 1)).days))
            offset = len(prev) - keep
            if offset:
                repeated = prev.entries.slice(keep)
                entries = pa.concat_tables([repeated, entries])
                text = self._render_text(render, repeated, self._account(a).currency).concat(text)
                amounts = np.concatenate([prev.true_amount[keep:], amounts])
                opening = int(prev.true_balance[keep] - prev.true_amount[keep])
            else:
                opening = part.opening
            kind = "overlap"
        stmt = StatementData(
            account=self._account(a),
            period_start=period_start,
            period_end=last,
            opening_minor=opening,
            closing_minor=int(part.true_balance[-1]) if len(part) else part.opening,
            sequence=t + 1,
            created_at=created + timedelta(days=3 if overlapping else 0),
            statement_id=f"{yyyymm}{number[-8:]}" + ("R" if overlapping else ""),
            entries=entries,
            true_debits_minor=int(-amounts[amounts < 0].sum()),
            true_credits_minor=int(amounts[amounts > 0].sum()),
        )
        output = self._write(render, stmt, text)
        name = _file_name(render.kind, number, yyyymm)
        relative = f"banks/{render.bank_id}/statements/{yyyymm}/{name}"
        (directory / name).write_bytes(output.data)
        self.files += 1
        written.file[rows] = relative
        written.location[rows] = output.locations[offset:]
        digest = hashlib.sha256(output.data).hexdigest()
        count = len(output.locations)
        self._statement_row(relative, render, stmt, entries=count, kind=kind, digest=digest)
        if overlapping:
            self._pair(
                "overlap",
                a,
                relative,
                self.previous[a].file,
                start=period_start,
                end=first - timedelta(days=1),
                shared=offset,
            )
        if duplicated:
            stem, _, suffix = name.rpartition(".")
            copy = f"{stem}(1).{suffix}"
            (directory / copy).write_bytes(output.data)
            self.files += 1
            copy_relative = f"banks/{render.bank_id}/statements/{yyyymm}/{copy}"
            self._statement_row(
                copy_relative, render, stmt, entries=count, kind="duplicate", digest=digest
            )
            self._pair("duplicate_file", a, copy_relative, relative, shared=count)
        part.file = relative

    def _account(self, a: int) -> StatementAccount:
        known = self.statement_accounts.get(a)
        if known is None:
            known = self.statement_accounts[a] = self._new_account(a)
        return known

    def _new_account(self, a: int) -> StatementAccount:
        world = self.world
        acc = world.accounts
        ent = world.enterprises
        owner = int(acc.owner[a])
        bank = world.banks[int(acc.bank[a])].entry
        return StatementAccount(
            number=acc.number[a],
            currency="USD" if acc.usd[a] else "CNY",
            owner_name=ent.name[owner],
            owner_name_ascii=ent.name_en[owner],
            owner_id=ent.credit_code[owner],
            bank_name=bank.name_zh,
            bank_name_ascii=bank.name_en,
            bic=bank.bic,
        )

    @staticmethod
    def _write(render: BankRender, stmt: StatementData, text: Rendered) -> WrittenFile:
        if render.kind == "mt940":
            return write_mt940(stmt, rendered=text)
        if render.kind == "camt":
            return write_camt053(stmt, render.version, rendered=text)
        assert render.profile is not None
        return write_tabular(
            stmt,
            render.profile,
            encoding=render.encoding,
            summary=render.summary,
            preamble_style=render.preamble_style,
            rendered=text,
        )

    def _statement_row(
        self,
        file: str,
        render: BankRender,
        stmt: StatementData,
        *,
        entries: int,
        kind: str,
        digest: str,
    ) -> None:
        fmt = render.kind if render.kind != "camt" else f"camt053.{render.version}"
        values = (
            file,
            render.bank_id,
            stmt.account.number,
            stmt.account.owner_id,
            fmt,
            stmt.period_start,
            stmt.period_end,
            stmt.opening_minor,
            stmt.closing_minor,
            entries,
            kind,
            digest,
        )
        for key, value in zip(_STATEMENT_COLUMNS, values, strict=True):
            self.truth.statements[key].append(value)

    def _pair(
        self,
        kind: str,
        a: int,
        file: str,
        other: str,
        *,
        start: date | None = None,
        end: date | None = None,
        shared: int,
    ) -> None:
        """A duplicate or overlapping file: a ``file_pairs`` row and a ``problems`` row."""
        acc = self.world.accounts
        bank_id = self.world.banks[int(acc.bank[a])].export.bank_id
        number = acc.number[a]
        for key, value in zip(
            _PAIR_COLUMNS, (kind, bank_id, number, file, other, start, end, shared), strict=True
        ):
            self.truth.file_pairs[key].append(value)
        owner = self.world.enterprises.credit_code[int(acc.owner[a])]
        values = (kind, bank_id, None, owner, file, None, None, other, None, None)
        for key, value in zip(_PROBLEM_COLUMNS, values, strict=True):
            self.truth.problems[key].append(value)

    # -- truth -------------------------------------------------------------------------------

    def _truth_rows(
        self,
        ev: Events,
        balance_after: np.ndarray,
        table: pa.Table,
        cp: np.ndarray,
        written: _Written,
    ) -> None:
        n = len(ev)
        acct = pa.array(ev.acct)
        cps = pa.array(cp)
        truth = pa.table(
            {
                "entry_id": np.arange(self.entry_counter, self.entry_counter + n, dtype=np.int64),
                "bank_id": pc.take(self.bank_ids, pa.array(self.world.accounts.bank[ev.acct])),
                "reference": table.column("reference"),
                "account_number": pc.take(self.acct_number, acct),
                "enterprise_id": pc.take(self.acct_enterprise, acct),
                "currency": pc.take(self.acct_currency, acct),
                "booked_at": pa.array(ev.ts - _EIGHT_HOURS, pa.timestamp("s", tz="UTC")),
                "value_date": table.column("value_date"),
                "amount_minor": ev.amount,
                "balance_after_minor": balance_after,
                "payment_id": ev.pid,
                "end_to_end_id": table.column("end_to_end_id"),
                "tx_type": table.column("tx_type"),
                "flow": pc.take(self.flow_name, pa.array(ev.flow)),
                "description": table.column("description"),
                "counterparty_name": pc.take(self.cp_name, cps),
                "counterparty_account": table.column("counterparty_account"),
                "counterparty_bank": table.column("counterparty_bank"),
                "counterparty_kind": pc.take(self.cp_kind, cps),
                "counterparty_enterprise_id": pc.take(self.cp_enterprise, cps),
                "anomaly": pc.take(self.anomaly_names, pa.array(ev.anomaly)),
                "anomaly_group": pa.array(
                    np.where(ev.group >= 0, ev.group, 0), pa.int64(), mask=ev.group < 0
                ),
                "problem": pc.take(self.problem_names, pa.array(written.problem)),
                "written_amount_minor": written.amount,
                "written_booked_at": pa.array(
                    written.ts - _EIGHT_HOURS, pa.timestamp("s", tz="UTC"), mask=written.blank_date
                ),
                "file": pa.array(written.file, pa.string()),
                "location": pa.array(written.location, pa.string()),
            },
            schema=TRANSACTION_SCHEMA,
        )
        self.entry_counter += n
        if self.writer is None:
            path = self.root / "ground_truth" / "transactions.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, TRANSACTION_SCHEMA, compression="zstd")
        self.writer.write_table(truth)

    def _problem_rows(
        self, ev: Events, bank: np.ndarray, references: pa.Array, written: _Written
    ) -> None:
        rows = self.truth.problems
        field_of = {
            1: "amount",
            2: "amount",
            3: "booked_at",
            4: "counterparty_name",
            5: "balance_after",
            6: "booked_at",
        }
        bank_ids = self.bank_ids.to_pylist()
        for index in np.flatnonzero((written.problem > 0) | (ev.anomaly > 0)).tolist():
            code = int(written.problem[index])
            owner = self.world.enterprises.credit_code[
                int(self.world.accounts.owner[ev.acct[index]])
            ]
            group: int | None = None
            if code:
                name = PROBLEMS[code - 1]
                field_name = field_of[code]
                true_value, shown = _problem_values(code, ev, index, written)
            else:
                name = ANOMALIES[int(ev.anomaly[index])]
                field_name, true_value, shown = "amount", str(int(ev.amount[index])), None
                group = int(ev.group[index]) if ev.group[index] >= 0 else None
            values = (
                name,
                bank_ids[int(bank[index])],
                references[index].as_py(),
                owner,
                written.file[index],
                written.location[index],
                field_name,
                true_value,
                shown,
                group,
            )
            for key, value in zip(_PROBLEM_COLUMNS, values, strict=True):
                rows[key].append(value)

    def _links(self, ev: Events, bank: np.ndarray, references: pa.Array) -> None:
        """Pair the two sides of payments between consortium accounts (the two sides may fall
        in consecutive months)."""
        two_sided = (
            (ev.cp >= 0) & (ev.cp < self.world.accounts.n) & ~np.isin(ev.flow, self.one_sided_flows)
        )
        rows = np.flatnonzero(two_sided)
        current = {
            "pid": ev.pid[rows],
            "flow": ev.flow[rows].astype(np.int64),
            "bank": bank[rows],
            "acct": ev.acct[rows],
            "ref": np.array(references.take(pa.array(rows, pa.int64())).to_pylist(), dtype=object),
            "amount": ev.amount[rows],
            "ts": ev.ts[rows],
            "age": np.zeros(len(rows), dtype=np.int64),
        }
        if self.pending_links is not None:
            current = {k: np.concatenate([self.pending_links[k], v]) for k, v in current.items()}
        order = np.lexsort((current["amount"] > 0, current["pid"]))
        current = {k: v[order] for k, v in current.items()}
        pid = current["pid"]
        same = np.flatnonzero(pid[:-1] == pid[1:]) if len(pid) > 1 else np.zeros(0, dtype=np.int64)
        amount, acct = current["amount"], current["acct"]
        same = same[(amount[same] < 0) & (amount[same + 1] > 0) & (acct[same] != acct[same + 1])]
        payer, payee = same, same + 1
        paired = np.zeros(len(pid), dtype=bool)
        paired[payer] = True
        paired[payee] = True
        if len(same):
            link = pa.table(
                {
                    "payment_id": pid[payer],
                    "flow": pc.take(self.flow_name, pa.array(current["flow"][payer])),
                    "payer_bank_id": pc.take(self.bank_ids, pa.array(current["bank"][payer])),
                    "payer_account": pc.take(self.acct_number, pa.array(acct[payer])),
                    "payer_reference": pa.array(current["ref"][payer], pa.string()),
                    "payee_bank_id": pc.take(self.bank_ids, pa.array(current["bank"][payee])),
                    "payee_account": pc.take(self.acct_number, pa.array(acct[payee])),
                    "payee_reference": pa.array(current["ref"][payee], pa.string()),
                    "payer_amount_minor": -amount[payer],
                    "payee_amount_minor": amount[payee],
                    "payer_booked_at": pa.array(
                        current["ts"][payer] - _EIGHT_HOURS, pa.timestamp("s", tz="UTC")
                    ),
                    "payee_booked_at": pa.array(
                        current["ts"][payee] - _EIGHT_HOURS, pa.timestamp("s", tz="UTC")
                    ),
                    "lag_days": (
                        current["ts"][payee] // SECONDS_PER_DAY
                        - current["ts"][payer] // SECONDS_PER_DAY
                    ).astype(np.int32),
                },
                schema=LINK_SCHEMA,
            )
            if self.link_writer is None:
                path = self.root / "ground_truth" / "payment_links.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                self.link_writer = pq.ParquetWriter(path, LINK_SCHEMA, compression="zstd")
            self.link_writer.write_table(link)
            self.links += len(same)
        keep = ~paired & (current["age"] < 1)
        self.pending_links = {k: v[keep] for k, v in current.items()}
        self.pending_links["age"] = self.pending_links["age"] + 1

    def close(self) -> None:
        """Finish the Parquet files written month by month."""
        truth = self.root / "ground_truth"
        truth.mkdir(parents=True, exist_ok=True)
        if self.writer is None:
            pq.write_table(
                TRANSACTION_SCHEMA.empty_table(), truth / "transactions.parquet", compression="zstd"
            )
        else:
            self.writer.close()
        if self.link_writer is None:
            pq.write_table(
                LINK_SCHEMA.empty_table(), truth / "payment_links.parquet", compression="zstd"
            )
        else:
            self.link_writer.close()


def _problem_values(
    code: int, ev: Events, index: int, written: _Written
) -> tuple[str | None, str | None]:
    """The true and the written value of a planted entry problem, as text."""
    if code in (1, 2):
        return str(int(ev.amount[index])), str(int(written.amount[index]))
    if code == 3:
        return _local_day(int(ev.ts[index])), _local_day(int(written.ts[index]))
    if code == 6:
        return _local_day(int(ev.ts[index])), None
    return None, None


def _local_day(ts: int) -> str:
    return str(np.datetime64(ts // SECONDS_PER_DAY, "D"))


def _account_chunks(accounts: np.ndarray, sizes: np.ndarray, limit: int) -> list[np.ndarray]:
    """Consecutive runs of ``accounts`` holding at most ``limit`` entries each (an account with
    more entries than that is a run of its own)."""
    chunks: list[np.ndarray] = []
    start = 0
    total = 0
    for index, a in enumerate(accounts.tolist()):
        size = int(sizes[a])
        if total and total + size > limit:
            chunks.append(accounts[start:index])
            start, total = index, 0
        total += size
    if start < len(accounts):
        chunks.append(accounts[start:])
    return chunks


def _file_name(kind: str, account: str, yyyymm: str) -> str:
    if kind == "mt940":
        return f"{account}_{yyyymm}.sta"
    if kind == "camt":
        return f"camt053_{account}_{yyyymm}.xml"
    return f"{account}_{yyyymm}.csv"
