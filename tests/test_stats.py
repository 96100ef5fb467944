"""Seeds and noise: summaries and Welch comparisons checked against values worked out independently."""

from __future__ import annotations

import math

import pytest

from explorer.errors import ConfigError
from explorer.store.stats import compare, summarize, verdict


def test_summary_of_five_runs_matches_the_t_interval() -> None:
    summary = summarize([0.80, 0.81, 0.82, 0.83, 0.84])
    assert summary.n == 5
    assert summary.mean == pytest.approx(0.82)
    assert summary.std == pytest.approx(0.0158114, rel=1e-5)
    # t(0.975, 4) = 2.776445; half width = 2.776445 * 0.0158114 / sqrt(5)
    assert summary.high - summary.mean == pytest.approx(0.0196324, rel=1e-4)
    assert summary.low == pytest.approx(2 * summary.mean - summary.high)


def test_one_run_has_no_spread() -> None:
    summary = summarize([0.7])
    assert (summary.n, summary.mean) == (1, 0.7)
    assert math.isnan(summary.std) and math.isnan(summary.low)
    assert summary.to_dict()["std"] is None


def test_clear_difference_and_noise() -> None:
    clear = compare([0.90, 0.91, 0.92], [0.80, 0.81, 0.82])
    assert clear.verdict == "A better"
    assert clear.diff == pytest.approx(0.10)
    assert clear.low > 0 and clear.p_value < 0.001
    assert compare([0.80, 0.81, 0.82], [0.90, 0.91, 0.92]).verdict == "B better"
    noisy = compare([0.80, 0.83, 0.81], [0.82, 0.80, 0.815])
    assert noisy.verdict == "within noise"
    assert noisy.low < 0 < noisy.high and noisy.p_value > 0.05


def test_welch_interval_matches_the_formula() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    result = compare(a, b)
    # var_a/n_a = (5/3)/4, var_b/n_b = 4/3: se = 1.32288; Welch-Satterthwaite df = 3.2347, t(0.975, df) = 3.0557
    se = math.sqrt((5 / 3) / 4 + 4.0 / 3)
    assert result.diff == pytest.approx(-1.5)
    assert result.high - result.diff == pytest.approx(result.diff - result.low)
    assert (result.high - result.diff) / se == pytest.approx(3.0557, abs=1e-3)
    assert result.p_value == pytest.approx(0.3338, abs=1e-3)
    assert result.verdict == "within noise"


def test_bad_inputs_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="at least 2 runs"):
        compare([0.8], [0.7, 0.71])
    with pytest.raises(ConfigError, match="no values"):
        summarize([])
    with pytest.raises(ConfigError, match="NaN"):
        summarize([0.5, float("nan")])
    assert verdict(-0.1, 0.2) == "within noise"
