"""Exact statistics of a metric's values: count, nearest-rank median and 90th percentile,
and the total (the mean is total / count). Pure; PostgreSQL computes the same numbers
with ``percentile_disc`` (``analytics.store``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Distribution", "distribution_of", "nearest_rank"]


@dataclass(frozen=True, slots=True)
class Distribution:
    """``n`` values (ms): their nearest-rank median and 90th percentile, and their sum."""

    n: int
    median_ms: float | None
    p90_ms: float | None
    total_ms: float

    @property
    def mean_ms(self) -> float | None:
        """The mean (None without values)."""
        return self.total_ms / self.n if self.n else None


def nearest_rank(sorted_values: Sequence[float], percent: int) -> float:
    """The smallest value with at least ``percent`` % of the values at or below it.

    >>> nearest_rank([1, 2, 3, 4], 50), nearest_rank([1, 2, 3, 4], 90)
    (2, 4)
    """
    rank = math.ceil(percent * len(sorted_values) / 100)
    return sorted_values[max(rank, 1) - 1]


def distribution_of(values: Sequence[float]) -> Distribution:
    """The distribution of ``values`` (any order).

    >>> distribution_of([30, 10, 20])
    Distribution(n=3, median_ms=20, p90_ms=30, total_ms=60)
    """
    if not values:
        return Distribution(0, None, None, 0)
    ordered = sorted(values)
    return Distribution(
        len(ordered), nearest_rank(ordered, 50), nearest_rank(ordered, 90), sum(ordered)
    )
