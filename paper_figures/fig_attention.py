"""Figure: where the text looks in the image. Left, the share of each head's attention that text
tokens give to image tokens, by layer; right, a VQA question's last-token attention traced through
the resampler onto the picture's patches, per layer. From the attention study's stored outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from paper_figures.common import Context
from paper_figures.style import apply_style, empty_figure, save


def build(ctx: Context):
    apply_style()
    import matplotlib.pyplot as plt

    base = ctx.analysis / "attention" if ctx.analysis else None
    if base is None or not (base / "attention_mass.csv").is_file() or not (base / "attention_overlays.npz").is_file():
        return save(empty_figure("no attention results yet (xmt analyze attention)"), ctx.out, "fig_attention")
    mass = pd.read_csv(base / "attention_mass.csv").pivot(index="layer", columns="head", values="text_to_image_mass")
    data = np.load(base / "attention_overlays.npz")
    images, maps, questions = data["images"], data["maps"], data["questions"]
    rows, layers = min(len(images), 3), maps.shape[1]
    fig = plt.figure(figsize=(3.2 + 1.9 * (layers + 1), 2.0 * rows + 0.6))
    grid = fig.add_gridspec(rows, layers + 2, width_ratios=[1.6] + [1] * (layers + 1))
    ax = fig.add_subplot(grid[:, 0])
    im = ax.imshow(mass.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(mass.shape[1]), mass.columns)
    ax.set_yticks(range(mass.shape[0]), mass.index)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("text→image mass", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.12, location="bottom")
    for r in range(rows):
        ax = fig.add_subplot(grid[r, 1])
        ax.imshow(images[r])
        ax.set_title(str(questions[r])[:40], fontsize=6)
        ax.axis("off")
        h, w = images[r].shape[:2]
        for layer in range(layers):
            ax = fig.add_subplot(grid[r, layer + 2])
            ax.imshow(images[r])
            ax.imshow(maps[r, layer], cmap="magma", alpha=0.6, extent=(0, w, h, 0))
            ax.set_title(f"layer {layer}", fontsize=7)
            ax.axis("off")
    fig.suptitle("Attention from text to image")
    return save(fig, ctx.out, "fig_attention", {"commit": ctx.commit, "source": str(base)})
