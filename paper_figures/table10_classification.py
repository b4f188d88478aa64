"""Table 10: zero-shot image classification by generating the name, without and with the candidate
names as constraints, the paper's ImageNet next to ours (world categories)."""

from __future__ import annotations

from paper_figures.common import Column, Context, paper_vs_ours

FREE, CONSTRAINED = "world-classification", "world-classification-constrained"


def build(ctx: Context):
    notes = [
        "Paper: ImageNet top-1 accuracy (%) of the generated name; constraining generation to the 1,000 class names "
        "lifts Kosmos-1 from 4.0 to 38.1.",
        'Ours: accuracy (%) naming the world\'s categories ("An image of"), free and constrained to the category '
        "names, mean [95% CI over seeds]; the difference is paired over seeds and images.",
    ]
    return paper_vs_ours(
        ctx,
        "table10_classification",
        "Table 10: zero-shot image classification — paper vs ours",
        [("table10", ["Without constraints", "With constraints"])],
        "classification",
        [(None, "Kosmos-style MLLM")],
        [Column("world free", FREE), Column("world constrained", CONSTRAINED)],
        notes,
        paper_diffs=[("table10", "Kosmos-1", "GIT", "Kosmos-1 − GIT")],
        compare=[(None, None, "constrained − free", {"world constrained": (CONSTRAINED, FREE)})],
    )
