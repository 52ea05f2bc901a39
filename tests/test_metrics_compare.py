"""Effects over training seeds: the difference of means, its standard error and p-value, the verdict at 2 SE."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from consistentzoo.metrics import effect, seed_mean_std, verdict

MODEL, CONTROL = [0.52, 0.61, 0.70], [0.40, 0.47, 0.41]


def test_paired_effect_matches_scipy_ttest_rel() -> None:
    """Seed k of both sides shares a start: the per-seed differences, as scipy's paired t-test."""
    e = effect(MODEL, CONTROL, paired=True)
    t = stats.ttest_rel(MODEL, CONTROL)
    assert e.paired and e.df == 2 and e.seeds == (3, 3)
    assert e.diff == pytest.approx(sum(MODEL) / 3 - sum(CONTROL) / 3)
    assert (e.z, e.p) == (pytest.approx(t.statistic), pytest.approx(t.pvalue))


def test_unpaired_effect_matches_scipy_welch() -> None:
    e = effect(MODEL, CONTROL)
    t = stats.ttest_ind(MODEL, CONTROL, equal_var=False)
    assert not e.paired and (e.z, e.p) == (pytest.approx(t.statistic), pytest.approx(t.pvalue))
    assert verdict(e, +1) == "reproduced" and verdict(e, -1).startswith("reversed")


def test_verdicts_at_two_standard_errors() -> None:
    small = effect([0.50, 0.52, 0.48], [0.49, 0.51, 0.50], paired=True)
    assert abs(small.z) < 2 and verdict(small, +1) == "not reproduced (< 2 SE)"
    assert verdict(small, 0) == "no drop shown (< 2 SE lower)"  # accuracy: no drop shown, not "no drop"
    lower = effect([0.70, 0.71, 0.69], [0.80, 0.81, 0.79])
    assert verdict(lower, 0) == "dropped (≥ 2 SE lower)" and verdict(lower, -1) == "reproduced"
    with pytest.raises(ValueError, match="direction"):
        verdict(small, 2)


def test_one_seed_sides() -> None:
    """A one-seed model borrows its control's variance; one seed on both sides has no standard error."""
    e = effect([0.9], [0.4, 0.6], paired=True)  # paired needs seeds on both sides: Welch's form
    assert not e.paired and e.se == pytest.approx(math.sqrt(0.02 / 1 + 0.02 / 2)) and e.df == 1
    none = effect([0.9], [0.4])
    assert (none.diff, none.se, none.z, none.p) == (pytest.approx(0.5), None, None, None)
    assert verdict(none, +1) == "one seed each: no standard error"
    assert seed_mean_std([0.3]) == (0.3, None) and seed_mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    with pytest.raises(ValueError, match="at least one value"):
        effect([], [0.4])
    with pytest.raises(ValueError, match="finite"):
        effect([math.nan], [0.4])
