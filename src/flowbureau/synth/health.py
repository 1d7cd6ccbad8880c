"""Latent financial health, shocks along the supply chain, and defaults.

Rules (the model every ground-truth number comes from):
- Health of enterprise ``i`` in month ``t``::

      h[i,t] = mu_i + beta_i * M_t + F[s(i),t] + x[i,t] + S[i,t]

  ``mu_i`` a persistent level (sd 0.6; older and larger firms a little healthier), ``M_t`` the
  macro index, ``beta_i`` half the industry's cyclicality, ``F`` an AR(1) factor per GB/T 4754
  section (phi 0.85, sd 0.12), ``x`` an idiosyncratic AR(1) (phi 0.95, innovation sd 0.13) and
  ``S`` the stock of shocks (decays by 0.85 a month).
- The macro index comes from real data: ``statsmodels`` ``macrodata`` (US quarterly, 1959Q1 to
  2009Q3): z-scores of real GDP growth (log difference), of the change in unemployment and
  of inflation, combined ``0.6 z(gdp) - 0.3 z(d unemp) - 0.1 z(infl)``, rescaled to unit
  variance and clipped to +-3. Simulated month ``m`` (0-based) uses quarter row
  ``L - ceil(months/3) + m // 3`` of the ``L`` = 202 quarters with a growth rate (1959Q2 ..
  2009Q3), so the simulation always ends in 2009Q3 and a 24-month run spans 2007Q4 .. 2009Q3
  (the financial crisis and the start of the recovery); a run longer than the series wraps.
- Shocks: each month each active enterprise suffers a planted shock with probability
  ``shock_rate`` (impact -0.8 .. -2.2). A negative impulse to a customer reaches each of its
  consortium suppliers the next month, scaled by 0.7 times the share of the supplier's sales
  that go to that customer (up to three hops). A default sends -1.2 x that share to its
  suppliers and -0.6 - 0.6 x min(1, facility / revenue) to the enterprise guaranteeing its loan.
- Receivables: a distressed customer pays part of its member suppliers' invoices late and
  never settles a share ``unpaid_share(h) = 0.6 sigmoid(-2.5 (h + 1.2))`` of them (0.03 at
  h = 0, 0.23 at h = -1, 0.41 at h = -1.5; in :mod:`flowbureau.synth.flows` each of its trade
  payments is dropped with that probability). Each month every supplier loses
  ``RECEIVABLE_LOSS x dependence x unpaid_share(h of the customer last month)`` health (the
  written-off receivable, 1.5 x the share of its sales lost), recorded as ``receivable``
  shocks when at least ``MIN_IMPACT``; these impulses enter the shock stock but are not passed
  on as ``contagion`` (the supplier's own lower health reaches its suppliers the same way).
- Default: monthly probability ``pd = 1 / (1 + exp(-(a - b h)))`` (``default_intercept`` a,
  ``default_slope`` b); a default is absorbing. ``pd`` is recorded for every active month, and
  ``pd_12m``, the model's own probability of default within the next twelve months given the
  state at ``t`` (see :func:`_conditional_pd`): the oracle a scoring model is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flowbureau.synth.calendar import Calendar, day_number
from flowbureau.synth.config import SynthConfig
from flowbureau.synth.reference import INDUSTRY_PROFILES, gbt4754
from flowbureau.synth.world import DIVISIONS, World, stream

MACRO_WEIGHTS = (0.6, -0.3, -0.1)
SECTION_PHI = 0.85
SECTION_SIGMA = 0.12
IDIO_PHI = 0.95
IDIO_SIGMA = 0.13
SHOCK_DECAY = 0.85
CONTAGION = 0.7
DEFAULT_CONTAGION = 1.2
MAX_HOPS = 3
MIN_IMPACT = 0.02
RECEIVABLE_LOSS = 1.5
"""Health lost per unit of the supplier's sales that a distressed customer leaves unpaid."""
UNPAID_MAX = 0.6
UNPAID_SLOPE = 2.5
UNPAID_CENTRE = -1.2


def unpaid_share(h: np.ndarray) -> np.ndarray:
    """Share of a member customer's trade payments that are never made, given its health
    ``h`` (``UNPAID_MAX * sigmoid(-UNPAID_SLOPE * (h - UNPAID_CENTRE))``)."""
    return np.asarray(
        UNPAID_MAX
        / (1.0 + np.exp(UNPAID_SLOPE * (np.asarray(h, dtype=np.float64) - UNPAID_CENTRE)))
    )


@dataclass(frozen=True, slots=True)
class MacroMonth:
    """The macro data one simulated month is mapped to."""

    quarter: str
    realgdp_growth: float
    unemp: float
    infl: float
    index: float


