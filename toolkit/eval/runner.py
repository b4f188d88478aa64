"""`evaluate(...)`: run tasks on one checkpoint, write `eval/<cell>.json` and `<cell>.samples.jsonl`.

A cell is (task, shots, demo ablation); trials redraw the demonstrations with new seeds. Results
carry the metric, a 95% bootstrap CI over examples, per-group values (e.g. vision-only vs grounded),
the resolved task config and seeds. A finished cell for the same checkpoint and settings is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from toolkit.data.shards import SkipLog
from toolkit.data.tokenizer import load_tokenizer
from toolkit.eval.examples import LOADERS, Example
from toolkit.eval.metrics import bootstrap_ci, caption_tokenize, cider_per_item, roc_auc, token_f1, vqa_accuracy
from toolkit.eval.prompts import BUILDERS, demo_answer, fill, with_demos
from toolkit.eval.scoring import ModelAdapter
from toolkit.eval.tasks import TASKS, TaskSpec
from toolkit.model.build import load_model


@dataclasses.dataclass
class Loaded:
    adapter: ModelAdapter
    checkpoint: Path
    step: int
    world: str | None
    run_dir: Path | None


def load_checkpoint(
    path: str | os.PathLike, device: str = "cpu", batch_size: int = 16, world: str | os.PathLike | None = None
) -> Loaded:
    """A run directory (its last checkpoint) or a checkpoint directory -> model, tokenizer, transform.
    `world` replaces the run's data.world (an imported model has none)."""
    from toolkit.train import checkpoint as ckpt
    from toolkit.train.loop import image_transform, load_run

    path = Path(path)
    if (path / "config.yaml").is_file():
        run_dir, checkpoint = path, ckpt.latest_checkpoint(path)
        if checkpoint is None:
            raise FileNotFoundError(f"{path}: the run has no checkpoint yet")
    elif (path / "model.json").is_file():
        checkpoint = path
        run_dir = path.parent.parent if (path.parent.parent / "config.yaml").is_file() else None
    else:
        raise FileNotFoundError(f"{path}: neither a run directory (config.yaml) nor a checkpoint (model.json)")
    if run_dir is None:
        raise FileNotFoundError(f"{checkpoint}: no run directory above it to read the tokenizer from")
    cfg = load_run(run_dir)
    tokenizer = load_tokenizer(cfg.resolve(cfg.data.tokenizer), special_strings=cfg.data.special_tokens)
    model = load_model(checkpoint, device=device)
    step = json.loads((checkpoint / "state.json").read_text())["step"] if (checkpoint / "state.json").is_file() else 0
    adapter = ModelAdapter(model, tokenizer, image_transform(cfg), batch_size)
    return Loaded(adapter, checkpoint, step, str(world) if world is not None else cfg.data.world, run_dir)


def clean_answer(text: str) -> str:
    """The generated answer up to the first newline, without trailing punctuation."""
    return text.split("\n")[0].strip().rstrip(" .!?").strip()


def _parts_text(parts) -> str:
    return " ".join("<image>" if isinstance(p, Image.Image) else p for p in parts)


