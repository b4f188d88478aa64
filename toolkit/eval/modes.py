"""Scoring modes: how a task turns a model's outputs into one prediction per example.

- `rank`: the log-likelihood of each candidate after the prompt (a task's `builder` may make one
  prompt per candidate, as Raven does); the prediction is the best candidate.
- `cot`: multimodal chain-of-thought; a rationale is generated first (`rationale_prompt`), then the
  candidates are ranked with it in the prompt.
- `generate`: greedy or beam search, optionally constrained to the candidates.
- `probe`: latent knowledge. A linear probe (scikit-learn) reads the answer from the model's state
  at the prompt's last token. It is fitted on the examples of group `grounded` (facts stated in
  text) and predicts every other example (vision-only facts, never in text); grounded examples get
  cross-validated predictions. The layer is the one whose cross-validated accuracy on the grounded
  examples is best: chosen without looking at the examples it is tested on.

What a prediction is worth is the metric's business (`toolkit.eval.metrics.METRICS`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from toolkit.config import DataError
from toolkit.eval.examples import Example, Prediction
from toolkit.eval.prompts import BUILDERS, FewShotPrompts, fill
from toolkit.eval.scoring import ModelAdapter
from toolkit.eval.tasks import TaskSpec
from toolkit.registry import Registry

Mode = Callable[[ModelAdapter, TaskSpec, list[Example], FewShotPrompts], list[Prediction]]
MODES: Registry[Mode] = Registry("scoring mode")


def clean_answer(text: str) -> str:
    """The generated answer up to the first newline, without trailing punctuation."""
    return text.split("\n")[0].strip().rstrip(" .!?").strip()


def parts_text(parts) -> str:
    """A prompt as text, each image shown as <image>."""
    return " ".join("<image>" if isinstance(p, Image.Image) else p for p in parts)


def _ranked(
    adapter: ModelAdapter, spec: TaskSpec, examples: list[Example], prompts: FewShotPrompts, extras: list[dict | None]
) -> list[Prediction]:
    """Rank every example's candidates in one batched pass; the best is the prediction."""
    requests, owners, texts = [], [], []
    for i, ex in enumerate(examples):
        cands = list(spec.candidates or ex.candidates or [])
        if spec.builder:  # one prompt per candidate, made in Python (Raven)
            reqs = [(prompts.with_demos(i, parts), cont) for parts, cont in BUILDERS.get(spec.builder)(spec, ex)]
        else:
            prompt = prompts.query(i, extras[i])
            reqs = [(prompt, c) for c in cands]
        texts.append(parts_text(reqs[0][0]))
        requests += reqs
        owners += [i] * len(cands)
    values: list[list[float]] = [[] for _ in examples]
    for i, res in zip(owners, adapter.rank(requests)):
        values[i].append(res.logprob / res.num_tokens if spec.length_norm else res.logprob)
    out = []
    for i, ex in enumerate(examples):
        cands = list(spec.candidates or ex.candidates or [])
        best = cands[int(np.argmax(values[i]))]
        out.append(Prediction(ex, texts[i], best, dict(zip(cands, values[i]))))
    return out


@MODES.register("rank")
def rank(adapter: ModelAdapter, spec: TaskSpec, examples: list[Example], prompts: FewShotPrompts) -> list[Prediction]:
    return _ranked(adapter, spec, examples, prompts, [None] * len(examples))


@MODES.register("cot")
def chain_of_thought(
    adapter: ModelAdapter, spec: TaskSpec, examples: list[Example], prompts: FewShotPrompts
) -> list[Prediction]:
    stage_one = [fill(spec.rationale_prompt, ex) for ex in examples]
    rationales = [clean_answer(r) for r in adapter.generate(stage_one, spec.max_new_tokens)]
    return _ranked(adapter, spec, examples, prompts, [{"rationale": r} for r in rationales])


@MODES.register("generate")
def generate(
    adapter: ModelAdapter, spec: TaskSpec, examples: list[Example], prompts: FewShotPrompts
) -> list[Prediction]:
    queries = [prompts.query(i) for i in range(len(examples))]
    allowed = None
    if spec.constrained:
        allowed = sorted({c for ex in examples for c in (spec.candidates or ex.candidates or [])})
    outputs = adapter.generate(queries, spec.max_new_tokens, spec.num_beams, allowed)
    return [Prediction(ex, parts_text(q), clean_answer(o)) for ex, q, o in zip(examples, queries, outputs)]


@MODES.register("probe")
def probe(adapter: ModelAdapter, spec: TaskSpec, examples: list[Example], prompts: FewShotPrompts) -> list[Prediction]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    queries = [prompts.query(i) for i in range(len(examples))]
    states = adapter.states(queries).numpy().astype(np.float64)  # (examples, layers, dim)
    labels = np.array([ex.target for ex in examples])
    fit = np.array([ex.meta.get("group") == "grounded" for ex in examples])
    if fit.sum() < 4 or len(set(labels[fit])) < 2:
        raise DataError(f"task {spec.name}: a probe needs grounded examples of at least two answers to fit on")
    # Folds stratified by answer, as many as the rarest grounded answer allows (2..5); plain folds when
    # an answer has a single grounded example (a small evaluation limit).
    rarest = int(np.unique(labels[fit], return_counts=True)[1].min())
    if rarest >= 2:
        folds = StratifiedKFold(n_splits=min(5, rarest), shuffle=True, random_state=0)
    else:
        folds = KFold(n_splits=min(5, int(fit.sum())), shuffle=True, random_state=0)

    def classifier():
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=0))

    def cross_validated(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty(len(y), dtype=object)
        for train, test in folds.split(x, y):
            if len(set(y[train])) < 2:  # a fold with one answer to learn predicts it
                out[test] = y[train][0]
            else:
                out[test] = classifier().fit(x[train], y[train]).predict(x[test])
        return out

    held_out = [cross_validated(states[fit, layer], labels[fit]) for layer in range(states.shape[1])]
    layer = int(np.argmax([np.mean(p == labels[fit]) for p in held_out]))
    clf = classifier().fit(states[fit, layer], labels[fit])
    predicted = np.empty(len(examples), dtype=object)
    predicted[fit] = held_out[layer]
    if (~fit).any():
        predicted[~fit] = clf.predict(states[~fit, layer])
    return [
        Prediction(ex, f"{parts_text(q)} [layer {layer}]", str(p)) for ex, q, p in zip(examples, queries, predicted)
    ]
