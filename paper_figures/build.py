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
    require_results: bool | None = None,
) -> list[Path]:
    """`loader(name) -> Grid` replaces reading experiments/paper/<name>.yaml (reproduce passes its scaled grids);
    `analysis`: the directory holding probe/ and attention/ (default: `analysis` beside the results root).
    `require_results`: with no finished cell of any grid, True raises FileNotFoundError, False warns
    and builds (None: no check)."""
    grids = Path(grids_dir) if grids_dir else Path(__file__).resolve().parents[1] / "experiments" / "paper"
    analysis_dir = Path(analysis) if analysis else Path(results).resolve().parent / "analysis"
    ctx = Context(Path(results), Path(out), grids, scale, loader, analysis_dir)
    if require_results is not None and not finished_cells(ctx):
        message = (
            f"no finished grid cells under {results} for the grids in {grids} at scale '{scale}' (run `xmt grid "
            "run GRID --results RESULTS` or `xmt reproduce` first)"
        )
        if require_results:
            raise FileNotFoundError(message + "; --allow-empty builds the tables with the paper's rows only")
        echo(f"warning: {message}; every table holds the paper's rows only, each of ours marked missing")
    written: list[Path] = []
    for name in ARTIFACTS:
        paths = importlib.import_module(f"paper_figures.{name}").build(ctx)
        echo(f"{name}: " + ", ".join(str(p) for p in paths))
        written += paths
    return written


def finished_cells(ctx: Context) -> int:
    """Finished cells of the grids in the grids directory, at the build's scale, under the results root."""
    from toolkit.config import ConfigError
    from toolkit.grid.run import read_status, results_dir

    count = 0
    for path in sorted(ctx.grids_dir.glob("*.yaml")):
        try:
            grid = ctx.grid(path.stem)
        except ConfigError:  # a run config beside the grids (a grid's base), not a grid
            continue
        if grid is not None:
            out = results_dir(grid, ctx.results)
            count += sum(read_status(out / cell.id)["state"] == "done" for cell in grid.cells())
    return count
