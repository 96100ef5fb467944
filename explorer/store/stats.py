"""Seeds and noise: the mean of repeated runs with its 95 % interval, and whether two designs really differ.

One run moves by a few tenths of a point with the seed, so a single difference says little. `summarize` gives
n, mean, standard deviation and the t interval of the mean; `compare` gives the difference of means with its
Welch interval, Welch's t-test p-value and a verdict: "within noise" when the interval of the difference
contains 0. The distributions come from scipy.stats, never written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats as scipy_stats

from explorer.errors import ConfigError

CONFIDENCE = 0.95
VERDICTS = ("A better", "B better", "within noise")


@dataclass(frozen=True)
class Summary:
    """Repeated measurements of one design. With n = 1 the spread is unknown: std and interval are NaN."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof = 1)
    low: float  # 95 % t interval of the mean
    high: float

    def to_dict(self) -> dict:
        return {key: (None if isinstance(value, float) and math.isnan(value) else value)
                for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Comparison:
    """A against B: mean(A) - mean(B), its 95 % Welch interval, the p-value and the verdict."""

    a: Summary
    b: Summary
    diff: float
    low: float
    high: float
    p_value: float
    verdict: str

    def to_dict(self) -> dict:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "diff": self.diff, "low": self.low,
                "high": self.high, "p_value": self.p_value, "verdict": self.verdict}


def _finite(values: Sequence[float], what: str) -> list[float]:
    numbers = [float(value) for value in values]
    if not numbers:
        raise ConfigError(f"{what}: no values to summarize; train the design at least once (--repeat N).")
    if not all(math.isfinite(value) for value in numbers):
        raise ConfigError(f"{what}: a value is NaN or infinite; only finished runs can be summarized.")
    return numbers


def summarize(values: Sequence[float], what: str = "group") -> Summary:
    """n, mean, std and the 95 % t interval of the mean of `values`."""
    numbers = _finite(values, what)
    n = len(numbers)
    mean = sum(numbers) / n
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(sum((value - mean) ** 2 for value in numbers) / (n - 1))
    if std == 0.0:  # identical runs (a deterministic design): the interval is the point itself
        return Summary(n, mean, 0.0, mean, mean)
    low, high = scipy_stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Summary(n, mean, std, float(low), float(high))


def verdict(low: float, high: float) -> str:
    """"within noise" when the interval of mean(A) - mean(B) contains 0, else the side it lies on."""
    if low > 0:
        return "A better"
    if high < 0:
        return "B better"
    return "within noise"


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's t-test of A against B (unequal variances); both sides need at least two runs."""
    summary_a, summary_b = summarize(a, "A"), summarize(b, "B")
    for name, summary in (("A", summary_a), ("B", summary_b)):
        if summary.n < 2:
            raise ConfigError(f"{name} has {summary.n} run: a comparison needs at least 2 runs on each side "
                              f"(train it again with --repeat 3).")
    diff = summary_a.mean - summary_b.mean
    if summary_a.std == 0.0 and summary_b.std == 0.0:  # no spread at all: the t statistic is undefined
        p_value = 1.0 if diff == 0 else 0.0
        return Comparison(summary_a, summary_b, diff, diff, diff, p_value, verdict(diff, diff))
    result = scipy_stats.ttest_ind(list(a), list(b), equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    low, high = float(interval.low), float(interval.high)
    return Comparison(summary_a, summary_b, diff, low, high, float(result.pvalue), verdict(low, high))
