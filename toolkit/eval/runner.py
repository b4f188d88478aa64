"""`evaluate(...)`: run tasks on one checkpoint, write `eval/<cell>.json` and `<cell>.samples.jsonl`.

A cell is (task, shots, demo ablation); trials redraw the demonstrations with new seeds. A cell's
trial is prompts (toolkit.eval.prompts) -> predictions (the task's scoring mode, toolkit.eval.modes)
-> per-example scores (its metric, toolkit.eval.metrics). Results carry the metric, a 95% CI over
examples, per-group values (e.g. vision-only vs grounded), the resolved task config and seeds. A
finished cell for the same checkpoint and settings is skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from toolkit.config import ConfigError, DataError
from toolkit.data.shards import SkipLog
from toolkit.data.tokenizer import load_tokenizer
from toolkit.eval.examples import LOADERS, Example, Prediction
from toolkit.eval.metrics import METRICS
from toolkit.eval.modes import MODES
from toolkit.eval.prompts import ABLATIONS, FewShotPrompts
from toolkit.eval.scoring import ModelAdapter
from toolkit.eval.tasks import TASKS, TaskSpec
from toolkit.files import write_atomic
from toolkit.model.build import load_model
from toolkit.train.config import RunConfig
from toolkit.train.rundir import find_checkpoint, image_transform, load_run


@dataclasses.dataclass
class Loaded:
    adapter: ModelAdapter  # or a Hugging Face family's adapter (toolkit.families): the same interface
    checkpoint: Path
    step: int
    world: str | None
    run_dir: Path | None


def load_checkpoint(
    path: str | os.PathLike,
    device: str = "cpu",
    batch_size: int = 16,
    world: str | os.PathLike | None = None,
    attention: str = "sdpa",
) -> Loaded:
    """A run directory (its last checkpoint), a checkpoint directory, or a Hugging Face checkpoint
    directory (config.json; its family from the model_type, toolkit.families) -> an adapter.
    `world` replaces the run's data.world (an imported or Hugging Face model has none); `attention`
    is a Hugging Face model's attention implementation ("eager" returns attention weights; xmt's own
    models recompute them eagerly when asked)."""
    try:
        torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device={device}: not a torch device; valid: cpu, cuda, cuda:N") from None
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no CUDA GPU is available here; valid: cpu")
    from toolkit.families import is_hf_dir, load_family

    if is_hf_dir(path):
        adapter = load_family(path, device=device, batch_size=batch_size, attention=attention)
        return Loaded(adapter, Path(path), 0, str(world) if world is not None else None, None)
    run_dir, checkpoint = find_checkpoint(path)
    cfg = load_run(run_dir)
    tokenizer = load_tokenizer(cfg.resolve(cfg.data.tokenizer), special_strings=cfg.data.special_tokens)
    model = load_model(checkpoint, device=device)
    step = json.loads((checkpoint / "state.json").read_text())["step"] if (checkpoint / "state.json").is_file() else 0
    adapter = ModelAdapter(model, tokenizer, image_transform(cfg), batch_size)
    return Loaded(adapter, checkpoint, step, str(world) if world is not None else cfg.data.world, run_dir)


def evaluator(cfg: RunConfig, run_dir: str | os.PathLike) -> Callable[[Path, int, str], None] | None:
    """Evaluation during training as `cfg.eval` asks, for `run_training(..., evaluate=...)`: the
    checkpoint just written is evaluated into `run_dir/eval/step-N/` (None when nothing is asked)."""
    if cfg.eval.every <= 0 or not cfg.eval.tasks:
        return None
    for task in cfg.eval.tasks:  # unknown names fail before any training
        TASKS.get(task)
    check_options(cfg.eval.shots, 1, cfg.eval.limit, ("none",), 16)

    def evaluate_checkpoint(checkpoint: Path, step: int, device: str) -> None:
        out = Path(run_dir) / "eval" / f"step-{step:07d}"
        evaluate(
            checkpoint,
            cfg.eval.tasks,
            cfg.eval.shots,
            limit=cfg.eval.limit,
            out=out,
            device=device,
            echo=lambda s: None,
        )

    return evaluate_checkpoint


def run_cell(
    adapter: ModelAdapter,
    spec: TaskSpec,
    examples: list[Example],
    shots: int,
    ablation: str,
    seed: int,
    image_size: int,
) -> tuple[list[float], list[dict], list[Prediction]]:
    """One trial of one cell: the per-example scores, the sample records and the predictions."""
    prompts = FewShotPrompts(spec, examples, shots, ablation, seed, image_size)
    predictions = MODES.get(spec.mode)(adapter, spec, examples, prompts)
    scores = METRICS.get(spec.metric).scores(spec, predictions)
    return scores, [_sample(p, score) for p, score in zip(predictions, scores)], predictions


def _sample(p: Prediction, score: float) -> dict:
    """The record of one example in `<cell>.samples.jsonl` (`groups` when it is in more than its group)."""
    ex = p.example
    record = {"id": ex.id, "prompt": p.prompt, "prediction": p.output}
    if p.candidates is None:
        record.update(gold=ex.answers or ex.target, score=score)
    else:
        record.update(gold=ex.target, score=score, candidates={c: round(v, 4) for c, v in p.candidates.items()})
    record["group"] = ex.meta.get("group")
    if len(ex.groups) > 1:
        record["groups"] = ex.groups
    return record


def cell_name(task: str, shots: int, ablation: str, paraphrase: int = 0) -> str:
    """`task`, `task-2shot`, `task-2shot-blank`; a paraphrase other than the task's prompt adds `-p<N>`."""
    name = task if shots == 0 else f"{task}-{shots}shot" + ("" if ablation == "none" else f"-{ablation}")
    return name + (f"-p{paraphrase}" if paraphrase else "")


