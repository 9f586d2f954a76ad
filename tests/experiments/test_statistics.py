"""The statistics of an experiment's report, against published values and simulations.

Published values: Wilson and Newcombe's intervals from Newcombe's 1998 worked examples (each
bound re-derived by hand where the arithmetic is short), Fisher's tea tasting. Simulations
draw experiments with a known truth and count how often the intervals cover it and how often
the test sized by sample_size finds the effect.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from statistics import NormalDist

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.experiments.statistics import (
    Comparison,
    Interval,
    compare,
    fisher_exact,
    sample_size,
    two_proportion_z,
    verdict,
    wilson,
)

Z95 = NormalDist().inv_cdf(0.975)


def binomial(rng: random.Random, n: int, p: float) -> int:
    """An exact Binomial(n, p) draw in O(log n) steps (no numpy, no 3.12 binomialvariate).

    The i-th smallest of n uniforms is Beta(i, n + 1 - i). If it lies below p, those i
    uniforms are all successes and the n - i above it are uniform on (y, 1); otherwise the
    i - 1 below it are uniform on (0, y) and the rest are failures. Halving n each time, the
    last few dozen are drawn one by one.
    """
    successes = 0
    while n > 32:
        i = (n + 1) // 2
        y = rng.betavariate(i, n + 1 - i)
        if y < p:
            successes += i
            n -= i
            p = (p - y) / (1.0 - y)
        else:
            n = i - 1
            p = p / y
    return successes + sum(rng.random() < p for _ in range(n))


def bounds(interval: Interval | None) -> tuple[float, float]:
    assert interval is not None
    return round(interval.low, 4), round(interval.high, 4)


def comparison(x1: int, n1: int, x0: int, n0: int) -> Comparison:
    result = compare(x1, n1, x0, n0)
    assert result is not None
    return result


# --- Wilson ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Newcombe (1998), single proportion, score method without continuity correction.
        # 81/263 by hand: centre (81 + 1.9207)/266.8415 = 0.31075, half-width
        # 1.96 * sqrt(81*182/263 + 0.9604)/266.8415 = 0.05546.
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        # 0/20: the upper bound is z^2/(n + z^2) = 3.8415/23.8415.
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_matches_published_intervals(
    successes: int, n: int, expected: tuple[float, float]
) -> None:
    assert bounds(wilson(successes, n)) == expected


def test_wilson_is_none_without_letters() -> None:
    assert wilson(0, 0) is None


def test_wilson_at_no_and_all_conversions_touches_the_edge() -> None:
    none = wilson(0, 40)
    every = wilson(40, 40)
    assert none is not None and every is not None
    # Where Wald collapses to [0, 0], Wilson still admits a rate up to z^2 / (n + z^2).
    assert none.low == 0.0
    assert none.high == pytest.approx(Z95**2 / (40 + Z95**2))
    assert every.high == 1.0
    assert every.low == pytest.approx(40 / (40 + Z95**2))


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_holds_the_rate_inside_zero_to_one(counts: tuple[int, int]) -> None:
    successes, n = counts
    interval = wilson(successes, n)
    wider = wilson(successes, n, confidence=0.99)
    assert interval is not None and wider is not None
    assert 0.0 <= interval.low <= successes / n <= interval.high <= 1.0
    assert wider.low <= interval.low and interval.high <= wider.high


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_confidence_outside_zero_to_one_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson(3, 10, confidence)


@pytest.mark.parametrize(("successes", "n"), [(-1, 10), (11, 10), (0, -1)])
def test_impossible_counts_are_refused(successes: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson(successes, n)
    with pytest.raises(ValueError):
        compare(successes, n, 1, 10)


# --- Newcombe's interval for the difference --------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), differences of independent proportions, method 10 (hybrid score).
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        # The next four follow from the Wilson bounds of 0/10 (0 to 0.2775), 0/20 (0 to
        # 0.1611) and 10/10 (0.7225 to 1): e.g. 1 - sqrt(0.2775^2 + 0.1611^2) = 0.6791.
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((0, 10, 0, 10), (-0.2775, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0)),
        ((10, 10, 0, 10), (0.6075, 1.0)),
    ],
)
def test_newcombe_matches_published_intervals(
    counts: tuple[int, int, int, int], expected: tuple[float, float]
) -> None:
    result = comparison(*counts)
    x1, n1, x0, n0 = counts
    assert result.absolute == pytest.approx(x1 / n1 - x0 / n0)
    assert bounds(result.absolute_interval) == expected


tables = st.tuples(st.integers(1, 300), st.integers(1, 300)).flatmap(
    lambda sizes: st.tuples(
        st.integers(0, sizes[0]), st.just(sizes[0]), st.integers(0, sizes[1]), st.just(sizes[1])
    )
)


@given(tables)
def test_newcombe_holds_the_difference_and_mirrors_when_arms_swap(
    counts: tuple[int, int, int, int],
) -> None:
    x1, n1, x0, n0 = counts
    forward = comparison(x1, n1, x0, n0).absolute_interval
    backward = comparison(x0, n0, x1, n1).absolute_interval
    assert -1.0 <= forward.low <= x1 / n1 - x0 / n0 <= forward.high <= 1.0
    assert forward.low == pytest.approx(-backward.high, abs=1e-12)
    assert forward.high == pytest.approx(-backward.low, abs=1e-12)


# --- the relative lift ------------------------------------------------------------------------


def test_relative_lift_interval_from_the_log_risk_ratio() -> None:
    # 20/100 against 10/100: ratio 2, se of its log sqrt(1/20 - 1/100 + 1/10 - 1/100) = 0.36056,
    # so the ratio lies in 2 * exp(-+1.96 * 0.36056) = 0.98656 to 4.0545.
    result = comparison(20, 100, 10, 100)
    assert result.relative == pytest.approx(1.0)
    assert bounds(result.relative_interval) == (-0.0134, 3.0545)


def test_relative_lift_with_a_zero_cell_adds_a_half_everywhere() -> None:
    # 0/10 against 5/10: cells become 0.5, 10.5, 5.5, 5.5; the ratio (0.5/11)/(5.5/11) = 1/11
    # and the se of its log sqrt(1/0.5 - 1/11 + 1/5.5 - 1/11) = sqrt(2).
    result = comparison(0, 10, 5, 10)
    assert result.relative == pytest.approx(-1.0)
    interval = result.relative_interval
    assert interval is not None
    assert interval.low == pytest.approx(math.exp(math.log(1 / 11) - Z95 * math.sqrt(2)) - 1)
    assert interval.high == pytest.approx(math.exp(math.log(1 / 11) + Z95 * math.sqrt(2)) - 1)


def test_no_baseline_conversions_leave_the_relative_lift_undefined() -> None:
    result = comparison(3, 100, 0, 100)
    assert result.base_rate == 0.0
    assert result.relative is None
    assert result.relative_interval is None
    assert result.absolute == pytest.approx(0.03)
    assert result.absolute_interval.contains(0.03)


# --- Fisher's exact test ------------------------------------------------------------------------


def test_fisher_tea_tasting() -> None:
    # Three of four cups called right: the table [[3, 1], [1, 3]] has probability 16/70, and
    # the tables no more likely are 0, 1, 3 and 4 right: (1 + 16 + 16 + 1)/70.
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(34 / 70)
    assert round(fisher_exact(3, 4, 1, 4), 4) == 0.4857
    # All four right: only the two extreme tables, 2/70.
    assert fisher_exact(4, 4, 0, 4) == pytest.approx(2 / 70)
    # Two of four: the most likely table, so every table counts.
    assert fisher_exact(2, 4, 2, 4) == 1.0


def brute_force_fisher(x1: int, n1: int, x0: int, n0: int) -> float:
    """The definition in exact integers: P(k) <= P(observed) * (1 + 1e-7), summed."""
    successes = x1 + x0
    weights = {
        k: math.comb(n1, k) * math.comb(n0, successes - k)
        for k in range(max(0, successes - n0), min(successes, n1) + 1)
    }
    observed = weights[x1]
    tie = Fraction(1) + Fraction(1, 10**7)
    kept = sum(w for w in weights.values() if w <= observed * tie)
    return kept / math.comb(n1 + n0, successes)


small_tables = st.tuples(st.integers(0, 40), st.integers(0, 40)).flatmap(
    lambda sizes: st.tuples(
        st.integers(0, sizes[0]), st.just(sizes[0]), st.integers(0, sizes[1]), st.just(sizes[1])
    )
)


@given(small_tables)
def test_fisher_agrees_with_enumerating_every_table(counts: tuple[int, int, int, int]) -> None:
    assert fisher_exact(*counts) == pytest.approx(brute_force_fisher(*counts), rel=1e-9)


@given(small_tables)
def test_fisher_ignores_which_arm_or_outcome_is_named_first(
    counts: tuple[int, int, int, int],
) -> None:
    x1, n1, x0, n0 = counts
    p = fisher_exact(x1, n1, x0, n0)
    assert 0.0 < p <= 1.0
    assert fisher_exact(x0, n0, x1, n1) == pytest.approx(p, rel=1e-9)
    assert fisher_exact(n1 - x1, n1, n0 - x0, n0) == pytest.approx(p, rel=1e-9)


def test_fisher_with_a_million_letters_an_arm_agrees_with_the_z_test() -> None:
    # At these counts the normal approximation is good, so both tests must nearly agree.
    for counts in [(5000, 1_000_000, 5300, 1_000_000), (500_000, 1_000_000, 501_500, 999_000)]:
        exact = fisher_exact(*counts)
        assert 0.0 < exact < 1.0
        assert exact == pytest.approx(two_proportion_z(*counts), rel=0.05)


# --- the z-test ---------------------------------------------------------------------------------


def test_z_test_against_the_normal_distribution() -> None:
    # 120/1000 against 100/1000: pooled rate 0.11, se sqrt(0.11 * 0.89 * 2/1000).
    z = (0.12 - 0.10) / math.sqrt(0.11 * 0.89 * (2 / 1000))
    expected = 2 * (1 - NormalDist().cdf(z))
    assert two_proportion_z(120, 1000, 100, 1000) == pytest.approx(expected, rel=1e-9)
    # z squared is Pearson's chi-square of the 2x2 table.
    observed = [120, 880, 100, 900]
    expected_cells = [110, 890, 110, 890]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected_cells, strict=True))
    assert z**2 == pytest.approx(chi2)
    assert round(two_proportion_z(120, 1000, 100, 1000), 4) == 0.1529


def test_z_test_without_spread_gives_one() -> None:
    assert two_proportion_z(0, 500, 0, 700) == 1.0
    assert two_proportion_z(500, 500, 700, 700) == 1.0
    assert two_proportion_z(0, 0, 3, 10) == 1.0


def test_compare_uses_fisher_only_when_an_expected_cell_is_below_five() -> None:
    # 4 conversions among 2,000: the expected conversions per arm are 2.
    small = comparison(3, 1000, 1, 1000)
    assert small.test == "Fisher's exact test"
    assert small.p_value == pytest.approx(fisher_exact(3, 1000, 1, 1000))
    # 10 conversions among 2,000: 5 expected per arm, enough for the z-test.
    large = comparison(7, 1000, 3, 1000)
    assert large.test == "two-proportion z-test"
    assert large.p_value == pytest.approx(two_proportion_z(7, 1000, 3, 1000))


# --- edge cases of compare --------------------------------------------------------------------


def test_compare_without_letters_in_either_arm_is_none() -> None:
    assert compare(0, 0, 5, 100) is None
    assert compare(5, 100, 0, 0) is None


@pytest.mark.parametrize("counts", [(50, 1000, 50, 1000), (2, 10, 2, 10), (0, 30, 0, 30)])
def test_identical_arms_show_no_difference(counts: tuple[int, int, int, int]) -> None:
    result = comparison(*counts)
    assert result.p_value == 1.0
    assert result.absolute == 0.0
    assert result.absolute_interval.contains(0.0)
    if result.relative is not None:
        assert result.relative == 0.0
        assert result.relative_interval is not None
        assert result.relative_interval.contains(0.0)


def test_all_conversions_in_both_arms() -> None:
    result = comparison(10, 10, 20, 20)
    assert result.p_value == 1.0
    assert result.relative == 0.0
    assert result.absolute_interval.contains(0.0)
    assert result.relative_interval is not None
    assert math.isfinite(result.relative_interval.low)
    assert math.isfinite(result.relative_interval.high)


def test_no_conversions_in_the_arm_against_some_in_the_baseline() -> None:
    result = comparison(0, 200, 20, 200)
    assert result.rate == 0.0
    assert result.absolute_interval.high < 0.0
    assert result.p_value < 0.001


# --- sample size --------------------------------------------------------------------------------


def test_sample_size_for_ten_against_twelve_percent() -> None:
    # By hand: p-bar 0.11; 1.95996 * sqrt(2 * 0.11 * 0.89) = 0.86727;
    # 0.84162 * sqrt(0.09 + 0.1056) = 0.37222; ((0.86727 + 0.37222) / 0.02)^2 = 3840.8.
    assert sample_size(0.10, 0.2) == 3841


def test_sample_size_grows_as_the_question_gets_harder() -> None:
    sizes = [sample_size(0.10, effect) for effect in (0.5, 0.3, 0.2, 0.1, 0.05)]
    assert all(size is not None for size in sizes)
    assert sizes == sorted(sizes, key=lambda size: size or 0)
    assert len(set(sizes)) == len(sizes)
    base = sample_size(0.10, 0.2)
    stricter = sample_size(0.10, 0.2, alpha=0.01)
    stronger = sample_size(0.10, 0.2, power=0.9)
    rarer = sample_size(0.02, 0.2)
    assert base is not None and stricter is not None and stronger is not None
    assert rarer is not None
    assert stricter > base and stronger > base and rarer > base


@pytest.mark.parametrize(
    ("base_rate", "effect"), [(0.0, 0.2), (-0.1, 0.2), (0.9, 0.2), (0.5, 1.0), (0.1, 0.0)]
)
def test_sample_size_is_none_when_the_effect_cannot_be_measured(
    base_rate: float, effect: float
) -> None:
    assert sample_size(base_rate, effect) is None


def test_binomial_helper_has_the_binomial_mean_and_variance() -> None:
    rng = random.Random(7)
    draws = [binomial(rng, 20_000, 0.1) for _ in range(2000)]
    mean = sum(draws) / len(draws)
    variance = sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)
    assert abs(mean - 2000) < 4 * math.sqrt(1800 / 2000)
    assert 1800 * 0.88 < variance < 1800 * 1.12


def test_sample_size_gives_the_promised_power() -> None:
    rng = random.Random(2024)
    n = sample_size(0.10, 0.2)
    assert n is not None
    runs = 400
    found = sum(
        two_proportion_z(binomial(rng, n, 0.12), n, binomial(rng, n, 0.10), n) < 0.05
        for _ in range(runs)
    )
    # 80% of 400 is 320, give or take 8 for one standard deviation.
    assert 0.74 <= found / runs <= 0.86


# --- coverage ---------------------------------------------------------------------------------


def test_intervals_cover_the_true_rates_about_95_percent_of_the_time() -> None:
    rng = random.Random(1998)
    n, arm_rate, base_rate = 20_000, 0.12, 0.10
    runs = 500
    covered = {"arm": 0, "baseline": 0, "difference": 0, "relative": 0}
    for _ in range(runs):
        x1, x0 = binomial(rng, n, arm_rate), binomial(rng, n, base_rate)
        arm, baseline = wilson(x1, n), wilson(x0, n)
        result = comparison(x1, n, x0, n)
        assert arm is not None and baseline is not None
        assert result.relative_interval is not None
        covered["arm"] += arm.contains(arm_rate)
        covered["baseline"] += baseline.contains(base_rate)
        covered["difference"] += result.absolute_interval.contains(arm_rate - base_rate)
        covered["relative"] += result.relative_interval.contains(arm_rate / base_rate - 1)
    for name, count in covered.items():
        assert 0.92 <= count / runs <= 0.98, (name, count)


# --- verdict ----------------------------------------------------------------------------------


def test_verdict_refuses_before_the_planned_size_however_small_p() -> None:
    result = comparison(300, 1204, 100, 1190)
    assert result.p_value < 1e-10
    said = verdict("b", "a", 1204, 1190, result, needed=3841)
    assert not said.decided
    assert said.text.startswith("Too early:")
    for part in ("b has 1,204", "a 1,190", "3,841", "keep it running"):
        assert part in said.text


def test_verdict_waits_for_both_arms() -> None:
    result = comparison(600, 4000, 400, 3000)
    said = verdict("b", "a", 4000, 3000, result, needed=3841)
    assert not said.decided
    assert "4,000" in said.text and "3,000" in said.text


def test_verdict_without_a_size_says_why() -> None:
    said = verdict("b", "holdout", 500, 500, comparison(5, 500, 0, 500), needed=None)
    assert not said.decided
    assert "holdout" in said.text and "nothing to compare against" in said.text
    high = verdict("b", "a", 500, 500, comparison(460, 500, 450, 500), needed=None)
    assert not high.decided
    assert "a already converts at 90.0%" in high.text


def test_verdict_names_the_better_arm_with_its_lift() -> None:
    result = comparison(480, 4000, 400, 4000)
    said = verdict("variant b", "variant a", 4000, 4000, result, needed=3841)
    assert said.decided
    assert said.text.startswith("variant b converts better than variant a: +2.0 points (95% CI +")
    low, high = result.absolute_interval.low * 100, result.absolute_interval.high * 100
    assert f"CI {low:+.1f} to {high:+.1f})" in said.text
    assert f"p = {result.p_value:.3f}." in said.text


def test_verdict_names_the_worse_arm() -> None:
    result = comparison(300, 4000, 400, 4000)
    said = verdict("b", "a", 4000, 4000, result, needed=3841)
    assert said.decided
    assert said.text.startswith("b converts worse than a: -2.5 points (95% CI -")
    assert said.text.endswith("p < 0.001.")


def test_verdict_calls_no_difference_after_the_planned_size() -> None:
    result = comparison(405, 4000, 400, 4000)
    said = verdict("b", "a", 4000, 4000, result, needed=3841)
    assert said.decided
    assert said.text.startswith("No difference found between b and a at this size")


def test_verdict_never_rounds_p_onto_the_other_side_of_alpha() -> None:
    # 455 of 4,007 against 400 of 4,000: p lies just under 0.05 yet is 0.050 to three places.
    result = comparison(455, 4007, 400, 4000)
    assert result.p_value < 0.05 <= round(result.p_value, 3)
    said = verdict("b", "a", 4007, 4000, result, needed=3841)
    assert said.decided
    assert "p = 0.050." not in said.text
    assert "p = 0.049" in said.text
