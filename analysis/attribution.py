"""Attribution study: for world VQA questions, how much of the answer's log-probability comes from
the image patches and how much from the text tokens (captum integrated gradients)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from analysis.common import is_hf, save_figure, vqa_study_prompts, write_csv
from toolkit.interp.attribution import attribute


def run_attribution(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    limit: int = 12,
    n_steps: int = 32,
    world: str | os.PathLike | None = None,
) -> pd.DataFrame:
    out = Path(out)
    adapter, prompts = vqa_study_prompts(run_dir, world, limit, "image input to attribute to")
    study = hf_prompt_attribution if is_hf(adapter) else xmt_prompt_attribution
    rows = []
    for ex, parts in prompts:
        res = study(adapter, parts, ex.target, n_steps)
        diff = res.output - res.baseline_output
        rows.append(
            {
                "id": ex.id,
                "question": ex.fields["question"],
                "answer": ex.target,
                "type": ex.meta.get("type"),
                "group": ex.meta.get("group"),
                "image_share": res.shares["image"],
                "text_share": res.shares["text"],
                "logp": res.output,
                "logp_baseline": res.baseline_output,
                "completeness_error": res.delta,
                "relative_error": abs(res.delta) / max(abs(diff), 1e-9),
            }
        )
    df = pd.DataFrame(rows)
    write_csv(df, out, "attribution")
    plot_shares(df, out)
    return df


def xmt_prompt_attribution(adapter, parts, answer: str, n_steps: int):
    """Integrated gradients of log p(answer | prompt) over xmt's text embeddings and image patches."""
    ids, pixels = adapter.encode(parts)
    return attribute(adapter.model, torch.tensor(ids), adapter.tok.encode(" " + answer), pixels, n_steps=n_steps)


def hf_prompt_attribution(adapter, parts, answer: str, n_steps: int):
    """The same for a Hugging Face family (its token embeddings and its tower's patch embedding)."""
    from toolkit.families.attribution import attribute as attribute_hf

    return attribute_hf(adapter, parts, answer, n_steps=n_steps)


def plot_shares(df: pd.DataFrame, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = df.groupby("type")[["image_share", "text_share"]].mean()
    fig, ax = plt.subplots(figsize=(4, 3))
    means.plot.bar(stacked=True, ax=ax, color=["tab:orange", "tab:blue"])
    ax.set_ylabel("share of |attribution|")
    ax.set_ylim(0, 1)
    ax.set_title("where the answer comes from")
    return save_figure(fig, out, "attribution_shares")
