"""Institution trust rate: the expected payoff of honouring versus defaulting, graded 1/2/3.

An institution (a core enterprise or lender) that pledges receivables ``r`` at rate ``a_p``
either honours its obligation or defaults. With

- ``r2``  probability the institution returns the receivable,
- ``a_p`` pledge rate of the receivables, ``r`` the receivables (money),
- ``b2``  investment return rate, ``b0`` loan rate,
- ``a``   the institution's income (money), ``m`` its loss on default (money),

the expected payoffs are, exactly::

    w_trust = r2*[a_p*r*(b2-b0) + a] + (1-r2)*[a_p*r*(b2-b0) - r]
    w_miss  = r2*[a_p*r*(b2+1) - m] + (1-r2)*[a_p*r*(b2+1) - r - m]

Their difference simplifies to ``w_trust - w_miss = m + r2*a - a_p*r*(1+b0)``: what honouring
saves or earns (the default loss avoided plus the expected income) minus what it costs (the
pledged loan repaid with interest). ``b2`` cancels out.

Trust rate (documented choice): with the stake ``s = a_p*r*(1+b0)`` (the repayment owed),

    trust_rate = 1 / (1 + exp(-(w_trust - w_miss) / s))

a logistic of the payoff advantage per unit of stake. It is bounded in (0, 1), 0.5 exactly when
the institution is indifferent, and strictly increasing in ``w_trust - w_miss``: so it rises with
``r2`` (when ``a > 0``), ``a`` and ``m``, falls with ``a_p``, ``r`` and ``b0``, and ignores ``b2``.
A zero stake (nothing pledged) is refused: the model says nothing then.

Grade: 1 when the trust rate is above the interval's upper end, 3 when below its lower end,
2 inside (ends included). The default interval (0.4, 0.6) puts grade 1 where honouring is worth
at least ~1.4 times the stake and grade 3 where it is worth less than ~0.6 times.

Money inputs (``receivables``, ``income``, ``default_loss``) are ``Decimal`` or ``int`` (never
``float``); rates and the probability may be ``Decimal``, ``int``, ``str`` or ``float`` and are
read through their decimal text. Payoffs are ``Decimal``; the trust rate is a ``float``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from flowbureau.errors import InputError

DEFAULT_INTERVAL: tuple[float, float] = (0.4, 0.6)
"""Trust-rate interval of grade 2; above it grade 1, below it grade 3."""


@dataclass(frozen=True, slots=True)
class TrustResult:
    """The four values of an institution's trust evaluation."""

    w_trust: Decimal
    w_miss: Decimal
    trust_rate: float
    grade: int


def trust_grade(trust_rate: float, interval: tuple[float, float] = DEFAULT_INTERVAL) -> int:
    """1 above ``interval``, 2 inside (ends included), 3 below."""
    low, high = _check_interval(interval)
    if trust_rate > high:
        return 1
    if trust_rate < low:
        return 3
    return 2


def institution_trust(  # noqa: PLR0917 - the published formula's argument order
    r2: Decimal | float | int | str,
    pledge_rate: Decimal | float | int | str,
    receivables: Decimal | int,
    invest_return: Decimal | float | int | str,
    loan_rate: Decimal | float | int | str,
    income: Decimal | int,
    default_loss: Decimal | int,
    *,
    interval: tuple[float, float] = DEFAULT_INTERVAL,
) -> TrustResult:
    """``w_trust``, ``w_miss``, the trust rate and the grade 1/2/3 of an institution."""
    p = _rate(r2, "r2")
    a_p = _rate(pledge_rate, "pledge_rate")
    r = _money(receivables, "receivables")
    b2 = _rate(invest_return, "invest_return")
    b0 = _rate(loan_rate, "loan_rate")
    a = _money(income, "income")
    m = _money(default_loss, "default_loss")
    if not 0 <= p <= 1:
        raise InputError(f"r2 is a probability; got {p}", field="r2")
    if not 0 <= a_p <= 1:
        raise InputError(f"pledge_rate must lie in [0, 1]; got {a_p}", field="pledge_rate")
    if r < 0 or m < 0:
        field = "receivables" if r < 0 else "default_loss"
        raise InputError(f"{field} must not be negative", field=field)
    if b0 <= -1 or b2 <= -1:
        field = "loan_rate" if b0 <= -1 else "invest_return"
        raise InputError(f"{field} must exceed -1 (-100%)", field=field)
    stake = a_p * r * (1 + b0)
    if stake <= 0:
        raise InputError(
            "nothing is pledged (pledge_rate * receivables is 0): the trust rate is undefined",
            field="pledge_rate" if a_p == 0 else "receivables",
        )
    w_trust = p * (a_p * r * (b2 - b0) + a) + (1 - p) * (a_p * r * (b2 - b0) - r)
    w_miss = p * (a_p * r * (b2 + 1) - m) + (1 - p) * (a_p * r * (b2 + 1) - r - m)
    advantage = float((w_trust - w_miss) / stake)
    # logistic written to stay finite for large |advantage|
    if advantage >= 0:
        rate = 1.0 / (1.0 + math.exp(-advantage))
    else:
        e = math.exp(advantage)
        rate = e / (1.0 + e)
    return TrustResult(
        w_trust=w_trust, w_miss=w_miss, trust_rate=rate, grade=trust_grade(rate, interval)
    )


def _check_interval(interval: tuple[float, float]) -> tuple[float, float]:
    low, high = float(interval[0]), float(interval[1])
    if not 0.0 <= low <= high <= 1.0:
        raise InputError(
            f"interval {interval} must satisfy 0 <= low <= high <= 1", field="interval"
        )
    return low, high


def _rate(value: Decimal | float | int | str, field: str) -> Decimal:
    if isinstance(value, bool):
        raise InputError(f"{field} must be a number, not a bool", field=field)
    try:
        out = Decimal(str(value)) if isinstance(value, float | str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise InputError(f"{field} is not a number: {value!r}", field=field) from exc
    if not out.is_finite():
        raise InputError(f"{field} must be finite; got {value!r}", field=field)
    return out


def _money(value: Decimal | int, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise InputError(
            f"{field} is money: pass a Decimal or int (minor units), not {type(value).__name__}",
            field=field,
        )
    out = Decimal(value)
    if not out.is_finite():
        raise InputError(f"{field} must be finite; got {value!r}", field=field)
    return out
