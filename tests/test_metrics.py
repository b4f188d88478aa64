import numpy as np
import pytest

from toolkit.eval.metrics import (
    bootstrap_ci,
    caption_tokenize,
    cider,
    exact_match,
    roc_auc,
    token_f1,
    vqa_accuracy,
    vqa_normalize,
)

WORDS = "a an the dog cat sits on mat red blue ball runs in park big small man woman with hat".split()


def _random_caption(rng):
    return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 12))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cider_equals_pycocoevalcap(seed):
    pytest.importorskip("pycocoevalcap", reason="pycocoevalcap (the reference) is not installed")
    from pycocoevalcap.cider.cider import Cider

    rng = np.random.default_rng(seed)
    keys = [f"img{i}" for i in range(int(rng.integers(5, 40)))]
    refs = {k: [_random_caption(rng) for _ in range(int(rng.integers(1, 6)))] for k in keys}
    cands = {k: _random_caption(rng) for k in keys}
    want, _ = Cider().compute_score(refs, {k: [v] for k, v in cands.items()})
    assert abs(cider(cands, refs) - want) <= 1e-6


def test_cider_rewards_matching_captions():
    refs = {
        "a": ["a dog runs in the park", "the dog is running"],
        "b": ["a red ball on a mat"],
        "c": ["a man with a hat"],
    }
    good = {"a": "a dog runs in the park", "b": "a red ball on a mat", "c": "a man with a hat"}
    bad = {"a": "a red ball on a mat", "b": "a man with a hat", "c": "a dog runs in the park"}
    assert cider(good, refs) > 1.0 > cider(bad, refs)


def test_caption_tokenize_drops_punctuation_and_lowercases():
    assert caption_tokenize("A dog, running in the Park.") == "a dog running in the park"


@pytest.mark.parametrize(
    "prediction, normalized",
    [
        ("Yes.", "yes"), ("yes", "yes"), ("Two", "2"), ("the dog", "dog"), ("an apple", "apple"),
        ("dont", "don't"), ("red, white", "red white"), ("1,000", "1000"), ("2.5", "2.5"),
        ("it's!", "it's"), ("  on the\ttable ", "on table"), ("none", "0"),
    ],
)  # fmt: skip
def test_vqa_normalization_cases(prediction, normalized):
    assert vqa_normalize(prediction) == normalized


def test_vqa_accuracy_counts_humans_leave_one_out():
    answers = ["yes"] * 10
    assert vqa_accuracy("Yes.", answers) == 1.0
    assert vqa_accuracy("no", answers) == 0.0
    # 2 of 10 humans said "two": in 8 subsets both remain (2/3), in 2 subsets one remains (1/3).
    two = ["two", "2"] + ["three"] * 8
    assert vqa_accuracy("2", two) == pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)
    assert vqa_accuracy("three", two) == pytest.approx(1.0)
    assert vqa_accuracy("a cat", ["cat"] * 3 + ["dog"] * 7) == pytest.approx((7 * 1 + 3 * 2 / 3) / 10)


def test_em_f1_auc_and_bootstrap():
    assert exact_match("The Penguin Books", "penguin books") == 1.0
    assert token_f1("penguin books ltd", "penguin books") == pytest.approx(0.8)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    lo, hi = bootstrap_ci([1, 0] * 50, seed=0)
    assert lo < 0.5 < hi and hi - lo < 0.25
