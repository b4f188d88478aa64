"""Evaluation protocols checked with scripted models whose preferences are planted: the protocol
itself must turn a planted right answer into a score of 1 and a planted wrong one into 0 (Raven's
P(Yes) per candidate, constrained classification, the two stages of multimodal chain-of-thought)."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.data.images import ImageTransform
from toolkit.data.shards import SkipLog
from toolkit.data.tokenizer import train_tokenizer
from toolkit.eval.examples import LOADERS, Example
from toolkit.eval.runner import run_cell
from toolkit.eval.scoring import ModelAdapter
from toolkit.eval.tasks import TASKS
from toolkit.model.generation import ContinuationScore

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


def _colour(image: Image.Image) -> tuple[int, int, int]:
    return image.convert("RGB").getpixel((0, 0))


class ScriptedAdapter:
    """The adapter interface (rank, generate) with planted answers; records what it was asked."""

    def __init__(self, logprob=None, generate=None):
        self.logprob, self._generate = logprob, generate
        self.ranked, self.generated = [], []

    def rank(self, requests):
        self.ranked += list(requests)
        return [ContinuationScore(self.logprob(parts, cont), 1, False) for parts, cont in requests]

    def generate(self, prompts, max_new_tokens, num_beams=1, candidates=None):
        self.generated += list(prompts)
        return [self._generate(p) for p in prompts]


def _write_puzzle(root, name, candidate_colours, answer):
    (root / name / "context").mkdir(parents=True)
    (root / name / "candidates").mkdir()
    for i in range(8):
        Image.new("RGB", (8, 8), GREEN).save(root / name / "context" / f"{i}.png")
    for i, colour in enumerate(candidate_colours):
        Image.new("RGB", (8, 8), colour).save(root / name / "candidates" / f"{i}.png")
    (root / name / "answer.txt").write_text(f"{answer}\n")


def test_raven_ranks_candidates_by_log_p_yes_and_reads_answers_one_based(tmp_path):
    # The scripted model believes a candidate is correct when it is red: log P(" Yes") = -0.1, else -3.
    colours = [BLUE] * 8
    a = colours.copy()
    a[2] = RED  # puzzle a: red is candidate 3 (1-based), and the answer file says 3
    b = colours.copy()
    b[4] = RED  # puzzle b: red is candidate 5, but the answer file says 2
    _write_puzzle(tmp_path, "a", a, 3)
    _write_puzzle(tmp_path, "b", b, 2)
    examples = LOADERS.get("raven_folder")(tmp_path, SkipLog())
    assert [(ex.id, ex.target) for ex in examples] == [("a", "2"), ("b", "1")]  # 0-based inside

    def logprob(parts, continuation):
        assert continuation == "Yes"
        return -0.1 if _colour(parts[-2]) == RED else -3.0

    adapter = ScriptedAdapter(logprob)
    scores, samples, _ = run_cell(adapter, TASKS.get("raven-iq"), examples, 0, "none", 0, 8)
    assert scores == [1.0, 0.0]
    assert [s["prediction"] for s in samples] == ["2", "4"] and [s["gold"] for s in samples] == ["2", "1"]
    assert samples[0]["candidates"] == {str(i): (-0.1 if i == 2 else -3.0) for i in range(8)}
    # The paper's prompt, one request per candidate: eight context images, then the candidate.
    assert len(adapter.ranked) == 16
    parts, _ = adapter.ranked[3]
    text = [p for p in parts if isinstance(p, str)]
    assert text == ["Here are eight images:", "The following image is:", "Is it correct?"]
    assert parts[0] == "Here are eight images:" and all(isinstance(p, Image.Image) for p in parts[1:9])
    assert parts[9] == "The following image is:" and _colour(parts[10]) == BLUE and parts[11] == "Is it correct?"
    assert _colour(adapter.ranked[2][0][10]) == RED


def test_multimodal_chain_of_thought_ranks_with_the_generated_rationale():
    spec = TASKS.get("world-rendered-sentiment-cot")
    examples = [
        Example("0", [Image.new("RGB", (8, 8), RED)], {}, "positive"),
        Example("1", [Image.new("RGB", (8, 8), BLUE)], {}, "negative"),
    ]

    def run(rationale_for):
        def generate(parts):
            assert [p for p in parts if isinstance(p, str)] == ["Introduce this picture in detail:"]
            return rationale_for[_colour(parts[0])]

        def logprob(parts, cand):
            text = " ".join(p for p in parts if isinstance(p, str))
            return -0.5 if ("good" in text) == (cand == "positive") else -2.0

        adapter = ScriptedAdapter(logprob, generate)
        scores, samples, _ = run_cell(adapter, spec, examples, 0, "none", 0, 8)
        return scores, samples, adapter

    scores, samples, adapter = run({RED: "a good day.\nignored", BLUE: "a bad day!"})
    assert scores == [1.0, 1.0]
    # Stage two: the cleaned rationale (first line, no trailing punctuation) before the question.
    assert samples[0]["prompt"] == "<image> a good day Question: what is the sentiment of the opinion? Answer:"
    assert samples[1]["prompt"] == "<image> a bad day Question: what is the sentiment of the opinion? Answer:"
    assert len(adapter.generated) == 2 and len(adapter.ranked) == 4
    # The same images with the rationales swapped: the answers follow the rationale.
    assert run({RED: "a bad day", BLUE: "a good day"})[0] == [0.0, 0.0]


class PlantedGenerator(torch.nn.Module):
    """A stand-in for KosmosModel in greedy and beam search: the next-token logits come from planted
    word preferences that depend on the colour of the row's image (no weights)."""

    def __init__(self, tok, preferences):
        super().__init__()
        self.cfg = SimpleNamespace(tokens=tok.special)
        self.num_image_tokens = 2
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.preferences, self.vocab = tok, preferences, tok.vocab_size
        self.words = {w: tok.encode(" " + w) for prefs in preferences.values() for w in prefs}

    def _logits(self, colour, generated):
        logits = torch.zeros(self.vocab)
        for word, score in self.preferences[colour].items():
            ids = self.words[word]
            if ids[: len(generated)] == generated and len(ids) > len(generated):
                logits[ids[len(generated)]] = max(float(logits[ids[len(generated)]]), score)
            elif ids == generated:
                logits[self.tok.special.eos] = 20.0
        return logits

    def forward(self, input_ids, images=None, attention_mask=None, cache=None, use_cache=False, compute_loss=False):
        if cache is None:  # the prompt: one image per row, in row order
            colours = [tuple(int(round(float(c))) for c in img[:, 0, 0] * 255) for img in images]
            rows = [{"colour": c, "generated": []} for c in colours]
        else:
            rows = [
                {"colour": r["colour"], "generated": r["generated"] + [int(t)]}
                for r, t in zip(cache.rows, input_ids[:, -1])
            ]
        logits = torch.stack([self._logits(r["colour"], r["generated"]) for r in rows])[:, None, :]
        return SimpleNamespace(logits=logits, cache=_Rows(rows))


