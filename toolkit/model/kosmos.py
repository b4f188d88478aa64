"""KosmosModel: a decoder that reads interleaved text and images.

Sequence format (Kosmos-1): `<s> text <image> [N image embeddings] </image> text </s>`. In token ids
each image is a run of N `image_pad` placeholders between `<image>` and `</image>`; `images`
(M, C, H, W) holds the pixels of all M spans of the batch in reading order (row by row, left to
right). The resampler's N embeddings of image m replace the placeholders of span m. Only text tokens
carry loss. With `vision.kind: none` the same class is the text-only LLM baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.model.config import ModelConfig
from toolkit.model.decoder import Decoder, HookPoint, KVCache
from toolkit.model.loss import fused_output_nll
from toolkit.model.resampler import build_resampler
from toolkit.model.vision import apply_freeze, build_vision

Tensor = torch.Tensor


class ImageSpanError(ValueError):
    """Image placeholders in the token ids do not match the images or the model's span length."""


@dataclass
class KosmosOutput:
    logits: Tensor | None  # (B, T, vocab); None when the forward was asked for the loss only
    loss: Tensor | None = None  # mean next-token NLL over text targets
    num_loss_tokens: Tensor | None = None  # how many targets the loss averages over
    group_nll: Tensor | None = None  # (G,) summed NLL per row group (forward's loss_groups)
    group_tokens: Tensor | None = None  # (G,) targets per row group
    hidden: Tensor | None = None  # (B, T, dim) final hidden states
    cache: KVCache | None = None
    attentions: list[Tensor] | None = None


class KosmosModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder = Decoder(cfg.decoder)
        self.vision: nn.Module | None = None
        self.resampler: nn.Module | None = None
        if cfg.vision.enabled:
            d = cfg.decoder
            self.vision = build_vision(cfg.vision)
            self.resampler = build_resampler(
                cfg.resampler,
                self.vision.out_dim,
                self.vision.num_tokens,
                d.dim,
                d.heads,
                d.attention_dropout,
                d.attention,
            )
            apply_freeze(self.vision, cfg.vision.freeze)
        self.hook_image_embeds = HookPoint()  # (M, N, dim) image embeddings after the resampler
        self.hook_embeds = HookPoint()  # (B, T, dim) input embeddings with the images in place

    @property
    def num_image_tokens(self) -> int:
        """N: image embeddings (placeholder tokens) per image; 0 for a text-only model."""
        return 0 if self.resampler is None else self.resampler.num_tokens

    def init_weights(self) -> None:
        """Set every parameter to its starting value (pretrained vision weights when a path is given)."""
        self.decoder.init_weights()
        if self.vision is not None:
            self.vision.init_weights()
            self.resampler.init_weights()

    def embed_images(self, images: Tensor) -> Tensor:
        """(M, C, H, W) pixels -> (M, N, dim) image embeddings."""
        if self.vision is None:
            raise ImageSpanError("this model has no vision tower (vision.kind: none) but images were given")
        param = next(self.resampler.parameters())
        features = self.vision(images.to(dtype=param.dtype))
        if self.cfg.vision.normalize:
            features = F.normalize(features, dim=-1)
        return self.hook_image_embeds(self.resampler(features))

    def image_positions(self, input_ids: Tensor, num_images: int) -> Tensor:
        """(B, T) bool of placeholder positions, after checking every span against N and the images."""
        self.check_image_spans(input_ids, num_images)
        return input_ids == self.cfg.tokens.image_pad

    @torch.compiler.disable
    def check_image_spans(self, input_ids: Tensor, num_images: int) -> None:
        """Raise ImageSpanError unless every <image> span holds N placeholders, one per given image.

        Reads the ids on the host; kept out of torch.compile graphs (it runs eagerly between them)."""
        tok = self.cfg.tokens
        placeholders = input_ids == tok.image_pad
        opens = input_ids == tok.image
        if num_images == 0 and not bool((opens | placeholders).any()):
            return  # plain text (each decoding step): one host read
        starts = opens.nonzero().tolist()
        if len(starts) != num_images:
            raise ImageSpanError(f"the batch has {len(starts)} <image> spans but {num_images} images were given")
        if num_images == 0:
            if bool(placeholders.any()):
                raise ImageSpanError("image placeholder tokens appear outside any <image> ... </image> span")
            return
        if self.vision is None:
            raise ImageSpanError("this model has no vision tower (vision.kind: none) but the batch has <image> spans")
        n, T = self.num_image_tokens, input_ids.shape[1]
        expected = torch.zeros_like(placeholders)
        for row, col in starts:
            end = col + 1 + n
            span = input_ids[row, col + 1 : end]
            closed = end < T and int(input_ids[row, end]) == tok.image_end
            if span.numel() != n or not bool((span == tok.image_pad).all()) or not closed:
                found = int((span == tok.image_pad).sum())
                raise ImageSpanError(
                    f"image span at row {row}, position {col} must be <image> + {n} placeholders + </image> "
                    f"(this model's image embeddings per image); found {found} placeholders"
                    + ("" if closed else " and no </image> after them")
                )
            expected[row, col + 1 : end] = True
        if not bool((expected == placeholders).all()):
            raise ImageSpanError("image placeholder tokens appear outside any <image> ... </image> span")

    def embed(self, input_ids: Tensor, images: Tensor | None = None) -> Tensor:
        """Token embeddings (B, T, dim) with each image's embeddings at its span."""
        embeds = self.decoder.embed_tokens(input_ids)
        num_images = 0 if images is None else images.shape[0]
        positions = self.image_positions(input_ids, num_images)
        if num_images:
            image_embeds = self.embed_images(images)  # (M, N, dim), in span order
            embeds = embeds.masked_scatter(positions[..., None], image_embeds.to(embeds.dtype))
        return self.hook_embeds(embeds)

    def loss_targets(self, input_ids: Tensor, attention_mask: Tensor | None, loss_mask: Tensor | None) -> Tensor:
        """(B, T-1) bool: which next tokens count in the loss (text, real, not masked out)."""
        tok = self.cfg.tokens
        targets = input_ids[:, 1:]
        keep = (targets != tok.image_pad) & (targets != tok.pad)
        if attention_mask is not None:
            keep &= attention_mask[:, 1:].bool()
        if loss_mask is not None:
            keep &= loss_mask[:, 1:].bool()
        return keep

    def forward(
        self,
        input_ids: Tensor,
        images: Tensor | None = None,
        attention_mask: Tensor | None = None,
        loss_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
        need_weights: bool = False,
        compute_loss: bool = True,
        return_logits: bool = True,
        loss_groups: Tensor | None = None,
    ) -> KosmosOutput:
        """input_ids (B, T); images (M, C, H, W); attention_mask (B, T), True = real token;
        loss_mask (B, T), False = do not predict this token (e.g. an instruction prompt).

        `return_logits=False` (training) computes the loss fused with the output projection, in chunks,
        without keeping the (B, T, vocab) logits (`toolkit.model.loss`); the output's logits are None.
        `loss_groups` (B,) long gives each row a group (rows of several streams in one batch): the
        output's `group_nll` and `group_tokens` are then each group's summed NLL and target count."""
        embeds = self.embed(input_ids, images)
        out = self.decoder(embeds, attention_mask, position_ids, cache, use_cache, need_weights)
        with_loss = compute_loss and input_ids.shape[1] > 1
        logits = self.decoder.logits(out.hidden) if return_logits or not with_loss else None
        result = KosmosOutput(logits, hidden=out.hidden, cache=out.cache, attentions=out.attentions)
        if with_loss:
            keep = self.loss_targets(input_ids, attention_mask, loss_mask)
            # Position t predicts token t+1. The last position has no target: it gets a dummy one and
            # weight 0, so every position's logits are used as they are (no copy of a shifted slice).
            B, T, _ = out.hidden.shape
            targets = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1).reshape(-1)
            weight = torch.cat([keep, keep.new_zeros(B, 1)], dim=1).reshape(-1)
            groups = sums = None
            if loss_groups is not None:
                groups = loss_groups[:, None].expand(B, T).reshape(-1)
                sums = torch.zeros(int(loss_groups.max()) + 1, dtype=torch.float32, device=out.hidden.device)
            if logits is None:
                hidden = out.hidden.reshape(B * T, -1)
                total = fused_output_nll(hidden, self.decoder.output_weight, targets, weight, None, groups, sums)
            else:
                nll = F.cross_entropy(logits.reshape(B * T, -1).float(), targets, reduction="none") * weight
                total = nll.sum()
                if sums is not None:
                    sums.index_add_(0, groups, nll.detach())
            count = keep.sum()
            result.loss = total / count.clamp(min=1)
            result.num_loss_tokens = count
            if sums is not None:
                result.group_nll = sums
                result.group_tokens = torch.zeros_like(sums).index_add_(0, loss_groups, keep.sum(1).float())
        return result
