"""Tables 7 and 8: OCR-free language understanding, the paper's HatefulMemes/Rendered SST-2 (and
WebSRC) next to ours (sentiment of sentences rendered as images, read from pixels only)."""

from __future__ import annotations

from paper_figures.common import Column, Context, paper_vs_ours


def build(ctx: Context):
    notes = [
        "Paper: HatefulMemes ROC AUC and Rendered SST-2 accuracy (%), zero-shot, from pixels; Kosmos-1 is above the "
        "CLIP baselines on both. WebSRC (Table 8) EM/F1 needs web-page screenshots with extracted text: no world "
        "analogue.",
        "Ours: accuracy (%) on the world's rendered sentences (positive/negative, text drawn into the image), mean "
        "[95% CI over seeds], the chain-of-thought grid's instruction-tuned model with the standard prompt.",
    ]
    return paper_vs_ours(
        ctx,
        "table07_ocr_free",
        "Tables 7 and 8: OCR-free language understanding — paper vs ours",
        [("table7", ["HatefulMemes", "Rendered SST-2"]), ("table8", ["EM", "F1"])],
        "chain-of-thought",
        [(None, "Kosmos-style MLLM (instruction-tuned)")],
        [Column("world rendered sentiment", "world-rendered-sentiment")],
        notes,
    )
