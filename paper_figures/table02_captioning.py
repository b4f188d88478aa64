"""Tables 2 and 3: zero- and few-shot captioning, the paper's COCO/Flickr30k CIDEr next to ours
(world captions, CIDEr x100; the few-shot grid's multimodal model, demos as in the paper)."""

from __future__ import annotations

from paper_figures.common import Context, few_shot_table


def build(ctx: Context):
    notes = [
        "Paper: CIDEr (and SPICE) on COCO Karpathy test and Flickr30k test; Kosmos-1 is best zero-shot and its "
        "few-shot CIDEr rises from k=2 to k=4 on both sets.",
        "Ours: CIDEr x100 on the world's captions, mean [95% CI over training seeds]; the difference row is k shots "
        "minus zero-shot, paired over seeds and examples; blank demo images control for what the demos' pictures add.",
    ]
    return few_shot_table(
        ctx,
        "table02_captioning",
        "Tables 2 and 3: zero- and few-shot image captioning — paper vs ours",
        "world-captioning",
        [("table2", ["COCO CIDEr", "Flickr30k CIDEr"]), ("table3", ["COCO k=2", "COCO k=4", "COCO k=8"])],
        notes,
    )
