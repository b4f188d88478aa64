"""Calibration of the statistics by simulation: the paired comparison keeps its level when two arms are
good at different examples (seeds and examples crossed), finds a planted effect, and the intervals
cover what they claim to cover."""

import math

import numpy as np
import pandas as pd
import pytest

from paper_figures.common import ours_cell
from toolkit.grid.results import summarize
from toolkit.grid.stats import crossed_mean, paired_comparison, seed_ci

EXAMPLES = 120


def _skills(rng, n=EXAMPLES):
    """Each arm solves each example with probability 0.9 or 0.1, drawn independently per arm (equal
    expected accuracy, very different examples solved) and fixed across training seeds."""
    return np.where(rng.random(n) < 0.5, 0.9, 0.1)


def _scores(rng, skills, seeds, seed_sd=0.0):
    """(seeds, examples) 0/1 scores; `seed_sd` shifts a whole seed (training noise)."""
    p = np.clip(skills[None, :] + rng.normal(0, seed_sd, (seeds, 1)), 0, 1)
    return (rng.random((seeds, len(skills))) < p).astype(float)


def _null_pair(rng, seeds, seed_sd=0.0):
    return _scores(rng, _skills(rng), seeds, seed_sd), _scores(rng, _skills(rng), seeds, seed_sd)


def _rejection_rate(rng, seeds, sims, seed_sd=0.0, test=None):
    test = test or (lambda a, b: paired_comparison(a, b).p_value)
    return float(np.mean([test(*_null_pair(rng, seeds, seed_sd)) < 0.05 for _ in range(sims)]))


@pytest.mark.parametrize("seed_sd", [0.0, 0.03])
def test_paired_comparison_keeps_its_level_when_arms_solve_different_examples(seed_sd):
    rng = np.random.default_rng(20261202)
    rates = {seeds: _rejection_rate(rng, seeds, 1000, seed_sd) for seeds in (2, 3, 5)}
    print(f"false-positive rate at alpha 5% (seed sd {seed_sd}):", rates)
    assert all(0.02 <= r <= 0.08 for r in rates.values()), rates


def test_the_calibration_catches_a_nested_analysis_of_a_crossed_design():
    """The same simulation rejects a method that treats examples as nested in seeds (all S x E
    scores as independent draws): its level grows with the number of seeds."""

    def nested_p(a, b):
        d = (a - b).ravel()
        z = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        return float(2 * (1 - 0.5 * (1 + math.erf(abs(z) / math.sqrt(2)))))

    rng = np.random.default_rng(3)
    rates = {seeds: _rejection_rate(rng, seeds, 400, test=nested_p) for seeds in (2, 5)}
    print("nested analysis, false-positive rate:", rates)
    assert rates[2] > 0.08 and rates[5] > 0.2 and rates[5] > rates[2]


def test_a_planted_effect_is_found_and_its_interval_covers_the_truth():
    rng = np.random.default_rng(7)
    found, covered = 0, 0
    sims = 300
    for _ in range(sims):
        base = _skills(rng)
        lifted = np.clip(base + 0.25, 0, 1)  # A solves every example with 0.25 more probability (less at the cap)
        truth = float((lifted - base).mean())  # this test set's expected difference
        a, b = _scores(rng, lifted, 3, 0.02), _scores(rng, base, 3, 0.02)
        comp = paired_comparison(a, b)
        found += comp.p_value < 0.05 and comp.ci95[0] > 0
        covered += comp.ci95[0] <= truth <= comp.ci95[1]
    print(f"planted effect: found {found}/{sims}, interval covered the test set's difference {covered}/{sims}")
    assert found / sims > 0.8  # power: about 0.89 at 3 seeds x 120 examples
    assert covered / sims >= 0.93  # covers more than the test set's difference claims (it generalises over examples)
    comp = paired_comparison(a, b)
    assert comp.effect == pytest.approx(float((a - b).mean())) and comp.effect_size > 1.0
    assert comp.n_seeds == 3 and comp.n_examples == EXAMPLES


def test_paired_interval_covers_the_population_difference():
    """With examples drawn afresh from a population in which A and B are equally good on average but
    differ per example, the interval covers 0 (the population difference) 95% of the time; with a
    population difference of 0.1 it covers 0.1 as often."""
    rng = np.random.default_rng(11)
    for shift in (0.0, 0.1):
        covered = 0
        for _ in range(600):
            a_skill = rng.beta(2, 2, EXAMPLES)
            b_skill = np.clip(rng.beta(2, 2, EXAMPLES) - shift, 0, 1)
            truth = 0.5 - float(np.clip(rng.beta(2, 2, 200_000) - shift, 0, 1).mean()) if shift else 0.0
            a, b = _scores(rng, a_skill, 2, 0.03), _scores(rng, b_skill, 2, 0.03)
            lo, hi = paired_comparison(a, b).ci95
            covered += lo <= truth <= hi
        assert 0.92 <= covered / 600 <= 0.98, (shift, covered)


