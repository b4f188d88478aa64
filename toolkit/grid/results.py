"""Collect a grid's results into one DataFrame and summarise them across training seeds."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.config import ConfigError
from toolkit.eval.metrics import METRICS
from toolkit.files import read_json
from toolkit.grid.run import read_status, results_dir
from toolkit.grid.spec import Grid, select_arm
from toolkit.grid.stats import Comparison, paired_comparison, seed_ci


def eval_dir(cell_dir: Path, step: int | None = None) -> Path:
    """A cell's evaluation results: `<cell>/eval` (older layouts: inside the run); with `step`, its
    run's evaluation during training at that step (`<cell>/run/eval/step-N`, from `eval.every`)."""
    if step is not None:
        return cell_dir / "run" / "eval" / f"step-{step:07d}"
    own = cell_dir / "eval"
    return own if own.is_dir() or not (cell_dir / "run" / "eval").is_dir() else cell_dir / "run" / "eval"


def eval_steps(grid: Grid, results: str | os.PathLike | None = None) -> list[int]:
    """The training steps at which every finished cell of the grid was evaluated during training
    (`eval.every`), ascending; empty when none was."""
    out = results_dir(grid, results)
    common = None
    for cell in grid.cells():
        if read_status(out / cell.id)["state"] != "done":
            continue
        steps = {int(p.name.removeprefix("step-")) for p in (out / cell.id / "run" / "eval").glob("step-*")}
        common = steps if common is None else common & steps
    return sorted(common or ())


