"""Seeded splitting of loaded arrays: validation subsets and stratified hold-outs.

Each random choice draws from its own stream, ``default_rng([seed, purpose])``,
so that changing one size (say validation_size) leaves the other choices (the
test hold-out) as they were. Chosen and remaining indices are kept in source
order; training shuffles anyway, and sorted indices make splits easy to
compare across runs.
"""

from __future__ import annotations

import numpy as np

from tf_mlp.data.splits import Split

# Purposes of the random streams; the numbers are part of the reproducibility
# contract (same seed, same splits), so never renumber them.
TEST_HOLDOUT = 1
VALIDATION = 2
TRAIN_SUBSET = 3
TEST_SUBSET = 4

VALIDATION_CAP_FRACTION = 0.10
"""Without a test split, validation takes at most this share of what the test hold-out leaves."""


def random_subset(split: Split, size: int, seed: int, purpose: int) -> tuple[Split, Split]:
    """(``size`` examples chosen at random, the rest); size is capped at len(split)."""
    size = min(size, len(split))
    generator = np.random.default_rng([seed, purpose])
    chosen = np.zeros(len(split), dtype=bool)
    chosen[generator.choice(len(split), size=size, replace=False)] = True
    return split.take(np.flatnonzero(chosen)), split.take(np.flatnonzero(~chosen))


def stratified_holdout(split: Split, fraction: float, seed: int, purpose: int = TEST_HOLDOUT) -> tuple[Split, Split]:
    """(held-out ``fraction`` of every class, the rest).

    round(N * fraction) examples in all; each class gives its share, with the
    leftover examples of the rounding going to the classes with the largest
    remainders (largest-remainder apportionment), so class proportions in the
    hold-out match the source as closely as whole examples allow.
    """
    generator = np.random.default_rng([seed, purpose])
    classes, counts = np.unique(split.labels, return_counts=True)
    exact = counts * fraction
    quotas = np.floor(exact).astype(int)
    leftover = int(round(len(split) * fraction)) - int(quotas.sum())
    # Stable sort: ties go to the lower class id, deterministically.
    for position in np.argsort(-(exact - quotas), kind="stable")[: max(leftover, 0)]:
        quotas[position] += 1
    held = np.zeros(len(split), dtype=bool)
    for label, quota in zip(classes, quotas):
        members = np.flatnonzero(split.labels == label)
        held[generator.choice(members, size=int(quota), replace=False)] = True
    return split.take(np.flatnonzero(held)), split.take(np.flatnonzero(~held))


def capped_validation_size(validation_size: int, remaining: int) -> int:
    """min(validation_size, 10% of ``remaining``): a small single-file source
    (the 8,000-image notMNIST sample) must not lose most of its training data
    to a validation size chosen for Fashion-MNIST's 60,000."""
    return min(validation_size, int(remaining * VALIDATION_CAP_FRACTION))
