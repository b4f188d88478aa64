"""Real model pairs as a grid (toolkit.grid.real): both models of each (VLM, base LLM) pair on the same
text questions in several phrasings, compared paired over examples x phrasings; tiny random pairs
written here with save_pretrained, the benchmarks' files in their published formats."""

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.config import ConfigError
from toolkit.eval.tasks import TASKS
from toolkit.grid.real import load_real_grid, real_comparisons
from toolkit.grid.stats import paired_comparison


@pytest.fixture(scope="module")
def pairs(hf_dirs):
    return {
        "llava": hf_dirs["llava"],
        "qwen2_vl": hf_dirs["qwen2_vl"],
        "llama": hf_dirs["causal_lm"],
        "llama-2": hf_dirs["causal_lm-2"],
    }


def benchmark_files(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "memory_color_data.csv").write_text(
        "Index,Descriptor,Item,Color\n1,,lemon,yellow\n2,ripe,tomato,red\n3,,grass,green\n4,,sky,blue\n5,,coal,black\n"
    )
    (root / "color-concrete-objects.csv").write_text("object,color\nbanana,yellow\nsnow,white\ncrow,black\n")
    (root / "sizePairsFull.txt").write_text("elephant mouse\ntiger cat\nhouse apple\n")
    return {
        "memorycolor": root / "memory_color_data.csv",
        "colorterms": root / "color-concrete-objects.csv",
        "relativesize": root / "sizePairsFull.txt",
    }


def write_grid(path, pairs, data, paraphrases=3):
    grid = {
        "pairs": [
            {"name": "llava", "mllm": str(pairs["llava"]), "llm": str(pairs["llama"])},
            {"name": "qwen2-vl", "mllm": str(pairs["qwen2_vl"]), "llm": str(pairs["llama-2"])},
            {"name": "same-model", "mllm": str(pairs["llama"]), "llm": str(pairs["llama"])},
        ],
        "tasks": ["memorycolor", "colorterms", "relativesize"],
        "paraphrases": paraphrases,
        "data": {"memorycolor": str(data["memorycolor"]), "colorterms": str(data["colorterms"])},
        "batch_size": 4,
    }
    path.write_text(yaml.safe_dump(grid))
    return path


