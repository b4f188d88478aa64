"""Captum attribution for a Hugging Face family: layer integrated gradients of log p(answer | prompt)
over the decoder's text-token embeddings and the vision tower's patch embeddings together.

The baseline keeps the prompt's structure (special and image tokens) and replaces every other text
token by padding and every image by a black image of its size (as the processor prepares it; not
zeros, whose patch embeddings are zero and put a tower that normalises them right away, such as
Qwen2-VL's, where the integral is ill-conditioned). Completeness: the attributions sum to
log p(answer | prompt) - log p(answer | baseline), up to the integration error (`delta`).
Patch attributions come back on each image's patch grid (rows x cols of the tower's patches)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import torch
from PIL import Image

from toolkit.families.base import HFAdapter, Part
from toolkit.interp.attribution import attribution_shares


@dataclasses.dataclass
class HFAttribution:
    tokens: list[str]  # the prompt's tokens
    text: torch.Tensor  # (T,) per prompt token, summed over the embedding; zero at image tokens
    patches: list[torch.Tensor]  # per image, (rows, cols) over the tower's patch grid
    output: float  # log p(answer | prompt)
    baseline_output: float  # log p(answer | baseline)
    delta: float  # sum of attributions - (output - baseline_output)

    @property
    def shares(self) -> dict[str, float]:
        """Share of absolute attribution on text tokens and on image patches (they sum to 1)."""
        return attribution_shares(self.text, self.patches)


def attribute(adapter: HFAdapter, parts: Sequence[Part], answer: str, n_steps: int = 64) -> HFAttribution:
    """Attribute log p(answer | parts) to the prompt's text tokens and image patches."""
    from captum.attr import LayerIntegratedGradients

    model = adapter.model
    context = adapter.context(parts)
    answer_ids = adapter.continuation(context.text, answer)
    T, A = len(context.input_ids), len(answer_ids)
    batch = adapter.collate([context], [context.input_ids + answer_ids])
    ids, target = batch.pop("input_ids"), torch.tensor(answer_ids, device=adapter.device)
    pixels = batch.pop("pixel_values", None)
    keep = torch.tensor(sorted(set(adapter.tok.all_special_ids) | {adapter.image_token_id or -1}), device=ids.device)
    base_ids = torch.where(torch.isin(ids, keep), ids, torch.full_like(ids, adapter.pad))
    base_ids[0, T:] = ids[0, T:]  # the answer is what is scored, not attributed

    def log_prob(input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        k = input_ids.shape[0]  # captum's steps, stacked
        fixed = {key: value.repeat(k, *([1] * (value.dim() - 1))) for key, value in batch.items()}
        if pixel_values is not None:
            fixed["pixel_values"] = pixel_values
        logits = model(input_ids=input_ids, **fixed).logits.float()
        logp = torch.log_softmax(logits[:, T - 1 : T - 1 + A], -1)
        return logp.gather(-1, target.expand(k, -1)[..., None]).squeeze(-1).sum(-1)

    layers = [model.get_input_embeddings()]
    inputs, baselines = (ids,), (base_ids,)
    base_pixels = None
    if pixels is not None:
        black = [Image.new("RGB", p.size) if isinstance(p, Image.Image) else p for p in parts]
        black_context = adapter.context(black)
        base_pixels = adapter.collate([black_context], [black_context.input_ids])["pixel_values"].to(pixels.dtype)
        layers.append(adapter.patch_embedding())
        inputs, baselines = (ids, pixels), (base_ids, base_pixels)
    with warnings.catch_warnings():  # captum warns about several layers; these two do not feed each other
        warnings.simplefilter("ignore", UserWarning)
        ig = LayerIntegratedGradients(log_prob, layers if len(layers) > 1 else layers[0])
    attrs = ig.attribute(inputs, baselines=baselines, n_steps=n_steps, internal_batch_size=n_steps)
    attrs = attrs if isinstance(attrs, list) else [attrs]
    text = attrs[0][0, :T].sum(-1).detach().float().cpu()
    text[torch.tensor(context.input_ids) == adapter.image_token_id] = 0.0  # image tokens are attributed as patches
    patches = adapter.patch_grids(context, attrs[1].detach().float().cpu()) if pixels is not None else []
    with torch.no_grad():
        out = float(log_prob(ids, pixels))
        base = float(log_prob(base_ids, base_pixels))
    tokens = adapter.tok.convert_ids_to_tokens(context.input_ids)
    # completeness over both layers (captum's own delta counts the first layer only)
    total = float(attrs[0][0, :T].sum()) + (float(attrs[1].sum()) if pixels is not None else 0.0)
    return HFAttribution(tokens, text, patches, out, base, total - (out - base))
