"""Statistics across training seeds: per-arm means with 95% CIs, and paired comparisons of arms.

A paired comparison uses the structure of the experiment: both arms are trained with the same seeds
and scored on the same examples. The hierarchical bootstrap resamples seeds, then examples within
the drawn seeds, identically for both arms, so the interval reflects training noise and test-set
noise together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def seed_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval over per-seed values (NaN interval for a single seed)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


@dataclass
class Comparison:
    effect: float  # mean score of A minus B
    ci95: tuple[float, float]
    p_value: float  # two-sided, from the bootstrap distribution
    effect_size: float  # mean / sd of the per-seed differences (paired d); NaN with one seed
    n_seeds: int
    n_examples: int

    def describe(self, a: str, b: str, task: str = "") -> str:
        where = f" on {task}" if task else ""
        return (f"{a} - {b}{where} = {self.effect:+.4f} [{self.ci95[0]:+.4f}, {self.ci95[1]:+.4f}], "
                f"p = {self.p_value:.3g}, d = {self.effect_size:.2f} ({self.n_seeds} seeds x {self.n_examples} examples)")  # fmt: skip


def paired_comparison(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> Comparison:
    """`a`, `b`: (seeds, examples) per-example scores of two arms, rows paired by training seed and
    columns by example."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired scores need equal (seeds, examples) shapes, got {a.shape} and {b.shape}")
    diff = a - b  # (S, E)
    observed = float(diff.mean())
    S, E = diff.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, S, size=(n_boot, S))
    examples = rng.integers(0, E, size=(n_boot, S, E))
    boot = diff[seeds[..., None], examples].mean(axis=(1, 2))  # (n_boot,)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    centred = boot - boot.mean()
    p = float((np.abs(centred) >= abs(observed)).mean())
    per_seed = diff.mean(axis=1)
    d = float(per_seed.mean() / per_seed.std(ddof=1)) if S > 1 and per_seed.std(ddof=1) > 0 else math.nan
    return Comparison(observed, (float(lo), float(hi)), max(p, 1.0 / n_boot), d, S, E)
