"""Training keys: what makes two cells share a run, and runs stored under the first rule for keys."""

import dataclasses
import fcntl
import json
import os

import pytest
import yaml
from conftest import run_dict

from toolkit.config import ConfigError
from toolkit.grid.migrate import adopt_runs, first_rule_key
from toolkit.grid.run import run_grid, training_key
from toolkit.grid.spec import load_grid


def _grid(tmp_path, world, zip_=None, seeds=(0,)):
    base = {**run_dict(world, steps=3), "precision": "auto"}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    grid = {"question": "q?", "base": "base.yaml", "zip": zip_ or [], "seeds": list(seeds), "tasks": []}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    return load_grid(tmp_path / "grid.yaml")


def _vision(cfg, **changes):
    model = dataclasses.replace(cfg.model, vision=dataclasses.replace(cfg.model.vision, **changes))
    return dataclasses.replace(cfg, model=model)


def test_the_key_holds_the_precision_auto_trains_in_on_this_machine(tmp_path, small_world, monkeypatch):
    import toolkit.train.precision as precision

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    (cell,) = _grid(tmp_path, small_world).cells()
    auto, fp32, bf16 = (dataclasses.replace(cell.config, precision=p) for p in ("auto", "fp32", "bf16"))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert training_key(auto) == training_key(fp32) != training_key(bf16)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert training_key(auto) == training_key(bf16) != training_key(fp32)
    assert training_key(auto, precision="fp32") == training_key(fp32)  # a stored run's precision, given


def test_the_text_only_arm_key_leaves_out_the_vision_settings_it_never_builds(tmp_path, small_world):
    (cell,) = _grid(tmp_path, small_world).cells()
    llm = _vision(cell.config, kind="none")
    assert training_key(_vision(llm, width=48, layers=1)) == training_key(llm)
    mllm = _vision(cell.config, kind="vit")
    assert training_key(_vision(mllm, width=48, layers=1)) != training_key(mllm)
    assert training_key(llm) != training_key(mllm)


def _first_rule_run(grid, out, cell, precision="fp32", state="done"):
    """A cell whose run was stored under its first-rule key, as an older xmt left it."""
    runs = out.parent / "runs"
    old = runs / first_rule_key(cell.config)
    old.mkdir(parents=True)
    (old / "config.yaml").write_text(yaml.safe_dump({"precision": precision}))
    (old / "metrics.jsonl").write_text('{"step": 3}\n')
    (out / cell.id).mkdir(parents=True)
    (out / cell.id / "run").symlink_to(os.path.relpath(old, out / cell.id))
    status = {"state": state, "training_key": old.name}
    (out / cell.id / "status.json").write_text(json.dumps(status))
    return old


def test_runs_under_first_rule_keys_are_renamed_and_their_cells_relinked(tmp_path, small_world):
    grid = _grid(tmp_path, small_world)
    (cell,) = grid.cells()
    out = tmp_path / "res" / "grid"
    old = _first_rule_run(grid, out, cell)
    new = out.parent / "runs" / training_key(cell.config, precision="fp32")
    assert new.name != old.name  # the first rule hashed `precision: auto` as written
    lines = []
    assert adopt_runs(grid, out, lines.append) == 1 and lines == [
        "1 runs renamed to their current training keys (the old names link to them)"
    ]
    assert new.is_dir() and not new.is_symlink() and (new / "metrics.jsonl").read_text() == '{"step": 3}\n'
    assert old.is_symlink() and old.resolve() == new.resolve()  # other grids' cells still reach it
    assert (out / cell.id / "run").resolve() == new.resolve() and os.readlink(out / cell.id / "run").endswith(new.name)
    assert json.loads((out / cell.id / "status.json").read_text())["training_key"] == new.name
    assert adopt_runs(grid, out, lines.append) == 0 and len(lines) == 1  # once only
    # the finished cell is not trained again: grid run skips it
    lines = []
    assert run_grid(grid, tmp_path / "res", echo=lines.append) == {cell.id: "done"}
    assert (new / "metrics.jsonl").read_text() == '{"step": 3}\n'


def test_a_run_in_training_is_left_for_a_later_call(tmp_path, small_world):
    grid = _grid(tmp_path, small_world)
    (cell,) = grid.cells()
    out = tmp_path / "res" / "grid"
    old = _first_rule_run(grid, out, cell, state="running")
    with open(out.parent / "runs" / f"{old.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # an older xmt trains it now
        assert adopt_runs(grid, out, lambda s: None) == 0 and not old.is_symlink()
    assert adopt_runs(grid, out, lambda s: None) == 1 and old.is_symlink()


def test_a_grid_whose_runs_trained_in_another_precision_is_refused(tmp_path, small_world, monkeypatch):
    import toolkit.train.precision as precision

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    grid = _grid(tmp_path, small_world, seeds=(0, 1))
    first, second = grid.cells()
    out = tmp_path / "res" / "grid"
    run = out / first.id / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"precision": "bf16"}))  # trained on a machine with native bf16
    (out / first.id / "status.json").write_text(json.dumps({"state": "done"}))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"trained in bf16, but precision: auto trains in fp32 .*`precision: bf16`"):
        run_grid(grid, tmp_path / "res", echo=lambda s: None)
    assert not (out / second.id / "run").exists()  # nothing trained


def test_the_run_a_later_stage_starts_from_is_renamed_too(tmp_path, small_world):
    """An instruction-tuning cell starts from the run of its first stage (trained by another grid's
    cell): that run is renamed as well, so the cell starts from it instead of training it again."""
    base = {**run_dict(small_world, steps=3), "precision": "auto"}
    base["stages"] = base["stages"] + [{"name": "more", "steps": 2, "lr": 1e-3, "warmup": 0, "schedule": "constant"}]
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"question": "q?", "base": "base.yaml", "seeds": [0]}))
    grid = load_grid(tmp_path / "grid.yaml")
    (cell,) = grid.cells()
    prefix = dataclasses.replace(cell.config, stages=cell.config.stages[:1])
    runs = tmp_path / "res" / "runs"
    old = runs / first_rule_key(prefix)
    old.mkdir(parents=True)
    (old / "config.yaml").write_text(yaml.safe_dump({"precision": "fp32"}))
    assert adopt_runs(grid, tmp_path / "res" / "grid", lambda s: None) == 1
    assert (runs / training_key(prefix, precision="fp32") / "config.yaml").is_file() and old.is_symlink()


@pytest.mark.parametrize("stored", ["fp32", "bf16"])
def test_a_grid_that_pins_the_precision_adopts_the_auto_runs_that_trained_in_it(tmp_path, small_world, stored):
    """`precision: fp32` added to a grid whose runs trained with `auto` (resolved to fp32): the same
    training, so its new cells find those runs under their keys; an `auto` run in bf16 is not."""
    grid = _grid(tmp_path, small_world)
    (cell,) = grid.cells()
    out = tmp_path / "res" / "grid"
    old = _first_rule_run(grid, out, cell, precision=stored)
    pinned = dataclasses.replace(cell.config, precision="fp32")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**run_dict(small_world, steps=3), "precision": "fp32"}))
    grid = load_grid(tmp_path / "grid.yaml")
    (new_cell,) = grid.cells()
    assert new_cell.id != cell.id and training_key(new_cell.config) == training_key(pinned)
    renamed = adopt_runs(grid, out, lambda s: None)
    target = out.parent / "runs" / training_key(pinned)
    if stored == "fp32":
        assert renamed == 1 and old.is_symlink() and (target / "metrics.jsonl").is_file()
    else:
        assert renamed == 0 and not old.is_symlink() and not target.exists()
