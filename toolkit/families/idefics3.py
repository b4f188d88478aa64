"""Idefics3 (and SmolVLM, built on it): a SigLIP tower whose patches are pixel-shuffled (scale_factor^2
patches per token), and image splitting: a large image is cut into rows x cols tiles of the tower's
size plus a downscaled global view, each tile as `<fake_token_around_image><row_i_col_j>` + its
tokens, the global view as `<fake_token_around_image><global-img>` + its tokens.

An image's tokens map back to two patch grids (`ImageSpan` views): the tiles side by side
((rows x side) x (cols x side) tokens, side = sqrt(image_seq_len)), read from the tile markers
before each run of image tokens, and the global view (side x side). An image too small to split
has the global view only."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from toolkit.families.base import Context, HFAdapter, ImageSpan, Part, register_family

TILE = re.compile(r"<row_(\d+)_col_(\d+)>")


@register_family("idefics3", ("idefics3",))
class Idefics3(HFAdapter):
    accepts_images = True

    def load(self, path: Path, attention: str):
        from transformers import AutoModelForImageTextToText

        return self.with_processor(path, AutoModelForImageTextToText, attention)

    @property
    def image_size(self) -> int:
        return int(self.processor.image_processor.max_image_size["longest_edge"])

    @property
    def side(self) -> int:
        """Tokens per row of one tile (or of the global view)."""
        return math.isqrt(self.processor.image_seq_len)

    def prompt_text(self, parts: Sequence[Part]) -> str:
        if self.chat:
            return self.processor.apply_chat_template(self.chat_messages(parts), add_generation_prompt=True)
        return "".join(self.processor.image_token if isinstance(p, Image.Image) else p for p in parts)

    def context(self, parts: Sequence[Part]) -> Context:
        images = self._images(parts)
        text = self.prompt_text(parts)
        enc = self.processor(
            text=[text], images=[images] if images else None, return_tensors="pt", add_special_tokens=not self.chat
        )
        tensors = {k: v for k, v in enc.items() if k in ("pixel_values", "pixel_attention_mask")}  # (1, tiles, ...)
        return Context(text, enc["input_ids"][0].tolist(), tensors)

    def collate(self, contexts: Sequence[Context], rows: Sequence[list[int]], left: bool = False) -> dict:
        """The ids as every family pads them; the pixels as (prompts, tiles, 3, H, W), each prompt's tiles
        padded with all-zero tiles (which the model drops) to the batch's most, and to its largest side."""
        batch = super().collate([Context(c.text, c.input_ids, {}) for c in contexts], rows, left)
        with_images = [c for c in contexts if "pixel_values" in c.tensors]
        if not with_images:
            return batch
        n = max(c.tensors["pixel_values"].shape[1] for c in with_images)
        h = max(c.tensors["pixel_values"].shape[-2] for c in with_images)
        w = max(c.tensors["pixel_values"].shape[-1] for c in with_images)
        first = with_images[0].tensors["pixel_values"]
        pixels = torch.zeros((len(contexts), n, first.shape[2], h, w), dtype=first.dtype)
        mask = torch.zeros((len(contexts), n, h, w), dtype=torch.long)
        for i, c in enumerate(contexts):
            if "pixel_values" in c.tensors:
                _, t, _, ph, pw = c.tensors["pixel_values"].shape
                pixels[i, :t, :, :ph, :pw] = c.tensors["pixel_values"][0]
                mask[i, :t, :ph, :pw] = c.tensors["pixel_attention_mask"][0]
        batch.update(pixel_values=pixels.to(self.device), pixel_attention_mask=mask.to(self.device))
        return batch

    def image_spans(self, context: Context) -> list[ImageSpan]:
        """Per image: its tiles as one grid (when split), then its global view."""
        ids, token, side = context.input_ids, self.image_token_id, self.side
        names = self.tok.convert_ids_to_tokens(ids)
        spans, tiles, image, i = [], {}, 0, 0
        while i < len(ids):
            if ids[i] != token:
                i += 1
                continue
            j = i
            while j < len(ids) and ids[j] == token:
                j += 1
            if j - i != side * side:
                raise ValueError(f"image {image}: a run of {j - i} image tokens; expected {side * side} per tile")
            marker = TILE.fullmatch(names[i - 1]) if i > 0 else None
            if marker:  # a tile: remember it until the image's global view closes the image
                tiles[(int(marker[1]) - 1, int(marker[2]) - 1)] = i
            else:
                if tiles:
                    rows, cols = max(r for r, _ in tiles) + 1, max(c for _, c in tiles) + 1
                    positions = [
                        tiles[(r, c)] + y * side + x
                        for r in range(rows)
                        for y in range(side)
                        for c in range(cols)
                        for x in range(side)
                    ]
                    spans.append(ImageSpan(tuple(positions), rows * side, cols * side, image, "tiles"))
                spans.append(ImageSpan.run(i, side, side, image, "global"))
                tiles, image = {}, image + 1
            i = j
        return spans

    def patch_embedding(self):
        return self.model.model.vision_model.embeddings.patch_embedding

    def patch_grids(self, context: Context, values):
        """The convolution's output over the prompt's tiles (tiles, channels, h, w), summed over
        channels -> per view, in `image_spans`' order: the tiles side by side, then the global view."""
        per_tile = values.sum(1)  # (tiles, h, w) in prompt order
        out, start = [], 0
        for span in self.image_spans(context):
            if span.view == "tiles":
                rows, cols = span.rows // self.side, span.cols // self.side
                block = per_tile[start : start + rows * cols]
                _, h, w = block.shape
                out.append(block.reshape(rows, cols, h, w).permute(0, 2, 1, 3).reshape(rows * h, cols * w))
                start += rows * cols
            else:
                out.append(per_tile[start])
                start += 1
        return out
