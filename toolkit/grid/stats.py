"""Statistics across training seeds: per-arm means with 95% CIs, and paired comparisons of arms.

Two kinds of interval, answering two questions:

- **An arm's interval** (`seed_ci`, printed in tables as `mean [lo, hi]`) is a t-interval over the
  per-seed scores of that arm. It covers the score the arm's training recipe gets on average over
  training seeds *on this evaluation set*: the examples are held fixed. It assumes the per-seed
  scores are independent draws (one training run per seed) and roughly normal.

- **A paired comparison** (`paired_comparison`, printed as `±effect [lo, hi] p=..`) of arms A and B
  generalises over both sources of noise: training seeds and evaluation examples. Every seed of
  every arm scores the *same* examples, so seeds and examples are crossed factors, not nested ones.
  The per-example differences d[s, e] = A[s, e] - B[s, e] (rows paired by training seed, columns by
  example) are modelled as a two-way random-effects layout without replication,

      d[s, e] = mu + seed[s] + example[e] + residual[s, e],

  with independent zero-mean effects of variances v_seed, v_example and v_resid. Then
  Var(mean d) = v_seed / S + v_example / E + v_resid / (S E). The mean squares of the two-way ANOVA
  (MS_seed with S - 1, MS_example with E - 1 and MS_resid with (S - 1)(E - 1) degrees of freedom)
  estimate those components; each component's estimate is truncated at zero, the variance of the
  mean is the resulting combination of mean squares, and its degrees of freedom are Satterthwaite's.
  The interval is mean ± t(df) * se and the p-value is two-sided, from the same t.

  Why not a bootstrap that draws examples independently inside each drawn seed: it treats the design
  as nested, divides the example variance of the difference (large whenever the two arms are good at
  different examples, which is normal) by the number of seeds, and rejects true nulls far more often
  than its level (measured: 8%, 14%, 25-30% at 2, 3, 5 seeds). And a bootstrap over 2 or 3 seeds
  cannot see training noise at all well; the t reference with Satterthwaite's degrees of freedom
  widens the interval when the seed component dominates and few seeds carry it.

  Assumptions: training seeds and examples are exchangeable draws from their populations (the
  effect generalises to new seeds and new examples like these); the effects are additive on the
  score scale (seed x example interactions go to the residual); mean differences are close enough
  to normal for a t reference (many examples, or scores that are themselves averages). With one
  seed the interval covers test-set noise only (no training-noise estimate exists); with one
  example it covers training noise only. `tests/test_stats.py` checks the level and the coverage by
  simulation, including arms that are good at different examples.

  Measured level at alpha 5% (120 examples, arms solving each example with probability 0.9 or 0.1
  independently): 4-5% at 2, 3 and 5 seeds without training noise, about 5% with a little. When
  training noise dominates (a per-seed shift of each arm's accuracy with sd 0.1-0.2, several times
  the test-set standard error), 2 seeds estimate it from one degree of freedom and the level rises
  to 10-12%; 3 seeds hold it to about 7%, 5 seeds to 5-6%. Use 3 or more seeds when the arms' seed
  to seed spread is large.

The paired effect size is the mean over the per-seed mean differences divided by their standard
deviation (a paired Cohen's d over training seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


def seed_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval over per-seed values (NaN interval for a single seed)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class CrossedMean:
    """The mean of a (seeds, examples) table with its standard error under the crossed model."""

    mean: float
    se: float
    df: float  # Satterthwaite's degrees of freedom of the variance estimate
    var_seed: float  # estimated variance components (truncated at 0)
    var_example: float
    var_resid: float

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        if self.se == 0:
            return self.mean, self.mean
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        return self.mean - half, self.mean + half

    def p_value(self) -> float:
        """Two-sided p-value of mean == 0."""
        if self.se == 0:
            return 1.0 if self.mean == 0 else 0.0
        return float(2 * stats.t.sf(abs(self.mean) / self.se, self.df))


def crossed_mean(x) -> CrossedMean:
    """Mean and standard error of a (seeds, examples) table whose rows and columns are crossed
    random factors (the two-way random-effects model in the module docstring)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"crossed_mean needs a non-empty (seeds, examples) table, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("crossed_mean: the table holds NaN or infinite scores")
    S, E = x.shape
    grand = float(x.mean())
    seed_means, example_means = x.mean(axis=1), x.mean(axis=0)
    # Mean squares with their degrees of freedom; a factor with one level contributes nothing.
    ms_seed = E * float(((seed_means - grand) ** 2).sum()) / (S - 1) if S > 1 else 0.0
    ms_example = S * float(((example_means - grand) ** 2).sum()) / (E - 1) if E > 1 else 0.0
    resid = x - seed_means[:, None] - example_means[None, :] + grand
    df_resid = (S - 1) * (E - 1)
    ms_resid = float((resid**2).sum()) / df_resid if df_resid > 0 else 0.0
    if S == 1 or E == 1:  # one factor only: the ordinary one-sample variance of the other
        n, ms, df = (E, ms_example, E - 1) if S == 1 else (S, ms_seed, S - 1)
        if n == 1:
            return CrossedMean(grand, math.nan, math.nan, math.nan, math.nan, math.nan)
        return CrossedMean(grand, math.sqrt(ms / n), df, *((0.0, ms, 0.0) if S == 1 else (ms, 0.0, 0.0)))
    var_seed = max(ms_seed - ms_resid, 0.0) / E
    var_example = max(ms_example - ms_resid, 0.0) / S
    var_resid = ms_resid
    # S E Var(mean) = E v_seed + S v_example + v_resid, as a combination of mean squares.
    terms: list[tuple[float, float]] = []  # (coefficient x mean square, its degrees of freedom)
    if ms_seed > ms_resid:
        terms.append((ms_seed, S - 1))
    if ms_example > ms_resid:
        terms.append((ms_example, E - 1))
    n_kept = len(terms)
    terms.append(((1 - n_kept) * ms_resid, df_resid))  # + v_resid, minus what each kept MS holds of it
    total = sum(t for t, _ in terms)
    if total <= 0:
        return CrossedMean(grand, 0.0, math.inf, var_seed, var_example, var_resid)
    df = total**2 / sum(t**2 / d for t, d in terms)
    return CrossedMean(grand, math.sqrt(total / (S * E)), df, var_seed, var_example, var_resid)