def _summary(
    spec: TaskSpec, per_trial: list[list[float]], trials: list[list[Prediction]], examples: list[Example], seed: int
) -> dict:
    """The metric over trials with its interval over examples, per-group values, and the Yes-rate of
    binary tasks that report it."""
    metric = METRICS.get(spec.metric)
    stacked = np.mean(np.array(per_trial), axis=0)  # per-example score averaged over trials
    values = [metric.trial_value(spec, preds, scores) for preds, scores in zip(trials, per_trial)]
    groups: dict[str, list[float]] = defaultdict(list)
    for ex, value in zip(examples, stacked):
        for group in ex.groups:
            groups[group].append(float(value))
    out = {
        "value": float(np.mean(values)),
        "ci95": list(metric.ci95(spec, trials, stacked, seed)),
        "trial_values": values,
        "groups": {g: {"value": float(np.mean(v)), "n": len(v)} for g, v in sorted(groups.items())},
    }
    if spec.report_yes_rate:
        out["yes_rate"] = float(np.mean([np.mean([p.output == "Yes" for p in preds]) for preds in trials]))
    return out


def evaluate(
    path: str | os.PathLike,
    tasks: Sequence[str],
    shots: Sequence[int] = (0,),
    trials: int = 1,
    limit: int | None = None,
    ablations: Sequence[str] = ("none",),
    seed: int = 0,
    data: dict[str, str] | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    echo: Callable[[str], None] = print,
    world: str | os.PathLike | None = None,
    paraphrases: int = 1,
) -> list[dict]:
    """Evaluate `tasks` on a run's last checkpoint (or a checkpoint); returns the result records.
    `world` replaces the run's data.world for the world tasks (an imported model has none).
    `paraphrases`: each task is also asked with up to that many of its templates (TaskSpec.templates;
    the first is its prompt), each as its own cell (`<cell>-p<N>`), over the same examples."""
    specs = [TASKS.get(t) for t in tasks]  # unknown names fail before any work
    check_options(shots, trials, limit, ablations, batch_size)
    if paraphrases < 1:
        raise ConfigError(f"paraphrases={paraphrases}: ask each question in at least 1 phrasing")
    loaded = load_checkpoint(path, device, batch_size, world)
    out_dir = Path(out) if out else (loaded.run_dir or loaded.checkpoint) / "eval"  # made by the first result
    results = []
    for spec in specs:
        source = _source(spec, loaded, data)
        skips = SkipLog()
        try:
            examples = LOADERS.get(spec.loader)(source, skips)[:limit]
        except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as err:
            raise DataError(f"{source}: not readable as {spec.name} data ({type(err).__name__}: {err})") from err
        if not loaded.adapter.accepts_images and any(ex.images for ex in examples):
            echo(f"{spec.name}: skipped, the model has no vision tower and the task shows images")
            continue
        for k in shots:
            if k > 0 and not spec.few_shot:
                echo(f"{cell_name(spec.name, k, 'none')}: skipped, {spec.name} has no few-shot form")
                continue
            for ablation in ablations if k > 0 else ("none",):
                for p, template in enumerate(spec.templates[:paraphrases]):
                    phrased = dataclasses.replace(spec, prompt=template, paraphrases=())
                    key = {
                        "checkpoint": str(loaded.checkpoint.resolve()),
                        "step": loaded.step,
                        "task": {f: v for f, v in dataclasses.asdict(phrased).items() if f != "paraphrases"},
                        "source": source,
                        "shots": k,
                        "ablation": ablation,
                        "trials": trials if k > 0 else 1,
                        "limit": limit,
                        "seed": seed,
                    }
                    if p:
                        key["paraphrase"] = p
                    results.append(_evaluate_cell(loaded, phrased, examples, key, skips, out_dir, echo))
    return results


