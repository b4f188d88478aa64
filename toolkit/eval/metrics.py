"""Metrics: CIDEr (as pycocoevalcap computes it), VQA accuracy (official answer normalization),
accuracy, ROC AUC, exact match / token F1 as plain functions, a bootstrap confidence interval, and
`METRICS`, the registry tasks name their metric from (per-example score, aggregate, interval)."""

from __future__ import annotations

import math
import re
import string
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from toolkit.eval.ptb import caption_tokenize
from toolkit.registry import Registry

if TYPE_CHECKING:
    from toolkit.eval.examples import Prediction
    from toolkit.eval.tasks import TaskSpec

# ---------------------------------------------------------------- CIDEr (CIDEr-D, n=4, sigma=6)


def _ngrams(sentence: str, n: int = 4) -> Counter:
    words = sentence.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def cider(candidates: dict[str, str], references: dict[str, list[str]], n: int = 4, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D of tokenized captions, numerically as pycocoevalcap's `Cider().compute_score`.

    Document frequencies come from the references of this corpus; each n-gram's tf-idf is clipped by
    the reference's, a Gaussian penalty (sigma 6) acts on the length difference (counted, as in
    pycocoevalcap, in bigrams), and the score is x10 (papers print it x100 again).
    """
    return float(np.mean(cider_per_item(candidates, references, n, sigma)))


def cider_per_item(
    candidates: dict[str, str], references: dict[str, list[str]], n: int = 4, sigma: float = 6.0
) -> list[float]:
    if candidates.keys() != references.keys():
        raise ValueError("cider: candidates and references must have the same keys")
    keys = list(candidates)
    refs = {k: [_ngrams(r, n) for r in references[k]] for k in keys}
    if any(not r for r in refs.values()):
        raise ValueError("cider: every item needs at least one reference")
    df: Counter = Counter()
    for k in keys:
        df.update({g for r in refs[k] for g in r})
    log_items = math.log(float(len(keys)))

    def vector(counts: Counter):
        vec = [defaultdict(float) for _ in range(n)]
        norm = [0.0] * n
        for gram, tf in counts.items():
            weight = tf * (log_items - math.log(max(1.0, df[gram])))
            vec[len(gram) - 1][gram] = weight
            norm[len(gram) - 1] += weight * weight
        bigrams = sum(tf for gram, tf in counts.items() if len(gram) == 2)
        return vec, [math.sqrt(x) for x in norm], bigrams

    scores = []
    for k in keys:
        vh, nh, lh = vector(_ngrams(candidates[k], n))
        total = np.zeros(n)
        for ref in refs[k]:
            vr, nr, lr = vector(ref)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
            for i in range(n):
                val = sum(min(w, vr[i].get(g, 0.0)) * vr[i].get(g, 0.0) for g, w in vh[i].items())
                if nh[i] != 0 and nr[i] != 0:
                    val /= nh[i] * nr[i]
                total[i] += val * penalty
        scores.append(float(np.mean(total) / len(refs[k]) * 10.0))
    return scores


# ---------------------------------------------------------------- VQA accuracy

_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
# Contractions written without their apostrophe, mapped to the written form (as the official evaluation does).
_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id": "I'd",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itll": "it'll",
    "its": "it's",
    "lets": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "shant": "shan't",
    "shed": "she'd",
    "shes": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "somebodys": "somebody's",
    "someones": "someone's",
    "somethings": "something's",
    "thats": "that's",
    "thered": "there'd",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "wasnt": "wasn't",
    "wed": "we'd",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "yall": "y'all",
    "youd": "you'd",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}


def vqa_normalize(answer: str) -> str:
    """The official VQA answer processing: punctuation, periods, number words, articles, contractions."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_IN_NUMBER.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = re.sub(r"\.(?!\d)", "", out)  # periods not followed by a digit (keeps decimals like 2.5)
    words = []
    for word in out.lower().split():
        word = _NUMBERS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """VQA accuracy in 0..1: min(#matching humans / 3, 1), averaged over the leave-one-out subsets."""
    if not answers:
        raise ValueError("vqa_accuracy needs the human answers")
    pred = vqa_normalize(prediction)
    gts = [vqa_normalize(a) for a in answers]
    accs = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1 :]
        accs.append(min(1.0, sum(a == pred for a in others) / 3.0))
    return float(np.mean(accs))


# ---------------------------------------------------------------- the rest


