"""Evaluation examples and the loaders that read them from the world's eval sets.

An `Example` holds its images (file paths, opened lazily), the fields a prompt template fills in, the
gold answer and, for ranked tasks, the candidates. Loaders are registered by name; a task names its
loader and source path. Malformed records are skipped and counted; nothing valid at all is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from toolkit.config import DataError
from toolkit.data.records import read_jsonl_objects
from toolkit.data.shards import SkipLog
from toolkit.registry import Registry


@dataclass
class Example:
    id: str
    images: list = field(default_factory=list)  # paths or PIL images, in prompt order
    fields: dict = field(default_factory=dict)  # values for the prompt template
    target: str = ""  # gold answer text (the gold candidate for ranked tasks)
    candidates: list[str] | None = None  # for ranked tasks without a fixed candidate list
    answers: list[str] | None = None  # VQA human answers / caption references
    meta: dict = field(default_factory=dict)  # grouping labels (e.g. grounded) and extra gold data

    @property
    def groups(self) -> list[str]:
        """The groups results are split by: `group` (e.g. vision_only), `type` (e.g. colour, the kind
        of question) and their cross (colour/vision_only)."""
        group, kind = self.meta.get("group"), self.meta.get("type")
        return [g for g in (group, kind) if g] + ([f"{kind}/{group}"] if group and kind else [])

    def image(self, i: int) -> Image.Image:
        item = self.images[i]
        return item if isinstance(item, Image.Image) else Image.open(item).convert("RGB")


@dataclass
class Prediction:
    """What a model answered for one example (toolkit.eval.modes)."""

    example: Example
    prompt: str  # the prompt as text, each image as <image>
    output: str  # the best candidate (ranked) or the generated answer (up to its first newline)
    candidates: dict[str, float] | None = None  # ranked: each candidate's log-likelihood (per token if length_norm)


LOADERS: Registry[Callable[..., list[Example]]] = Registry("dataset loader")


def read_jsonl(path: Path, skips: SkipLog, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Records of an eval jsonl that have every `required` field; the others are skipped and counted."""
    for line_no, row in read_jsonl_objects(path, skips, "eval data"):
        missing = [k for k in required if k not in row]
        if missing:
            skips.skip(f"record without {', '.join(missing)}", f"{path}:{line_no}")
            continue
        yield line_no, row


def _world(
    path: str | os.PathLike, skips: SkipLog, required: tuple[str, ...], make: Callable[[Path, dict], Example]
) -> list[Example]:
    path = Path(path)
    out = []
    for line_no, row in read_jsonl(path, skips, required):
        try:
            out.append(make(path.parent, row))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            skips.skip("malformed record", f"{path}:{line_no}: {err!r}")
    if not out:
        raise DataError(f"{path}: no valid records (expected jsonl with fields {', '.join(required)})")
    return out


def _grounded(row: dict) -> dict:
    return {"group": "grounded" if row.get("grounded") else "vision_only"} if "grounded" in row else {}


@LOADERS.register("world_captioning")
def world_captioning(path, skips: SkipLog) -> list[Example]:
    return _world(
        path,
        skips,
        ("id", "image", "references"),
        lambda d, r: Example(
            str(r["id"]), [d / r["image"]], {}, r["references"][0], answers=list(r["references"]), meta=_grounded(r)
        ),
    )


@LOADERS.register("world_vqa")
def world_vqa(path, skips: SkipLog) -> list[Example]:
    return _world(
        path,
        skips,
        ("id", "image", "question", "answers"),
        lambda d, r: Example(
            str(r["id"]),
            [d / r["image"]],
            {"question": r["question"]},
            r["answers"][0],
            answers=list(r["answers"]),
            meta={**_grounded(r), "type": r.get("type", "")},
        ),
    )


@LOADERS.register("world_classification")
def world_classification(path, skips: SkipLog) -> list[Example]:
    return _world(
        path,
        skips,
        ("id", "image", "label", "candidates"),
        lambda d, r: Example(
            str(r["id"]), [d / r["image"]], {}, r["label"], candidates=list(r["candidates"]), meta=_grounded(r)
        ),
    )


