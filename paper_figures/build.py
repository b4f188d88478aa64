"""`xmt paper build`: every artifact from stored results."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from paper_figures.common import Context

TABLES = (
    "table02_captioning",
    "table04_vqa",
    "table06_raven",
    "table07_ocr_free",
    "table09_cot",
    "table10_classification",
    "table12_descriptions",
    "table13_language",
    "table14_instruction_tuning",
    "table16_visual_commonsense",
)
FIGURES = (
    "fig_transfer_effects",
    "fig_transfer_phase",
    "fig_few_shot",
    "fig_probing",
    "fig_attention",
    "fig_training_curves",
)
ARTIFACTS = TABLES + FIGURES


def build_all(
    results: str | os.PathLike = "results",
    out: str | os.PathLike = "paper_figures/out",
    grids_dir: str | os.PathLike | None = None,
    scale: str = "tiny",
    echo: Callable[[str], None] = print,
    loader: Callable | None = None,
    analysis: str | os.PathLike | None = None,
) -> list[Path]:
    """`loader(name) -> Grid` replaces reading experiments/paper/<name>.yaml (reproduce passes its scaled grids);
    `analysis`: the directory holding probe/ and attention/ (default: `analysis` beside the results root)."""
    grids = Path(grids_dir) if grids_dir else Path(__file__).resolve().parents[1] / "experiments" / "paper"
    analysis_dir = Path(analysis) if analysis else Path(results).resolve().parent / "analysis"
    ctx = Context(Path(results), Path(out), grids, scale, loader, analysis_dir)
    written: list[Path] = []
    for name in ARTIFACTS:
        paths = importlib.import_module(f"paper_figures.{name}").build(ctx)
        echo(f"{name}: " + ", ".join(str(p) for p in paths))
        written += paths
    return written
