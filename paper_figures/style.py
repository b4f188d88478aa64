"""The look every figure shares, and writing a figure as PNG and PDF with deterministic bytes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from toolkit.files import atomic_path  # noqa: E402

# One colour per role, used by every figure: the arm with images/instructions vs its control.
PALETTE = {"treatment": "#1b6ca8", "control": "#d1495b", "neutral": "#6c757d", "chance": "#adb5bd"}
ABLATION_COLOURS = {"none": "#1b6ca8", "text": "#edae49", "shuffle": "#00798c", "blank": "#d1495b"}


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update(
        {
            "figure.dpi": 150,
            "savefig.dpi": 150,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "svg.hashsalt": "xmt",
            "pdf.fonttype": 42,
        }
    )


def save(fig, out: Path, name: str, provenance: dict | None = None) -> list[Path]:
    """`name`.png and `name`.pdf under `out`, each written to a temporary name and renamed; no
    timestamps or software versions in the files, so the same results give the same bytes. The
    provenance (commit, grid, cells, seeds or source files) goes into the PNG's Description and the
    PDF's Subject."""
    out.mkdir(parents=True, exist_ok=True)
    prov = "provenance: " + ", ".join(f"{k}: {v}" for k, v in (provenance or {}).items())
    png = {"Software": None, "Description": prov}
    pdf = {"CreationDate": None, "Producer": None, "Creator": None, "Subject": prov}
    paths = []
    for ext, metadata in (("png", png), ("pdf", pdf)):
        with atomic_path(out / f"{name}.{ext}", f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", metadata=metadata)
        paths.append(out / f"{name}.{ext}")
    plt.close(fig)
    return paths


def empty_figure(message: str, size=(6, 2.2)):
    """A figure that says why there is nothing to plot (no stored results yet)."""
    fig, ax = plt.subplots(figsize=size)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig
