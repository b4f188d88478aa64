"""Learnability as data: a run's report per fact family and channel (curves from evaluations during
training), and the gates from a grid's stored results (means over seeds), with planted values."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.grid.learnability import gate_results, load_learnability, run_report
from toolkit.grid.spec import load_grid, select_arm

ROOT = Path(__file__).resolve().parents[1]


def _result(task, value, groups, step, n=40):
    return {
        "task": task,
        "cell": task,
        "shots": 0,
        "ablation": "none",
        "metric": "accuracy",
        "value": value,
        "n": n,
        "groups": {g: {"value": v, "n": n // 2} for g, v in groups.items()},
        "step": step,
    }


def test_every_family_and_gate_names_a_registered_task_and_a_grid():
    from toolkit.eval.tasks import TASKS

    spec = load_learnability()
    assert {f.task for f in spec.families} <= set(TASKS.names())
    for gate in spec.gates:
        grid = load_grid(ROOT / "experiments" / "paper" / f"{gate.grid}.yaml")
        assert gate.task in grid.eval_tasks(), gate  # the grid evaluates what the gate reads
        select_arm(grid.cells(), gate.arm)  # exactly one arm
        assert 0 < gate.threshold <= 1


def test_a_runs_report_has_a_row_per_family_channel_group_and_step(tmp_path):
    run = tmp_path / "run"
    for step, colour in ((100, 0.2), (200, 0.6)):
        d = run / "eval" / f"step-{step:07d}"
        d.mkdir(parents=True)
        groups = {"colour/vision_only": colour, "colour/grounded": colour + 0.1, "vision_only": 0.3, "grounded": 0.4}
        (d / "world-vqa.json").write_text(json.dumps(_result("world-vqa", 0.35, groups, step)))
    final = {"colour/vision_only": 0.9, "colour/grounded": 0.95, "vision_only": 0.5, "grounded": 0.6}
    (run / "eval" / "world-vqa.json").write_text(json.dumps(_result("world-vqa", 0.55, final, 300)))
    (run / "eval" / "world-colour.json").write_text(
        json.dumps(_result("world-colour", 0.5, {"grounded": 0.92, "vision_only": 0.08}, 300))
    )
    df = run_report(run)
    colour = df[(df["family"] == "colour") & (df["channel"] == "image") & (df["group"] == "colour/vision_only")]
    assert colour[["step", "value"]].values.tolist() == [[100, 0.2], [200, 0.6], [300, 0.9]]  # a curve
    vqa = df[(df["family"] == "VQA") & (df["group"] == "all")]
    assert vqa["value"].tolist() == [0.35, 0.35, 0.55]
    text = df[(df["channel"] == "text") & (df["family"] == "colour")].set_index("group")["value"]
    assert text.to_dict() == {"grounded": 0.92, "vision_only": 0.08}
    assert not (df["family"] == "shape").any()  # no shape questions in these results: no row
    out = CliRunner().invoke(main, ["analyze", "learnability", str(run), "--out", str(tmp_path / "out")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "out" / "learnability.csv").is_file() and "colour/vision_only" in out.output


def test_gates_are_means_over_seeds_of_the_arms_stored_results(tmp_path):
    grid = load_grid(ROOT / "experiments" / "paper" / "visual-commonsense.yaml")
    planted = {  # (arm, seed) -> (vqa colour/vision_only, vqa all, classification, text colour grounded)
        ("name=mllm", 0): (0.95, 0.7, 0.5, 0.9),
        ("name=mllm", 1): (0.89, 0.6, 0.8, 0.96),
        ("name=mllm", 2): (0.92, 0.4, 0.6, 0.93),
        ("name=llm", 0): (None, None, None, 0.8),
        ("name=llm", 1): (None, None, None, 0.82),
    }  # the LLM's seed 2 did not finish
    cells = grid.cells()
    for (sel, seed), (colour, vqa, cls, text) in planted.items():
        label = select_arm(cells, sel)
        cell = next(c for c in cells if c.label == label and c.seed == seed)
        d = tmp_path / "res" / grid.name / cell.id / "eval"
        d.mkdir(parents=True)
        (d.parent / "status.json").write_text(json.dumps({"state": "done"}))
        (d / "world-colour.json").write_text(json.dumps(_result("world-colour", text, {"grounded": text}, 9)))
        if colour is not None:
            (d / "world-vqa.json").write_text(json.dumps(_result("world-vqa", vqa, {"colour/vision_only": colour}, 9)))
            (d / "world-classification-constrained.json").write_text(
                json.dumps(_result("world-classification-constrained", cls, {}, 9))
            )
    gates = {g["name"]: g for g in gate_results({"visual-commonsense": grid}, tmp_path / "res")}
    colour = gates["MLLM, image -> colour of vision-only categories (held-out renders)"]
    assert colour["value"] == pytest.approx(0.92) and colour["pass"] and colour["seeds"] == 3
    noun = gates["MLLM, image -> noun (constrained over all categories)"]
    assert noun["value"] == pytest.approx(0.6333, abs=1e-4) and noun["pass"] and noun["threshold"] == 0.6
    assert not gates["MLLM, world VQA"]["pass"] and gates["MLLM, world VQA"]["value"] == pytest.approx(0.5667, abs=1e-4)
    llm = gates["LLM, text colour questions about grounded categories"]
    assert llm["value"] == pytest.approx(0.81) and not llm["pass"] and llm["seeds"] == 2
    assert gates["MLLM, text colour questions about grounded categories"]["pass"]
    # The same results as a report per arm, family, channel and group (xmt grid learnability).
    from toolkit.grid.learnability import grid_learnability

    rows = grid_learnability(grid, tmp_path / "res").set_index(["arm", "family", "channel", "group"])
    assert rows.loc[("mllm", "colour", "image", "colour/vision_only"), "value"] == pytest.approx(0.92)
    assert rows.loc[("mllm", "colour", "image", "colour/vision_only"), "seeds"] == 3
    assert rows.loc[("llm", "colour", "text", "grounded"), "value"] == pytest.approx(0.81)
    assert ("llm", "VQA", "image", "all") not in rows.index  # a text-only arm has no image results
    out = CliRunner().invoke(
        main,
        ["grid", "learnability", str(grid.path), "--results", str(tmp_path / "res"), "--out", str(tmp_path / "l.csv")],
    )
    assert out.exit_code == 0 and (tmp_path / "l.csv").is_file() and "colour/vision_only" in out.output


def test_a_studys_levels_stay_apart_and_each_level_has_its_gates(tmp_path):
    """A study names its arms mllm/llm at every level: the report keeps each level's arm apart (by
    label), and the gates read on one level's two arms use only that level's results."""
    from toolkit.grid.learnability import arm_gates, grid_learnability
    from toolkit.grid.results import collect

    grid = load_grid(ROOT / "experiments" / "studies" / "transfer-width.yaml")
    cells = grid.cells()
    text = {64: 0.5, 128: 0.95, 256: 0.97}  # MLLM text colour (grounded) by width; LLM 0.01 lower
    for cell in cells:
        if cell.seed != 0:
            continue
        dim = cell.overrides["model.decoder.dim"]
        value = text[dim] - (0.01 if cell.overrides["name"] == "llm" else 0.0)
        d = tmp_path / "res" / grid.name / cell.id / "eval"
        d.mkdir(parents=True)
        (d.parent / "status.json").write_text(json.dumps({"state": "done"}))
        (d / "world-colour.json").write_text(json.dumps(_result("world-colour", value, {"grounded": value}, 9)))
    rows = grid_learnability(grid, tmp_path / "res")
    grounded = rows[(rows["task"] == "world-colour") & (rows["group"] == "grounded")].set_index("arm")["value"]
    assert len(grounded) == 6 and sorted(grounded.round(2)) == [0.49, 0.5, 0.94, 0.95, 0.96, 0.97]
    df = collect(grid, tmp_path / "res")
    for dim, (a, b) in zip((64, 128, 256), grid.spec.compare):
        gates = {g["name"]: g for g in arm_gates(df, cells, [a, b])}
        assert len(gates) == 5  # four MLLM gates on a, one LLM gate on b
        mllm = gates["MLLM, text colour questions about grounded categories"]
        llm = gates["LLM, text colour questions about grounded categories"]
        assert mllm["value"] == pytest.approx(text[dim]) and llm["value"] == pytest.approx(text[dim] - 0.01)
        assert mllm["pass"] == (dim != 64) and llm["pass"] == (dim != 64)
        assert gates["MLLM, world VQA"]["value"] is None and not gates["MLLM, world VQA"]["pass"]