def check_options(
    shots: Sequence[int], trials: int, limit: int | None, ablations: Sequence[str], batch_size: int
) -> None:
    """Evaluation settings in range, before any work (one line naming the setting and what is valid)."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit={limit}: evaluate at least 1 example per task (or no limit)")
    if any(k < 0 for k in shots) or not shots:
        raise ConfigError(f"shots={list(shots)}: give one or more numbers of demonstrations >= 0")
    if trials < 1:
        raise ConfigError(f"trials={trials}: at least 1 draw of demonstrations")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be >= 1")
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown or not ablations:
        raise ConfigError(f"ablations={','.join(ablations)}: valid: {', '.join(ABLATIONS)}")


def _source(spec: TaskSpec, loaded: Loaded, data: dict[str, str] | None) -> str:
    """Where a task's data is read: `--data TASK=PATH`, else its default, with {world} filled in."""
    source = (data or {}).get(spec.name, spec.source)
    if "{world}" in source:
        if not loaded.world:
            raise FileNotFoundError(
                f"task {spec.name} reads {source} but the run has no data.world; pass --data {spec.name}=PATH"
            )
        source = source.replace("{world}", loaded.world)
    return source


def _evaluate_cell(
    loaded: Loaded,
    spec: TaskSpec,
    examples: list[Example],
    key: dict,
    skips: SkipLog,
    out_dir: Path,
    echo: Callable[[str], None],
) -> dict:
    """One cell (task, shots, ablation) over its trials, written as `<cell>.json` and
    `<cell>.samples.jsonl`; a finished cell with the same settings (`key`) is read back instead."""
    name = cell_name(spec.name, key["shots"], key["ablation"], key.get("paraphrase", 0))
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    result_path = out_dir / f"{name}.json"
    if result_path.is_file() and json.loads(result_path.read_text()).get("key_hash") == digest:
        echo(f"{name}: done already, skipped")
        return json.loads(result_path.read_text())
    image_size = loaded.adapter.image_size if loaded.adapter.accepts_images else 32
    seed, per_trial, trial_predictions, all_samples = key["seed"], [], [], []
    for trial in range(key["trials"]):
        scores, samples, predictions = run_cell(
            loaded.adapter, spec, examples, key["shots"], key["ablation"], seed * 1000 + trial, image_size
        )
        per_trial.append(scores)
        trial_predictions.append(predictions)
        all_samples += [{**s, "trial": trial} for s in samples]
    record = {
        "task": spec.name,
        "family": spec.family,
        "cell": name,
        "metric": spec.metric,
        "n": len(examples),
        "shots": key["shots"],
        "ablation": key["ablation"],
        "paraphrase": key.get("paraphrase", 0),
        "prompt": spec.prompt,
        **_summary(spec, per_trial, trial_predictions, examples, seed),
        "skipped_records": skips.summary(),
        "key_hash": digest,
        "checkpoint": key["checkpoint"],
        "step": loaded.step,
        "seed": seed,
        "config": key,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / f"{name}.samples.jsonl", "".join(json.dumps(s) + "\n" for s in all_samples))
    write_atomic(result_path, json.dumps(record, indent=1) + "\n")
    ci = record["ci95"]
    groups = "".join(f" {g}={v['value']:.3f}" for g, v in record["groups"].items())
    echo(f"{name}: {spec.metric} {record['value']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] n={len(examples)}{groups}")
    return record
