"""The consortium's static world: banks, enterprises, people, accounts, counterparties, links.

Rules:
- Everything is drawn from one seeded ``numpy.random.Generator`` stream per concern
  (:func:`stream`), so adding a draw to one concern does not shift another's.
- Enterprises: GB/T 4754 division drawn by :data:`~flowbureau.synth.reference.INDUSTRY_PROFILES`
  weights, a prefecture by its weight and a real district of it; a name
  ``city + brand + industry word + 有限公司/股份有限公司`` (unique) with an English name
  ``City Brand IndustryWord Co., Ltd.``; a valid unified social credit code; annual revenue
  with a Pareto tail (the size that drives every flow).
- Accounts: every enterprise banks at one to three consortium banks (its main bank first,
  which carries payroll, taxes and loans); some exporters also hold a USD account.
- Supply chain: each enterprise buys from a few consortium members of the divisions its
  industry buys from, chosen with probability proportional to revenue^0.9 (large suppliers
  collect many customers: a heavy-tailed degree distribution), and from external suppliers;
  it sells to external customers too. An edge carries the share of the customer's purchases.
- Social layer: related groups share a controlling person, often an address and a phone;
  working-capital loan facilities may be guaranteed by a group member or a trading partner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from flowbureau.synth import codes
from flowbureau.synth.calendar import day_number
from flowbureau.synth.config import BankFormat, SynthConfig
from flowbureau.synth.reference import (
    BANK_CATALOG,
    BRAND_CHARS,
    FOREIGN_BANKS,
    FOREIGN_WORDS,
    GIVEN_CHARS,
    INDUSTRY_PROFILES,
    PINYIN,
    PREFECTURES,
    ROADS,
    SURNAMES,
    BankCatalogEntry,
    Prefecture,
    districts,
    gbt4754,
)

DIVISIONS: tuple[str, ...] = tuple(INDUSTRY_PROFILES)
"""Division codes the generator draws from, in a fixed order (``division`` indexes into it)."""

REFORM_DAY = day_number(date(2015, 10, 1))
"""三证合一: enterprises registered from this day get ``MA...`` organisation codes."""

STREAMS = {
    "banks": 1,
    "enterprises": 2,
    "names": 3,
    "accounts": 4,
    "supply": 5,
    "externals": 6,
    "social": 7,
    "loans": 8,
    "health": 9,
    "records": 10,
    "flows": 11,
    "problems": 12,
}


def stream(seed: int, name: str, *extra: int) -> np.random.Generator:
    """The generator for concern ``name`` (and sub-keys ``extra``) of run ``seed``."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, STREAMS[name], *extra]))
    )


# Counterparty kinds (``Counterparties.kind``).
KIND_MEMBER = 0
KIND_CUSTOMER = 1
KIND_SUPPLIER = 2
KIND_FOREIGN = 3
KIND_LANDLORD = 4
KIND_TAX = 5
KIND_FUND = 6
KIND_UTILITY = 7
KIND_BANK = 8
KIND_PLATFORM = 9
KIND_PROCESSOR = 10
KIND_PERSON = 11
KIND_NAMES = (
    "member",
    "external_customer",
    "external_supplier",
    "foreign_customer",
    "landlord",
    "tax_authority",
    "housing_fund",
    "utility",
    "bank",
    "online_lender",
    "card_acquirer",
    "person",
)


@dataclass(frozen=True, slots=True)
class Bank:
    """A consortium bank: catalogue facts plus its export format."""

    index: int
    entry: BankCatalogEntry
    export: BankFormat
    fee_probability: float
    """Probability that an outgoing cross-bank transfer carries a separate fee entry."""


@dataclass(slots=True)
class Enterprises:
    """Per-enterprise arrays (index = enterprise number)."""

    credit_code: list[str]
    name: list[str]
    name_en: list[str]
    division: np.ndarray
    prefecture: np.ndarray
    district_code: list[str]
    district_name: list[str]
    registered: np.ndarray
    capital_minor: np.ndarray
    revenue: np.ndarray
    employees: np.ndarray
    wage: np.ndarray
    growth: np.ndarray
    group: np.ndarray
    legal_rep: np.ndarray
    address: list[str]
    phone: list[str]
    exporter: np.ndarray
    pay_day: np.ndarray
    rent: np.ndarray

    @property
    def n(self) -> int:
        """Number of enterprises."""
        return len(self.credit_code)

    def section(self, i: int) -> str:
        """GB/T 4754 section letter of enterprise ``i``."""
        return gbt4754().divisions[DIVISIONS[int(self.division[i])]].section


@dataclass(slots=True)
class Accounts:
    """Per-account arrays (index = account number in the run)."""

    number: list[str]
    bank: np.ndarray
    owner: np.ndarray
    usd: np.ndarray
    opened: np.ndarray
    primary: np.ndarray
    """Per enterprise: its main CNY account."""
    usd_account: np.ndarray
    """Per enterprise: its USD account, or -1."""
    by_enterprise: list[list[int]]
    """Per enterprise: its CNY accounts, main first."""

    @property
    def n(self) -> int:
        """Number of accounts."""
        return len(self.number)