def test_the_real_pairs_grid_runs_end_to_end_with_a_paired_row_per_pair(pairs, tmp_path):
    data = benchmark_files(tmp_path / "data")
    grid_file = write_grid(tmp_path / "pairs.yaml", pairs, data)
    results = tmp_path / "results"
    args = ["grid", "run", str(grid_file), "--results", str(results), "--data", f"relativesize={data['relativesize']}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = json.loads(json.dumps(real_comparisons(load_real_grid(grid_file), results).to_dict("records")))
    assert [(r["pair"], r["task"]) for r in table] == [
        (p, t) for p in ("llava", "qwen2-vl", "same-model") for t in ("memorycolor", "colorterms", "relativesize")
    ]
    for r in table:
        assert r["phrasings"] == 3
        assert r["examples"] == {"memorycolor": 5, "colorterms": 3, "relativesize": 6}[r["task"]]  # both orders
        # the row is the paired comparison of the stored per-example scores, phrasings x examples
        arms = {}
        for arm in ("mllm", "llm"):
            eval_dir = results / "real" / "pairs" / r["pair"] / arm / "eval"
            rows = []
            for p, cell in enumerate([r["task"], f"{r['task']}-p1", f"{r['task']}-p2"]):
                samples = [json.loads(line) for line in (eval_dir / f"{cell}.samples.jsonl").read_text().splitlines()]
                record = json.loads((eval_dir / f"{cell}.json").read_text())
                assert record["prompt"] == TASKS.get(r["task"]).templates[p] and record["paraphrase"] == p
                rows.append([s["score"] for s in sorted(samples, key=lambda s: s["id"])])
            arms[arm] = np.array(rows)
        expected = paired_comparison(arms["mllm"], arms["llm"])
        assert r["mllm"] == pytest.approx(arms["mllm"].mean()) and r["llm"] == pytest.approx(arms["llm"].mean())
        assert r["effect"] == pytest.approx(expected.effect) and r["ci_lo"] == pytest.approx(expected.ci95[0])
        if r["pair"] == "same-model":  # a model against itself: no effect, and no interval around it
            assert r["effect"] == 0 and r["ci_lo"] == r["ci_hi"] == 0
        if r["task"] == "relativesize":  # the Yes-rate of each arm, from its predictions
            assert 0 <= r["yes_rate_mllm"] <= 1 and 0 <= r["yes_rate_llm"] <= 1
        else:
            assert np.isnan(r["yes_rate_mllm"])
    # the phrasings are different prompts of the same examples
    eval_dir = results / "real" / "pairs" / "llava" / "mllm" / "eval"
    prompts = {
        json.loads((eval_dir / f"memorycolor{s}.samples.jsonl").read_text().splitlines()[0])["prompt"]
        for s in ("", "-p1", "-p2")
    }
    assert len(prompts) == 3 and all("lemon" in p for p in prompts)
    # the table command prints one paired row per pair and task, and writes the CSV
    result = CliRunner().invoke(main, ["grid", "table", str(grid_file), "--results", str(results)])
    assert result.exit_code == 0, result.output
    assert result.output.count("| llava | ") == 3 and "3 × 6" in result.output
    assert (results / "real" / "pairs" / "comparisons.csv").is_file()
    # a rerun finds every cell done
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "done already, skipped" in result.output
    # the paper's table 16 and the transfer-effect figure hold a row per pair beside the world's
    import pandas as pd

    from paper_figures import fig_transfer_effects, table16_visual_commonsense
    from paper_figures.common import Context

    (tmp_path / "experiments" / "paper").mkdir(parents=True)
    (tmp_path / "experiments" / "real").mkdir()
    (tmp_path / "experiments" / "real" / "pairs.yaml").write_text(grid_file.read_text())
    ctx = Context(results, tmp_path / "paper", tmp_path / "experiments" / "paper")
    table16_visual_commonsense.build(ctx)
    table = (tmp_path / "paper" / "table16_visual_commonsense.md").read_text()
    rows = {r["pair"]: r for r in table16_rows(table)}
    assert set(rows) == {"llava", "qwen2-vl", "same-model"} and "+0.0 [+0.0, +0.0]" in rows["same-model"]["row"]
    fig_transfer_effects.build(ctx)
    effects = pd.read_csv(tmp_path / "paper" / "fig_transfer_effects.csv")
    assert len(effects) == 9 and set(effects["comparison"]) == {f"{p}: VLM − base LLM" for p in rows}
    assert (tmp_path / "paper" / "fig_transfer_effects.png").is_file()


def table16_rows(markdown):
    """The real pairs' rows of table 16: {pair, row}."""
    out = []
    for line in markdown.splitlines():
        if "VLM − base LLM — " in line:
            pair = line.split("VLM − base LLM — ")[1].split(" (real models")[0]
            out.append({"pair": pair, "row": line})
    return out


def test_a_real_pairs_grid_file_is_checked_before_any_work(pairs, tmp_path):
    data = benchmark_files(tmp_path / "data")
    good = yaml.safe_load(write_grid(tmp_path / "g.yaml", pairs, data).read_text())
    cases = [
        ({**good, "pairz": []}, r"unknown key\(s\) pairz"),
        ({**good, "pairs": []}, r"lists no \(name, mllm, llm\) pair"),
        ({**good, "pairs": [{"name": "a", "mllm": "x"}]}, r"pairs\[0\] must have exactly the keys name, mllm, llm"),
        ({**good, "tasks": ["memorycolour"]}, r"memorycolour"),
        ({**good, "paraphrases": 0}, r"paraphrases=0; valid: an integer >= 1"),
        ({**good, "data": {"boolq": "x"}}, r"data for boolq, which is not among the tasks"),
    ]
    for i, (content, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump(content))
        with pytest.raises(Exception, match=message):
            load_real_grid(path)
    path = tmp_path / "notdir.yaml"
    path.write_text(yaml.safe_dump({**good, "pairs": [{"name": "a", "mllm": str(tmp_path), "llm": str(tmp_path)}]}))
    result = CliRunner().invoke(main, ["grid", "run", str(path), "--results", str(tmp_path / "r")])
    assert result.exit_code != 0 and "is not a Hugging Face checkpoint directory" in result.output
    for command in ("status", "learnability"):  # commands about training cells say what such a file is
        result = CliRunner().invoke(main, ["grid", command, str(path)])
        assert result.exit_code != 0 and "a grid of real model pairs" in result.output
    with pytest.raises(ConfigError):
        from toolkit.eval.runner import evaluate

        evaluate(pairs["llama"], ["memorycolor"], data={"memorycolor": str(data["memorycolor"])}, paraphrases=0)
