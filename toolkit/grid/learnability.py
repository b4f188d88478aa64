"""Learnability: what a model has learned of each fact family through each channel, and the gates a
study's models must pass before any transfer effect is read.

Both are declared as data in `experiments/learnability.yaml`. A run's report reads its evaluation
results (`eval/` and, for curves, `eval/step-N/`); a gate reads a grid's stored results and takes
the mean over training seeds of one arm.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from toolkit.config import ConfigError, from_dict, read_yaml
from toolkit.files import read_json
from toolkit.grid.results import collect
from toolkit.grid.spec import Grid, select_arm

DEFAULT = Path(__file__).resolve().parents[2] / "experiments" / "learnability.yaml"


@dataclass
class Family:
    family: str  # the fact family (colour, noun, VQA, language, ...)
    channel: str  # how it is asked: from the image, or in text
    task: str  # the world task whose results measure it
    groups: list[str] = field(default_factory=lambda: ["all"])  # result groups to report


@dataclass
class Gate:
    name: str
    grid: str  # a grid of experiments/paper (its name)
    arm: str  # arm selector, e.g. name=mllm
    task: str  # eval cell (zero-shot: the task name)
    group: str  # result group ("all" for the whole task)
    threshold: float  # the mean over seeds must reach it


@dataclass
class Learnability:
    families: list[Family] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)


def load_learnability(path: str | os.PathLike = DEFAULT) -> Learnability:
    return from_dict(Learnability, read_yaml(path), prefix=str(path))


def _eval_dirs(run_dir: Path) -> list[tuple[int | None, Path]]:
    """(step, directory) of a run's evaluations during training, then its final one (step None: read
    from the results)."""
    steps = sorted((int(p.name.removeprefix("step-")), p) for p in (run_dir / "eval").glob("step-*") if p.is_dir())
    return [*steps, (None, run_dir / "eval")]


def run_report(run_dir: str | os.PathLike, spec: Learnability | None = None) -> pd.DataFrame:
    """One row per (step, family, channel, group) that the run's results hold: columns step, family,
    channel, task, group, value, n. Evaluations during training give curves."""
    spec = spec or load_learnability()
    run_dir = Path(run_dir)
    rows = []
    for step, directory in _eval_dirs(run_dir):
        for fam in spec.families:
            path = directory / f"{fam.task}.json"
            if not path.is_file():
                continue
            result = read_json(path)
            for group in fam.groups:
                g = {"value": result["value"], "n": result["n"]} if group == "all" else result["groups"].get(group)
                if g is None:
                    continue
                rows.append(
                    {
                        "step": result.get("step") if step is None else step,
                        "family": fam.family,
                        "channel": fam.channel,
                        "task": fam.task,
                        "group": group,
                        "value": g["value"],
                        "n": g["n"],
                    }
                )
    columns = ["step", "family", "channel", "task", "group", "value", "n"]
    return pd.DataFrame(rows, columns=columns).drop_duplicates(["step", "family", "channel", "task", "group"])


def _arm_rows(df: pd.DataFrame, label: str, task: str, group: str) -> pd.DataFrame:
    """One arm's results of one eval cell and group, a row per seed."""
    if df.empty:
        return df
    return df[(df["label"] == label) & (df["eval"] == task) & (df["group"] == group)]


def grid_learnability(
    grid: Grid, results: str | os.PathLike | None, spec: Learnability | None = None, step: int | None = None
) -> pd.DataFrame:
    """One row per (arm, family, channel, group) of a grid's stored results (with `step`, its cells'
    evaluations during training at that step): the mean over training seeds and their number. An
    arm is its `name` when the grid names each arm differently, else its label."""
    spec = spec or load_learnability()
    df = collect(grid, results, step)
    columns = ["arm", "family", "channel", "task", "group", "value", "seeds"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    names = {c.label: c.overrides.get("name", c.label) for c in grid.cells()}
    if len(set(names.values())) < len(names):  # e.g. a study's levels: each name is several arms
        names = {label: label for label in names}
    rows = []
    for label in sorted(df["label"].unique(), key=list(names).index):
        for fam in spec.families:
            for group in fam.groups:
                sub = _arm_rows(df, label, fam.task, group)
                if len(sub):
                    rows.append(
                        {
                            "arm": names[label],
                            "family": fam.family,
                            "channel": fam.channel,
                            "task": fam.task,
                            "group": group,
                            "value": round(float(sub["value"].mean()), 4),
                            "seeds": int(sub["seed"].nunique()),
                        }
                    )
    return pd.DataFrame(rows, columns=columns)


def _gate_row(gate: Gate, rows: pd.DataFrame) -> dict:
    value = float(rows["value"].mean()) if len(rows) else None
    return {
        "name": gate.name,
        "value": None if value is None or math.isnan(value) else round(value, 4),
        "threshold": gate.threshold,
        "pass": value is not None and value >= gate.threshold,
        "seeds": int(rows["seed"].nunique()) if len(rows) else 0,
    }


def gate_results(
    grids: dict[str, Grid], results: str | os.PathLike | None, spec: Learnability | None = None
) -> list[dict]:
    """Each gate as {name, value, threshold, pass, seeds}: the arm's mean over training seeds (value
    None and pass False when its results are not stored)."""
    spec = spec or load_learnability()
    frames: dict[str, pd.DataFrame] = {}
    out = []
    for gate in spec.gates:
        if gate.grid not in grids:
            raise ConfigError(f"gate '{gate.name}': grid '{gate.grid}' is not among {sorted(grids)}")
        grid = grids[gate.grid]
        if gate.grid not in frames:
            frames[gate.grid] = collect(grid, results)
        out.append(
            _gate_row(gate, _arm_rows(frames[gate.grid], select_arm(grid.cells(), gate.arm), gate.task, gate.group))
        )
    return out


def _settings(selector: str) -> set[str]:
    return {part.strip() for part in selector.split(",")}


def arm_gates(df: pd.DataFrame, cells: list, selectors: list[str], spec: Learnability | None = None) -> list[dict]:
    """The gates read on the arms of another grid (a study level): each gate on the arm among
    `selectors` whose settings include the gate's arm (its `name=mllm` in `name=mllm,model.decoder.dim=64`),
    from `df` (that grid's collected results, final or at a step); a gate whose arm is not among them
    is left out."""
    spec = spec or load_learnability()
    out = []
    for gate in spec.gates:
        match = [sel for sel in selectors if _settings(gate.arm) <= _settings(sel)]
        if len(match) == 1:
            out.append(_gate_row(gate, _arm_rows(df, select_arm(cells, match[0]), gate.task, gate.group)))
    return out


def format_gates(gates: list[dict]) -> str:
    lines = []
    for g in gates:
        value = "missing" if g["value"] is None else f"{g['value']:.3f}"
        verdict = "pass" if g["pass"] else "FAIL"
        lines.append(f"  {verdict:4s} {g['name']}: {value} (gate {g['threshold']:.2f}, {g['seeds']} seeds)")
    return "\n".join(lines)
