"""The gate: is a candidate version worse than the stable one, on the same labelled images, beyond noise?

Both versions classify the same holdout through the server (the batch
tool's reading, polarity and requests, `/versions/N` over REST), so each
image gives a pair of answers. The metrics are accuracy and each class's
recall (the share of its images classified as it), since a model can keep
its accuracy while failing one class.

A drop is refused only when it is both larger than a stated margin and
unlikely to be noise. Noise is judged with McNemar's exact test, the paired
test for two classifiers on the same images: only the images where exactly
one of them is right carry information, and if the two were equally good
each of those would be equally likely to favour either, so the count the
baseline wins is Binomial(discordant, 1/2). A paired test is far more
sensitive than comparing two accuracies as if from different images,
because most images are answered alike by both. With 2,000 images a 0.5%
drop is 10 images net, well within what chance gives when a few dozen
images differ, and the test says so. The accuracy test and one test per
class are corrected together with Holm's method, so the chance that an
equally good candidate is refused stays at most `alpha`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile

import numpy as np

from tf_mlp import batch, client
from tf_mlp.errors import RolloutError


@dataclasses.dataclass(frozen=True)
class Criteria:
    accuracy_margin: float = 0.005
    """Refuse a candidate whose accuracy is lower by more than this (and significantly)."""
    recall_margin: float = 0.02
    """Refuse a candidate whose recall of any one class is lower by more than this (and significantly)."""
    alpha: float = 0.05
    """Significance level of the family of tests (accuracy and every class), Holm-corrected."""

    def __post_init__(self):
        if not 0 <= self.accuracy_margin < 1 or not 0 <= self.recall_margin < 1:
            raise RolloutError("the margins are fractions in [0, 1), e.g. 0.005 for half a percentage point")
        if not 0 < self.alpha < 1:
            raise RolloutError(f"alpha must be in (0, 1), got {self.alpha}")


@dataclasses.dataclass
class Answers:
    """One version's answers on the holdout: predicted class per image (-1 where the request failed)."""

    version: int
    class_names: tuple
    predicted: np.ndarray
    labels: np.ndarray
    """True class per image (-1 where the holdout has none)."""
    errors: list


def mcnemar_exact(baseline_only: int, candidate_only: int) -> float:
    """Two-sided exact McNemar p-value: 2 * P(X <= min) for X ~ Binomial(discordant, 1/2), at most 1.

    Computed in exact integers (term by term, C(n, i+1) = C(n, i) * (n - i) / (i + 1)): with 10,000 images
    a p-value below 1e-300 is still right, where floating-point binomial tails lose it.
    """
    total = baseline_only + candidate_only
    if total == 0:
        return 1.0
    term, tail = 1, 1
    for index in range(min(baseline_only, candidate_only)):
        term = term * (total - index) // (index + 1)
        tail += term
    return min(1.0, 2 * tail / 2**total)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def evaluate(rest_target, model: str, version: int, inputs: batch.InputSource, *, timeout: float,
             progress: bool) -> Answers:
    """`version`'s answers on `inputs`, asked of the server by the batch tool (REST, /versions/N)."""
    with tempfile.TemporaryDirectory(prefix="tf-mlp-gate-") as work:
        output = pathlib.Path(work) / f"version-{version}.csv"
        retry = client.RetryPolicy(max_attempts=8, max_elapsed=60.0)
        with client.connect(rest_target, model=model, version=version, timeout=timeout, retry=retry,
                            max_connections=batch.DEFAULT_CONCURRENCY, preferred_label=None) as connection:
            batch.run_batch(connection, inputs, output, progress=progress, restart=True)
            names = connection.class_names() or ()
        rows = batch.read_rows(output)
    predicted = np.array([-1 if row["error"] else row["class_id"] for row in rows], dtype=np.int64)
    labels = np.array([-1 if row["label"] is None else row["label"] for row in rows], dtype=np.int64)
    errors = [f"{row['id']}: {row['error']}" for row in rows if row["error"]]
    return Answers(version, tuple(names), predicted, labels, errors)


def judge(baseline: Answers, candidate: Answers, criteria: Criteria) -> dict:
    """The comparison and the verdict, as the report's JSON holds them (see tf_mlp.rollout.report)."""
    for answers in (baseline, candidate):
        if answers.errors:
            raise RolloutError(f"version {answers.version} failed on {len(answers.errors)} holdout images, so the "
                               f"gate cannot judge it (first: {answers.errors[0]})")
    if baseline.class_names != candidate.class_names:
        raise RolloutError(f"versions {baseline.version} and {candidate.version} name different classes "
                           f"({', '.join(baseline.class_names)} / {', '.join(candidate.class_names)}): they cannot "
                           "be compared on one holdout")
    labelled = baseline.labels >= 0
    if not labelled.any():
        raise RolloutError("the holdout has no true labels: the gate needs labelled images")
    truth = baseline.labels[labelled]
    base_right = baseline.predicted[labelled] == truth
    cand_right = candidate.predicted[labelled] == truth
    tests = [_paired("accuracy", None, base_right, cand_right, criteria.accuracy_margin)]
    for class_id, name in enumerate(baseline.class_names):
        members = truth == class_id
        if members.any():
            tests.append(_paired("recall", (class_id, name), base_right[members], cand_right[members],
                                 criteria.recall_margin))
    for test, adjusted in zip(tests, holm([test["p_value"] for test in tests])):
        test["adjusted_p_value"] = adjusted
        test["refused"] = bool(test["drop"] > test["margin"] and adjusted < criteria.alpha)
    accuracy, classes = tests[0], tests[1:]
    reasons = [_reason(test, criteria) for test in tests if test["refused"]]
    return {
        "passed": not reasons,
        "reasons": reasons,
        "images": int(labelled.sum()),
        "changed_answers": int((baseline.predicted[labelled] != candidate.predicted[labelled]).sum()),
        "accuracy": accuracy,
        "classes": classes,
    }


def _paired(metric: str, which, base_right: np.ndarray, cand_right: np.ndarray, margin: float) -> dict:
    baseline_only = int((base_right & ~cand_right).sum())
    candidate_only = int((cand_right & ~base_right).sum())
    base, cand = float(base_right.mean()), float(cand_right.mean())
    test = {"metric": metric, "images": int(base_right.size), "baseline": base, "candidate": cand,
            "drop": base - cand, "margin": margin, "baseline_only_right": baseline_only,
            "candidate_only_right": candidate_only, "p_value": mcnemar_exact(baseline_only, candidate_only)}
    if which is not None:
        test["class_id"], test["class_name"] = which
    return test


def _reason(test: dict, criteria: Criteria) -> str:
    what = "accuracy" if test["metric"] == "accuracy" else f"recall of class {test['class_id']} " \
                                                          f"({test['class_name']})"
    return (f"{what} {test['candidate']:.4f} against {test['baseline']:.4f}: {100 * test['drop']:.2f} points "
            f"lower (margin {100 * test['margin']:.2f}), adjusted p = {test['adjusted_p_value']:.2g} < "
            f"{criteria.alpha:g}")
