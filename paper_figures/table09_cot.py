"""Table 9: multimodal chain-of-thought prompting on Rendered SST-2, the paper's next to ours
(world rendered sentiment, standard prompt vs a generated description first)."""

from __future__ import annotations

from paper_figures.common import Column, Context, paper_vs_ours

STANDARD, COT = "world-rendered-sentiment", "world-rendered-sentiment-cot"


def build(ctx: Context):
    notes = [
        'Paper: Rendered SST-2 accuracy (%); multimodal chain-of-thought ("Introduce this picture in detail:" first) '
        "lifts Kosmos-1 from 67.1 to 72.9.",
        "Ours: accuracy (%) on the world's rendered sentences, mean [95% CI over seeds]; the difference is CoT minus "
        "standard prompting on the same model, paired over seeds and examples.",
    ]
    return paper_vs_ours(
        ctx,
        "table09_cot",
        "Table 9: multimodal chain-of-thought prompting — paper vs ours",
        [("table9", ["Accuracy"])],
        "chain-of-thought",
        [(None, "Kosmos-style MLLM (instruction-tuned)")],
        [Column("world standard prompt", STANDARD), Column("world chain-of-thought", COT)],
        notes,
        paper_diffs=[("table9", "Kosmos-1 w/ multimodal CoT", "Kosmos-1", "CoT − standard")],
        compare=[(None, None, "CoT − standard", {"world chain-of-thought": (COT, STANDARD)})],
    )
