"""Figure: the transfer phase diagram. For each lever of the transfer studies
(experiments/studies/transfer-*.yaml), MLLM − LLM at each level on vision-only categories:
expressed transfer of colour and size (asked in text: world-colour, world-size) and latent transfer
of colour (read by a linear probe fitted on grounded nouns' text states: world-colour-latent),
paired over training seeds and examples with 95% CIs. Training steps are a lever read as a curve: the chosen point's runs (transfer-point)
evaluated during training (`eval.every`), one level per evaluated step. Each level carries its
learnability gates (experiments/learnability.yaml on its two arms: `gates_pass`, `gates_failed`;
hollow markers where a gate fails), so an effect read on models that did not learn the world is
marked as such. Every compared level of every lever is a CSV row; a level without stored results
is a row with its reason and no number. The same rows as a markdown table: fig_transfer_phase.md."""

from __future__ import annotations

import math

import pandas as pd

from paper_figures.common import Context, write_rows_csv
from paper_figures.style import PALETTE, apply_style, empty_figure, save
from toolkit.files import write_atomic
from toolkit.grid.learnability import arm_gates
from toolkit.grid.results import collect, compare_grid, curve_steps, effect_text, summarize
from toolkit.grid.spec import Grid, select_arm

STEPS = "step"  # the lever key of training steps: levels are a run's evaluations during training
# (study grid, lever key in its arms, what the lever is)
LEVERS = [
    ("transfer-point", STEPS, "training steps (the same runs, evaluated during training)"),
    ("transfer-direction", "data.world_overrides.noun_first_fraction", "noun before its image (share)"),
    ("transfer-renders", "data.world_overrides.renders_per_category", "renders per category (0: a new one each time)"),
    ("transfer-templates", "data.world_overrides.caption_templates", "naming templates in captions (0: all 5)"),
    ("transfer-bridge", "data.world_overrides.vision_only_fraction", "vision-only share of categories"),
    ("transfer-plain-shapes", "data.world_overrides.generic_fraction", "pairs showing a plain coloured shape (share)"),
    ("transfer-categories", "data.world_overrides.num_categories", "categories"),
    ("transfer-text-priors", "data.world_overrides.text_attributes", "kinds and places in text"),
    ("transfer-width", "model.decoder.dim", "decoder width"),
]
KINDS = [("expressed", "world-colour"), ("expressed size", "world-size"), ("latent", "world-colour-latent")]
KIND_OF = {ev: kind for kind, ev in KINDS}
TITLES = {
    "expressed": "colour, asked in text",
    "expressed size": "size, asked in text",
    "latent": "colour, probe on text states",
}
GROUP = "vision_only"


def _level(selector: str, key: str) -> str:
    for part in selector.split(","):
        k, _, v = part.partition("=")
        if k.strip() == key:
            return v.strip()
    raise ValueError(f"compare selector '{selector}' does not name the lever {key}")


def _arm_mean(summary: pd.DataFrame | None, label: str, ev: str) -> float:
    if summary is None:
        return math.nan
    m = summary[(summary["label"] == label) & (summary["eval"] == ev) & (summary["group"] == GROUP)]
    return float(m["mean"].iloc[0]) if len(m) else math.nan


def planned_steps(grid: Grid) -> list[int]:
    """The steps at which a grid's cells are evaluated during training (every `eval.every` steps up to
    the last), as their config asks; empty when they are not."""
    cfg = grid.cells()[0].config
    every = cfg.eval.every if cfg.eval.tasks else 0
    return list(range(every, cfg.total_steps + 1, every)) if every > 0 else []


def _comparisons(grid: Grid, key: str, results):
    """(level, comparisons, the stored results they read) per level of one lever: a level per
    compared pair of arms, or for training steps a level per step the cells were (or are to be)
    evaluated at during training."""
    evals = [(ev, GROUP) for _, ev in KINDS]
    if key != STEPS:
        stored = collect(grid, results)
        by_level: dict[str, list] = {}
        for c in compare_grid(grid, results, evals):
            by_level.setdefault(_level(c.a, key), []).append(c)
        return [(level, cs, stored) for level, cs in by_level.items()]
    return [
        (str(s), compare_grid(grid, results, evals, at), collect(grid, results, at))
        for s, at in curve_steps(grid, results, planned_steps(grid))
    ]


def _gates(stored: pd.DataFrame, cells, c) -> dict:
    """Whether the level's models learned the world: the learnability gates (experiments/learnability.yaml)
    on its two arms, means over their seeds."""
    gates = arm_gates(stored, cells, [c.a, c.b])
    failed = [f"{g['name']}: {'missing' if g['value'] is None else g['value']}" for g in gates if not g["pass"]]
    return {"gates_pass": bool(gates) and not failed, "gates_failed": "; ".join(failed)}


def phase_rows(ctx: Context) -> pd.DataFrame:
    rows = []
    for name, key, what in LEVERS:
        grid = ctx.study(name)
        if grid is None:
            continue
        cells = grid.cells()
        for level, comparisons, stored in _comparisons(grid, key, ctx.results):
            summary = summarize(stored) if len(stored) else None
            for c in comparisons:
                kind = KIND_OF[c.eval]
                row = {"lever": name, "what": what, "level": level, "kind": kind, "eval": c.eval, "group": GROUP}
                if c.comparison is None:  # not run (yet)
                    rows.append({**row, "missing": c.reason})
                    continue
                a, b = select_arm(cells, c.a), select_arm(cells, c.b)
                rows.append(
                    {
                        **row,
                        "mllm": _arm_mean(summary, a, c.eval),
                        "llm": _arm_mean(summary, b, c.eval),
                        **c.comparison.columns(),
                        **_gates(stored, cells, c),
                        "cells": ",".join(sorted(cell.id for cell in cells if cell.label in (a, b))),
                        "missing": "",
                    }
                )
    return pd.DataFrame(rows)


