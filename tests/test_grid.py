import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import run_dict

from toolkit.cli import main
from toolkit.grid.spec import load_grid

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / "experiments" / "paper").glob("*.yaml"))


def _grid_file(tmp_path, world, steps=3, axes=None, zip_=None, seeds=(0, 1), tasks=("world-colour",), extra=None):
    base = run_dict(world, steps=steps)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    grid = {
        "question": "test?",
        "base": "base.yaml",
        "axes": axes or {},
        "zip": zip_ or [],
        "seeds": list(seeds),
        "tasks": list(tasks),
        "eval_limit": 12,
        **(extra or {}),
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    return tmp_path / "grid.yaml"


@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_every_paper_grid_plans(path):
    result = CliRunner().invoke(main, ["grid", "plan", str(path)])
    assert result.exit_code == 0, result.output
    grid = load_grid(path)
    assert grid.spec.question.endswith("?") and grid.cells()
    for scale in grid.spec.scales:
        assert load_grid(path, scale).cells()


def test_the_half_reproduce_scale_halves_every_stage_of_every_paper_grid(tmp_path):
    """`xmt reproduce --scale half` runs each paper grid at its `half` scale: the calibrated scale's
    cells and 3 seeds, every stage at half its steps and warmup, on the reproduce's world."""
    from toolkit.commands.reproduce import SCALES, scaled_grid

    for name in SCALES["half"].grids:
        half = scaled_grid(name, SCALES["half"], tmp_path).cells()
        full = load_grid(ROOT / "experiments" / "paper" / f"{name}.yaml", "calibrated").cells()
        assert [c.overrides for c in half] == [c.overrides for c in full], name
        assert {c.overrides["seed"] for c in half} == {0, 1, 2}, name
        for cell, reference in zip(half, full):
            assert cell.config.stages, name
            for stage, ref in zip(cell.config.stages, reference.config.stages, strict=True):
                assert (stage.steps, stage.warmup) == (max(2, round(ref.steps / 2)), max(1, round(ref.warmup / 2)))
                assert (stage.lr, stage.schedule) == (ref.lr, ref.schedule)
            assert str(cell.config.data.world) == str(tmp_path / "world")


def test_reproduce_offers_exactly_its_scales():
    """`xmt reproduce --scale` lists the scales `run_reproduce` knows (the CLI names them without
    importing torch), and every grid a scale runs defines the grid scale it runs them at."""
    from toolkit.commands.reproduce import SCALES

    option = next(p for p in main.commands["reproduce"].params if p.name == "scale")
    assert list(option.type.choices) == list(SCALES)
    for scale in SCALES.values():
        for name in scale.grids:
            assert scale.grid_scale in load_grid(ROOT / "experiments" / "paper" / f"{name}.yaml").spec.scales, name


def test_unknown_grid_keys_name_the_key(tmp_path, small_world):
    path = _grid_file(tmp_path, small_world, extra={"sedes": [0]})
    result = CliRunner().invoke(main, ["grid", "plan", str(path)])
    assert result.exit_code != 0 and "unknown config key 'grid.sedes'" in result.output
    path = _grid_file(tmp_path, small_world, axes={"model.decoder.depth": [1, 2]})
    result = CliRunner().invoke(main, ["grid", "plan", str(path)])
    assert result.exit_code != 0 and "unknown config key 'model.decoder.depth'" in result.output


def test_cells_are_the_product_of_axes_zips_and_seeds(tmp_path, small_world):
    path = _grid_file(
        tmp_path,
        small_world,
        axes={"model.decoder.positions": ["xpos", "rope"]},
        zip_=[{"model.vision.kind": ["vit", "none"], "name": ["mllm", "llm"]}],
        seeds=(0, 1, 2),
    )
    cells = load_grid(path).cells()
    assert len(cells) == 2 * 2 * 3 and len({c.arm for c in cells}) == 4 and len({c.id for c in cells}) == 12
    llm = [c for c in cells if c.overrides["name"] == "llm"]
    assert all(c.config.model.vision.kind == "none" for c in llm)
    assert load_grid(path).cells()[0].id == cells[0].id  # ids are stable


@pytest.mark.slow
def test_micro_grid_runs_with_submitit_and_prints_a_table(tmp_path, small_world):
    path = _grid_file(
        tmp_path,
        small_world,
        axes={"model.decoder.positions": ["xpos", "rope"]},
        zip_=[{"model.vision.kind": ["vit", "none"], "name": ["mllm", "llm"]}],
        extra={"compare": [["name=mllm,model.decoder.positions=xpos", "name=llm,model.decoder.positions=xpos"]]},
    )
    runner = CliRunner()
    result = runner.invoke(
        main, ["grid", "run", str(path), "--executor", "submitit-local", "--results", str(tmp_path / "res")]
    )
    assert result.exit_code == 0, result.output
    assert "8/8 cells done" in result.output
    table = runner.invoke(main, ["grid", "table", str(path), "--results", str(tmp_path / "res")])
    assert table.exit_code == 0, table.output
    rows = [line for line in table.output.splitlines() if line.startswith("| ") and "world-colour" in line]
    assert len(rows) == 4 * 3  # 4 arms x (all, grounded, vision_only)
    assert all("[" in r and "| 2 |" in r for r in rows)  # mean [CI] over 2 seeds
    assert (
        "name=mllm,model.decoder.positions=xpos - name=llm,model.decoder.positions=xpos on world-colour" in table.output
    )
    status = json.loads(
        runner.invoke(main, ["grid", "status", str(path), "--results", str(tmp_path / "res"), "--json"]).output
    )
    assert {s["state"] for s in status} == {"done"}


def test_grid_table_reads_the_evaluations_during_training_at_a_step(tmp_path, small_world):
    """`grid table --step N` gives each arm's mean and the paired comparison of the cells' runs
    evaluated at step N (eval.every); a step no cell was evaluated at names the valid ones."""
    from toolkit.grid.results import collect, eval_steps

    path = _grid_file(
        tmp_path,
        small_world,
        steps=4,
        zip_=[{"model.vision.kind": ["vit", "none"], "name": ["mllm", "llm"]}],
        extra={
            "compare": [["name=mllm", "name=llm"]],
            "overrides": {"eval.every": 2, "eval.tasks": ["world-colour"], "eval.limit": 12},
        },
    )
    res = tmp_path / "res"
    runner = CliRunner()
    assert runner.invoke(main, ["grid", "run", str(path), "--results", str(res)]).exit_code == 0
    grid = load_grid(path)
    assert eval_steps(grid, res) == [2, 4]
    at2 = collect(grid, res, step=2)
    cell = grid.cells()[0]
    stored = json.loads((res / "grid" / cell.id / "run" / "eval" / "step-0000002" / "world-colour.json").read_text())
    row = at2[(at2["cell"] == cell.id) & (at2["eval"] == "world-colour") & (at2["group"] == "all")]
    assert float(row["value"].iloc[0]) == stored["value"] and stored["step"] == 2
    table = runner.invoke(main, ["grid", "table", str(path), "--results", str(res), "--step", "2", "--format", "csv"])
    assert table.exit_code == 0, table.output
    mean = at2[(at2["label"] == cell.label) & (at2["eval"] == "world-colour") & (at2["group"] == "all")]["value"].mean()
    assert f"{cell.label},world-colour,all,accuracy,{mean:.4f}" in table.output.replace('"', "")
    assert "name=mllm - name=llm on world-colour" in table.output
    bad = runner.invoke(main, ["grid", "table", str(path), "--results", str(res), "--step", "3"])
    assert bad.exit_code != 0 and "valid: 2, 4" in bad.output
    # What each arm learned at that step: the arm's mean over seeds of the same stored results.
    out = tmp_path / "learned.csv"
    learned = runner.invoke(
        main, ["grid", "learnability", str(path), "--results", str(res), "--step", "2", "--out", str(out)]
    )
    assert learned.exit_code == 0, learned.output
    rows = pd.read_csv(out)
    got = rows[(rows["arm"] == "mllm") & (rows["task"] == "world-colour") & (rows["group"] == "grounded")]
    want = at2[(at2["label"] == cell.label) & (at2["eval"] == "world-colour") & (at2["group"] == "grounded")]
    assert math.isclose(float(got["value"].iloc[0]), round(float(want["value"].mean()), 4), abs_tol=1e-9)
    # The comparison as a curve: one row per evaluated step, each the paired comparison at that step.
    from toolkit.grid.results import compare_arms
    from toolkit.grid.spec import select_arm

    curve_csv = tmp_path / "curve.csv"
    args = ["grid", "curve", str(path), "--results", str(res), "--eval", "world-colour", "--group", "grounded"]
    curve = runner.invoke(main, [*args, "--out", str(curve_csv), "--out", str(tmp_path / "curve.md")])
    assert curve.exit_code == 0, curve.output
    rows = pd.read_csv(curve_csv, keep_default_na=False)
    assert rows["step"].tolist() == [2, 4] and set(rows["group"]) == {"grounded"}
    cells = grid.cells()
    mllm, llm = select_arm(cells, "name=mllm"), select_arm(cells, "name=llm")
    # the same curve as a markdown table in points: a row per pair and step
    md = (tmp_path / "curve.md").read_text().splitlines()
    assert md[0] == "| pair | step | seeds | world-colour (grounded) |" and len(md) == 2 + 2
    points = lambda x: f"{x * 100:+.1f}".replace("-", "−")  # noqa: E731
    for r, line in zip(rows.itertuples(), md[2:]):
        want = compare_arms(grid, mllm, llm, "world-colour", "grounded", res, step=r.step)
        assert math.isclose(r.effect, want.effect, abs_tol=1e-6) and math.isclose(r.ci_lo, want.ci95[0], abs_tol=1e-6)
        effect = f"**{points(want.effect)}** [{points(want.ci95[0])}, {points(want.ci95[1])}], p {want.p_value:.2g}"
        assert line == f"| name=mllm − name=llm | {r.step} | 2 | {effect} |"
    bad = runner.invoke(main, [*args, "--out", str(tmp_path / "curve.txt")])
    assert bad.exit_code != 0 and "curve.txt: write a .csv or a .md file" in bad.output
    assert "name=mllm - name=llm" in curve.output and f"{rows['effect'].iloc[0]:+.3f}" in curve.output


def test_killed_grid_run_finishes_every_cell_exactly_once(tmp_path, small_world):
    path = _grid_file(
        tmp_path,
        small_world,
        steps=24,
        axes={"model.decoder.positions": ["xpos", "rope"]},
        seeds=(0,),
        extra={"overrides": {"checkpoint.every": 4}},
    )
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "toolkit.cli", "grid", "run", str(path), "--results", str(res)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cells = load_grid(path).cells()
    first, second = (res / "grid" / c.id for c in cells)
    deadline = time.time() + 300
    while time.time() < deadline:
        done = (first / "status.json").is_file() and json.loads((first / "status.json").read_text())["state"] == "done"
        if done and list((second / "run" / "checkpoints").glob("step-*")):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((second / "status.json").read_text())["state"] == "running"  # as the killed process left it
    # Its process is gone: status says so (the pid is checked), and the next run resumes the cell.
    status = CliRunner().invoke(main, ["grid", "status", str(path), "--results", str(res), "--json"])
    assert {r["id"]: r["state"] for r in json.loads(status.output)} == {cells[0].id: "done", cells[1].id: "interrupted"}
    before = (first / "run" / "metrics.jsonl").read_bytes(), (first / "status.json").read_bytes()
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "done, skipped" in again.stdout
    assert ((first / "run" / "metrics.jsonl").read_bytes(), (first / "status.json").read_bytes()) == before
    steps = [json.loads(line)["step"] for line in (second / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 25))
    for cell in (first, second):
        assert json.loads((cell / "status.json").read_text())["state"] == "done"
        for f in (cell / "eval").glob("*.json"):
            json.loads(f.read_text())


def test_grids_share_the_training_of_identical_cells(tmp_path, small_world):
    res = tmp_path / "res"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _grid_file(
        tmp_path / "a",
        small_world,
        zip_=[{"model.vision.kind": ["vit", "none"], "name": ["mllm", "llm"]}],
        seeds=(0,),
        tasks=("world-colour",),
    )
    second = _grid_file(tmp_path / "b", small_world, seeds=(0,), tasks=("world-size",))
    assert CliRunner().invoke(main, ["grid", "run", str(first), "--results", str(res)]).exit_code == 0
    mllm = next(c for c in load_grid(first).cells() if c.overrides["name"] == "mllm")
    trained = res / "grid" / mllm.id / "run"
    before = (trained / "metrics.jsonl").read_bytes()
    result = CliRunner().invoke(main, ["grid", "run", str(second), "--results", str(res)])
    assert result.exit_code == 0, result.output
    # both grids are named "grid" by their file name; the second writes to the same results root
    (cell,) = load_grid(second).cells()
    reused = res / "grid" / cell.id / "run"
    assert cell.id != mllm.id and reused.resolve() == trained.resolve()  # one run, two cells
    assert (reused / "metrics.jsonl").read_bytes() == before  # not trained again
    assert len(list((res / "runs").iterdir())) == 2 + 2  # mllm and llm runs, and their lock files
    assert sorted(p.name for p in (res / "grid" / mllm.id / "eval").glob("*.json")) == ["world-colour.json"]
    assert sorted(p.name for p in (res / "grid" / cell.id / "eval").glob("*.json")) == ["world-size.json"]


def test_a_run_seeded_from_a_prefix_reads_the_world_where_its_own_config_says(tmp_path, small_world):
    import shutil

    from toolkit.grid.run import training_key

    moved = tmp_path / "moved" / "world"
    shutil.copytree(small_world, moved)  # the same world (same identity) at another path
    one = run_dict(small_world, steps=4)
    two = run_dict(moved, steps=4)
    two["stages"] = two["stages"] + [{"name": "more", "steps": 2, "lr": 1e-3, "warmup": 0, "schedule": "constant"}]
    for name, base in (("a", one), ("b", two)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "base.yaml").write_text(yaml.safe_dump(base))
        grid = {"question": "q?", "base": "base.yaml", "seeds": [0], "tasks": []}
        (tmp_path / name / f"{name}.yaml").write_text(yaml.safe_dump(grid))
    for name in ("a", "b"):
        result = CliRunner().invoke(
            main, ["grid", "run", str(tmp_path / name / f"{name}.yaml"), "--results", str(tmp_path / "res")]
        )
        assert result.exit_code == 0, result.output
    (first,) = load_grid(tmp_path / "a" / "a.yaml").cells()
    (second,) = load_grid(tmp_path / "b" / "b.yaml").cells()
    status = json.loads((tmp_path / "res" / "b" / second.id / "status.json").read_text())
    assert status["state"] == "done" and status["started_from"] == training_key(first.config)
    config = yaml.safe_load((tmp_path / "res" / "b" / second.id / "run" / "config.yaml").read_text())
    assert config["data"]["world"] == str(moved)


def test_a_finished_shared_run_is_evaluated_with_its_world_where_it_now_is(tmp_path, small_world):
    import shutil

    first, second = tmp_path / "first" / "world", tmp_path / "second" / "world"
    shutil.copytree(small_world, first)
    for name, world in (("a", first), ("c", second)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "base.yaml").write_text(yaml.safe_dump(run_dict(world, steps=3)))
        grid = {"question": "q?", "base": "base.yaml", "seeds": [0], "tasks": ["world-colour"]}
        (tmp_path / name / f"{name}.yaml").write_text(yaml.safe_dump(grid))
    run_a = ["grid", "run", str(tmp_path / "a" / "a.yaml"), "--results", str(tmp_path / "res")]
    assert CliRunner().invoke(main, run_a).exit_code == 0
    shutil.move(first, second)  # the world moves; the finished run's config still names the old path
    result = CliRunner().invoke(
        main, ["grid", "run", str(tmp_path / "c" / "c.yaml"), "--results", str(tmp_path / "res")]
    )
    assert result.exit_code == 0, result.output
    (cell,) = load_grid(tmp_path / "c" / "c.yaml").cells()
    (done,) = load_grid(tmp_path / "a" / "a.yaml").cells()
    assert (tmp_path / "res" / "c" / cell.id / "run").resolve() == (tmp_path / "res" / "a" / done.id / "run").resolve()
    status = json.loads((tmp_path / "res" / "c" / cell.id / "status.json").read_text())
    assert status["state"] == "done", status.get("traceback")
    config = yaml.safe_load((tmp_path / "res" / "c" / cell.id / "run" / "config.yaml").read_text())
    assert config["data"]["world"] == str(second)  # rewritten for every later reader
    colour = json.loads((tmp_path / "res" / "c" / cell.id / "eval" / "world-colour.json").read_text())
    assert colour["config"]["source"].startswith(str(second))


def test_a_run_whose_first_stage_was_trained_starts_there_and_ends_exactly_as_from_scratch(tmp_path, small_world):
    from safetensors.torch import load_file

    from toolkit.grid.run import training_key

    one = run_dict(small_world, steps=4)
    two = run_dict(small_world, steps=4)
    two["stages"] = two["stages"] + [{"name": "more", "steps": 3, "lr": 1e-3, "warmup": 0, "schedule": "constant"}]
    for name, base in (("a", one), ("b", two)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "base.yaml").write_text(yaml.safe_dump(base))
        grid = {"question": "q?", "base": "base.yaml", "seeds": [0], "tasks": []}
        (tmp_path / name / f"{name}.yaml").write_text(yaml.safe_dump(grid))
    shared, scratch = tmp_path / "shared", tmp_path / "scratch"
    for grid_name, root in (("a", shared), ("b", shared), ("b", scratch)):
        result = CliRunner().invoke(
            main, ["grid", "run", str(tmp_path / grid_name / f"{grid_name}.yaml"), "--results", str(root)]
        )
        assert result.exit_code == 0, result.output
    (first,) = load_grid(tmp_path / "a" / "a.yaml").cells()
    (second,) = load_grid(tmp_path / "b" / "b.yaml").cells()
    status = json.loads((shared / "b" / second.id / "status.json").read_text())
    assert status["started_from"] == training_key(first.config)  # stage one was not trained again
    assert "started_from" not in json.loads((scratch / "b" / second.id / "status.json").read_text())
    reused, fresh = (root / "b" / second.id / "run" for root in (shared, scratch))
    rows = [json.loads(line) for line in (reused / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "event" not in r]
    # Started from stage one's run, under a config that adds stage two:
    # recorded once, at step 4.
    (event,) = [r for r in rows if "event" in r]
    assert event["step"] == 4 and set(event["changes"]) == {"stages.1"}
    assert [r["step"] for r in steps] == list(range(1, 8))
    assert [r["loss"] for r in steps] == [
        json.loads(x)["loss"] for x in (fresh / "metrics.jsonl").read_text().splitlines()
    ]
    wa = load_file(reused / "checkpoints" / "step-0000007" / "model.safetensors")
    wb = load_file(fresh / "checkpoints" / "step-0000007" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_failing_cell_is_recorded_and_retried_alone(tmp_path, small_world):
    path = _grid_file(tmp_path, small_world, axes={"model.decoder.positions": ["xpos", "alibi"]}, seeds=(0,))
    res = tmp_path / "res"
    result = CliRunner().invoke(main, ["grid", "run", str(path), "--results", str(res)])
    assert result.exit_code == 1 and "1/2 cells done, 1 failed" in result.output
    status = {
        s["label"]: s
        for s in json.loads(
            CliRunner().invoke(main, ["grid", "status", str(path), "--results", str(res), "--json"]).output
        )
    }
    assert status["model.decoder.positions=alibi"]["state"] == "failed"
    assert "unknown position encoding 'alibi'" in status["model.decoder.positions=alibi"]["error"]
    good = next(c for c in load_grid(path).cells() if "xpos" in c.label)
    stamp = (res / "grid" / good.id / "status.json").read_bytes()
    plain = CliRunner().invoke(main, ["grid", "run", str(path), "--results", str(res)])
    assert "failed, skipped" in plain.output
    retry = CliRunner().invoke(main, ["grid", "run", str(path), "--results", str(res), "--retry-failed"])
    assert retry.output.count(": failed") == 1 and "done, skipped" in retry.output
    assert (res / "grid" / good.id / "status.json").read_bytes() == stamp


def test_cells_run_seed_by_seed_so_a_stopped_grid_has_whole_seeds(tmp_path, small_world, monkeypatch):
    """Every arm's first seed runs before any arm's second: a grid stopped part-way can be compared."""
    import toolkit.grid.run as grid_run

    path = _grid_file(tmp_path, small_world, axes={"model.decoder.positions": ["xpos", "rope"]}, seeds=(3, 1, 2))
    order = []
    monkeypatch.setattr(grid_run, "run_cell", lambda job: order.append(job.cell) or {"state": "done"})
    grid = load_grid(path)
    grid_run.run_grid(grid, tmp_path / "res", echo=lambda s: None, heartbeat=0)
    assert [c.seed for c in order] == [3, 3, 1, 1, 2, 2]
    assert [c.label for c in order[:2]] == [c.label for c in grid.cells()[::3]]  # arms in the grid's order


@pytest.mark.slow
def test_local_pool_runs_cells_in_parallel_processes(tmp_path, small_world):
    """Two cells in two processes at once; each is reported when it finishes (the short one first,
    though the grid lists the long one first)."""
    stage = {"name": "pretrain", "lr": 3e-3, "warmup": 2, "schedule": "cosine"}
    long, short = [{**stage, "steps": 300}], [{**stage, "steps": 3}]
    path = _grid_file(tmp_path, small_world, axes={"stages": [long, short]}, seeds=(0,))
    result = CliRunner().invoke(main, ["grid", "run", str(path), "--results", str(tmp_path / "res"), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    statuses = [json.loads(p.read_text()) for p in (tmp_path / "res" / "grid").glob("*/status.json")]
    assert len(statuses) == 2 and {s["state"] for s in statuses} == {"done"}
    assert len({s["pid"] for s in statuses}) == 2 and os.getpid() not in {s["pid"] for s in statuses}
    cells = load_grid(path).cells()
    assert cells[0].config.total_steps == 300
    first = next(line for line in result.output.splitlines() if line.startswith("[1/2]"))
    assert first.startswith(f"[1/2] {cells[1].id}"), result.output


def test_progress_reports_finished_cells_with_time_left_and_the_running_cells_steps(tmp_path, small_world):
    from toolkit.grid.run import Progress

    grid = load_grid(_grid_file(tmp_path, small_world, steps=40))
    cells = grid.cells()
    out = tmp_path / "res"
    running = out / cells[1].id
    (running / "run").mkdir(parents=True)
    (running / "status.json").write_text(json.dumps({"state": "running"}))
    (running / "run" / "metrics.jsonl").write_text('{"step": 10}\n{"step": 20}\n')
    lines = []
    progress = Progress(cells, out, lines.append, heartbeat=0.05)
    time.sleep(0.3)
    (running / "run" / "metrics.jsonl").write_text('{"step": 10}\n{"step": 20}\n{"step": 30}\n')
    progress.finished(cells[0], "done")
    progress.close()
    beats = [line for line in lines if line.startswith("  running")]
    assert beats and all(f"{cells[1].id}" in b and ("step 20/40" in b or "step 30/40" in b) for b in beats)
    done = [line for line in lines if line.startswith("[1/2]")]
    assert len(done) == 1 and f"{cells[0].id}" in done[0] and ": done (" in done[0] and "s left)" in done[0]
    assert progress.running() == [f"{cells[1].id} {cells[1].label} seed={cells[1].seed}: step 30/40"]


def test_time_left_counts_training_steps_not_cells(tmp_path, small_world):
    """A cell whose shared run was trained before the grid started finishes at once; the estimate
    divides the time by the steps trained since the start, not by the cells finished."""
    from toolkit.grid.run import Progress

    grid = load_grid(_grid_file(tmp_path, small_world, steps=40, seeds=(0, 1, 2)))
    cells = grid.cells()
    out = tmp_path / "res"
    for cell, step in zip(cells, (40, 10, 0)):  # trained before; half-way; not started
        (out / cell.id / "run").mkdir(parents=True)
        (out / cell.id / "run" / "metrics.jsonl").write_text(f'{{"step": {step}}}\n' if step else "")
    lines = []
    progress = Progress(cells, out, lines.append, heartbeat=0)
    (out / cells[1].id / "run" / "metrics.jsonl").write_text('{"step": 10}\n{"step": 20}\n')  # 10 steps taken
    progress.start = time.time() - 100.0
    progress.finished(cells[0], "done")
    # 10 steps in 100 s; 20 + 40 to go: 600 s (by cells it would read 200 s)
    assert lines[-1].startswith(f"[1/3] {cells[0].id}") and lines[-1].endswith("(100 s; about 600 s left)")


def test_no_time_left_is_guessed_before_the_first_training_steps(tmp_path, small_world):
    """Cells that were only evaluated (their runs trained before) say nothing of how long a training
    cell takes: no estimate until steps are taken."""
    from toolkit.grid.run import Progress

    grid = load_grid(_grid_file(tmp_path, small_world, steps=40))
    cells = grid.cells()
    lines = []
    progress = Progress(cells, tmp_path / "res", lines.append, heartbeat=0)
    progress.finished(cells[0], "done")
    assert lines[-1].startswith(f"[1/2] {cells[0].id}") and lines[-1].endswith(" s)") and "left" not in lines[-1]


def test_time_left_counts_a_run_another_study_trained_as_trained_before(tmp_path, small_world):
    """A cell with no directory yet whose training key names a run in `<results>/runs` (trained by
    another study): it finishes at once and adds no steps taken, so the estimate is not shortened."""
    from toolkit.grid.run import Progress, training_key

    grid = load_grid(_grid_file(tmp_path, small_world, steps=40, seeds=(0, 1)))
    cells = grid.cells()
    out = tmp_path / "res" / "grid"
    shared = tmp_path / "res" / "runs" / training_key(cells[0].config)
    shared.mkdir(parents=True)
    (shared / "metrics.jsonl").write_text('{"step": 40}\n')
    (out / cells[1].id / "run").mkdir(parents=True)
    (out / cells[1].id / "run" / "metrics.jsonl").write_text('{"step": 10}\n')
    lines = []
    progress = Progress(cells, out, lines.append, heartbeat=0)
    (out / cells[0].id).mkdir()
    (out / cells[0].id / "run").symlink_to(shared, target_is_directory=True)  # the grid links the shared run
    (out / cells[1].id / "run" / "metrics.jsonl").write_text('{"step": 10}\n{"step": 20}\n')
    progress.start = time.time() - 100.0
    progress.finished(cells[0], "done")
    # 10 steps in 100 s, 20 to go: 200 s (counting the shared run's 40 steps as taken would read 40 s)
    assert lines[-1].endswith("(100 s; about 200 s left)"), lines[-1]


@pytest.mark.slow
def test_pool_workers_end_when_the_grid_process_is_killed(tmp_path, small_world):
    """`grid run --jobs 2` killed: its workers stop training within seconds (no cell goes on unwatched),
    and the cells read interrupted."""
    path = _grid_file(tmp_path, small_world, steps=5000, axes={"model.decoder.positions": ["xpos", "rope"]}, seeds=(0,))
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "toolkit.cli", "grid", "run", str(path), "--results", str(res), "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = load_grid(path).cells()
    deadline, pids = time.time() + 300, set()
    while time.time() < deadline and len(pids) < 2:
        time.sleep(0.2)
        pids = {json.loads(p.read_text()).get("pid") for p in res.glob("grid/*/status.json")} - {None}
    assert len(pids) == 2 and proc.pid not in pids
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    from toolkit.grid.run import _alive

    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
    status = CliRunner().invoke(main, ["grid", "status", str(path), "--results", str(res), "--json"])
    assert {r["id"]: r["state"] for r in json.loads(status.output)} == {c.id: "interrupted" for c in cells}


def test_a_world_named_by_other_settings_that_build_it_is_the_same_cell():
    """Cell ids name the world by identity (seed and full config), not by the overrides that name it:
    the transfer studies' default levels (a switch set to its default, or not set) are one cell, so
    they are trained once; a level that changes the world is another."""
    studies = ROOT / "experiments" / "studies"

    def default_cell(name, key, value):
        cells = load_grid(studies / f"{name}.yaml").cells()
        return {c.id for c in cells if c.overrides.get(key) == value and c.overrides["name"] == "mllm" and c.seed == 0}

    direction = default_cell("transfer-direction", "data.world_overrides.noun_first_fraction", 0.0)
    width = default_cell("transfer-width", "model.decoder.dim", 128)
    bridge = default_cell("transfer-bridge", "data.world_overrides.vision_only_fraction", 0.5)
    assert len(direction) == 1 and direction == width == bridge
    assert default_cell("transfer-direction", "data.world_overrides.noun_first_fraction", 0.5).isdisjoint(direction)


def _wait_for_steps(runs, n, timeout=300):
    """Until every run dir in `runs` has logged at least `n` steps."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        logged = [r / "metrics.jsonl" for r in runs]
        if all(m.is_file() and len(m.read_text().splitlines()) >= n for m in logged):
            return
        time.sleep(0.1)
    raise AssertionError(f"runs did not reach step {n}: {runs}")


def _stopped_cleanly(cell_dir):
    """The cell reads interrupted and its run's last checkpoint is the last step it logged."""
    assert json.loads((cell_dir / "status.json").read_text())["state"] == "interrupted"
    last = json.loads((cell_dir / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    saved = sorted(p.name for p in (cell_dir / "run" / "checkpoints").glob("step-*"))
    assert saved[-1] == f"step-{last:07d}", (saved, last)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sigterm, sigint ignored"])
def test_ctrl_c_stops_a_grid_after_the_training_step_and_starts_no_other_cell(tmp_path, small_world, how):
    """Ctrl-C or SIGTERM to `grid run` (one process): the training cell saves a checkpoint after its
    step and reads interrupted; the grid does not go on to the next cell and exits with 130. Started
    with SIGINT ignored (a shell script's background job), the grid says so and names the command
    that stops it."""
    path = _grid_file(tmp_path, small_world, steps=5000, axes={"model.decoder.positions": ["xpos", "rope"]}, seeds=(0,))
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "toolkit.cli", "grid", "run", str(path), "--results", str(res)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if "ignored" in how else None
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore
    )
    first, second = (res / "grid" / c.id for c in load_grid(path).cells())
    _wait_for_steps([first / "run"], 3)
    proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    warning = f"Ctrl-C does not reach this grid (SIGINT is ignored here, as in a background job); stop it with `kill -TERM {proc.pid}`"
    assert (warning in out) == ("ignored" in how), out
    assert "2 of 2 cells not done; run the same command again to resume them" in err
    _stopped_cleanly(first)
    assert not (second / "status.json").exists()
    status = CliRunner().invoke(main, ["grid", "status", str(path), "--results", str(res), "--json"])
    rows = json.loads(status.output)
    assert [r["state"] for r in rows] == ["interrupted", "pending"]
    last = json.loads((first / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert rows[0]["error"] == f"stopped after step {last} with a checkpoint; grid run resumes it"


@pytest.mark.slow
@pytest.mark.parametrize("to", ["grid process", "process group", "sigterm"])
def test_ctrl_c_stops_a_pool_grid_cleanly(tmp_path, small_world, to):
    """SIGINT to `grid run --jobs 2` alone (`kill -INT`), to its whole process group (Ctrl-C at a
    terminal), or SIGTERM to it (`kill`, a scheduler): both training cells stop after their step with
    a checkpoint, the queued cells never start, every worker ends, exit status 130."""
    path = _grid_file(tmp_path, small_world, steps=5000, axes={"model.decoder.positions": ["xpos", "rope"]})
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "toolkit.cli", "grid", "run", str(path), "--results", str(res), "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    cells = load_grid(path).cells()  # seed 0 of both arms first, then seed 1
    dirs = [res / "grid" / c.id for c in cells]
    seed0 = [d for d, c in zip(dirs, cells) if c.seed == 0]
    _wait_for_steps([d / "run" for d in seed0], 3)
    pids = {json.loads((d / "status.json").read_text())["pid"] for d in seed0}
    if to == "process group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT if to == "grid process" else signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "4 of 4 cells not done; run the same command again to resume them" in err
    assert "stopping: the training cells save a checkpoint" in out
    for d in seed0:
        _stopped_cleanly(d)
    for d, c in zip(dirs, cells):
        if c.seed == 1:
            assert not (d / "status.json").exists()

    from toolkit.grid.run import _alive

    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
