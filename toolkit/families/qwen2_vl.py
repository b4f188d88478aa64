"""Qwen2-VL and Qwen2.5-VL: images at their own resolution, cut into patches that the tower merges
2x2, each image as `<|vision_start|>` + one `<|image_pad|>` per merged patch + `<|vision_end|>`;
positions are multimodal RoPE over (time, row, column).

The prompt is built from the tokenizer and the image processor (`AutoImageProcessor`, its PIL
backend where torchvision is absent) rather than the composite processor, with the processor's
own rule: the i-th image's pad token repeated grid_t * grid_h * grid_w / merge_size**2 times."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from toolkit.families.base import Context, HFAdapter, Part, register_family

START, PAD, END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"


@register_family("qwen2_vl", ("qwen2_vl", "qwen2_5_vl"))
class Qwen2VL(HFAdapter):
    accepts_images = True

    def load(self, path: Path, attention: str):
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        for name in ("chat_template.jinja", "chat_template.json"):  # a processor-level chat template
            if tok.chat_template is None and (path / name).is_file():
                text = (path / name).read_text()
                tok.chat_template = text if name.endswith("jinja") else json.loads(text)["chat_template"]
        images = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(
            path, local_files_only=True, attn_implementation=attention, dtype="auto"
        )
        self.images = images
        return model, tok, None

    @property
    def merge(self) -> int:
        return int(self.images.merge_size)

    @property
    def image_size(self) -> int:
        side = self.images.patch_size * self.merge
        smallest = (getattr(self.images, "size", None) or {}).get("shortest_edge") or side * side
        return side * max(1, math.ceil(math.sqrt(smallest) / side))

    def prompt_text(self, parts: Sequence[Part]) -> str:
        if self.chat:
            return self.tok.apply_chat_template(self.chat_messages(parts), tokenize=False, add_generation_prompt=True)
        return "".join(START + PAD + END if isinstance(p, Image.Image) else p for p in parts)

    def context(self, parts: Sequence[Part]) -> Context:
        images = self._images(parts)
        text = self.prompt_text(parts)
        tensors = {}
        expanded = text
        if images:
            enc = self.images(images=images, return_tensors="pt")
            tensors = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
            pieces = text.split(PAD)
            if len(pieces) - 1 != len(images):
                raise ValueError(f"prompt has {len(pieces) - 1} image placeholders for {len(images)} images")
            counts = [int(g.prod()) // self.merge**2 for g in enc["image_grid_thw"]]
            expanded = pieces[0] + "".join(PAD * n + rest for n, rest in zip(counts, pieces[1:]))
        ids = list(self.tok(expanded, add_special_tokens=not self.chat)["input_ids"])
        pad = self.model.config.image_token_id
        return Context(text, ids, tensors, {"mm_token_type_ids": [int(t == pad) for t in ids]})

    def grid(self, context: Context, index: int, tokens: int) -> tuple[int, int]:
        """Image `index`'s merged patches: (grid_h / merge, grid_w / merge), from its image_grid_thw."""
        _, h, w = (int(v) for v in context.tensors["image_grid_thw"][index])
        return h // self.merge, w // self.merge

    def patch_embedding(self):
        return self.model.model.visual.patch_embed

    def patch_grids(self, context: Context, values):
        """(patches, dim) in the processor's order, 2x2 merge blocks row by row, -> per image (rows, cols)."""
        out, start, m = [], 0, self.merge
        for t, h, w in context.tensors["image_grid_thw"].tolist():
            block = values[start : start + t * h * w].sum(-1).reshape(t, h // m, w // m, m, m)
            out.append(block.permute(0, 1, 3, 2, 4).reshape(t, h, w).sum(0))
            start += t * h * w
        return out