@dataclass
class Comparison:
    effect: float  # mean score of A minus B
    ci95: tuple[float, float]
    p_value: float  # two-sided, from the t reference of the crossed model
    effect_size: float  # mean / sd of the per-seed differences (paired d); NaN with one seed
    n_seeds: int
    n_examples: int
    se: float = math.nan  # standard error of the effect (seeds and examples crossed)
    df: float = math.nan  # its degrees of freedom

    def columns(self) -> dict:
        """The comparison as table columns: effect, ci_lo, ci_hi, p, seeds, examples."""
        return {
            "effect": self.effect,
            "ci_lo": self.ci95[0],
            "ci_hi": self.ci95[1],
            "p": self.p_value,
            "seeds": self.n_seeds,
            "examples": self.n_examples,
        }

    def describe(self, a: str, b: str, task: str = "") -> str:
        where = f" on {task}" if task else ""
        return (
            f"{a} - {b}{where} = {self.effect:+.4f} [{self.ci95[0]:+.4f}, {self.ci95[1]:+.4f}], "
            f"p = {self.p_value:.3g}, d = {self.effect_size:.2f} ({self.n_seeds} seeds x {self.n_examples} examples)"
        )


def paired_comparison(a, b, level: float = 0.95) -> Comparison:
    """`a`, `b`: (seeds, examples) per-example scores of two arms, rows paired by training seed and
    columns by example. The effect A - B with its interval and p-value over seeds and examples as
    crossed random factors (see the module docstring)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired scores need equal (seeds, examples) shapes, got {a.shape} and {b.shape}")
    diff = a - b  # (S, E)
    S, E = diff.shape
    crossed = crossed_mean(diff)
    lo, hi = crossed.interval(level) if not math.isnan(crossed.se) else (math.nan, math.nan)
    p = crossed.p_value() if not math.isnan(crossed.se) else math.nan
    per_seed = diff.mean(axis=1)
    sd = per_seed.std(ddof=1) if S > 1 else 0.0
    # equal per-seed differences (summed in another order: sd ~1e-16) leave d undefined, not huge
    noise = 1e-9 * max(1.0, float(np.abs(per_seed).max()))
    d = float(per_seed.mean() / sd) if S > 1 and sd > noise else math.nan
    return Comparison(crossed.mean, (float(lo), float(hi)), p, d, S, E, crossed.se, crossed.df)