def macro_series(months: int) -> list[MacroMonth]:
    """The macro index of each simulated month (see the module rules for the mapping)."""
    from statsmodels.datasets import macrodata

    data = macrodata.load_pandas().data
    gdp = np.log(data["realgdp"].to_numpy(dtype=float))
    growth = 100.0 * np.diff(gdp)
    unemp = data["unemp"].to_numpy(dtype=float)[1:]
    d_unemp = np.diff(data["unemp"].to_numpy(dtype=float))
    infl = data["infl"].to_numpy(dtype=float)[1:]
    years = data["year"].to_numpy(dtype=int)[1:]
    quarters = data["quarter"].to_numpy(dtype=int)[1:]

    def z(values: np.ndarray) -> np.ndarray:
        return np.asarray((values - values.mean()) / values.std())

    raw = MACRO_WEIGHTS[0] * z(growth) + MACRO_WEIGHTS[1] * z(d_unemp) + MACRO_WEIGHTS[2] * z(infl)
    index = np.clip(raw / raw.std(), -3.0, 3.0)
    length = len(index)
    n_quarters = -(-months // 3)
    out: list[MacroMonth] = []
    for m in range(months):
        row = (length - n_quarters + m // 3) % length
        out.append(
            MacroMonth(
                quarter=f"{years[row]}Q{quarters[row]}",
                realgdp_growth=float(growth[row]),
                unemp=float(unemp[row]),
                infl=float(infl[row]),
                index=float(index[row]),
            )
        )
    return out


SHOCK_KINDS = ("planted", "contagion", "default_contagion", "guarantee", "receivable")
"""Values of the ``kind`` column of the ``shocks`` table."""

_SHOCK_COLUMNS = ("shock_id", "month", "origin", "source", "target", "hop", "impact", "kind")


@dataclass(slots=True)
class ShockLog:
    """Rows of the ``shocks`` ground-truth table, appended month by month as compact numpy
    chunks (receivable losses add about 0.2 rows per enterprise-month)."""

    chunks: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    """One tuple of column arrays (:data:`_SHOCK_COLUMNS` order) per :meth:`add`."""

    def add(
        self,
        kind: str,
        month: int,
        hop: int,
        *,
        shock_id: np.ndarray,
        origin: np.ndarray,
        source: np.ndarray,
        target: np.ndarray,
        impact: np.ndarray,
    ) -> None:
        """Append one row per element of the arrays."""
        n = len(target)
        if not n:
            return
        self.chunks.append(
            (
                np.asarray(shock_id, dtype=np.int64),
                np.full(n, month, dtype=np.int32),
                np.asarray(origin, dtype=np.int64),
                np.asarray(source, dtype=np.int64),
                np.asarray(target, dtype=np.int64),
                np.full(n, hop, dtype=np.int16),
                np.round(np.asarray(impact, dtype=np.float64), 6),
                np.full(n, SHOCK_KINDS.index(kind), dtype=np.int8),
            )
        )

    def column(self, name: str) -> np.ndarray:
        """One column over all rows (``kind`` as strings)."""
        index = _SHOCK_COLUMNS.index(name)
        empty = (np.int64, np.int32, np.int64, np.int64, np.int64, np.int16, np.float64, np.int8)
        values = (
            np.concatenate([c[index] for c in self.chunks])
            if self.chunks
            else np.zeros(0, dtype=empty[index])
        )
        if name == "kind":
            return np.asarray(np.array(SHOCK_KINDS, dtype=object)[values])
        return values

    def __len__(self) -> int:
        return sum(len(c[0]) for c in self.chunks)


@dataclass(slots=True)
class HealthPanel:
    """Health, default probability and default of every enterprise in every month."""

    health: np.ndarray
    pd: np.ndarray
    """Monthly default probability; NaN once defaulted."""
    pd_12m: np.ndarray
    active: np.ndarray
    """True while the enterprise has not defaulted (the default month itself included)."""
    default_month: np.ndarray
    """Month of default, or -1."""
    default_day: np.ndarray
    """Day number (days since 1970-01-01) of default, or -1."""
    base: np.ndarray
    section_factor: np.ndarray
    """Per section letter (``sections`` order) and month."""
    sections: tuple[str, ...]
    macro: list[MacroMonth]
    shocks: ShockLog


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """The logistic function ``1 / (1 + exp(-x))``, element-wise."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))))


def simulate_health(world: World, calendar: Calendar) -> HealthPanel:
    """Run the health model month by month (contagion needs the previous month's defaults)."""
    rng = stream(world.seed, "health")
    ent = world.enterprises
    n, months = ent.n, world.months
    config = world.config
    table = gbt4754()
    sections = tuple(table.sections)
    section_of = np.array(
        [sections.index(table.divisions[DIVISIONS[d]].section) for d in ent.division.tolist()]
    )
    cyclical = np.array([INDUSTRY_PROFILES[DIVISIONS[d]].cyclical for d in ent.division.tolist()])
    beta = 0.5 * cyclical * rng.lognormal(0.0, 0.2, n)
    start_day = day_number(calendar.start)
    age = (start_day - ent.registered) / 365.25
    base = (
        rng.normal(0.0, 0.6, n)
        + 0.15 * np.log(age / 7.0)
        + 0.08 * np.clip(np.log(ent.revenue / 3.4e6), -2.0, 3.0)
    )
    macro = macro_series(months)
    macro_index = np.array([m.index for m in macro])
    section_factor = np.zeros((len(sections), months))
    level = rng.normal(0.0, SECTION_SIGMA / np.sqrt(1 - SECTION_PHI**2), len(sections))
    idio = rng.normal(0.0, IDIO_SIGMA / np.sqrt(1 - IDIO_PHI**2), n)
    links = world.links
    fac = world.facilities
    # share of the supplier's sales that go to each customer (edge)
    cogs = np.array([INDUSTRY_PROFILES[DIVISIONS[d]].cogs for d in ent.division.tolist()])
    dependence = np.minimum(
        0.8,
        links.share
        * cogs[links.customer]
        * ent.revenue[links.customer]
        / ent.revenue[links.supplier],
    )
    guarantor_of = np.full(n, -1, dtype=np.int64)
    guarantee_size = np.zeros(n)
    has_guarantor = fac.guarantor >= 0
    guarantor_of[fac.enterprise[has_guarantor]] = fac.guarantor[has_guarantor]
    guarantee_size[fac.enterprise[has_guarantor]] = fac.limit_minor[has_guarantor] / 100.0
    health = np.zeros((n, months))
    pd = np.full((n, months), np.nan)
    pd_12m = np.full((n, months), np.nan)
    active = np.ones((n, months), dtype=bool)
    alive = np.ones(n, dtype=bool)
    default_month = np.full(n, -1, dtype=np.int64)
    default_day = np.full(n, -1, dtype=np.int64)
    stock = np.zeros(n)
    log = ShockLog()
    origin_of: dict[int, int] = {}
    next_id = 0
    # impulses arriving this month: (hop, impulse per enterprise, shock id per enterprise)
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    for t in range(months):
        level = SECTION_PHI * level + rng.normal(0.0, SECTION_SIGMA, len(sections))
        section_factor[:, t] = level
        idio = IDIO_PHI * idio + rng.normal(0.0, IDIO_SIGMA, n)
        planted = np.flatnonzero(alive & (rng.random(n) < config.shock_rate))
        magnitude = -rng.uniform(0.8, 2.2, len(planted))
        current = list(pending)
        if len(planted):
            new_ids = np.arange(next_id, next_id + len(planted))
            next_id += len(planted)
            origin_of.update(zip(new_ids.tolist(), planted.tolist(), strict=True))
            log.add(
                "planted",
                t,
                0,
                shock_id=new_ids,
                origin=planted,
                source=planted,
                target=planted,
                impact=magnitude,
            )
            impulse = np.zeros(n)
            impulse[planted] = magnitude
            ids = np.full(n, -1, dtype=np.int64)
            ids[planted] = new_ids
            current.append((0, impulse, ids))
        received = np.zeros(n)
        for _, impulse, _ in current:
            received += impulse
        if t > 0:
            # receivables of last month that distressed (still solvent) customers left unpaid
            edge_impact = np.where(
                alive[links.customer],
                -RECEIVABLE_LOSS * dependence * unpaid_share(health[links.customer, t - 1]),
                0.0,
            )
            keep = edge_impact <= -MIN_IMPACT
            if keep.any():
                source = links.customer[keep]
                target = links.supplier[keep]
                impact = edge_impact[keep]
                new_ids = np.arange(next_id, next_id + len(source))
                next_id += len(source)
                log.add(
                    "receivable",
                    t,
                    1,
                    shock_id=new_ids,
                    origin=source,
                    source=source,
                    target=target,
                    impact=impact,
                )
                received += np.bincount(target, weights=impact, minlength=n)
        received[~alive] = 0.0
        stock = SHOCK_DECAY * stock + received
        h = base + beta * macro_index[t] + level[section_of] + idio + stock
        health[:, t] = h
        p = sigmoid(config.default_intercept - config.default_slope * h)
        pd[alive, t] = p[alive]
        pd_12m[alive, t] = _conditional_pd(
            config,
            t,
            macro_index,
            base=base,
            beta=beta,
            section_level=level[section_of],
            idio=idio,
            stock=stock,
        )[alive]
        active[:, t] = alive
        was_alive = alive.copy()
        defaults = alive & (rng.random(n) < p)
        days = calendar.month_days(t)
        day_draw = calendar.first_day[t] + rng.integers(0, days.stop - days.start, n)
        new_default = np.flatnonzero(defaults)
        default_month[new_default] = t
        default_day[new_default] = day_draw[new_default]
        alive &= ~defaults
        if t + 1 == months:
            break
        pending = []
        for hop, impulse, ids in current:
            if hop >= MAX_HOPS:
                continue
            edge_impact = CONTAGION * dependence * np.where(was_alive, impulse, 0.0)[links.customer]
            keep = edge_impact <= -MIN_IMPACT
            if not keep.any():
                continue
            source = links.customer[keep]
            target = links.supplier[keep]
            impact = edge_impact[keep]
            shock = ids[source]
            origin = np.array([origin_of[s] for s in shock.tolist()], dtype=np.int64)
            log.add(
                "contagion",
                t + 1,
                hop + 1,
                shock_id=shock,
                origin=origin,
                source=source,
                target=target,
                impact=impact,
            )
            pending.append((hop + 1, *_collect(target, impact, shock, n)))
        if len(new_default):
            default_ids = np.full(n, -1, dtype=np.int64)
            default_ids[new_default] = np.arange(next_id, next_id + len(new_default))
            origin_of.update(
                zip(default_ids[new_default].tolist(), new_default.tolist(), strict=True)
            )
            next_id += len(new_default)
            edge_keep = defaults[links.customer]
            edge_impact = -DEFAULT_CONTAGION * dependence[edge_keep]
            strong = edge_impact <= -MIN_IMPACT
            source = links.customer[edge_keep][strong]
            target = links.supplier[edge_keep][strong]
            impact = edge_impact[strong]
            log.add(
                "default_contagion",
                t + 1,
                1,
                shock_id=default_ids[source],
                origin=source,
                source=source,
                target=target,
                impact=impact,
            )
            g_source = new_default[guarantor_of[new_default] >= 0]
            g_target = guarantor_of[g_source]
            g_impact = -0.6 - 0.6 * np.minimum(
                1.0, guarantee_size[g_source] / ent.revenue[g_target]
            )
            log.add(
                "guarantee",
                t + 1,
                1,
                shock_id=default_ids[g_source],
                origin=g_source,
                source=g_source,
                target=g_target,
                impact=g_impact,
            )
            pending.append(
                (
                    1,
                    *_collect(
                        np.concatenate([target, g_target]),
                        np.concatenate([impact, g_impact]),
                        np.concatenate([default_ids[source], default_ids[g_source]]),
                        n,
                    ),
                )
            )
    return HealthPanel(
        health=health,
        pd=pd,
        pd_12m=pd_12m,
        active=active,
        default_month=default_month,
        default_day=default_day,
        base=base,
        section_factor=section_factor,
        sections=sections,
        macro=macro,
        shocks=log,
    )


def _collect(
    target: np.ndarray, impact: np.ndarray, shock: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum impacts per target; each target keeps the shock id of its strongest impact."""
    total = np.bincount(target, weights=impact, minlength=n)
    ids = np.full(n, -1, dtype=np.int64)
    order = np.argsort(-impact, kind="stable")  # weakest first, so the strongest is written last
    ids[target[order]] = shock[order]
    return total, ids


def _conditional_pd(
    config: SynthConfig,
    t: int,
    macro_index: np.ndarray,
    *,
    base: np.ndarray,
    beta: np.ndarray,
    section_level: np.ndarray,
    idio: np.ndarray,
    stock: np.ndarray,
) -> np.ndarray:
    """The model's probability of default within months ``t .. t+11`` given the state at
    ``t``: health ``k`` months ahead is Gaussian (AR(1) means and variances; the macro path
    as simulated, its last value held beyond the run; no future shock anticipated), and the
    expected monthly hazard uses the logistic-normal approximation
    ``E[sigmoid(z)] ~ sigmoid(mu / sqrt(1 + pi var / 8))``."""
    survival = np.ones_like(base)
    months = len(macro_index)
    for k in range(12):
        macro = macro_index[min(t + k, months - 1)]
        mean = (
            base
            + beta * macro
            + section_level * SECTION_PHI**k
            + idio * IDIO_PHI**k
            + stock * SHOCK_DECAY**k
        )
        var = IDIO_SIGMA**2 * (1 - IDIO_PHI ** (2 * k)) / (1 - IDIO_PHI**2) + SECTION_SIGMA**2 * (
            1 - SECTION_PHI ** (2 * k)
        ) / (1 - SECTION_PHI**2)
        slope = config.default_slope
        z = (config.default_intercept - slope * mean) / np.sqrt(1 + np.pi * slope**2 * var / 8)
        survival *= 1.0 - sigmoid(z)
    return 1.0 - survival