@dataclass(slots=True)
class Counterparties:
    """Everyone an entry can name as its counterparty; rows ``0 .. accounts-1`` are the
    consortium's own accounts (row = account index)."""

    name: list[str]
    name_en: list[str]
    account: list[str]
    bank: list[str]
    bic: list[str]
    kind: np.ndarray
    enterprise: np.ndarray

    @property
    def n(self) -> int:
        """Number of counterparties."""
        return len(self.name)


@dataclass(slots=True)
class Links:
    """Who trades with, rents from, pays taxes to and borrows from whom."""

    supplier: np.ndarray
    customer: np.ndarray
    share: np.ndarray
    """Share of the customer's purchases that go to this supplier."""
    payee_account: np.ndarray
    payer_account: np.ndarray
    pay_day: np.ndarray
    member_purchase_share: np.ndarray
    """Per enterprise: share of its purchases bought from consortium members."""
    ext_customer_ptr: np.ndarray
    ext_customer: np.ndarray
    ext_supplier_ptr: np.ndarray
    ext_supplier: np.ndarray
    foreign_customer: np.ndarray
    """Per enterprise: its overseas customer counterparty (exporters), or -1."""
    landlord: np.ndarray
    tax: np.ndarray
    fund: np.ndarray
    utilities: np.ndarray
    """Per enterprise: (electricity, water, gas) counterparties."""
    bank_branch: np.ndarray
    """Per account: the counterparty row of its bank's branch (loans, payroll batches)."""
    platforms: np.ndarray
    processors: np.ndarray
    owner_person: np.ndarray
    """Per enterprise: the counterparty row of its legal representative's personal account."""


@dataclass(slots=True)
class Facilities:
    """Working-capital loan facilities (one per borrowing enterprise, at its main bank)."""

    enterprise: np.ndarray
    account: np.ndarray
    limit_minor: np.ndarray
    rate: np.ndarray
    first_month: np.ndarray
    """Month of the first drawdown (negative: drawn before the simulation starts)."""
    term: np.ndarray
    amortising: np.ndarray
    guarantor: np.ndarray
    """Guaranteeing enterprise, or -1 (secured by collateral)."""


@dataclass(slots=True)
class Persons:
    """Natural persons: legal representatives, shareholders, executives."""

    name: list[str]
    pinyin: list[str]

    @property
    def n(self) -> int:
        """Number of persons."""
        return len(self.name)


@dataclass(slots=True)
class World:
    """Everything static about the simulated consortium."""

    seed: int
    start: date
    months: int
    config: SynthConfig
    banks: list[Bank]
    enterprises: Enterprises
    persons: Persons
    accounts: Accounts
    counterparties: Counterparties
    links: Links
    facilities: Facilities
    group_controller: np.ndarray
    """Per group: the controlling person."""
    group_anchor: np.ndarray
    """Per group: the enterprise that holds shares in the others."""


# ---------------------------------------------------------------------------------------------
# names


def _brand(rng: np.random.Generator, n: int) -> list[str]:
    first = rng.integers(0, len(BRAND_CHARS), n)
    second = (first + rng.integers(1, len(BRAND_CHARS), n)) % len(BRAND_CHARS)
    return [
        BRAND_CHARS[a] + BRAND_CHARS[b]
        for a, b in zip(first.tolist(), second.tolist(), strict=True)
    ]


def pinyin_word(chars: str) -> str:
    """``恒达`` -> ``Hengda``."""
    return "".join(PINYIN[c] for c in chars).capitalize()


