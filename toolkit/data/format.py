"""The interleaved sequence format the model reads.

A sequence is `<s> text <image> [N placeholders] </image> text </s>` in token ids; the pixels of its
images travel separately, in the order their spans appear. `IMAGE` marks where an image goes when a
sequence is assembled from parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from toolkit.model.config import SpecialTokens

Tensor = torch.Tensor
IMAGE = "<image>"  # marker for an image inside a parts list
Part = Sequence[int] | str


def image_span(tokens: SpecialTokens, num_image_tokens: int) -> list[int]:
    """`<image>`, N placeholders, `</image>`."""
    return [tokens.image] + [tokens.image_pad] * num_image_tokens + [tokens.image_end]


def build_sequence(
    parts: Sequence[Part], tokens: SpecialTokens, num_image_tokens: int, bos: bool = True, eos: bool = True
) -> list[int]:
    """Join text token lists and IMAGE markers into one id sequence, with `<s>`/`</s>` if asked."""
    ids = [tokens.bos] if bos else []
    for part in parts:
        if isinstance(part, str):
            if part != IMAGE:
                raise ValueError(f"unknown marker {part!r} in a sequence; parts are token-id lists or IMAGE")
            ids += image_span(tokens, num_image_tokens)
        else:
            ids += list(part)
    return ids + ([tokens.eos] if eos else [])


@dataclass
class Batch:
    input_ids: Tensor  # (B, T) right-padded
    attention_mask: Tensor  # (B, T) bool, True = real token
    images: Tensor | None = None  # (M, C, H, W), spans in reading order
    loss_mask: Tensor | None = None  # (B, T) bool, False = not a target


def collate(
    sequences: Sequence[Sequence[int]],
    tokens: SpecialTokens,
    images: Sequence[Tensor] | None = None,
    loss_masks: Sequence[Sequence[bool]] | None = None,
) -> Batch:
    """Right-pad sequences into a Batch; `images[i]` is (M_i, C, H, W) for sequence i (or empty)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), tokens.pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    loss = torch.zeros((len(sequences), width), dtype=torch.bool) if loss_masks is not None else None
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = True
        if loss is not None:
            loss[row, : len(seq)] = torch.as_tensor(list(loss_masks[row]), dtype=torch.bool)
    pixels = None
    if images is not None:
        chunks = [im for im in images if im is not None and len(im)]
        pixels = torch.cat(chunks) if chunks else None
    return Batch(ids, mask, pixels, loss)
