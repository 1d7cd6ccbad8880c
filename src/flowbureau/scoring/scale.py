"""Score scaling (points to double the odds) and the master scale of grades.

Rules:
- A score is a linear function of the log-odds of *good*: ``score = offset + factor * ln(odds)``
  with ``odds = (1 - PD) / PD``. ``factor = pdo / ln 2`` and
  ``offset = base_score - factor * ln(base_odds)``, so ``base_score`` is earned at good:bad odds of
  ``base_odds`` and every ``pdo`` points double the odds. Higher score = lower risk.
- The master scale is an ordered list of grades, best first, each with the upper PD bound of
  the grade (a PD belongs to the first grade whose bound is >= the PD). The last grade's bound
  is 1. Bounds must strictly increase.
- The score range of a grade is the range of PD-equivalent scores (the scaling above applied to
  the grade's PD bounds), so ``grade_for_pd(pd) == grade_for_score(scaling.score(pd))`` for
  every PD: PD and score never disagree about the grade.
- The scale is configurable from a dict or a TOML file::

      [scaling]
      base_score = 600
      base_odds = 50
      pdo = 20

      [[grades]]
      name = "AAA"
      max_pd = 0.0003
      ...

  Bad configuration raises :class:`~flowbureau.errors.InputError` naming the file and field.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flowbureau.errors import InputError

GRADE_NAMES: tuple[str, ...] = ("AAA", "AA", "A", "BBB", "BB", "B", "CCC", "CC", "C")
"""The default grade names, best first."""

DEFAULT_MAX_PD: tuple[float, ...] = (0.0003, 0.001, 0.0025, 0.0075, 0.025, 0.075, 0.2, 0.4, 1.0)
"""Upper PD bound of each default grade. The first is the Basel PD floor of 0.03%
(CRR Art. 160(1)); the rest roughly follow long-run one-year corporate default rates by
rating band and are meant to be replaced by an institution's own calibration."""