@LOADERS.register("world_question_choice")
def world_question_choice(path, skips: SkipLog) -> list[Example]:
    """Image + question, answered by ranking the record's candidates (language -> vision facts)."""
    return _world(
        path,
        skips,
        ("id", "image", "question", "answer", "candidates"),
        lambda d, r: Example(
            str(r["id"]),
            [d / r["image"]],
            {"question": r["question"]},
            r["answer"],
            candidates=list(r["candidates"]),
            meta=_grounded(r),
        ),
    )


@LOADERS.register("world_descriptions")
def world_descriptions(path, skips: SkipLog) -> list[Example]:
    def make(d: Path, r: dict) -> Example:
        names = list(r["candidates"])
        descs = r["descriptions"]
        fields = {
            "name1": names[0],
            "name2": names[1],
            "desc1": descs[names[0]],
            "desc2": descs[names[1]],
            "general": r.get("general", "object"),
        }
        return Example(
            str(r["id"]),
            [d / r["image"]],
            fields,
            r["label"],
            candidates=names,
            meta={"group": f"group{r.get('group', 0)}"},
        )

    return _world(path, skips, ("id", "image", "label", "candidates", "descriptions"), make)


@LOADERS.register("world_sentiment")
def world_sentiment(path, skips: SkipLog) -> list[Example]:
    return _world(
        path,
        skips,
        ("id", "image", "label"),
        lambda d, r: Example(
            str(r["id"]),
            [d / r["image"]],
            {},
            r["label"],
            meta={"group": "held_out_word" if r.get("held_out_word") else "seen_word"},
        ),
    )


@LOADERS.register("world_raven")
def world_raven(path, skips: SkipLog) -> list[Example]:
    def make(d: Path, r: dict) -> Example:
        context, cands = [d / p for p in r["context"]], [d / p for p in r["candidates"]]
        if not 0 <= int(r["answer"]) < len(cands):
            raise ValueError(f"answer {r['answer']} out of range")
        return Example(
            str(r["id"]),
            context + cands,
            {"n_context": len(context)},
            str(int(r["answer"])),
            candidates=[str(i) for i in range(len(cands))],
            meta={"group": r.get("matrix", "")},
        )

    return _world(path, skips, ("id", "context", "candidates", "answer"), make)


@LOADERS.register("world_colour")
def world_colour(path, skips: SkipLog) -> list[Example]:
    return _world(
        path,
        skips,
        ("id", "object", "answer", "candidates"),
        lambda d, r: Example(
            str(r["id"]), [], {"object": r["object"]}, r["answer"], candidates=list(r["candidates"]), meta=_grounded(r)
        ),
    )


@LOADERS.register("world_size")
def world_size(path, skips: SkipLog) -> list[Example]:
    return _world(
        path,
        skips,
        ("id", "item1", "item2", "answer"),
        lambda d, r: Example(
            str(r["id"]),
            [],
            {"item1": r["item1"], "item2": r["item2"]},
            r["answer"],
            meta={"group": r.get("split", "")},
        ),
    )


@LOADERS.register("world_text_qa")
def world_text_qa(path, skips: SkipLog) -> list[Example]:
    return _world(
        path,
        skips,
        ("id", "question", "answer"),
        lambda d, r: Example(
            str(r["id"]), [], {"question": r["question"]}, r["answer"], meta={**_grounded(r), "type": r.get("type", "")}
        ),
    )


@LOADERS.register("world_language_mc")
def world_language_mc(path, skips: SkipLog) -> list[Example]:
    return _world(
        path,
        skips,
        ("id", "context", "candidates", "label"),
        lambda d, r: Example(
            str(r["id"]),
            [],
            {"context": r["context"]},
            r["candidates"][int(r["label"])],
            candidates=list(r["candidates"]),
        ),
    )
