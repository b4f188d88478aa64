"""What every artifact shares: the paper's numbers, the build context, table writers, provenance."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from toolkit.grid.results import collect, compare_arms, summarize
from toolkit.grid.spec import Grid, load_grid, select_arm

REFERENCE = Path(__file__).parent / "reference" / "kosmos1_tables.yaml"


def paper_table(name: str) -> dict:
    return yaml.safe_load(REFERENCE.read_text())[name]


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


@dataclass
class Context:
    results: Path  # results root (the grids' directories below it)
    out: Path  # where artifacts are written
    grids_dir: Path  # the grid files (experiments/paper)
    scale: str = "tiny"
    loader: Callable[[str], Grid] | None = None  # overrides reading grids_dir (xmt reproduce's scaled grids)

    def grid(self, name: str) -> Grid | None:
        if self.loader is not None:
            return self.loader(name)
        path = self.grids_dir / f"{name}.yaml"
        return load_grid(path, self.scale) if path.is_file() else None

    @cached_property
    def commit(self) -> str:
        return git_commit()

    def frame(self, name: str) -> tuple[Grid | None, pd.DataFrame]:
        grid = self.grid(name)
        if grid is None:
            return None, pd.DataFrame()
        return grid, collect(grid, self.results)


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def ours_cell(summary: pd.DataFrame, label: str, ev: str, group: str = "all", scale: float = 100.0) -> str:
    """'mean [lo, hi]' (x scale) of one arm on one eval cell and group, from a seed summary."""
    row = summary[(summary["label"] == label) & (summary["eval"] == ev) & (summary["group"] == group)]
    if row.empty:
        return "–"
    r = row.iloc[0]
    ci = "" if math.isnan(r["ci_lo"]) else f" [{r['ci_lo'] * scale:.1f}, {r['ci_hi'] * scale:.1f}]"
    return f"{r['mean'] * scale:.1f}{ci}"


def comparison_cell(
    grid: Grid, a_sel: str, b_sel: str, ev: str, group: str | None, results: Path, scale: float = 100.0
) -> str:
    cells = grid.cells()
    try:
        comp = compare_arms(grid, select_arm(cells, a_sel), select_arm(cells, b_sel), ev, group, results)
    except (ValueError, FileNotFoundError):
        return "–"
    sign = "+" if comp.effect >= 0 else "−"
    return f"{sign}{abs(comp.effect) * scale:.1f} [{comp.ci95[0] * scale:+.1f}, {comp.ci95[1] * scale:+.1f}] p={comp.p_value:.2g}"


def write_table(ctx: Context, name: str, title: str, header: list[str], rows: list[list[str]], notes: list[str],
                provenance: dict) -> list[Path]:  # fmt: skip
    """Markdown and LaTeX versions of one table, written under temporary names; deterministic bytes."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    prov = ", ".join(f"{k}: {v}" for k, v in provenance.items())
    md = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += [""] + [f"- {n}" for n in notes] + [f"- provenance: {prov}", ""]
    esc = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("−", "$-$")  # noqa: E731
    tex = [f"% {title}", f"% provenance: {prov}", r"\begin{tabular}{" + "l" * len(header) + "}", r"\toprule",
           " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]  # fmt: skip
    tex += [" & ".join(esc(c) for c in r) + r" \\" for r in rows]
    tex += [r"\bottomrule", r"\end{tabular}", ""]
    paths = []
    for ext, text in (("md", "\n".join(md)), ("tex", "\n".join(tex))):
        final = ctx.out / f"{name}.{ext}"
        tmp = ctx.out / f"{name}.tmp.{ext}"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(final)
        paths.append(final)
    return paths


def provenance(ctx: Context, grid: Grid | None, df: pd.DataFrame) -> dict:
    if grid is None or df.empty:
        return {"commit": ctx.commit, "results": "none"}
    return {"commit": ctx.commit, "grid": f"{grid.name} ({grid.scale})", "cells": ",".join(sorted(df["cell"].unique())),
            "seeds": ",".join(str(s) for s in sorted(df["seed"].unique()))}  # fmt: skip


def summary_of(df: pd.DataFrame) -> pd.DataFrame:
    return summarize(df) if not df.empty else pd.DataFrame(columns=["label", "eval", "group", "mean", "ci_lo", "ci_hi"])