def test_crossed_variance_components_and_degenerate_tables():
    rng = np.random.default_rng(0)
    seed_fx, example_fx = rng.normal(0, 0.3, (6, 1)), rng.normal(0, 0.5, (1, 400))
    x = 1.0 + seed_fx + example_fx + rng.normal(0, 0.2, (6, 400))
    c = crossed_mean(x)
    assert c.var_example == pytest.approx(0.25, rel=0.2) and c.var_resid == pytest.approx(0.04, rel=0.1)
    assert c.var_seed == pytest.approx(float(seed_fx.var(ddof=1)), rel=0.2)
    assert 4 < c.df < 40  # the 6 seeds carry most of the variance of the mean
    # One seed: test-set noise only, the one-sample t over examples.
    one = crossed_mean(x[:1])
    assert one.df == 399 and one.se == pytest.approx(float(x[0].std(ddof=1) / math.sqrt(400)))
    # No difference at all: p = 1 and a zero-width interval; a constant difference: p = 0.
    same = paired_comparison(np.ones((2, 5)), np.ones((2, 5)))
    assert same.p_value == 1.0 and same.ci95 == (0.0, 0.0) and same.effect == 0.0
    assert paired_comparison(np.ones((2, 5)), np.zeros((2, 5))).p_value == 0.0
    with pytest.raises(ValueError, match="equal"):
        paired_comparison(np.ones((2, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        crossed_mean(np.array([[1.0, math.nan]]))


def test_seed_ci_covers_the_mean_over_seeds():
    rng = np.random.default_rng(5)
    for seeds in (2, 3, 5):
        hits = [lo <= 0.6 <= hi for _, lo, hi in (seed_ci(rng.normal(0.6, 0.05, seeds)) for _ in range(2000))]
        assert 0.93 <= np.mean(hits) <= 0.97, (seeds, np.mean(hits))
    assert math.isnan(seed_ci([0.5])[1])


def test_the_tables_per_arm_interval_covers_the_arms_expected_score_on_the_test_set():
    """The interval `xmt grid table` and the paper tables print for one arm: a t-interval over seeds
    of the per-seed scores, clipped to the metric's range. It covers the arm's expected score over
    training seeds on the evaluation set (fixed examples)."""
    rng = np.random.default_rng(9)
    skills = np.clip(rng.beta(0.6, 0.6, EXAMPLES), 0.02, 0.98)  # near 0 and 1: clipping matters
    seed_sd = 0.08
    # The expected score over training seeds on these examples (seed shift is clipped per example).
    draws = np.clip(skills[None, :] + rng.normal(0, seed_sd, (100_000 // EXAMPLES * 10, 1)), 0, 1)
    truth = float(draws.mean())
    hits = 0
    sims = 600
    for _ in range(sims):
        values = _scores(rng, skills, 3, seed_sd).mean(axis=1)
        df = pd.DataFrame(
            {"label": "arm", "eval": "task", "group": "all", "metric": "accuracy", "value": values, "seed": range(3)}
        )
        cell = ours_cell(summarize(df), "arm", "task")  # "mean [lo, hi]" in points, one decimal
        lo, hi = (float(v) / 100 for v in cell.split("[")[1].rstrip("]").split(","))
        hits += lo - 0.0005 <= truth <= hi + 0.0005
    print(f"per-arm interval coverage: {hits / sims:.3f}")
    assert 0.93 <= hits / sims <= 0.995


def test_equal_per_seed_differences_leave_the_paired_effect_size_undefined():
    """Seeds whose mean differences are equal (the same scores in another order: their float sums
    differ in the last bit) have no spread: d is undefined (NaN), not ~1e15."""
    rng = np.random.default_rng(0)
    v = rng.random(7)
    a = np.array([rng.permutation(v) for _ in range(3)])
    assert 0 < a.mean(axis=1).std(ddof=1) < 1e-12  # rounding noise only
    comp = paired_comparison(a, np.zeros_like(a))
    assert math.isnan(comp.effect_size) and comp.effect == pytest.approx(float(v.mean()))
    spread = a + np.array([[0.0], [0.01], [0.02]])  # a real spread over seeds keeps d
    assert paired_comparison(spread, np.zeros_like(a)).effect_size == pytest.approx(
        float(spread.mean(axis=1).mean() / spread.mean(axis=1).std(ddof=1))
    )


def test_csv_rounding_keeps_small_p_values():
    from toolkit.grid.results import rounded

    df = pd.DataFrame({"effect": [0.1234567891, math.nan], "p": [2.5512e-7, math.nan], "reason": ["", "x"]})
    out = rounded(df)
    assert out["effect"].iloc[0] == 0.123457 and out["p"].iloc[0] == 2.551e-7 and math.isnan(out["p"].iloc[1])
