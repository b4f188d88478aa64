"""Table 6: Raven IQ tests, the paper's accuracy next to ours (world Raven puzzles, six candidates;
the instruction-tuning grid's arms, as in the paper's with/without rows)."""

from __future__ import annotations

from paper_figures.common import Column, Context, paper_vs_ours

ON, OFF = "name=instruct", "name=no-instruct"


def build(ctx: Context):
    notes = [
        "Paper: accuracy (%) on 50 Raven IQ tests with 6 candidates (chance 17%); Kosmos-1 22%, 26% without "
        "language-only instruction tuning.",
        "Ours: accuracy (%) on the world's Raven puzzles (6 candidates, chance 16.7%), mean [95% CI over seeds]; the "
        "difference is paired over seeds and puzzles.",
    ]
    return paper_vs_ours(
        ctx,
        "table06_raven",
        "Table 6: zero-shot Raven IQ tests — paper vs ours",
        [("table6", ["Accuracy"])],
        "instruction-tuning",
        [(ON, "with instruction tuning"), (OFF, "without instruction tuning")],
        [Column("world Raven", "world-raven")],
        notes,
        paper_diffs=[("table6", "Kosmos-1", "Kosmos-1 w/o language-only instruction tuning", "with − without")],
        compare=[(ON, OFF, "with − without", None)],
    )
