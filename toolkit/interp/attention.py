"""Attention for analysis: recomputed with the eager backend for any checkpoint (xformers- or
SDPA-trained models return no weights), text->image attention mass per layer and head, and a query
token's attention traced through the resampler back onto the image patch grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from toolkit.model.kosmos import KosmosModel

Tensor = torch.Tensor


@dataclass
class AttentionMaps:
    weights: list[Tensor]  # per layer (B, H, T, T), rows sum to 1
    hidden: Tensor  # (B, T, dim) final hidden states of the same forward
    input_ids: Tensor  # (B, T)
    image_positions: Tensor  # (B, T) bool: image embedding positions


@torch.no_grad()
def attention_maps(
    model: KosmosModel, input_ids: Tensor, images: Tensor | None = None, attention_mask: Tensor | None = None
) -> AttentionMaps:
    """One forward with the eager backend in every layer, returning its attention weights."""
    model.eval()
    out = model(input_ids, images, attention_mask, need_weights=True, compute_loss=False)
    return AttentionMaps(out.attentions, out.hidden, input_ids, input_ids == model.cfg.tokens.image_pad)


def text_to_image_mass(maps: AttentionMaps, text_positions: Tensor | None = None) -> Tensor:
    """(layers, heads): mean over text query positions of the attention mass on image positions.
    Only queries that come after an image can attend to one; by default those are the text tokens
    after the first image span."""
    image = maps.image_positions
    if text_positions is None:
        after_image = image.long().cumsum(1) > 0
        text_positions = after_image & ~image
    rows = []
    for w in maps.weights:  # (B, H, T, T)
        mass = (w * image[:, None, None, :]).sum(-1)  # (B, H, T)
        sel = text_positions[:, None, :].expand_as(mass)
        rows.append((mass * sel).sum((0, 2)) / sel.sum((0, 2)).clamp(min=1))
    return torch.stack(rows)


@torch.no_grad()
def resampler_patch_weights(model: KosmosModel, images: Tensor) -> Tensor:
    """(M, N, P): how much each image embedding (latent) draws on each vision token, averaged over
    heads; rows sum to 1 over the vision tokens (attention on the latents themselves is dropped and
    the rest renormalised)."""
    r = model.resampler
    feats = model.vision(images.to(next(r.parameters()).dtype))  # (M, P, width)
    return r.patch_weights(feats)


def patch_map(
    model: KosmosModel,
    maps: AttentionMaps,
    images: Tensor,
    row: int,
    query: int,
    layer: int,
    head: int | None = None,
    image_index: int = 0,
) -> Tensor:
    """(grid, grid): the attention of token `query` in sequence `row` on image `image_index` of that
    sequence, traced through the resampler onto the patch grid (head-averaged unless `head`)."""
    w = maps.weights[layer][row]  # (H, T, T)
    w = w.mean(0) if head is None else w[head]
    spans = maps.image_positions[row].nonzero().squeeze(-1)
    n = model.num_image_tokens
    span = spans[image_index * n : (image_index + 1) * n]
    if span.numel() != n:
        raise ValueError(f"sequence {row} has no image number {image_index}")
    first_image = int(maps.image_positions[:row].sum()) // n + image_index  # index into `images`
    to_latents = w[query, span]  # (N,)
    per_patch = to_latents @ resampler_patch_weights(model, images[first_image : first_image + 1])[0]  # (P,)
    grid = int(math.isqrt(per_patch.numel()))
    if grid * grid != per_patch.numel():  # a CLS token in front (CLIP)
        per_patch = per_patch[1:]
        grid = int(math.isqrt(per_patch.numel()))
    return per_patch.reshape(grid, grid)