def accuracy(correct: Sequence[bool | float]) -> float:
    return float(np.mean(np.asarray(correct, dtype=float))) if len(correct) else float("nan")


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _squad_normalize(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return [w for w in text.split() if w not in _ARTICLES]


def exact_match(prediction: str, gold: str) -> float:
    return float(_squad_normalize(prediction) == _squad_normalize(gold))


def token_f1(prediction: str, gold: str) -> float:
    p, g = _squad_normalize(prediction), _squad_normalize(gold)
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g:
        return float(p == g)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def bootstrap_ci(
    values: Sequence[float], statistic: Callable = np.mean, n: int = 1000, seed: int = 0, level: float = 0.95
):
    """Percentile bootstrap CI of `statistic` over examples."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = [statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(n)]
    return (float(np.quantile(stats, (1 - level) / 2)), float(np.quantile(stats, 1 - (1 - level) / 2)))


# ---------------------------------------------------------------- metrics as data


@dataclass(frozen=True)
class Metric:
    """What a task's predictions are worth.

    `scores` gives one score per example (what per-group values and the paired comparisons of arms
    average); `value` the metric of one trial when it is not the mean of those scores (ROC AUC);
    `interval` the 95% CI over examples reported with it (default: a bootstrap of the mean). `upper`
    is the top of the metric's range (None: unbounded, CIDEr); `paired` says whether the per-example
    scores are the metric itself, so that a paired comparison of arms compares the metric (not so for
    ROC AUC). Each function takes the task, for what a metric needs to know of it (ROC AUC's
    positive class)."""

    name: str
    scores: Callable[[TaskSpec, list[Prediction]], list[float]]
    value: Callable[[TaskSpec, list[Prediction], list[float]], float] | None = None
    interval: Callable[[TaskSpec, list[list[Prediction]], np.ndarray, int], tuple[float, float]] | None = None
    upper: float | None = 1.0
    paired: bool = True  # the per-example scores are the metric (so comparing them compares the metric)

    def trial_value(self, spec: TaskSpec, predictions: list[Prediction], scores: list[float]) -> float:
        return float(np.mean(scores)) if self.value is None else self.value(spec, predictions, scores)

    def ci95(self, spec: TaskSpec, trials: list[list[Prediction]], per_example: np.ndarray, seed: int):
        """per_example: each example's score averaged over the trials."""
        if self.interval is None:
            return bootstrap_ci(per_example, seed=seed)
        return self.interval(spec, trials, per_example, seed)


METRICS: Registry[Metric] = Registry("metric")


def _each(score: Callable[[Prediction], float]) -> Callable[[TaskSpec, list[Prediction]], list[float]]:
    return lambda spec, predictions: [score(p) for p in predictions]


def _correct(p: Prediction) -> float:
    """A ranked prediction is one of the candidates, exactly; a generated one is compared ignoring case."""
    gold = p.example.target
    return float(p.output == gold) if p.candidates is not None else float(p.output.lower() == gold.lower())


def _cider(spec: TaskSpec, predictions: list[Prediction]) -> list[float]:
    refs = {p.example.id: [caption_tokenize(r) for r in p.example.answers] for p in predictions}
    hyps = {p.example.id: caption_tokenize(p.output) for p in predictions}
    return cider_per_item(hyps, refs)


def _labels_probs(spec: TaskSpec, predictions: list[Prediction]) -> tuple[np.ndarray, np.ndarray]:
    """Gold labels (1 = the task's positive class) and P(positive), normalised over the candidates."""
    labels, probs = [], []
    for p in predictions:
        cands, values = zip(*p.candidates.items())
        logits = np.array(values) - max(values)
        probs.append(float((np.exp(logits) / np.exp(logits).sum())[list(cands).index(spec.positive)]))
        labels.append(int(p.example.target == spec.positive))
    return np.array(labels), np.array(probs)


def _auc_value(spec: TaskSpec, predictions: list[Prediction], scores: list[float]) -> float:
    return roc_auc(*_labels_probs(spec, predictions))


def _auc_interval(spec: TaskSpec, trials: list[list[Prediction]], per_example: np.ndarray, seed: int):
    """A bootstrap of the AUC over the examples of the first trial (resamples with one class skipped)."""
    labels, probs = _labels_probs(spec, trials[0])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(1000):
        pick = rng.choice(np.arange(len(labels)), len(labels))
        if len(set(labels[pick])) == 2:
            boots.append(roc_auc(labels[pick], probs[pick]))
    return (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if boots else (math.nan, math.nan)


METRICS.add("accuracy", Metric("accuracy", _each(_correct)))
METRICS.add("vqa", Metric("vqa", _each(lambda p: vqa_accuracy(p.output, p.example.answers))))
METRICS.add("em_f1", Metric("em_f1", _each(lambda p: token_f1(p.output, p.example.target))))
METRICS.add("cider", Metric("cider", _cider, upper=None))
# The per-example score of ROC AUC is correctness (what paired comparisons of arms compare).
METRICS.add("roc_auc", Metric("roc_auc", _each(_correct), _auc_value, _auc_interval, paired=False))
