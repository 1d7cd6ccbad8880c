"""Score scaling and the master scale."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from flowbureau.errors import InputError
from flowbureau.scoring import MasterScale, ScoreScaling


def test_scaling_anchor_points() -> None:
    scaling = ScoreScaling(base_score=600, base_odds=50, pdo=20)
    # 600 points at good:bad odds of 50:1, i.e. PD = 1/51
    assert float(scaling.score(1 / 51)) == pytest.approx(600.0)
    # doubling the odds adds exactly pdo points
    assert float(scaling.score(1 / 101)) == pytest.approx(620.0)
    assert scaling.factor == pytest.approx(20 / math.log(2))
    assert scaling.offset == pytest.approx(600 - 20 / math.log(2) * math.log(50))
    pds = np.array([0.001, 0.02, 0.3, 0.9])
    np.testing.assert_allclose(scaling.pd(scaling.score(pds)), pds)
    assert float(scaling.score_from_log_odds_bad(math.log(1 / 50))) == pytest.approx(600.0)


def test_default_scale_grades_and_ranges() -> None:
    scale = MasterScale()
    assert scale.names == ("AAA", "AA", "A", "BBB", "BB", "B", "CCC", "CC", "C")
    assert scale.grade_for_pd(0.0001).name == "AAA"
    assert scale.grade_for_pd(0.0003).name == "AAA"  # bounds are inclusive above
    assert scale.grade_for_pd(0.00031).name == "AA"
    assert scale.grade_for_pd(0.5).name == "C"
    assert scale.grade_for_pd(1.0).name == "C"
    rows = scale.table()
    for upper, lower in itertools.pairwise(rows):
        assert upper["min_score"] == pytest.approx(lower["max_score"])  # ranges tile the line
    assert rows[0]["max_score"] == math.inf
    assert rows[-1]["min_score"] == -math.inf


def test_pd_and_score_agree_on_the_grade() -> None:
    scale = MasterScale()
    for pd_value in np.geomspace(1e-5, 0.999, 300):
        by_pd = scale.grade_for_pd(float(pd_value))
        by_score = scale.grade_for_score(float(scale.scaling.score(pd_value)))
        assert by_pd.name == by_score.name
        assert by_pd.min_score <= float(scale.scaling.score(pd_value)) <= by_pd.max_score


def test_from_toml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "scale.toml"
    path.write_text(
        """
[scaling]
base_score = 500
base_odds = 20
pdo = 40

[[grades]]
name = "1"
max_pd = 0.01

[[grades]]
name = "2"
max_pd = 0.1

[[grades]]
name = "3"
max_pd = 1.0
""",
        encoding="utf-8",
    )
    scale = MasterScale.from_toml(path)
    assert scale.names == ("1", "2", "3")
    assert scale.scaling == ScoreScaling(500, 20, 40)
    assert scale.grades_for_pd([0.005, 0.05, 0.5]).tolist() == ["1", "2", "3"]
    again = MasterScale.from_dict(scale.to_dict())
    assert again.table() == scale.table()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"grades": [{"name": "A", "max_pd": 0.5}]}, "grades[0].max_pd"),
        ({"grades": [{"name": "A", "max_pd": 0.5}, {"name": "B", "max_pd": 0.4}]}, "grades[1]"),
        ({"grades": [{"name": "A", "max_pd": "x"}]}, "grades[0]"),
        ({"grades": [{"name": "A"}]}, "grades[0]"),
        ({"scaling": {"pdo": -1}}, "scaling"),
        ({"scaling": {"bogus": 1}}, "scaling"),
    ],
)
def test_bad_config_names_the_field(config: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        MasterScale.from_dict(config, source="scale.toml")
    assert err.value.field is not None
    assert err.value.field.startswith(field)
    assert err.value.file == "scale.toml"


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[scaling\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        MasterScale.from_toml(path)
    assert err.value.file == str(path)


def test_pd_outside_unit_interval_is_refused() -> None:
    with pytest.raises(InputError):
        MasterScale().grade_index([0.1, 1.5])