def run_cell(adapter: ModelAdapter, spec: TaskSpec, examples: list[Example], shots: int, ablation: str,
             seed: int, image_size: int) -> tuple[list[float], list[dict], dict]:  # fmt: skip
    """Scores per example, sample records, and extra statistics for one trial of one cell."""
    demo_sets: list[list[list]] = []
    for i in range(len(examples)):
        if shots == 0:
            demo_sets.append([])
            continue
        rng = np.random.default_rng([seed, i])
        pool = [j for j in range(len(examples)) if j != i]
        picked = [examples[j] for j in rng.choice(pool, min(shots, len(pool)), replace=False)]
        demo_sets.append([fill(spec.demo, d) if spec.demo else fill(spec.prompt, d) + [demo_answer(d)] for d in picked])

    def demos_before(i: int, query: list) -> list:
        if shots == 0:
            return query
        return with_demos(query, demo_sets[i], ablation, np.random.default_rng([seed, i, 1]), image_size)

    def prompt_for(i: int, extra: dict | None = None):
        return demos_before(i, fill(spec.prompt, examples[i], extra))

    samples, scores, extra_stats = [], [], {}
    if spec.mode in ("rank", "cot"):
        rationales = [""] * len(examples)
        if spec.mode == "cot":
            stage_one = [fill(spec.rationale_prompt, ex) for ex in examples]
            rationales = [clean_answer(r) for r in adapter.generate(stage_one, spec.max_new_tokens)]
        requests, owners, prompt_texts = [], [], []
        for i, ex in enumerate(examples):
            cands = list(spec.candidates or ex.candidates or [])
            if spec.builder:
                reqs = [(demos_before(i, parts), cont) for parts, cont in BUILDERS.get(spec.builder)(spec, ex)]
            else:
                prompt = prompt_for(i, {"rationale": rationales[i]} if spec.mode == "cot" else None)
                reqs = [(prompt, c) for c in cands]
            prompt_texts.append(_parts_text(reqs[0][0]))
            requests += reqs
            owners += [(i, c) for c in cands]
        results = adapter.rank(requests)
        per_example: dict[int, list] = defaultdict(list)
        for (i, cand), res in zip(owners, results):
            value = res.logprob / res.num_tokens if spec.length_norm else res.logprob
            per_example[i].append((cand, value))
        labels, probs, yes = [], [], []
        for i, ex in enumerate(examples):
            cands, values = zip(*per_example[i])
            best = cands[int(np.argmax(values))]
            correct = float(best == ex.target)
            scores.append(correct)
            if spec.metric == "roc_auc":
                logits = np.array(values) - max(values)
                p = np.exp(logits) / np.exp(logits).sum()
                probs.append(float(p[list(cands).index(spec.positive)]))
                labels.append(int(ex.target == spec.positive))
            yes.append(best == "Yes")
            samples.append({"id": ex.id, "prompt": prompt_texts[i], "prediction": best, "gold": ex.target, "score": correct,
                            "candidates": {c: round(v, 4) for c, v in zip(cands, values)}, "group": ex.meta.get("group")})  # fmt: skip
        if spec.metric == "roc_auc":
            extra_stats["roc_auc"] = (labels, probs)
        if spec.report_yes_rate:
            extra_stats["yes_rate"] = float(np.mean(yes))
        return scores, samples, extra_stats

    prompts = [prompt_for(i) for i in range(len(examples))]
    cands = None
    if spec.constrained:
        cands = sorted({c for ex in examples for c in (spec.candidates or ex.candidates or [])})
    outputs = [clean_answer(o) for o in adapter.generate(prompts, spec.max_new_tokens, spec.num_beams, cands)]
    if spec.metric == "cider":
        refs = {ex.id: [caption_tokenize(r) for r in ex.answers] for ex in examples}
        hyps = {ex.id: caption_tokenize(o) for ex, o in zip(examples, outputs)}
        scores = cider_per_item(hyps, refs)
    for ex, out, prompt in zip(examples, outputs, prompts):
        if spec.metric == "vqa":
            scores.append(vqa_accuracy(out, ex.answers))
        elif spec.metric == "em_f1":
            scores.append(token_f1(out, ex.target))
        elif spec.metric == "accuracy":
            scores.append(float(out.lower() == ex.target.lower()))
        samples.append({"id": ex.id, "prompt": _parts_text(prompt), "prediction": out, "gold": ex.answers or ex.target,
                        "score": None, "group": ex.meta.get("group")})  # fmt: skip
    for s, value in zip(samples, scores):
        s["score"] = value
    return scores, samples, extra_stats


def cell_name(task: str, shots: int, ablation: str) -> str:
    if shots == 0:
        return task
    return f"{task}-{shots}shot" + ("" if ablation == "none" else f"-{ablation}")


