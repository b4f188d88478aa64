"""Transfer study: one table of every grid's arms (mean and 95% CI across seeds) and its paired
comparisons, from stored grid results."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from analysis.common import write_csv
from toolkit.grid.results import collect, compare_grid, summarize
from toolkit.grid.spec import load_grid


def run_transfer(
    grid_files: list[str | os.PathLike], out: str | os.PathLike, results: str | None = None, scale: str = "tiny"
):
    out = Path(out)
    summaries, comparisons = [], []
    for path in grid_files:
        grid = load_grid(path, scale)
        df = collect(grid, results)
        if df.empty:
            continue
        s = summarize(df)
        s.insert(0, "grid", grid.name)
        summaries.append(s)
        for c in compare_grid(grid, results):
            if c.comparison is None:  # an arm has no results for this task (an image task of a text-only arm)
                continue
            comparisons.append(
                {
                    "grid": grid.name,
                    "a": c.a,
                    "b": c.b,
                    "eval": c.eval,
                    "group": c.group or "all",
                    "effect": c.comparison.effect,
                    "ci_lo": c.comparison.ci95[0],
                    "ci_hi": c.comparison.ci95[1],
                    "p_value": c.comparison.p_value,
                    "effect_size": c.comparison.effect_size,
                    "seeds": c.comparison.n_seeds,
                    "examples": c.comparison.n_examples,
                }
            )
    summary = pd.concat(summaries) if summaries else pd.DataFrame()
    comp = pd.DataFrame(comparisons)
    write_csv(summary, out, "transfer_arms")
    write_csv(comp, out, "transfer_comparisons")
    return summary, comp
