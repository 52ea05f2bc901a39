"""GC composite distractors, few-shot episodes and labelled / unlabelled splits: seeded and reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from consistentzoo.data import CompositeSampler, few_shot_episodes, labelled_split


def test_composite_single_label_distractors_from_other_classes() -> None:
    y = np.repeat(np.arange(4), 5)
    s = CompositeSampler(y, seed=1)
    draws = s.epoch(0)
    assert len(draws) == 20 and {d.quadrant for d in draws} == {0, 1, 2, 3}
    for d in draws:
        assert d.target == y[d.index] and len(d.distractors) == 3
        assert all(y[j] != d.target for j in d.distractors)
    assert draws == CompositeSampler(y, seed=1).epoch(0)  # reproducible
    assert draws != s.epoch(1)  # a new draw each epoch
    # with replacement across categories: two distractors share a class somewhere
    assert any(len({y[j] for j in d.distractors}) < 3 for d in draws)


def test_composite_category_distribution_is_uniform_over_other_classes() -> None:
    y = np.array([0] * 2 + [1] * 50 + [2] * 2 + [3] * 2)  # class size must not bias the category draw
    s = CompositeSampler(y, seed=0)
    cats = np.array([y[j] for e in range(200) for j in s.draw(0, e).distractors])
    freq = np.bincount(cats, minlength=4)[1:] / len(cats)
    assert np.all(np.abs(freq - 1 / 3) < 0.05)


def test_composite_multi_label_distractors_lack_the_drawn_category() -> None:
    rng = np.random.default_rng(0)
    hot = (rng.random((30, 5)) < 0.4).astype(np.uint8)
    hot[np.arange(30), rng.integers(0, 5, 30)] = 1
    s = CompositeSampler(hot, seed=2)
    for d in s.epoch(0):
        assert hot[d.index, d.target] == 1
        assert all(hot[j, d.target] == 0 for j in d.distractors)


def test_composite_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="two classes"):
        CompositeSampler([0, 0, 0])


@pytest.mark.parametrize("shots", [1, 5, 10])
def test_few_shot_episodes(shots) -> None:
    y = np.repeat(np.arange(3), 12)
    eps = few_shot_episodes(y, shots, seed=0)
    assert len(eps) == 20
    for e in eps:
        assert np.bincount(y[e.train]).tolist() == [shots] * 3
        assert not np.intersect1d(e.train, e.val).size and len(e.train) + len(e.val) == 36
    again = few_shot_episodes(y, shots, seed=0)
    assert all(np.array_equal(a.train, b.train) for a, b in zip(eps, again, strict=True))
    assert len({tuple(e.train) for e in eps}) > 1


def test_few_shot_rejects_bad_shots_and_small_classes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 5, 10\)"):
        few_shot_episodes([0, 1], 3)
    with pytest.raises(ValueError, match="none would be left"):
        few_shot_episodes([0] * 5 + [1] * 20, 5)


def test_labelled_split_stratified_and_seeded() -> None:
    y = np.repeat(np.arange(4), 100)
    lab, unl = labelled_split(y, 0.05, seed=7)
    assert np.bincount(y[lab]).tolist() == [5] * 4
    assert len(lab) + len(unl) == 400 and not np.intersect1d(lab, unl).size
    assert np.array_equal(lab, labelled_split(y, 0.05, seed=7)[0])
    assert not np.array_equal(lab, labelled_split(y, 0.05, seed=8)[0])
    assert np.bincount(y[labelled_split(y, 0.001)[0]]).tolist() == [1] * 4  # at least one per class
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        labelled_split(y, 1.5)
