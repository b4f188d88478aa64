"""LLaVA (`LlavaForConditionalGeneration`): a CLIP tower, a projector, and each image as the
processor's run of `<image>` tokens, one per patch, where the prompt has the image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from toolkit.families.base import Context, HFAdapter, Part, register_family


@register_family("llava", ("llava",))
class Llava(HFAdapter):
    accepts_images = True

    def load(self, path: Path, attention: str):
        from transformers import LlavaForConditionalGeneration

        return self.with_processor(path, LlavaForConditionalGeneration, attention)

    @property
    def image_size(self) -> int:
        crop = getattr(self.processor.image_processor, "crop_size", None) or {}
        return int(crop.get("height") or self.model.config.vision_config.image_size)

    def prompt_text(self, parts: Sequence[Part]) -> str:
        if self.chat:
            return self.processor.apply_chat_template(self.chat_messages(parts), add_generation_prompt=True)
        return "".join(self.processor.image_token + "\n" if isinstance(p, Image.Image) else p for p in parts)

    def context(self, parts: Sequence[Part]) -> Context:
        images = self._images(parts)
        text = self.prompt_text(parts)
        enc = self.processor(text=[text], images=images or None, return_tensors="pt", add_special_tokens=not self.chat)
        tensors = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
        return Context(text, enc["input_ids"][0].tolist(), tensors)

    def patch_embedding(self):
        return self.model.model.vision_tower.embeddings.patch_embedding

    def patch_grids(self, context: Context, values):
        return list(values.sum(1))  # the convolution's output (images, channels, rows, cols)
