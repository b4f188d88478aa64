"""Attention study: text->image attention mass per layer and head (recomputed with the eager
backend), and overlays of a question's last token's attention on the image patch grid."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.common import is_hf, save_figure, vqa_study_prompts, write_csv
from toolkit.files import atomic_path
from toolkit.interp.attention import AttentionMaps, attention_maps, patch_map, text_to_image_mass


def run_attention(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    limit: int = 16,
    overlays: int = 4,
    world: str | os.PathLike | None = None,
) -> pd.DataFrame:
    out = Path(out)
    adapter, prompts = vqa_study_prompts(run_dir, world, limit, "image attention to study", attention="eager")
    masses, rows = [], []
    overlay_data = []
    for ex, parts in prompts:
        attn = prompt_attention(adapter, parts)
        masses.append(text_to_image_mass(attn.maps))
        if len(overlay_data) < overlays:
            overlay_data.append((ex, [attn.patch_map(-1, layer) for layer in range(attn.layers)]))
    mean = torch.stack(masses).mean(0)
    for layer in range(mean.shape[0]):
        for head in range(mean.shape[1]):
            rows.append(
                {"layer": layer, "head": head, "text_to_image_mass": float(mean[layer, head]), "n": len(prompts)}
            )
    df = pd.DataFrame(rows)
    write_csv(df, out, "attention_mass")
    plot_mass(mean.numpy(), out)
    plot_overlays(overlay_data, out)
    save_overlays(overlay_data, out)
    (out / "attention_examples.json").write_text(
        json.dumps([{"id": ex.id, "question": ex.fields["question"]} for ex, _ in overlay_data], indent=1)
    )
    return df


@dataclass
class PromptAttention:
    """One prompt's attention weights in every layer (`maps`, rows sum to 1) and a query token's
    attention on the first image's patch grid (`patch_map`)."""

    maps: AttentionMaps
    trace: Callable[[int, int, int | None], torch.Tensor]  # (query, layer, head) -> (rows, cols)

    @property
    def layers(self) -> int:
        return len(self.maps.weights)

    def patch_map(self, query: int = -1, layer: int = -1, head: int | None = None) -> np.ndarray:
        """(rows, cols): token `query`'s attention in `layer` (negative: from the end) on the first
        image's patches, averaged over heads unless `head`."""
        return self.trace(query % self.maps.input_ids.shape[1], layer % self.layers, head).numpy()


def prompt_attention(adapter, parts) -> PromptAttention:
    """The attention of one prompt (text and images) for an xmt model or a Hugging Face family.

    xmt: recomputed with the eager backend; the image embeddings are resampler latents, so a token's
    attention on them is traced through the resampler onto the tower's patch grid. A Hugging Face
    family (loaded with attention="eager"): the image tokens are the image's patches (merged ones for
    Qwen2-VL), so the attention on them is the map itself."""
    if is_hf(adapter):
        context, weights = adapter.attention(parts)  # (L, H, T, T)
        ids = torch.tensor([context.input_ids])
        maps = AttentionMaps([w[None] for w in weights], None, ids, ids == adapter.image_token_id)
        span = adapter.image_spans(context)[0]

        def trace(query, layer, head):
            w = weights[layer]
            return span.grid((w.mean(0) if head is None else w[head])[query])

        return PromptAttention(maps, trace)
    ids, pixels = adapter.encode(parts)
    model = adapter.model
    maps = attention_maps(model, torch.tensor([ids]), pixels)
    return PromptAttention(maps, lambda query, layer, head: patch_map(model, maps, pixels, 0, query, layer, head))


def plot_mass(mass: np.ndarray, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * mass.shape[1], 1.0 + 0.5 * mass.shape[0]))
    im = ax.imshow(mass, vmin=0, vmax=1, cmap="viridis")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("text -> image attention mass")
    fig.colorbar(im, ax=ax)
    return save_figure(fig, out, "attention_mass")


def save_overlays(overlay_data, out: Path) -> Path | None:
    """The overlays as data (`attention_overlays.npz`: images (E, H, W, 3) uint8, maps (E, L, h, w)
    of the last token's attention traced onto the patches, questions), for figures built later."""
    if not overlay_data:
        return None
    images = np.stack([np.asarray(ex.image(0), dtype=np.uint8) for ex, _ in overlay_data])
    maps = np.stack([np.stack(grids) for _, grids in overlay_data]).astype(np.float32)
    questions = np.array([ex.fields["question"] for ex, _ in overlay_data])
    with atomic_path(out / "attention_overlays.npz", ".npz") as tmp:
        np.savez(tmp, images=images, maps=maps, questions=questions)
    return out / "attention_overlays.npz"


def plot_overlays(overlay_data, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not overlay_data:
        return []
    layers = len(overlay_data[0][1])
    fig, axes = plt.subplots(
        len(overlay_data), layers + 1, figsize=(2.0 * (layers + 1), 2.0 * len(overlay_data)), squeeze=False
    )
    for r, (ex, grids) in enumerate(overlay_data):
        image = np.asarray(ex.image(0))
        axes[r][0].imshow(image)
        axes[r][0].set_title(ex.fields["question"], fontsize=7)
        for layer, grid in enumerate(grids):
            ax = axes[r][layer + 1]
            ax.imshow(image)
            ax.imshow(grid, cmap="magma", alpha=0.6, extent=(0, image.shape[1], image.shape[0], 0))
            ax.set_title(f"layer {layer}", fontsize=7)
        for ax in axes[r]:
            ax.axis("off")
    return save_figure(fig, out, "attention_overlays")
