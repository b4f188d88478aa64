"""Shared pieces of the studies: loading a run for analysis, the world's categories, figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from toolkit.eval.runner import Loaded, load_checkpoint
from toolkit.files import atomic_path


def load_run_for_analysis(run_dir: str | os.PathLike, world: str | os.PathLike | None = None) -> Loaded:
    """The run's last checkpoint in eval mode; `world` replaces its data.world (an imported model has none)."""
    loaded = load_checkpoint(run_dir, world=world)
    loaded.adapter.model.eval()
    if not loaded.world:
        raise FileNotFoundError(f"{run_dir}: the run has no data.world; give the world directory (--world)")
    return loaded


def world_categories(world: str | os.PathLike) -> list[dict]:
    path = Path(world) / "world.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run's world has no world.json (analysis needs the world's ontology)")
    return json.loads(path.read_text())["categories"]


def size_class(rank: int) -> str:
    return "small" if rank <= 3 else "medium" if rank <= 6 else "large"


def save_figure(fig, out: Path, name: str) -> list[Path]:
    """PNG and PDF of a matplotlib figure, each written under a temporary name first."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        with atomic_path(out / f"{name}.{ext}", f".{ext}") as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
        paths.append(out / f"{name}.{ext}")
    plt.close(fig)
    return paths


def write_csv(df, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    return out / f"{name}.csv"


@torch.no_grad()
def layer_states(model, sequences: list[list[int]], images: list[torch.Tensor | None], batch_size: int = 32):
    """Per sequence: a list over layers (0 = input embeddings, then each block) of (T, dim) states."""
    from toolkit.data.format import collate
    from toolkit.interp.hooks import cache_activations, residual_stream

    tok = model.cfg.tokens
    out = []
    for start in range(0, len(sequences), batch_size):
        seqs, ims = sequences[start : start + batch_size], images[start : start + batch_size]
        b = collate(seqs, tok, images=ims)
        names = residual_stream(model)
        with cache_activations(model, names) as cache:
            model(b.input_ids, b.images, b.attention_mask, compute_loss=False)
        for row, seq in enumerate(seqs):
            out.append([cache[n][row, : len(seq)] for n in names])
    return out


def world_vqa_examples(world: str | os.PathLike, limit: int):
    """The first `limit` world VQA questions (the probe set of the attention and attribution studies)."""
    from toolkit.data.shards import SkipLog
    from toolkit.eval.examples import LOADERS

    return LOADERS.get("world_vqa")(f"{world}/eval/vqa.jsonl", SkipLog())[:limit]


def vqa_study_prompts(run_dir: str | os.PathLike, world: str | os.PathLike | None, limit: int, needs: str):
    """The run's adapter and its first `limit` world VQA prompts, encoded: [(example, ids, pixels)].
    A text-only model is an error naming what the study `needs` (it has no image input)."""
    from toolkit.eval.prompts import fill
    from toolkit.eval.tasks import TASKS

    loaded = load_run_for_analysis(run_dir, world)
    adapter = loaded.adapter
    if adapter.model.vision is None:
        raise ValueError(f"{run_dir}: a text-only model has no {needs}")
    prompt = TASKS.get("world-vqa").prompt
    return adapter, [(ex, *adapter.encode(fill(prompt, ex))) for ex in world_vqa_examples(loaded.world, limit)]
