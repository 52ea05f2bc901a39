"""Comparing a model with its control over training seeds: the difference of means, its standard error, a verdict.

An effect of a training objective counts only against a control trained for the same steps from the same start. With
one value per training seed on each side, :func:`effect` gives the difference of the means, its standard error and a
two-sided p-value from Student's t: *paired* over seeds when seed ``k`` of the model and of the control share a
starting checkpoint (the per-seed differences ``d``: ``SE = sd(d) / sqrt(n)``, ``n - 1`` degrees of freedom,
``scipy.stats.ttest_rel``), else Welch's (``scipy.stats.ttest_ind(equal_var=False)``). :func:`verdict` reads it at
two standard errors — a low bar with three seeds (paired, 2 degrees of freedom: two-sided p ≈ 0.18 at 2 SE), which
is why the p-value travels with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .results import mean_std

__all__ = ["Effect", "effect", "seed_mean_std", "verdict"]


@dataclass(frozen=True)
class Effect:
    """``model - control`` over training seeds.

    Attributes:
        diff: difference of the means.
        se: its standard error; None when both sides have one seed (nothing to estimate the spread from).
        z: ``diff / se``, the effect in standard errors (None without a standard error; ±inf for a non-zero
            difference with zero spread).
        p: two-sided p-value of Student's t with ``df`` degrees of freedom (None without a standard error).
        df: degrees of freedom of that t.
        seeds: ``(model seeds, control seeds)``.
        paired: whether the per-seed differences were used.
    """

    diff: float
    se: float | None
    z: float | None
    p: float | None
    df: float | None
    seeds: tuple[int, int]
    paired: bool


def seed_mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``n - 1``) of per-seed values; the std is None for one seed."""
    if len(values) == 1:
        return float(values[0]), None
    return mean_std(values, ddof=1)


def effect(model: Sequence[float], control: Sequence[float], paired: bool = False) -> Effect:
    """The difference of the means of per-seed values, its standard error and a two-sided p-value.

    Args:
        model: one value per training seed of the model.
        control: one value per training seed of its control, in the same seed order when ``paired``.
        paired: seed ``k`` of both started from the same checkpoint: use the per-seed differences (needs the same
            number of seeds, at least two; otherwise Welch's form is used and ``Effect.paired`` is False).

    A side with one seed (and a control with several) borrows the other side's variance: the assumption that an
    objective does not change the spread over seeds. Both sides with one seed give no standard error.

    Raises:
        ValueError: an empty side, or a NaN/infinite value.
    """
    from scipy import stats

    if not model or not control:
        raise ValueError(f"effect needs at least one value per side, got {len(model)} and {len(control)}")
    if not all(math.isfinite(v) for v in (*model, *control)):
        raise ValueError("effect: values must be finite")
    seeds = (len(model), len(control))
    if paired and len(model) == len(control) >= 2:
        mean, sd = mean_std([a - b for a, b in zip(model, control, strict=True)], ddof=1)
        return _with_t(mean, sd / math.sqrt(len(model)), len(model) - 1, seeds, True, stats)
    (ma, sa), (mb, sb) = seed_mean_std(model), seed_mean_std(control)
    if sa is None and sb is None:
        return Effect(ma - mb, None, None, None, None, seeds, False)
    va, vb = (sb if sa is None else sa) ** 2 / len(model), (sa if sb is None else sb) ** 2 / len(control)
    if sa is None or sb is None:  # one side's spread is borrowed: the other side's degrees of freedom
        df = float(max(seeds) - 1)
    else:  # Welch-Satterthwaite
        df = (va + vb) ** 2 / (va**2 / (len(model) - 1) + vb**2 / (len(control) - 1)) if va + vb > 0 else 1.0
    return _with_t(ma - mb, math.sqrt(va + vb), df, seeds, False, stats)


def _with_t(diff: float, se: float, df: float, seeds: tuple[int, int], paired: bool, stats) -> Effect:
    if se > 0:
        z = diff / se
        p = float(2 * stats.t.sf(abs(z), df))
    else:
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
    return Effect(diff, se, z, p, df, seeds, paired)


def verdict(e: Effect, direction: int) -> str:
    """Whether a paper's claimed effect is there, at two standard errors.

    Args:
        e: the measured effect.
        direction: the paper's claim: ``+1`` higher, ``-1`` lower, ``0`` unchanged (e.g. accuracy kept).

    Returns:
        ``"reproduced"`` (≥ 2 SE in the claimed direction), ``"not reproduced (< 2 SE)"`` or
        ``"reversed (≥ 2 SE against the paper)"``; for ``direction=0``: ``"no drop shown (< 2 SE lower)"`` or
        ``"dropped (≥ 2 SE lower)"`` — no drop shown is not evidence of no drop; without a standard error:
        ``"one seed each: no standard error"``.
    """
    if direction not in (-1, 0, 1):
        raise ValueError(f"direction must be -1, 0 or +1, got {direction!r}")
    if e.z is None:
        return "one seed each: no standard error"
    if direction == 0:
        return "no drop shown (< 2 SE lower)" if e.z > -2 else "dropped (≥ 2 SE lower)"
    if direction * e.z >= 2:
        return "reproduced"
    if direction * e.z <= -2:
        return "reversed (≥ 2 SE against the paper)"
    return "not reproduced (< 2 SE)"
