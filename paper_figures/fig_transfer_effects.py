"""Figure: every transfer effect the paper grids measure, as paired differences with 95% CIs over
training seeds and examples (one row per grid comparison and task), plus the numbers as CSV."""

from __future__ import annotations

import math

import pandas as pd

from paper_figures.common import Context, write_rows_csv
from paper_figures.style import PALETTE, apply_style, empty_figure, save
from toolkit.grid.results import compare_arms
from toolkit.grid.spec import select_arm

# (grid, arm a, arm b, [(eval cell, group or None, what it shows)])
EFFECTS = [
    ("visual-commonsense", "name=mllm", "name=llm", [("world-colour", "vision_only", "colour, vision-only objects"),
                                                      ("world-colour", "grounded", "colour, text-grounded objects"),
                                                      ("world-size", "vision_only", "size, vision-only objects")]),
    ("language-tasks", "name=mllm", "name=llm", [("world-language-mc", None, "language tasks, 0-shot")]),
    ("instruction-tuning", "name=instruct", "name=no-instruct", [("world-captioning", None, "captioning (CIDEr)"),
                                                                  ("world-vqa", None, "VQA"), ("world-raven", None, "Raven")]),
]  # fmt: skip


def effects(ctx: Context) -> pd.DataFrame:
    rows = []
    for grid_name, a, b, evals in EFFECTS:
        grid = ctx.grid(grid_name)
        if grid is None:
            continue
        cells = grid.cells()
        for ev, group, what in evals:
            try:
                comp = compare_arms(grid, select_arm(cells, a), select_arm(cells, b), ev, group, ctx.results)
            except (ValueError, FileNotFoundError):
                continue  # not run (yet)
            rows.append({"grid": grid_name, "cells": ",".join(sorted(c.id for c in cells)), "comparison": f"{a.split('=')[1]} − {b.split('=')[1]}", "eval": ev,
                         "group": group or "all", "what": what, "effect": comp.effect, "ci_lo": comp.ci95[0],
                         "ci_hi": comp.ci95[1], "p": comp.p_value, "seeds": comp.n_seeds, "examples": comp.n_examples})  # fmt: skip
    return pd.DataFrame(rows)


def build(ctx: Context):
    apply_style()
    import matplotlib.pyplot as plt

    df = effects(ctx)
    paths = [write_rows_csv(ctx, "fig_transfer_effects", df)]
    if df.empty:
        return paths + save(
            empty_figure("no stored grid results with comparisons yet"), ctx.out, "fig_transfer_effects"
        )
    labels = [f"{r.comparison}: {r.what}" for r in df.itertuples()]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(df) + 1.2))
    y = list(range(len(df)))[::-1]
    scale = 100.0
    for yi, r in zip(y, df.itertuples()):
        colour = PALETTE["treatment"] if r.ci_lo > 0 else PALETTE["control"] if r.ci_hi < 0 else PALETTE["neutral"]
        ax.plot([r.ci_lo * scale, r.ci_hi * scale], [yi, yi], color=colour, lw=2)
        ax.plot(r.effect * scale, yi, "o", color=colour)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, labels)
    seeds = int(df["seeds"].max()) if not math.isnan(df["seeds"].max()) else 0
    ax.set_xlabel(f"paired difference (points; 95% CI over {seeds} seeds and the examples)")
    ax.set_title("Transfer effects measured on the world")
    prov = {"commit": ctx.commit, "grids": ",".join(dict.fromkeys(df["grid"])),
            "cells": ",".join(sorted({c for cs in df["cells"] for c in cs.split(",")})), "seeds": seeds}  # fmt: skip
    return paths + save(fig, ctx.out, "fig_transfer_effects", prov)
