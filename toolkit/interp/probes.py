"""Linear probes (scikit-learn) with category-held-out splits, control tasks and selectivity, and
cross-modal probes (train on text-token states, test on image states, or the reverse).

Selectivity (Hewitt & Liang 2019) = probe accuracy - control-task accuracy, where the control task
gives every category a random label: a probe that memorises categories does well on the control task,
one that reads a property does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _classifier(seed: int, c: float = 1.0):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))


@dataclass
class ProbeResult:
    accuracy: float  # held-out-category accuracy
    control_accuracy: float  # the same probe on the control task
    selectivity: float  # accuracy - control_accuracy
    chance: float  # majority-class rate
    n: int
    folds: int


def control_labels(labels: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every group (category) gets one label drawn from the label distribution, at random."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(labels)
    for g in np.unique(groups):
        out[groups == g] = labels[rng.integers(len(labels))]
    return out


def _cv_accuracy(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> float:
    correct = 0
    for train, test in GroupKFold(n_splits=folds).split(x, y, groups):
        if len(np.unique(y[train])) < 2:
            correct += int((y[test] == y[train][0]).sum())
            continue
        clf = _classifier(seed).fit(x[train], y[train])
        correct += int((clf.predict(x[test]) == y[test]).sum())
    return correct / len(y)


def probe(features, labels, groups, folds: int = 5, seed: int = 0) -> ProbeResult:
    """Accuracy of a linear probe on categories it never saw (GroupKFold over `groups`), its control
    task and selectivity."""
    x, y, g = np.asarray(features, dtype=np.float64), np.asarray(labels), np.asarray(groups)
    folds = min(folds, len(np.unique(g)))
    if folds < 2:
        raise ValueError("probing needs at least two groups (categories)")
    acc = _cv_accuracy(x, y, g, folds, seed)
    control = _cv_accuracy(x, control_labels(y, g, seed), g, folds, seed)
    chance = float(np.max(np.unique(y, return_counts=True)[1]) / len(y))
    return ProbeResult(acc, control, acc - control, chance, len(y), folds)


def transfer_probe(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    """Fit on one set (e.g. text-token states, or grounded categories), score on another (image
    states, or vision-only categories)."""
    clf = _classifier(seed).fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y))
    return float((clf.predict(np.asarray(test_x, dtype=np.float64)) == np.asarray(test_y)).mean())
