"""Table 16: visual commonsense from text alone, the paper's Kosmos-1 vs LLM next to our MLLM vs LLM
arms (world analogues split by vision-only and text-grounded categories; the real files when given)."""

from __future__ import annotations

from paper_figures.common import (
    Context,
    comparison_cell,
    fmt,
    ours_cell,
    ours_where,
    paper_table,
    provenance,
    summary_of,
    write_table,
)
from toolkit.grid.spec import select_arm

GRID = "visual-commonsense"
MLLM, LLM = "name=mllm", "name=llm"


def build(ctx: Context):
    paper = paper_table("table16")
    grid, df = ctx.frame(GRID)
    summary = summary_of(df)
    header = [
        "Model",
        "RelativeSize",
        "MemoryColor",
        "ColorTerms",
        "world size (vision-only)",
        "world colour (vision-only)",
        "world colour (grounded)",
    ]
    rows = [
        [f"{model} — paper, real benchmarks"] + [fmt(v) for v in values] + ["–", "–", "–"]
        for model, values in paper["rows"].items()
    ]
    gains = [a - b for a, b in zip(paper["rows"]["Kosmos-1 (language-only)"], paper["rows"]["LLM (language-only)"])]
    rows.append(["Kosmos-1 − LLM — paper"] + [f"{g:+.1f}" for g in gains] + ["–", "–", "–"])
    if grid is not None and not df.empty:
        cells = grid.cells()
        labels = {sel: select_arm(cells, sel) for sel in (MLLM, LLM)}
        n = df["seed"].nunique()
        for sel, name in ((MLLM, "MLLM"), (LLM, "LLM")):
            lab = labels[sel]
            rows.append(
                [
                    f"{name} — ours, {ours_where(grid)}, {n} seeds",
                    ours_cell(summary, lab, "relativesize"),
                    ours_cell(summary, lab, "memorycolor"),
                    ours_cell(summary, lab, "colorterms"),
                    ours_cell(summary, lab, "world-size", "vision_only"),
                    ours_cell(summary, lab, "world-colour", "vision_only"),
                    ours_cell(summary, lab, "world-colour", "grounded"),
                ]
            )
        rows.append(
            [f"MLLM − LLM — ours (paired, {n} seeds)"]
            + [
                comparison_cell(grid, MLLM, LLM, ev, group, ctx.results)
                for ev, group in (
                    ("relativesize", None),
                    ("memorycolor", None),
                    ("colorterms", None),
                    ("world-size", "vision_only"),
                    ("world-colour", "vision_only"),
                    ("world-colour", "grounded"),
                )
            ]
        )
    notes = [
        "Paper: accuracy (%) on the real benchmarks, zero-shot, text only; Kosmos-1 is above the LLM on all three.",
        "Ours: accuracy (%) mean [95% CI over training seeds]; the difference row is paired over seeds and examples "
        "(crossed). Vision-only categories never have their colour or size stated in text, so a positive MLLM − LLM "
        "there is transfer from images; a difference whose interval contains 0 is not an effect.",
    ]
    return write_table(
        ctx,
        "table16_visual_commonsense",
        paper["caption"] + " — paper vs ours",
        header,
        rows,
        notes,
        provenance(ctx, grid, df),
    )
