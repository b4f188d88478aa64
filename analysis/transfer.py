"""Transfer study: one table of every grid's arms (mean and 95% CI across seeds) and its paired
comparisons, from stored grid results."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from analysis.common import write_csv
from toolkit.grid.results import collect, compare_arms, summarize
from toolkit.grid.spec import load_grid, select_arm


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
        cells = grid.cells()
        for a_sel, b_sel in grid.spec.compare:
            a, b = select_arm(cells, a_sel), select_arm(cells, b_sel)
            for (ev, group), sub in df.groupby(["eval", "group"]):
                if sub["metric"].iloc[0] == "roc_auc":
                    continue
                try:
                    c = compare_arms(grid, a, b, ev, None if group == "all" else group, results)
                except ValueError:  # one arm has no results for this task (an image task of a text-only arm)
                    continue
                comparisons.append({"grid": grid.name, "a": a_sel, "b": b_sel, "eval": ev, "group": group, "effect": c.effect,
                                    "ci_lo": c.ci95[0], "ci_hi": c.ci95[1], "p_value": c.p_value, "effect_size": c.effect_size,
                                    "seeds": c.n_seeds, "examples": c.n_examples})  # fmt: skip
    summary = pd.concat(summaries) if summaries else pd.DataFrame()
    comp = pd.DataFrame(comparisons)
    write_csv(summary, out, "transfer_arms")
    write_csv(comp, out, "transfer_comparisons")
    return summary, comp
