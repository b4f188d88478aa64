import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_config, tiny_model

from toolkit.cli import main
from toolkit.config import ConfigError, from_dict
from toolkit.model import ModelConfig, load_model, preset_config, save_model
from toolkit.registry import UnknownNameError

ROOT = Path(__file__).resolve().parents[1]


def test_kosmos_1_3b_summary_matches_the_paper():
    result = CliRunner().invoke(main, ["model", "summary", "--preset", "kosmos-1.3b", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    # Paper: "about 1.3B" in the language model, CLIP ViT-L/14 (~0.3B), "about 1.6B" in total.
    assert 1.25e9 <= s["language_model_params"] <= 1.40e9
    assert 0.28e9 <= s["vision_params"] <= 0.32e9
    assert 1.55e9 <= s["total_params"] <= 1.70e9
    # Embeddings 64,007 x 2048 counted once (tied); 24 blocks of 4 d^2 + 2 d f (+ biases, LayerNorms).
    d, f, v = 2048, 8192, 64007
    block = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d + 2 * d + 2 * f
    assert s["language_model_params"] == v * d + 24 * block + 2 * d
    # Frozen: all of CLIP but its last layer.
    last_clip_layer = 4 * (1024 * 1024 + 1024) + 2 * 1024 * 4096 + 4096 + 1024 + 4 * 1024
    assert s["frozen_params"] == s["vision_params"] - last_clip_layer
    assert s["trainable_params"] + s["frozen_params"] == s["total_params"]
    assert s["image_tokens"] == 64


def test_summary_table_and_unknown_preset():
    runner = CliRunner()
    result = runner.invoke(main, ["model", "summary", "--preset", "tiny"])
    assert result.exit_code == 0 and "language_model_params" in result.output
    bad = runner.invoke(main, ["model", "summary", "--preset", "kosmos-2"])
    assert bad.exit_code != 0
    assert "unknown model preset 'kosmos-2'; available: kosmos-1.3b, small, tiny" in bad.output
    with pytest.raises(UnknownNameError, match="available: kosmos-1.3b, small, tiny"):
        preset_config("huge")


def test_config_errors_name_the_key_and_the_valid_values():
    with pytest.raises(ConfigError, match="unknown config key 'model.decoder.depth'; valid keys: vocab_size, dim"):
        from_dict(ModelConfig, {"decoder": {"depth": 3}}, prefix="model")
    with pytest.raises(ConfigError, match="decoder.layers: expected an integer, got 'four'"):
        from_dict(ModelConfig, {"decoder": {"layers": "four"}})
    with pytest.raises(ConfigError, match="decoder.norm: unknown value 'postln'; valid: subln, preln"):
        from_dict(ModelConfig, {"decoder": {"norm": "postln"}})
    with pytest.raises(ConfigError, match="vision.freeze: unknown value 'some'; valid: all, all_but_last, none"):
        from_dict(ModelConfig, {"vision": {"freeze": "some"}})
    with pytest.raises(UnknownNameError, match="unknown attention backend 'flash'; available: eager, sdpa, xformers"):
        tiny_model(decoder={"attention": "flash"})


@pytest.mark.parametrize("overrides", [{}, {"vision": {"kind": "none"}}, {"decoder": {"tie_embeddings": False}}])
def test_safetensors_round_trip(tmp_path, overrides):
    model = tiny_model(**overrides)
    save_model(model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["model.json", "model.safetensors"]
    loaded = load_model(tmp_path / "ckpt").eval()
    assert loaded.cfg == model.cfg
    for (n, a), (m, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=False):
        assert n == m and torch.equal(a, b)
    ids = torch.randint(7, 64, (1, 9))
    assert torch.equal(model(ids).logits, loaded(ids).logits)
    if model.cfg.decoder.tie_embeddings:
        assert loaded.decoder.output_projection is None


def test_saved_clip_checkpoint_no_longer_needs_the_hf_directory(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=16,
            patch_size=8,
        )
    ).save_pretrained(tmp_path / "clip")
    model = tiny_model(vision={"kind": "clip", "path": str(tmp_path / "clip")})
    save_model(model, tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    assert saved["vision"]["path"] is None and saved["vision"]["width"] == 24 and saved["vision"]["layers"] == 2
    loaded = load_model(tmp_path / "ckpt")
    pixels = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.vision(pixels), loaded.vision(pixels))


def test_load_errors_name_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_model(tmp_path)


def test_presets_are_valid_configs():
    for name in ("tiny", "small", "kosmos-1.3b"):
        cfg = preset_config(name)
        assert isinstance(cfg, ModelConfig)
    tiny = preset_config("tiny")
    assert tiny.vision.kind == "vit" and tiny.decoder.layers == 4
    assert preset_config("tiny", {"vision": {"kind": "none"}}).vision.kind == "none"
    assert tiny_config().decoder.dim == 32


@pytest.mark.slow
def test_smoke_reproduce_killed_part_way_continues_and_writes_every_artifact(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd
    from PIL import Image

    from paper_figures.build import FIGURES, TABLES

    # Killed once the first cell is done, a rerun must keep it (same bytes) and finish the rest.
    cmd = [sys.executable, "-m", "toolkit.cli", "reproduce", "--scale", "smoke", "--out", str(tmp_path)]
    proc = subprocess.Popen(
        cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline, first = time.time() + 600, None
    while time.time() < deadline and first is None:
        for status in (tmp_path / "results").glob("*/*/status.json"):
            if json.loads(status.read_text())["state"] == "done":
                first = status.parent
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first is not None, "no cell finished before the deadline"
    kept = {p: p.read_bytes() for p in [first / "status.json", *sorted((first / "eval").glob("*.json"))]}
    kept_run = (first / "run" / "metrics.jsonl").read_bytes()

    result = CliRunner().invoke(main, ["reproduce", "--scale", "smoke", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {p: p.read_bytes() for p in kept} == kept and (first / "run" / "metrics.jsonl").read_bytes() == kept_run
    for stage in ("model check", "world build", "paper grids", "analysis", "paper tables and figures"):
        assert f"] {stage}" in result.output
    assert "time by stage:" in result.output and "headline effects" in result.output
    run_summary = json.loads((tmp_path / "paper" / "summary.json").read_text())
    assert run_summary["n_seeds"] == 1 and run_summary["scale"] == "smoke"
    assert set(run_summary["stages_seconds"]) == {
        "model check",
        "world build",
        "paper grids (train + eval)",
        "analysis",
        "paper tables and figures",
    }
    # Both invocations' time: the killed one built the world, the rerun reused it.
    mine, every = run_summary["stages_seconds"], run_summary["stages_seconds_all_invocations"]
    assert run_summary["invocations"] == 2 and every["world build"] > mine["world build"]
    assert (
        all(every[k] >= mine[k] for k in mine)
        and run_summary["total_seconds_all_invocations"] > run_summary["total_seconds"]
    )
    ledger = json.loads((tmp_path / "stage_times.json").read_text())["invocations"]
    assert len(ledger) == 2 and ledger[1]["stages"] == mine and "world build" in ledger[0]["stages"]
    assert "over all 2 invocations" in result.output
    gates = run_summary["gates"]
    assert len(gates) == 5 and all(set(g) == {"name", "value", "threshold", "pass", "seeds"} for g in gates)
    assert all(g["value"] is not None and g["seeds"] == 1 for g in gates)  # every gate's results were stored
    assert all(g["pass"] == (g["value"] >= g["threshold"]) for g in gates)
    assert "learnability gates" in result.output and run_summary["headline"]
    assert {"effect", "ci95", "p_value"} <= set(run_summary["headline"][0])
    summary = json.loads((tmp_path / "model_summary.json").read_text())
    assert abs(summary["init_loss"] - summary["uniform_loss"]) < 1.0  # tied embeddings: near log(vocab) at init
    paper = tmp_path / "paper"
    md = (paper / "table16_visual_commonsense.md").read_text()
    assert "MLLM — ours, smoke scale, 1 seeds" in md and "| Kosmos-1 − LLM — paper | +1.5 | +14.7 | +9.7 |" in md
    # The grid files name the scale, so the grid commands read the main job's results directly.
    table = CliRunner().invoke(
        main,
        [
            "grid",
            "table",
            str(ROOT / "experiments" / "paper" / "visual-commonsense.yaml"),
            "--scale",
            "smoke",
            "--results",
            str(tmp_path / "results"),
        ],
    )
    assert table.exit_code == 0 and "(no finished cells)" not in table.output, table.output
    assert "world-colour" in table.output and "name=mllm - name=llm on world-colour" in table.output
    status = CliRunner().invoke(
        main,
        [
            "grid",
            "status",
            str(ROOT / "experiments" / "paper" / "language-tasks.yaml"),
            "--scale",
            "smoke",
            "--results",
            str(tmp_path / "results"),
        ],
    )
    assert status.exit_code == 0 and status.output.count("done") == 2, status.output
    assert "with − without — ours" in (paper / "table14_instruction_tuning.md").read_text()
    for name in TABLES:  # every table has our rows from its grid, next to the paper's
        text = (paper / f"{name}.md").read_text()
        assert "— paper" in text and "— ours" in text and "no stored results" not in text, name
        assert (paper / f"{name}.tex").read_text().count(r"\\") >= 3
    for name in FIGURES:
        with Image.open(paper / f"{name}.png") as im:
            assert im.size[0] > 300 and len(np.unique(np.asarray(im.convert("L")))) > 10, name  # not blank
        assert (paper / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    effects = pd.read_csv(paper / "fig_transfer_effects.csv")
    assert {"visual-commonsense", "language-tasks", "instruction-tuning"} <= set(effects["grid"])
    curves = pd.read_csv(paper / "fig_few_shot.csv")
    assert set(curves["shots"]) == {0, 2, 4} and set(curves["ablation"]) == {"none", "text", "shuffle", "blank"}
    probing = pd.read_csv(tmp_path / "analysis" / "probe" / "probing.csv")
    assert set(probing["attribute"]) == {"colour"} and len(probing) > 5
    for png in list((tmp_path / "analysis").rglob("*.png")):
        with Image.open(png) as im:
            assert im.size[0] > 100 and len(np.unique(np.asarray(im.convert("L")))) > 10  # not blank
    # Seven grids, four distinct trainings: cells that train the same model share one run.
    assert len([p for p in (tmp_path / "results" / "runs").iterdir() if p.is_dir()]) == 4
    # A rerun continues: every grid cell and the analysis are reused.
    again = CliRunner().invoke(main, ["reproduce", "--scale", "smoke", "--out", str(tmp_path)])
    assert again.exit_code == 0 and "reusing" in again.output
    assert (first / "run" / "metrics.jsonl").read_bytes() == kept_run


def test_reproduce_stopped_in_its_grids_says_so_and_runs_no_later_stage(tmp_path, monkeypatch):
    """A grid stopped by Ctrl-C ends `xmt reproduce` at that stage with the grid's resume message,
    not as a failure, and no later stage runs (it would read the missing cells)."""
    from toolkit.commands import reproduce
    from toolkit.grid.run import GridInterrupted

    ran = []

    def stopped(scale, out, echo):
        raise GridInterrupted("3 of 8 cells not done; run the same command again to resume them")

    monkeypatch.setattr(
        reproduce,
        "STAGES",
        [
            ("first", lambda *a: ran.append("first") or "ok"),
            ("grids", stopped),
            ("later", lambda *a: ran.append("later")),
        ],
    )
    lines = []
    assert reproduce.run_reproduce("smoke", str(tmp_path), echo=lines.append) is False
    assert ran == ["first"]
    assert "[2/3] grids: stopped: 3 of 8 cells not done; run the same command again to resume them" in lines
    assert not any("FAILED" in line for line in lines)


def test_summary_keeps_a_small_p_value_and_the_gates(tmp_path):
    """summary.json states a p of 2.6e-06 as such (rounded to 3 significant digits, never to 0)."""
    from toolkit.commands.reproduce import SCALES, write_summary
    from toolkit.commands.stage_clock import StageClock
    from toolkit.grid.results import ArmComparison
    from toolkit.grid.stats import Comparison

    clock = StageClock(tmp_path / "stage_times.json")
    clock.run("world build", lambda: None)
    small = Comparison(0.14583, (0.0873, 0.2044), 2.5812e-06, 4.4844, 3, 64)
    effects = [ArmComparison("name=mllm", "name=llm", "world-colour-latent", "vision_only", small)]
    gates = [{"name": "g", "value": 0.95, "threshold": 0.9, "pass": True, "seeds": 3}]
    summary = json.loads(write_summary(SCALES["half"], tmp_path, clock, effects, gates).read_text())
    (row,) = summary["headline"]
    assert row["p_value"] == 2.58e-06 and row["effect"] == 0.1458 and row["ci95"] == [0.0873, 0.2044]
    assert row["comparison"] == "name=mllm - name=llm" and (row["seeds"], row["examples"]) == (3, 64)
    assert summary["scale"] == "half" and summary["n_seeds"] == 3 and summary["gates_pass"] is True
