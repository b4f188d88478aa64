"""Real model pairs as a grid: each arm is a public VLM and the LLM it was built on (both Hugging Face
checkpoint directories read from local paths), evaluated on the same text-only questions, so that
MLLM - base LLM is Kosmos-1's transfer comparison on models anyone has.

A grid file (experiments/real/<name>.yaml):

    pairs:                        # one (VLM, base LLM) pair per entry
      - name: llava-1.5-7b
        mllm: models/llava-1.5-7b-hf
        llm: models/vicuna-7b-v1.5
    tasks: [memorycolor, colorterms, relativesize, boolq]
    paraphrases: 6                # phrasings per question (a task with fewer uses all it has)
    data: {memorycolor: data/memory_color/memory_color_data.csv}   # else each task's default path
    limit: null                   # the first N examples of each task
    batch_size: 8
    device: cpu

Each arm is evaluated by `toolkit.eval.runner.evaluate` into RESULTS/real/<grid>/<pair>/<mllm|llm>/eval
(resumable: finished cells are read back). The comparison of a pair on a task is paired over
examples, with the phrasings as a second random factor crossed with the examples (the same
two-way model as seeds x examples in `toolkit.grid.stats`): the effect generalises to other
questions like these and to other phrasings of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.config import ConfigError, read_yaml
from toolkit.files import atomic_path
from toolkit.grid.stats import paired_comparison

ARMS = ("mllm", "llm")


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    mllm: str  # the VLM's directory
    llm: str  # its base LLM's directory


@dataclasses.dataclass(frozen=True)
class RealGrid:
    path: Path
    name: str
    pairs: tuple[Pair, ...]
    tasks: tuple[str, ...]
    paraphrases: int = 1
    data: dict[str, str] = dataclasses.field(default_factory=dict)
    limit: int | None = None
    batch_size: int = 8
    device: str = "cpu"

    def arm_dir(self, results: str | os.PathLike | None, pair: Pair, arm: str) -> Path:
        return self.results_dir(results) / pair.name / arm

    def results_dir(self, results: str | os.PathLike | None) -> Path:
        """RESULTS/real/<grid>: beside the training grids' directories, never among them."""
        return Path(results or "results") / "real" / self.name


KEYS = {f.name for f in dataclasses.fields(RealGrid)} - {"path", "name"}


def is_real_grid(path: str | os.PathLike) -> bool:
    """A grid file of real model pairs (a `pairs:` list) rather than of training runs."""
    data = read_yaml(Path(path))
    return isinstance(data, dict) and "pairs" in data


def load_real_grid(path: str | os.PathLike, data: dict[str, str] | None = None) -> RealGrid:
    """Read and check a real-pairs grid file; `data` (TASK -> PATH, e.g. from --data) overrides its `data:`."""
    from toolkit.eval.tasks import TASKS

    path = Path(path)
    raw = read_yaml(path)
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(KEYS))}")
    pairs = []
    for i, entry in enumerate(raw.get("pairs") or []):
        if not isinstance(entry, dict) or set(entry) != {"name", "mllm", "llm"}:
            raise ConfigError(f"{path}: pairs[{i}] must have exactly the keys name, mllm, llm; got {entry!r}")
        pairs.append(Pair(str(entry["name"]), str(entry["mllm"]), str(entry["llm"])))
    if not pairs:
        raise ConfigError(f"{path}: `pairs` lists no (name, mllm, llm) pair")
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: pair names repeat ({', '.join(names)}); each pair needs its own name")
    tasks = tuple(raw.get("tasks") or ())
    if not tasks:
        raise ConfigError(f"{path}: `tasks` lists no task; see `xmt eval --list`")
    for task in tasks:
        TASKS.get(task)  # unknown names fail here, listing the valid ones
    merged = {**(raw.get("data") or {}), **(data or {})}
    stray = sorted(set(merged) - set(tasks))
    if stray:
        raise ConfigError(f"{path}: data for {', '.join(stray)}, which is not among the tasks ({', '.join(tasks)})")
    paraphrases = raw.get("paraphrases", 1)
    if not isinstance(paraphrases, int) or paraphrases < 1:
        raise ConfigError(f"{path}: paraphrases={paraphrases!r}; valid: an integer >= 1")
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{path}: limit={limit!r}; valid: an integer >= 1 or null")
    return RealGrid(
        path,
        path.name.removesuffix(".yaml").removesuffix(".yml"),
        tuple(pairs),
        tasks,
        paraphrases,
        merged,
        limit,
        int(raw.get("batch_size", 8)),
        str(raw.get("device", "cpu")),
    )


