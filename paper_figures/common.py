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

from toolkit.eval.metrics import METRICS
from toolkit.files import atomic_path, write_atomic
from toolkit.grid.results import collect, compare_arms, rounded, summarize
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
    analysis: Path | None = None  # analysis outputs (probe/, attention/), for the figures that read them

    def grid(self, name: str) -> Grid | None:
        if self.loader is not None:
            return self.loader(name)
        path = self.grids_dir / f"{name}.yaml"
        return load_grid(path, self.scale) if path.is_file() else None

    def study(self, name: str) -> Grid | None:
        """A study grid (experiments/studies/<name>.yaml, beside the paper grids), at the build's scale
        when the grid has it, else as written."""
        path = self.grids_dir.parent / "studies" / f"{name}.yaml"
        if not path.is_file():
            return None
        grid = load_grid(path)
        return load_grid(path, self.scale) if self.scale in grid.spec.scales else grid

    def real_pairs(self) -> pd.DataFrame:
        """The paired rows of every real-pairs grid (experiments/real/*.yaml, beside the paper grids)
        with results under the results root (toolkit.grid.real); empty when none ran."""
        from toolkit.grid.real import load_real_grid, real_comparisons

        grids = [load_real_grid(path) for path in sorted((self.grids_dir.parent / "real").glob("*.yaml"))]
        frames = [real_comparisons(g, self.results) for g in grids if g.results_dir(self.results).is_dir()]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @cached_property
    def commit(self) -> str:
        return git_commit()

    def frame(self, name: str) -> tuple[Grid | None, pd.DataFrame]:
        grid = self.grid(name)
        if grid is None:
            return None, pd.DataFrame()
        return grid, collect(grid, self.results)


MISSING = "missing: "


def missing(reason: str) -> str:
    """A cell whose result is not stored; `write_table` shows it as a numbered "–" with the reason in a note."""
    return MISSING + reason


def _footnote_missing(rows: list[list[str]], notes: list[str]) -> tuple[list[list[str]], list[str]]:
    reasons: dict[str, int] = {}
    out = []
    for row in rows:
        cells = []
        for cell in row:
            if cell.startswith(MISSING):
                n = reasons.setdefault(cell.removeprefix(MISSING), len(reasons) + 1)
                cell = f"– (m{n})"
            cells.append(cell)
        out.append(cells)
    return out, [*notes, *(f"m{n}: missing, {reason}" for reason, n in reasons.items())]


def ours_where(grid: Grid) -> str:
    """Where our rows come from: the tiny world as the grid file writes it, or the scale it ran at."""
    return "tiny world" if grid.scale == "tiny" else f"{grid.scale} scale"


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def ours_cell(summary: pd.DataFrame, label: str, ev: str, group: str = "all", scale: float = 100.0) -> str:
    """'mean [lo, hi]' (x scale) of one arm on one eval cell and group, from a seed summary. The
    t-interval over seeds is clipped to the metric's range (with 2 seeds it is often wider)."""
    row = summary[(summary["label"] == label) & (summary["eval"] == ev) & (summary["group"] == group)]
    if row.empty:
        where = ev if group == "all" else f"{ev} [{group}]"
        return missing(f"no stored result of arm '{label}' on {where}")
    r = row.iloc[0]
    if math.isnan(r["ci_lo"]):
        return f"{r['mean'] * scale:.1f}"
    lo = max(r["ci_lo"], 0.0)
    upper = METRICS.get(r["metric"]).upper  # None: unbounded above (CIDEr)
    hi = r["ci_hi"] if upper is None else min(r["ci_hi"], upper)
    return f"{r['mean'] * scale:.1f} [{lo * scale:.1f}, {hi * scale:.1f}]"


