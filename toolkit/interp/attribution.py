"""Attribution with captum: layer integrated gradients over the text-token embeddings and the image
patch embeddings (before the resampler) for the log-probability of a chosen answer.

The baseline keeps the sequence's structure (<s>, image delimiters and placeholders) and replaces
every text token by padding and every image by zeros. Completeness: the attributions sum to
log p(answer | input) - log p(answer | baseline), up to the integration error captum reports.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from toolkit.model.kosmos import KosmosModel

Tensor = torch.Tensor


@dataclass
class Attribution:
    text: Tensor  # (T,) per input token (summed over the embedding dimension); zero at image positions
    patches: Tensor | None  # (M, P) per image patch, or None without images
    output: float  # log p(answer | input)
    baseline_output: float  # log p(answer | baseline)
    delta: float  # sum of attributions - (output - baseline_output)

    @property
    def shares(self) -> dict[str, float]:
        """Share of absolute attribution on text tokens and on image patches (they sum to 1)."""
        return attribution_shares(self.text, [] if self.patches is None else [self.patches])


def attribution_shares(text: Tensor, patches: list[Tensor]) -> dict[str, float]:
    """Share of absolute attribution on text tokens and on image patches (they sum to 1)."""
    text_mass = float(text.abs().sum())
    image_mass = float(sum(p.abs().sum() for p in patches))
    total = text_mass + image_mass
    return {"text": text_mass / total if total else 0.0, "image": image_mass / total if total else 0.0}


def patch_layer(model: KosmosModel) -> torch.nn.Module:
    """The module whose output holds the patch embeddings of the vision tower."""
    vision = model.vision
    if hasattr(vision, "patch_embed"):
        return vision.patch_embed
    inner = getattr(vision.model, "vision_model", vision.model)
    return inner.embeddings.patch_embedding


def attribute(
    model: KosmosModel, context: Tensor, answer: list[int], images: Tensor | None = None, n_steps: int = 64
) -> Attribution:
    """Attribute log p(answer | context) to the context's text tokens and image patches.

    context (T,) token ids (with image spans), answer: the continuation's token ids, images (M, C, H, W).
    """
    from captum.attr import LayerIntegratedGradients

    model.eval()
    tok = model.cfg.tokens
    ids = torch.cat([context, torch.tensor(answer, dtype=context.dtype)])[None]  # (1, T + A)
    T, A = context.numel(), len(answer)
    structural = torch.tensor([tok.bos, tok.image, tok.image_end, tok.image_pad, tok.eos])
    base_ids = torch.where(torch.isin(ids, structural), ids, torch.full_like(ids, tok.pad))
    base_ids[0, T:] = ids[0, T:]  # the answer itself is what is scored, not attributed
    target = ids[0, T:]

    def log_prob(input_ids: Tensor, pixels: Tensor | None = None) -> Tensor:
        logits = model(input_ids, pixels, compute_loss=False).logits.float()
        logp = torch.log_softmax(logits[:, T - 1 : T - 1 + A], -1)  # position t predicts token t + 1
        return logp.gather(-1, target.expand(input_ids.shape[0], -1)[..., None]).squeeze(-1).sum(-1)

    layers = [model.decoder.embed_tokens]
    inputs, baselines = (ids,), (base_ids,)
    if images is not None:
        layers.append(patch_layer(model))
        inputs, baselines = (ids, images), (base_ids, torch.zeros_like(images))
    with warnings.catch_warnings():  # captum warns about several layers; these two do not feed each other
        warnings.simplefilter("ignore", UserWarning)
        ig = LayerIntegratedGradients(log_prob, layers if len(layers) > 1 else layers[0])
    attrs, delta = ig.attribute(
        inputs, baselines=baselines, n_steps=n_steps, return_convergence_delta=True, internal_batch_size=n_steps
    )
    attrs = attrs if isinstance(attrs, list) else [attrs]
    text = attrs[0][0, :T].sum(-1).detach()  # (T,)
    image_pos = context == tok.image_pad
    text = torch.where(image_pos, torch.zeros_like(text), text)
    patches = None
    if images is not None:
        a = attrs[1].detach()
        patches = a.sum(1).flatten(1) if a.dim() == 4 else a.sum(-1)  # conv output (M, C, h, w) -> (M, h*w)
    with torch.no_grad():
        out = float(log_prob(ids, images))
        base = float(log_prob(base_ids, None if images is None else torch.zeros_like(images)))
    return Attribution(text, patches, out, base, float(delta.sum()))
