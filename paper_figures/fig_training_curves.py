"""Figure: training loss per stream against step for the arms of the visual-commonsense grid (MLLM
vs the LLM on the same text), mean over seeds with the min-max band; from the runs' metrics.jsonl."""

from __future__ import annotations

import json

import pandas as pd

from paper_figures.common import Context, write_rows_csv
from paper_figures.style import PALETTE, apply_style, empty_figure, save
from toolkit.grid.run import read_status, results_dir

GRID = "visual-commonsense"
ARM_COLOURS = {"mllm": PALETTE["treatment"], "llm": PALETTE["control"]}


def losses(ctx: Context) -> pd.DataFrame:
    grid = ctx.grid(GRID)
    if grid is None:
        return pd.DataFrame()
    out = results_dir(grid, ctx.results)
    rows = []
    for cell in grid.cells():
        metrics = out / cell.id / "run" / "metrics.jsonl"
        if read_status(out / cell.id)["state"] != "done" or not metrics.is_file():
            continue
        arm = str(cell.overrides.get("name", cell.label))
        for line in metrics.read_text().splitlines():
            record = json.loads(line)
            for key, value in record.items():
                if key.startswith("loss/"):
                    rows.append(
                        {
                            "arm": arm,
                            "seed": cell.seed,
                            "cell": cell.id,
                            "step": record["step"],
                            "stream": key[5:],
                            "loss": value,
                        }
                    )
    return pd.DataFrame(rows)


def build(ctx: Context):
    apply_style()
    import matplotlib.pyplot as plt

    df = losses(ctx)
    if df.empty:
        return save(empty_figure(f"no finished runs of grid '{GRID}' yet"), ctx.out, "fig_training_curves")
    summary = df.groupby(["arm", "stream", "step"])["loss"].agg(["mean", "min", "max", "count"]).reset_index()
    streams = list(dict.fromkeys(summary["stream"]))
    fig, axes = plt.subplots(1, len(streams), figsize=(3.6 * len(streams), 3.2), squeeze=False, sharey=True)
    for ax, stream in zip(axes[0], streams):
        for arm, line in summary[summary["stream"] == stream].groupby("arm"):
            colour = ARM_COLOURS.get(arm, "grey")
            ax.plot(line["step"], line["mean"], color=colour, label=arm)
            ax.fill_between(line["step"], line["min"], line["max"], color=colour, alpha=0.2)
        ax.set_title(f"{stream} stream")
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("training loss (token mean)")
    axes[0][0].legend()
    fig.suptitle(f"Training curves, mean and min-max over {df['seed'].nunique()} seeds", y=1.04)
    prov = {
        "commit": ctx.commit,
        "grid": GRID,
        "cells": ",".join(sorted(df["cell"].unique())),
        "seeds": ",".join(str(s) for s in sorted(df["seed"].unique())),
    }
    return [write_rows_csv(ctx, "fig_training_curves", summary)] + save(fig, ctx.out, "fig_training_curves", prov)
