import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from toolkit.cli import main
from toolkit.eval.examples import Example
from toolkit.eval.prompts import fill, with_demos
from toolkit.eval.runner import load_checkpoint
from toolkit.eval.tasks import TASKS, WORLD_TASKS
from toolkit.registry import UnknownNameError


def _img(v):
    return Image.new("RGB", (8, 8), (v, v, v))


def test_few_shot_places_demos_with_images_before_the_query_and_ablations_touch_only_demo_images():
    spec = TASKS.get("world-vqa")
    demos = [Example(str(i), [_img(10 * i)], {"question": f"q{i}?"}, f"a{i}", answers=[f"a{i}"]) for i in range(3)]
    query = Example("q", [_img(250)], {"question": "what?"}, "x")
    demo_parts = [fill(spec.prompt, d) + [d.answers[0]] for d in demos]
    base = with_demos(fill(spec.prompt, query), demo_parts, "none", np.random.default_rng(0), 8)
    texts = [p for p in base if isinstance(p, str)]
    assert texts == [
        "Question: q0? Answer:",
        "a0",
        "Question: q1? Answer:",
        "a1",
        "Question: q2? Answer:",
        "a2",
        "Question: what? Answer:",
    ]
    images = [p for p in base if isinstance(p, Image.Image)]
    assert [im.getpixel((0, 0))[0] for im in images] == [0, 10, 20, 250]
    assert (
        isinstance(base[0], Image.Image) and base[-2].getpixel((0, 0))[0] == 250
    )  # query image right before its question
    for ablation in ("text", "shuffle", "blank"):
        variant = with_demos(fill(spec.prompt, query), demo_parts, ablation, np.random.default_rng(0), 8)
        assert [p for p in variant if isinstance(p, str)] == texts  # the words never change
        v_images = [p for p in variant if isinstance(p, Image.Image)]
        assert v_images[-1].getpixel((0, 0))[0] == 250 and variant[-2] is images[-1]  # the query keeps its image
        demo_pixels = [im.getpixel((0, 0))[0] for im in v_images[:-1]]
        if ablation == "text":
            assert demo_pixels == []
        elif ablation == "blank":
            assert demo_pixels == [128, 128, 128]
        else:
            assert sorted(demo_pixels) == [0, 10, 20] and demo_pixels != [0, 10, 20]


def test_batched_ranking_equals_one_at_a_time(random_run):
    loaded = load_checkpoint(random_run, batch_size=32)
    spec = TASKS.get("world-colour")
    from toolkit.data.shards import SkipLog
    from toolkit.eval.examples import LOADERS

    examples = LOADERS.get(spec.loader)(
        str(load_checkpoint(random_run).world) + "/eval/visual_commonsense_colour.jsonl", SkipLog()
    )[:30]
    requests = [(fill(spec.prompt, ex), c) for ex in examples for c in spec.candidates]
    batched = loaded.adapter.rank(requests)
    loaded.adapter.batch_size = 1
    single = loaded.adapter.rank(requests)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(batched, single)) <= 1e-5


def test_every_world_task_runs_through_xmt_eval_and_random_weights_score_near_chance(random_run):
    result = CliRunner().invoke(main, ["eval", str(random_run), "--tasks", "world"])
    assert result.exit_code == 0, result.output
    eval_dir = random_run / "eval"
    chance = {
        "world-colour": 1 / 11,
        "world-size": 0.5,
        "world-rendered-sentiment": 0.5,
        "world-raven": 1 / 6,
        "world-language-mc": 0.25,
    }
    for name in WORLD_TASKS:
        record = json.loads((eval_dir / f"{name}.json").read_text())
        assert record["n"] > 0 and record["ci95"][0] <= record["value"] <= record["ci95"][1]
        samples = (eval_dir / f"{name}.samples.jsonl").read_text().splitlines()
        assert len(samples) == record["n"]
        if name in chance:
            p, n = chance[name], record["n"]
            assert abs(record["value"] - p) <= 3.5 * np.sqrt(p * (1 - p) / n) + 1e-9, (name, record["value"])
    colour = json.loads((eval_dir / "world-colour.json").read_text())
    assert set(colour["groups"]) == {"grounded", "vision_only"}
    assert 0.0 <= json.loads((eval_dir / "world-size.json").read_text())["yes_rate"] <= 1.0
    rerun = CliRunner().invoke(main, ["eval", str(random_run), "--tasks", "world-colour"])
    assert "done already, skipped" in rerun.output


