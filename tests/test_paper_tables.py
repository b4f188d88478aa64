"""The paper tables checked against their data: from a stored-results fixture of four paper grids,
every "ours" cell (mean, interval, paired effect, p) equals what the results give when computed
here independently, and a result that is not stored is shown as missing with its reason."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from paper_figures.build import build_all
from toolkit.eval.runner import cell_name
from toolkit.grid.spec import load_grid, select_arm
from toolkit.grid.stats import paired_comparison

ROOT = Path(__file__).resolve().parents[1]
GRIDS = ROOT / "experiments" / "paper"
TEXT_TASKS = {"world-colour", "world-colour-latent", "world-size", "world-language-mc"}  # a text-only arm's
GROUPED = {g: ("vision_only", "grounded") for g in ("world-colour", "world-colour-latent", "world-size")}
STUDIES = ROOT / "experiments" / "studies"
N_EXAMPLES = 30


def _scores(rng, task: str, arm_skill: float, n: int) -> np.ndarray:
    if task == "world-captioning":  # CIDEr: unbounded above
        return np.round(rng.gamma(2.0, arm_skill, n), 4)
    return (rng.random(n) < arm_skill).astype(float)


def _write_results(grid, root: Path, rng, steps=()) -> dict:
    """Status, eval json and samples of every cell, as `xmt grid run` writes them (with `steps`, also
    its run's evaluations during training at those steps); returns {(label, eval cell, seed):
    {example id: (score, group)}}, and {(label, eval cell, seed, step): ...} for those."""
    truth = {}
    skills = {step: {} for step in (None, *steps)}  # an arm's skill per eval cell, the same across seeds
    for cell in grid.cells():
        cell_dir = root / grid.name / cell.id
        (cell_dir / "status.json").parent.mkdir(parents=True)
        (cell_dir / "status.json").write_text(json.dumps({"state": "done"}))
        for step in (None, *steps):
            directory = cell_dir / "eval" if step is None else cell_dir / "run" / "eval" / f"step-{step:07d}"
            directory.mkdir(parents=True)
            found = _write_evals(grid, cell, directory, rng, skills[step])
            truth.update({(*k, *(() if step is None else (step,))): v for k, v in found.items()})
    return truth


def _write_evals(grid, cell, directory: Path, rng, skills: dict) -> dict:
    """One evaluation's json and samples of every task of a cell; returns {(label, eval cell, seed):
    {example id: (score, group)}}."""
    truth = {}
    text_only = cell.config.model.vision.kind == "none"
    for task in grid.spec.tasks:
        if text_only and task not in TEXT_TASKS:
            continue  # the evaluation skips image tasks for a text-only arm
        for k in grid.spec.shots:
            for ablation in grid.spec.ablations if k > 0 else ["none"]:
                ev = cell_name(task, k, ablation)
                skill = skills.setdefault((cell.label, ev), rng.uniform(0.2, 0.8))
                scores = _scores(rng, task, skill, N_EXAMPLES)
                groups = [GROUPED[task][i % 2] if task in GROUPED else None for i in range(N_EXAMPLES)]
                samples = [
                    {"id": f"ex{i}", "score": float(s), "group": g, "trial": 0}
                    for i, (s, g) in enumerate(zip(scores, groups))
                ]
                by_group = {}
                for g in sorted({g for g in groups if g}):
                    vals = [s for s, gg in zip(scores, groups) if gg == g]
                    by_group[g] = {"value": float(np.mean(vals)), "n": len(vals)}
                record = {
                    "task": task,
                    "cell": ev,
                    "shots": k,
                    "ablation": ablation,
                    "metric": "cider" if task == "world-captioning" else "accuracy",
                    "value": float(scores.mean()),
                    "n": N_EXAMPLES,
                    "groups": by_group,
                    "step": 100,
                }
                (directory / f"{ev}.json").write_text(json.dumps(record))
                (directory / f"{ev}.samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
                truth[(cell.label, ev, cell.seed)] = {s["id"]: (s["score"], s["group"]) for s in samples}
    return truth


def _arm_cell(truth, label, ev, group, seeds, scale, bounded=True) -> str:
    """mean [lo, hi] x scale, from the per-seed means, with scipy's t directly."""
    if any((label, ev, s) not in truth for s in seeds):
        return "missing"
    per_seed = []
    for s in seeds:
        vals = [v for v, g in truth[(label, ev, s)].values() if group in (None, g)]
        per_seed.append(float(np.mean(vals)))
    m, sd = float(np.mean(per_seed)), float(np.std(per_seed, ddof=1))
    half = stats.t.ppf(0.975, len(seeds) - 1) * sd / math.sqrt(len(seeds))
    lo, hi = max(m - half, 0.0), (min(m + half, 1.0) if bounded else m + half)
    return f"{m * scale:.1f} [{lo * scale:.1f}, {hi * scale:.1f}]"