@dataclass(frozen=True, slots=True)
class ScoreScaling:
    """Maps PD <-> score with points-to-double-odds scaling (higher score = lower risk)."""

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base_score) and self.base_odds > 0 and self.pdo > 0):
            raise InputError(
                f"invalid score scaling base_score={self.base_score}, base_odds={self.base_odds}, "
                f"pdo={self.pdo}: base_odds and pdo must be positive",
                field="scaling",
            )

    @property
    def factor(self) -> float:
        """Points per unit of log-odds: ``pdo / ln 2``."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Score at odds 1:1: ``base_score - factor * ln(base_odds)``."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def score_from_log_odds_bad(self, log_odds_bad: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Unrounded score from the log-odds of *bad* (a model's logit of PD)."""
        return self.offset - self.factor * np.asarray(log_odds_bad, dtype=np.float64)

    def score(self, pd: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Unrounded PD-equivalent score; PD 0 gives +inf and PD 1 gives -inf."""
        p = np.asarray(pd, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return self.offset + self.factor * (np.log1p(-p) - np.log(p))

    def pd(self, score: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """PD at a score (the inverse of :meth:`score`)."""
        s = np.asarray(score, dtype=np.float64)
        return 1.0 / (1.0 + np.exp((s - self.offset) / self.factor))


@dataclass(frozen=True, slots=True)
class Grade:
    """One grade of the master scale: PD interval ``(min_pd, max_pd]`` and its score range."""

    name: str
    rank: int
    min_pd: float
    max_pd: float
    min_score: float
    max_score: float


class MasterScale:
    """Ordered grades (best first) with PD bounds; grade lookup by PD or by score."""

    def __init__(
        self,
        grades: Sequence[tuple[str, float]] | None = None,
        scaling: ScoreScaling | None = None,
        *,
        source: str | None = None,
    ) -> None:
        """Build from ``(name, max_pd)`` pairs (default: AAA ... C) and a score scaling."""
        pairs = list(zip(GRADE_NAMES, DEFAULT_MAX_PD, strict=True)) if grades is None else grades
        self.scaling = scaling or ScoreScaling()
        self._names = tuple(name for name, _ in pairs)
        bounds = [float(bound) for _, bound in pairs]
        _validate_bounds(self._names, bounds, source)
        self._max_pd = np.asarray(bounds, dtype=np.float64)
        lower = [0.0, *bounds[:-1]]
        self.grades: tuple[Grade, ...] = tuple(
            Grade(
                name=name,
                rank=i + 1,
                min_pd=lo,
                max_pd=hi,
                min_score=float(self.scaling.score(hi)),
                max_score=float(self.scaling.score(lo)),
            )
            for i, (name, lo, hi) in enumerate(zip(self._names, lower, bounds, strict=True))
        )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], *, source: str | None = None) -> MasterScale:
        """Build from ``{"scaling": {...}, "grades": [{"name", "max_pd"}, ...]}``."""
        scaling_cfg = config.get("scaling", {})
        if not isinstance(scaling_cfg, Mapping):
            raise InputError("[scaling] must be a table", file=source, field="scaling")
        unknown = set(scaling_cfg) - {"base_score", "base_odds", "pdo"}
        if unknown:
            raise InputError(
                f"unknown scaling keys {sorted(unknown)}", file=source, field="scaling"
            )
        try:
            scaling = ScoreScaling(**{k: float(v) for k, v in scaling_cfg.items()})
        except (TypeError, ValueError) as exc:
            raise InputError(f"bad scaling: {exc}", file=source, field="scaling") from exc
        except InputError as exc:
            raise InputError(exc.message, file=source, field=exc.field) from exc
        grades_cfg = config.get("grades")
        if grades_cfg is None:
            return cls(None, scaling, source=source)
        if not isinstance(grades_cfg, list) or not grades_cfg:
            raise InputError("grades must be a non-empty list", file=source, field="grades")
        pairs: list[tuple[str, float]] = []
        for i, entry in enumerate(grades_cfg):
            where = f"grades[{i}]"
            if not isinstance(entry, Mapping) or "name" not in entry or "max_pd" not in entry:
                raise InputError("each grade needs name and max_pd", file=source, field=where)
            try:
                pairs.append((str(entry["name"]), float(entry["max_pd"])))
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"max_pd is not a number: {entry['max_pd']!r}", file=source, field=where
                ) from exc
        return cls(pairs, scaling, source=source)

    @classmethod
    def from_toml(cls, path: str | Path) -> MasterScale:
        """Read a scale from a TOML file (see the module docstring for the layout)."""
        try:
            config = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"not valid TOML: {exc}", file=path) from exc
        except OSError as exc:
            raise InputError(f"cannot read: {exc}", file=path) from exc
        return cls.from_dict(config, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The configuration this scale was built from (round-trips through :meth:`from_dict`)."""
        return {
            "scaling": {
                "base_score": self.scaling.base_score,
                "base_odds": self.scaling.base_odds,
                "pdo": self.scaling.pdo,
            },
            "grades": [{"name": g.name, "max_pd": g.max_pd} for g in self.grades],
        }

    @property
    def names(self) -> tuple[str, ...]:
        """Grade names, best first."""
        return self._names

    def grade_index(self, pd: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """0-based index (0 = best) of the grade of each PD."""
        p = np.asarray(pd, dtype=np.float64)
        if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
            raise InputError("PD must lie in [0, 1]", field="pd")
        return np.searchsorted(self._max_pd, p, side="left").astype(np.intp)

    def grade_for_pd(self, pd: float) -> Grade:
        """The grade of one PD."""
        return self.grades[int(self.grade_index(pd))]

    def grades_for_pd(self, pd: npt.ArrayLike) -> npt.NDArray[np.str_]:
        """Grade names of an array of PDs."""
        return np.asarray(self._names)[self.grade_index(pd)]

    def grade_for_score(self, score: float) -> Grade:
        """The grade whose score range holds ``score`` (via its PD-equivalent)."""
        return self.grade_for_pd(float(self.scaling.pd(score)))

    def table(self) -> list[dict[str, Any]]:
        """The scale as rows (grade, PD bounds, score range) for display or export."""
        return [
            {
                "grade": g.name,
                "rank": g.rank,
                "min_pd": g.min_pd,
                "max_pd": g.max_pd,
                "min_score": g.min_score,
                "max_score": g.max_score,
            }
            for g in self.grades
        ]


def _validate_bounds(names: Iterable[str], bounds: Sequence[float], source: str | None) -> None:
    names = list(names)
    if not names:
        raise InputError("a master scale needs at least one grade", file=source, field="grades")
    if len(set(names)) != len(names):
        raise InputError(f"duplicate grade names in {names}", file=source, field="grades")
    for i, bound in enumerate(bounds):
        if not 0.0 < bound <= 1.0:
            raise InputError(
                f"max_pd {bound} of grade {names[i]!r} is not in (0, 1]",
                file=source,
                field=f"grades[{i}].max_pd",
            )
        if i and bound <= bounds[i - 1]:
            raise InputError(
                f"max_pd of grade {names[i]!r} ({bound}) does not exceed the previous grade's "
                f"({bounds[i - 1]}); list grades best first",
                file=source,
                field=f"grades[{i}].max_pd",
            )
    if bounds[-1] != 1.0:
        raise InputError(
            f"the last grade {names[-1]!r} must have max_pd 1 so every PD gets a grade",
            file=source,
            field=f"grades[{len(bounds) - 1}].max_pd",
        )
