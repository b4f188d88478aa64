"""Leakage report: how often each category's noun shares a document with its colour word or a size
comparison, per stream, computed from the written text independently of how it was generated; and
the text priors: how much of a vision-only category's colour and size a text-only learner could
infer from the attributes the text states for every category (its kind and place), through the
grounded categories that share them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from toolkit.world.ontology import COLOURS, Category

SIZE_WORDS = frozenset({"larger", "smaller", "bigger", "large", "small", "big", "tiny", "huge"})
_WORD = re.compile(r"[a-z]+")


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def leakage_report(categories: list[Category], streams: dict[str, Iterable[str]]) -> dict:
    """`streams` maps a stream name to its documents' text (one string per document or caption)."""
    by_name = {c.name: c for c in categories}
    report: dict = {"streams": {}, "vision_only_leaks": {}}
    for stream, docs in streams.items():
        counts = dict.fromkeys(
            ("documents", "vision_only_colour", "vision_only_size", "grounded_colour", "grounded_size"), 0
        )
        for text in docs:
            counts["documents"] += 1
            ws = words(text)
            has_size = bool(ws & SIZE_WORDS)
            for name in ws & by_name.keys():
                cat = by_name[name]
                prefix = "grounded" if cat.grounded else "vision_only"
                colour = cat.colour in ws
                counts[f"{prefix}_colour"] += colour
                counts[f"{prefix}_size"] += has_size
                if not cat.grounded and (colour or has_size):
                    entry = report["vision_only_leaks"].setdefault(name, {})
                    entry[stream] = entry.get(stream, 0) + 1
        report["streams"][stream] = counts
    report["vision_only_total"] = sum(
        c["vision_only_colour"] + c["vision_only_size"] for c in report["streams"].values()
    )
    report["text_priors"] = text_priors(categories)
    return report


def text_priors(categories: list[Category]) -> dict:
    """Accuracy on the vision-only categories of text-only rules that read a shared attribute (kind or
    place, stated in text for every category) and answer what the grounded categories sharing it have:
    colour = their most common colour (ties: the first in COLOURS; none: no answer, counted wrong);
    size = which of two vision-only categories is larger by their grounded mean size (over all pairs
    of different size; equal predictions count half). Chance is 1/11 and 1/2. A rule well above
    chance is a route from text to "vision-only" facts that the LLM arm can use too."""
    grounded = [c for c in categories if c.grounded]
    vision = [c for c in categories if not c.grounded]
    out: dict = {
        "colour": {"chance": round(1 / len(COLOURS), 4)},
        "size": {"chance": 0.5},
        "vision_only": len(vision),
    }
    if not vision:
        return out
    mean_size = sum(c.size for c in grounded) / len(grounded) if grounded else 5.5
    for attr in ("kind", "place"):
        right = 0
        predicted_size = {}
        for cat in vision:
            peers = [g for g in grounded if getattr(g, attr) == getattr(cat, attr)]
            colours = [g.colour for g in peers]
            if colours:
                guess = min(set(colours), key=lambda c: (-colours.count(c), COLOURS.index(c)))
                right += guess == cat.colour
            predicted_size[cat.name] = sum(g.size for g in peers) / len(peers) if peers else mean_size
        out["colour"][f"by_{attr}"] = round(right / len(vision), 4)
        score = pairs = 0.0
        for i, a in enumerate(vision):
            for b in vision[i + 1 :]:
                if a.size == b.size:
                    continue
                pairs += 1
                pa, pb = predicted_size[a.name], predicted_size[b.name]
                score += 0.5 if pa == pb else float((pa > pb) == (a.size > b.size))
        out["size"][f"by_{attr}"] = round(score / pairs, 4) if pairs else None
    return out