def _summary(
    spec: TaskSpec, per_trial: list[list[float]], examples: list[Example], extras: list[dict], seed: int
) -> dict:
    stacked = np.mean(np.array(per_trial), axis=0)  # per-example score averaged over trials
    if spec.metric == "roc_auc":
        labels, probs = extras[0]["roc_auc"]
        values = [roc_auc(e["roc_auc"][0], e["roc_auc"][1]) for e in extras]
        idx = np.arange(len(labels))
        rng = np.random.default_rng(seed)
        boots = []
        for _ in range(1000):
            pick = rng.choice(idx, len(idx))
            if len(set(np.array(labels)[pick])) == 2:
                boots.append(roc_auc(np.array(labels)[pick], np.array(probs)[pick]))
        ci = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if boots else (math.nan, math.nan)
    else:
        values = [float(np.mean(t)) for t in per_trial]
        ci = bootstrap_ci(stacked, seed=seed)
    groups: dict[str, list[float]] = defaultdict(list)
    for ex, value in zip(examples, stacked):
        if ex.meta.get("group"):
            groups[ex.meta["group"]].append(float(value))
    out = {
        "value": float(np.mean(values)),
        "ci95": list(ci),
        "trial_values": values,
        "groups": {g: {"value": float(np.mean(v)), "n": len(v)} for g, v in sorted(groups.items())},
    }
    if "yes_rate" in extras[0]:
        out["yes_rate"] = float(np.mean([e["yes_rate"] for e in extras]))
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
) -> list[dict]:
    """Evaluate `tasks` on a run's last checkpoint (or a checkpoint); returns the result records.
    `world` replaces the run's data.world for the world tasks (an imported model has none)."""
    specs = [TASKS.get(t) for t in tasks]  # unknown names fail before any work
    loaded = load_checkpoint(path, device, batch_size, world)
    out_dir = Path(out) if out else (loaded.run_dir or loaded.checkpoint) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    image_size = loaded.adapter.transform.size if loaded.adapter.transform else 32
    results = []
    for spec in specs:
        source = (data or {}).get(spec.name, spec.source)
        if "{world}" in source:
            if not loaded.world:
                raise FileNotFoundError(
                    f"task {spec.name} reads {source} but the run has no data.world; pass --data {spec.name}=PATH"
                )
            source = source.replace("{world}", loaded.world)
        skips = SkipLog()
        examples = LOADERS.get(spec.loader)(source, skips)[:limit]
        if loaded.adapter.transform is None and (spec.builder == "raven" or any(ex.images for ex in examples)):
            echo(f"{spec.name}: skipped, the model has no vision tower and the task shows images")
            continue
        for k in shots:
            if k > 0 and not spec.few_shot:
                echo(f"{cell_name(spec.name, k, 'none')}: skipped, {spec.name} has no few-shot form")
                continue
            for ablation in ablations if k > 0 else ("none",):
                name = cell_name(spec.name, k, ablation)
                n_trials = trials if k > 0 else 1
                key = {"checkpoint": str(loaded.checkpoint.resolve()), "step": loaded.step, "task": dataclasses.asdict(spec),
                       "source": source, "shots": k, "ablation": ablation, "trials": n_trials, "limit": limit, "seed": seed}  # fmt: skip
                digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
                result_path = out_dir / f"{name}.json"
                if result_path.is_file() and json.loads(result_path.read_text()).get("key_hash") == digest:
                    echo(f"{name}: done already, skipped")
                    results.append(json.loads(result_path.read_text()))
                    continue
                per_trial, extras, all_samples = [], [], []
                for trial in range(n_trials):
                    scores, samples, extra = run_cell(
                        loaded.adapter, spec, examples, k, ablation, seed * 1000 + trial, image_size
                    )
                    per_trial.append(scores)
                    extras.append(extra)
                    all_samples += [{**s, "trial": trial} for s in samples]
                record = {"task": spec.name, "family": spec.family, "cell": name, "metric": spec.metric, "n": len(examples),
                          "shots": k, "ablation": ablation, **_summary(spec, per_trial, examples, extras, seed),
                          "skipped_records": skips.summary(), "key_hash": digest, "checkpoint": key["checkpoint"],
                          "step": loaded.step, "seed": seed, "config": key}  # fmt: skip
                _write(out_dir / f"{name}.samples.jsonl", "".join(json.dumps(s) + "\n" for s in all_samples))
                _write(result_path, json.dumps(record, indent=1) + "\n")
                echo(f"{name}: {spec.metric} {record['value']:.4f} [{record['ci95'][0]:.4f}, {record['ci95'][1]:.4f}] n={len(examples)}"
                     + "".join(f" {g}={v['value']:.3f}" for g, v in record["groups"].items()))  # fmt: skip
                results.append(record)
    return results


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
