"""Leakage report: how often each category's noun shares a document with its colour word or a size
comparison, per stream. Computed from the written text, independently of how it was generated."""

from __future__ import annotations

import re
from collections.abc import Iterable

from toolkit.world.ontology import Category

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
    return report
