"""Figure: linear-probe accuracy by layer for each attribute, per modality (text, image, cross-modal
transfer, grounded -> vision-only), against chance; from the probing study's stored CSV."""

from __future__ import annotations

import pandas as pd

from paper_figures.common import Context, write_rows_csv
from paper_figures.style import apply_style, empty_figure, save


def build(ctx: Context):
    apply_style()
    import matplotlib.pyplot as plt
    import seaborn as sns

    path = ctx.analysis / "probe" / "probing.csv" if ctx.analysis else None
    if path is None or not path.is_file():
        return save(empty_figure("no probing results yet (xmt analyze probe)"), ctx.out, "fig_probing")
    df = pd.read_csv(path)
    df["series"] = df["modality"] + " (" + df["setting"] + ")"
    attributes = list(dict.fromkeys(df["attribute"]))
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.2 * len(attributes), 3.4), squeeze=False, sharey=True)
    series = list(dict.fromkeys(df["series"]))
    palette = dict(zip(series, sns.color_palette(n_colors=len(series))))
    for ax, attribute in zip(axes[0], attributes):
        sub = df[df["attribute"] == attribute]
        sns.lineplot(
            data=sub,
            x="layer",
            y="accuracy",
            hue="series",
            palette=palette,
            marker="o",
            ax=ax,
            legend=False,
            errorbar=None,
        )
        chance = sub["chance"].dropna()
        if len(chance):
            ax.axhline(float(chance.iloc[0]), color="grey", ls="--", lw=1, label="chance")
        ax.set_title(attribute)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_xticks(sorted(sub["layer"].unique()))
    handles = [plt.Line2D([], [], color=palette[name], marker="o", label=name) for name in series]
    handles.append(plt.Line2D([], [], color="grey", ls="--", label="chance"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.9), fontsize=8, frameon=False)
    fig.suptitle("Linear probes by layer and modality", y=1.03)
    prov = {"commit": ctx.commit, "source": str(path)}
    return [write_rows_csv(ctx, "fig_probing", df.drop(columns="series"))] + save(fig, ctx.out, "fig_probing", prov)
