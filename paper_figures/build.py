"""`xmt paper build`: every artifact from stored results."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from paper_figures.common import Context

ARTIFACTS = ("table16_visual_commonsense", "table14_instruction_tuning")


def build_all(results: str | os.PathLike = "results", out: str | os.PathLike = "paper_figures/out",
              grids_dir: str | os.PathLike | None = None, scale: str = "tiny", echo: Callable[[str], None] = print,
              loader: Callable | None = None) -> list[Path]:  # fmt: skip
    """`loader(name) -> Grid` replaces reading experiments/paper/<name>.yaml (reproduce passes its scaled grids)."""
    grids = Path(grids_dir) if grids_dir else Path(__file__).resolve().parents[1] / "experiments" / "paper"
    ctx = Context(Path(results), Path(out), grids, scale, loader)
    written: list[Path] = []
    for name in ARTIFACTS:
        paths = importlib.import_module(f"paper_figures.{name}").build(ctx)
        echo(f"{name}: " + ", ".join(str(p) for p in paths))
        written += paths
    return written