def run_real_grid(
    grid: RealGrid, results: str | os.PathLike | None = None, echo: Callable[[str], None] = print
) -> None:
    """Evaluate both arms of every pair on every task in every phrasing (finished cells are kept)."""
    from toolkit.eval.runner import evaluate
    from toolkit.families import is_hf_dir

    for pair in grid.pairs:
        for arm in ARMS:
            where = getattr(pair, arm)
            if not is_hf_dir(where):
                raise ConfigError(
                    f"{grid.path}: pair {pair.name}: {arm} {where} is not a Hugging Face checkpoint directory"
                )
    for pair in grid.pairs:
        for arm in ARMS:
            echo(f"{pair.name} / {arm}: {getattr(pair, arm)}")
            evaluate(
                getattr(pair, arm),
                list(grid.tasks),
                limit=grid.limit,
                data=grid.data,
                out=grid.arm_dir(results, pair, arm) / "eval",
                batch_size=grid.batch_size,
                device=grid.device,
                echo=lambda line: echo(f"  {line}"),
                paraphrases=grid.paraphrases,
            )


def _phrasings(eval_dir: Path, task: str) -> dict[int, tuple[dict[str, float], float | None]]:
    """Per phrasing of `task` stored in `eval_dir` (zero-shot cells): its per-example scores and its
    Yes-rate (None unless the task reports one)."""
    from toolkit.eval.runner import cell_name

    out = {}
    for result in sorted(eval_dir.glob(f"{task}*.json")):
        record = json.loads(result.read_text())
        p = record.get("paraphrase", 0)
        if record.get("task") != task or record.get("shots") != 0 or result.stem != cell_name(task, 0, "none", p):
            continue
        samples = eval_dir / f"{result.stem}.samples.jsonl"
        scores = {str(s["id"]): float(s["score"]) for s in map(json.loads, samples.read_text().splitlines())}
        out[p] = (scores, record.get("yes_rate"))
    return out


def _mean_yes_rate(phrasings: dict) -> float:
    rates = [rate for _, rate in phrasings.values() if rate is not None]
    return float(np.mean(rates)) if rates else float("nan")


def real_comparisons(grid: RealGrid, results: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per (pair, task): each arm's mean over phrasings and examples, MLLM - LLM with its
    95% CI and p-value (examples and phrasings crossed), the Yes-rates of Yes/No tasks, and how many
    phrasings and examples the comparison holds. Pairs or tasks not evaluated yet are left out."""
    rows = []
    for pair in grid.pairs:
        for task in grid.tasks:
            stored = {arm: _phrasings(grid.arm_dir(results, pair, arm) / "eval", task) for arm in ARMS}
            scores = {arm: {p: sc for p, (sc, _) in found.items()} for arm, found in stored.items()}
            phrasings = sorted(set(scores["mllm"]) & set(scores["llm"]))
            if not phrasings:
                continue
            ids = sorted(set.intersection(*(set(scores[arm][p]) for arm in ARMS for p in phrasings)))
            if not ids:
                continue
            a = np.array([[scores["mllm"][p][i] for i in ids] for p in phrasings])
            b = np.array([[scores["llm"][p][i] for i in ids] for p in phrasings])
            comp = paired_comparison(a, b)
            rows.append(
                {
                    "grid": grid.name,
                    "pair": pair.name,
                    "task": task,
                    "mllm": float(a.mean()),
                    "llm": float(b.mean()),
                    "effect": comp.effect,
                    "ci_lo": comp.ci95[0],
                    "ci_hi": comp.ci95[1],
                    "p": comp.p_value,
                    "phrasings": len(phrasings),
                    "examples": len(ids),
                    "yes_rate_mllm": _mean_yes_rate(stored["mllm"]),
                    "yes_rate_llm": _mean_yes_rate(stored["llm"]),
                }
            )
    return pd.DataFrame(rows)


def format_real_table(df: pd.DataFrame) -> str:
    """The comparisons as a markdown table (accuracy in %, the difference with its CI and p)."""
    if df.empty:
        return "no evaluated pairs yet"
    header = "| pair | task | MLLM | base LLM | MLLM − LLM [95% CI] | p | phrasings × examples | Yes-rate MLLM / LLM |"
    lines = [header, "|" + "---|" * 8]
    for r in df.itertuples():
        yes = "–" if np.isnan(r.yes_rate_mllm) else f"{100 * r.yes_rate_mllm:.0f}% / {100 * r.yes_rate_llm:.0f}%"
        ci = "" if np.isnan(r.ci_lo) else f" [{100 * r.ci_lo:+.1f}, {100 * r.ci_hi:+.1f}]"
        lines.append(
            f"| {r.pair} | {r.task} | {100 * r.mllm:.1f} | {100 * r.llm:.1f} | {100 * r.effect:+.1f}{ci} | "
            f"{r.p:.3g} | {r.phrasings} × {r.examples} | {yes} |"
        )
    return "\n".join(lines)


def write_real_table(grid: RealGrid, results: str | os.PathLike | None = None) -> tuple[pd.DataFrame, Path]:
    """The comparisons as RESULTS/real/<grid>/comparisons.csv (written under a temporary name first)."""
    df = real_comparisons(grid, results)
    target = grid.results_dir(results) / "comparisons.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, ".csv") as tmp:
        df.to_csv(tmp, index=False)
    return df, target