def comparison_cell(
    grid: Grid,
    a_sel: str | None,
    b_sel: str | None,
    ev: str,
    group: str | None,
    results: Path,
    scale: float = 100.0,
    ev_b: str | None = None,
) -> str:
    """'±effect [lo, hi] p=..' of arm a minus arm b (a selector of None: the grid's only arm)."""
    cells = grid.cells()
    arm = lambda sel: select_arm(cells, sel) if sel else only_arm(grid)  # noqa: E731
    try:
        comp = compare_arms(grid, arm(a_sel), arm(b_sel), ev, group, results, eval_b=ev_b)
    except (ValueError, FileNotFoundError) as e:  # a result the comparison needs is not stored
        return missing(str(e))
    sign = "+" if comp.effect >= 0 else "−"
    return f"{sign}{abs(comp.effect) * scale:.1f} [{comp.ci95[0] * scale:+.1f}, {comp.ci95[1] * scale:+.1f}] p={comp.p_value:.2g}"


def write_table(
    ctx: Context, name: str, title: str, header: list[str], rows: list[list[str]], notes: list[str], provenance: dict
) -> list[Path]:
    """Markdown and LaTeX versions of one table, written under temporary names; deterministic bytes."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    if any("— ours" in r[0] for r in rows):
        notes = [
            *notes,
            "Ours: an arm's [lo, hi] is the 95% t-interval over training seeds, clipped to the metric's "
            "range; a difference's is paired over seeds and examples as crossed factors (t reference; see README, Statistics).",
        ]
    rows, notes = _footnote_missing(rows, notes)
    prov = ", ".join(f"{k}: {v}" for k, v in provenance.items())
    md = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += [""] + [f"- {n}" for n in notes] + [f"- provenance: {prov}", ""]
    esc = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("−", "$-$")  # noqa: E731
    tex = [
        f"% {title}",
        f"% provenance: {prov}",
        r"\begin{tabular}{" + "l" * len(header) + "}",
        r"\toprule",
        " & ".join(esc(h) for h in header) + r" \\",
        r"\midrule",
    ]
    tex += [" & ".join(esc(c) for c in r) + r" \\" for r in rows]
    tex += [r"\bottomrule", r"\end{tabular}", ""]
    paths = []
    for ext, text in (("md", "\n".join(md)), ("tex", "\n".join(tex))):
        paths.append(write_atomic(ctx.out / f"{name}.{ext}", text))
    return paths


def provenance(ctx: Context, grid: Grid | None, df: pd.DataFrame) -> dict:
    if grid is None or df.empty:
        return {"commit": ctx.commit, "results": "none"}
    return {
        "commit": ctx.commit,
        "grid": f"{grid.name} ({grid.scale})",
        "cells": ",".join(sorted(df["cell"].unique())),
        "seeds": ",".join(str(s) for s in sorted(df["seed"].unique())),
    }


def summary_of(df: pd.DataFrame) -> pd.DataFrame:
    return summarize(df) if not df.empty else pd.DataFrame(columns=["label", "eval", "group", "mean", "ci_lo", "ci_hi"])


@dataclass(frozen=True)
class Column:
    """One of our columns: an eval cell (task name, with `-Nshot[-ablation]` for few-shot) and group."""

    header: str
    eval: str
    group: str = "all"
    scale: float = 100.0  # accuracies and CIDEr are shown x100


def only_arm(grid: Grid) -> str:
    labels = sorted({c.label for c in grid.cells()})
    return labels[0]


def paper_vs_ours(
    ctx: Context,
    name: str,
    title: str,
    paper: list[tuple[str, list[str]]],
    grid_name: str,
    arms: list[tuple[str | None, str]],
    columns: list[Column],
    notes: list[str],
    paper_diffs: list[tuple[str, str, str, str]] = (),
    compare: list[tuple[str | None, str | None, str, dict[str, tuple[str, str]] | None]] = (),
) -> list[Path]:
    """A table with the paper's rows (its real benchmarks) next to ours (the world's analogues).

    paper: [(table key, the columns of it to show)]; rows are the union of the tables' rows.
    arms: [(arm selector or None for a one-arm grid, row name)]. paper_diffs: [(table key, row a,
    row b, label)] adds a row of a − b per shown column of that table. compare: [(selector a,
    selector b, label, pairs)] adds our paired difference (over seeds and examples, crossed) per
    column: of the column's eval cell, or, with pairs {column header: (eval a, eval b)}, of those.
    """
    shown = [(key, paper_table(key), cols) for key, cols in paper]
    paper_headers = [f"{col} (T{key.removeprefix('table')})" for key, _, cols in shown for col in cols]
    header = ["Model", *paper_headers, *(c.header for c in columns)]
    ours_blank = ["–"] * len(columns)
    rows: list[list[str]] = []
    names = list(dict.fromkeys(row for _, t, _ in shown for row in t["rows"]))
    for row in names:
        values = []
        for _, table, cols in shown:
            vals = table["rows"].get(row)
            values += [fmt(vals[table["columns"].index(c)]) if vals else "–" for c in cols]
        rows.append([f"{row} — paper", *values, *ours_blank])
    for key, a, b, label in paper_diffs:
        table = paper_table(key)
        values = []
        for k, t, cols in shown:
            if k != key:
                values += ["–"] * len(cols)
                continue
            for c in cols:
                i = t["columns"].index(c)
                va, vb = table["rows"][a][i], table["rows"][b][i]
                values.append("–" if va is None or vb is None else f"{va - vb:+.1f}")
        rows.append([f"{label} — paper, difference", *values, *ours_blank])
    grid, df = ctx.frame(grid_name)
    if grid is not None and not df.empty:
        summary = summary_of(df)
        cells = grid.cells()
        n = df["seed"].nunique()
        for selector, row_name in arms:
            label = select_arm(cells, selector) if selector else only_arm(grid)
            rows.append(
                [
                    f"{row_name} — ours, {ours_where(grid)}, {n} seeds",
                    *["–"] * len(paper_headers),
                    *(ours_cell(summary, label, c.eval, c.group, c.scale) for c in columns),
                ]
            )
        for a, b, label, pairs in compare:
            cells_ = []
            for c in columns:
                group = None if c.group == "all" else c.group
                if pairs is None:
                    cells_.append(comparison_cell(grid, a, b, c.eval, group, ctx.results, c.scale))
                elif c.header in pairs:
                    ev_a, ev_b = pairs[c.header]
                    cells_.append(comparison_cell(grid, a, b, ev_a, group, ctx.results, c.scale, ev_b))
                else:
                    cells_.append("–")
            rows.append([f"{label} — ours (paired, {n} seeds)", *["–"] * len(paper_headers), *cells_])
    else:
        notes = [
            *notes,
            f"Ours: no stored results for grid '{grid_name}' yet (run `xmt grid run experiments/paper/"
            f"{grid_name}.yaml` or `xmt reproduce`).",
        ]
    return write_table(ctx, name, title, header, rows, notes, provenance(ctx, grid, df))


def write_rows_csv(ctx: Context, name: str, df: pd.DataFrame) -> Path:
    """The numbers behind a figure, as `name`.csv (rounded, so the same results give the same bytes)."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(ctx.out / f"{name}.csv", ".csv") as tmp:
        rounded(df).to_csv(tmp, index=False)
    return ctx.out / f"{name}.csv"


def few_shot_table(
    ctx: Context,
    name: str,
    title: str,
    task: str,
    paper: list[tuple[str, list[str]]],
    notes: list[str],
    shots: tuple[int, ...] = (2, 4, 8),
    control_k: int = 4,
) -> list[Path]:
    """A paper_vs_ours table of the few-shot grid for one world task: k = 0 and `shots`, the blank-demo
    control at `control_k`, and k shots − zero-shot paired over seeds and examples."""
    columns = [Column("world k=0", task)] + [Column(f"world k={k}", f"{task}-{k}shot") for k in shots]
    columns.append(Column(f"world k={control_k}, blank demo images", f"{task}-{control_k}shot-blank"))
    pairs = {f"world k={k}": (f"{task}-{k}shot", task) for k in shots}
    return paper_vs_ours(
        ctx,
        name,
        title,
        paper,
        "few-shot",
        [(None, "Kosmos-style MLLM")],
        columns,
        notes,
        compare=[(None, None, "k shots − zero-shot", pairs)],
    )