def _effect_cell(r) -> str:
    """'MLLM vs LLM: **+effect** [lo, hi], p' in points, or 'not run'."""
    if r["missing"]:
        return "not run"
    return f"{r['mllm'] * 100:.1f} vs {r['llm'] * 100:.1f}: " + effect_text(
        r["effect"], r["ci_lo"], r["ci_hi"], float(r["p"])
    )


def phase_markdown(df: pd.DataFrame, commit: str) -> str:
    """The phase rows as one markdown table: a row per lever and level, a column per kind of transfer
    (accuracy in % of each arm on the vision-only categories; MLLM − LLM in points with its 95% CI
    and p), and whether the level's models passed the learnability gates."""
    header = ["lever", "level", "seeds", "gates (both arms)", *(TITLES[kind] for kind, _ in KINDS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    named = set()
    for (lever, level), sub in df.groupby(["lever", "level"], sort=False):
        by_kind = {r["kind"]: r for _, r in sub.iterrows()}
        done = [r for r in by_kind.values() if not r["missing"]]
        seeds, gates = "–", "–"
        if done:
            seeds = str(int(done[0]["seeds"]))
            gates = "pass" if done[0]["gates_pass"] in (True, "True") else f"fail: {done[0]['gates_failed']}"
        cells = [_effect_cell(by_kind[kind]) if kind in by_kind else "–" for kind, _ in KINDS]
        name = "" if lever in named else f"{sub.iloc[0]['what']} (`{lever}`)"  # once per lever
        named.add(lever)
        lines.append("| " + " | ".join([name, str(level), seeds, gates, *cells]) + " |")
    notes = [
        "MLLM vs LLM: accuracy (%) on the vision-only categories, means over seeds; the bold difference is in points, "
        "with its 95% CI paired over seeds and categories as crossed factors, and its p.",
        "Gates: experiments/learnability.yaml on the level's two arms (means over seeds); where one fails, the "
        "models did not learn the world and the difference is not read as transfer.",
        "Not run: no seed has finished cells of both arms at that level (the CSV's `missing` column says which).",
        f"Built by `xmt paper build` at commit {commit} from the stored results of experiments/studies/transfer-*.yaml.",
    ]
    return "\n".join(
        ["### MLLM − LLM on vision-only categories, by lever", "", *lines, "", *(f"- {n}" for n in notes), ""]
    )


def build(ctx: Context):
    apply_style()
    import matplotlib.pyplot as plt

    df = phase_rows(ctx)
    paths = [write_rows_csv(ctx, "fig_transfer_phase", df)]
    if not df.empty:
        paths.append(write_atomic(ctx.out / "fig_transfer_phase.md", phase_markdown(df, ctx.commit)))
    done = df[df["missing"] == ""] if not df.empty else df
    if done.empty:
        reason = "no study grids found" if df.empty else f"no stored results yet ({len(df)} comparisons to run)"
        return paths + save(empty_figure(f"transfer phase diagram: {reason}"), ctx.out, "fig_transfer_phase")
    levers = list(dict.fromkeys(done["lever"]))
    fig, axes = plt.subplots(len(levers), len(KINDS), figsize=(11, 1.9 * len(levers) + 0.9), squeeze=False, sharey=True)
    for i, lever in enumerate(levers):
        sub = df[df["lever"] == lever]
        levels = list(dict.fromkeys(sub["level"]))
        for j, (kind, _) in enumerate(KINDS):
            ax = axes[i][j]
            for x, level in enumerate(levels):
                r = sub[(sub["level"] == level) & (sub["kind"] == kind)]
                if r.empty or r.iloc[0]["missing"]:
                    ax.text(x, 0, "not run", ha="center", va="center", fontsize=7, color=PALETTE["neutral"])
                    continue
                r = r.iloc[0]
                colour = (
                    PALETTE["treatment"] if r.ci_lo > 0 else PALETTE["control"] if r.ci_hi < 0 else PALETTE["neutral"]
                )
                ax.errorbar(
                    x,
                    r.effect * 100,
                    yerr=[[(r.effect - r.ci_lo) * 100], [(r.ci_hi - r.effect) * 100]],
                    fmt="o",
                    color=colour,
                    mfc=colour if r.gates_pass in (True, "True") else "white",  # hollow: a gate fails here
                    capsize=3,
                )
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(range(len(levels)), levels)
            ax.set_xlim(-0.5, len(levels) - 0.5)
            ax.set_xlabel(sub.iloc[0]["what"], fontsize=8)
            if i == 0:
                ax.set_title(TITLES[kind], fontsize=9)
            if j == 0:
                ax.set_ylabel("points")
    fewest, most = int(done["seeds"].min()), int(done["seeds"].max())
    seeds = str(most) if fewest == most else f"{fewest}-{most}"
    fig.suptitle(
        f"MLLM − LLM on vision-only categories (95% CIs over {seeds} seeds and the categories;\n"
        "hollow: a learnability gate fails at that level, the models did not learn the world)",
        fontsize=9,
    )
    fig.tight_layout()
    prov = {
        "commit": ctx.commit,
        "grids": ",".join(levers),
        "cells": ",".join(sorted({c for cs in done["cells"] for c in cs.split(",")})),
        "seeds": seeds,
    }
    return paths + save(fig, ctx.out, "fig_transfer_phase", prov)
