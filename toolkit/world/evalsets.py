"""Evaluation sets of the world, one per task family, with gold answers and held-out images.

Each generator yields (record, {image name: PIL image}); records refer to images by file name
relative to the eval directory. Held-out images are new renders (their own random stream), never
training samples.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from toolkit.world.config import WorldConfig
from toolkit.world.corpora import HELD_OUT_WORDS, NEGATIVE, POSITIVE, article, sentiment
from toolkit.world.ontology import COLOURS, SHAPES, Category
from toolkit.world.raven import candidates, make_matrix, render_panel
from toolkit.world.render import render_object, render_text

Item = tuple[dict, dict[str, Image.Image]]
# Nonce names for the novel categories of classification with descriptions.
NOVEL_NAMES = ("zorb", "blick", "dax", "wug", "fep", "tove", "gimble", "snark", "jabber", "borog", "mome", "rath")


class EvalSets:
    def __init__(self, cfg: WorldConfig, categories: list[Category], seed: int) -> None:
        self.cfg, self.cats, self.seed = cfg, categories, seed

    def rng(self, task: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 500 + task])

    def _object_images(self, task: int, prefix: str) -> Iterator[tuple[int, Category, str, Image.Image]]:
        rng, n = self.rng(task), 0
        for cat in self.cats:
            for _ in range(self.cfg.eval.images_per_category):
                yield (
                    n,
                    cat,
                    f"images/{prefix}-{n:05d}.png",
                    render_object(cat, self.cfg.image_size, rng, self.cfg.colour_jitter),
                )
                n += 1

    def captioning(self) -> Iterator[Item]:
        for i, cat, name, img in self._object_images(0, "caption"):
            refs = [
                f"{article(cat.name)} {cat.name} .",
                f"a photo of {article(cat.name)} {cat.name} .",
                f"this is {article(cat.name)} {cat.name} .",
            ]
            yield (
                {"id": i, "image": name, "references": refs, "category": cat.name, "grounded": cat.grounded},
                {name: img},
            )

    def vqa(self) -> Iterator[Item]:
        """Colour, identity and shape questions; VQAv2-style lists of 10 answers."""
        questions = (("what color is this?", "colour"), ("what is this?", "name"), ("what shape is this?", "shape"))
        for i, cat, name, img in self._object_images(1, "vqa"):
            q, attr = questions[i % 3]
            answer = cat.colour if attr == "colour" else cat.name if attr == "name" else cat.shape
            rec = {
                "id": i,
                "image": name,
                "question": q,
                "answers": [answer] * 10,
                "type": attr,
                "category": cat.name,
                "grounded": cat.grounded,
            }
            yield rec, {name: img}

    def classification(self) -> Iterator[Item]:
        labels = [c.name for c in self.cats]
        for i, cat, name, img in self._object_images(2, "cls"):
            yield (
                {"id": i, "image": name, "label": cat.name, "candidates": labels, "grounded": cat.grounded},
                {name: img},
            )

    def language_to_vision(self) -> Iterator[Item]:
        """A text-only attribute (kind, place) asked about a pictured object."""
        for i, cat, name, img in self._object_images(3, "l2v"):
            if i % 2 == 0:
                q, a = "what kind of thing is this?", f"{article(cat.kind)} {cat.kind}"
                cands = sorted({f"{article(c.kind)} {c.kind}" for c in self.cats})
            else:
                q, a = "where is this found?", f"in the {cat.place}"
                cands = sorted({f"in the {c.place}" for c in self.cats})
            rec = {
                "id": i,
                "image": name,
                "question": q,
                "answer": a,
                "candidates": cands,
                "category": cat.name,
                "grounded": cat.grounded,
            }
            yield rec, {name: img}

    def descriptions(self) -> Iterator[Item]:
        """Pairs of novel categories that share a shape and differ in colour, described in words."""
        rng, n = self.rng(4), 0
        size = self.cfg.image_size
        for g in range(self.cfg.eval.description_groups):
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            c1, c2 = (COLOURS[i] for i in rng.choice(len(COLOURS), 2, replace=False))
            names = NOVEL_NAMES[2 * g % len(NOVEL_NAMES)], NOVEL_NAMES[(2 * g + 1) % len(NOVEL_NAMES)]
            descs = {names[0]: f"It has a {c1} {shape} shape.", names[1]: f"It has a {c2} {shape} shape."}
            for label, colour in zip(names, (c1, c2)):
                for _ in range(self.cfg.eval.per_description_category):
                    novel = Category(label, colour, int(rng.integers(3, 8)), "", "", shape)
                    name = f"images/desc-{n:05d}.png"
                    rec = {
                        "id": n,
                        "image": name,
                        "label": label,
                        "candidates": list(names),
                        "descriptions": descs,
                        "group": g,
                        "general": "object",
                    }
                    yield rec, {name: render_object(novel, size, rng, self.cfg.colour_jitter)}
                    n += 1

    def rendered_sentiment(self) -> Iterator[Item]:
        rng = self.rng(5)
        words = POSITIVE + NEGATIVE
        for i in range(self.cfg.eval.rendered_sentiment):
            word = words[int(rng.integers(len(words)))]
            name = f"images/sst-{i:05d}.png"
            rec = {
                "id": i,
                "image": name,
                "text": word,
                "label": sentiment(word),
                "held_out_word": word in HELD_OUT_WORDS,
            }
            yield rec, {name: render_text(word, self.cfg.image_size, rng)}

    def raven(self) -> Iterator[Item]:
        rng, size = self.rng(6), self.cfg.image_size
        for i in range(self.cfg.eval.raven):
            size3 = i % 4 != 3  # three in four are 3x3 matrices, the rest 2x2
            context, answer, rules = make_matrix(rng, size3)
            cands, target = candidates(answer, rng)
            images, ctx_names, cand_names = {}, [], []
            for j, panel in enumerate(context):
                ctx_names.append(f"images/raven-{i:05d}-c{j}.png")
                images[ctx_names[-1]] = render_panel(panel, size)
            for j, panel in enumerate(cands):
                cand_names.append(f"images/raven-{i:05d}-a{j}.png")
                images[cand_names[-1]] = render_panel(panel, size)
            rec = {
                "id": i,
                "context": ctx_names,
                "candidates": cand_names,
                "answer": target,
                "rules": rules,
                "matrix": "3x3" if size3 else "2x2",
            }
            yield rec, images

    def visual_commonsense_colour(self) -> Iterator[Item]:
        """Text-only: `The color of {object} is?` over the 11 colours (MemoryColor-style)."""
        for i, cat in enumerate(self.cats):
            yield (
                {
                    "id": i,
                    "object": f"the {cat.name}",
                    "answer": cat.colour,
                    "candidates": list(COLOURS),
                    "category": cat.name,
                    "grounded": cat.grounded,
                },
                {},
            )

    def visual_commonsense_size(self) -> Iterator[Item]:
        """Text-only: `Is {a} larger than {b}?` with both orders, so gold is Yes half the time."""
        rng = self.rng(7)
        seen, i = set(), 0
        while i < self.cfg.eval.size_pairs:
            a, b = (self.cats[k] for k in rng.choice(len(self.cats), 2, replace=False))
            if abs(a.size - b.size) < 2 or (a.name, b.name) in seen:
                continue
            for x, y in ((a, b), (b, a)):
                seen.add((x.name, y.name))
                split = (
                    "grounded"
                    if x.grounded and y.grounded
                    else "vision_only"
                    if not x.grounded and not y.grounded
                    else "mixed"
                )
                yield (
                    {
                        "id": i,
                        "item1": f"the {x.name}",
                        "item2": f"the {y.name}",
                        "answer": "Yes" if x.size > y.size else "No",
                        "split": split,
                    },
                    {},
                )
                i += 1

    def language_mc(self) -> Iterator[Item]:
        """Text-only multiple choice over text facts (kind and place)."""
        rng = self.rng(8)
        places = sorted({c.place for c in self.cats})
        kinds = sorted({c.kind for c in self.cats})
        for i in range(self.cfg.eval.language_mc):
            cat = self.cats[int(rng.integers(len(self.cats)))]
            if i % 2:
                ctx, gold, pool = f"the {cat.name} is found in the", cat.place, places
            else:
                ctx, gold, pool = f"the {cat.name} is a", cat.kind, kinds
            wrong = [p for p in pool if p != gold]
            cands = [gold] + [wrong[k] for k in rng.choice(len(wrong), 3, replace=False)]
            order = rng.permutation(4).tolist()
            yield (
                {
                    "id": i,
                    "context": ctx,
                    "candidates": [cands[k] for k in order],
                    "label": order.index(0),
                    "category": cat.name,
                },
                {},
            )

    def text_qa(self) -> Iterator[Item]:
        """Instruction following in text: the instruction stream's Question/Answer format, answered by
        generation, over facts stated in text for every category (kind, place)."""
        rng = self.rng(9)
        for i in range(self.cfg.eval.text_qa):
            cat = self.cats[int(rng.integers(len(self.cats)))]
            if i % 2:
                q, a, kind = f"where is the {cat.name} found?", f"in the {cat.place}", "place"
            else:
                q, a, kind = f"what kind of thing is the {cat.name}?", f"{article(cat.kind)} {cat.kind}", "kind"
            rec = {"id": i, "question": q, "answer": a, "type": kind, "category": cat.name, "grounded": cat.grounded}
            yield rec, {}


TASKS = (
    "captioning",
    "vqa",
    "classification",
    "language_to_vision",
    "descriptions",
    "rendered_sentiment",
    "raven",
    "visual_commonsense_colour",
    "visual_commonsense_size",
    "language_mc",
    "text_qa",
)
