"""Figure: few-shot curves (score against the number of demonstrations k) for world captioning and
VQA, with the ablated-demo controls (text-only demos, shuffled and blank demo images); mean and
95% CI over training seeds. Reads the few-shot grid's stored results."""

from __future__ import annotations

import pandas as pd

from paper_figures.common import Context, provenance, write_rows_csv
from paper_figures.style import ABLATION_COLOURS, apply_style, empty_figure, save
from toolkit.grid.stats import seed_ci

GRID = "few-shot"
TASKS = (("world-captioning", "captioning (CIDEr x100)"), ("world-vqa", "VQA accuracy (%)"))
ABLATION_NAMES = {
    "none": "demos as given",
    "text": "text-only demos",
    "shuffle": "shuffled demo images",
    "blank": "blank demo images",
}


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and t-interval over seeds per task, control and k, from the grid's collected results."""
    if df.empty:
        return pd.DataFrame()
    df = df[(df["group"] == "all") & df["task"].isin([t for t, _ in TASKS])]
    rows = []
    zero = df[df["shots"] == 0]
    for (task, ablation, k), sub in df[df["shots"] > 0].groupby(["task", "ablation", "shots"]):
        mean, lo, hi = seed_ci(sub["value"].to_numpy())
        rows.append(
            {
                "task": task,
                "ablation": ablation,
                "shots": int(k),
                "mean": mean,
                "ci_lo": lo,
                "ci_hi": hi,
                "seeds": len(sub),
            }
        )
    for task, sub in zero.groupby("task"):
        mean, lo, hi = seed_ci(sub["value"].to_numpy())
        for ablation in df["ablation"].unique():  # k = 0 is the same point for every control
            rows.append(
                {
                    "task": task,
                    "ablation": ablation,
                    "shots": 0,
                    "mean": mean,
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "seeds": len(sub),
                }
            )
    return pd.DataFrame(rows).sort_values(["task", "ablation", "shots"]).reset_index(drop=True)


def build(ctx: Context):
    apply_style()
    import matplotlib.pyplot as plt

    grid, raw = ctx.frame(GRID)
    df = curves(raw)
    paths = [write_rows_csv(ctx, "fig_few_shot", df)]
    if df.empty:
        return paths + save(empty_figure(f"no stored results for grid '{GRID}' yet"), ctx.out, "fig_few_shot")
    fig, axes = plt.subplots(1, len(TASKS), figsize=(5 * len(TASKS), 3.4), squeeze=False)
    for ax, (task, ylabel) in zip(axes[0], TASKS):
        sub = df[df["task"] == task]
        for ablation, line in sub.groupby("ablation", sort=False):
            colour = ABLATION_COLOURS.get(ablation, "grey")
            ax.plot(
                line["shots"],
                100 * line["mean"],
                marker="o",
                color=colour,
                label=ABLATION_NAMES.get(ablation, ablation),
            )
            if line["ci_lo"].notna().all():  # scores are >= 0: the band is clipped there
                lo = (100 * line["ci_lo"]).clip(lower=0)
                ax.fill_between(line["shots"], lo, 100 * line["ci_hi"], color=colour, alpha=0.12)
        ax.set_xlabel("demonstrations k")
        ax.set_ylabel(ylabel)
        ax.set_title(task)
        ax.set_xticks(sorted(sub["shots"].unique()))
    axes[0][-1].legend(loc="best", fontsize=8)
    seeds = int(df["seeds"].max())
    fig.suptitle(f"Few-shot curves with ablated-demo controls (mean, 95% t-interval over {seeds} seeds)", y=1.04)
    return paths + save(fig, ctx.out, "fig_few_shot", provenance(ctx, grid, raw))