def _diff_cell(truth, la, ea, lb, eb, group, seeds, scale) -> str:
    if any((lab, ev, s) not in truth for lab, ev in ((la, ea), (lb, eb)) for s in seeds):
        return "missing"
    ids = sorted(i for i, (_, g) in truth[(la, ea, seeds[0])].items() if group in (None, g))
    a = np.array([[truth[(la, ea, s)][i][0] for i in ids] for s in seeds])
    b = np.array([[truth[(lb, eb, s)][i][0] for i in ids] for s in seeds])
    comp = paired_comparison(a, b)
    sign = "+" if comp.effect >= 0 else "−"
    lo, hi = comp.ci95
    return f"{sign}{abs(comp.effect) * scale:.1f} [{lo * scale:+.1f}, {hi * scale:+.1f}] p={comp.p_value:.2g}"


def _table(path: Path) -> tuple[list[str], dict[str, list[str]], list[str]]:
    lines = path.read_text().splitlines()
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines if line.startswith("| ")]
    notes = [line[2:] for line in lines if line.startswith("- ")]
    return rows[0], {r[0]: r for r in rows[1:]}, notes


def _check(out, name, expected_rows):
    """expected_rows: {row name: {column header: expected cell or 'missing'}}."""
    header, rows, notes = _table(out / f"{name}.md")
    missing_notes = {n.split(":", 1)[0]: n for n in notes if n.startswith("m") and ": missing, " in n}
    checked = 0
    for row_name, cells in expected_rows.items():
        assert row_name in rows, (name, row_name, list(rows))
        row = rows[row_name]
        for col, want in cells.items():
            got = row[header.index(col)]
            if want == "missing":
                assert got.startswith("– (m"), (name, row_name, col, got)
                assert got[3:-1] in missing_notes, (name, got)  # the reason is printed
            else:
                assert got == want, (name, row_name, col, got, want)
            checked += 1
    return checked, missing_notes


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    truth = {}
    grids = {}
    for name in ("visual-commonsense", "instruction-tuning", "language-tasks", "chain-of-thought"):
        grids[name] = load_grid(GRIDS / f"{name}.yaml")
        truth.update(_write_results(grids[name], tmp / "results", rng))
    for name in ("transfer-direction", "transfer-width"):  # two of the transfer studies have results
        grids[name] = load_grid(STUDIES / f"{name}.yaml")
        truth.update(_write_results(grids[name], tmp / "results", rng))
    # the chosen point, evaluated during training at steps 450 and 900 (its last, 1350, is its final
    # evaluation; its arms' labels are visual-commonsense's: its truth is kept apart)
    grids["transfer-point"] = load_grid(STUDIES / "transfer-point.yaml")
    truth["transfer-point"] = _write_results(grids["transfer-point"], tmp / "results", rng, steps=(450, 900))
    build_all(tmp / "results", tmp / "out", GRIDS, echo=lambda s: None, analysis=tmp / "analysis")
    return tmp / "out", grids, truth


def test_table16_ours_cells_equal_their_data(built):
    out, grids, truth = built
    grid = grids["visual-commonsense"]
    cells = grid.cells()
    mllm, llm = select_arm(cells, "name=mllm"), select_arm(cells, "name=llm")
    seeds = grid.spec.seeds
    cols = {
        "world size (vision-only)": ("world-size", "vision_only"),
        "world colour (vision-only)": ("world-colour", "vision_only"),
        "world colour (grounded)": ("world-colour", "grounded"),
    }
    expected = {}
    for label, row in ((mllm, "MLLM"), (llm, "LLM")):
        cells_ = {h: _arm_cell(truth, label, ev, g, seeds, 100) for h, (ev, g) in cols.items()}
        cells_.update({h: "missing" for h in ("RelativeSize", "MemoryColor", "ColorTerms")})  # no data files given
        expected[f"{row} — ours, tiny world, 3 seeds"] = cells_
    diff = {h: _diff_cell(truth, mllm, ev, llm, ev, g, seeds, 100) for h, (ev, g) in cols.items()}
    diff.update({h: "missing" for h in ("RelativeSize", "MemoryColor", "ColorTerms")})
    expected["MLLM − LLM — ours (paired, 3 seeds)"] = diff
    checked, notes = _check(out, "table16_visual_commonsense", expected)
    assert checked == 18
    assert any("no stored result of arm" in n and "memorycolor" in n for n in notes.values())


