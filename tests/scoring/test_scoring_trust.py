"""Institution trust rate: the exact formulas on hand-computed values, and monotonicity."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

import pytest

from flowbureau.errors import InputError
from flowbureau.scoring import institution_trust, trust_grade

BASE = {
    "r2": "0.9",
    "pledge_rate": "0.8",
    "receivables": Decimal(1000),
    "invest_return": "0.10",
    "loan_rate": "0.05",
    "income": Decimal(200),
    "default_loss": Decimal(300),
}


def test_hand_computed_values() -> None:
    # a_p*r = 800; b2-b0 = 0.05 -> 40; b2+1 = 1.1 -> 880
    # w_trust = 0.9*(40 + 200) + 0.1*(40 - 1000) = 216 - 96 = 120
    # w_miss  = 0.9*(880 - 300) + 0.1*(880 - 1000 - 300) = 522 - 42 = 480
    result = institution_trust(**BASE)
    assert result.w_trust == Decimal("120")
    assert result.w_miss == Decimal("480")
    # difference = m + r2*a - a_p*r*(1+b0) = 300 + 180 - 840 = -360; stake = 840
    assert result.trust_rate == pytest.approx(1 / (1 + math.exp(360 / 840)))
    assert result.trust_rate == pytest.approx(0.39446, abs=1e-5)
    assert result.grade == 3  # below the default interval (0.4, 0.6)


def test_interval_rule() -> None:
    assert trust_grade(0.61) == 1
    assert trust_grade(0.6) == 2
    assert trust_grade(0.4) == 2
    assert trust_grade(0.39) == 3
    assert trust_grade(0.5, interval=(0.55, 0.7)) == 3
    assert trust_grade(0.8, interval=(0.55, 0.7)) == 1
    with pytest.raises(InputError):
        trust_grade(0.5, interval=(0.7, 0.2))


def test_b2_cancels_out_of_the_rate() -> None:
    low = institution_trust(**{**BASE, "invest_return": "0.0"})
    high = institution_trust(**{**BASE, "invest_return": "0.5"})
    assert low.trust_rate == high.trust_rate
    assert low.w_trust != high.w_trust


@pytest.mark.parametrize(
    ("name", "values", "direction"),
    [
        ("r2", ["0.1", "0.5", "0.9", "1"], +1),
        ("income", [Decimal(0), Decimal(100), Decimal(1000)], +1),
        ("default_loss", [Decimal(0), Decimal(500), Decimal(5000)], +1),
        ("pledge_rate", ["0.2", "0.5", "1"], -1),
        ("receivables", [Decimal(100), Decimal(1000), Decimal(10000)], -1),
        ("loan_rate", ["0", "0.05", "0.3"], -1),
    ],
)
def test_monotone(name: str, values: list[object], direction: int) -> None:
    rates = [institution_trust(**{**BASE, name: v}).trust_rate for v in values]
    steps = [b - a for a, b in itertools.pairwise(rates)]
    assert all(direction * s > 0 for s in steps), rates
    assert all(0.0 < r < 1.0 for r in rates)


def test_grades_cover_all_three() -> None:
    honest = institution_trust(**{**BASE, "default_loss": Decimal(5000)})
    shaky = institution_trust(**{**BASE, "default_loss": Decimal(0), "income": Decimal(0)})
    middle = institution_trust(**{**BASE, "default_loss": Decimal(700)})
    assert (honest.grade, middle.grade, shaky.grade) == (1, 2, 3)


def test_indifference_is_one_half() -> None:
    # m + r2*a = a_p*r*(1+b0): 840 = 660 + 0.9*200
    result = institution_trust(**{**BASE, "default_loss": Decimal(660)})
    assert result.w_trust == result.w_miss
    assert result.trust_rate == 0.5


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"receivables": 1000.0}, "receivables"),
        ({"income": "200"}, "income"),
        ({"r2": "1.5"}, "r2"),
        ({"pledge_rate": "0"}, "pledge_rate"),
        ({"loan_rate": "-1"}, "loan_rate"),
        ({"default_loss": Decimal(-1)}, "default_loss"),
        ({"invest_return": "abc"}, "invest_return"),
    ],
)
def test_bad_inputs_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        institution_trust(**{**BASE, **changes})
    assert err.value.field == field
