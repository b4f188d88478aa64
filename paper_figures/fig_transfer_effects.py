"""Figure: every transfer effect the paper grids measure, as paired differences with 95% CIs over
training seeds and examples (one row per grid comparison and task), plus the numbers as CSV."""

from __future__ import annotations

import math

import pandas as pd

from paper_figures.common import Context, write_rows_csv
from paper_figures.style import PALETTE, apply_style, empty_figure, save
from toolkit.grid.results import compare_grid

# (grid, [(eval cell, group or None, what it shows)]): each grid's `compare` pairs on these
EFFECTS = [
    (
        "visual-commonsense",
        [
            ("world-colour", "vision_only", "colour, vision-only objects"),
            ("world-colour", "grounded", "colour, text-grounded objects"),
            ("world-size", "vision_only", "size, vision-only objects"),
            ("world-colour-latent", "vision_only", "colour, vision-only objects, probe of text states (latent)"),
        ],
    ),
    ("language-tasks", [("world-language-mc", None, "language tasks, 0-shot")]),
    (
        "instruction-tuning",
        [("world-captioning", None, "captioning (CIDEr)"), ("world-vqa", None, "VQA"), ("world-raven", None, "Raven")],
    ),
]


def effects(ctx: Context) -> pd.DataFrame:
    rows = []
    for grid_name, evals in EFFECTS:
        grid = ctx.grid(grid_name)
        if grid is None:
            continue
        cells = ",".join(sorted(c.id for c in grid.cells()))
        what = {(ev, group): w for ev, group, w in evals}
        for c in compare_grid(grid, ctx.results, [(ev, group) for ev, group, _ in evals]):
            if c.comparison is None:
                continue  # not run (yet)
            comp = c.comparison
            rows.append(
                {
                    "grid": grid_name,
                    "cells": cells,
                    "comparison": f"{c.a.split('=')[1]} − {c.b.split('=')[1]}",
                    "eval": c.eval,
                    "group": c.group or "all",
                    "what": what[(c.eval, c.group)],
                    **comp.columns(),
                }
            )
    real = ctx.real_pairs()
    for r in real.itertuples() if not real.empty else ():
        rows.append(
            {
                "grid": r.grid,
                "cells": "",
                "comparison": f"{r.pair}: VLM − base LLM",
                "eval": r.task,
                "group": "all",
                "what": f"{r.task} (real, {r.phrasings} phrasings)",
                "effect": r.effect,
                "ci_lo": r.ci_lo,
                "ci_hi": r.ci_hi,
                "p": r.p,
                "seeds": 0,  # no training seeds: examples x phrasings
                "examples": r.examples,
            }
        )
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
    xlabel = (
        f"paired difference (points; 95% CI over {seeds} seeds and the examples"
        if seeds
        else "paired difference (points; 95% CI"
    )
    if (df["seeds"] == 0).any():
        xlabel += "; real pairs: over examples and phrasings" if seeds else " over examples and phrasings"
    ax.set_xlabel(xlabel + ")")
    ax.set_title(
        "Transfer effects measured on the world" + (" and real model pairs" if (df["seeds"] == 0).any() else "")
    )
    prov = {
        "commit": ctx.commit,
        "grids": ",".join(dict.fromkeys(df["grid"])),
        "cells": ",".join(sorted({c for cs in df["cells"] for c in cs.split(",") if c})),
        "seeds": seeds,
    }
    return paths + save(fig, ctx.out, "fig_transfer_effects", prov)