def test_table14_ours_cells_equal_their_data(built):
    out, grids, truth = built
    grid = grids["instruction-tuning"]
    cells = grid.cells()
    on, off = select_arm(cells, "name=instruct"), select_arm(cells, "name=no-instruct")
    seeds = grid.spec.seeds
    cols = {
        "world captioning CIDEr": "world-captioning",
        "world VQA": "world-vqa",
        "world Raven": "world-raven",
        "world language→vision": "world-language-to-vision",
    }
    expected = {}
    for label, row in ((on, "with instruction tuning"), (off, "without")):
        expected[f"{row} — ours, tiny world, 3 seeds"] = {
            h: _arm_cell(truth, label, ev, None, seeds, 100, bounded=ev != "world-captioning") for h, ev in cols.items()
        }
    expected["with − without — ours (paired, 3 seeds)"] = {
        h: _diff_cell(truth, on, ev, off, ev, None, seeds, 100) for h, ev in cols.items()
    }
    assert _check(out, "table14_instruction_tuning", expected)[0] == 12


def test_table13_and_table09_ours_cells_equal_their_data(built):
    out, grids, truth = built
    grid = grids["language-tasks"]
    cells = grid.cells()
    mllm, llm = select_arm(cells, "name=mllm"), select_arm(cells, "name=llm")
    seeds = grid.spec.seeds
    cols = {
        "world 0-shot": "world-language-mc",
        "world 1-shot": "world-language-mc-1shot",
        "world 4-shot": "world-language-mc-4shot",
    }
    expected = {
        "MLLM — ours, tiny world, 3 seeds": {h: _arm_cell(truth, mllm, ev, None, seeds, 100) for h, ev in cols.items()},
        "LLM (same text) — ours, tiny world, 3 seeds": {
            h: _arm_cell(truth, llm, ev, None, seeds, 100) for h, ev in cols.items()
        },
        "MLLM − LLM — ours (paired, 3 seeds)": {
            h: _diff_cell(truth, mllm, ev, llm, ev, None, seeds, 100) for h, ev in cols.items()
        },
    }
    assert _check(out, "table13_language", expected)[0] == 9
    grid = grids["chain-of-thought"]
    (label,) = {c.label for c in grid.cells()}
    std, cot = "world-rendered-sentiment", "world-rendered-sentiment-cot"
    expected = {
        "Kosmos-style MLLM (instruction-tuned) — ours, tiny world, 3 seeds": {
            "world standard prompt": _arm_cell(truth, label, std, None, seeds, 100),
            "world chain-of-thought": _arm_cell(truth, label, cot, None, seeds, 100),
        },
        "CoT − standard — ours (paired, 3 seeds)": {
            "world chain-of-thought": _diff_cell(truth, label, cot, label, std, None, seeds, 100)
        },
    }
    assert _check(out, "table09_cot", expected)[0] == 3


def test_a_comparison_that_cannot_be_made_says_why(built, tmp_path):
    out, grids, truth = built
    _, rows, notes = _table(out / "table16_visual_commonsense.md")
    reasons = [n for n in notes if ": missing, " in n]
    assert reasons and all(len(n.splitlines()) == 1 for n in reasons)
    # Every numbered mark in the table has its note, and every note is used.
    marks = {c[3:-1] for r in rows.values() for c in r if c.startswith("– (m")}
    assert marks == {n.split(":", 1)[0] for n in reasons}


