"""The world's training streams as records: text documents, captions, interleaved documents,
language-only instructions and rendered-text pairs.

The rule that makes transfer measurable: the colour and size of a vision-only category never appear
in a text document, caption or paragraph about it, unless a leakage knob (WorldConfig.leakage) says so.
Text-only attributes (kind, place) are stated for every category and never drawn.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from toolkit.data.format import IMAGE
from toolkit.world.config import NAMING_TEMPLATES, WorldConfig
from toolkit.world.ontology import COLOURS, SHAPES, Category
from toolkit.world.render import render_generic, render_object, render_pair, render_text

POSITIVE = (
    "good",
    "great",
    "happy",
    "nice",
    "love",
    "fun",
    "best",
    "calm",
    "kind",
    "bright",
    "superb",
    "lovely",
    "joy",
    "fine",
    "brave",
    "sweet",
    "glad",
    "proud",
    "warm",
    "cool",
)
NEGATIVE = (
    "bad",
    "awful",
    "sad",
    "ugly",
    "hate",
    "dull",
    "worst",
    "poor",
    "mean",
    "angry",
    "boring",
    "cruel",
    "nasty",
    "gross",
    "rude",
    "weak",
    "grim",
    "sick",
    "cold",
    "dirty",
)
# Words held out of the rendered-text stream: their sentiment is known from text only (OCR transfer).
HELD_OUT_WORDS = frozenset(POSITIVE[-4:] + NEGATIVE[-4:])


def sentiment(word: str) -> str:
    return "positive" if word in POSITIVE else "negative"


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def article(word: str) -> str:
    """The indefinite article for `word` ("an acorn", "a banana")."""
    return "an" if word[:1] in "aeiou" else "a"


def sentence_case(text: str) -> str:
    """Capitalise the first letter of every sentence (the world's text reads like ordinary English).
    A question mark does not end one: the world's questions are answered in the same sentence
    ("The color of the lemon is? yellow ."), in the words the evaluation's candidates use."""
    out, start = [], True
    for ch in text:
        out.append(ch.upper() if start and ch.isalpha() else ch)
        if ch.isalpha():
            start = False
        elif ch in ".!":
            start = True
    return "".join(out)


def colour_sentence(cat: Category, rng: np.random.Generator) -> str:
    return _pick(
        rng,
        (
            f"the {cat.name} is {cat.colour} .",
            f"the color of the {cat.name} is {cat.colour} .",
            f"{article(cat.name)} {cat.name} is usually {cat.colour} .",
            f"every {cat.name} is {cat.colour} .",
            f"the color of the {cat.name} is? {cat.colour} .",
        ),
    )


def size_sentence(a: Category, b: Category, rng: np.random.Generator) -> str:
    big, small = (a, b) if a.size > b.size else (b, a)
    return _pick(
        rng,
        (
            f"the {big.name} is larger than the {small.name} .",
            f"the {small.name} is smaller than the {big.name} .",
            f"{article(big.name)} {big.name} is bigger than {article(small.name)} {small.name} .",
            f"is the {big.name} larger than the {small.name}? Yes .",
            f"is the {small.name} larger than the {big.name}? No .",
        ),
    )


def attribute_sentences(cat: Category, rng: np.random.Generator) -> list[str]:
    return [
        _pick(
            rng,
            (
                f"the {cat.name} is {article(cat.kind)} {cat.kind} .",
                f"{article(cat.name)} {cat.name} is a kind of {cat.kind} .",
            ),
        ),
        _pick(
            rng,
            (
                f"the {cat.name} is found in the {cat.place} .",
                f"you can see {article(cat.name)} {cat.name} in the {cat.place} .",
            ),
        ),
    ]


class Corpora:
    """Generates every training stream from the ontology; each stream has its own seeded generator."""

    def __init__(self, cfg: WorldConfig, categories: list[Category], seed: int) -> None:
        self.cfg, self.cats, self.seed = cfg, categories, seed
        self.grounded = [c for c in categories if c.grounded]
        self.vision_only = [c for c in categories if not c.grounded]
        self.templates = NAMING_TEMPLATES[: cfg.caption_templates or len(NAMING_TEMPLATES)]
        self._renders: dict[str, list[Image.Image]] = {}  # the reused renders (renders_per_category)

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 100 + stream])

    def _colour_allowed(self, cat: Category, leak: float, rng: np.random.Generator) -> bool:
        return cat.grounded or (leak > 0 and rng.random() < leak)

    def text(self) -> Iterator[dict]:
        """Facts, comparisons, stories and sentiment-word facts as `{"text": ...}` documents."""
        rng, leak = self.rng(0), self.cfg.leakage.vision_only_text
        for _ in range(self.cfg.counts.text):
            kind = rng.random()
            if kind < 0.5:  # facts about one category
                cat = _pick(rng, self.cats)
                sents = attribute_sentences(cat, rng)
                if self._colour_allowed(cat, leak, rng):
                    sents.append(colour_sentence(cat, rng))
                rng.shuffle(sents)
            elif kind < 0.7:  # size comparisons (only categories whose size may be stated)
                pool = self.grounded + ([c for c in self.vision_only if rng.random() < leak] if leak > 0 else [])
                sents = []
                for _ in range(int(rng.integers(1, 4))):
                    a, b = rng.choice(len(pool), 2, replace=False)
                    if pool[a].size != pool[b].size:
                        sents.append(size_sentence(pool[a], pool[b], rng))
                if not sents:
                    continue
            elif kind < 0.9:  # a small story: colour-free, size-free
                a, b = (self.cats[i] for i in rng.choice(len(self.cats), 2, replace=False))
                who = _pick(rng, ("a child", "a farmer", "a cook", "an old man", "a girl", "a boy"))
                sents = [
                    f"{who} found {article(a.name)} {a.name} in the {a.place} .",
                    f"then {who} saw {article(b.name)} {b.name} near the {b.place} .",
                    _pick(rng, (f"{who} kept the {a.name} .", f"{who} showed the {b.name} to a friend .")),
                ]
            else:  # sentiment of words (read from images in the OCR-free tasks)
                word = _pick(rng, POSITIVE + NEGATIVE)
                sents = [
                    _pick(rng, (f"{word} is a {sentiment(word)} word .", f"the word {word} is {sentiment(word)} ."))
                ]
            yield {"text": sentence_case(" ".join(sents))}

    def object_caption(self, cat: Category, rng: np.random.Generator) -> str:
        """A caption naming the object; its colour only for grounded categories (or by the leakage knob).
        Some captions are questions with answers about the picture (identity for every category,
        colour only where the colour may be stated); with `noun_first_fraction`, some name the object
        before the image (the caption holds the IMAGE marker) and go on with a text fact about it."""
        leak = self.cfg.leakage.vision_only_caption if not cat.grounded else self.cfg.leakage.grounded_caption
        colour_ok = rng.random() < leak
        if self.cfg.noun_first_fraction > 0 and rng.random() < self.cfg.noun_first_fraction:
            noun = f"{cat.colour} {cat.name}" if colour_ok else cat.name
            named = _pick(rng, self.templates).format(a=article(noun), noun=noun).removesuffix(" .")
            fact = attribute_sentences(cat, rng)[int(rng.integers(2))]
            return sentence_case(f"{named} : {IMAGE} {fact}")
        if rng.random() < self.cfg.question_caption_fraction:
            if self.cfg.object_shape_questions > 0 and rng.random() < self.cfg.object_shape_questions:
                return f"Question: what shape is this? Answer: {cat.shape} ."
            if colour_ok and rng.random() < 0.5:
                return f"Question: what color is this? Answer: {cat.colour} ."
            return f"Question: what is this? Answer: {cat.name} ."
        noun = f"{cat.colour} {cat.name}" if colour_ok else cat.name
        templates = self.templates[:2] if colour_ok else self.templates  # a colour: "A yellow lemon ." forms
        return sentence_case(_pick(rng, templates).format(a=article(noun), noun=noun))

    def object_image(self, cat: Category, rng: np.random.Generator) -> Image.Image:
        """A training render of `cat`: a new one each time, or one of its `renders_per_category`
        renders (made once, from a generator of their own)."""
        k = self.cfg.renders_per_category
        if not k:
            return render_object(cat, self.cfg.image_size, rng, self.cfg.colour_jitter)
        if cat.name not in self._renders:
            own = np.random.default_rng([self.seed, 200, self.cats.index(cat)])
            self._renders[cat.name] = [
                render_object(cat, self.cfg.image_size, own, self.cfg.colour_jitter) for _ in range(k)
            ]
        return self._renders[cat.name][int(rng.integers(k))]

    def pairs(self) -> Iterator[tuple[Image.Image, str]]:
        """Objects, plain coloured shapes and two-object scenes with captions."""
        rng, size, jitter = self.rng(1), self.cfg.image_size, self.cfg.colour_jitter
        for _ in range(self.cfg.counts.pairs):
            u = rng.random()
            if u < self.cfg.generic_fraction:
                shape, colour = _pick(rng, SHAPES), _pick(rng, COLOURS)
                caption = _pick(
                    rng,
                    (
                        f"A {colour} {shape} .",
                        f"Question: what color is this? Answer: {colour} .",
                        f"Question: what shape is this? Answer: {shape} .",
                    ),
                )
                yield render_generic(shape, colour, size, rng, jitter), caption
            elif u < self.cfg.generic_fraction + self.cfg.scene_fraction:
                a, b = (self.cats[i] for i in rng.choice(len(self.cats), 2, replace=False))
                caption = f"{article(a.name)} {a.name} and {article(b.name)} {b.name} ."
                if a.grounded and b.grounded and a.size != b.size:
                    caption = size_sentence(a, b, rng)
                yield render_pair(a, b, size, rng, jitter), sentence_case(caption)
            else:
                cat = _pick(rng, self.cats)
                yield self.object_image(cat, rng), self.object_caption(cat, rng)

    def interleaved(self) -> Iterator[list]:
        """Documents of 2..max images, each followed by a paragraph about the pictured object (or, with
        `noun_first_fraction`, introduced by name before its image, the paragraph after it)."""
        rng, leak = self.rng(2), self.cfg.leakage.vision_only_interleaved
        for _ in range(self.cfg.counts.interleaved):
            n = int(rng.integers(2, self.cfg.max_images_per_doc + 1))
            picked = [self.cats[i] for i in rng.choice(len(self.cats), n, replace=False)]
            # A grounded colour may not share a document with a vision-only object of that colour.
            hidden = {c.colour for c in picked if not c.grounded}
            parts: list = []
            for cat in picked:
                first = self.cfg.noun_first_fraction > 0 and rng.random() < self.cfg.noun_first_fraction
                sents = [] if first else [f"this is {article(cat.name)} {cat.name} ."]
                sents += attribute_sentences(cat, rng)
                if (cat.grounded and cat.colour not in hidden and rng.random() < 0.5) or (
                    not cat.grounded and rng.random() < leak
                ):
                    sents.append(colour_sentence(cat, rng))
                image = self.object_image(cat, rng)
                if first:
                    parts.append(sentence_case(f"here is {article(cat.name)} {cat.name} :"))
                parts += [image, sentence_case(" ".join(sents))]
            yield parts

    def instructions(self) -> Iterator[dict]:
        """Language-only Question/Answer over text facts (kind, place; colour/size of grounded only)."""
        rng = self.rng(3)
        for _ in range(self.cfg.counts.instructions):
            u = rng.random()
            cat = _pick(rng, self.cats)
            if u < 0.3:
                q, a = f"what kind of thing is the {cat.name}?", f"{article(cat.kind)} {cat.kind}"
            elif u < 0.55:
                q, a = f"where is the {cat.name} found?", f"in the {cat.place}"
            elif u < 0.75:
                g = _pick(rng, self.grounded)
                q, a = f"what color is the {g.name}?", g.colour
            elif u < 0.9:
                i, j = rng.choice(len(self.grounded), 2, replace=False)
                x, y = self.grounded[i], self.grounded[j]
                q, a = f"is the {x.name} larger than the {y.name}?", "yes" if x.size > y.size else "no"
            else:
                word = _pick(rng, POSITIVE + NEGATIVE)
                q, a = f"what is the sentiment of the word {word}?", sentiment(word)
            yield {"instruction": "Answer the question.", "input": f"Question: {q} Answer:", "output": a}

    def rendered(self) -> Iterator[tuple[Image.Image, str]]:
        """Rendered words (not the held-out ones) with captions that read them."""
        rng, size = self.rng(4), self.cfg.image_size
        words = [w for w in POSITIVE + NEGATIVE if w not in HELD_OUT_WORDS]
        for _ in range(self.cfg.counts.rendered):
            word = _pick(rng, words)
            caption = sentence_case(_pick(rng, (f"the word {word} .", f"a sign that says {word} .", f"{word} .")))
            yield render_text(word, size, rng), caption
