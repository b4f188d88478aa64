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


# Stanford PTBTokenizer (CoreNLP 3.4.1, `-preserveLines -lowerCase`, the jar pycocoevalcap runs) on these
# lines printed exactly these tokens.
PTB_JAVA = [
    ("A dog, running in the Park.", "a dog , running in the park ."),
    ("The man doesn't like it's owner's hat.", "the man does n't like it 's owner 's hat ."),
    ("A black-and-white cat can't sit on a 2.5-inch mat.", "a black-and-white cat ca n't sit on a 2.5-inch mat ."),
    (
        '"Two" people (a man and a woman) stand near 1,000 birds...',
        "`` two '' people -lrb- a man and a woman -rrb- stand near 1,000 birds ...",
    ),
    ("A U.S. flag at 50% costs $5 & more!", "a u.s. flag at 50 % costs $ 5 & more !"),
    (
        "He said: it's the dogs' toys; they're gonna play -- and/or sleep.",
        "he said : it 's the dogs ' toys ; they 're gon na play -- and/or sleep .",
    ),
    ("Mr. Smith's cat isn't here? No!", "mr. smith 's cat is n't here ? no !"),
    ("I cannot believe you wanna go, gotta run.", "i can not believe you wan na go , got ta run ."),
    ("A #1 fan @ the game + 2 = 3 * 4 / 5", "a # 1 fan @ the game + 2 = 3 * 4 / 5"),
    ("Is this the U.S.A. or St. Louis, Dr. Who?", "is this the u.s.a. or st. louis , dr. who ?"),
    ("Two dogs play [with] a {ball} in the snow", "two dogs play -lsb- with -rsb- a -lcb- ball -rcb- in the snow"),
    ("Pizza w/ cheese & pepperoni, etc. on a plate.", "pizza w / cheese & pepperoni , etc. on a plate ."),
    ("A plate of food.. with a fork", "a plate of food . . with a fork"),
    ("The tennis player's racket isn't broken!?", "the tennis player 's racket is n't broken !?"),
    ("A man is riding a horse.A woman walks.", "a man is riding a horse.a woman walks ."),
    ("It's 3:30 and the 5th e-mail came at o'clock.", "it 's 3:30 and the 5th e-mail came at o'clock ."),
    ("The-- mr... #1 etc. St. u.s. The", "the -- mr. . . # 1 etc. . st. u.s. . the"),
    (
        "DON'T GO. Can't. Won't. It'll go. I'm here, we've seen",
        "do n't go . ca n't . wo n't . it 'll go . i 'm here , we 've seen",
    ),
]


@pytest.mark.parametrize("text, java", PTB_JAVA)
def test_caption_tokenize_is_pycocoevalcaps_ptb_tokenization(text, java):
    from toolkit.eval.ptb import REMOVED, ptb_tokens

    assert " ".join(ptb_tokens(text)) == java
    # pycocoevalcap then drops its punctuation list; its bracket names are upper case, so -lrb- stays.
    assert caption_tokenize(text) == " ".join(t for t in java.split() if t not in REMOVED)


def test_caption_tokenize_keeps_what_pycocoevalcap_keeps():
    assert caption_tokenize("A dog, running in the Park.") == "a dog running in the park"
    assert caption_tokenize("A (small) dog's 50% off $5!") == "a -lrb- small -rrb- dog 's 50 % off $ 5"
    assert caption_tokenize('"Stop" -- a sign; here...') == "stop a sign here"


@pytest.mark.parametrize(
    "prediction, normalized",
    [
        ("Yes.", "yes"),
        ("yes", "yes"),
        ("Two", "2"),
        ("the dog", "dog"),
        ("an apple", "apple"),
        ("dont", "don't"),
        ("red, white", "red white"),
        ("1,000", "1000"),
        ("2.5", "2.5"),
        ("it's!", "it's"),
        ("  on the\ttable ", "on table"),
        ("none", "0"),
    ],
)
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