def test_transfer_phase_csv_equals_its_data_and_lists_every_level(built):
    """fig_transfer_phase: every compared level of every lever is a row (training steps: every step
    the chosen point's runs are evaluated at during training); a stored one carries the paired
    MLLM − LLM effect on vision-only colour and size (expressed) and colour (latent) computed from the
    samples; a level without results is listed with the reason."""
    import pandas as pd

    from paper_figures.fig_transfer_phase import LEVERS, STEPS

    out, grids, truth = built
    df = pd.read_csv(out / "fig_transfer_phase.csv", keep_default_na=False, dtype={"level": str})
    levels = sum(len(load_grid(STUDIES / f"{name}.yaml").spec.compare) for name, key, _ in LEVERS if key != STEPS)
    assert len(df) == 3 * (levels + 3) and set(df["kind"]) == {"expressed", "expressed size", "latent"}
    steps = df[df["lever"] == "transfer-point"]
    assert list(dict.fromkeys(steps["level"])) == ["450", "900", "1350"]
    done = df[df["missing"] == ""]
    assert set(done["lever"]) == {"transfer-direction", "transfer-width", "transfer-point"}
    assert len(done) == 3 * (3 + 3 + 3)  # the point's last step (1350) from its final evaluation
    assert all("no seed has finished cells" in m for m in df[df["missing"] != ""]["missing"])
    for r in done.itertuples():
        grid = grids[r.lever]
        step = int(r.level) if r.lever == "transfer-point" and r.level != "1350" else None
        point = r.lever == "transfer-point"
        pair = grid.spec.compare[0] if point else next(p for p in grid.spec.compare if p[0].endswith(f"={r.level}"))
        cells = grid.cells()
        a, b = select_arm(cells, pair[0]), select_arm(cells, pair[1])
        seeds = grid.spec.seeds
        t = truth["transfer-point"] if r.lever == "transfer-point" else truth
        at = () if step is None else (step,)
        ids = sorted(k for k, (_, g) in t[(a, r.eval, seeds[0], *at)].items() if g == "vision_only")
        sa = np.array([[t[(a, r.eval, s, *at)][i][0] for i in ids] for s in seeds])
        sb = np.array([[t[(b, r.eval, s, *at)][i][0] for i in ids] for s in seeds])
        comp = paired_comparison(sa, sb)
        assert math.isclose(float(r.effect), comp.effect, abs_tol=1e-6)
        assert math.isclose(float(r.ci_lo), comp.ci95[0], abs_tol=1e-6)
        assert float(r.p) == float(f"{comp.p_value:.4g}")  # 4 significant digits: a small p is not 0
        assert math.isclose(float(r.mllm) - float(r.llm), comp.effect, abs_tol=1e-6)
        assert float(r.seeds) == len(seeds) == (5 if point else 3)
        # the level's learnability gates, from the same results: here none pass (skills below 0.9, VQA
        # groups not stored), and each failing gate gives its mean over seeds
        grounded = np.mean(
            [np.mean([v for v, g in t[(a, "world-colour", s, *at)].values() if g == "grounded"]) for s in seeds]
        )
        gate = f"MLLM, text colour questions about grounded categories: {round(float(grounded), 4)}"
        assert r.gates_pass == "False" and gate in r.gates_failed.split("; ")
        assert "MLLM, image -> colour of vision-only categories (held-out renders): missing" in r.gates_failed
    assert (out / "fig_transfer_phase.png").stat().st_size > 10_000
    # The same rows as a markdown table: a row per lever and level (the lever named on its first), a
    # column per kind with each stored effect in points, and the level's gates.
    md, table, lever = (out / "fig_transfer_phase.md").read_text().splitlines(), {}, None
    for line in md[4:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        lever = cells[0].split("`")[1] if cells[0] else lever
        table[(lever, cells[1])] = cells
    assert list(table) == list(dict.fromkeys(zip(df["lever"], df["level"])))
    minus = lambda x: f"{x * 100:+.1f}".replace("-", "−")  # noqa: E731
    column = {"expressed": 4, "expressed size": 5, "latent": 6}
    for r in df.itertuples():
        cells = table[(r.lever, r.level)]
        if r.missing:
            assert cells[column[r.kind]] == "not run"
            continue
        effect = f"**{minus(float(r.effect))}** [{minus(float(r.ci_lo))}, {minus(float(r.ci_hi))}]"
        assert effect in cells[column[r.kind]] and cells[2] == str(int(float(r.seeds)))
        assert cells[3].startswith("fail: ") and r.gates_failed.split("; ")[0] in cells[3]  # no gate passes here


def test_a_curve_reads_each_evaluated_step_then_the_final_evaluation(built):
    """compare_curve on the chosen point: its steps 450 and 900 from the evaluations during training,
    then 1350 (the run's last step) from the final evaluation, each the paired comparison there."""
    from toolkit.grid.results import compare_curve

    out, grids, truth = built
    grid, t = grids["transfer-point"], truth["transfer-point"]
    curve = compare_curve(grid, out.parent / "results", [("world-colour", "vision_only")])
    assert curve["step"].tolist() == [450, 900, 1350] and set(curve["reason"]) == {""}
    cells = grid.cells()
    a, b = select_arm(cells, "name=mllm"), select_arm(cells, "name=llm")
    seeds = grid.spec.seeds
    for r in curve.itertuples():
        at = () if r.step == 1350 else (r.step,)
        ids = sorted(k for k, (_, g) in t[(a, "world-colour", seeds[0], *at)].items() if g == "vision_only")
        sa = np.array([[t[(a, "world-colour", s, *at)][i][0] for i in ids] for s in seeds])
        sb = np.array([[t[(b, "world-colour", s, *at)][i][0] for i in ids] for s in seeds])
        assert math.isclose(r.effect, paired_comparison(sa, sb).effect, abs_tol=1e-9) and r.seeds == 5
