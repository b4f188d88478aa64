"""Table 13: language tasks zero- and few-shot, the paper's LLM vs Kosmos-1 next to ours (the world's
multiple-choice sentence completions; MLLM vs the LLM arm trained on the same text)."""

from __future__ import annotations

from paper_figures.common import Column, Context, paper_vs_ours

MLLM, LLM = "name=mllm", "name=llm"
SHOTS = (0, 1, 4)


def build(ctx: Context):
    cols = [f"{k}-shot {m}" for k in SHOTS for m in ("LLM", "Kosmos-1")]
    columns = [
        Column(f"world {k}-shot", "world-language-mc" if k == 0 else f"world-language-mc-{k}shot") for k in SHOTS
    ]
    notes = [
        "Paper: accuracy (%) on eight language tasks, neither model instruction-tuned; Kosmos-1 is on par with the "
        "LLM on average (0-shot 60.5 vs 61.1, 4-shot 62.2 vs 61.8) and below it on Winograd at every k.",
        "Ours: accuracy (%) on the world's multiple-choice language items, mean [95% CI over seeds]; MLLM − LLM is "
        "paired over seeds and items: the cost or gain of images for language.",
    ]
    return paper_vs_ours(
        ctx,
        "table13_language",
        "Table 13: language tasks — paper vs ours",
        [("table13", cols)],
        "language-tasks",
        [(MLLM, "MLLM"), (LLM, "LLM (same text)")],
        columns,
        notes,
        compare=[(MLLM, LLM, "MLLM − LLM", None)],
    )