def person_names(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """``n`` Chinese personal names and their pinyin (``Wang Wei``)."""
    weights = np.array([w for _, w in SURNAMES])
    surname = rng.choice(len(SURNAMES), n, p=weights / weights.sum())
    two = rng.random(n) < 0.6
    g1 = rng.integers(0, len(GIVEN_CHARS), n)
    g2 = rng.integers(0, len(GIVEN_CHARS), n)
    names: list[str] = []
    pinyin: list[str] = []
    for s, t, a, b in zip(surname.tolist(), two.tolist(), g1.tolist(), g2.tolist(), strict=True):
        family = SURNAMES[s][0]
        given = GIVEN_CHARS[a] + (GIVEN_CHARS[b] if t else "")
        names.append(family + given)
        pinyin.append(
            f"{PINYIN[family].capitalize()} {''.join(PINYIN[c] for c in given).capitalize()}"
        )
    return names, pinyin


def company_names(
    rng: np.random.Generator,
    prefecture: np.ndarray,
    division: np.ndarray,
    joint_stock: np.ndarray,
    taken: set[str],
) -> tuple[list[str], list[str]]:
    """Unique Chinese company names and their English names (``taken`` is updated)."""
    n = len(prefecture)
    word_pick = rng.integers(0, 1 << 30, n)
    names: list[str] = [""] * n
    english: list[str] = [""] * n
    todo = np.arange(n)
    for _ in range(100):
        if len(todo) == 0:
            break
        brands = _brand(rng, len(todo))
        retry: list[int] = []
        for i, brand in zip(todo.tolist(), brands, strict=True):
            pref = PREFECTURES[int(prefecture[i])]
            words = INDUSTRY_PROFILES[DIVISIONS[int(division[i])]].words
            word_zh, word_en = words[int(word_pick[i]) % len(words)]
            suffix = "股份有限公司" if joint_stock[i] else "有限公司"
            name = f"{pref.city}{brand}{word_zh}{suffix}"
            if name in taken:
                retry.append(i)
                continue
            taken.add(name)
            names[i] = name
            english[i] = f"{pref.pinyin} {pinyin_word(brand)} {word_en} Co., Ltd."
        todo = np.array(retry, dtype=np.int64)
    if len(todo):
        raise RuntimeError("could not find unique company names")  # pragma: no cover
    return names, english


def _weighted_cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    return np.asarray(cdf / cdf[-1])


def _pick(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


# ---------------------------------------------------------------------------------------------
# building


def build_world(
    *,
    seed: int,
    start: date,
    months: int,
    enterprises: int,
    banks: list[BankFormat],
    config: SynthConfig,
) -> World:
    """Draw the static world of a run."""
    bank_objs = _banks(seed, banks)
    persons_rng = stream(seed, "names", 1)
    ent = _enterprises(seed, enterprises, start)
    n = ent.n
    # persons: one legal representative per enterprise, group controllers, extra shareholders
    group, n_groups = _groups(stream(seed, "social"), ent, config)
    ent.group = group
    n_persons = n + n_groups + 2 * n  # legal representatives, controllers, officers
    p_names, p_pinyin = person_names(persons_rng, n_persons)
    persons = Persons(p_names, p_pinyin)
    ent.legal_rep = np.arange(n)
    group_controller = np.arange(n, n + n_groups)
    social = stream(seed, "social", 1)
    anchors = np.full(n_groups, -1, dtype=np.int64)
    in_group = np.flatnonzero(group >= 0)
    for i in in_group.tolist():
        g = int(group[i])
        if anchors[g] < 0:
            anchors[g] = i
    # some group members are run by the group's controller: the same legal representative
    share_rep = social.random(n) < 0.35
    for i in in_group.tolist():
        if share_rep[i] and anchors[group[i]] != i:
            ent.legal_rep[i] = n + int(group[i])
    _share_contacts(social, ent, anchors)
    accounts = _accounts(seed, ent, bank_objs, config, start)
    cps, links = _counterparties(seed, ent, persons, accounts, bank_objs)
    _supply_chain(seed, ent, accounts, links)
    facilities = _facilities(seed, ent, accounts, links, months=months, config=config)
    return World(
        seed=seed,
        start=start,
        months=months,
        config=config,
        banks=bank_objs,
        enterprises=ent,
        persons=persons,
        accounts=accounts,
        counterparties=cps,
        links=links,
        facilities=facilities,
        group_controller=group_controller,
        group_anchor=anchors,
    )


def _banks(seed: int, formats: list[BankFormat]) -> list[Bank]:
    rng = stream(seed, "banks")
    catalog = {b.bank_id: b for b in BANK_CATALOG}
    out: list[Bank] = []
    for index, export in enumerate(formats):
        entry = catalog.get(export.bank_id) or BankCatalogEntry(
            export.bank_id, export.name, f"Rural Commercial Bank {index + 1}", "", 18
        )
        fee = float(rng.choice([0.0, 0.25, 0.5]))
        out.append(Bank(index, entry, export, fee))
    return out


def _enterprises(seed: int, n: int, start: date) -> Enterprises:
    rng = stream(seed, "enterprises")
    weights = np.array([INDUSTRY_PROFILES[d].weight for d in DIVISIONS])
    division = _pick(rng, _weighted_cdf(weights), n)
    pref_weights = np.array([p.weight for p in PREFECTURES])
    prefecture = _pick(rng, _weighted_cdf(pref_weights), n)
    table = districts()
    district_pick = rng.integers(0, 1 << 30, n)
    district_code: list[str] = []
    district_name: list[str] = []
    for p, k in zip(prefecture.tolist(), district_pick.tolist(), strict=True):
        options = table[PREFECTURES[p].code]
        code, name = options[k % len(options)]
        district_code.append(code)
        district_name.append(name)
    # revenue: Pareto tail (alpha 1.3) times a lognormal, CNY per year
    revenue = 2.0e6 * (1.0 + rng.pareto(1.3, n)) * rng.lognormal(0.0, 0.5, n)
    revenue = np.clip(revenue, 3.0e5, 3.0e9)
    start_day = day_number(start)
    age_years = np.clip(rng.lognormal(np.log(7.0), 0.6, n), 1.2, 30.0)
    registered = start_day - (age_years * 365.25).astype(np.int64)
    capital_yuan = np.clip(revenue * rng.uniform(0.03, 0.4, n), 1.0e5, 1.0e9)
    capital_minor = _nice_capital(capital_yuan) * 100
    joint_stock = (capital_yuan > 3.0e7) & (rng.random(n) < 0.6)
    names, english = company_names(stream(seed, "names"), prefecture, division, joint_stock, set())
    bodies = codes.org_bodies(rng, registered >= REFORM_DAY)
    credit = [
        codes.credit_code(region, body) for region, body in zip(district_code, bodies, strict=True)
    ]
    big_city = np.isin(prefecture, [0, 1, 30, 29])  # Beijing, Shanghai, Shenzhen, Guangzhou
    wage = np.where(big_city, 11_000.0, 7_000.0) * rng.lognormal(0.0, 0.2, n)
    payroll_ratio = np.array([INDUSTRY_PROFILES[DIVISIONS[d]].payroll for d in division.tolist()])
    employees = np.maximum(3, np.round(revenue * payroll_ratio / (12 * wage))).astype(np.int64)
    growth = rng.normal(0.04, 0.12, n)
    exporter = np.isin(np.array([DIVISIONS[d] for d in division.tolist()]), _EXPORT_DIVISIONS)
    pay_day = rng.choice(np.array([5, 10, 10, 15, 15, 20, 25]), n)
    rent = np.round(revenue * rng.uniform(0.01, 0.05, n) / 12, -2)
    address = [
        _address(PREFECTURES[p], d, r)
        for p, d, r in zip(
            prefecture.tolist(), district_name, rng.integers(0, 1 << 30, n).tolist(), strict=True
        )
    ]
    phone = [
        _phone(PREFECTURES[p].area_code, v)
        for p, v in zip(prefecture.tolist(), rng.integers(0, 1 << 40, n).tolist(), strict=True)
    ]
    return Enterprises(
        credit_code=credit,
        name=names,
        name_en=english,
        division=division,
        prefecture=prefecture,
        district_code=district_code,
        district_name=district_name,
        registered=registered,
        capital_minor=capital_minor,
        revenue=revenue,
        employees=employees,
        wage=wage,
        growth=growth,
        group=np.full(n, -1, dtype=np.int64),
        legal_rep=np.arange(n),
        address=address,
        phone=phone,
        exporter=exporter,
        pay_day=pay_day,
        rent=rent,
    )


_EXPORT_DIVISIONS = np.array(["17", "18", "19", "21", "24", "29", "33", "34", "38", "39", "51"])


def _nice_capital(yuan: np.ndarray) -> np.ndarray:
    """Round registered capital to 1, 2, 3 or 5 x 10^k 万元, as companies register it."""
    wan = yuan / 1e4
    exponent = np.floor(np.log10(wan))
    mantissa = wan / 10**exponent
    steps = np.array([1.0, 2.0, 3.0, 5.0, 10.0])
    nearest = steps[np.abs(mantissa[:, None] - steps[None, :]).argmin(axis=1)]
    return np.asarray((nearest * 10**exponent * 1e4).round().astype(np.int64))


def _address(pref: Prefecture, district: str, pick: int) -> str:
    road = ROADS[pick % len(ROADS)]
    number = 1 + (pick >> 5) % 888
    head = f"{pref.city}市" if pref.municipality else f"{pref.province}{pref.city}市"
    room = ""
    if (pick >> 15) % 3 == 0:
        room = f"{1 + (pick >> 17) % 12}栋{1 + (pick >> 21) % 20}{(pick >> 25) % 20 + 1:02d}室"
    return f"{head}{district}{road}{number}号{room}"


def _phone(area: str, value: int) -> str:
    if value % 3 == 0:
        return f"1{3 + value % 7}{(value >> 3) % 10**9:09d}"
    digits = 8 if len(area) == 3 or value % 2 else 7
    first = 2 + (value >> 4) % 7
    rest = (value >> 8) % 10 ** (digits - 1)
    return f"{area}-{first}{rest:0{digits - 1}d}"


def _groups(
    rng: np.random.Generator, ent: Enterprises, config: SynthConfig
) -> tuple[np.ndarray, int]:
    """Related groups: consecutive blocks of enterprises ordered by prefecture, so that group
    members are mostly in the same city."""
    n = ent.n
    group = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((rng.random(n), ent.prefecture))
    target = round(config.group_share * n)
    position = 0
    count = 0
    sizes = rng.integers(2, 6, max(1, n))
    gaps = rng.integers(0, 8, max(1, n))
    k = 0
    while position < n and (group >= 0).sum() < target:
        size = int(sizes[k % len(sizes)])
        members = order[position : position + size]
        if len(members) >= 2:
            group[members] = count
            count += 1
        position += size + int(gaps[k % len(gaps)])
        k += 1
    return group, count


def _share_contacts(rng: np.random.Generator, ent: Enterprises, anchors: np.ndarray) -> None:
    """Group members often register at the anchor's address and give its phone."""
    for i in np.flatnonzero(ent.group >= 0).tolist():
        anchor = int(anchors[ent.group[i]])
        if anchor == i:
            continue
        if rng.random() < 0.5 and ent.prefecture[i] == ent.prefecture[anchor]:
            ent.address[i] = ent.address[anchor]
            ent.district_name[i] = ent.district_name[anchor]
        if rng.random() < 0.4:
            ent.phone[i] = ent.phone[anchor]


def _accounts(
    seed: int, ent: Enterprises, banks: list[Bank], config: SynthConfig, start: date
) -> Accounts:
    rng = stream(seed, "accounts")
    n = ent.n
    n_banks = len(banks)
    k = 1 + (rng.random(n) < 0.45).astype(np.int64) + (rng.random(n) < 0.2).astype(np.int64)
    k = np.minimum(k, n_banks)
    bank_weight = rng.uniform(0.6, 1.4, n_banks)
    owners: list[int] = []
    bank_of: list[int] = []
    usd_flags: list[bool] = []
    by_enterprise: list[list[int]] = [[] for _ in range(n)]
    primary = np.zeros(n, dtype=np.int64)
    usd_account = np.full(n, -1, dtype=np.int64)
    has_usd = ent.exporter & (rng.random(n) < config.usd_share)
    keys = rng.random((n, n_banks)) ** (1.0 / bank_weight[None, :])
    chosen = np.argsort(-keys, axis=1)
    for i in range(n):
        for j in range(int(k[i])):
            index = len(owners)
            owners.append(i)
            bank_of.append(int(chosen[i, j]))
            usd_flags.append(False)
            by_enterprise[i].append(index)
        primary[i] = by_enterprise[i][0]
        if has_usd[i]:
            usd_account[i] = len(owners)
            owners.append(i)
            bank_of.append(int(chosen[i, 0]))
            usd_flags.append(True)
    owner = np.array(owners, dtype=np.int64)
    bank = np.array(bank_of, dtype=np.int64)
    usd = np.array(usd_flags, dtype=bool)
    number = [""] * len(owners)
    for b in banks:
        rows = np.flatnonzero(bank == b.index)
        prefix = str(1 + b.index % 9) + str(rng.integers(100, 1000))
        for row, value in zip(
            rows.tolist(),
            codes.account_numbers(rng, len(rows), b.entry.account_digits, prefix),
            strict=True,
        ):
            number[row] = value
    start_day = day_number(start)
    opened_offset = rng.uniform(0.0, 1.0, len(owners))
    registered = ent.registered[owner]
    opened = registered + (
        (start_day - 30 - registered)
        * opened_offset
        * np.where(np.arange(len(owners)) == primary[owner], 0.1, 1.0)
    ).astype(np.int64)
    return Accounts(number, bank, owner, usd, opened, primary, usd_account, by_enterprise)


def _counterparties(
    seed: int, ent: Enterprises, persons: Persons, accounts: Accounts, banks: list[Bank]
) -> tuple[Counterparties, Links]:
    rng = stream(seed, "externals")
    n = ent.n
    names: list[str] = []
    names_en: list[str] = []
    accounts_: list[str] = []
    banks_: list[str] = []
    bics_: list[str] = []
    kinds: list[int] = []
    enterprises: list[int] = []

    def add(
        nm: str, en: str, acct: str, *, bank: str, bic: str, kind: int, enterprise: int = -1
    ) -> int:
        names.append(nm)
        names_en.append(en)
        accounts_.append(acct)
        banks_.append(bank)
        bics_.append(bic)
        kinds.append(kind)
        enterprises.append(enterprise)
        return len(names) - 1

    for a in range(accounts.n):
        owner = int(accounts.owner[a])
        entry = banks[int(accounts.bank[a])].entry
        pref = PREFECTURES[int(ent.prefecture[owner])]
        add(
            ent.name[owner],
            ent.name_en[owner],
            accounts.number[a],
            bank=f"{entry.name_zh}{pref.city}分行",
            bic=entry.bic,
            kind=KIND_MEMBER,
            enterprise=owner,
        )

    catalog = list(BANK_CATALOG)

    def external_accounts(count: int) -> tuple[list[str], list[str], list[str]]:
        picks = rng.integers(0, len(catalog), count)
        numbers: list[str] = []
        names_: list[str] = []
        bics: list[str] = []
        for idx, p in enumerate(picks.tolist()):
            entry = catalog[p]
            body = str(5 + idx % 4) + str(
                int(
                    rng.integers(10 ** (entry.account_digits - 3), 10 ** (entry.account_digits - 2))
                )
            )
            numbers.append(body + codes.luhn_digit(body))
            names_.append(entry.name_zh)
            bics.append(entry.bic)
        return numbers, names_, bics

    # external companies: customers and suppliers outside the consortium
    n_ext = max(60, int(1.2 * n))
    weights = np.array([INDUSTRY_PROFILES[d].weight for d in DIVISIONS])
    ext_div = _pick(rng, _weighted_cdf(weights), n_ext)
    ext_pref = _pick(rng, _weighted_cdf(np.array([p.weight for p in PREFECTURES])), n_ext)
    ext_names, ext_en = company_names(
        stream(seed, "names", 2), ext_pref, ext_div, rng.random(n_ext) < 0.1, set(ent.name)
    )
    numbers, bank_names, bics = external_accounts(n_ext)
    ext_rows = np.array(
        [
            add(
                ext_names[j],
                ext_en[j],
                numbers[j],
                bank=f"{bank_names[j]}{PREFECTURES[int(ext_pref[j])].city}分行",
                bic=bics[j],
                kind=KIND_SUPPLIER,
            )
            for j in range(n_ext)
        ],
        dtype=np.int64,
    )
    popularity = rng.pareto(1.2, n_ext) + 1.0
    ext_cdf = _weighted_cdf(popularity)
    revenue_scale = np.log1p(ent.revenue / 2.0e6)
    n_cust = 1 + rng.poisson(1.5 + 1.2 * revenue_scale)
    n_supp = 1 + rng.poisson(1.0 + 0.8 * revenue_scale)
    cust_ptr = np.concatenate([[0], np.cumsum(n_cust)])
    supp_ptr = np.concatenate([[0], np.cumsum(n_supp)])
    cust = ext_rows[_pick(rng, ext_cdf, int(cust_ptr[-1]))]
    supp = ext_rows[_by_division(rng, ent.division, n_supp, ext_div, popularity)]
    for row in np.unique(cust).tolist():
        kinds[row] = KIND_CUSTOMER

    # overseas customers of exporters
    n_foreign = 24
    foreign_rows = []
    for j in range(n_foreign):
        adjective = FOREIGN_WORDS[0][j % len(FOREIGN_WORDS[0])]
        noun = FOREIGN_WORDS[1][(j * 5) % len(FOREIGN_WORDS[1])]
        suffix = FOREIGN_WORDS[2][(j * 3) % len(FOREIGN_WORDS[2])]
        fname = f"{adjective} {noun} {suffix}"
        acct = f"{int(rng.integers(10**11, 10**12))}"
        foreign_rows.append(
            add(
                fname,
                fname,
                acct,
                bank=FOREIGN_BANKS[j % len(FOREIGN_BANKS)],
                bic="",
                kind=KIND_FOREIGN,
            )
        )
    foreign = np.where(
        accounts.usd_account >= 0, np.array(foreign_rows)[rng.integers(0, n_foreign, n)], -1
    )

    # landlords: property companies of the enterprise's city
    n_land = max(10, n // 4)
    land_pref = _pick(rng, _weighted_cdf(np.array([p.weight for p in PREFECTURES])), n_land)
    land_div = np.full(n_land, DIVISIONS.index("70"))
    land_names, land_en = company_names(
        stream(seed, "names", 3),
        land_pref,
        land_div,
        np.zeros(n_land, dtype=bool),
        set(ent.name) | set(ext_names),
    )
    numbers, bank_names, bics = external_accounts(n_land)
    land_rows = np.array(
        [
            add(
                land_names[j],
                land_en[j],
                numbers[j],
                bank=f"{bank_names[j]}{PREFECTURES[int(land_pref[j])].city}分行",
                bic=bics[j],
                kind=KIND_LANDLORD,
            )
            for j in range(n_land)
        ]
    )
    landlord = np.empty(n, dtype=np.int64)
    for p in range(len(PREFECTURES)):
        members = np.flatnonzero(ent.prefecture == p)
        local = land_rows[land_pref == p]
        pool = local if len(local) else land_rows
        landlord[members] = pool[rng.integers(0, len(pool), len(members))]

    # public bodies: tax bureaus per district, housing fund and utilities per prefecture
    tax_row: dict[str, int] = {}
    tax = np.empty(n, dtype=np.int64)
    for i in range(n):
        code = ent.district_code[i]
        if code not in tax_row:
            pref = PREFECTURES[int(ent.prefecture[i])]
            tax_row[code] = add(
                _tax_bureau(pref, ent.district_name[i]),
                f"State Taxation Administration {pref.pinyin} Tax Bureau",
                "27" + code + "0000" + str(int(rng.integers(1000, 10000))),
                bank="国家金库" + pref.city + "中心支库",
                bic="",
                kind=KIND_TAX,
            )
        tax[i] = tax_row[code]
    fund_row: list[int] = []
    utility_rows: list[tuple[int, int, int]] = []
    for pref in PREFECTURES:
        numbers, bank_names, bics = external_accounts(4)
        fund_row.append(
            add(
                f"{pref.city}住房公积金管理中心",
                f"{pref.pinyin} Housing Provident Fund Management Center",
                numbers[0],
                bank=f"{bank_names[0]}{pref.city}分行",
                bic=bics[0],
                kind=KIND_FUND,
            )
        )
        grid = (
            f"国网{pref.city}市电力公司"
            if pref.municipality
            else f"国网{pref.province_short}省电力有限公司{pref.city}供电分公司"
        )
        if pref.province.endswith("自治区"):
            grid = f"广西电网有限责任公司{pref.city}供电局"
        if pref.province == "广东省":
            grid = f"广东电网有限责任公司{pref.city}供电局"
        utility_rows.append(
            (
                add(
                    grid,
                    f"{pref.pinyin} Power Supply Company",
                    numbers[1],
                    bank=f"{bank_names[1]}{pref.city}分行",
                    bic=bics[1],
                    kind=KIND_UTILITY,
                ),
                add(
                    f"{pref.city}市水务集团有限公司",
                    f"{pref.pinyin} Water Group Co., Ltd.",
                    numbers[2],
                    bank=f"{bank_names[2]}{pref.city}分行",
                    bic=bics[2],
                    kind=KIND_UTILITY,
                ),
                add(
                    f"{pref.city}市燃气集团有限公司",
                    f"{pref.pinyin} Gas Group Co., Ltd.",
                    numbers[3],
                    bank=f"{bank_names[3]}{pref.city}分行",
                    bic=bics[3],
                    kind=KIND_UTILITY,
                ),
            )
        )
    fund = np.array(fund_row)[ent.prefecture]
    utilities = np.array(utility_rows)[ent.prefecture]

    # bank branches (loans, payroll batches), per consortium bank and prefecture
    branch_row: dict[tuple[int, int], int] = {}
    bank_branch = np.empty(accounts.n, dtype=np.int64)
    for a in range(accounts.n):
        b = int(accounts.bank[a])
        p = int(ent.prefecture[accounts.owner[a]])
        if (b, p) not in branch_row:
            entry = banks[b].entry
            pref = PREFECTURES[p]
            body = "9" + str(
                int(
                    rng.integers(10 ** (entry.account_digits - 3), 10 ** (entry.account_digits - 2))
                )
            )
            branch_row[(b, p)] = add(
                f"{entry.name_zh}{pref.city}分行",
                f"{entry.name_en} {pref.pinyin} Branch",
                body + codes.luhn_digit(body),
                bank=f"{entry.name_zh}{pref.city}分行",
                bic=entry.bic,
                kind=KIND_BANK,
            )
        bank_branch[a] = branch_row[(b, p)]

    # online lenders and card acquirers (fictional names)
    cities = ("重庆", "广州", "深圳", "南宁", "上海", "杭州")
    platform_rows = []
    for j, brand in enumerate(_brand(rng, 6)):
        pref = next(p for p in PREFECTURES if p.city == cities[j])
        numbers, bank_names, bics = external_accounts(1)
        platform_rows.append(
            add(
                f"{pref.city}市{brand}网络小额贷款有限公司",
                f"{pref.pinyin} {pinyin_word(brand)} Online Microcredit Co., Ltd.",
                numbers[0],
                bank=f"{bank_names[0]}{pref.city}分行",
                bic=bics[0],
                kind=KIND_PLATFORM,
            )
        )
    processor_rows = []
    for brand in _brand(rng, 3):
        numbers, bank_names, bics = external_accounts(1)
        processor_rows.append(
            add(
                f"{brand}支付网络服务股份有限公司",
                f"{pinyin_word(brand)} Payment Network Services Co., Ltd.",
                numbers[0],
                bank=bank_names[0],
                bic=bics[0],
                kind=KIND_PROCESSOR,
            )
        )

    # legal representatives' personal accounts (shareholder loans)
    owner_person = np.empty(n, dtype=np.int64)
    for i in range(n):
        person = int(ent.legal_rep[i])
        body = "62" + str(int(rng.integers(10**15, 10**16)))
        entry = catalog[int(rng.integers(0, 5))]
        owner_person[i] = add(
            persons.name[person],
            persons.pinyin[person],
            body + codes.luhn_digit(body),
            bank=entry.name_zh,
            bic=entry.bic,
            kind=KIND_PERSON,
        )

    cps = Counterparties(
        name=names,
        name_en=names_en,
        account=accounts_,
        bank=banks_,
        bic=bics_,
        kind=np.array(kinds, dtype=np.int64),
        enterprise=np.array(enterprises, dtype=np.int64),
    )
    links = Links(
        supplier=np.zeros(0, dtype=np.int64),
        customer=np.zeros(0, dtype=np.int64),
        share=np.zeros(0),
        payee_account=np.zeros(0, dtype=np.int64),
        payer_account=np.zeros(0, dtype=np.int64),
        pay_day=np.zeros(0, dtype=np.int64),
        member_purchase_share=np.zeros(n),
        ext_customer_ptr=cust_ptr,
        ext_customer=cust,
        ext_supplier_ptr=supp_ptr,
        ext_supplier=supp,
        foreign_customer=foreign,
        landlord=landlord,
        tax=tax,
        fund=fund,
        utilities=utilities,
        bank_branch=bank_branch,
        platforms=np.array(platform_rows),
        processors=np.array(processor_rows),
        owner_person=owner_person,
    )
    return cps, links


def _tax_bureau(pref: Prefecture, district: str) -> str:
    city = f"{pref.city}市"
    if not district:
        return f"国家税务总局{city}税务局"
    if district.endswith("区"):
        return f"国家税务总局{city}{district}税务局"
    return f"国家税务总局{district}税务局"


def _by_division(
    rng: np.random.Generator,
    customer_division: np.ndarray,
    slots: np.ndarray,
    pool_division: np.ndarray,
    pool_weight: np.ndarray,
) -> np.ndarray:
    """For each customer, ``slots[i]`` picks from the pool: first a supplier division by the
    customer's industry profile, then a pool member of that division by ``pool_weight``.
    Returns pool indices, customer by customer."""
    total = int(slots.sum())
    owner = np.repeat(np.arange(len(slots)), slots)
    result = np.empty(total, dtype=np.int64)
    all_cdf = _weighted_cdf(pool_weight)
    pools: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for d in np.unique(pool_division).tolist():
        members = np.flatnonzero(pool_division == d)
        pools[d] = (members, _weighted_cdf(pool_weight[members]))
    slot_division = customer_division[owner]
    for d in np.unique(slot_division).tolist():
        rows = np.flatnonzero(slot_division == d)
        options = [
            (DIVISIONS.index(code), w)
            for code, w in INDUSTRY_PROFILES[DIVISIONS[d]].suppliers
            if code in INDUSTRY_PROFILES
        ]
        available = [(code, w) for code, w in options if code in pools]
        if not available:
            result[rows] = _pick(rng, all_cdf, len(rows))
            continue
        codes_ = np.array([c for c, _ in available])
        wts = np.array([w for _, w in available])
        chosen = codes_[_pick(rng, _weighted_cdf(wts), len(rows))]
        for code in np.unique(chosen).tolist():
            sub = rows[chosen == code]
            members, cdf = pools[code]
            result[sub] = members[_pick(rng, cdf, len(sub))]
    return result


def _supply_chain(seed: int, ent: Enterprises, accounts: Accounts, links: Links) -> None:
    rng = stream(seed, "supply")
    n = ent.n
    slots = 1 + rng.poisson(np.clip(0.6 + 0.6 * np.log1p(ent.revenue / 2.0e6), 0.0, 12.0))
    supplier = _by_division(rng, ent.division, slots, ent.division, ent.revenue**0.9)
    customer = np.repeat(np.arange(n), slots)
    keep = supplier != customer
    key = np.unique(customer[keep] * n + supplier[keep])
    customer = key // n
    supplier = key % n
    raw = rng.lognormal(0.0, 0.8, len(key)) * ent.revenue[supplier] ** 0.3
    member_share = rng.uniform(0.15, 0.5, n)
    has_edge = np.bincount(customer, minlength=n) > 0
    member_share = np.where(has_edge, member_share, 0.0)
    totals = np.bincount(customer, weights=raw, minlength=n)
    share = raw / totals[customer] * member_share[customer]
    # the supplier tells each customer one receiving account; the customer pays from its own
    pick_payee = rng.integers(0, 1 << 30, len(key))
    payee = np.array(
        [
            accounts.by_enterprise[s][p % len(accounts.by_enterprise[s])]
            if p % 3
            else accounts.primary[s]
            for s, p in zip(supplier.tolist(), pick_payee.tolist(), strict=True)
        ],
        dtype=np.int64,
    )
    pick_payer = rng.random(len(key))
    payer = np.array(
        [
            accounts.by_enterprise[c][-1] if q < 0.2 else accounts.primary[c]
            for c, q in zip(customer.tolist(), pick_payer.tolist(), strict=True)
        ],
        dtype=np.int64,
    )
    links.supplier = supplier
    links.customer = customer
    links.share = share
    links.payee_account = payee
    links.payer_account = payer
    links.pay_day = rng.choice(np.array([5, 10, 15, 20, 25, 28]), len(key))
    links.member_purchase_share = member_share


def _facilities(
    seed: int,
    ent: Enterprises,
    accounts: Accounts,
    links: Links,
    *,
    months: int,
    config: SynthConfig,
) -> Facilities:
    rng = stream(seed, "loans")
    n = ent.n
    p = config.loan_share * np.clip(0.5 + 0.3 * np.log10(ent.revenue / 1.0e6), 0.3, 1.6)
    borrower = np.flatnonzero(rng.random(n) < np.clip(p, 0.0, 0.95))
    m = len(borrower)
    limit_yuan = np.maximum(1.0e5, np.round(ent.revenue[borrower] * rng.uniform(0.08, 0.3, m), -4))
    amortising = rng.random(m) < 0.3
    term = np.where(amortising, rng.choice(np.array([24, 36]), m), 12)
    first = rng.integers(-11, months, m)
    rate = 0.0345 + rng.uniform(0.005, 0.03, m)
    guarantor = np.full(m, -1, dtype=np.int64)
    # trading partners, for mutual guarantees (互保)
    partners: dict[int, list[int]] = {}
    for s, c in zip(links.supplier.tolist(), links.customer.tolist(), strict=True):
        partners.setdefault(c, []).append(s)
        partners.setdefault(s, []).append(c)
    by_group: dict[int, list[int]] = {}
    for i in np.flatnonzero(ent.group >= 0).tolist():
        by_group.setdefault(int(ent.group[i]), []).append(i)
    draw = rng.random(m)
    pick = rng.integers(0, 1 << 30, m)
    for k, i in enumerate(borrower.tolist()):
        g = int(ent.group[i])
        mates = [j for j in by_group.get(g, []) if j != i]
        if mates and draw[k] < 0.7:
            guarantor[k] = mates[pick[k] % len(mates)]
        elif partners.get(i) and draw[k] < 0.45:
            options = partners[i]
            guarantor[k] = options[pick[k] % len(options)]
    return Facilities(
        enterprise=borrower,
        account=accounts.primary[borrower],
        limit_minor=(limit_yuan * 100).astype(np.int64),
        rate=rate,
        first_month=first,
        term=term,
        amortising=amortising,
        guarantor=guarantor,
    )