def test_few_shot_cells_and_trials_are_written(random_run, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "eval",
            str(random_run),
            "--tasks",
            "world-vqa",
            "--shots",
            "0,2",
            "--trials",
            "2",
            "--ablations",
            "none,blank",
            "--limit",
            "6",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["world-vqa-2shot-blank.json", "world-vqa-2shot.json", "world-vqa.json"]
    record = json.loads((tmp_path / "world-vqa-2shot.json").read_text())
    assert len(record["trial_values"]) == 2 and record["shots"] == 2 and record["config"]["trials"] == 2
    assert record["task"] == "world-vqa" and record["config"]["task"]["prompt"] == "<image>Question: {question} Answer:"
    first = json.loads((tmp_path / "world-vqa-2shot.samples.jsonl").read_text().splitlines()[0])
    assert first["prompt"].count("<image>") == 3 and first["prompt"].count("Question:") == 3


def test_eval_errors_are_clear(random_run, tmp_path):
    bad = CliRunner().invoke(main, ["eval", str(random_run), "--tasks", "coco-karpathy-nope"])
    assert bad.exit_code != 0 and "unknown task 'coco-karpathy-nope'; available:" in bad.output
    missing = CliRunner().invoke(
        main, ["eval", str(random_run), "--tasks", "world-vqa", "--data", f"world-vqa={tmp_path}/none.jsonl"]
    )
    assert missing.exit_code != 0 and "eval data not found" in missing.output
    with pytest.raises(UnknownNameError):
        TASKS.get("nope")


def test_eval_list_names_every_task_with_its_family_scoring_and_data():
    out = CliRunner().invoke(main, ["eval", "--list"])
    assert out.exit_code == 0
    lines = {line.split()[0]: line for line in out.output.splitlines()[1:]}
    assert set(lines) == set(TASKS.names()) and len(lines) > 30
    assert lines["world-vqa"].split()[1:4] == ["vqa", "generate", "/"]
    assert "{world}/eval/vqa.jsonl" in lines["world-vqa"] and "data/wsc273/WSCollection.xml" in lines["winograd"]
    assert lines["raven-iq"].split()[5] == "no" and lines["winograd"].split()[5] == "yes"
    assert CliRunner().invoke(main, ["eval"]).exit_code != 0


def test_a_few_shot_cell_of_a_task_without_demonstrations_says_it_is_skipped(random_run, tmp_path):
    out = CliRunner().invoke(
        main,
        ["eval", str(random_run), "--tasks", "world-raven", "--shots", "0,2", "--limit", "2", "--out", str(tmp_path)],
    )
    assert out.exit_code == 0, out.output
    assert "world-raven-2shot: skipped, world-raven has no few-shot form" in out.output
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["world-raven.json"]


def test_evaluation_during_training_writes_results_per_step(small_world, tmp_path):
    from conftest import run_dict

    from toolkit.config import ConfigError
    from toolkit.eval.runner import evaluator
    from toolkit.train.config import run_config_from_dict
    from toolkit.train.loop import run_training

    cfg = run_config_from_dict(
        run_dict(small_world, steps=4, eval={"every": 2, "tasks": ["world-colour", "world-size"], "limit": 10})
    )
    with pytest.raises(ConfigError, match="eval.every=2 asks for evaluation during training, but no evaluator"):
        run_training(cfg, tmp_path / "r")  # the caller hands evaluation in; asked for and not given is an error
    assert not (tmp_path / "r").exists()
    run_training(cfg, tmp_path / "r", evaluate=evaluator(cfg, tmp_path / "r"))
    for step in (2, 4):
        record = json.loads((tmp_path / "r" / "eval" / f"step-{step:07d}" / "world-colour.json").read_text())
        assert record["step"] == step and record["n"] == 10
    # Evaluating does not disturb training: the same run without it has the same losses.
    run_training(run_config_from_dict(run_dict(small_world, steps=4)), tmp_path / "plain")
    losses = [
        [json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("r", "plain")
    ]
    assert losses[0] == losses[1]


def test_a_text_only_model_skips_tasks_that_show_images(small_world, tmp_path):
    from conftest import TINY_MODEL, run_dict

    from toolkit.eval.runner import evaluate
    from toolkit.train.config import run_config_from_dict
    from toolkit.train.loop import run_training

    data = run_dict(small_world, steps=1, model={**TINY_MODEL, "vision": {"kind": "none"}})
    run_training(run_config_from_dict(data), tmp_path / "llm")
    lines = []
    records = evaluate(tmp_path / "llm", ["world-vqa", "world-raven", "world-colour"], limit=5, echo=lines.append)
    assert [r["task"] for r in records] == ["world-colour"]
    assert sum("skipped, the model has no vision tower" in line for line in lines) == 2
    assert not (tmp_path / "llm" / "eval" / "world-vqa.json").exists()
