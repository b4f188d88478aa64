import json
from pathlib import Path

import pytest
import torch
from conftest import run_dict, tiny_config
from safetensors.torch import load_file

from toolkit.config import ConfigError, merge
from toolkit.grid.spec import identity_dict
from toolkit.model import build_model
from toolkit.model.vision import TOWER_WEIGHTS
from toolkit.train.config import run_config_from_dict
from toolkit.train.tower import TOWER_RECORD, Renders, ensure_tower, pretrain_tower


def conv_vision(path, steps=200, **pretrain):
    """A small convolutional tower (the calibrated kind) to pretrain at `path`."""
    vision = {"stem": "conv", "layers": 0, "width": 32, "image_size": 32, "patch_size": 8, "path": str(path)}
    return tiny_config(vision={**vision, "pretrain": {"steps": steps, "batch_size": 32, **pretrain}}).vision


def test_pretrained_tower_learns_colour_and_shape_and_the_model_starts_from_it(tmp_path):
    vision = conv_vision(tmp_path / "tower")
    record = pretrain_tower(vision, Renders(image_size=32), tmp_path / "tower", echo=lambda s: None)
    # 11 colours (chance 0.09): 200 steps of 32 renders name the colour of new plain shapes and
    # objects most of the time (shape takes longer: benchmarks/vision_probe.py).
    assert record["accuracy"]["plain"]["colour"] > 0.6 and record["accuracy"]["objects"]["colour"] > 0.6
    assert json.loads((tmp_path / "tower" / TOWER_RECORD).read_text()) == record
    saved = load_file(str(tmp_path / "tower" / TOWER_WEIGHTS))
    # A model with the tower's directory as vision.path starts from exactly those weights, whatever
    # the seed of its own initialisation.
    for seed in (0, 1):
        model = build_model(merge(tiny_config(), {"vision": {**_fields(vision), "freeze": "all"}}), seed=seed)
        state = model.vision.state_dict()
        assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
        assert not any(p.requires_grad for p in model.vision.parameters())


def _fields(vision):
    return {k: getattr(vision, k) for k in ("stem", "layers", "width", "image_size", "patch_size", "path")}


def test_ensure_tower_builds_once_and_refuses_a_tower_built_otherwise(tmp_path, monkeypatch):
    path = tmp_path / "tower"
    vision = conv_vision(path, steps=3)
    messages = []
    ensure_tower(vision, None, echo=messages.append)
    assert len(messages) == 2 and "pretraining it (3 steps)" in messages[0]
    stamp = (path / TOWER_WEIGHTS).stat().st_mtime_ns
    ensure_tower(vision, None, echo=messages.append)  # there and matching: nothing rebuilt
    assert len(messages) == 2 and (path / TOWER_WEIGHTS).stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"differ in pretrain\.lr"):
        ensure_tower(conv_vision(path, steps=3, lr=1e-3), None)
    with pytest.raises(ConfigError, match=r"differ in vision\.width"):
        ensure_tower(merge(conv_vision(path, steps=3), {"width": 16}, prefix="vision"), None)
    # Without pretraining settings, a missing tower is an error naming the key to set ...
    with pytest.raises(ConfigError, match=r"vision.path=.*nowhere: no tower.safetensors there"):
        build_model(tiny_config(vision={"path": str(tmp_path / "nowhere")}))
    # ... and a tower of another architecture is refused naming the file.
    with pytest.raises(ConfigError, match=r"tower.safetensors: the tower there has another architecture"):
        build_model(tiny_config(vision={"path": str(path)}))
    with pytest.raises(ConfigError, match=r"vision.pretrain.steps=5 needs vision.kind: vit, not 'clip'"):
        tiny_config(vision={"kind": "clip", "pretrain": {"steps": 5}})
    # Without a path, the tower is kept in towers/ (beside the world when there is one), named by its
    # settings (the same settings, the same tower; others, another).
    monkeypatch.chdir(tmp_path)
    unnamed = merge(vision, {"path": None}, prefix="vision")
    placed = ensure_tower(unnamed, None, echo=messages.append)
    assert placed.path.startswith("towers/conv-") and (tmp_path / placed.path / TOWER_WEIGHTS).is_file()
    assert ensure_tower(unnamed, None).path == placed.path
    assert ensure_tower(merge(unnamed, {"pretrain": {"lr": 1e-3}}, prefix="vision"), None).path != placed.path
    beside = ensure_tower(unnamed, str(tmp_path / "out" / "world"), echo=messages.append)
    assert Path(beside.path).parent == tmp_path / "out" / "towers"
    # The LLM arm of a grid whose base pretrains a tower: no vision, so nothing to build or check.
    assert not tiny_config(vision={"kind": "none", "pretrain": {"steps": 5}}).vision.enabled
    ensure_tower(
        tiny_config(vision={"kind": "none", "path": str(tmp_path / "x"), "pretrain": {"steps": 5}}).vision, None
    )
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match=r"vision.pretrain.batch_size: must be >= 1, got 0"):
        tiny_config(vision={"pretrain": {"batch_size": 0}})


def test_identity_names_a_pretrained_tower_by_its_settings_not_its_place(small_world, tmp_path):
    plain = run_config_from_dict(run_dict(small_world))
    assert "pretrain" not in identity_dict(plain)["model"]["vision"]  # no pretraining: as before the switch
    towers = []
    for where in ("a", "b"):
        data = run_dict(small_world)
        data["model"] = {**data["model"], "vision": {**data["model"]["vision"], "path": str(tmp_path / where)}}
        data["model"]["vision"]["pretrain"] = {"steps": 100}
        towers.append(identity_dict(run_config_from_dict(data)))
    assert towers[0] == towers[1] and towers[0]["model"]["vision"]["pretrain"]["steps"] == 100
    assert towers[0] != identity_dict(plain)


def test_a_grid_cell_pretrains_its_tower_once_and_trains_on_it_frozen(small_world, tmp_path, monkeypatch):
    import copy

    import yaml
    from click.testing import CliRunner

    from toolkit.cli import main
    from toolkit.grid.spec import load_grid

    monkeypatch.chdir(tmp_path)
    base = copy.deepcopy(run_dict(small_world, steps=2))
    base["model"]["vision"].update({"stem": "conv", "layers": 0, "freeze": "all", "pretrain": {"steps": 3}})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    grid = {"question": "q?", "base": "base.yaml", "seeds": [0, 1], "tasks": []}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(grid))
    result = CliRunner().invoke(main, ["grid", "run", str(tmp_path / "g.yaml"), "--results", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert result.output.count("pretraining it (3 steps)") == 1  # one tower for both seeds
    (tower,) = [p for p in (Path(small_world).parent / "towers").iterdir() if p.is_dir()]  # beside the world
    saved = load_file(str(tower / TOWER_WEIGHTS))
    for cell in load_grid(tmp_path / "g.yaml").cells():
        run = tmp_path / "res" / "g" / cell.id / "run"
        assert yaml.safe_load((run / "config.yaml").read_text())["model"]["vision"]["path"] == str(tower)
        (checkpoint,) = (run / "checkpoints").iterdir()
        weights = load_file(str(checkpoint / "model.safetensors"))
        assert all(torch.equal(weights[f"vision.{k}"], v) for k, v in saved.items())  # frozen: as pretrained
