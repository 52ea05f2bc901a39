"""Index samplers the objectives need: GC composites, few-shot episodes, labelled / unlabelled splits.

Every draw is seeded and depends only on ``(seed, epoch, index)``, so results do not change with the number of
DataLoader workers or the order in which samples are requested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FEW_SHOT_SIZES = (1, 5, 10)


def _as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim not in (1, 2) or y.shape[0] == 0:
        raise ValueError(f"labels must be [N] class indices or [N, C] multi-hot with N > 0, got shape {y.shape}")
    return y


@dataclass(frozen=True)
class CompositeDraw:
    """One GC composite: the sample, the class its map is computed for, its quadrant and 3 distractors.

    Attributes:
        index: the training sample.
        target: ground-truth class used for both maps (the drawn positive category for multi-label data).
        quadrant: where the sample goes, 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
        distractors: indices of the images for the other quadrants, in quadrant order skipping ``quadrant``.
    """

    index: int
    target: int
    quadrant: int
    distractors: tuple[int, ...]


class CompositeSampler:
    """Distractors for GC's 2x2 composites (Pillai & Pirsiavash, AAAI 2021).

    Single-label: each distractor draws a category other than ``y`` uniformly (with replacement, so two may share
    one), then an image of it uniformly. Multi-label (``[N, C]`` multi-hot): one positive category ``t`` of the
    sample is drawn, and each distractor is a uniform image that does not contain ``t``.

    Args:
        labels: ``[N]`` class indices or ``[N, C]`` multi-hot.
        num_distractors: 3 for a 2x2 grid.
        seed: base seed.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, num_distractors: int = 3, seed: int = 0):
        self.labels = _as_labels(labels)
        self.multi_label = self.labels.ndim == 2
        self.num_distractors = num_distractors
        self.seed = seed
        if self.multi_label:
            self.labels = self.labels.astype(bool)
            self.positives = [np.flatnonzero(r) for r in self.labels]
            counts = self.labels.sum(0)
            self.has_negative = counts < len(self.labels)
        else:
            self.by_class = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
            self.classes = np.array(sorted(self.by_class))
            if len(self.classes) < 2:
                raise ValueError("CompositeSampler needs images of at least two classes")

    def __len__(self) -> int:
        return len(self.labels)

    def draw(self, index: int, epoch: int = 0) -> CompositeDraw:
        """The composite of sample ``index`` at ``epoch`` (same arguments, same draw)."""
        rng = np.random.default_rng([self.seed, epoch, index])
        quadrant = int(rng.integers(4))
        if self.multi_label:
            pos = self.positives[index]
            pos = pos[self.has_negative[pos]]
            if len(pos) == 0:
                raise ValueError(f"sample {index} has no positive category absent from some other image")
            target = int(rng.choice(pos))
            picks = []
            while len(picks) < self.num_distractors:  # rejection: most images lack any one category
                j = int(rng.integers(len(self.labels)))
                if not self.labels[j, target]:
                    picks.append(j)
            return CompositeDraw(index, target, quadrant, tuple(picks))
        target = int(self.labels[index])
        others = self.classes[self.classes != target]
        cats = rng.choice(others, size=self.num_distractors, replace=True)
        picks = tuple(int(rng.choice(self.by_class[int(c)])) for c in cats)
        return CompositeDraw(index, target, quadrant, picks)

    def epoch(self, epoch: int) -> list[CompositeDraw]:
        """Draws for every sample of one epoch, in index order."""
        return [self.draw(i, epoch) for i in range(len(self))]


@dataclass(frozen=True)
class Episode:
    """A few-shot split: ``train`` holds ``shots`` indices per class, ``val`` every other index."""

    seed: int
    shots: int
    train: np.ndarray
    val: np.ndarray


def few_shot_episodes(
    labels: Sequence[int] | np.ndarray,
    shots: int,
    num_episodes: int = 20,
    seed: int = 0,
) -> list[Episode]:
    """The CGC paper's limited-data protocol: ``shots`` in {1, 5, 10} images per class, the rest for validation.

    Args:
        labels: ``[N]`` class indices.
        shots: images per class for training.
        num_episodes: episodes, each with its own seed ``(seed, e)``.
        seed: base seed.

    Returns:
        ``num_episodes`` episodes; the same arguments give the same episodes.
    """
    if shots not in FEW_SHOT_SIZES:
        raise ValueError(f"shots must be one of {FEW_SHOT_SIZES}, got {shots}")
    y = _as_labels(labels)
    if y.ndim != 1:
        raise ValueError("few_shot_episodes needs single-label [N] labels")
    classes, counts = np.unique(y, return_counts=True)
    small = classes[counts <= shots]
    if len(small):
        raise ValueError(f"classes {small[:5].tolist()} have <= {shots} images; none would be left for validation")
    out = []
    for e in range(num_episodes):
        rng = np.random.default_rng([seed, e])
        train = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in classes]))
        val = np.setdiff1d(np.arange(len(y)), train)
        out.append(Episode(e, shots, train, val))
    return out


def labelled_split(
    labels: Sequence[int] | np.ndarray,
    fraction: float = 0.01,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into labelled / unlabelled for semi-supervised CGC (e.g. 1 % of ImageNet labelled).

    Stratified: each class keeps ``round(fraction * count)`` labelled images, at least one.

    Args:
        labels: ``[N]`` class indices.
        fraction: share of each class that keeps its label, in (0, 1).
        seed: seed of the draw.

    Returns:
        ``(labelled, unlabelled)`` sorted index arrays that partition ``range(N)``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    y = _as_labels(labels)
    if y.ndim != 1:
        raise ValueError("labelled_split needs single-label [N] labels")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(len(idx), max(1, round(fraction * len(idx))))
        picked.append(rng.choice(idx, k, replace=False))
    lab = np.sort(np.concatenate(picked))
    return lab, np.setdiff1d(np.arange(len(y)), lab)
