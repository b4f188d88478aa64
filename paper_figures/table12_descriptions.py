"""Table 12: classifying pictures of novel categories with verbal descriptions in the prompt, the
paper's CUB-style groups next to ours (world categories described by colour, shape and size)."""

from __future__ import annotations

from paper_figures.common import Column, Context, paper_vs_ours

WITH, WITHOUT = "world-descriptions", "world-descriptions-names"


def build(ctx: Context):
    notes = [
        "Paper: accuracy (%) over 3 groups of 2 similar bird-like categories; descriptions in the prompt lift "
        "Kosmos-1 from 61.7 to 90.0.",
        "Ours: accuracy (%) choosing between world categories given their descriptions vs their names only, mean "
        "[95% CI over seeds]; the difference is paired over seeds and examples.",
    ]
    return paper_vs_ours(
        ctx,
        "table12_descriptions",
        "Table 12: classification with descriptions — paper vs ours",
        [("table12", ["Accuracy"])],
        "descriptions",
        [(None, "Kosmos-style MLLM (instruction-tuned)")],
        [Column("world names only", WITHOUT), Column("world with descriptions", WITH)],
        notes,
        paper_diffs=[("table12", "With descriptions", "Without descriptions", "with − without descriptions")],
        compare=[(None, None, "with − without descriptions", {"world with descriptions": (WITH, WITHOUT)})],
    )
