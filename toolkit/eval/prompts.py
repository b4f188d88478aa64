"""Prompts as lists of parts (text and images): templates, few-shot demos, ablated demos, Raven.

Few-shot: k demonstrations, each its filled template followed by its answer, come before the query.
Ablations replace only the demos' images: `text` drops them, `shuffle` permutes them among the demos,
`blank` puts a uniform grey image in their place. The query is never changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
from PIL import Image

from toolkit.eval.examples import Example
from toolkit.eval.tasks import TaskSpec
from toolkit.registry import Registry

Part = str | Image.Image
ABLATIONS = ("none", "text", "shuffle", "blank")
_MARK = re.compile(r"(<image>)")


def fill(template: str, ex: Example, extra: dict | None = None) -> list[Part]:
    """Template -> parts; each <image> takes the example's next image."""
    fields = {**ex.fields, **(extra or {})}
    parts: list[Part] = []
    n = 0
    for piece in _MARK.split(template):
        if piece == "<image>":
            parts.append(ex.image(n))
            n += 1
        elif piece.strip():
            parts.append(piece.format(**fields).strip())
    return parts


def demo_answer(ex: Example) -> str:
    return ex.answers[0] if ex.answers else ex.target


def with_demos(
    query: list[Part], demos: list[list[Part]], ablation: str, rng: np.random.Generator, blank_size: int
) -> list[Part]:
    """Prepend demos (each already ending with its answer), with their images ablated as asked."""
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown demo ablation '{ablation}'; valid: {', '.join(ABLATIONS)}")
    images = [p for d in demos for p in d if isinstance(p, Image.Image)]
    if ablation == "shuffle" and len(images) > 1:
        order = rng.permutation(len(images))
        while len(images) > 1 and (order == np.arange(len(images))).all():
            order = rng.permutation(len(images))
        images = [images[i] for i in order]
    out: list[Part] = []
    it = iter(images)
    for demo in demos:
        for part in demo:
            if not isinstance(part, Image.Image):
                out.append(part)
            elif ablation == "text":
                continue
            elif ablation == "blank":
                out.append(Image.new("RGB", (blank_size, blank_size), (128, 128, 128)))
            else:
                out.append(next(it))
    return out + query


class FewShotPrompts:
    """The prompts of one cell: each example's template filled, after `shots` demonstrations drawn
    from the other examples with the recorded seed (demo images ablated as `ablation` says). A demo
    is the task's `demo` template, or its prompt followed by the answer."""

    def __init__(
        self, spec: TaskSpec, examples: list[Example], shots: int, ablation: str, seed: int, image_size: int
    ) -> None:
        self.spec, self.examples, self.shots, self.ablation = spec, examples, shots, ablation
        self.seed, self.image_size = seed, image_size
        self.demos: list[list[list[Part]]] = []
        for i in range(len(examples) if shots else 0):
            pool = [j for j in range(len(examples)) if j != i]
            picked = np.random.default_rng([seed, i]).choice(pool, min(shots, len(pool)), replace=False)
            self.demos.append([self._demo(examples[j]) for j in picked])

    def _demo(self, ex: Example) -> list[Part]:
        return fill(self.spec.demo, ex) if self.spec.demo else fill(self.spec.prompt, ex) + [demo_answer(ex)]

    def with_demos(self, i: int, query: list[Part]) -> list[Part]:
        """`query` (example i's prompt) after example i's demonstrations."""
        if not self.shots:
            return query
        rng = np.random.default_rng([self.seed, i, 1])
        return with_demos(query, self.demos[i], self.ablation, rng, self.image_size)

    def query(self, i: int, extra: dict | None = None) -> list[Part]:
        """Example i's filled template (with `extra` fields, e.g. a rationale) after its demonstrations."""
        return self.with_demos(i, fill(self.spec.prompt, self.examples[i], extra))


# A builder returns, for one example, [(prompt parts, continuation text)] -- one pair per candidate.
BUILDERS: Registry[Callable[[TaskSpec, Example], list[tuple[list[Part], str]]]] = Registry("prompt builder")
_COUNT_WORDS = {3: "three", 4: "four", 8: "eight"}


@BUILDERS.register("raven")
def raven_requests(task: TaskSpec, ex: Example) -> list[tuple[list[Part], str]]:
    """Kosmos-1's IQ protocol: the context images one by one, then each candidate, then P(Yes)."""
    n = int(ex.fields["n_context"])
    context = [ex.image(i) for i in range(n)]
    head = [f"Here are {_COUNT_WORDS.get(n, str(n))} images:", *context, "The following image is:"]
    return [([*head, ex.image(n + j), "Is it correct?"], "Yes") for j in range(len(ex.candidates))]
