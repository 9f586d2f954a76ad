"""The statistics of an experiment's report: rates, their intervals, a test, the size it needs.

Pure functions over counts (x conversions of n letters), with nothing but the standard
library, so a report can be recomputed anywhere and checked against a textbook.

A note on the name: inside this package ``statistics`` is this module; the standard
library's ``statistics`` (for ``NormalDist``) is still what an absolute import finds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "Comparison",
    "Interval",
    "Verdict",
    "compare",
    "fisher_exact",
    "sample_size",
    "two_proportion_z",
    "verdict",
    "wilson",
]

Z_TEST = "two-proportion z-test"
FISHER = "Fisher's exact test"

_STANDARD_NORMAL = NormalDist()
# Tables "no more likely than the observed one" are compared with a little slack, so a table
# exactly as likely as the observed one still counts when log-gamma rounds it a hair above.
_LOG_TIE = math.log1p(1e-7)
# Below this expected count in any cell of the 2x2 table the normal approximation behind the
# z-test is poor (Cochran's rule of thumb), so the exact test is used instead.
_MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class Interval:
    """A closed interval [low, high]."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"counts must satisfy 0 <= successes <= n, got {successes} of {n}")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def _z(confidence: float) -> float:
    """The two-sided critical value: 1.96 for 95%."""
    _check_probability("confidence", confidence)
    return _STANDARD_NORMAL.inv_cdf((1.0 + confidence) / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval | None:
    """Wilson's score interval for a proportion; None when there are no letters.

    Not the textbook Wald interval (p +- z*sqrt(p(1-p)/n)): Wald is wrong near 0 and for small
    n, where conversion rates live (0 of 40 gives the impossible interval [0, 0], and its
    coverage falls far below the stated level). Wilson inverts the score test instead, so it
    stays inside [0, 1], is never empty, and covers close to the stated level at any n.
    """
    _check_counts(successes, n)
    if n == 0:
        return None
    z = _z(confidence)
    z2 = z * z
    p = successes / n
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    # At 0 or n successes the bound is exactly 0 or 1; clamp the rounding either side of it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


@dataclass(frozen=True)
class Comparison:
    """An arm (rate) against its baseline (base_rate): the lift, its intervals and a p-value."""

    base_rate: float
    rate: float
    absolute: float
    absolute_interval: Interval
    relative: float | None
    relative_interval: Interval | None
    p_value: float
    test: str


def _newcombe(x1: int, n1: int, x0: int, n0: int, confidence: float) -> Interval:
    """Newcombe's hybrid score interval (his method 10) for rate - base_rate.

    The Wald interval for a difference inherits Wald's faults (too narrow, overshooting
    [-1, 1], degenerate at 0 conversions). Newcombe's interval combines the two arms' Wilson
    intervals instead: each bound moves away from the difference by the root sum of squares
    of the two Wilson half-widths on the side that bound leans on. It keeps Wilson's coverage
    and its good behaviour at 0 or n conversions, and needs no iteration.
    """
    rate, base = x1 / n1, x0 / n0
    arm = wilson(x1, n1, confidence)
    baseline = wilson(x0, n0, confidence)
    assert arm is not None and baseline is not None  # n1 and n0 are positive here
    difference = rate - base
    low = difference - math.hypot(rate - arm.low, baseline.high - base)
    high = difference + math.hypot(arm.high - rate, base - baseline.low)
    return Interval(max(-1.0, low), min(1.0, high))


def _katz(x1: int, n1: int, x0: int, n0: int, confidence: float) -> Interval:
    """The interval of the relative lift, from the log of the risk ratio (Katz's method).

    The ratio of two rates is skewed, its logarithm close to normal, so the interval is
    symmetric on the log scale and turned back into a lift (ratio - 1) at the end. A zero
    cell makes the log or its variance infinite; adding 0.5 to every cell then (the usual
    continuity correction) keeps the interval finite.
    """
    a, b, c, d = float(x1), float(n1 - x1), float(x0), float(n0 - x0)
    if min(a, b, c, d) == 0.0:
        a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    log_ratio = math.log(a / (a + b)) - math.log(c / (c + d))
    se = math.sqrt(1.0 / a - 1.0 / (a + b) + 1.0 / c - 1.0 / (c + d))
    margin = _z(confidence) * se
    return Interval(math.exp(log_ratio - margin) - 1.0, math.exp(log_ratio + margin) - 1.0)


def _min_expected(x1: int, n1: int, x0: int, n0: int) -> float:
    """The smallest expected cell of the 2x2 table if both arms converted alike."""
    total = n1 + n0
    successes = x1 + x0
    return min(n1, n0) * min(successes, total - successes) / total


def compare(x1: int, n1: int, x0: int, n0: int, confidence: float = 0.95) -> Comparison | None:
    """An arm (x1 of n1 converted) against its baseline (x0 of n0); None if either is empty.

    The p-value comes from the z-test when every expected cell count is at least 5 and from
    Fisher's exact test otherwise: with few conversions the normal approximation misstates p,
    and the exact test is cheap there. The relative lift and its interval are None when the
    baseline has not converted at all, since a lift over zero is not a number.
    """
    _check_counts(x1, n1)
    _check_counts(x0, n0)
    if n1 == 0 or n0 == 0:
        return None
    rate, base = x1 / n1, x0 / n0
    relative = rate / base - 1.0 if base > 0 else None
    relative_interval = _katz(x1, n1, x0, n0, confidence) if relative is not None else None
    if _min_expected(x1, n1, x0, n0) < _MIN_EXPECTED:
        p_value, test = fisher_exact(x1, n1, x0, n0), FISHER
    else:
        p_value, test = two_proportion_z(x1, n1, x0, n0), Z_TEST
    return Comparison(
        base_rate=base,
        rate=rate,
        absolute=rate - base,
        absolute_interval=_newcombe(x1, n1, x0, n0, confidence),
        relative=relative,
        relative_interval=relative_interval,
        p_value=p_value,
        test=test,
    )


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _boundary(low: int, high: int, inside: Callable[[int], bool], first: bool) -> int | None:
    """Binary search in [low, high] for the edge of a run of ``inside`` values.

    With first=False ``inside`` holds on a prefix: the prefix's last index. With first=True it
    holds on a suffix: the suffix's first index. None when it holds nowhere.
    """
    found: int | None = None
    while low <= high:
        middle = (low + high) // 2
        if inside(middle):
            found = middle
            if first:
                high = middle - 1
            else:
                low = middle + 1
        elif first:
            low = middle + 1
        else:
            high = middle - 1
    return found


def _tail(log_pmf: Callable[[int], float], start: int, end: int) -> float:
    """The sum of pmf(k) from start towards end, where the pmf falls all the way.

    The hypergeometric is log-concave, so away from its mode each term is a smaller fraction
    of the one before than the last was: once the geometric bound on everything left is
    negligible the walk stops, and a tail millions of tables long costs a few hundred terms.
    """
    step = 1 if end >= start else -1
    previous = log_pmf(start)
    total = math.exp(previous)
    k = start
    while k != end:
        k += step
        current = log_pmf(k)
        term = math.exp(current)
        total += term
        ratio = math.exp(current - previous)
        if ratio < 1.0 and term * ratio / (1.0 - ratio) <= total * 1e-17:
            break
        previous = current
    return total


def fisher_exact(x1: int, n1: int, x0: int, n0: int) -> float:
    """Fisher's exact test, two-sided: the chance of a table no more likely than this one.

    With both arms' sizes and the total conversions fixed, the arm's conversions follow the
    hypergeometric distribution; the p-value sums the probability of every table at most as
    likely as the observed one (a relative slack of 1e-7 counts exact ties as ties). Terms
    come from log-gamma, so millions of letters neither overflow nor need big integers, and
    only the two tails are walked: the tables more likely than the observed one form a run
    around the mode, whose ends are found by bisection.
    """
    _check_counts(x1, n1)
    _check_counts(x0, n0)
    total = n1 + n0
    successes = x1 + x0
    low = max(0, successes - n0)
    high = min(successes, n1)
    if low == high:
        return 1.0
    log_all = _log_comb(total, successes)

    def log_pmf(k: int) -> float:
        return _log_comb(n1, k) + _log_comb(n0, successes - k) - log_all

    mode = min(high, max(low, (successes + 1) * (n1 + 1) // (total + 2)))
    cut = log_pmf(x1) + _LOG_TIE
    if log_pmf(mode) <= cut:
        return 1.0  # the observed table is as likely as any: every table counts

    def no_more_likely(k: int) -> bool:
        return log_pmf(k) <= cut

    p = 0.0
    left = _boundary(low, mode - 1, no_more_likely, first=False)
    if left is not None:
        p += _tail(log_pmf, left, low)
    right = _boundary(mode + 1, high, no_more_likely, first=True)
    if right is not None:
        p += _tail(log_pmf, right, high)
    return min(1.0, p)


def two_proportion_z(x1: int, n1: int, x0: int, n0: int) -> float:
    """The pooled two-proportion z-test, two-sided; 1.0 when there is no spread to test.

    Pooled because the p-value is computed as if the null hypothesis held, and under it both
    arms share one rate. With an empty arm, or no conversions (or nothing but conversions) in
    either, the standard error is 0 and nothing speaks against the null: p = 1.
    """
    _check_counts(x1, n1)
    _check_counts(x0, n0)
    if n1 == 0 or n0 == 0:
        return 1.0
    pooled = (x1 + x0) / (n1 + n0)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0))
    if se == 0.0:
        return 1.0
    z = (x1 / n1 - x0 / n0) / se
    # cdf of the lower tail, not 1 - cdf: keeps its precision for tiny p.
    return min(1.0, 2.0 * _STANDARD_NORMAL.cdf(-abs(z)))


def sample_size(
    base_rate: float, min_effect: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Letters needed in each arm to detect a relative lift of ``min_effect`` (0.2 = +20%).

    The normal-approximation size of the pooled two-sided z-test: the null's spread (pooled
    rate) at the critical value plus the alternative's spread at the power quantile, over
    the difference to detect, squared and rounded up. None when the effect cannot be
    measured: no baseline conversions, no effect, or a target rate outside (0, 1).
    """
    _check_probability("alpha", alpha)
    _check_probability("power", power)
    p1 = base_rate
    p2 = base_rate * (1.0 + min_effect)
    if p1 <= 0.0 or p1 >= 1.0 or p2 <= 0.0 or p2 >= 1.0 or p2 == p1:
        return None
    mean = (p1 + p2) / 2.0
    z_alpha = _STANDARD_NORMAL.inv_cdf(1.0 - alpha / 2.0)
    z_power = _STANDARD_NORMAL.inv_cdf(power)
    spread = z_alpha * math.sqrt(2.0 * mean * (1.0 - mean)) + z_power * math.sqrt(
        p1 * (1.0 - p1) + p2 * (1.0 - p2)
    )
    return math.ceil((spread / (p2 - p1)) ** 2)


@dataclass(frozen=True)
class Verdict:
    """What an owner may be told: ``decided`` only when a winner or "no difference" stands."""

    decided: bool
    text: str


def _points(value: float) -> str:
    """A difference of proportions in signed percentage points, one decimal: +2.1."""
    text = f"{value * 100:+.1f}"
    return "+0.0" if text == "-0.0" else text


def _p_text(p: float, alpha: float) -> str:
    """p to three decimals, more if three would round it onto the other side of alpha."""
    if p < 0.001:
        return "p < 0.001"
    digits = 3
    while digits < 6 and (p < alpha) != (round(p, digits) < alpha):
        digits += 1
    return f"p = {p:.{digits}f}"


def verdict(
    arm: str,
    baseline: str,
    n1: int,
    n0: int,
    comparison: Comparison | None,
    needed: int | None,
    alpha: float = 0.05,
) -> Verdict:
    """Plain words for the report, refusing to call anything before the planned size.

    Looking at p as letters trickle in and stopping at the first p < alpha makes a false
    winner far likelier than alpha says, so nothing is decided until both arms have the
    letters ``needed`` (from ``sample_size``), however small p is before then. The interval
    is labelled with 1 - alpha, so compare() should be given confidence = 1 - alpha.
    """
    _check_probability("alpha", alpha)
    if needed is None:
        if comparison is not None and comparison.base_rate > 0:
            return Verdict(
                False,
                f"{baseline} already converts at {comparison.base_rate:.1%}: the lift the test "
                "was sized for cannot be measured from there, so nothing can be called.",
            )
        return Verdict(False, f"No conversions in {baseline} yet: nothing to compare against.")
    if n1 < needed or n0 < needed or comparison is None:
        return Verdict(
            False,
            f"Too early: {arm} has {n1:,} and {baseline} {n0:,} of the {needed:,} letters each "
            "needs to detect the effect the test was sized for; keep it running.",
        )
    if comparison.p_value < alpha and comparison.absolute != 0:
        direction = "better" if comparison.absolute > 0 else "worse"
        interval = comparison.absolute_interval
        level = f"{round((1.0 - alpha) * 100, 1):g}%"
        return Verdict(
            True,
            f"{arm} converts {direction} than {baseline}: {_points(comparison.absolute)} points "
            f"({level} CI {_points(interval.low)} to {_points(interval.high)}), "
            f"{_p_text(comparison.p_value, alpha)}.",
        )
    return Verdict(
        True,
        f"No difference found between {arm} and {baseline} at this size; a difference, if any, "
        "is probably smaller than the effect the test was sized for.",
    )