def collect(grid: Grid, results: str | os.PathLike | None = None, step: int | None = None) -> pd.DataFrame:
    """One row per (cell, eval cell, group): columns cell, arm, label, seed, the axis keys, task,
    eval, shots, ablation, metric, group ('all' for the whole task), value, n, step. With `step`, the
    evaluations during training at that step instead of the final ones."""
    out = results_dir(grid, results)
    rows = []
    for cell in grid.cells():
        if read_status(out / cell.id)["state"] != "done":
            continue
        for path in sorted(eval_dir(out / cell.id, step).glob("*.json")):
            r = read_json(path)
            base = {
                "cell": cell.id,
                "arm": cell.arm,
                "label": cell.label,
                "seed": cell.seed,
                **{k: v for k, v in cell.overrides.items() if k != "seed"},
                "task": r["task"],
                "eval": r["cell"],
                "shots": r["shots"],
                "ablation": r["ablation"],
                "metric": r["metric"],
                "step": r.get("step"),
            }
            rows.append({**base, "group": "all", "value": r["value"], "n": r["n"]})
            for group, g in r.get("groups", {}).items():
                rows.append({**base, "group": group, "value": g["value"], "n": g["n"]})
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval across training seeds per (arm, eval cell, group)."""
    if df.empty:
        return df
    rows = []
    for (label, ev, group), sub in df.groupby(["label", "eval", "group"], sort=True):
        mean, lo, hi = seed_ci(sub["value"].to_numpy())
        rows.append(
            {
                "label": label,
                "eval": ev,
                "group": group,
                "metric": sub["metric"].iloc[0],
                "mean": mean,
                "ci_lo": lo,
                "ci_hi": hi,
                "seeds": len(sub),
                "values": [round(v, 4) for v in sub["value"]],
            }
        )
    return pd.DataFrame(rows)


def example_scores(
    grid: Grid,
    cell_id: str,
    eval_cell: str,
    results: str | os.PathLike | None = None,
    group: str | None = None,
    step: int | None = None,
):
    """Per-example scores of one cell's eval cell (trial-averaged), keyed by example id; with `step`,
    from its evaluation during training at that step."""
    path = eval_dir(results_dir(grid, results) / cell_id, step) / f"{eval_cell}.samples.jsonl"
    if not path.is_file():
        if step is not None:
            raise ValueError(f"cell {cell_id} was not evaluated on {eval_cell} at step {step} during training")
        raise ValueError(
            f"cell {cell_id} has no results for {eval_cell} (not evaluated: an optional task whose data file was "
            "not found, or an image task for a text-only arm)"
        )
    scores: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        s = json.loads(line)
        if group is None or s.get("group") == group or group in s.get("groups", ()):
            scores.setdefault(str(s["id"]), []).append(float(s["score"]))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def compare_arms(
    grid: Grid,
    label_a: str,
    label_b: str,
    eval_cell: str,
    group: str | None = None,
    results: str | os.PathLike | None = None,
    eval_b: str | None = None,
    step: int | None = None,
) -> Comparison:
    """Paired comparison of two arms (by label) on one eval cell, over their common seeds and the
    examples every one of those cells scored (seeds and examples crossed; `toolkit.grid.stats`).

    `eval_b` compares arm a on `eval_cell` with arm b on another eval cell of the same examples
    (e.g. one arm with and without chain-of-thought: label_a == label_b). `step` compares their
    evaluations during training at that step."""
    cells = {(c.label, c.seed): c for c in grid.cells()}
    seeds = sorted({s for (lab, s) in cells if lab == label_a} & {s for (lab, s) in cells if lab == label_b})
    out = results_dir(grid, results)
    seeds = [
        s for s in seeds if all(read_status(out / cells[(lab, s)].id)["state"] == "done" for lab in (label_a, label_b))
    ]
    if not seeds:
        raise ValueError(f"no seed has finished cells for both '{label_a}' and '{label_b}'")
    a_scores = [example_scores(grid, cells[(label_a, s)].id, eval_cell, results, group, step) for s in seeds]
    b_scores = [example_scores(grid, cells[(label_b, s)].id, eval_b or eval_cell, results, group, step) for s in seeds]
    # Seeds and examples are crossed: every row must hold the same examples.
    ids = sorted(set.intersection(*(set(x) for x in a_scores + b_scores)))
    if not ids:
        raise ValueError(f"{eval_cell} and {eval_b or eval_cell} share no example ids across seeds {seeds}")
    a_rows = [[a[i] for i in ids] for a in a_scores]
    b_rows = [[b[i] for i in ids] for b in b_scores]
    return paired_comparison(np.array(a_rows), np.array(b_rows))


@dataclass
class ArmComparison:
    """One paired comparison of a grid: arm a minus arm b on an eval cell (and group)."""

    a: str  # the selectors of the two arms, as the grid's `compare` names them
    b: str
    eval: str
    group: str | None  # None: the whole eval cell
    comparison: Comparison | None  # None when it could not be made
    reason: str = ""  # why not (an arm has no results for the task, ...)

    def describe(self) -> str:
        where = self.eval + (f" [{self.group}]" if self.group else "")
        if self.comparison is None:
            return f"{self.a} vs {self.b} on {where}: not compared ({self.reason})"
        return self.comparison.describe(self.a, self.b, where)


def compare_grid(
    grid: Grid,
    results: str | os.PathLike | None = None,
    evals: list[tuple[str, str | None]] | None = None,
    step: int | None = None,
) -> list[ArmComparison]:
    """Every `compare` pair of the grid on `evals` ((eval cell, group or None) pairs; by default every
    eval cell with stored results whose metric is compared per example, whole and per group); with
    `step`, on the evaluations during training at that step."""
    if evals is None:
        df = collect(grid, results, step)
        evals = []
        for ev in sorted(df["eval"].unique()) if not df.empty else []:
            sub = df[df["eval"] == ev]
            if METRICS.get(sub["metric"].iloc[0]).paired:
                evals += [(ev, None)] + [(ev, g) for g in sorted(sub[sub["group"] != "all"]["group"].unique())]
    cells = grid.cells()
    out = []
    for a_sel, b_sel in grid.spec.compare:
        a, b = select_arm(cells, a_sel), select_arm(cells, b_sel)
        for ev, group in evals:
            try:
                comparison = compare_arms(grid, a, b, ev, group, results, step=step)
                out.append(ArmComparison(a_sel, b_sel, ev, group, comparison))
            except (ValueError, FileNotFoundError) as err:  # not run (yet), or an arm has no results for it
                out.append(ArmComparison(a_sel, b_sel, ev, group, None, str(err)))
    return out


def curve_steps(grid: Grid, results: str | os.PathLike | None = None, planned=()) -> list[tuple[int, int | None]]:
    """The points of a grid's curves over training: (step, `step` argument to read it with) for each
    step every finished cell was evaluated at during training and each of `planned`, then the run's
    last step, read from the final evaluation (None) when it was not evaluated during training."""
    cells = grid.cells()
    if not cells:
        return []
    evaluated, last = eval_steps(grid, results), cells[0].config.total_steps
    return [(s, s if s in evaluated else None if s == last else s) for s in sorted({*evaluated, *planned, last})]


def compare_curve(
    grid: Grid, results: str | os.PathLike | None = None, evals: list[tuple[str, str | None]] | None = None
) -> pd.DataFrame:
    """Every `compare` pair of the grid as a curve over training (`curve_steps`): one row per (pair,
    eval cell, group, step). Columns a, b, eval, group, step, effect, ci_lo, ci_hi, p, seeds,
    examples; a comparison that could not be made has `reason` instead."""
    rows = []
    for step, at in curve_steps(grid, results):
        for c in compare_grid(grid, results, evals, at):
            row = {"a": c.a, "b": c.b, "eval": c.eval, "group": c.group or "all", "step": step}
            if c.comparison is None:
                rows.append({**row, "reason": c.reason})
            else:
                rows.append({**row, **c.comparison.columns(), "reason": ""})
    return pd.DataFrame(rows)


def effect_text(effect: float, lo: float, hi: float, p: float) -> str:
    """A difference in points (x100) with its 95% CI and p, as the study tables write it:
    '**+4.7** [−1.3, +10.7], p 0.12'."""
    points = lambda x: f"{x * 100:+.1f}".replace("-", "−")  # noqa: E731
    return f"**{points(effect)}** [{points(lo)}, {points(hi)}], p {p:.2g}"


def _pair_name(a: str, b: str) -> str:
    """What two compared arms share (the level of a study's lever), else 'a − b'."""
    shared = [part for part in a.split(",") if part in b.split(",")]
    return ", ".join(shared) if shared else f"{a} − {b}"


def curve_markdown(curve: pd.DataFrame) -> str:
    """A compare_curve frame as a markdown table: a row per compared pair (named by what its two arms
    share) and step, a column per eval cell and group; a comparison that could not be made says why."""
    columns = list(dict.fromkeys(zip(curve["eval"], curve["group"])))
    header = ["pair", "step", "seeds", *(ev if g == "all" else f"{ev} ({g})" for ev, g in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (a, b, step), sub in curve.groupby(["a", "b", "step"], sort=False):
        by_column = {(r["eval"], r["group"]): r for _, r in sub.iterrows()}
        done = [r for r in by_column.values() if not r["reason"]]
        cells = []
        for key in columns:
            r = by_column.get(key)
            if r is None:
                cells.append("–")
            elif r["reason"]:
                cells.append(f"not compared: {r['reason']}")
            else:
                cells.append(effect_text(r["effect"], r["ci_lo"], r["ci_hi"], r["p"]))
        seeds = str(int(done[0]["seeds"])) if done else "–"
        lines.append("| " + " | ".join([_pair_name(a, b), str(step), seeds, *cells]) + " |")
    return "\n".join(lines) + "\n"


def rounded(df: pd.DataFrame) -> pd.DataFrame:
    """Numbers for a CSV that the same results write byte for byte: 6 decimals, but p-values (column
    `p`) to 4 significant digits, so a small one is not written as 0."""
    out = df.round(6)
    if "p" in df.columns:
        out["p"] = [float(f"{v:.4g}") if isinstance(v, float) and not math.isnan(v) else v for v in df["p"]]
    return out


def format_table(summary: pd.DataFrame, fmt: str = "md", pivot: str | None = None) -> str:
    """The summary as Markdown, CSV or LaTeX; `pivot` spreads one column (e.g. group) across columns."""
    if summary.empty:
        return "(no finished cells)"
    table = summary.copy()
    table["value"] = [
        f"{m:.4f}" + ("" if np.isnan(lo) else f" [{lo:.4f}, {hi:.4f}]")
        for m, lo, hi in zip(table["mean"], table["ci_lo"], table["ci_hi"])
    ]
    cols = ["label", "eval", "group", "metric", "value", "seeds"]
    table = table[cols]
    if pivot:
        if pivot not in ("label", "eval", "group", "metric"):
            raise ConfigError(f"pivot={pivot}: valid: label, eval, group, metric")
        index = [c for c in ("label", "eval", "group", "metric") if c != pivot]
        table = table.pivot_table(index=index, columns=pivot, values="value", aggfunc="first").reset_index()
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "tex":
        return table.to_latex(index=False, escape=True)
    if fmt == "md":
        header = "| " + " | ".join(map(str, table.columns)) + " |"
        lines = [header, "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
        return "\n".join(lines)
    raise ValueError(f"unknown table format '{fmt}'; valid: md, csv, tex")
