"""The simulated calendar: months, business days, holidays and seasonality.

Rules:
- Simulated time is local Chinese time (UTC+08:00, no daylight saving). Internally a booking
  time is ``int64`` seconds since 1970-01-01 00:00 *local*; a date is ``int32`` days since
  1970-01-01.
- Holidays (weight 0.05 of a normal business day): the Spring Festival week (New Year's eve
  to the sixth day, from :data:`~flowbureau.synth.reference.CHINESE_NEW_YEAR`), National Day
  1-7 October, Labour Day 1-5 May and New Year's Day. Saturdays weigh 0.2, Sundays 0.1.
- Month-of-year seasonality is a small multiplicative profile per section (retail and
  catering peak in December and at Spring Festival, construction dips in January-February),
  plus a Spring Festival dip proportional to the holiday days that fall in the month and a
  quarter-end push on sales (the last week of March, June, September and December).
"""

from __future__ import annotations

from datetime import date

import numpy as np

from flowbureau.errors import InputError
from flowbureau.synth.reference import CHINESE_NEW_YEAR

SECONDS_PER_DAY = 86_400
EPOCH = date(1970, 1, 1)

_BASE_SEASON = np.array([1.0, 0.95, 1.04, 0.99, 1.0, 1.04, 0.98, 0.98, 1.03, 0.95, 1.02, 1.13])
_SECTION_SEASON = {
    "F": np.array([1.08, 0.95, 0.97, 0.96, 1.0, 1.02, 0.96, 0.96, 1.0, 1.02, 1.08, 1.2]),
    "H": np.array([1.1, 1.05, 0.95, 0.97, 1.02, 1.0, 1.06, 1.08, 0.98, 1.05, 0.95, 1.08]),
    "E": np.array([0.75, 0.6, 0.95, 1.02, 1.06, 1.08, 1.02, 1.0, 1.06, 1.02, 1.08, 1.3]),
    "A": np.array([0.9, 0.85, 0.9, 0.95, 1.0, 1.0, 1.05, 1.08, 1.18, 1.15, 1.02, 0.98]),
}


def day_number(day: date) -> int:
    """Days since 1970-01-01."""
    return (day - EPOCH).days


def add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


class Calendar:
    """Month boundaries and per-day weights for a simulation of ``months`` from ``start``."""

    def __init__(self, start: date, months: int) -> None:
        self.start = date(start.year, start.month, 1)
        self.months = months
        self.month_first = [add_months(self.start, m) for m in range(months + 1)]
        years = range(self.start.year - 1, self.month_first[-1].year + 1)
        missing = [y for y in years if y not in CHINESE_NEW_YEAR]
        if missing:
            first, last = min(CHINESE_NEW_YEAR), max(CHINESE_NEW_YEAR)
            raise InputError(
                f"the simulated period must lie within {first + 1}-01 .. {last}-12 "
                f"(Spring Festival dates known); years {missing[0]}..{missing[-1]} are not",
                field="start",
            )
        self.first_day = np.array([day_number(d) for d in self.month_first], dtype=np.int64)
        n_days = int(self.first_day[-1] - self.first_day[0])
        days = np.arange(self.first_day[0], self.first_day[-1], dtype=np.int64)
        dates = days.astype("datetime64[D]")
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
        weight = np.where(weekday == 5, 0.2, np.where(weekday == 6, 0.1, 1.0))
        holiday = np.zeros(n_days, dtype=bool)
        month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
        dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
        holiday |= (month == 10) & (dom <= 7)
        holiday |= (month == 5) & (dom <= 5)
        holiday |= (month == 1) & (dom == 1)
        for year in years:
            eve = day_number(CHINESE_NEW_YEAR[year]) - 1
            holiday |= (days >= eve) & (days <= eve + 6)
        self.holiday = holiday
        self.day_weight = np.where(holiday, 0.05, weight)
        self.day_of_month = dom
        self.month_of_year = month
        self.weekday = weekday

    def month_days(self, m: int) -> slice:
        """Index range (into the per-day arrays) of simulated month ``m``."""
        base = self.first_day[0]
        return slice(int(self.first_day[m] - base), int(self.first_day[m + 1] - base))

    def day_index(self, day: np.ndarray) -> np.ndarray:
        """Per-day array index of absolute day numbers ``day``."""
        return np.asarray(day - self.first_day[0])

    def season(self, section: str, m: int) -> float:
        """Activity multiplier of month ``m`` for enterprises of ``section``."""
        moy = self.month_first[m].month - 1
        profile = _SECTION_SEASON.get(section, _BASE_SEASON)
        days = self.month_days(m)
        spring = int((self.holiday[days] & (self.month_of_year[days] <= 2)).sum())
        dip = 1.0 - 0.9 * spring / (days.stop - days.start)
        return float(profile[moy] * dip)

    def sales_day_weights(self, m: int) -> np.ndarray:
        """Relative weight of each day of month ``m`` for sales receipts (quarter-end push)."""
        days = self.month_days(m)
        weight = self.day_weight[days].copy()
        if self.month_first[m].month in (3, 6, 9, 12):
            weight[-7:] *= 1.6
        return weight

    def business_day_weights(self, m: int) -> np.ndarray:
        """Relative weight of each day of month ``m`` for ordinary business payments."""
        return self.day_weight[self.month_days(m)].copy()

    def next_business_day(self, day: np.ndarray) -> np.ndarray:
        """The first day on or after each ``day`` that is a weekday and not a holiday."""
        index = self.day_index(day)
        out = day.copy()
        last = len(self.day_weight) - 1
        for _ in range(12):
            clipped = np.clip(index, 0, last)
            closed = (index <= last) & (self.day_weight[clipped] < 1.0)
            if not closed.any():
                break
            index = np.where(closed, index + 1, index)
            out = np.where(closed, out + 1, out)
        return out