@dataclasses.dataclass
class _Rows:
    rows: list

    def reorder(self, index):
        return _Rows([self.rows[i] for i in index.tolist()])


@pytest.mark.parametrize("beams", [1, 2])
def test_constrained_classification_generates_the_best_allowed_candidate(beams):
    tok = train_tokenizer(["the photo of the zebra lion tiger"] * 20, vocab_size=280)
    # Both rows prefer "zebra" (not a candidate); then a red image prefers lion, a blue one tiger.
    prefs = {RED: {"zebra": 10.0, "lion": 5.0, "tiger": 4.0}, BLUE: {"zebra": 10.0, "lion": 4.0, "tiger": 5.0}}
    model = PlantedGenerator(tok, prefs)
    transform = ImageTransform(8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # pixels stay in [0, 1]
    adapter = ModelAdapter(model, tok, transform)
    spec = dataclasses.replace(TASKS.get("world-classification-constrained"), num_beams=beams)
    examples = [
        Example(str(i), [Image.new("RGB", (8, 8), colour)], {}, "lion", candidates=["lion", "tiger"])
        for i, colour in enumerate((RED, BLUE))
    ]
    scores, samples, _ = run_cell(adapter, spec, examples, 0, "none", 0, 8)
    assert [s["prediction"] for s in samples] == ["lion", "tiger"] and scores == [1.0, 0.0]
    free = dataclasses.replace(spec, constrained=False)
    scores, samples, _ = run_cell(adapter, free, examples, 0, "none", 0, 8)
    assert [s["prediction"] for s in samples] == ["zebra", "zebra"] and scores == [0.0, 0.0]


@pytest.mark.parametrize("task", ["winograd", "winogrande"])
def test_winograd_few_shot_puts_solved_schemas_before_the_partial_context(task, tmp_path):
    spec = TASKS.get(task)
    examples = [
        Example(
            str(i),
            [],
            {
                "options_context": [f"s{i} {b}", f"s{i} {a}"],
                "continuation": f"rest{i}.",
                "solved": f"s{i} {a} rest{i}.",
            },
            a,
            candidates=[b, a],
        )
        for i, (a, b) in enumerate([("cat", "dog"), ("sun", "moon"), ("red", "blue")])
    ]

    # Planted: the right option scores higher only when a demonstration precedes it.
    def logprob(parts, cont):
        return -1.0 if len(parts) > 1 and parts[-1].endswith(("cat", "sun", "red")) else -2.0

    adapter = ScriptedAdapter(logprob)
    zero, _, _ = run_cell(adapter, spec, examples, 0, "none", 0, 8)
    assert zero == [0.0, 0.0, 0.0]  # a tie goes to the first candidate, the wrong one
    adapter = ScriptedAdapter(logprob)
    one, samples, _ = run_cell(adapter, spec, examples, 1, "none", 0, 8)
    assert one == [1.0, 1.0, 1.0]
    parts, cont = adapter.ranked[1]
    assert cont == "rest0." and parts[-1] == "s0 cat"
    assert parts[0] in {"s1 sun rest1.", "s2 red rest2."} and len(parts) == 2  # another schema, solved
    assert samples[0]["prompt"].startswith(parts[0])


class PlantedStates:
    """The adapter's `states` with planted per-layer features: layer 0 noise; layer 1 carries the
    colour in grounded nouns only (perfectly); layer 2 carries it in every noun but weakly in the
    grounded ones. A probe choosing its layer by the vision-only answers would take layer 2."""

    def __init__(self, examples, seed=0):
        rng = np.random.default_rng(seed)
        colours = sorted({ex.target for ex in examples})
        self.by_prompt = {}
        for ex in examples:
            onehot = np.eye(len(colours))[colours.index(ex.target)] * 3
            grounded = ex.meta["group"] == "grounded"
            layers = [
                rng.normal(size=len(colours)),
                (onehot if grounded else 0) + rng.normal(size=len(colours)) * 0.3,
                (0.35 if grounded else 1.0) * onehot + rng.normal(size=len(colours)),
            ]
            self.by_prompt[ex.fields["object"]] = np.stack(layers)

    def states(self, prompts):
        return torch.tensor(np.stack([self.by_prompt[p[0]] for p in prompts]))


def test_latent_probe_fits_on_grounded_nouns_and_picks_its_layer_without_the_test_nouns():
    spec = TASKS.get("world-colour-latent")
    colours = ["red", "blue", "green", "yellow"]
    examples = [
        Example(
            str(i),
            [],
            {"object": f"the noun{i}"},
            colours[i % 4],
            meta={"group": ("grounded", "vision_only")[i // 40 % 2]},
        )
        for i in range(160)
    ]
    adapter = PlantedStates(examples)
    scores, samples, _ = run_cell(adapter, spec, examples, 0, "none", 0, 32)
    grounded = [s for s, ex in zip(scores, examples) if ex.meta["group"] == "grounded"]
    vision = [s for s, ex in zip(scores, examples) if ex.meta["group"] == "vision_only"]
    assert all(s["prompt"].endswith("[layer 1]") for s in samples)  # the grounded nouns chose layer 1
    assert np.mean(grounded) > 0.95  # cross-validated within the grounded nouns
    assert np.mean(vision) < 0.45  # layer 1 holds nothing of vision-only colour: near chance (0.25)
    # Planted transfer: the same colour code in every noun is read off the vision-only nouns.
    for ex in examples:
        adapter.by_prompt[ex.fields["object"]][1] = (
            np.eye(4)[colours.index(ex.target)] * 3 + np.random.default_rng(int(ex.id)).normal(size=4) * 0.3
        )
    scores, _, _ = run_cell(adapter, spec, examples, 0, "none", 0, 32)
    assert np.mean([s for s, ex in zip(scores, examples) if ex.meta["group"] == "vision_only"]) > 0.95


def test_latent_probe_on_a_trained_model_reads_states_through_the_real_adapter(small_world):
    """ModelAdapter.states gives (prompts, layers + 1, dim) at each prompt's last token: equal to the
    residual stream of the prompt run alone."""
    from conftest import tiny_model

    from toolkit.data.tokenizer import load_tokenizer

    tok = load_tokenizer(small_world)
    model = tiny_model(decoder={"vocab_size": tok.vocab_size}).eval()
    adapter = ModelAdapter(model, tok, None, batch_size=3)
    prompts = [["the banana"], ["the cherry is"], ["a"], ["the color of the sky"]]
    states = adapter.states(prompts)
    assert states.shape == (4, len(model.decoder.layers) + 1, model.cfg.decoder.dim)
    for i, p in enumerate(prompts):
        alone = ModelAdapter(model, tok, None, batch_size=1).states([p])
        assert torch.allclose(states[i], alone[0], atol=1e-5)
