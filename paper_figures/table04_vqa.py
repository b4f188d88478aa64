"""Tables 4 and 5: zero- and few-shot VQA, the paper's VQAv2/VizWiz next to ours (world VQA,
VQA accuracy; the few-shot grid's multimodal model)."""

from __future__ import annotations

from paper_figures.common import Context, few_shot_table


def build(ctx: Context):
    notes = [
        "Paper: VQA accuracy (%) on VQAv2 and VizWiz test-dev; demonstrations help Kosmos-1 a little on VQAv2 (51.0 "
        "zero-shot, 51.4-51.8 with 2-8 demos) and much on VizWiz (29.2 to 39.0 at k=8).",
        "Ours: VQA accuracy (%) on the world's questions, mean [95% CI over training seeds]; the difference row is k "
        "shots minus zero-shot, paired over seeds and examples.",
    ]
    return few_shot_table(
        ctx,
        "table04_vqa",
        "Tables 4 and 5: zero- and few-shot visual question answering — paper vs ours",
        "world-vqa",
        [("table4", ["VQAv2", "VizWiz"]), ("table5", ["VQAv2 k=2", "VQAv2 k=4", "VQAv2 k=8"])],
        notes,
    )
