"""Shared pieces of the studies: loading a run for analysis, the world's categories, figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

from toolkit.config import ConfigError
from toolkit.eval.runner import Loaded, load_checkpoint
from toolkit.files import atomic_path


def load_run_for_analysis(
    run_dir: str | os.PathLike, world: str | os.PathLike | None = None, attention: str = "sdpa"
) -> Loaded:
    """The run's last checkpoint (or a Hugging Face checkpoint directory, loaded with `attention`) in
    eval mode; `world` replaces its data.world (an imported or Hugging Face model has none)."""
    loaded = load_checkpoint(run_dir, world=world, attention=attention)
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


def world_vqa_examples(world: str | os.PathLike, limit: int):
    """The first `limit` world VQA questions (the probe set of the attention and attribution studies)."""
    from toolkit.data.shards import SkipLog
    from toolkit.eval.examples import LOADERS

    return LOADERS.get("world_vqa")(f"{world}/eval/vqa.jsonl", SkipLog())[:limit]


def vqa_study_prompts(
    run_dir: str | os.PathLike, world: str | os.PathLike | None, limit: int, needs: str, attention: str = "sdpa"
):
    """The run's adapter and its first `limit` world VQA prompts as parts: [(example, parts)].
    A text-only model is an error naming what the study `needs` (it has no image input)."""
    from toolkit.eval.prompts import fill
    from toolkit.eval.tasks import TASKS

    loaded = load_run_for_analysis(run_dir, world, attention=attention)
    adapter = loaded.adapter
    if not adapter.accepts_images:
        raise ConfigError(f"{run_dir}: a text-only model has no {needs}")
    prompt = TASKS.get("world-vqa").prompt
    return adapter, [(ex, fill(prompt, ex)) for ex in world_vqa_examples(loaded.world, limit)]


def is_hf(adapter) -> bool:
    """A Hugging Face family's adapter (toolkit.families), not xmt's own model."""
    from toolkit.families import HFAdapter

    return isinstance(adapter, HFAdapter)
